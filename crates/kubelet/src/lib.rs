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
pub mod coverage;
pub mod clean;
pub mod dns;
pub mod env;
pub mod eviction;
pub mod hints;
#[cfg(test)]
mod fake;
pub mod images;
pub mod index;
pub mod logs;
pub mod node;
pub mod notify;
pub mod plan;
pub mod probe;
pub mod resource_metrics;
pub mod routes;
pub mod seams;
pub mod security;
pub mod sources;
mod server;
pub mod static_pods;
pub mod tokens;
pub mod status;
pub mod volumes;
mod stream;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use skiff_client::EventRecorder;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::node::NodeInfo;
use crate::seams::{Clock, ContainerRuntime, ImageService, PodCgroups, PodNetwork};
use crate::status::StatusSender;

/// What stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("failed to register node {node}")]
    Register { node: String, source: kube::Error },
    #[error("node {node} got no pod CIDR")]
    PodCidr { node: String, source: kube::runtime::wait::Error },
    #[error("failed to set up the pod network for {pod_cidr}")]
    Network { pod_cidr: String, source: skiff_runtime::network::NetworkError },
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
    pub images: Arc<dyn ImageService>,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub network: Arc<dyn PodNetwork>,
    pub cgroups: Arc<dyn PodCgroups>,
    pub clock: Arc<dyn Clock>,
    /// Mirrors, endpoints and credentials (k3s's registries.yaml).
    pub registries: skiff_runtime::image::registries::RegistriesConfig,
    pub events: EventRecorder,
    pub status: StatusSender,
    pub containers: index::ContainerIndex,
    /// TLS for the node API (logs); `None` serves no node API.
    pub server_tls: Option<Arc<rustls::ServerConfig>>,
    /// Where static pod manifests live (`--pod-manifest-path`), if anywhere.
    pub pod_manifest_path: Option<PathBuf>,
    /// Digests of unpacked layers removed from the image store while the
    /// agent runs (see [`images::watch_layers`]).
    pub removed_layers: tokio::sync::broadcast::Sender<String>,
    /// The ConfigMaps and Secrets pods read, watched while needed.
    pub sources: sources::Sources,
}

