//! A container's security settings, decided from its pod's and its own
//! `securityContext` as the kubelet and containerd decide them:
//! capabilities (`drop`/`add`, `ALL`), privileged, no_new_privs,
//! seccomp, sysctls (upstream's safe set; others refuse the pod), the
//! non-root check with upstream's messages, supplemental groups and
//! fsGroup, and which namespaces come from the host. Pure: the worker
//! reads files and runs what is decided here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext};
use skiff_runtime::container::spec::{Security, DEFAULT_CAPABILITIES};
use skiff_runtime::sandbox::SandboxOptions;

/// Sysctls a pod may set without the node allowing unsafe ones
/// (upstream's `SafeSysctlAllowlist` in 1.32).
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Why a pod is refused before it starts (the kubelet's admission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

fn pod_context(pod: &Pod) -> Option<&PodSecurityContext> {
    pod.spec.as_ref().and_then(|s| s.security_context.as_ref())
}

fn flag(value: Option<bool>) -> bool {
    value.unwrap_or(false)
}

/// The sandbox a pod needs: which namespaces are the host's, whether the
/// containers share a PID namespace.
pub fn sandbox_options(pod: &Pod, id: &str) -> SandboxOptions {
    let spec = pod.spec.clone().unwrap_or_default();
    SandboxOptions {
        id: id.to_string(),
        host_network: flag(spec.host_network),
        host_ipc: flag(spec.host_ipc),
        share_pid: flag(spec.share_process_namespace) && !flag(spec.host_pid),
    }
}

/// The kubelet's admission of a pod: sysctls outside the safe set, or in a
/// namespace the pod shares with the host, and AppArmor profiles that
/// cannot be enforced refuse the pod (`SysctlForbidden`, `AppArmor`).
pub fn admit(pod: &Pod, apparmor_enabled: bool) -> Result<(), Rejection> {
    let spec = pod.spec.clone().unwrap_or_default();
    for sysctl in pod_context(pod).and_then(|c| c.sysctls.as_ref()).into_iter().flatten() {
        let name = sysctl.name.replace('/', ".");
        let why = if !SAFE_SYSCTLS.contains(&name.as_str()) {
            Some(format!("{:?} not allowlisted", sysctl.name))
        } else if name.starts_with("net.") && flag(spec.host_network) {
            Some(format!("{:?} not allowed with host net enabled", sysctl.name))
        } else if name.starts_with("kernel.shm") && flag(spec.host_ipc) {
            Some(format!("{:?} not allowed with host ipc enabled", sysctl.name))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Rejection {
                reason: "SysctlForbidden",
                message: format!("forbidden sysctl: {why}"),
            });
        }
    }
    let wants_apparmor = |profile: Option<&k8s_openapi::api::core::v1::AppArmorProfile>| {
        profile.is_some_and(|p| p.type_ != "Unconfined")
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let any = wants_apparmor(pod_context(pod).and_then(|c| c.app_armor_profile.as_ref()))
        || containers
            .clone()
            .any(|c| wants_apparmor(c.security_context.as_ref().and_then(|s| s.app_armor_profile.as_ref())));
    if any {
        let why = if apparmor_enabled {
            "Skiff does not load AppArmor profiles"
        } else {
            "AppArmor is not enabled on the host"
        };
        return Err(Rejection {
            reason: "AppArmor",
            message: format!("Cannot enforce AppArmor: {why}"),
        });
    }
    Ok(())
}

/// The seccomp profile that applies: the container's, else the pod's.
pub fn seccomp_profile(pod: &Pod, container: &Container) -> Option<SeccompProfile> {
    container
        .security_context
        .as_ref()
        .and_then(|c| c.seccomp_profile.clone())
        .or_else(|| pod_context(pod).and_then(|c| c.seccomp_profile.clone()))
}

fn container_context(container: &Container) -> SecurityContext {
    container.security_context.clone().unwrap_or_default()
}

/// The capability set: Docker's defaults, less `drop`, plus `add` (`ALL`
/// in either means every capability), names with or without `CAP_`; a
/// privileged container gets all. Always within `node` (the capabilities
/// the agent itself holds), as containerd does.
pub fn capabilities(container: &Container, node: &[String]) -> Vec<String> {
    let mut set = requested_capabilities(container);
    if flag(container_context(container).privileged) {
        set = node.to_vec();
    }
    set.retain(|c| node.contains(c));
    set
}

fn requested_capabilities(container: &Container) -> Vec<String> {
    let caps = container_context(container).capabilities.unwrap_or_default();
    let normalize = |name: &String| {
        let upper = name.to_uppercase();
        if upper == "ALL" || upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    let drop: Vec<String> = caps.drop.iter().flatten().map(normalize).collect();
    let add: Vec<String> = caps.add.iter().flatten().map(normalize).collect();
    let mut set: Vec<String> = if add.iter().any(|c| c == "ALL") {
        skiff_runtime::container::spec::ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    if drop.iter().any(|c| c == "ALL") {
        set.clear();
    } else {
        set.retain(|c| !drop.contains(c));
    }
    for cap in add.into_iter().filter(|c| c != "ALL") {
        if !set.contains(&cap) {
            set.push(cap);
        }
    }
    set
}

/// The security settings of `container`; `seccomp` is the profile already
/// resolved to an OCI object (`None` for Unconfined).
pub fn security(
    pod: &Pod,
    container: &Container,
    node_capabilities: &[String],
    seccomp: Option<serde_json::Value>,
) -> Security {
    let context = container_context(container);
    let privileged = flag(context.privileged);
    let sysctls: BTreeMap<String, String> = pod_context(pod)
        .and_then(|c| c.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (s.name.replace('/', "."), s.value.clone()))
        .collect();
    Security {
        capabilities: capabilities(container, node_capabilities),
        privileged,
        // upstream: no_new_privs unless escalation is allowed (unset allows it).
        no_new_privileges: context.allow_privilege_escalation == Some(false),
        seccomp,
        sysctls,
        selinux: None,
    }
}

/// The SELinux labels for a container's `seLinuxOptions` (container over
/// pod), as containerd makes them: the parts given, the rest from the
/// container defaults (`system_u:system_r:container_t:s0`, files
/// `system_u:object_r:container_file_t:s0`). `None` without options.
pub fn selinux_labels(pod: &Pod, container: &Container) -> Option<(String, String)> {
    let options = container_context(container)
        .se_linux_options
        .or_else(|| pod_context(pod).and_then(|c| c.se_linux_options.clone()))?;
    let part = |given: &Option<String>, default: &str| {
        given.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
    };
    let user = part(&options.user, "system_u");
    let level = part(&options.level, "s0");
    let process = format!(
        "{user}:{}:{}:{level}",
        part(&options.role, "system_r"),
        part(&options.type_, "container_t")
    );
    let mount = format!("{user}:object_r:container_file_t:{level}");
    Some((process, mount))
}

/// `runAsUser`, container over pod.
pub fn run_as_user(pod: &Pod, container: &Container) -> Option<i64> {
    container_context(container)
        .run_as_user
        .or_else(|| pod_context(pod).and_then(|c| c.run_as_user))
}

/// `runAsGroup`, container over pod.
pub fn run_as_group(pod: &Pod, container: &Container) -> Option<i64> {
    container_context(container)
        .run_as_group
        .or_else(|| pod_context(pod).and_then(|c| c.run_as_group))
}

/// The image's `User` as the runtime reports it: a numeric uid, or a name.
fn image_user(user: &str) -> (Option<i64>, &str) {
    let name = user.split(':').next().unwrap_or("");
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), ""),
        Err(_) if name.is_empty() => (Some(0), ""),
        Err(_) => (None, name),
    }
}

