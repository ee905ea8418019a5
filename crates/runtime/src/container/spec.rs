//! The OCI runtime config of one container, decided from a plain
//! description: capabilities (Docker's default set unless told otherwise),
//! privileged mode, no_new_privs, seccomp, sysctls, masked and read-only
//! paths, its own mount namespace and the pod's (or the host's) network,
//! UTS, IPC and PID namespaces, resource limits. Pure; checked against
//! `oci_spec`'s `Spec`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability runc knows, in bit order (`CAP_CHOWN` is bit 0).
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities set in a `CapBnd`-style hex mask (`/proc/self/status`).
pub fn capabilities_in_mask(mask: u64) -> Vec<String> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindMount {
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// Read-only below the mount point too (`recursiveReadOnly`): `rro`.
    pub recursive_read_only: bool,
    pub propagation: Propagation,
}

/// Mount propagation (`mountPropagation`): what crosses between the host
/// and the container below the mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Nothing (`None`): rprivate.
    #[default]
    Private,
    /// Host mounts appear in the container (`HostToContainer`): rslave.
    HostToContainer,
    /// Both ways (`Bidirectional`, privileged only): rshared.
    Bidirectional,
}

impl Propagation {
    fn option(self) -> &'static str {
        match self {
            Self::Private => "rprivate",
            Self::HostToContainer => "rslave",
            Self::Bidirectional => "rshared",
        }
    }
}

/// Resource settings, already converted from requests and limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per `cpu_period`.
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
}

/// How a container gets one of its namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Namespace {
    /// A new one of its own.
    #[default]
    Private,
    /// The one at this path (`/proc/<sandbox>/ns/net`).
    Join(String),
    /// The host's (the runtime's own).
    Host,
}

/// The container's network, UTS, IPC and PID namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub network: Namespace,
    pub uts: Namespace,
    pub ipc: Namespace,
    pub pid: Namespace,
}

impl Namespaces {
    /// Network, UTS and IPC of the sandbox process `pid`, a PID namespace of its own.
    pub fn of_sandbox(pid: u32) -> Self {
        let join = |kind: &str| Namespace::Join(format!("/proc/{pid}/ns/{kind}"));
        Self {
            network: join("net"),
            uts: join("uts"),
            ipc: join("ipc"),
            pid: Namespace::Private,
        }
    }
}

/// The security settings of one container, already decided from its
/// securityContext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// Bounding, effective and permitted set (`CAP_`-prefixed names); for
    /// a privileged container, every capability the node holds.
    pub capabilities: Vec<String>,
    /// The host's devices, no masked paths, writable /sys.
    pub privileged: bool,
    pub no_new_privileges: bool,
    /// An OCI `linux.seccomp` object; `None` runs unconfined.
    pub seccomp: Option<Value>,
    /// Namespaced sysctls to set in the container's namespaces.
    pub sysctls: BTreeMap<String, String>,
    /// SELinux process and mount labels (`user:role:type:level`); only
    /// on a node with SELinux enabled (runc refuses them otherwise).
    pub selinux: Option<(String, String)>,
}

impl Default for Security {
    fn default() -> Self {
        Self {
            capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            privileged: false,
            no_new_privileges: false,
            seccomp: None,
            sysctls: BTreeMap::new(),
            selinux: None,
        }
    }
}

/// Everything that decides one container's OCI config.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub namespaces: Namespaces,
    pub security: Security,
    pub mounts: Vec<BindMount>,
    pub readonly_rootfs: bool,
    pub cgroups_path: String,
    pub limits: Limits,
    /// The process runs on a terminal (`tty: true`).
    pub terminal: bool,
}

