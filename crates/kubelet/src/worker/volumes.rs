//! A pod's volumes on the node: emptyDirs (on disk or tmpfs), hostPaths
//! (type-checked), and API-fed volumes (configMap, secret, downwardAPI,
//! projected) written atomically and refreshed on every sync, which a
//! change of their objects triggers. Volumes the node cannot set up keep
//! the pod in `ContainerCreating` with a `FailedMount` event.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{VolumeMount, Volume};
use skiff_runtime::container::spec::Propagation;

use super::*;
use crate::sources::{Lookup, Snapshot};
use crate::volumes::{self, atomic, host_path, payload, Kind};

impl Worker {
    /// Starts watching the ConfigMaps and Secrets the pod reads (once).
    pub(super) fn subscribe_to_sources(&mut self) {
        if !self.subscriptions.is_empty() {
            return;
        }
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        for (kind, name) in crate::sources::referenced(&self.pod) {
            let subscription = self
                .agent
                .sources
                .subscribe(kind, &namespace, &name, self.source_changes.clone());
            self.subscriptions.push(subscription);
        }
    }

    /// The pod's objects as now known; `None` while one is still listed.
    pub(super) fn objects(&self) -> Option<Snapshot> {
        let mut snapshot = Snapshot::default();
        for subscription in &self.subscriptions {
            match subscription.get() {
                Lookup::Pending => return None,
                Lookup::Missing => {}
                Lookup::ConfigMap(object) => {
                    let name = object.metadata.name.clone().unwrap_or_default();
                    snapshot.config_maps.insert(name, (*object).clone());
                }
                Lookup::Secret(object) => {
                    let name = object.metadata.name.clone().unwrap_or_default();
                    snapshot.secrets.insert(name, (*object).clone());
                }
            }
        }
        Some(snapshot)
    }

    pub(super) fn node_facts(&self) -> NodeFacts {
        let node = &self.agent.node;
        NodeFacts {
            node_name: node.name.clone(),
            host_ip: node.internal_ip.clone(),
            pod_ip: self.record.pod_ip.clone().unwrap_or_default(),
            allocatable_milli_cpu: i128::from(node.cpus) * 1000,
            allocatable_memory: i128::from(node.memory_bytes),
        }
    }

