//! The node agent's side effects, as traits it is handed through
//! [`crate::Agent`]: the container runtime (sandboxes, bundles, containers,
//! exec), the image store, the pod network, pod cgroups and the wall clock.
//! The real parts (`skiff-runtime`'s OCI runtime, image store, CNI and
//! cgroup tree) implement them here; unit tests hand in recording fakes.
//! Like kubelet's CRI, these say what the agent needs, not how it is done.
//!
//! Monotonic time is tokio's clock (`tokio::time::Instant`), which tests
//! control with `tokio::time::pause`; only wall time needs a seam.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use skiff_runtime::cgroups::{PodResources, Usage};
use skiff_runtime::container::exec::{ExecOutput, ExecRequest, ExecSession};
use skiff_runtime::container::attach::AttachSession;
use skiff_runtime::container::{ContainerError, ContainerStdio, OciRuntime};
use skiff_runtime::image::registries::{Credentials, RegistriesConfig};
use skiff_runtime::image::progress::Report;
use skiff_runtime::image::{Health, Image, ImageError, ImageStore};
use skiff_runtime::network::addresses::Addresses;
use skiff_runtime::network::{Attachment, Cni, NetworkError, PodAddress, OWN_NETWORK_NAME};
use skiff_runtime::sandbox::{Sandbox, SandboxError, SandboxOptions};

/// Sandboxes and containers (kubelet's RuntimeService).
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// `crun` or `runc`, the scheme of container IDs (`runc://<id>`).
    fn name(&self) -> String;
    /// Starts a pod sandbox holding the pod's namespaces.
    fn start_sandbox(&self, hostname: &str, options: &SandboxOptions) -> Result<Sandbox, SandboxError>;
    /// Stops a sandbox process and waits for it to go.
    fn stop_sandbox(&self, sandbox: &Sandbox);
    /// Makes a bundle: its config and a rootfs over `layers`.
    fn prepare_bundle(&self, bundle: &Path, layers: &[PathBuf], config: &Value) -> Result<(), ContainerError>;
    /// Starts a container under a monitor process that exits when it has.
    fn start(&self, bundle: &Path, id: &str, log: &Path, stdio: ContainerStdio) -> Result<tokio::process::Child, ContainerError>;
    /// Opens an attach session to a container's stdin and terminal; `None`
    /// when its monitor keeps neither.
    async fn attach(&self, bundle: &Path) -> Result<Option<AttachSession>, ContainerError>;
    async fn kill(&self, id: &str, signal: &str) -> Result<(), ContainerError>;
    /// Signals a running container's init, cheaply where the runtime
    /// allows (see `OciRuntime::signal_init`).
    async fn signal_init(&self, id: &str, bundle: &Path, monitor_pid: u32, signal: &str) -> Result<(), ContainerError> {
        let _ = (bundle, monitor_pid);
        self.kill(id, signal).await
    }
    async fn delete(&self, id: &str) -> Result<(), ContainerError>;
    /// Unmounts and removes a bundle.
    fn remove_bundle(&self, bundle: &Path) -> Result<(), ContainerError>;
    /// Starts a process in a running container (`kubectl exec`).
    fn exec(&self, request: &ExecRequest) -> Result<ExecSession, ContainerError>;
    /// Runs a command in a container and collects its output (exec probes).
    async fn exec_output(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput, ContainerError>;
}

/// The node's images (kubelet's ImageService).
#[async_trait::async_trait]
pub trait ImageService: Send + Sync {
    fn get(&self, name: &str) -> Result<Option<Image>, ImageError>;
    /// Pulls `name`, telling `report` how far it got.
    async fn pull(&self, name: &str, registries: &RegistriesConfig, credentials: &Credentials, report: Report<'_>) -> Result<Image, ImageError>;
    /// Checks an image's unpacked layers, mending what its blobs allow.
    fn verify(&self, image: &Image) -> Result<Health, ImageError>;
    fn config(&self, image: &Image) -> Result<Value, ImageError>;
    /// The unpacked layers of an image, bottom first.
    fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError>;
    /// Where unpacked layers live (watched for removals).
    fn layers_dir(&self) -> PathBuf;
    /// Whether the unpacked layer `digest` is there.
    fn has_layer(&self, digest: &str) -> bool;
}

/// Pod networks (CNI).
#[async_trait::async_trait]
pub trait PodNetwork: Send + Sync {
    async fn add(&self, attachment: &Attachment) -> Result<PodAddress, NetworkError>;
    async fn remove(&self, sandbox_id: &str) -> Result<(), NetworkError>;
    /// The sandboxes that have a network.
    fn attached(&self) -> Vec<String>;
    /// Sets the node's network up for the pod CIDR the server gave it,
    /// before any pod is attached.
    async fn configure(&self, pod_cidr: &str) -> Result<(), NetworkError>;
}

/// The node's CNI, with Skiff's own network (`own`) or the config the
/// user put in the CNI config directory (`None`, left as it is).
pub struct NodeNetwork {
    cni: Cni,
    own: Option<skiff_runtime::network::OwnNetwork>,
    /// The own network's addresses, once the node has its pod CIDR.
    addresses: std::sync::Mutex<Option<Addresses>>,
}

impl NodeNetwork {
    pub fn new(cni: Cni, own: Option<skiff_runtime::network::OwnNetwork>) -> Self {
        Self { cni, own, addresses: std::sync::Mutex::new(None) }
    }