/// upstream's `verifyRunAsNonRoot`, with its messages
/// (`CreateContainerConfigError`).
pub fn verify_run_as_non_root(pod: &Pod, container: &Container, image_user_field: &str) -> Result<(), String> {
    let run_as_non_root = container_context(container)
        .run_as_non_root
        .or_else(|| pod_context(pod).and_then(|c| c.run_as_non_root));
    if run_as_non_root != Some(true) {
        return Ok(());
    }
    let described = format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    );
    if let Some(uid) = run_as_user(pod, container) {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {described:?}, container: {})",
                container.name
            ));
        }
        return Ok(());
    }
    match image_user(image_user_field) {
        (Some(0), _) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {described:?}, container: {})",
            container.name
        )),
        (None, name) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root (pod: {described:?}, container: {})",
            container.name
        )),
        _ => Ok(()),
    }
}

/// The extra groups of every container: `supplementalGroups`, then `fsGroup`.
pub fn additional_gids(pod: &Pod) -> Vec<u32> {
    let context = pod_context(pod).cloned().unwrap_or_default();
    let mut gids: Vec<u32> = context
        .supplemental_groups
        .iter()
        .flatten()
        .chain(context.fs_group.iter())
        .filter_map(|g| u32::try_from(*g).ok())
        .collect();
    gids.dedup();
    gids
}

