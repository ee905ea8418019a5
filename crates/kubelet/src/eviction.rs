//! Local-storage eviction, as the kubelet's eviction manager does it every
//! housekeeping period: a disk `emptyDir` over its `sizeLimit`, a pod over
//! the sum of its containers' `ephemeral-storage` limits, or a container
//! whose writable layer and logs exceed its own limit gets the pod evicted
//! (Failed, reason `Evicted`, upstream's message).
//!
//! Deciding is pure ([`violation`]); measuring ([`disk_usage`]) walks the
//! directories as `du` does.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod, Volume};
use skiff_api::quantity::Quantity;

/// The eviction manager's monitoring period (`evictionMonitoringPeriod`).
pub const MONITORING_PERIOD: Duration = Duration::from_secs(10);

/// The pod status reason and event reason of an eviction.
pub const REASON: &str = "Evicted";

/// What a pod uses on disk, in bytes: per disk-backed emptyDir volume and
/// per running container (writable layer plus logs).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    pub volumes: HashMap<String, u64>,
    pub containers: HashMap<String, u64>,
}

/// Whether the pod has any local-storage limit to watch.
pub fn has_limits(pod: &Pod) -> bool {
    !disk_empty_dir_limits(pod).is_empty() || !container_limits(pod).is_empty()
}

/// The pod's emptyDir volumes on disk (a `medium: Memory` one is a tmpfs
/// sized by its sizeLimit: writes past it fail, nothing to measure).
pub fn disk_empty_dirs(pod: &Pod) -> impl Iterator<Item = (&Volume, &EmptyDirVolumeSource)> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes.into_iter().flatten().filter_map(|volume| {
        let empty_dir = volume.empty_dir.as_ref()?;
        (empty_dir.medium.as_deref() != Some("Memory")).then_some((volume, empty_dir))
    })
}

/// The disk-backed emptyDir volumes with a positive `sizeLimit`.
pub fn disk_empty_dir_limits(pod: &Pod) -> Vec<(String, Quantity)> {
    disk_empty_dirs(pod)
        .filter_map(|(volume, empty_dir)| {
            let limit = Quantity::parse(&empty_dir.size_limit.as_ref()?.0)?;
            (limit.value() > 0).then(|| (volume.name.clone(), limit))
        })
        .collect()
}

/// App containers with a non-zero `limits.ephemeral-storage`.
fn container_limits(pod: &Pod) -> Vec<(String, Quantity)> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
    containers
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let limit = c.resources.as_ref()?.limits.as_ref()?.get("ephemeral-storage")?;
            let limit = Quantity::parse(&limit.0)?;
            (limit.value() != 0).then(|| (c.name.clone(), limit))
        })
        .collect()
}

/// The eviction message when the pod is over a local-storage limit, in
/// the order upstream checks them: emptyDir volumes, the pod's total,
/// then each container.
pub fn violation(pod: &Pod, usage: &Usage) -> Option<String> {
    for (volume, limit) in disk_empty_dir_limits(pod) {
        let used = usage.volumes.get(&volume).copied().unwrap_or(0);
        if i128::from(used) > limit.value() {
            return Some(format!(
                "Usage of EmptyDir volume {volume:?} exceeds the limit {:?}. ",
                limit.canonical()
            ));
        }
    }
    let limits = container_limits(pod);
    let total_limit = limits.iter().map(|(_, q)| *q).reduce(Quantity::plus);
    if let Some(total_limit) = total_limit {
        let total_used = usage.containers.values().sum::<u64>() + usage.volumes.values().sum::<u64>();
        if i128::from(total_used) > total_limit.value() {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {}. ",
                total_limit.canonical()
            ));
        }
    }
    for (container, limit) in limits {
        let used = usage.containers.get(&container).copied().unwrap_or(0);
        if i128::from(used) > limit.value() {
            return Some(format!(
                "Container {container} exceeded its local ephemeral storage limit {:?}. ",
                limit.canonical()
            ));
        }
    }
    None
}

/// Bytes allocated under `path` (blocks, as `du`), each inode counted once,
/// not crossing into other filesystems. A path that does not exist uses
/// nothing; entries that vanish while walking are skipped.
pub fn disk_usage(path: &Path) -> std::io::Result<u64> {
    let root = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let device = root.dev();
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut pending = vec![(path.to_path_buf(), root)];
    while let Some((entry, meta)) = pending.pop() {
        if meta.dev() != device || !seen.insert(meta.ino()) {
            continue;
        }
        total += meta.blocks() * 512;
        if !meta.is_dir() {
            continue;
        }
        let children = match std::fs::read_dir(&entry) {
            Ok(children) => children,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for child in children.flatten() {
            if let Ok(meta) = child.metadata() {
                pending.push((child.path(), meta));
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap_or_default()
    }

    fn usage(volumes: &[(&str, u64)], containers: &[(&str, u64)]) -> Usage {
        Usage {
            volumes: volumes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            containers: containers.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn limits_are_checked_as_the_eviction_manager_does() {
        let sized = pod(json!({
            "containers": [{"name": "app", "image": "i"}],
            "volumes": [
                {"name": "memory", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "scratch", "emptyDir": {"sizeLimit": "50Mi"}},
                {"name": "unbounded", "emptyDir": {}}
            ]
        }));
        let limited = pod(json!({
            "containers": [
                {"name": "a", "image": "i", "resources": {"limits": {"ephemeral-storage": "1Mi"}}},
                {"name": "b", "image": "i", "resources": {"limits": {"ephemeral-storage": "1Mi"}}}
            ]
        }));
        let mib = 1 << 20;
        let cases: Vec<(&str, &Pod, Usage, Option<&str>)> = vec![
            ("under the limit", &sized, usage(&[("scratch", 50 * mib)], &[]), None),
            (
                "emptyDir over",
                &sized,
                usage(&[("scratch", 50 * mib + 1)], &[]),
                Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"50Mi\". "),
            ),
            ("memory and unbounded volumes are not measured", &sized, usage(&[("memory", 9 * mib), ("unbounded", 900 * mib)], &[]), None),
            ("containers within their limits", &limited, usage(&[], &[("a", mib), ("b", mib)]), None),
            (
                "pod total over",
                &limited,
                usage(&[], &[("a", mib), ("b", mib + 1)]),
                Some("Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. "),
            ),
            (
                "one container over",
                &limited,
                usage(&[], &[("a", 0), ("b", mib + 1)]),
                Some("Container b exceeded its local ephemeral storage limit \"1Mi\". "),
            ),
        ];
        for (name, pod, usage, want) in cases {
            assert_eq!(violation(pod, &usage).as_deref(), want, "{name}");
        }
        assert!(has_limits(&sized) && has_limits(&limited));
        assert!(!has_limits(&pod(json!({"containers": [{"name": "a", "image": "i"}]}))));
    }

    #[test]
    fn disk_usage_counts_allocated_blocks_once() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(disk_usage(&dir.path().join("missing"))?, 0);
        let file = dir.path().join("data");
        std::fs::write(&file, vec![1u8; 1 << 20])?;
        std::fs::hard_link(&file, dir.path().join("link"))?;
        let used = disk_usage(dir.path())?;
        assert!((1 << 20..2 << 20).contains(&used), "{used}");
        Ok(())
    }
}