    /// Runs `change` on the own network's addresses, if it has them.
    fn with_addresses<T>(&self, change: impl FnOnce(&mut Addresses) -> T) -> Option<T> {
        let mut addresses = self.addresses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        addresses.as_mut().map(change)
    }

    /// Attaches a pod to the own network at an address picked here (see
    /// [`skiff_runtime::network::addresses`]); an address host-local refuses
    /// (reserved behind the agent's back) is skipped, and after a few
    /// refusals host-local picks.
    async fn add_to_own(&self, attachment: &Attachment) -> Result<PodAddress, NetworkError> {
        const REFUSALS: usize = 3;
        for _ in 0..REFUSALS {
            let Some(Some(ip)) = self.with_addresses(|a| a.pick(&attachment.id)) else {
                break;
            };
            match self.cni.add_requesting(attachment, Some(ip)).await {
                Ok(address) => return Ok(address),
                Err(NetworkError::Plugin { message, .. }) if message.contains("is not available") => {
                    tracing::warn!(sandbox = %attachment.id, %ip, %message, "host-local refused the address picked for the pod; picking another");
                    self.with_addresses(|a| a.taken_by_another(&attachment.id));
                }
                Err(error) => {
                    self.with_addresses(|a| a.release(&attachment.id));
                    return Err(error);
                }
            }
        }
        let address = self.cni.add(attachment).await?;
        if let Ok(ip) = address.ip.parse() {
            self.with_addresses(|a| a.reserve(ip, &attachment.id));
        }
        Ok(address)
    }
}

/// Pod cgroups under one root (`/sys/fs/cgroup` on a node).
pub trait PodCgroups: Send + Sync {
    fn ensure(&self, resources: &PodResources) -> std::io::Result<()>;
    fn remove(&self, path: &str);
    /// Whether the OOM killer killed a process in the cgroup at `path`.
    fn oom_killed(&self, path: &str) -> bool;
    /// Paths of the pod cgroups that exist (`/kubepods/burstable/pod<uid>`).
    fn pod_cgroups(&self) -> Vec<String>;
    /// CPU time and memory working set of the cgroup at `path`.
    fn usage(&self, path: &str) -> Option<Usage>;
    /// The same for the whole node.
    fn node_usage(&self) -> Option<Usage>;
}

/// Wall time, for timestamps in status and checkpoints.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for OciRuntime {
    fn name(&self) -> String {
        OciRuntime::name(self)
    }
    fn start_sandbox(&self, hostname: &str, options: &SandboxOptions) -> Result<Sandbox, SandboxError> {
        Sandbox::start_with(&self.skiff, hostname, options)
    }
    fn stop_sandbox(&self, sandbox: &Sandbox) {
        sandbox.stop();
    }
    fn prepare_bundle(&self, bundle: &Path, layers: &[PathBuf], config: &Value) -> Result<(), ContainerError> {
        OciRuntime::prepare_bundle(self, bundle, layers, config)
    }
    fn start(&self, bundle: &Path, id: &str, log: &Path, stdio: ContainerStdio) -> Result<tokio::process::Child, ContainerError> {
        OciRuntime::start(self, bundle, id, log, stdio)
    }
    async fn attach(&self, bundle: &Path) -> Result<Option<AttachSession>, ContainerError> {
        AttachSession::connect(bundle)
            .await
            .map_err(|source| ContainerError::Io {
                path: bundle.join(skiff_runtime::container::attach::SOCKET).display().to_string(),
                source,
            })
    }
    async fn kill(&self, id: &str, signal: &str) -> Result<(), ContainerError> {
        OciRuntime::kill(self, id, signal).await
    }
    async fn signal_init(&self, id: &str, bundle: &Path, monitor_pid: u32, signal: &str) -> Result<(), ContainerError> {
        OciRuntime::signal_init(self, id, bundle, monitor_pid, signal).await
    }
    async fn delete(&self, id: &str) -> Result<(), ContainerError> {
        OciRuntime::delete(self, id).await
    }
    fn remove_bundle(&self, bundle: &Path) -> Result<(), ContainerError> {
        OciRuntime::remove_bundle(self, bundle)
    }
    fn exec(&self, request: &ExecRequest) -> Result<ExecSession, ContainerError> {
        OciRuntime::exec(self, request)
    }
    async fn exec_output(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput, ContainerError> {
        OciRuntime::exec_output(self, id, command, timeout).await
    }
}

#[async_trait::async_trait]
impl ImageService for ImageStore {
    fn get(&self, name: &str) -> Result<Option<Image>, ImageError> {
        ImageStore::get(self, name)
    }
    async fn pull(&self, name: &str, registries: &RegistriesConfig, credentials: &Credentials, report: Report<'_>) -> Result<Image, ImageError> {
        ImageStore::pull_reporting(self, name, registries, credentials, report).await
    }
    fn verify(&self, image: &Image) -> Result<Health, ImageError> {
        ImageStore::verify(self, image)
    }
    fn config(&self, image: &Image) -> Result<Value, ImageError> {
        ImageStore::config(self, image)
    }
    fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        ImageStore::layer_dirs(self, image)
    }
    fn layers_dir(&self) -> PathBuf {
        ImageStore::layers_dir(self)
    }
    fn has_layer(&self, digest: &str) -> bool {
        self.layer_path(digest).is_ok_and(|path| path.is_dir())
    }
}

