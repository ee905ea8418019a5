//! The pod sandbox: its process, network, cgroup and volumes; noticing
//! when it dies, and releasing it.

use super::*;

impl Worker {
    /// Watches the sandbox process through a pidfd: its exit is reported at
    /// once (no polling), and the pod gets a new sandbox.
    pub(super) fn watch_sandbox(&self, pid: u32) {
        let sandbox_exits = self.sandbox_exits.clone();
        tokio::spawn(async move {
            if let Err(error) = skiff_runtime::process::exited(pid).await {
                tracing::warn!(pid, %error, "cannot watch a sandbox process");
                return;
            }
            let _ = sandbox_exits.send(pid);
        });
    }

    /// The sandbox process died (killed, OOM, a bug): as the kubelet does,
    /// its containers are killed and the pod starts again in a new sandbox
    /// (`SandboxChanged`). Under `restartPolicy: Never` a pod whose
    /// containers already ran is not restarted.
    pub(super) async fn on_sandbox_exit(&mut self, pid: u32) {
        if self.sandbox.as_ref().map(|s| s.pid) != Some(pid) || self.finished {
            return;
        }
        tracing::warn!(pod = %self.key, pid, "the pod's sandbox process is gone; recreating the sandbox");
        self.event(
            EventType::Normal,
            "SandboxChanged",
            "Pod sandbox changed, it will be killed and re-created.",
            None,
        )
        .await;
        self.stop_all(Duration::from_secs(2)).await;
        self.stop_sandbox().await;
        self.record.sandbox_ready = false;
        self.sandbox_id = random_id();
        let policy = self.restart_policy();
        if crate::status::restart_in_new_sandbox(&policy, &mut self.record) {
            // They start at once in the new sandbox, not after a back-off.
            self.backoff.clear();
            self.record.pod_ip = None;
        }
        self.publish();
    }

    pub(super) async fn create_sandbox(&mut self) -> Result<(), StepError> {
        let failed = |message: String| StepError::Sandbox {
            pod: self.key.clone(),
            message,
        };
        crate::dns::kernel_hostname(&self.pod, &self.short_hostname()).map_err(failed)?;
        let dir = self.pod_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| failed(format!("failed to create {}: {e}", dir.display())))?;
        let resources = pod_resources(&self.pod, self.cgroup_parent());
        self.agent
            .cgroups
            .ensure(&resources)
            .map_err(|e| failed(format!("pod cgroup: {e}")))?;
        let agent = self.agent.clone();
        let hostname = self.hostname();
        let options = crate::security::sandbox_options(&self.pod, &self.sandbox_id);
        let host_network = options.host_network;
        let sandbox = tokio::task::spawn_blocking(move || agent.runtime.start_sandbox(&hostname, &options))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        self.watch_sandbox(sandbox.pid);
        self.trace.sandbox_up();
        let (namespace, name, _) = pod_name(&self.pod);
        let ports: Vec<PortMapping> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let host = u16::try_from(p.host_port?).ok().filter(|h| *h > 0)?;
                Some(PortMapping {
                    host_port: host,
                    container_port: u16::try_from(p.container_port).ok()?,
                    protocol: p
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".into())
                        .to_lowercase(),
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                })
            })
            .collect();
        let attachment = Attachment {
            id: self.sandbox_id.clone(),
            netns: sandbox.namespace("net"),
            namespace,
            name,
            ports,
        };
        // hostNetwork: the node's network, no CNI; the pod's IP is the node's.
        let pod_ip = if host_network {
            self.agent.node.internal_ip.clone()
        } else {
            match self.agent.network.add(&attachment).await {
                Ok(address) => {
                    self.trace.network_attached();
                    address.ip
                }
                Err(error) => {
                    self.agent.runtime.stop_sandbox(&sandbox);
                    return Err(failed(format!("failed to set up pod network: {error}")));
                }
            }
        };
        let aliases: Vec<(String, Vec<String>)> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.host_aliases.iter().flatten())
            .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
            .collect();
        let hostname = self.hostname();
        let hosts = if host_network {
            // kubelet gives hostNetwork pods the node's own hosts file.
            let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            for (ip, names) in &aliases {
                text.push_str(&format!("{ip}\t{}\n", names.join("\t")));
            }
            text
        } else {
            // The pod's names: its FQDN first when it has a subdomain.
            let short = self.short_hostname();
            let names = match crate::dns::fqdn(&self.pod, &short) {
                Some(fqdn) => format!("{fqdn}\t{short}"),
                None => short,
            };
            hosts_file(Some(&pod_ip), &names, &aliases)
        };
        let files = [
            ("etc-hosts", hosts),
            ("etc-hostname", format!("{hostname}\n")),
            (
                "resolv.conf",
                crate::dns::resolv_conf(&self.pod, &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
            ),
        ];
        for (file, contents) in files {
            std::fs::write(dir.join(file), contents)
                .map_err(|e| failed(format!("failed to write {file}: {e}")))?;
        }
        // The record lets `skiff killall` and a restarted agent find the
        // sandbox; without it the pod still runs.
        let record = self.agent.data_dir.join("sandboxes").join(&self.sandbox_id);
        if let Err(error) = std::fs::write(&record, sandbox.pid.to_string()) {
            tracing::warn!(pod = %self.key, path = %record.display(), %error, "failed to record the sandbox");
        }
        self.record.pod_ip = Some(pod_ip);
        self.record.sandbox_ready = true;
        let (namespace, name, uid) = pod_name(&self.pod);
        self.agent.containers.register(&namespace, &name, &uid);
        self.agent.containers.set_sandbox(
            &uid,
            Some(SandboxEntry {
                id: self.sandbox_id.clone(),
                pid: sandbox.pid,
                uid: uid.clone(),
            }),
        );
        self.sandbox = Some(sandbox);
        Ok(())
    }

    /// A terminal pod needs no sandbox: its network and sandbox go (its
    /// logs and status stay until the pod is deleted), as upstream.
    pub(super) async fn release_sandbox(&mut self) {
        if self.sandbox.is_none() {
            return;
        }
        self.finished = true;
        self.stop_sandbox().await;
        tracing::info!(pod = %self.key, "pod finished; sandbox released");
    }

    /// Removes the pod network (idempotent), stops the sandbox process and
    /// removes the pod's cgroup.
    pub(super) async fn stop_sandbox(&mut self) {
        if let Err(error) = self.agent.network.remove(&self.sandbox_id).await {
            tracing::warn!(pod = %self.key, %error, "network teardown failed");
        }
        if let Some(sandbox) = self.sandbox.take() {
            let (_, _, uid) = pod_name(&self.pod);
            self.agent.containers.set_sandbox(&uid, None);
            let agent = self.agent.clone();
            if let Err(error) = tokio::task::spawn_blocking(move || agent.runtime.stop_sandbox(&sandbox)).await {
                tracing::warn!(pod = %self.key, %error, "stopping the sandbox failed");
            }
        }
        let record = self.agent.data_dir.join("sandboxes").join(&self.sandbox_id);
        if let Err(error) = std::fs::remove_file(&record) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(pod = %self.key, path = %record.display(), %error, "failed to remove the sandbox record");
            }
        }
        self.agent.cgroups.remove(&self.cgroup_parent());
    }

    /// Removes the sandbox, network and pod directory.
    pub(super) async fn teardown(&mut self) {
        let (_, _, uid) = pod_name(&self.pod);
        self.agent.containers.remove_pod(&uid);
        self.stop_sandbox().await;
        self.unmount_volumes();
        for dir in [self.pod_dir(), self.node_tmpfs_dir()] {
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(pod = %self.key, path = %dir.display(), %error, "failed to remove the pod directory");
                }
            }
        }
        tracing::info!(pod = %self.key, "pod torn down");
    }

    /// Unmounts the pod's volumes that have a tmpfs of their own.
    pub(super) fn unmount_volumes(&self) {
        let volumes = self.pod_dir().join("volumes");
        for (mount_point, error) in skiff_runtime::container::unmount_children(&volumes) {
            tracing::warn!(pod = %self.key, mount = %mount_point, %error, "failed to unmount a volume");
        }
    }
}

