//! Pod-level cgroups under kubelet's `kubepods` tree, split by QoS class
//! (`/kubepods/pod<uid>` for Guaranteed, `/kubepods/burstable/pod<uid>`,
//! `/kubepods/besteffort/pod<uid>`), on cgroup v1 (one directory per
//! controller) and on the unified v2 hierarchy. Container cgroups are made
//! below them by the OCI runtime.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
/// The CFS period kubelet uses.
pub const CPU_PERIOD: u64 = 100_000;

/// What a pod's cgroup is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodResources {
    /// `/kubepods/burstable/pod<uid>` and so on.
    pub path: String,
    /// cpu.shares (v1); converted to cpu.weight on v2.
    pub cpu_shares: u64,
    /// CFS quota in µs per [`CPU_PERIOD`], when every container has a cpu limit.
    pub cpu_quota: Option<i64>,
    /// When every container has a memory limit.
    pub memory_limit: Option<i64>,
}

/// The pod cgroup path for a QoS class (`Guaranteed`, `Burstable`, `BestEffort`).
pub fn pod_cgroup_path(qos_class: &str, uid: &str) -> String {
    match qos_class {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// Whether the unified (v2) hierarchy is the only one.
pub fn is_v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// cpu.shares → cpu.weight, as runc and kubelet convert it.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// The v1 directory of `controller` (e.g. `cpu` may be `cpu,cpuacct`).
fn v1_controller_dir(controller: &str) -> Option<PathBuf> {
    let direct = Path::new(ROOT).join(controller);
    if direct.is_dir() {
        return Some(direct);
    }
    std::fs::read_dir(ROOT)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.split(',').any(|c| c == controller))
        })
}

fn write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("write {value:?} to {}: {e}", dir.join(file).display()),
        )
    })
}

/// Creates (or updates) the pod's cgroup with its limits.
pub fn ensure_pod_cgroup(resources: &PodResources) -> std::io::Result<()> {
    let relative = resources.path.trim_start_matches('/');
    if is_v2() {
        let root = Path::new(ROOT);
        // Each ancestor hands cpu and memory down to its children.
        let mut dir = root.to_path_buf();
        for part in relative.split('/') {
            let _ = write(&dir, "cgroup.subtree_control", "+cpu +memory");
            dir = dir.join(part);
            std::fs::create_dir_all(&dir)?;
        }
        write(
            &dir,
            "cpu.weight",
            &shares_to_weight(resources.cpu_shares).to_string(),
        )?;
        let quota = resources
            .cpu_quota
            .map(|q| q.to_string())
            .unwrap_or_else(|| "max".into());
        write(&dir, "cpu.max", &format!("{quota} {CPU_PERIOD}"))?;
        let memory = resources
            .memory_limit
            .map(|m| m.to_string())
            .unwrap_or_else(|| "max".into());
        return write(&dir, "memory.max", &memory);
    }
    if let Some(cpu) = v1_controller_dir("cpu") {
        let dir = cpu.join(relative);
        std::fs::create_dir_all(&dir)?;
        write(&dir, "cpu.shares", &resources.cpu_shares.to_string())?;
        write(&dir, "cpu.cfs_period_us", &CPU_PERIOD.to_string())?;
        write(
            &dir,
            "cpu.cfs_quota_us",
            &resources.cpu_quota.unwrap_or(-1).to_string(),
        )?;
    }
    if let Some(memory) = v1_controller_dir("memory") {
        let dir = memory.join(relative);
        std::fs::create_dir_all(&dir)?;
        write(
            &dir,
            "memory.limit_in_bytes",
            &resources.memory_limit.unwrap_or(-1).to_string(),
        )?;
    }
    Ok(())
}

/// Removes a cgroup (e.g. a pod's `/skiff/pod<uid>`, once its containers
/// are gone) from every hierarchy: each v1 controller, or the v2 tree.
pub fn remove_cgroup(path: &str) {
    let relative = path.trim_start_matches('/');
    if relative.is_empty() {
        return;
    }
    let root = Path::new(ROOT);
    let hierarchies = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .chain([root.to_path_buf()]);
    for hierarchy in hierarchies {
        let dir = hierarchy.join(relative);
        if dir.is_dir() {
            if let Err(error) = std::fs::remove_dir(&dir) {
                tracing::debug!(cgroup = %dir.display(), %error, "cgroup not removed");
            }
        }
    }
}

/// Whether the kernel's OOM killer killed a process in the cgroup at
/// `path` (a container's), read before the runtime removes it.
pub fn oom_killed(path: &str) -> bool {
    let relative = path.trim_start_matches('/');
    let (dir, file) = if is_v2() {
        (Path::new(ROOT).join(relative), "memory.events")
    } else {
        match v1_controller_dir("memory") {
            Some(memory) => (memory.join(relative), "memory.oom_control"),
            None => return false,
        }
    };
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .any(|(key, value)| key == "oom_kill" && value.trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes_have_their_own_subtrees() {
        assert_eq!(pod_cgroup_path("Guaranteed", "u"), "/kubepods/podu");
        assert_eq!(
            pod_cgroup_path("Burstable", "u"),
            "/kubepods/burstable/podu"
        );
        assert_eq!(
            pod_cgroup_path("BestEffort", "u"),
            "/kubepods/besteffort/podu"
        );
    }

    #[test]
    fn shares_convert_to_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(102), 4);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