/// Mounts the node's tmpfs for API-fed volumes at `dir` unless it is
/// mounted already (by an earlier agent whose pods were adopted); only root
/// may enter it.
fn mount_node_tmpfs(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if skiff_runtime::container::is_mount_point(dir) {
        return Ok(());
    }
    nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV, Some("mode=0700"))
        .map_err(std::io::Error::from)
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
    clean::clean_node(
        &agent.data_dir,
        agent.runtime.as_ref(),
        agent.network.as_ref(),
        agent.cgroups.as_ref(),
        &checkpoint::Keep::of(&adopted),
    )
    .await;
    let node_tmpfs = agent.data_dir.join(volumes::NODE_TMPFS_DIR);
    mount_node_tmpfs(&node_tmpfs).map_err(|source| AgentError::Io {
        path: node_tmpfs.display().to_string(),
        source,
    })?;
    node::register(&agent.client, &agent.node)
        .await
        .map_err(|source| AgentError::Register {
            node: agent.node.name.clone(),
            source,
        })?;
    // Pods are attached only once the node's network has its pod CIDR.
    let pod_cidr = match &agent.node.pod_cidr {
        Some(cidr) => cidr.clone(),
        None => match node::wait_for_pod_cidr(&agent.client, &agent.node.name, &shutdown).await {
            Ok(Some(cidr)) => cidr,
            Ok(None) => return Ok(()),
            Err(source) => return Err(AgentError::PodCidr { node: agent.node.name.clone(), source }),
        },
    };
    agent.network.configure(&pod_cidr).await.map_err(|source| AgentError::Network { pod_cidr: pod_cidr.clone(), source })?;
    tracing::info!(node = %agent.node.name, %pod_cidr, "pod network ready");
    tokio::spawn(node::heartbeat(
        agent.client.clone(),
        agent.node.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(routes::run(agent.client.clone(), agent.node.name.clone(), shutdown.clone()));
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
                cgroups: agent.cgroups.clone(),
            },
            shutdown.clone(),
        ));
    }
    let agent = Arc::new(agent);
    let mut pods = Pods {
        agent: agent.clone(),
        workers: HashMap::new(),
        static_pods: HashMap::new(),
        static_tasks: HashMap::new(),
        mirrors: static_pods::Mirrors {
            client: agent.client.clone(),
            node: agent.node.name.clone(),
        },
        mirror_created: mpsc::unbounded_channel(),
    };
    for (_, checkpoint) in adopted {
        if static_pods::is_static(&checkpoint.pod) {
            pods.static_pods
                .insert(checkpoint.uid(), (*checkpoint.pod).clone());
        }
        let (sender, receiver) = watch::channel(Some(checkpoint.pod.clone()));
        pods.workers.insert(checkpoint.uid(), sender);
        let name = full_name(&checkpoint.pod);
        let is_static = static_pods::is_static(&checkpoint.pod);
        let task = tokio::spawn(worker::adopt(agent.clone(), checkpoint, receiver));
        if is_static {
            pods.static_tasks.insert(name, task);
        }
    }
    tokio::spawn(images::watch_layers(
        agent.images.layers_dir(),
        agent.removed_layers.clone(),
        shutdown.clone(),
    ));
    // Static pods first: they run whatever the API server does.
    let (static_sender, mut static_receiver) = mpsc::channel(4);
    match agent.pod_manifest_path.clone() {
        Some(dir) => {
            tokio::spawn(static_pods::watch(
                dir,
                agent.node.name.clone(),
                static_sender,
                shutdown.clone(),
            ));
            if let Some(first) = static_receiver.recv().await {
                pods.set_static(first);
            }
        }
        None => pods.set_static(Vec::new()),
    }
    let api: Api<Pod> = Api::all(agent.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node.name));
    let events = watcher(api, config).modify(slim_pod);
    let mut events = std::pin::pin!(events.default_backoff());
    let mut seen_in_relist: Vec<String> = Vec::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            Some(set) = static_receiver.recv() => {
                pods.set_static(set);
                continue;
            }
            Some(uid) = pods.mirror_created.1.recv() => {
                pods.resync(&uid);
                continue;
            }
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
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)
                if static_pods::is_mirror(&pod) =>
            {
                pods.check_mirror(&pod, false);
            }
            watcher::Event::Delete(pod) if static_pods::is_mirror(&pod) => {
                pods.check_mirror(&pod, true);
            }
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                seen_in_relist.push(uid);
                pods.desire(pod);
            }
            watcher::Event::Delete(pod) => {
                pods.forget(&pod.metadata.uid.clone().unwrap_or_default());
            }
            watcher::Event::Init => seen_in_relist.clear(),
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was down are forgotten.
                let gone: Vec<String> = pods
                    .workers
                    .keys()
                    .filter(|uid| {
                        !seen_in_relist.contains(uid) && !pods.static_pods.contains_key(*uid)
                    })
                    .cloned()
                    .collect();
                for uid in gone {
                    pods.forget(&uid);
                }
            }
        }
        pods.workers.retain(|_, sender| !sender.is_closed());
    }
}

/// Each pod is held by its worker for as long as it runs: what the agent
/// never reads stays out. managedFields are for writers, and container
/// statuses are the agent's own record, written back.
fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
}

/// How long a deleted mirror pod stays away before it is recreated.
const MIRROR_RECREATE_DELAY: Duration = Duration::from_secs(1);

/// `namespace/name`.
fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The pods this node runs: a worker per pod UID, fed from the API server's
/// watch or from the static pod directory.
struct Pods {
    agent: Arc<Agent>,
    workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    /// Static pods by UID (the manifest hash).
    static_pods: HashMap<String, Pod>,
    /// The newest worker of each static pod name: a new version of a
    /// static pod starts once the old one is gone, as upstream.
    static_tasks: HashMap<String, tokio::task::JoinHandle<()>>,
    mirrors: static_pods::Mirrors,
    /// UIDs of static pods whose mirror pod was just created.
    mirror_created: (
        mpsc::UnboundedSender<String>,
        mpsc::UnboundedReceiver<String>,
    ),
}

impl Pods {
    /// Hands the latest version of a pod to its worker, starting one if needed.
    fn desire(&mut self, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match self.workers.get(&uid) {
            Some(sender) if !sender.is_closed() => {
                let _ = sender.send(Some(Arc::new(pod)));
            }
            _ => {
                let (sender, receiver) = watch::channel(Some(Arc::new(pod)));
                tokio::spawn(worker::run(self.agent.clone(), receiver));
                self.workers.insert(uid, sender);
            }
        }
    }

