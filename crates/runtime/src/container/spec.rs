//! The OCI runtime config of one container, decided from a plain
//! description: Docker's default capabilities, masked and read-only paths,
//! its own mount and PID namespaces, the pod sandbox's network, UTS and IPC
//! namespaces, resource limits. Pure; checked against `oci_spec`'s `Spec`.

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: String,
    pub destination: String,
    pub read_only: bool,
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
    /// The sandbox process whose network, UTS and IPC namespaces are joined.
    pub sandbox_pid: u32,
    pub mounts: Vec<BindMount>,
    pub readonly_rootfs: bool,
    pub cgroups_path: String,
    pub limits: Limits,
}

/// The `config.json` of the bundle.
pub fn oci_config(config: &ContainerConfig) -> Value {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for mount in &config.mounts {
        let mode = if mount.read_only { "ro" } else { "rw" };
        mounts.push(
            json!({"destination": mount.destination, "type": "bind", "source": mount.source,
                           "options": ["rbind", "rprivate", mode]}),
        );
    }
    let namespace = |kind: &str| format!("/proc/{}/ns/{kind}", config.sandbox_pid);
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
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
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    let mut user = json!({"uid": config.uid, "gid": config.gid});
    if !config.additional_gids.is_empty() {
        user["additionalGids"] = json!(config.additional_gids);
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": user,
            "args": config.args,
            "env": config.env,
            "cwd": if config.cwd.is_empty() { "/" } else { config.cwd.as_str() },
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": config.readonly_rootfs},
        "hostname": config.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "mount"},
                {"type": "network", "path": namespace("net")},
                {"type": "uts", "path": namespace("uts")},
                {"type": "ipc", "path": namespace("ipc")},
            ],
            "cgroupsPath": config.cgroups_path,
            "resources": resources,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        }
    })
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
            sandbox_pid: 42,
            mounts: vec![BindMount {
                source: "/var/lib/skiff/pods/x/hosts".into(),
                destination: "/etc/hosts".into(),
                read_only: false,
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
}
