//! Every securityContext field with real pods, read from inside the
//! container (`/proc/self/status`, `id`, `/proc/sys`, mounts, namespaces),
//! pods the kubelet refuses with upstream's reasons, and a sandbox that
//! dies under a running pod.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{pod, Skiff, TEST_IMAGE};
use serde_json::Value;

fn logs(skiff: &Skiff, pod: &str, container: &str) -> Result<String> {
    Ok(skiff.kubectl(&["logs", pod, "-c", container])?.stdout)
}

/// Waits until the container printed `DONE` and returns its log.
fn output(skiff: &Skiff, pod: &str, container: &str) -> Result<String> {
    let mut text = String::new();
    skiff
        .wait_for(Duration::from_secs(60), &format!("{pod}/{container} to report"), || {
            text = logs(skiff, pod, container).unwrap_or_default();
            Ok(text.contains("DONE"))
        })
        .with_context(|| format!("{pod}: {:#}", self::pod(skiff, pod).unwrap_or_default()["status"]))?;
    Ok(text)
}

fn status_field<'a>(text: &'a str, field: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .map(str::trim)
        .unwrap_or("")
}

fn waiting(skiff: &Skiff, name: &str, reason: &str) -> Result<Value> {
    let mut state = Value::Null;
    skiff
        .wait_for(Duration::from_secs(60), &format!("{name} waiting with {reason}"), || {
            let p = pod(skiff, name)?;
            state = p["status"]["containerStatuses"][0]["state"].clone();
            Ok(state["waiting"]["reason"] == reason)
        })
        .with_context(|| format!("{state:#}"))?;
    Ok(state["waiting"].clone())
}

const REPORT: &str = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; id; echo DONE; sleep 3600";

#[test]
fn security_context_fields_are_honoured_inside_the_container() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let profiles = skiff.data_dir_path().join("seccomp");
    std::fs::create_dir_all(&profiles)?;
    std::fs::write(
        profiles.join("deny-chmod.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod", "fchmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )?;
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: locked}}
spec:
  securityContext:
    runAsUser: 1000
    supplementalGroups: [5, 6]
    fsGroup: 2000
    seccompProfile: {{type: RuntimeDefault}}
    sysctls:
    - {{name: net.ipv4.ip_unprivileged_port_start, value: "0"}}
    - {{name: kernel.shm_rmid_forced, value: "1"}}
  volumes: [{{name: data, emptyDir: {{}}}}]
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "{REPORT_FS}"]
    volumeMounts: [{{name: data, mountPath: /data}}]
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: plain}}
spec:
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "{REPORT}"]
---
apiVersion: v1
kind: Pod
metadata: {{name: privileged}}
spec:
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status; grep ' /sys ' /proc/mounts; ls /dev | wc -l; echo DONE; sleep 3600"]
    securityContext: {{privileged: true, seccompProfile: {{type: RuntimeDefault}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: local-profile}}
spec:
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "grep '^Seccomp:' /proc/self/status; chmod 700 /tmp && echo chmod-allowed || echo chmod-denied; echo DONE; sleep 3600"]
    securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: deny-chmod.json}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: shared}}