/// The `config.json` of the bundle.
pub fn oci_config(config: &ContainerConfig) -> Value {
    let security = &config.security;
    let privileged = security.privileged;
    // A privileged container sees the host's devices and may write /sys.
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut mounts = Vec::new();
    if privileged {
        mounts.push(json!({"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind", "rslave", "nosuid"]}));
    } else {
        mounts.push(json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}));
    }
    mounts.splice(0..0, [json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]})]);
    mounts.extend([
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_mode]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode]}),
    ]);
    for mount in &config.mounts {
        let mode = match (mount.read_only, mount.recursive_read_only) {
            (true, true) => "rro",
            (true, false) => "ro",
            (false, _) => "rw",
        };
        mounts.push(
            json!({"destination": mount.destination, "type": "bind", "source": mount.source,
                           "options": ["rbind", mount.propagation.option(), mode]}),
        );
    }
    let devices = json!([{"allow": privileged, "access": "rwm"}]);
    let mut resources = json!({"devices": devices});
    if let Some(limit) = config.limits.memory_bytes {
        resources["memory"] = json!({"limit": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = config.limits.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = config.limits.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
        cpu.insert(
            "period".into(),
            json!(config.limits.cpu_period.unwrap_or(100_000)),
        );
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    let caps = &security.capabilities;
    let mut user = json!({"uid": config.uid, "gid": config.gid});
    if !config.additional_gids.is_empty() {
        user["additionalGids"] = json!(config.additional_gids);
    }
    let mut namespaces = vec![json!({"type": "mount"})];
    for (kind, namespace) in [
        ("pid", &config.namespaces.pid),
        ("network", &config.namespaces.network),
        ("uts", &config.namespaces.uts),
        ("ipc", &config.namespaces.ipc),
    ] {
        match namespace {
            Namespace::Private => namespaces.push(json!({"type": kind})),
            Namespace::Join(path) => namespaces.push(json!({"type": kind, "path": path})),
            Namespace::Host => {}
        }
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": config.cgroups_path,
        "resources": resources,
    });
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if let Some(seccomp) = &security.seccomp {
        linux["seccomp"] = seccomp.clone();
    }
    if !security.sysctls.is_empty() {
        linux["sysctl"] = json!(security.sysctls);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": config.terminal,
            "user": user,
            "args": config.args,
            "env": config.env,
            "cwd": if config.cwd.is_empty() { "/" } else { config.cwd.as_str() },
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": security.no_new_privileges,
        },
        "root": {"path": "rootfs", "readonly": config.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if let Some((process_label, mount_label)) = &security.selinux {
        spec["process"]["selinuxLabel"] = json!(process_label);
        spec["linux"]["mountLabel"] = json!(mount_label);
    }
    // A container in the host's UTS namespace must not set its hostname.
    if config.namespaces.uts != Namespace::Host {
        spec["hostname"] = json!(config.hostname);
    }
    spec
}

/// Checks the config against the OCI runtime spec's types.
pub fn validate(config: &Value) -> Result<(), String> {
    serde_json::from_value::<oci_spec::runtime::Spec>(config.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_valid_oci_and_join_the_sandbox() -> Result<(), String> {
        let config = ContainerConfig {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["PATH=/bin".into()],
            hostname: "web".into(),
            namespaces: Namespaces::of_sandbox(42),
            mounts: vec![BindMount {
                source: "/var/lib/skiff/pods/x/hosts".into(),
                destination: "/etc/hosts".into(),
                read_only: false,
                ..Default::default()
            }],
            cgroups_path: "/skiff/pod-uid/c1".into(),
            limits: Limits {
                memory_bytes: Some(64 << 20),
                cpu_shares: Some(102),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
            },
            ..Default::default()
        };
        let spec = oci_config(&config);
        validate(&spec)?;
        assert_eq!(
            spec["linux"]["namespaces"][2],
            json!({"type": "network", "path": "/proc/42/ns/net"})
        );
        assert_eq!(spec["linux"]["namespaces"][1], json!({"type": "pid"}));
        assert_eq!(spec["process"]["noNewPrivileges"], false);
        assert!(spec["linux"].get("seccomp").is_none());
        assert_eq!(spec["linux"]["maskedPaths"].as_array().map(Vec::len), Some(11));
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(
            spec["linux"]["resources"]["cpu"],
            json!({"shares": 102, "quota": 50_000, "period": 100_000})
        );
        assert_eq!(spec["process"]["cwd"], "/");
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .map(Vec::len),
            Some(14)
        );
        assert!(
            spec["process"].get("rlimits").is_none(),
            "never ask for rlimits above the host's hard limits"
        );
        assert!(spec["mounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["destination"] == "/etc/hosts")));
        Ok(())
    }

    #[test]
    fn privileged_host_namespaces_and_security_settings() -> Result<(), String> {
        let mut sysctls = BTreeMap::new();
        sysctls.insert("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string());
        let config = ContainerConfig {
            args: vec!["sh".into()],
            hostname: "web".into(),
            namespaces: Namespaces {
                network: Namespace::Host,
                uts: Namespace::Host,
                ipc: Namespace::Join("/proc/7/ns/ipc".into()),
                pid: Namespace::Join("/proc/8/ns/pid".into()),
            },
            security: Security {
                capabilities: capabilities_in_mask(u64::MAX),
                privileged: true,
                no_new_privileges: true,
                seccomp: Some(json!({"defaultAction": "SCMP_ACT_ALLOW"})),
                sysctls,
                selinux: Some(("u:r:t:s0".into(), "u:object_r:f:s0".into())),
            },
            ..Default::default()
        };
        let spec = oci_config(&config);
        validate(&spec)?;
        let kinds: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert_eq!(kinds, ["mount", "pid", "ipc"], "host network and UTS are not listed");
        assert!(spec.get("hostname").is_none());
        assert!(spec["linux"].get("maskedPaths").is_none());
        assert_eq!(spec["linux"]["resources"]["devices"][0]["allow"], true);
        assert_eq!(
            spec["process"]["capabilities"]["bounding"].as_array().map(Vec::len),
            Some(ALL_CAPABILITIES.len())
        );
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"], "0");
        assert_eq!(capabilities_in_mask(0x400), ["CAP_NET_BIND_SERVICE"]);
        assert_eq!(capabilities_in_mask(0xa80425fb).len(), DEFAULT_CAPABILITIES.len());
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(spec["process"]["selinuxLabel"], "u:r:t:s0");
        assert_eq!(spec["linux"]["mountLabel"], "u:object_r:f:s0");
        Ok(())
    }
}
