//! Skiff's node agent (kubelet's job): registers the node and runs the pods
//! bound to it.
//!
//! Owns: the Node object and its heartbeat ([`node`]), one worker task per
//! pod ([`worker`]) that drives images, sandbox, network and containers
//! through `skiff-runtime`, the container environment and command
//! ([`env`]), and pod status with its single writer ([`status`]).
//!
//! Must not know: the store or the API server's internals. It reaches the
//! API over HTTPS like any other client.

pub mod checkpoint;
pub mod env;
pub mod index;
pub mod logs;
pub mod node;
pub mod probe;
mod server;
pub mod status;
mod stream;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use skiff_client::EventRecorder;
use skiff_runtime::container::OciRuntime;
use skiff_runtime::image::ImageStore;
use skiff_runtime::network::Cni;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::node::NodeInfo;
use crate::status::StatusSender;

/// What stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("failed to register node {node}")]
    Register { node: String, source: kube::Error },
    #[error("failed to prepare {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Everything pod workers share.
pub struct Agent {
    pub client: kube::Client,
    pub node: NodeInfo,
    pub data_dir: PathBuf,
    pub images: ImageStore,
    pub runtime: OciRuntime,
    pub cni: Cni,
    /// The `skiff` binary, for `skiff pause` and `skiff monitor`.
    pub skiff: PathBuf,
    /// Mirrors, endpoints and credentials (k3s's registries.yaml).
    pub registries: skiff_runtime::image::registries::RegistriesConfig,
    pub events: EventRecorder,
    pub status: StatusSender,
    pub containers: index::ContainerIndex,
    /// TLS for the node API (logs); `None` serves no node API.
    pub server_tls: Option<Arc<rustls::ServerConfig>>,
}

/// Stops and removes every pod this node runs or ran, except what `keep`
/// names: containers (through the OCI runtime), pod networks, sandboxes,
/// memory-backed volumes, pod directories and pod cgroups. With nothing
/// kept, what `skiff killall` does.
pub async fn clean_node(
    data_dir: &std::path::Path,
    runtime: &OciRuntime,
    cni: &Cni,
    keep: &checkpoint::Keep,
) {
    for entry in std::fs::read_dir(data_dir.join("containers"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let id = entry.file_name().to_string_lossy().into_owned();
        if keep.containers.contains(&id) {
            continue;
        }
        let _ = runtime.kill(&id, "KILL").await;
        let _ = runtime.delete(&id).await;
        if let Err(error) = runtime.remove_bundle(&entry.path()) {
            tracing::warn!(container = %id, %error, "failed to remove a leftover bundle");
        }
    }
    for id in cni.attached() {
        if keep.sandboxes.contains(&id) {
            continue;
        }
        if let Err(error) = cni.remove(&id).await {
            tracing::warn!(sandbox = %id, %error, "failed to remove a leftover pod network");
        }
    }
    for entry in std::fs::read_dir(data_dir.join("sandboxes"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        if keep
            .sandboxes
            .contains(&*entry.file_name().to_string_lossy())
        {
            continue;
        }
        if let Some(pid) = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            skiff_runtime::sandbox::Sandbox { pid }.stop();
        }
        let _ = std::fs::remove_file(entry.path());
    }
    for entry in std::fs::read_dir(data_dir.join("pods"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| !keep.pod_dirs.contains(&e.path()))
    {
        for (mount_point, error) in skiff_runtime::container::unmount_all_under(&entry.path()) {
            tracing::warn!(mount = %mount_point, %error, "failed to unmount a leftover volume");
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
    // Pod cgroups left empty by the containers above.
    for tree in ["kubepods", "kubepods/burstable", "kubepods/besteffort"] {
        let roots = [
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/cpu",
            "/sys/fs/cgroup",
        ];
        for root in roots {
            for entry in std::fs::read_dir(std::path::Path::new(root).join(tree))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("pod"))
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    !keep.pod_uids.contains(name.trim_start_matches("pod"))
                })
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                skiff_runtime::cgroups::remove_cgroup(&format!("/{tree}/{name}"));
            }
        }
    }
}

/// Registers the node and runs its pods until `shutdown`.
pub async fn run(agent: Agent, shutdown: CancellationToken) -> Result<(), AgentError> {
    for dir in ["containers", "sandboxes", "pods"] {
        let path = agent.data_dir.join(dir);
        std::fs::create_dir_all(&path).map_err(|source| AgentError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    // Pods an earlier agent left running are re-adopted; anything else it
    // left behind is cleaned up.
    let adopted = checkpoint::load_all(&agent.data_dir);
    clean_node(
        &agent.data_dir,
        &agent.runtime,
        &agent.cni,
        &checkpoint::Keep::of(&adopted),
    )
    .await;
    node::register(&agent.client, &agent.node)
        .await
        .map_err(|source| AgentError::Register {
            node: agent.node.name.clone(),
            source,
        })?;
    tokio::spawn(node::heartbeat(
        agent.client.clone(),
        agent.node.clone(),
        shutdown.clone(),
    ));
    if let Some(tls) = agent.server_tls.clone() {
        let address = std::net::SocketAddr::from(([0, 0, 0, 0], agent.node.kubelet_port));
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| AgentError::Io {
                path: format!("node API listener {address}"),
                source,
            })?;
        tokio::spawn(server::serve(
            listener,
            tls,
            server::NodeApi {
                containers: agent.containers.clone(),
                runtime: agent.runtime.clone(),
            },
            shutdown.clone(),
        ));
    }
    let agent = Arc::new(agent);
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node.name));
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff());
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut seen_in_relist: Vec<String> = Vec::new();
    for (_, checkpoint) in adopted {
        let (sender, receiver) = watch::channel(Some(checkpoint.pod.clone()));
        workers.insert(checkpoint.uid(), sender);
        tokio::spawn(worker::adopt(agent.clone(), checkpoint, receiver));
    }
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            event = events.try_next() => event,
        };
        let event = match event {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, "pod watch failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                seen_in_relist.push(uid.clone());
                match workers.get(&uid) {
                    Some(sender) if !sender.is_closed() => {
                        let _ = sender.send(Some(pod));
                    }
                    _ => {
                        let (sender, receiver) = watch::channel(Some(pod));
                        tokio::spawn(worker::run(agent.clone(), receiver));
                        workers.insert(uid, sender);
                    }
                }
            }
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(sender) = workers.remove(&uid) {
                    let _ = sender.send(None);
                }
            }
            watcher::Event::Init => seen_in_relist.clear(),
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was down are forgotten.
                workers.retain(|uid, sender| {
                    let keep = seen_in_relist.contains(uid);
                    if !keep {
                        let _ = sender.send(None);
                    }
                    keep
                });
            }
        }
        workers.retain(|_, sender| !sender.is_closed());
    }
}