spec:
  shareProcessNamespace: true
  containers:
  - name: sleeper
    image: {TEST_IMAGE}
    command: ["sleep", "3600"]
  - name: looker
    image: {TEST_IMAGE}
    command: ["sh", "-c", "sleep 2; ps; echo DONE; sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: host}}
spec:
  hostNetwork: true
  hostPID: true
  hostIPC: true
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "for n in net pid ipc uts; do readlink /proc/self/ns/$n; done; hostname; echo DONE; sleep 3600"]
"#,
        REPORT_FS = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; id; cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced; stat -c mode=%a,gid=%g /data; touch /data/f; stat -c file-gid=%g /data/f; echo DONE; sleep 3600",
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;

    let locked = output(&skiff, "locked", "c")?;
    ensure!(status_field(&locked, "CapBnd:") == "0000000000000400", "drop ALL, add NET_BIND_SERVICE:\n{locked}");
    ensure!(status_field(&locked, "NoNewPrivs:") == "1", "allowPrivilegeEscalation: false:\n{locked}");
    ensure!(status_field(&locked, "Seccomp:") == "2", "RuntimeDefault filters:\n{locked}");
    ensure!(locked.contains("uid=1000"), "{locked}");
    for group in ["5", "6", "2000"] {
        ensure!(locked.split("groups=").nth(1).is_some_and(|g| g.split(|c: char| !c.is_ascii_digit()).any(|n| n == group)), "group {group}:\n{locked}");
    }
    ensure!(locked.contains("\n0\n1\n"), "sysctls set in the pod's namespaces:\n{locked}");
    ensure!(locked.contains("mode=2777,gid=2000"), "fsGroup owns the emptyDir with setgid:\n{locked}");
    ensure!(locked.contains("file-gid=2000"), "new files get the fsGroup:\n{locked}");

    let plain = output(&skiff, "plain", "c")?;
    ensure!(status_field(&plain, "CapBnd:") == "00000000a80425fb", "Docker's default capabilities:\n{plain}");
    ensure!(status_field(&plain, "NoNewPrivs:") == "0" && status_field(&plain, "Seccomp:") == "0", "unconfined by default, as upstream:\n{plain}");
    ensure!(plain.contains("uid=0"), "{plain}");

    let privileged = output(&skiff, "privileged", "c")?;
    let full = std::fs::read_to_string("/proc/self/status")?;
    ensure!(status_field(&privileged, "CapEff:") == status_field(&full, "CapEff:"), "privileged gets every capability:\n{privileged}");
    ensure!(status_field(&privileged, "Seccomp:") == "0", "privileged runs without seccomp:\n{privileged}");
    ensure!(privileged.lines().any(|l| l.contains(" /sys ") && l.contains("rw")), "writable /sys:\n{privileged}");

    let local = output(&skiff, "local-profile", "c")?;
    ensure!(status_field(&local, "Seccomp:") == "2" && local.contains("chmod-denied"), "the Localhost profile applies:\n{local}");

    let shared = output(&skiff, "shared", "looker")?;
    ensure!(shared.contains("sleep 3600"), "the other container's process is visible:\n{shared}");
    ensure!(shared.lines().any(|l| l.split_whitespace().next() == Some("1") && l.contains("pause")), "the sandbox is PID 1:\n{shared}");

    let host = output(&skiff, "host", "c")?;
    let server = skiff.pid().context("server pid")?;
    for ns in ["net", "pid", "ipc", "uts"] {
        let ours = std::fs::read_link(format!("/proc/{server}/ns/{ns}"))?.display().to_string();
        ensure!(host.contains(&ours), "host{ns}: the node's {ns} namespace {ours}:\n{host}");
    }
    let p = pod(&skiff, "host")?;
    ensure!(p["status"]["podIP"] == p["status"]["hostIP"], "hostNetwork pod IP is the node's: {:#}", p["status"]);
    Ok(())
}

#[test]
fn pods_the_kubelet_cannot_run_as_specified_are_refused_with_upstreams_reasons() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: unsafe-sysctl}}
spec:
  securityContext:
    sysctls: [{{name: kernel.msgmax, value: "65536"}}]
  containers: [{{name: c, image: {TEST_IMAGE}, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: nonroot}}
spec:
  securityContext: {{runAsNonRoot: true}}
  containers: [{{name: c, image: {TEST_IMAGE}, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: missing-profile}}
spec:
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sleep", "3600"]
    securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: nope.json}}}}
"#
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    let mut p = Value::Null;
    skiff
        .wait_for(Duration::from_secs(30), "the unsafe sysctl pod to be rejected", || {
            p = pod(&skiff, "unsafe-sysctl")?;
            Ok(p["status"]["phase"] == "Failed")
        })
        .with_context(|| format!("{:#}", p["status"]))?;
    ensure!(p["status"]["reason"] == "SysctlForbidden", "{:#}", p["status"]);
    ensure!(
        p["status"]["message"] == "Pod was rejected: forbidden sysctl: \"kernel.msgmax\" not allowlisted",
        "{:#}",
        p["status"]
    );
    let uid = pod(&skiff, "nonroot")?["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let nonroot = waiting(&skiff, "nonroot", "CreateContainerConfigError")?;
    ensure!(
        nonroot["message"] == format!("container has runAsNonRoot and image will run as root (pod: \"nonroot_default({uid})\", container: c)"),
        "{nonroot:#}"
    );
    let missing = waiting(&skiff, "missing-profile", "CreateContainerError")?;
    ensure!(
        missing["message"].as_str().is_some_and(|m| m.contains("cannot load seccomp profile") && m.contains("nope.json: no such file or directory")),
        "{missing:#}"
    );
    let events = skiff.kubectl(&["get", "events", "-o", "json"])?.ok()?.stdout;
    ensure!(events.contains("SysctlForbidden") && events.contains("Error: container has runAsNonRoot"), "events say why:\n{events}");
    let invalid = skiff.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: hostport}}\nspec:\n  hostNetwork: true\n  containers: [{{name: c, image: {TEST_IMAGE}, ports: [{{containerPort: 80, hostPort: 8080}}]}}]\n"),
    )?;
    ensure!(
        invalid.stderr.contains("must match `containerPort` when `hostNetwork` is true"),
        "{}",
        invalid.stderr
    );
    Ok(())
}