/// The group that owns the pod's writable volumes (`fsGroup`).
pub fn fs_group(pod: &Pod) -> Option<u32> {
    pod_context(pod)
        .and_then(|c| c.fs_group)
        .and_then(|g| u32::try_from(g).ok())
}

/// The user a container runs as, as containerd resolves it: `runAsUser`
/// and `runAsGroup` first, else the image's `USER` (`name`, `uid`,
/// `name:group`, `uid:gid`). Names are looked up in the image's
/// `/etc/passwd` and `/etc/group`; a numeric user without a group takes
/// its passwd entry's group, or 0.
pub fn resolve_user(
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    image_user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32), String> {
    let entries = |file: Option<&str>| -> Vec<(String, u32, Option<u32>)> {
        file.unwrap_or("")
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let id = fields.get(2)?.parse().ok()?;
                Some((fields[0].to_string(), id, fields.get(3).and_then(|g| g.parse().ok())))
            })
            .collect()
    };
    let users = entries(passwd);
    let groups = entries(group);
    let id = |value: i64, what: &str| {
        u32::try_from(value).map_err(|_| format!("{what} {value} is out of range"))
    };
    let user_by_uid = |uid: u32| users.iter().find(|(_, id, _)| *id == uid).and_then(|u| u.2);
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (image_user, None),
    };
    let uid = match run_as_user {
        Some(uid) => id(uid, "runAsUser")?,
        None if user_part.is_empty() => 0,
        None => match user_part.parse::<u32>() {
            Ok(uid) => uid,
            Err(_) => users
                .iter()
                .find(|(name, _, _)| name == user_part)
                .map(|u| u.1)
                .ok_or_else(|| format!("unable to find user {user_part}: no matching entries in passwd file"))?,
        },
    };
    let gid = match (run_as_group, group_part.filter(|_| run_as_user.is_none())) {
        (Some(gid), _) => id(gid, "runAsGroup")?,
        (None, Some(group_part)) if !group_part.is_empty() => match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|(name, _, _)| name == group_part)
                .map(|g| g.1)
                .ok_or_else(|| format!("unable to find group {group_part}: no matching entries in group file"))?,
        },
        // A named user brings its own group; a numeric one its entry's.
        _ => user_by_uid(uid).unwrap_or(0),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn selinux_options_become_complete_labels() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"securityContext": {"seLinuxOptions": {"level": "s0:c1,c2"}},
                     "containers": [{"name": "a"}, {"name": "b", "securityContext": {"seLinuxOptions": {"type": "spc_t"}}}]}
        }))
        .unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(
            selinux_labels(&pod, &spec.containers[0]),
            Some(("system_u:system_r:container_t:s0:c1,c2".into(), "system_u:object_r:container_file_t:s0:c1,c2".into()))
        );
        assert_eq!(
            selinux_labels(&pod, &spec.containers[1]).map(|l| l.0),
            Some("system_u:system_r:spc_t:s0".into())
        );
        let plain: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}))
            .unwrap_or_default();
        let container = plain.spec.clone().unwrap_or_default().containers.remove(0);
        assert_eq!(selinux_labels(&plain, &container), None);
    }

    #[test]
    fn users_resolve_as_containerd_resolves_them() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
        let group = "root:x:0:\nstaff:x:50:\napp:x:1001:\n";
        type Case<'a> = (Option<i64>, Option<i64>, &'a str, Result<(u32, u32), &'a str>);
        let cases: Vec<Case> = vec![
            (None, None, "", Ok((0, 0))),
            (None, None, "app", Ok((1000, 1001))),
            (None, None, "1000", Ok((1000, 1001))),
            (None, None, "4242", Ok((4242, 0))),
            (None, None, "app:staff", Ok((1000, 50))),
            (None, None, "nobody:7", Ok((65534, 7))),
            (Some(1000), None, "nobody", Ok((1000, 1001))),
            (Some(5), Some(6), "app", Ok((5, 6))),
            (None, Some(6), "app", Ok((1000, 6))),
            (None, None, "ghost", Err("unable to find user ghost: no matching entries in passwd file")),
            (None, None, "app:ghosts", Err("unable to find group ghosts: no matching entries in group file")),
        ];
        for (run_as_user, run_as_group, image_user, want) in cases {
            let got = resolve_user(run_as_user, run_as_group, image_user, Some(passwd), Some(group));
            assert_eq!(got, want.map_err(str::to_string), "{run_as_user:?} {run_as_group:?} {image_user:?}");
        }
        assert_eq!(resolve_user(None, None, "app", None, None), Err("unable to find user app: no matching entries in passwd file".into()));
    }

    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": spec}))
            .unwrap_or_default()
    }

    fn first(pod: &Pod) -> Container {
        pod.spec.clone().unwrap_or_default().containers.first().cloned().unwrap_or_default()
    }

    fn all() -> Vec<String> {
        skiff_runtime::container::spec::capabilities_in_mask(u64::MAX)
    }

    #[test]
    fn capabilities_stay_within_the_nodes() {
        let node = skiff_runtime::container::spec::capabilities_in_mask(0xa80425fb);
        let p = pod(json!({"containers": [{"name": "c", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}]}));
        assert_eq!(capabilities(&first(&p), &node), node, "privileged: all the node holds, no more");
    }

    #[test]
    fn capabilities_drop_and_add_like_containerd() {
        let cases = [
            (json!(null), DEFAULT_CAPABILITIES.len(), vec![], vec!["CAP_SYS_ADMIN"]),
            (json!({"drop": ["ALL"]}), 0, vec![], vec!["CAP_CHOWN"]),
            (json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}), 1, vec!["CAP_NET_BIND_SERVICE"], vec!["CAP_CHOWN"]),
            (json!({"drop": ["NET_RAW", "cap_chown"]}), DEFAULT_CAPABILITIES.len() - 2, vec!["CAP_KILL"], vec!["CAP_NET_RAW", "CAP_CHOWN"]),
            (json!({"add": ["SYS_ADMIN"]}), DEFAULT_CAPABILITIES.len() + 1, vec!["CAP_SYS_ADMIN"], vec![]),
            (json!({"add": ["ALL"]}), skiff_runtime::container::spec::ALL_CAPABILITIES.len(), vec!["CAP_SYS_MODULE"], vec![]),
        ];
        for (caps, count, present, absent) in cases {
            let p = pod(json!({"containers": [{"name": "c", "securityContext": {"capabilities": caps}}]}));
            let set = capabilities(&first(&p), &all());
            assert_eq!(set.len(), count, "{caps}: {set:?}");
            for cap in present {
                assert!(set.iter().any(|c| c == cap), "{caps}: {cap} missing");
            }
            for cap in absent {
                assert!(!set.iter().any(|c| c == cap), "{caps}: {cap} present");
            }
        }
    }

    #[test]
    fn non_root_is_verified_with_upstreams_messages() {
        let cases = [
            (json!({"runAsNonRoot": true}), "", Some("container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)")),
            (json!({"runAsNonRoot": true}), "app", Some("container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: \"p_ns(u1)\", container: c)")),
            (json!({"runAsNonRoot": true, "runAsUser": 0}), "1000", Some("container's runAsUser breaks non-root policy (pod: \"p_ns(u1)\", container: c)")),
            (json!({"runAsNonRoot": true}), "1000:1000", None),
            (json!({"runAsNonRoot": true, "runAsUser": 1000}), "", None),
            (json!({"runAsNonRoot": false}), "", None),
            (json!({}), "app", None),
        ];
        for (context, user, expected) in cases {
            let p = pod(json!({"containers": [{"name": "c", "securityContext": context}]}));
            let got = verify_run_as_non_root(&p, &first(&p), user).err();
            assert_eq!(got.as_deref(), expected, "{context} with image user {user:?}");
        }
        // The pod's context applies when the container says nothing.
        let p = pod(json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]}));
        assert!(verify_run_as_non_root(&p, &first(&p), "").is_err());
    }

    #[test]
    fn admission_refuses_unsafe_sysctls_and_apparmor() {
        let ok = pod(json!({"securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}, "containers": [{"name": "c"}]}));
        assert_eq!(admit(&ok, false), Ok(()));
        let unsafe_one = pod(json!({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}, "containers": [{"name": "c"}]}));
        assert_eq!(
            admit(&unsafe_one, false),
            Err(Rejection { reason: "SysctlForbidden", message: "forbidden sysctl: \"kernel.msgmax\" not allowlisted".into() })
        );
        let host_net = pod(json!({"hostNetwork": true, "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}, "containers": [{"name": "c"}]}));
        assert!(admit(&host_net, false).is_err_and(|r| r.message.contains("not allowed with host net enabled")));
        let armored = pod(json!({"containers": [{"name": "c", "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}]}));
        assert!(admit(&armored, false).is_err_and(|r| r.message == "Cannot enforce AppArmor: AppArmor is not enabled on the host"));
        let unconfined = pod(json!({"containers": [{"name": "c", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]}));
        assert_eq!(admit(&unconfined, false), Ok(()));
    }

    #[test]
    fn settings_and_groups_from_both_contexts() {
        let p = pod(json!({
            "shareProcessNamespace": true, "hostIPC": true,
            "securityContext": {"supplementalGroups": [5, 6], "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"},
                                "sysctls": [{"name": "net/ipv4/tcp_syncookies", "value": "1"}]},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "privileged": false}}]
        }));
        let c = first(&p);
        let s = security(&p, &c, &all(), None);
        assert!(s.no_new_privileges);
        assert!(!s.privileged);
        assert_eq!(s.sysctls.get("net.ipv4.tcp_syncookies").map(String::as_str), Some("1"));
        assert_eq!(additional_gids(&p), vec![5, 6, 2000]);
        assert_eq!(fs_group(&p), Some(2000));
        assert_eq!(seccomp_profile(&p, &c).map(|s| s.type_), Some("RuntimeDefault".to_string()));
        let options = sandbox_options(&p, "id1");
        assert!(options.share_pid && options.host_ipc && !options.host_network);
        let default = pod(json!({"containers": [{"name": "c"}]}));
        assert!(!security(&default, &first(&default), &all(), None).no_new_privileges, "escalation is allowed unless refused");
    }
}