    fn pod_volumes(&self) -> Vec<Volume> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()
    }

    /// Sets up the pod's volumes the first time, and refreshes API-fed ones
    /// after that. `Ok(false)`: the pod's objects are still being listed
    /// (their arrival wakes the worker).
    pub(super) async fn set_up_volumes(&mut self) -> Result<bool, StepError> {
        self.subscribe_to_sources();
        let Some(mut objects) = self.objects() else {
            return Ok(false);
        };
        if let Err(message) = self.tokens.refresh(&self.agent.client, &self.pod).await {
            let volume = crate::tokens::volume_of(&self.pod).unwrap_or_default();
            return Err(StepError::Mount { volume, message });
        }
        objects.tokens = self.tokens.current();
        let facts = self.node_facts();
        let group = crate::security::fs_group(&self.pod);
        for volume in self.pod_volumes() {
            let mount_error = |message: String| StepError::Mount {
                volume: volume.name.clone(),
                message,
            };
            if let Some(message) = volumes::unsupported(&volume) {
                return Err(mount_error(message));
            }
            let kind = volumes::kind(&volume);
            if self.volumes_ready && !volumes::is_api_fed(kind) {
                continue;
            }
            let files = match kind {
                Kind::HostPath => {
                    let source = volume.host_path.clone().unwrap_or_default();
                    host_path::check(Path::new(&source.path), source.type_.as_deref().unwrap_or_default())
                        .map_err(mount_error)?;
                    continue;
                }
                Kind::EmptyDir => {
                    self.volume_dir(&volume)?;
                    continue;
                }
                Kind::ConfigMap => payload::config_map(&volume.config_map.clone().unwrap_or_default(), &objects),
                Kind::Secret => payload::secret(&volume.secret.clone().unwrap_or_default(), &objects),
                Kind::DownwardApi => {
                    let source = volume.downward_api.clone().unwrap_or_default();
                    payload::downward_api(
                        &self.pod,
                        source.items.as_deref().unwrap_or_default(),
                        source.default_mode.unwrap_or(payload::DEFAULT_MODE),
                        &facts,
                    )
                }
                Kind::Projected => payload::projected(&self.pod, &volume.projected.clone().unwrap_or_default(), &objects, &facts),
                Kind::PersistentVolumeClaim | Kind::Unsupported(_) => continue,
            }
            .map_err(mount_error)?;
            let files = if group.is_some() { payload::with_fs_group(files) } else { files };
            let dir = self.volume_dir(&volume)?;
            let now = self.agent.clock.now();
            let wrote = tokio::task::spawn_blocking(move || atomic::write(&dir, &files, group, now))
                .await
                .map_err(|e| mount_error(e.to_string()))?
                .map_err(|e| mount_error(e.to_string()))?;
            if wrote && self.volumes_ready {
                tracing::info!(pod = %self.key, volume = %volume.name, "volume updated");
            }
        }
        self.volumes_ready = true;
        Ok(true)
    }

    /// Where a volume of the pod lives on the host: a directory of the
    /// node's tmpfs for secrets and projections, else under the pod's dir.
    fn volume_path(&self, volume: &Volume) -> PathBuf {
        let own = self.pod_dir().join("volumes").join(&volume.name);
        match volumes::memory(volume) {
            // A pod adopted from an agent that gave each such volume a tmpfs
            // of its own keeps it: its containers have that one mounted, so
            // refreshed tokens must land there.
            volumes::Memory::NodeTmpfs if !skiff_runtime::container::is_mount_point(&own) => {
                self.node_tmpfs_dir().join(&volume.name)
            }
            volumes::Memory::NodeTmpfs | volumes::Memory::No | volumes::Memory::OwnTmpfs => own,
        }
    }

    /// The host directory behind a volume of the pod (made on first use;
    /// a tmpfs of its own for a `medium: Memory` emptyDir).
    fn volume_dir(&self, volume: &Volume) -> Result<PathBuf, StepError> {
        let name = &volume.name;
        let dir = self.volume_path(volume);
        let mount_error = |message: String| StepError::Mount {
            volume: name.clone(),
            message,
        };
        std::fs::create_dir_all(&dir).map_err(|e| mount_error(format!("failed to create {}: {e}", dir.display())))?;
        if volumes::memory(volume) == volumes::Memory::OwnTmpfs && !skiff_runtime::container::is_mount_point(&dir) {
            // Sized by an emptyDir's sizeLimit when given.
            let size = volume
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.as_ref())
                .and_then(|q| skiff_api::quantity::Quantity::parse(&q.0))
                .map(|q| format!(",size={}", q.value()))
                .unwrap_or_default();
            let options = format!("mode=1777{size}");
            nix::mount::mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(options.as_str()),
            )
            .map_err(|e| mount_error(format!("failed to mount a tmpfs: {e}")))?;
        }
        set_volume_ownership(&dir, crate::security::fs_group(&self.pod))
            .map_err(|e| mount_error(format!("failed to set the volume's ownership: {e}")))?;
        Ok(dir)
    }

    /// The container's volume mounts as bind mounts: subPath and
    /// subPathExpr (expanded from the container's environment), readOnly
    /// (always for API-fed volumes, as upstream) and mountPropagation.
    pub(super) fn container_mounts(
        &self,
        container: &Container,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<BindMount>, StepError> {
        let volumes = self.pod_volumes();
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let config_error = |message: String| StepError::Config {
                container: container.name.clone(),
                message,
            };
            let volume = volumes
                .iter()
                .find(|v| v.name == mount.name)
                .ok_or_else(|| config_error(format!("cannot find volume {:?} to mount into container {:?}", mount.name, container.name)))?;
            let kind = volumes::kind(volume);
            let root = match kind {
                Kind::HostPath => PathBuf::from(volume.host_path.as_ref().map(|h| h.path.clone()).unwrap_or_default()),
                _ => self.volume_path(volume),
            };
            let source = match sub_path(mount, env).map_err(&config_error)? {
                None => root,
                Some(sub) => self.prepare_sub_path(&root, &sub, volumes::is_api_fed(kind)).map_err(|reason| {
                    tracing::warn!(pod = %self.key, container = %container.name, volume = %mount.name, %reason, "subPath not prepared");
                    config_error(format!(
                        "failed to prepare subPath for volumeMount {:?} of container {:?}",
                        mount.name, container.name
                    ))
                })?,
            };
            let privileged = container.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false);
            let propagation = match mount.mount_propagation.as_deref() {
                None | Some("None") => Propagation::Private,
                Some("HostToContainer") => Propagation::HostToContainer,
                Some("Bidirectional") if privileged => Propagation::Bidirectional,
                Some("Bidirectional") => {
                    return Err(config_error("Bidirectional mount propagation is available only to privileged containers".into()))
                }
                Some(other) => return Err(config_error(format!("invalid mount propagation {other:?}"))),
            };
            // recursiveReadOnly (Enabled, or IfPossible: the kernel has
            // mount_setattr, which runc's `rro` needs) needs readOnly,
            // as the API server validates.
            let recursive_read_only = matches!(mount.recursive_read_only.as_deref(), Some("Enabled" | "IfPossible"));
            mounts.push(BindMount {
                source: source.display().to_string(),
                destination: mount.mount_path.clone(),
                read_only: mount.read_only.unwrap_or(false) || volumes::is_api_fed(kind),
                recursive_read_only,
                propagation,
            });
        }
        Ok(mounts)
    }

    /// A subPath inside a volume: made as a directory when missing (not in
    /// API-fed volumes, which are the API's to fill), and refused when it
    /// resolves outside the volume (through a symlink).
    fn prepare_sub_path(&self, root: &Path, sub: &str, api_fed: bool) -> Result<PathBuf, String> {
        let path = root.join(sub);
        if path.symlink_metadata().is_err() {
            if api_fed {
                return Err(format!("{sub} does not exist in the volume"));
            }
            std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        }
        let real_root = root.canonicalize().map_err(|e| e.to_string())?;
        let real = path.canonicalize().map_err(|e| e.to_string())?;
        if !real.starts_with(&real_root) {
            return Err(format!("{sub} resolves to {} outside the volume", real.display()));
        }
        Ok(real)
    }

    /// A change to one of the pod's objects: volumes are refreshed by the
    /// sync that follows, and containers that waited for an object are
    /// tried again at once.
    pub(super) fn on_source_change(&mut self) {
        let waiting: Vec<String> = self
            .record
            .init_containers
            .iter()
            .chain(&self.record.containers)
            .filter(|c| matches!(&c.state, State::Waiting { reason, .. } if reason == "CreateContainerConfigError"))
            .map(|c| c.name.clone())
            .collect();
        for name in waiting {
            self.backoff.remove(&name);
        }
    }
}

