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

/// Whether the node's unified (v2) hierarchy is the only one.
pub fn is_v2() -> bool {
    Cgroups::system().is_v2()
}

/// cpu.shares → cpu.weight, as runc and kubelet convert it.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("write {value:?} to {}: {e}", dir.join(file).display()),
        )
    })
}

/// Writes a CPU bandwidth setting (`cpu.max`, `cpu.cfs_period_us`,
/// `cpu.cfs_quota_us`) unless it already holds `value`: the kernel checks
/// every write against the whole tree of task groups (`walk_tg_tree`), so
/// writing the defaults into each new pod cgroup cost time in proportion
/// to the cgroups already on the node.
fn write_bandwidth(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    match std::fs::read_to_string(dir.join(file)) {
        Ok(current) if current.trim() == value => Ok(()),
        _ => write(dir, file, value),
    }
}

/// The QoS subtrees pod cgroups live in.
const POD_TREES: [&str; 3] = ["kubepods", "kubepods/burstable", "kubepods/besteffort"];

/// A cgroup filesystem mounted at `root` (v1: one directory per
/// controller below it; v2: the unified tree itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The node's cgroups at `/sys/fs/cgroup`.
    pub fn system() -> Self {
        Self::new(ROOT)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the unified (v2) hierarchy is the only one.
    pub fn is_v2(&self) -> bool {
        self.root.join("cgroup.controllers").exists()
    }

    /// The v1 directory of `controller` (e.g. `cpu` may be `cpu,cpuacct`).
    fn v1_controller_dir(&self, controller: &str) -> Option<PathBuf> {
        let direct = self.root.join(controller);
        if direct.is_dir() {
            return Some(direct);
        }
        std::fs::read_dir(&self.root)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.split(',').any(|c| c == controller))
            })
    }

    /// The directories that hold cgroup trees: each v1 hierarchy and the
    /// root itself (v2, or a hybrid's unified mount).
    fn hierarchies(&self) -> impl Iterator<Item = PathBuf> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .chain([self.root.clone()])
    }

    /// Creates (or updates) the pod's cgroup with its limits.
    pub fn ensure_pod_cgroup(&self, resources: &PodResources) -> std::io::Result<()> {
        let relative = resources.path.trim_start_matches('/');
        if self.is_v2() {
            // Each ancestor hands cpu and memory down to its children.
            let mut dir = self.root.clone();
            for part in relative.split('/') {
                if let Err(error) = write(&dir, "cgroup.subtree_control", "+cpu +memory") {
                    tracing::debug!(%error, "controllers not delegated");
                }
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
            write_bandwidth(&dir, "cpu.max", &format!("{quota} {CPU_PERIOD}"))?;
            let memory = resources
                .memory_limit
                .map(|m| m.to_string())
                .unwrap_or_else(|| "max".into());
            return write(&dir, "memory.max", &memory);
        }
        if let Some(cpu) = self.v1_controller_dir("cpu") {
            let dir = cpu.join(relative);
            std::fs::create_dir_all(&dir)?;
            write(&dir, "cpu.shares", &resources.cpu_shares.to_string())?;
            write_bandwidth(&dir, "cpu.cfs_period_us", &CPU_PERIOD.to_string())?;
            write_bandwidth(
                &dir,
                "cpu.cfs_quota_us",
                &resources.cpu_quota.unwrap_or(-1).to_string(),
            )?;
        }
        if let Some(memory) = self.v1_controller_dir("memory") {
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

    /// Removes a cgroup (e.g. a pod's `/kubepods/pod<uid>`, once its
    /// containers are gone) from every hierarchy: each v1 controller, or
    /// the v2 tree.
    pub fn remove_cgroup(&self, path: &str) {
        let relative = path.trim_start_matches('/');
        if relative.is_empty() {
            return;
        }
        for hierarchy in self.hierarchies() {
            let dir = hierarchy.join(relative);
            if dir.is_dir() {
                if let Err(error) = std::fs::remove_dir(&dir) {
                    tracing::debug!(cgroup = %dir.display(), %error, "cgroup not removed");
                }
            }
        }
    }

    /// The pod cgroups that exist in any hierarchy, as paths
    /// (`/kubepods/burstable/pod<uid>`), each once.
    pub fn pod_cgroups(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .hierarchies()
            .flat_map(|hierarchy| {
                POD_TREES.into_iter().flat_map(move |tree| {
                    std::fs::read_dir(hierarchy.join(tree))
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|name| name.starts_with("pod"))
                        .map(move |name| format!("/{tree}/{name}"))
                })
            })
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// Whether the kernel's OOM killer killed a process in the cgroup at
    /// `path` (a container's), read before the runtime removes it.
    pub fn oom_killed(&self, path: &str) -> bool {
        let relative = path.trim_start_matches('/');
        let (dir, file) = if self.is_v2() {
            (self.root.join(relative), "memory.events")
        } else {
            match self.v1_controller_dir("memory") {
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
}

/// What a cgroup (or the node) has used: CPU time so far and the memory
/// working set now, the two figures of the kubelet's resource metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub cpu_nanoseconds: u64,
    /// Usage less inactive file cache, as cAdvisor counts it.
    pub memory_working_set_bytes: u64,
}

/// `key value` lines (cpu.stat, memory.stat): the value of `key`.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Cgroups {
    /// The usage of the cgroup at `path` (a pod's or a container's), or
    /// `None` when it is gone.
    pub fn usage(&self, path: &str) -> Option<Usage> {
        let relative = path.trim_start_matches('/');
        let (cpu_nanoseconds, usage, memory_stat, inactive_key) = if self.is_v2() {
            let dir = self.root.join(relative);
            let cpu = stat_value(&std::fs::read_to_string(dir.join("cpu.stat")).ok()?, "usage_usec")? * 1000;
            let usage = read_number(&dir.join("memory.current"))?;
            (cpu, usage, std::fs::read_to_string(dir.join("memory.stat")).ok()?, "inactive_file")
        } else {
            let cpu = read_number(&self.v1_controller_dir("cpuacct")?.join(relative).join("cpuacct.usage"))?;
            let memory = self.v1_controller_dir("memory")?.join(relative);
            let usage = read_number(&memory.join("memory.usage_in_bytes"))?;
            (cpu, usage, std::fs::read_to_string(memory.join("memory.stat")).ok()?, "total_inactive_file")
        };
        let inactive = stat_value(&memory_stat, inactive_key).unwrap_or(0);
        Some(Usage {
            cpu_nanoseconds,
            memory_working_set_bytes: usage.saturating_sub(inactive),
        })
    }
}

/// The node's usage from `/proc/stat` (busy CPU time) and `/proc/meminfo`
/// (total less available memory), given their texts.
pub fn node_usage(proc_stat: &str, meminfo: &str) -> Option<Usage> {
    // user nice system idle iowait irq softirq steal, in USER_HZ (100/s).
    let ticks: Vec<u64> = proc_stat
        .lines()
        .find(|l| l.starts_with("cpu "))?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4))
        .take(6)
        .map(|(_, v)| v)
        .sum();
    let kib = |key: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Usage {
        cpu_nanoseconds: busy * 10_000_000,
        memory_working_set_bytes: kib("MemTotal:")?.saturating_sub(kib("MemAvailable:")?) * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(path: &str) -> PodResources {
        PodResources {
            path: path.into(),
            cpu_shares: 1024,
            cpu_quota: Some(50_000),
            memory_limit: Some(64 << 20),
        }
    }

    #[test]
    fn v2_pod_cgroups_get_weight_quota_and_memory() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory")?;
        let cgroups = Cgroups::new(root.path());
        assert!(cgroups.is_v2());
        cgroups.ensure_pod_cgroup(&resources("/kubepods/burstable/podu"))?;
        let dir = root.path().join("kubepods/burstable/podu");
        assert_eq!(std::fs::read_to_string(dir.join("cpu.weight"))?, "39");
        assert_eq!(std::fs::read_to_string(dir.join("cpu.max"))?, "50000 100000");
        assert_eq!(std::fs::read_to_string(dir.join("memory.max"))?, "67108864");
        assert_eq!(
            std::fs::read_to_string(root.path().join("kubepods/cgroup.subtree_control"))?,
            "+cpu +memory"
        );
        assert_eq!(cgroups.pod_cgroups(), vec!["/kubepods/burstable/podu".to_string()]);
        std::fs::write(dir.join("memory.events"), "low 0\noom 1\noom_kill 1\n")?;
        assert!(cgroups.oom_killed("/kubepods/burstable/podu"));
        Ok(())
    }

    #[test]
    fn cpu_bandwidth_already_set_is_not_written_again() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        let cpu = root.path().join("cpu,cpuacct/kubepods/podq");
        std::fs::create_dir_all(&cpu)?;
        // What the kernel shows in a new cgroup.
        std::fs::write(cpu.join("cpu.cfs_period_us"), "100000\n")?;
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "-1\n")?;
        let modified = |file: &str| std::fs::metadata(cpu.join(file)).and_then(|m| m.modified());
        let (period, quota) = (modified("cpu.cfs_period_us")?, modified("cpu.cfs_quota_us")?);
        let cgroups = Cgroups::new(root.path());
        cgroups.ensure_pod_cgroup(&PodResources { cpu_quota: None, ..resources("/kubepods/podq") })?;
        assert_eq!(modified("cpu.cfs_period_us")?, period);
        assert_eq!(modified("cpu.cfs_quota_us")?, quota);
        cgroups.ensure_pod_cgroup(&resources("/kubepods/podq"))?;
        assert_eq!(std::fs::read_to_string(cpu.join("cpu.cfs_quota_us"))?, "50000");
        Ok(())
    }

    #[test]
    fn v1_pod_cgroups_are_made_per_controller_and_listed_once() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir_all(root.path().join("cpu,cpuacct"))?;
        std::fs::create_dir_all(root.path().join("memory"))?;
        let cgroups = Cgroups::new(root.path());
        assert!(!cgroups.is_v2());
        cgroups.ensure_pod_cgroup(&PodResources {
            cpu_quota: None,
            memory_limit: None,
            ..resources("/kubepods/podg")
        })?;
        let cpu = root.path().join("cpu,cpuacct/kubepods/podg");
        assert_eq!(std::fs::read_to_string(cpu.join("cpu.shares"))?, "1024");
        assert_eq!(std::fs::read_to_string(cpu.join("cpu.cfs_quota_us"))?, "-1");
        let memory = root.path().join("memory/kubepods/podg");
        assert_eq!(std::fs::read_to_string(memory.join("memory.limit_in_bytes"))?, "-1");
        assert_eq!(cgroups.pod_cgroups(), vec!["/kubepods/podg".to_string()]);
        assert!(!cgroups.oom_killed("/kubepods/podg"));
        // Real cgroup directories hold control files rmdir ignores; in a
        // plain directory they are removed first.
        for dir in [&cpu, &memory] {
            for entry in std::fs::read_dir(dir)? {
                std::fs::remove_file(entry?.path())?;
            }
        }
        cgroups.remove_cgroup("/kubepods/podg");
        assert!(!cpu.exists() && !memory.exists());
        assert!(cgroups.pod_cgroups().is_empty());
        Ok(())
    }

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

    #[test]
    fn usage_is_read_in_both_layouts() -> std::io::Result<()> {
        let v2 = tempfile::tempdir()?;
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory")?;
        let dir = v2.path().join("kubepods/podu/c1");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n")?;
        std::fs::write(dir.join("memory.current"), "10000\n")?;
        std::fs::write(dir.join("memory.stat"), "anon 6000\ninactive_file 4000\n")?;
        let cgroups = Cgroups::new(v2.path());
        assert_eq!(
            cgroups.usage("/kubepods/podu/c1"),
            Some(Usage { cpu_nanoseconds: 1_500_000, memory_working_set_bytes: 6000 })
        );
        assert_eq!(cgroups.usage("/kubepods/podu/gone"), None);
        let v1 = tempfile::tempdir()?;
        let cpu = v1.path().join("cpu,cpuacct/kubepods/podu/c1");
        let memory = v1.path().join("memory/kubepods/podu/c1");
        std::fs::create_dir_all(&cpu)?;
        std::fs::create_dir_all(&memory)?;
        std::fs::write(cpu.join("cpuacct.usage"), "2500\n")?;
        std::fs::write(memory.join("memory.usage_in_bytes"), "9000\n")?;
        std::fs::write(memory.join("memory.stat"), "inactive_file 1\ntotal_inactive_file 1000\n")?;
        assert_eq!(
            Cgroups::new(v1.path()).usage("/kubepods/podu/c1"),
            Some(Usage { cpu_nanoseconds: 2500, memory_working_set_bytes: 8000 })
        );
        Ok(())
    }

    #[test]
    fn node_usage_counts_busy_time_and_unavailable_memory() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3 4\n";
        let meminfo = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n";
        assert_eq!(
            node_usage(stat, meminfo),
            Some(Usage { cpu_nanoseconds: 161 * 10_000_000, memory_working_set_bytes: 600 * 1024 })
        );
    }
}
