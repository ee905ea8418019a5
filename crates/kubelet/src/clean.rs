//! Cleaning a node: what earlier agents left behind (or everything, for
//! `skiff killall`), through the runtime, network and cgroup seams.

use std::path::Path;

use crate::checkpoint::Keep;
use crate::seams::{ContainerRuntime, PodCgroups, PodNetwork};

/// The entries of a data directory's subdirectory (none if it is absent).
fn entries(dir: &Path) -> impl Iterator<Item = std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
}

/// Stops and removes every pod this node runs or ran, except what `keep`
/// names: containers (through the OCI runtime), pod networks, sandboxes,
/// memory-backed volumes, pod directories and pod cgroups. With nothing
/// kept, what `skiff killall` does.
pub async fn clean_node(
    data_dir: &Path,
    runtime: &dyn ContainerRuntime,
    network: &dyn PodNetwork,
    cgroups: &dyn PodCgroups,
    keep: &Keep,
) {
    for entry in entries(&data_dir.join("containers")) {
        let id = entry.file_name().to_string_lossy().into_owned();
        if keep.containers.contains(&id) {
            continue;
        }
        // A container already gone is what we want: nothing to report.
        if let Err(error) = runtime.kill(&id, "KILL").await {
            tracing::debug!(container = %id, %error, "leftover container not killed");
        }
        if let Err(error) = runtime.delete(&id).await {
            tracing::debug!(container = %id, %error, "leftover container not deleted");
        }
        if let Err(error) = runtime.remove_bundle(&entry.path()) {
            tracing::warn!(container = %id, %error, "failed to remove a leftover bundle");
        }
    }
    for id in network.attached() {
        if keep.sandboxes.contains(&id) {
            continue;
        }
        if let Err(error) = network.remove(&id).await {
            tracing::warn!(sandbox = %id, %error, "failed to remove a leftover pod network");
        }
    }
    for entry in entries(&data_dir.join("sandboxes")) {
        if keep
            .sandboxes
            .contains(&*entry.file_name().to_string_lossy())
        {
            continue;
        }
        let pid = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        // Only a process that still is our sandbox (not a recycled pid).
        if let Some(pid) = pid.filter(|pid| skiff_runtime::process::runs_with_argument(*pid, "pause")) {
            runtime.stop_sandbox(&skiff_runtime::sandbox::Sandbox { pid });
        }
        if let Err(error) = std::fs::remove_file(entry.path()) {
            tracing::warn!(path = %entry.path().display(), %error, "failed to remove a leftover sandbox record");
        }
    }
    // The pods this data dir ran (`<ns>_<name>_<uid>`): only their cgroups
    // are ours to remove; another agent on the host has its own.
    let ours: std::collections::HashSet<String> = entries(&data_dir.join("pods"))
        .filter_map(|e| e.file_name().to_string_lossy().rsplit('_').next().map(str::to_string))
        .collect();
    for entry in entries(&data_dir.join("pods")).filter(|e| !keep.pod_dirs.contains(&e.path())) {
        for (mount_point, error) in skiff_runtime::container::unmount_all_under(&entry.path()) {
            tracing::warn!(mount = %mount_point, %error, "failed to unmount a leftover volume");
        }
        if let Err(error) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(path = %entry.path().display(), %error, "failed to remove a leftover pod directory");
        }
    }
    // API-fed volumes of pods not kept (named as their pod directories),
    // and with nothing kept the node's tmpfs that holds them.
    let node_tmpfs = data_dir.join(crate::volumes::NODE_TMPFS_DIR);
    for entry in entries(&node_tmpfs).filter(|e| !keep.pod_dirs.contains(&data_dir.join("pods").join(e.file_name()))) {
        if let Err(error) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(path = %entry.path().display(), %error, "failed to remove a leftover pod's volumes");
        }
    }
    if keep.pod_dirs.is_empty() && skiff_runtime::container::is_mount_point(&node_tmpfs) {
        if let Err(error) = nix::mount::umount2(&node_tmpfs, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %node_tmpfs.display(), %error, "failed to unmount the node's tmpfs for API-fed volumes");
        }
    }
    // Pod cgroups left empty by the containers above.
    for path in cgroups.pod_cgroups() {
        let uid = path.rsplit('/').next().unwrap_or_default().trim_start_matches("pod");
        if ours.contains(uid) && !keep.pod_uids.contains(uid) {
            cgroups.remove(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Recorder;

    #[tokio::test]
    async fn leftovers_go_and_what_is_kept_stays() -> std::io::Result<()> {
        let data = tempfile::tempdir()?;
        for dir in ["containers/old", "containers/kept", "pods/uid-old", "pods/uid-kept", "sandboxes", "api-volumes/uid-old/token", "api-volumes/uid-kept/token"] {
            std::fs::create_dir_all(data.path().join(dir))?;
        }
        // A sandbox record whose pid is not a sandbox: only the record goes.
        std::fs::write(data.path().join("sandboxes/s-old"), "1")?;
        std::fs::write(data.path().join("sandboxes/s-kept"), "1")?;
        let fake = Recorder {
            networks: vec!["s-old".into(), "s-kept".into()],
            pod_cgroups: vec![
                "/kubepods/burstable/poduid-old".into(),
                "/kubepods/poduid-kept".into(),
                // Another agent's pod on the same host: not ours to touch.
                "/kubepods/besteffort/poduid-elsewhere".into(),
            ],
            ..Recorder::default()
        };
        let mut keep = Keep::default();
        keep.containers.insert("kept".into());
        keep.sandboxes.insert("s-kept".into());
        keep.pod_dirs.insert(data.path().join("pods/uid-kept"));
        keep.pod_uids.insert("uid-kept".into());
        clean_node(data.path(), &fake, &fake, &fake, &keep).await;
        let old_bundle = data.path().join("containers/old");
        assert_eq!(
            fake.calls(),
            vec![
                "runtime.kill old KILL".to_string(),
                "runtime.delete old".into(),
                format!("runtime.remove_bundle {}", old_bundle.display()),
                "network.remove s-old".into(),
                "cgroups.remove /kubepods/burstable/poduid-old".into(),
            ]
        );
        assert!(data.path().join("containers/kept").exists());
        assert!(!data.path().join("pods/uid-old").exists());
        assert!(data.path().join("pods/uid-kept").exists());
        assert!(!data.path().join("api-volumes/uid-old").exists());
        assert!(data.path().join("api-volumes/uid-kept/token").exists());
        assert!(!data.path().join("sandboxes/s-old").exists());
        assert!(data.path().join("sandboxes/s-kept").exists());
        Ok(())
    }

    #[tokio::test]
    async fn an_empty_data_directory_is_clean_already() {
        let fake = Recorder::default();
        clean_node(Path::new("/nonexistent/skiff"), &fake, &fake, &fake, &Keep::default()).await;
        assert!(fake.calls().is_empty());
    }
}