/// A mount's subPath, or its subPathExpr with `$(VAR)` expanded from the
/// container's environment; refused if it leaves the volume.
fn sub_path(mount: &VolumeMount, env: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    if let Some(sub) = mount.sub_path.as_ref().filter(|s| !s.is_empty()) {
        return Ok(Some(sub.clone()));
    }
    let Some(expression) = mount.sub_path_expr.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let expanded = crate::env::expand(expression, &|name| env.get(name).cloned());
    if expanded.starts_with('/') {
        return Err(format!("subPathExpr {expression:?} expanded to an absolute path {expanded:?}"));
    }
    if expanded.split('/').any(|part| part == "..") {
        return Err(format!("subPathExpr {expression:?} expanded to {expanded:?}, which contains '..'"));
    }
    Ok(Some(expanded).filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_path_expressions_expand_from_the_environment() -> Result<(), serde_json::Error> {
        let env = BTreeMap::from([("POD".to_string(), "web-0".to_string()), ("UP".to_string(), "..".to_string())]);
        let mount = |value: serde_json::Value| serde_json::from_value::<VolumeMount>(value);
        let cases = [
            (serde_json::json!({"name": "v", "mountPath": "/m"}), Ok(None)),
            (serde_json::json!({"name": "v", "mountPath": "/m", "subPath": "conf"}), Ok(Some("conf".to_string()))),
            (serde_json::json!({"name": "v", "mountPath": "/m", "subPathExpr": "logs/$(POD)"}), Ok(Some("logs/web-0".to_string()))),
            (
                serde_json::json!({"name": "v", "mountPath": "/m", "subPathExpr": "$(UP)/x"}),
                Err("subPathExpr \"$(UP)/x\" expanded to \"../x\", which contains '..'".to_string()),
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(sub_path(&mount(spec.clone())?, &env), want, "{spec}");
        }
        Ok(())
    }
}