#[test]
fn a_dead_sandbox_is_noticed_and_the_pod_restarts_in_a_new_one() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: victim}}\nspec:\n  containers: [{{name: c, image: {TEST_IMAGE}, command: [\"sh\", \"-c\", \"hostname; sleep 3600\"]}}]\n"
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    skiff.wait_for(Duration::from_secs(60), "victim running", || {
        Ok(pod(&skiff, "victim")?["status"]["containerStatuses"][0]["ready"] == true)
    })?;
    let sandboxes = skiff.data_dir_path().join("sandboxes");
    let sandbox_pids = || -> Result<Vec<String>> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir(&sandboxes)? {
            pids.push(std::fs::read_to_string(entry?.path())?);
        }
        Ok(pids)
    };
    let before = sandbox_pids()?;
    ensure!(before.len() == 1, "one sandbox: {before:?}");
    let host_name_before = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    let killed = std::process::Command::new("kill").args(["-9", before[0].trim()]).status()?;
    ensure!(killed.success());
    let mut p = Value::Null;
    skiff
        .wait_for(Duration::from_secs(60), "the pod to run again in a new sandbox", || {
            p = pod(&skiff, "victim")?;
            let status = &p["status"]["containerStatuses"][0];
            Ok(status["ready"] == true && status["restartCount"].as_i64().unwrap_or(0) >= 1)
        })
        .with_context(|| format!("{:#}\nnode log:\n{}", p["status"], skiff.node_logs()))?;
    let after = sandbox_pids()?;
    ensure!(after.len() == 1 && after != before, "a new sandbox: {before:?} -> {after:?}");
    ensure!(p["status"]["podIP"].as_str().is_some_and(|ip| !ip.is_empty()), "{:#}", p["status"]);
    let events = skiff.kubectl(&["get", "events", "--field-selector", "involvedObject.name=victim"])?.ok()?.stdout;
    ensure!(events.contains("SandboxChanged") && events.contains("Pod sandbox changed, it will be killed and re-created."), "{events}");
    ensure!(logs(&skiff, "victim", "c")?.contains("victim"), "the new container has the pod's hostname");
    ensure!(std::fs::read_to_string("/proc/sys/kernel/hostname")? == host_name_before, "the host's hostname is untouched");
    Ok(())
}

/// An image's `USER` by name is looked up in the image's own /etc/passwd
/// and /etc/group, as containerd does; a name the image lacks refuses the
/// container with runc's words.
#[test]
fn image_users_by_name_resolve_in_the_image() -> Result<()> {
    let skiff = Skiff::start_node()?;
    skiff.start_registry("127.0.0.1:5000/test/busybox:1")?;
    for (tag, user) in [("named", "nobody"), ("ghost", "ghost"), ("grouped", "nobody:root")] {
        let image = format!("127.0.0.1:5000/test/users:{tag}");
        skiff.in_node_netns(move || async move {
            let mut spec = skiff_runtime::image::build::ImageSpec::busybox(std::path::Path::new("/bin/busybox"))?;
            spec.user = user.to_string();
            spec.push_with_auth(&image, &oci_client::secrets::RegistryAuth::Anonymous).await?;
            Ok(())
        })?;
    }
    let manifest = |name: &str, tag: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  securityContext: {{seLinuxOptions: {{level: \"s0:c1\"}}}}\n  containers:\n  - name: c\n    image: 127.0.0.1:5000/test/users:{tag}\n    command: [\"sh\", \"-c\", \"id; echo DONE; sleep 3600\"]\n")
    };
    for (name, tag) in [("named", "named"), ("ghost", "ghost"), ("grouped", "grouped")] {
        skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest(name, tag))?.ok()?;
    }
    let id = output(&skiff, "named", "c")?;
    ensure!(id.contains("uid=65534(nobody) gid=65534(nobody)"), "{id}");
    let id = output(&skiff, "grouped", "c")?;
    ensure!(id.contains("uid=65534(nobody) gid=0(root)"), "{id}");
    // seLinuxOptions on a node without SELinux: said, not silently dropped.
    if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        let events = skiff.kubectl(&["get", "events", "--field-selector", "involvedObject.name=named,reason=SELinuxNotEnabled", "-o", "jsonpath={.items[*].message}"])?.ok()?.stdout;
        ensure!(
            events.contains("seLinuxOptions of container c are not applied: SELinux is not enabled on this node"),
            "{events}"
        );
    }
    let state = waiting(&skiff, "ghost", "CreateContainerError")?;
    ensure!(
        state["message"] == "unable to find user ghost: no matching entries in passwd file",
        "{state:#}"
    );
    Ok(())
}