#[async_trait::async_trait]
impl PodNetwork for Cni {
    async fn add(&self, attachment: &Attachment) -> Result<PodAddress, NetworkError> {
        Cni::add(self, attachment).await
    }
    async fn remove(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        Cni::remove(self, sandbox_id).await
    }
    fn attached(&self) -> Vec<String> {
        Cni::attached(self)
    }
    /// A bare CNI runs the config already in its directory.
    async fn configure(&self, _pod_cidr: &str) -> Result<(), NetworkError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl PodNetwork for NodeNetwork {
    async fn add(&self, attachment: &Attachment) -> Result<PodAddress, NetworkError> {
        match &self.own {
            Some(_) => self.add_to_own(attachment).await,
            None => self.cni.add(attachment).await,
        }
    }
    async fn remove(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        self.cni.remove(sandbox_id).await?;
        self.with_addresses(|a| a.release(sandbox_id));
        Ok(())
    }
    fn attached(&self) -> Vec<String> {
        self.cni.attached()
    }
    async fn configure(&self, pod_cidr: &str) -> Result<(), NetworkError> {
        match &self.own {
            Some(own) => {
                self.cni.configure_own(own, pod_cidr).await?;
                let addresses = Addresses::resumed(pod_cidr, &own.ipam_dir.join(OWN_NETWORK_NAME));
                if addresses.is_none() {
                    tracing::info!(%pod_cidr, "not an IPv4 pod CIDR; host-local picks pod addresses");
                }
                *self.addresses.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = addresses;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl PodCgroups for skiff_runtime::cgroups::Cgroups {
    fn ensure(&self, resources: &PodResources) -> std::io::Result<()> {
        self.ensure_pod_cgroup(resources)
    }
    fn remove(&self, path: &str) {
        self.remove_cgroup(path);
    }
    fn oom_killed(&self, path: &str) -> bool {
        skiff_runtime::cgroups::Cgroups::oom_killed(self, path)
    }
    fn pod_cgroups(&self) -> Vec<String> {
        skiff_runtime::cgroups::Cgroups::pod_cgroups(self)
    }
    fn usage(&self, path: &str) -> Option<Usage> {
        skiff_runtime::cgroups::Cgroups::usage(self, path)
    }
    fn node_usage(&self) -> Option<Usage> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        skiff_runtime::cgroups::node_usage(&stat, &meminfo)
    }
}