/// A sandbox adopted from an agent older than sandbox ids runs
/// `skiff pause` without `--id`; it is recognized by its command alone.
pub(super) fn sandbox_predates_ids(sandbox: &Sandbox) -> bool {
    skiff_runtime::process::runs_with_argument(sandbox.pid, "pause")
        && !skiff_runtime::process::runs_with_argument(sandbox.pid, "--id")
}

/// An emptyDir is writable by everyone (0777, as the kubelet makes it);
/// with `fsGroup` its group is that group, with setgid so new files get it
/// too (the kubelet's `SetVolumeOwnership`; a fresh emptyDir is the same
/// under `fsGroupChangePolicy` Always and OnRootMismatch).
pub(super) fn set_volume_ownership(dir: &std::path::Path, fs_group: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match fs_group {
        Some(gid) => {
            std::os::unix::fs::chown(dir, None, Some(gid))?;
            0o2777
        }
        None => 0o777,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// cgroup settings from requests and limits, as kubelet converts them.
/// The pod cgroup's limits: the sum of its containers' cpu requests as
/// shares; cpu and memory limits only when every container has one.
pub(super) fn pod_resources(pod: &Pod, path: String) -> skiff_runtime::cgroups::PodResources {
    let spec = pod.spec.clone().unwrap_or_default();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let limits: Vec<Limits> = spec
        .containers
        .iter()
        .chain(sidecars)
        .map(limits_of)
        .collect();
    let shares = limits
        .iter()
        .map(|l| l.cpu_shares.unwrap_or(2))
        .sum::<u64>()
        .max(2);
    let all = |f: fn(&Limits) -> Option<i64>| -> Option<i64> {
        limits.iter().map(f).sum::<Option<i64>>()
    };
    skiff_runtime::cgroups::PodResources {
        path,
        cpu_shares: shares,
        cpu_quota: all(|l| l.cpu_quota),
        memory_limit: all(|l| l.memory_bytes),
    }
}