    /// Tells a pod's worker to stop the pod.
    fn forget(&mut self, uid: &str) {
        if let Some(sender) = self.workers.remove(uid) {
            let _ = sender.send(None);
        }
    }

    /// Makes the worker sync and report again (after its mirror was created).
    fn resync(&self, uid: &str) {
        if let (Some(sender), Some(pod)) = (self.workers.get(uid), self.static_pods.get(uid)) {
            let _ = sender.send(Some(Arc::new(pod.clone())));
        }
    }

    /// The static pod directory changed: start new pods, stop removed ones
    /// (an edited file is both), and make sure every mirror pod exists.
    fn set_static(&mut self, set: Vec<Pod>) {
        let new: HashMap<String, Pod> = set
            .into_iter()
            .map(|p| (p.metadata.uid.clone().unwrap_or_default(), p))
            .collect();
        let removed: Vec<String> = self
            .static_pods
            .keys()
            .filter(|uid| !new.contains_key(*uid))
            .cloned()
            .collect();
        for uid in removed {
            if let Some(pod) = self.static_pods.remove(&uid) {
                tracing::info!(pod = %pod.metadata.name.clone().unwrap_or_default(), "static pod removed");
                self.forget(&uid);
                let mirrors = self.mirrors.clone();
                tokio::spawn(async move {
                    if let Err(error) = mirrors.remove(&pod).await {
                        tracing::warn!(%error, "failed to delete a mirror pod");
                    }
                });
            }
        }
        for (uid, pod) in new {
            if !self.static_pods.contains_key(&uid) {
                tracing::info!(pod = %pod.metadata.name.clone().unwrap_or_default(), "static pod added");
                let (sender, receiver) = watch::channel(Some(Arc::new(pod.clone())));
                let previous = self.static_tasks.remove(&full_name(&pod));
                let agent = self.agent.clone();
                let task = tokio::spawn(async move {
                    if let Some(previous) = previous {
                        let _ = previous.await;
                    }
                    worker::run(agent, receiver).await;
                });
                self.static_tasks.insert(full_name(&pod), task);
                self.workers.insert(uid.clone(), sender);
                self.static_pods.insert(uid.clone(), pod);
            }
            self.ensure_mirror(&uid, Duration::ZERO);
        }
    }

    /// Reconciles a static pod's mirror, after `delay`.
    fn ensure_mirror(&self, uid: &str, delay: Duration) {
        let Some(pod) = self.static_pods.get(uid).cloned() else {
            return;
        };
        let (mirrors, created, uid) = (
            self.mirrors.clone(),
            self.mirror_created.0.clone(),
            uid.to_string(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            match mirrors.ensure(&pod).await {
                Ok(true) => {
                    let _ = created.send(uid);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, pod = ?pod.metadata.name, "mirror pod not reconciled; retried on the next rescan")
                }
            }
        });
    }

    /// A mirror pod changed or went: a deleted, outdated or orphaned mirror
    /// is replaced or removed, as kubelet does.
    fn check_mirror(&self, mirror: &Pod, deleted: bool) {
        let name = mirror.metadata.name.as_deref();
        let namespace = mirror.metadata.namespace.as_deref();
        let owner = self.static_pods.iter().find(|(_, p)| {
            p.metadata.name.as_deref() == name && p.metadata.namespace.as_deref() == namespace
        });
        match owner {
            Some((uid, _)) => {
                let outdated = static_pods::mirrored_uid(mirror) != Some(uid.as_str());
                if deleted || mirror.metadata.deletion_timestamp.is_some() || outdated {
                    // Someone deleted it, likely `kubectl delete`, which
                    // then lists the name and waits for a DELETED event: a
                    // mirror back before that list would keep it waiting.
                    self.ensure_mirror(uid, MIRROR_RECREATE_DELAY);
                }
            }
            None if !deleted => {
                let (mirrors, mirror) = (self.mirrors.clone(), mirror.clone());
                tokio::spawn(async move {
                    match mirrors.remove_orphan(&mirror).await {
                        Ok(()) => {
                            tracing::info!(pod = ?mirror.metadata.name, "orphaned mirror pod deleted")
                        }
                        Err(error) => {
                            tracing::warn!(%error, "failed to delete an orphaned mirror pod")
                        }
                    }
                });
            }
            None => {}
        }
    }
}
