//! One task per pod (by UID), fed the latest desired Pod through a watch
//! channel (updates that arrive while it works coalesce), as kubelet's pod
//! workers. It owns the pod's sandbox, network and containers: pulls images,
//! starts containers in order (init containers first, one at a time),
//! restarts them per restartPolicy with crash-loop backoff, and on deletion
//! stops them (SIGTERM or the image's STOPSIGNAL, SIGKILL after the grace
//! period), tears everything down and confirms the deletion.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Preconditions};
use serde_json::Value;
use skiff_client::{pod_reference, EventType};
use skiff_runtime::container::spec::{oci_config, BindMount, ContainerConfig, Limits, Namespace, Namespaces};
use skiff_runtime::container::{read_state, Exited, Started};
use skiff_runtime::image::registries::Credentials;
use skiff_runtime::image::{Health, Image, ImageError};
use skiff_runtime::network::{Attachment, PortMapping};
use skiff_runtime::sandbox::{hosts_file, Sandbox};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::checkpoint::{BackOff, Checkpoint, LiveContainer};
use crate::env::{command_line, environment, NodeFacts};
use crate::index::{ContainerEntry, ContainerIndex, SandboxEntry};
use crate::status::{pod_status, ContainerRecord, PodRecord, State, Termination, Update};
use crate::{probe, Agent};

/// First crash-loop delay, doubled per restart up to the maximum.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long without exiting resets its backoff.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// A container of this pod that the runtime knows about.
struct Live {
    id: String,
    bundle: PathBuf,
    stop_signal: String,
    /// The `skiff monitor` process holding it.
    monitor_pid: u32,
    /// Its probe tasks, stopped with it.
    probes: Vec<tokio::task::JoinHandle<()>>,
    /// Its image and the digests of the layers its rootfs is made of.
    image: String,
    layers: Vec<String>,
}

impl Live {
    fn stop_probes(&mut self) {
        for probe in self.probes.drain(..) {
            probe.abort();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop_probes();
    }
}

struct Worker {
    agent: Arc<Agent>,
    pod: Pod,
    key: String,
    sandbox: Option<Sandbox>,
    sandbox_id: String,
    record: PodRecord,
    live: HashMap<String, Live>,
    /// Per container: the delay before its next restart and when it may start.
    backoff: HashMap<String, (Duration, Instant)>,
    /// The pod ended for good and its sandbox was released.
    finished: bool,
    exits: mpsc::UnboundedSender<String>,
    probe_reports: mpsc::UnboundedSender<probe::Report>,
    /// The pid of a sandbox process that exited.
    sandbox_exits: mpsc::UnboundedSender<u32>,
    /// When local storage was last measured against its limits.
    storage_checked_at: Option<Instant>,
}

/// Why a container could not be created.
#[derive(Debug)]
enum Refused {
    /// Its configuration cannot be honoured (`CreateContainerConfigError`).
    Config(String),
    /// Creating it failed (`CreateContainerError`).
    Create(String),
    /// The pod's sandbox is gone: the pod needs a new one.
    SandboxGone,
}

impl Refused {
    fn reason_and_message(self) -> (&'static str, String) {
        match self {
            Self::Config(message) => ("CreateContainerConfigError", message),
            Self::Create(message) => ("CreateContainerError", message),
            Self::SandboxGone => ("CreateContainerError", "the pod sandbox is gone".into()),
        }
    }
}

impl From<String> for Refused {
    fn from(message: String) -> Self {
        Self::Create(message)
    }
}

/// A sandbox adopted from an agent older than sandbox ids runs
/// `skiff pause` without `--id`; it is recognized by its command alone.
fn sandbox_predates_ids(sandbox: &Sandbox) -> bool {
    skiff_runtime::process::runs_with_argument(sandbox.pid, "pause")
        && !skiff_runtime::process::runs_with_argument(sandbox.pid, "--id")
}

/// An emptyDir is writable by everyone (0777, as the kubelet makes it);
/// with `fsGroup` its group is that group, with setgid so new files get it
/// too (the kubelet's `SetVolumeOwnership`; a fresh emptyDir is the same
/// under `fsGroupChangePolicy` Always and OnRootMismatch).
fn set_volume_ownership(dir: &std::path::Path, fs_group: Option<u32>) -> std::io::Result<()> {
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

/// The capabilities this agent holds (its bounding set): no container
/// gets more.
fn node_capabilities() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| {
            tracing::warn!("cannot read the agent's capabilities; assuming all");
            u64::MAX
        });
    skiff_runtime::container::spec::capabilities_in_mask(mask)
}

/// An I/O error as Go prints it (`no such file or directory`).
fn io_message(error: &std::io::Error) -> String {
    let text = error.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_lowercase()
}

fn random_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn pod_name(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

type Inbox = (
    mpsc::UnboundedReceiver<String>,
    mpsc::UnboundedReceiver<probe::Report>,
    mpsc::UnboundedReceiver<u32>,
    broadcast::Receiver<String>,
);

/// Runs one pod until it is deleted or forgotten.
pub async fn run(agent: Arc<Agent>, mut desired: watch::Receiver<Option<Pod>>) {
    let Some(pod) = desired.borrow_and_update().clone() else {
        return;
    };
    let record = initial_record(&pod, &agent.node.internal_ip);
    let (worker, inbox) = Worker::new(agent, pod, record);
    worker.run(desired, inbox).await;
}

/// Takes over a pod an earlier agent ran, from its checkpoint: its sandbox,
/// its record and its running containers (their monitors kept them going),
/// then runs it as [`run`] does.
pub async fn adopt(
    agent: Arc<Agent>,
    checkpoint: Checkpoint,
    desired: watch::Receiver<Option<Pod>>,
) {
    let (mut worker, inbox) = Worker::new(agent, checkpoint.pod.clone(), checkpoint.record);
    worker.sandbox_id = checkpoint.sandbox_id;
    worker.finished = checkpoint.finished;
    let now_ms = Timestamp::now().as_millisecond();
    for backoff in checkpoint.backoff {
        let left = u64::try_from(backoff.due_unix_ms - now_ms).unwrap_or(0);
        worker.backoff.insert(
            backoff.name,
            (
                Duration::from_millis(backoff.delay_ms),
                Instant::now() + Duration::from_millis(left),
            ),
        );
    }
    let (namespace, name, uid) = pod_name(&worker.pod);
    if let Some(pid) = checkpoint.sandbox_pid {
        let sandbox = Sandbox { pid };
        if !sandbox.alive() {
            tracing::warn!(pod = %worker.key, pid, "the adopted pod's sandbox process is gone; the pod gets a new sandbox");
        }
        worker.watch_sandbox(pid);
        worker.agent.containers.set_sandbox(
            &namespace,
            &name,
            Some(SandboxEntry {
                id: worker.sandbox_id.clone(),
                pid,
                uid,
            }),
        );
        worker.sandbox = Some(sandbox);
    }
    for live in checkpoint.live {
        // The monitor is no longer our child: wait on its pidfd. One that is
        // gone (the container ended while no agent ran) reports at once;
        // its exit.json holds the real exit code.
        let exits = worker.exits.clone();
        let (container, pid) = (live.name.clone(), live.monitor_pid);
        let image = worker
            .container_spec(&live.name)
            .and_then(|c| c.image.as_deref())
            .and_then(|name| worker.agent.images.get(name).ok().flatten());
        let alive = skiff_runtime::process::runs_with_argument(pid, &live.id);
        tokio::spawn(async move {
            if alive {
                let _ = skiff_runtime::process::exited(pid).await;
            }
            let _ = exits.send(container);
        });
        worker.live.insert(
            live.name,
            Live {
                bundle: worker.agent.data_dir.join("containers").join(&live.id),
                id: live.id,
                stop_signal: live.stop_signal,
                monitor_pid: pid,
                probes: Vec::new(),
                image: image.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
                layers: image
                    .map(|i| i.layers.into_iter().map(|l| l.digest).collect())
                    .unwrap_or_default(),
            },
        );
    }
    let records: Vec<ContainerRecord> = worker
        .record
        .init_containers
        .iter()
        .chain(worker.record.containers.iter())
        .cloned()
        .collect();
    for record in records {
        let live_id = worker.live.get(&record.name).map(|l| l.id.clone());
        let runtime_id = live_id.clone().or_else(|| {
            record
                .container_id
                .split_once("://")
                .map(|(_, id)| id.to_string())
        });
        let Some(runtime_id) = runtime_id else {
            continue;
        };
        let entry = ContainerEntry {
            dir: worker.pod_dir().join(&record.name),
            attempt: worker.attempt(&record.name),
            running: live_id.is_some(),
            runtime_id,
        };
        worker
            .agent
            .containers
            .set(ContainerIndex::key(&namespace, &name, &record.name), entry);
        if live_id.is_some() && record.running() {
            if let Some(container) = worker.container_spec(&record.name).cloned() {
                let kinds: &[probe::Kind] = if record.started {
                    &[probe::Kind::Liveness, probe::Kind::Readiness]
                } else {
                    &[probe::Kind::Startup]
                };
                worker.start_probes(&container, kinds);
            }
        }
    }
    tracing::info!(pod = %worker.key, containers = worker.live.len(), "pod re-adopted");
    worker.run(desired, inbox).await;
}

impl Worker {
    fn new(agent: Arc<Agent>, pod: Pod, record: PodRecord) -> (Self, Inbox) {
        let (namespace, name, uid) = pod_name(&pod);
        let (exits, exited) = mpsc::unbounded_channel();
        let (probe_reports, probed) = mpsc::unbounded_channel();
        let (sandbox_exits, sandbox_exited) = mpsc::unbounded_channel();
        let removed_layers = agent.removed_layers.subscribe();
        let worker = Worker {
            key: format!("{namespace}_{name}_{uid}"),
            agent,
            pod,
            sandbox: None,
            sandbox_id: random_id(),
            record,
            live: HashMap::new(),
            backoff: HashMap::new(),
            finished: false,
            exits,
            probe_reports,
            sandbox_exits,
            storage_checked_at: None,
        };
        (worker, (exited, probed, sandbox_exited, removed_layers))
    }

    /// Watches the sandbox process through a pidfd: its exit is reported at
    /// once (no polling), and the pod gets a new sandbox.
    fn watch_sandbox(&self, pid: u32) {
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
    async fn on_sandbox_exit(&mut self, pid: u32) {
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

    async fn run(mut self, mut desired: watch::Receiver<Option<Pod>>, inbox: Inbox) {
        let (mut exited, mut probed, mut sandbox_exited, mut removed_layers) = inbox;
        tracing::info!(pod = %self.key, "pod worker started");
        loop {
            let latest = desired.borrow_and_update().clone();
            match latest {
                // A static pod whose file went: stopped as gracefully as a
                // deleted pod.
                None if crate::static_pods::is_static(&self.pod) => {
                    self.terminate().await;
                    return;
                }
                None => {
                    self.stop_all(Duration::from_secs(2)).await;
                    self.teardown().await;
                    return;
                }
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    self.pod = pod;
                    self.terminate().await;
                    return;
                }
                Some(pod) => self.pod = pod,
            }
            self.sync().await;
            self.publish();
            if self.is_terminal() {
                self.release_sandbox().await;
            }
            let wake = self.next_wake();
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        self.stop_all(Duration::from_secs(2)).await;
                        self.teardown().await;
                        return;
                    }
                }
                Some(name) = exited.recv() => self.on_exit(&name).await,
                Some(report) = probed.recv() => self.on_probe(report).await,
                Some(pid) = sandbox_exited.recv() => self.on_sandbox_exit(pid).await,
                removed = removed_layers.recv() => match removed {
                    Ok(digest) => self.on_layer_removed(&digest).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(pod = %self.key, missed, "missed layer removals; checking every container's layers");
                        self.check_live_layers().await;
                    }
                    // The agent is going away.
                    Err(broadcast::error::RecvError::Closed) => removed_layers = self.agent.removed_layers.subscribe(),
                },
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
        }
    }

    /// A layer was removed from the image store: containers whose rootfs
    /// uses it no longer see their files. Said in an event, and they are
    /// killed, to start again (per restartPolicy) on a verified image.
    async fn on_layer_removed(&mut self, digest: &str) {
        let hit: Vec<(String, String)> = self
            .live
            .iter()
            .filter(|(_, live)| live.layers.iter().any(|l| l == digest))
            .map(|(name, live)| (name.clone(), live.image.clone()))
            .collect();
        for (name, image) in hit {
            let message = format!("Layer {digest} of container image {image:?} was removed from the node's image store while container {name} ran; the container is killed and started again on a verified image");
            tracing::warn!(pod = %self.key, container = %name, "{message}");
            self.container_event(&name, EventType::Warning, "ImageDamaged", &message)
                .await;
            if let Some(live) = self.live.get(&name) {
                if let Err(error) = self.agent.runtime.kill(&live.id, "KILL").await {
                    tracing::warn!(pod = %self.key, container = %name, %error, "failed to kill the container");
                }
            }
        }
    }

    /// After missed removal notices: every running container's layers are
    /// looked at directly.
    async fn check_live_layers(&mut self) {
        let missing: Vec<String> = self
            .live
            .values()
            .flat_map(|live| live.layers.iter())
            .filter(|digest| {
                self.agent
                    .images
                    .layer_path(digest)
                    .is_ok_and(|path| !path.is_dir())
            })
            .cloned()
            .collect();
        for digest in missing {
            self.on_layer_removed(&digest).await;
        }
    }

    /// The worker's state as a restarted agent needs it.
    fn checkpoint(&self) -> Checkpoint {
        let now = Instant::now();
        let now_ms = Timestamp::now().as_millisecond();
        Checkpoint {
            pod: self.pod.clone(),
            sandbox_id: self.sandbox_id.clone(),
            sandbox_pid: self.sandbox.as_ref().map(|s| s.pid),
            record: self.record.clone(),
            finished: self.finished,
            live: self
                .live
                .iter()
                .map(|(name, live)| LiveContainer {
                    name: name.clone(),
                    id: live.id.clone(),
                    stop_signal: live.stop_signal.clone(),
                    monitor_pid: live.monitor_pid,
                })
                .collect(),
            backoff: self
                .backoff
                .iter()
                .map(|(name, (delay, at))| BackOff {
                    name: name.clone(),
                    delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    due_unix_ms: now_ms
                        + i64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(0),
                })
                .collect(),
        }
    }

    /// The attempt number of a container's newest log (`<attempt>.log`).
    fn attempt(&self, name: &str) -> i32 {
        self.record
            .containers
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.restart_count)
            .unwrap_or(0)
    }

    fn pod_dir(&self) -> PathBuf {
        self.agent.data_dir.join("pods").join(&self.key)
    }

    /// The pod's cgroup under `kubepods`, by QoS class (set by the API
    /// server at creation), parent of its containers' cgroups.
    fn cgroup_parent(&self) -> String {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let qos = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.qos_class.clone())
            .unwrap_or_else(|| skiff_api::pod::qos_class(&spec).to_string());
        skiff_runtime::cgroups::pod_cgroup_path(
            &qos,
            &self.pod.metadata.uid.clone().unwrap_or_default(),
        )
    }

    fn hostname(&self) -> String {
        let spec = self.pod.spec.as_ref();
        if spec.and_then(|s| s.host_network).unwrap_or(false) {
            // The host's UTS namespace: the machine's own name.
            if let Some(name) = nix::unistd::gethostname().ok().and_then(|n| n.into_string().ok()) {
                return name;
            }
        }
        let name = spec
            .and_then(|s| s.hostname.clone())
            .or_else(|| self.pod.metadata.name.clone())
            .unwrap_or_default();
        name.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    }

    async fn event(&self, kind: EventType, reason: &str, message: &str, field: Option<String>) {
        self.agent
            .events
            .record(
                &pod_reference(&self.pod, field.as_deref()),
                kind,
                reason,
                message,
            )
            .await;
    }

    /// The pod's restartPolicy (defaulted by the API server; Always if absent).
    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// Whether `name` is one of the pod's init containers.
    fn is_init(&self, name: &str) -> bool {
        self.pod
            .spec
            .as_ref()
            .is_some_and(|s| s.init_containers.iter().flatten().any(|c| c.name == name))
    }

    /// A container's field path in events, as kubelet sets it.
    fn field_path(&self, name: &str) -> Option<String> {
        let is_init = self.is_init(name);
        let list = if is_init {
            "initContainers"
        } else {
            "containers"
        };
        Some(format!("spec.{list}{{{name}}}"))
    }

    /// An event about one container.
    async fn container_event(&self, name: &str, kind: EventType, reason: &str, message: &str) {
        self.event(kind, reason, message, self.field_path(name))
            .await;
    }

    /// Sends the pod's status to the status manager and checkpoints the
    /// worker's state beside the pod.
    fn publish(&self) {
        if let Err(error) = self.checkpoint().save(&self.pod_dir()) {
            tracing::warn!(pod = %self.key, %error, "failed to write the pod checkpoint");
        }
        let (namespace, name, uid) = pod_name(&self.pod);
        let status = pod_status(&self.pod, &self.record, Timestamp::now());
        self.agent.status.send(Update {
            namespace,
            name,
            uid,
            status,
            mirror: crate::static_pods::is_static(&self.pod),
        });
    }

    fn record_mut(&mut self, name: &str) -> Option<&mut ContainerRecord> {
        self.record
            .containers
            .iter_mut()
            .chain(self.record.init_containers.iter_mut())
            .find(|c| c.name == name)
    }

    /// Whether every app container has ended for good (so sidecars may go).
    fn app_containers_done(&self) -> bool {
        self.restart_policy() != "Always"
            && self
                .record
                .containers
                .iter()
                .all(|c| matches!(c.state, State::Terminated(_)))
    }

    /// Once the app containers are done, sidecars are stopped, as upstream.
    async fn stop_sidecars_when_done(&mut self) {
        if !self.app_containers_done() {
            return;
        }
        for record in self.record.init_containers.iter().filter(|c| c.sidecar) {
            if let Some(live) = self.live.get(&record.name) {
                let _ = self.agent.runtime.kill(&live.id, &live.stop_signal).await;
            }
        }
    }

    /// When `activeDeadlineSeconds` runs out, counted from the pod's start.
    fn deadline(&self) -> Option<Instant> {
        let limit = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let elapsed = Timestamp::now().as_second() - self.record.start_time.as_second();
        let left = limit.saturating_sub(elapsed);
        Some(Instant::now() + seconds(left))
    }

    /// Past its deadline the pod fails: its containers are stopped and it
    /// is marked Failed with reason DeadlineExceeded, as upstream.
    async fn enforce_deadline(&mut self) -> bool {
        if self.record.failed.is_some() {
            return true;
        }
        if self.deadline().is_none_or(|d| d > Instant::now()) {
            return false;
        }
        let message = "Pod was active on the node longer than the specified deadline";
        self.event(EventType::Normal, "DeadlineExceeded", message, None)
            .await;
        self.record.failed = Some(("DeadlineExceeded".into(), message.into()));
        self.stop_all(self.grace_period()).await;
        true
    }

    /// Every monitoring period while containers run, as the eviction
    /// manager: a pod over a local-storage limit is evicted (its
    /// containers killed at once, Failed with reason `Evicted`).
    async fn enforce_storage_limits(&mut self) -> bool {
        if self.live.is_empty() || !crate::eviction::has_limits(&self.pod) {
            return false;
        }
        let now = Instant::now();
        if self
            .storage_checked_at
            .is_some_and(|at| now < at + crate::eviction::MONITORING_PERIOD)
        {
            return false;
        }
        self.storage_checked_at = Some(now);
        let usage = self.storage_usage().await;
        let Some(message) = crate::eviction::violation(&self.pod, &usage) else {
            return false;
        };
        tracing::warn!(pod = %self.key, %message, "evicting the pod");
        self.event(EventType::Warning, crate::eviction::REASON, &message, None)
            .await;
        self.record.failed = Some((crate::eviction::REASON.into(), message));
        for live in self.live.values_mut() {
            live.stop_probes();
        }
        // Grace 0 becomes the runtime's minimum of 2 s, as upstream.
        self.stop_all(Duration::from_secs(2)).await;
        true
    }

    /// What the pod uses on disk: its disk emptyDirs, and each running
    /// container's writable layer and logs.
    async fn storage_usage(&self) -> crate::eviction::Usage {
        let pod_dir = self.pod_dir();
        let volumes: Vec<(String, PathBuf)> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter(|v| v.empty_dir.as_ref().is_some_and(|e| e.medium.as_deref() != Some("Memory")))
            .map(|v| (v.name.clone(), pod_dir.join("volumes").join(&v.name)))
            .collect();
        let containers: Vec<(String, [PathBuf; 2])> = self
            .live
            .iter()
            .map(|(name, live)| (name.clone(), [live.bundle.join("upper"), pod_dir.join(name)]))
            .collect();
        let key = self.key.clone();
        let measure = move || {
            let usage_of = |paths: &[PathBuf]| -> u64 {
                paths
                    .iter()
                    .map(|path| {
                        crate::eviction::disk_usage(path).unwrap_or_else(|error| {
                            tracing::warn!(pod = %key, path = %path.display(), %error, "cannot measure disk usage");
                            0
                        })
                    })
                    .sum()
            };
            crate::eviction::Usage {
                volumes: volumes
                    .iter()
                    .map(|(name, path)| (name.clone(), usage_of(std::slice::from_ref(path))))
                    .collect(),
                containers: containers
                    .iter()
                    .map(|(name, paths)| (name.clone(), usage_of(paths)))
                    .collect(),
            }
        };
        match tokio::task::spawn_blocking(measure).await {
            Ok(usage) => usage,
            Err(error) => {
                tracing::warn!(pod = %self.key, %error, "disk usage measurement failed");
                crate::eviction::Usage::default()
            }
        }
    }

    /// The kubelet's admission: a pod it cannot run as specified (unsafe
    /// sysctls, AppArmor) is rejected: Failed, with the reason and
    /// `Pod was rejected: ...`, never started half-way.
    async fn admit(&mut self) -> bool {
        let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.trim() == "Y");
        match crate::security::admit(&self.pod, apparmor) {
            Ok(()) => true,
            Err(rejection) => {
                tracing::warn!(pod = %self.key, reason = rejection.reason, message = %rejection.message, "pod rejected");
                self.event(EventType::Warning, rejection.reason, &rejection.message, None)
                    .await;
                self.record.failed = Some((
                    rejection.reason.to_string(),
                    format!("Pod was rejected: {}", rejection.message),
                ));
                self.publish();
                false
            }
        }
    }

    /// Brings the pod towards its spec: sandbox, network, then containers.
    async fn sync(&mut self) {
        if self.finished || self.enforce_deadline().await || self.enforce_storage_limits().await {
            return;
        }
        if self.sandbox.is_none() && self.live.is_empty() && (self.is_terminal() || !self.admit().await) {
            return;
        }
        if self.sandbox.is_none() {
            if let Err(message) = self.create_sandbox().await {
                self.event(EventType::Warning, "FailedCreatePodSandBox", &message, None)
                    .await;
                tracing::warn!(pod = %self.key, error = %message, "sandbox creation failed");
                return;
            }
            self.publish();
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        // Init containers, one at a time, each to success; a sidecar
        // (restartPolicy Always) only has to have started.
        for init in spec.init_containers.iter().flatten() {
            let Some(record) = self.record_mut(&init.name).map(|r| r.clone()) else {
                continue;
            };
            if record.sidecar && record.running() && record.started {
                continue;
            }
            if !record.sidecar && record.completed() {
                continue;
            }
            // A failed init container under `Never` failed the pod.
            let failed = matches!(record.state, State::Terminated(_));
            if !failed && !self.live.contains_key(&init.name) && self.due(&init.name) {
                self.start_container(init).await;
            }
            return;
        }
        self.stop_sidecars_when_done().await;
        for container in &spec.containers {
            let pull_failed = self.record.containers.iter().any(|c| {
                c.name == container.name
                    && matches!(&c.state, State::Waiting { reason, .. } if reason == "ErrImagePull")
            });
            if pull_failed && !self.due(&container.name) {
                let image = container.image.clone().unwrap_or_default();
                let message = format!("Back-off pulling image {image:?}");
                let field = self.field_path(&container.name);
                self.event(EventType::Normal, "BackOff", &message, field.clone())
                    .await;
                self.event(
                    EventType::Warning,
                    "Failed",
                    "Error: ImagePullBackOff",
                    field,
                )
                .await;
                self.set_waiting(&container.name, "ImagePullBackOff", Some(message));
            }
            let record = self
                .record
                .containers
                .iter()
                .find(|c| c.name == container.name)
                .cloned();
            let waiting = record
                .as_ref()
                .is_some_and(|r| matches!(r.state, State::Waiting { .. }));
            if waiting && !self.live.contains_key(&container.name) && self.due(&container.name) {
                self.start_container(container).await;
            }
        }
    }

    /// When the worker must look again without news: a back-off ending, or
    /// shortly after a failed pull (to report the back-off).
    fn next_wake(&self) -> Option<Instant> {
        let soon = self
            .record
            .containers
            .iter()
            .any(|c| matches!(&c.state, State::Waiting { reason, .. } if reason == "ErrImagePull"))
            .then(|| Instant::now() + Duration::from_secs(1));
        let deadline = self.deadline().filter(|_| self.record.failed.is_none());
        let storage_check = (!self.live.is_empty()
            && self.record.failed.is_none()
            && crate::eviction::has_limits(&self.pod))
        .then(|| {
            self.storage_checked_at
                .map_or_else(Instant::now, |at| at + crate::eviction::MONITORING_PERIOD)
        });
        self.backoff
            .values()
            .map(|(_, at)| *at)
            .filter(|at| *at > Instant::now())
            .chain(soon)
            .chain(deadline)
            .chain(storage_check)
            .min()
    }

    /// Whether a container's backoff, if any, has elapsed.
    fn due(&self, name: &str) -> bool {
        self.backoff
            .get(name)
            .is_none_or(|(_, at)| *at <= Instant::now())
    }

    async fn create_sandbox(&mut self) -> Result<(), String> {
        let dir = self.pod_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
        let resources = pod_resources(&self.pod, self.cgroup_parent());
        skiff_runtime::cgroups::ensure_pod_cgroup(&resources)
            .map_err(|e| format!("Failed to create pod sandbox: pod cgroup: {e}"))?;
        let skiff = self.agent.skiff.clone();
        let hostname = self.hostname();
        let options = crate::security::sandbox_options(&self.pod, &self.sandbox_id);
        let host_network = options.host_network;
        let sandbox = tokio::task::spawn_blocking(move || Sandbox::start_with(&skiff, &hostname, &options))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("Failed to create pod sandbox: {e}"))?;
        self.watch_sandbox(sandbox.pid);
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
            match self.agent.cni.add(&attachment).await {
                Ok(address) => address.ip,
                Err(error) => {
                    sandbox.stop();
                    return Err(format!(
                        "Failed to create pod sandbox: failed to set up pod network: {error}"
                    ));
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
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        let hosts = if host_network {
            // kubelet gives hostNetwork pods the node's own hosts file.
            let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            for (ip, names) in &aliases {
                text.push_str(&format!("{ip}\t{}\n", names.join("\t")));
            }
            text
        } else {
            hosts_file(Some(&pod_ip), &hostname, &aliases)
        };
        let files = [
            ("etc-hosts", hosts),
            ("etc-hostname", format!("{hostname}\n")),
            ("resolv.conf", resolv_conf(&namespace)),
        ];
        for (file, contents) in files {
            std::fs::write(dir.join(file), contents)
                .map_err(|e| format!("failed to write {file}: {e}"))?;
        }
        std::fs::write(
            self.agent.data_dir.join("sandboxes").join(&self.sandbox_id),
            sandbox.pid.to_string(),
        )
        .ok();
        self.record.pod_ip = Some(pod_ip);
        self.record.sandbox_ready = true;
        let (namespace, name, uid) = pod_name(&self.pod);
        self.agent.containers.set_sandbox(
            &namespace,
            &name,
            Some(SandboxEntry {
                id: self.sandbox_id.clone(),
                pid: sandbox.pid,
                uid,
            }),
        );
        self.sandbox = Some(sandbox);
        Ok(())
    }

    /// Makes sure the image is present, honouring imagePullPolicy.
    async fn ensure_image(&mut self, container: &Container) -> Result<Image, (String, String)> {
        // Read (and report missing) pull secrets on every attempt, as upstream.
        let credentials = self.pull_credentials().await;
        let image = container.image.clone().unwrap_or_default();
        let policy = container
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| skiff_api::pod::default_pull_policy(&image).to_string());
        let field = self.field_path(&container.name);
        let present = match self.agent.images.get(&image) {
            Ok(present) => present,
            Err(ImageError::InvalidName { reason, .. }) => {
                let message = format!("Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: {reason}");
                self.event(EventType::Warning, "InspectFailed", &message, field)
                    .await;
                return Err(("InvalidImageName".into(), message));
            }
            Err(error) => return Err(("ErrImagePull".into(), error.to_string())),
        };
        let present = match present {
            Some(found) => self.check_image(found, field.clone()).await?,
            None => None,
        };
        match (policy.as_str(), present) {
            ("Never", Some(found)) | ("IfNotPresent", Some(found)) => {
                self.event(
                    EventType::Normal,
                    "Pulled",
                    &format!("Container image {image:?} already present on machine"),
                    field,
                )
                .await;
                return Ok(found);
            }
            ("Never", None) => {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.event(EventType::Warning, "ErrImageNeverPull", &message, field)
                    .await;
                return Err(("ErrImageNeverPull".into(), message));
            }
            _ => {}
        }
        self.event(
            EventType::Normal,
            "Pulling",
            &format!("Pulling image {image:?}"),
            field.clone(),
        )
        .await;
        let started = std::time::Instant::now();
        match self
            .agent
            .images
            .pull(&image, &self.agent.registries, &credentials)
            .await
        {
            Ok(pulled) => {
                let took = started.elapsed().as_secs_f64();
                let message = format!("Successfully pulled image {image:?} in {took:.3}s ({took:.3}s including waiting). Image size: {} bytes.", pulled.size());
                self.event(EventType::Normal, "Pulled", &message, field)
                    .await;
                Ok(pulled)
            }
            Err(error) => {
                // The registry's own words, without repeating what failed.
                let detail = match &error {
                    ImageError::Pull { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                let message = format!("Failed to pull image {image:?}: {detail}");
                self.event(EventType::Warning, "Failed", &message, field.clone())
                    .await;
                self.event(EventType::Warning, "Failed", "Error: ErrImagePull", field)
                    .await;
                Err(("ErrImagePull".into(), message))
            }
        }
    }

    /// Verifies a stored image before a container uses it: damaged layers
    /// are mended from their blobs, or the image counts as absent (and is
    /// pulled again as the policy allows); either is said in an event.
    async fn check_image(
        &self,
        image: Image,
        field: Option<String>,
    ) -> Result<Option<Image>, (String, String)> {
        let agent = self.agent.clone();
        let checked = image.clone();
        let health = tokio::task::spawn_blocking(move || agent.images.verify(&checked))
            .await
            .map_err(|e| ("ErrImagePull".to_string(), e.to_string()))?
            .map_err(|e| ("ErrImagePull".to_string(), e.to_string()))?;
        let name = &image.name;
        match health {
            Health::Intact => Ok(Some(image)),
            Health::Mended(layers) => {
                let message = format!("Container image {name:?} was damaged in the node's image store (layers {} changed or missing); they were unpacked again from their blobs", layers.join(", "));
                tracing::warn!(pod = %self.key, image = %name, "{message}");
                self.event(EventType::Warning, "ImageDamaged", &message, field)
                    .await;
                Ok(Some(image))
            }
            Health::Damaged(problem) => {
                let message = format!("Container image {name:?} is damaged in the node's image store: {problem}; it counts as not present");
                tracing::warn!(pod = %self.key, image = %name, "{message}");
                self.event(EventType::Warning, "ImageDamaged", &message, field)
                    .await;
                Ok(None)
            }
        }
    }

    /// Credentials from the pod's `imagePullSecrets` (dockerconfigjson);
    /// a missing secret is reported, and the pull goes on without it.
    async fn pull_credentials(&self) -> Credentials {
        let mut credentials = Credentials::default();
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.agent.client.clone(), &namespace);
        let names: Vec<String> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .collect();
        let mut missing = Vec::new();
        for name in names {
            match api.get(&name).await {
                Ok(secret) => {
                    let data = secret.data.unwrap_or_default();
                    let config = data
                        .get(".dockerconfigjson")
                        .or_else(|| data.get(".dockercfg"));
                    if let Some(bytes) = config {
                        if let Err(error) = credentials.add_docker_config(&bytes.0) {
                            tracing::warn!(pod = %self.key, secret = %name, %error, "unreadable pull secret");
                        }
                    }
                }
                Err(_) => missing.push(name),
            }
        }
        if !missing.is_empty() {
            let message = format!("Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.", missing.join(", "));
            self.event(
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                &message,
                None,
            )
            .await;
        }
        credentials
    }

    fn set_waiting(&mut self, name: &str, reason: &str, message: Option<String>) {
        if let Some(record) = self.record_mut(name) {
            record.state = State::Waiting {
                reason: reason.into(),
                message,
            };
        }
    }

    /// Schedules the next attempt of `name` after its doubling backoff.
    fn back_off(&mut self, name: &str, ran_for: Option<Duration>) -> Duration {
        let previous = self.backoff.get(name).map(|(d, _)| *d);
        let delay = match (previous, ran_for) {
            (Some(_), Some(ran)) if ran >= BACKOFF_RESET => BACKOFF_START,
            (Some(d), _) => (d * 2).min(BACKOFF_MAX),
            (None, _) => BACKOFF_START,
        };
        self.backoff
            .insert(name.to_string(), (delay, Instant::now() + delay));
        delay
    }

    async fn start_container(&mut self, container: &Container) {
        let name = container.name.clone();
        let is_init = self.is_init(&name);
        if !is_init && self.record_mut(&name).is_none() {
            return;
        }
        let image = match self.ensure_image(container).await {
            Ok(image) => image,
            Err((reason, message)) => {
                let delay = self.back_off(&name, None);
                tracing::info!(pod = %self.key, container = %name, %reason, ?delay, "image not available");
                // Reported as is now; the next sync shows the back-off (ImagePullBackOff).
                self.set_waiting(&name, &reason, Some(message));
                return;
            }
        };
        match self.create_and_start(container, &image).await {
            Ok(()) => {}
            Err(Refused::SandboxGone) => {
                // Not this container's fault: the pod gets a new sandbox.
                if let Some(pid) = self.sandbox.as_ref().map(|s| s.pid) {
                    tracing::warn!(pod = %self.key, container = %name, pid, "the sandbox's pid is no longer its sandbox process");
                    self.on_sandbox_exit(pid).await;
                }
            }
            Err(refused) => {
                let (reason, message) = refused.reason_and_message();
                self.back_off(&name, None);
                self.container_event(
                    &name,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {message}"),
                )
                .await;
                self.set_waiting(&name, reason, Some(message));
            }
        }
    }

    /// The security settings and namespaces of `container`, or why it
    /// cannot be created as specified.
    fn decide_security(
        &self,
        container: &Container,
        image_config: &Value,
        sandbox: &Sandbox,
    ) -> Result<(skiff_runtime::container::spec::Security, Namespaces), Refused> {
        let image_user = image_config["config"]["User"].as_str().unwrap_or("");
        crate::security::verify_run_as_non_root(&self.pod, container, image_user)
            .map_err(Refused::Config)?;
        let privileged = container
            .security_context
            .as_ref()
            .and_then(|c| c.privileged)
            .unwrap_or(false);
        let node_capabilities = node_capabilities();
        let capabilities = crate::security::capabilities(container, &node_capabilities);
        // containerd runs privileged containers without seccomp.
        let seccomp = match crate::security::seccomp_profile(&self.pod, container) {
            Some(profile) if !privileged => match profile.type_.as_str() {
                "RuntimeDefault" => Some(skiff_runtime::container::seccomp::runtime_default(&capabilities)),
                "Localhost" => {
                    let name = profile.localhost_profile.unwrap_or_default();
                    let path = self.agent.data_dir.join("seccomp").join(&name);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        Refused::Create(format!(
                            "failed to generate seccomp spec opts: cannot load seccomp profile {:?}: open {}: {}",
                            path.display().to_string(),
                            path.display(),
                            io_message(&e)
                        ))
                    })?;
                    Some(
                        skiff_runtime::container::seccomp::from_profile(&text, &capabilities)
                            .map_err(|e| Refused::Create(format!("failed to generate seccomp spec opts: {e}")))?,
                    )
                }
                _ => None,
            },
            _ => None,
        };
        // The sandbox's namespaces are joined only while its pid is still it.
        if !sandbox.is(&self.sandbox_id) && !sandbox_predates_ids(sandbox) {
            return Err(Refused::SandboxGone);
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let join = |kind: &str| Namespace::Join(format!("/proc/{}/ns/{kind}", sandbox.pid));
        let host_network = spec.host_network.unwrap_or(false);
        let namespaces = Namespaces {
            network: if host_network { Namespace::Host } else { join("net") },
            uts: if host_network { Namespace::Host } else { join("uts") },
            ipc: if spec.host_ipc.unwrap_or(false) { Namespace::Host } else { join("ipc") },
            pid: if spec.host_pid.unwrap_or(false) {
                Namespace::Host
            } else if spec.share_process_namespace.unwrap_or(false) {
                join("pid")
            } else {
                Namespace::Private
            },
        };
        Ok((
            crate::security::security(&self.pod, container, &node_capabilities, seccomp),
            namespaces,
        ))
    }

    async fn create_and_start(
        &mut self,
        container: &Container,
        image: &Image,
    ) -> Result<(), Refused> {
        let agent = self.agent.clone();
        let name = container.name.clone();
        let sandbox = self.sandbox.clone().ok_or(Refused::SandboxGone)?;
        let image_config = agent.images.config(image).map_err(|e| e.to_string())?;
        let (mut security, namespaces) = self.decide_security(container, &image_config, &sandbox)?;
        if let Some(labels) = crate::security::selinux_labels(&self.pod, container) {
            if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
                security.selinux = Some(labels);
            } else {
                let message = format!("seLinuxOptions of container {name} are not applied: SELinux is not enabled on this node");
                tracing::warn!(pod = %self.key, container = %name, "{message}");
                self.container_event(&name, EventType::Warning, "SELinuxNotEnabled", &message)
                    .await;
            }
        }
        let facts = NodeFacts {
            node_name: agent.node.name.clone(),
            host_ip: agent.node.internal_ip.clone(),
            pod_ip: self.record.pod_ip.clone().unwrap_or_default(),
            allocatable_milli_cpu: i128::from(agent.node.cpus) * 1000,
            allocatable_memory: i128::from(agent.node.memory_bytes),
        };
        let env = environment(
            &self.pod,
            container,
            &image_config,
            &self.hostname(),
            &facts,
        );
        let args = command_line(container, &image_config, &env);
        if args.is_empty() {
            return Err(Refused::Create("no command specified".into()));
        }
        let pod_dir = self.pod_dir();
        let attempt = self.attempt(&name);
        let log_dir = pod_dir.join(&name);
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let log = log_dir.join(format!("{attempt}.log"));
        let termination_log = pod_dir.join(format!("termination-{name}"));
        std::fs::write(&termination_log, "").map_err(|e| e.to_string())?;
        let mut mounts = vec![
            BindMount {
                source: pod_dir.join("etc-hosts").display().to_string(),
                destination: "/etc/hosts".into(),
                read_only: false,
            },
            BindMount {
                source: pod_dir.join("etc-hostname").display().to_string(),
                destination: "/etc/hostname".into(),
                read_only: false,
            },
            BindMount {
                source: pod_dir.join("resolv.conf").display().to_string(),
                destination: "/etc/resolv.conf".into(),
                read_only: false,
            },
            BindMount {
                source: termination_log.display().to_string(),
                destination: container
                    .termination_message_path
                    .clone()
                    .unwrap_or_else(|| "/dev/termination-log".into()),
                read_only: false,
            },
        ];
        for mount in container.volume_mounts.iter().flatten() {
            let dir = self.volume_dir(&mount.name)?;
            mounts.push(BindMount {
                source: dir.display().to_string(),
                destination: mount.mount_path.clone(),
                read_only: mount.read_only.unwrap_or(false),
            });
        }
        let layers = agent.images.layer_dirs(image).map_err(|e| e.to_string())?;
        let (uid, gid) = user_of(container, &self.pod, &image_config, &layers).map_err(Refused::Create)?;
        let id = random_id();
        let bundle = agent.data_dir.join("containers").join(&id);
        let config = ContainerConfig {
            args,
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: container
                .working_dir
                .clone()
                .or_else(|| {
                    image_config["config"]["WorkingDir"]
                        .as_str()
                        .map(str::to_string)
                })
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            uid,
            gid,
            additional_gids: crate::security::additional_gids(&self.pod),
            hostname: self.hostname(),
            namespaces,
            security,
            mounts,
            readonly_rootfs: container
                .security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false),
            cgroups_path: format!("{}/{id}", self.cgroup_parent()),
            limits: limits_of(container),
        };
        let spec = oci_config(&config);
        let runtime = agent.runtime.clone();
        let prepared_bundle = bundle.clone();
        tokio::task::spawn_blocking(move || {
            runtime.prepare_bundle(&prepared_bundle, &layers, &spec)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let field = self.field_path(&name);
        self.event(
            EventType::Normal,
            "Created",
            &format!("Created container: {name}"),
            field.clone(),
        )
        .await;
        let mut monitor = agent
            .runtime
            .start(&bundle, &id, &log)
            .map_err(|e| e.to_string())?;
        let (namespace, pod, _) = pod_name(&self.pod);
        let entry = ContainerEntry {
            dir: log_dir.clone(),
            attempt,
            running: true,
            runtime_id: id.clone(),
        };
        agent
            .containers
            .set(ContainerIndex::key(&namespace, &pod, &name), entry);
        let monitor_pid = monitor.id().unwrap_or(0);
        let exits = self.exits.clone();
        let exit_name = name.clone();
        tokio::spawn(async move {
            let _ = monitor.wait().await;
            let _ = exits.send(exit_name);
        });
        // The monitor writes started.json once the runtime started the
        // process, or exit.json if it could not; on a loaded node that can
        // take long, so there is no deadline, only the monitor's own end.
        let mut pause = Duration::from_millis(2);
        let started = loop {
            if let Some(started) = read_state::<Started>(&bundle, "started.json") {
                break Some(started);
            }
            let monitor_gone = !skiff_runtime::process::running(monitor_pid);
            if read_state::<Exited>(&bundle, "exit.json").is_some() || monitor_gone {
                break None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        };
        let stop_signal = image_config["config"]["StopSignal"]
            .as_str()
            .unwrap_or("SIGTERM")
            .trim_start_matches("SIG")
            .to_string();
        self.live.insert(
            name.clone(),
            Live {
                id: id.clone(),
                bundle: bundle.clone(),
                stop_signal,
                monitor_pid,
                probes: Vec::new(),
                image: image.name.clone(),
                layers: image.layers.iter().map(|l| l.digest.clone()).collect(),
            },
        );
        let container_id = format!("{}://{id}", agent.runtime.name());
        let image_id = image.image_id();
        if let Some(record) = self.record_mut(&name) {
            record.container_id = container_id;
            record.image_id = image_id;
            if started.is_some() {
                record.state = State::Running {
                    started_at: Timestamp::now(),
                };
                record.started = container.startup_probe.is_none();
                record.ready = record.started && container.readiness_probe.is_none();
            }
        }
        if started.is_some() {
            // A startup probe gates the others until it succeeds.
            if container.startup_probe.is_some() {
                self.start_probes(container, &[probe::Kind::Startup]);
            } else {
                self.start_probes(container, &[probe::Kind::Liveness, probe::Kind::Readiness]);
            }
            self.event(
                EventType::Normal,
                "Started",
                &format!("Started container {name}"),
                field,
            )
            .await;
            self.post_start(container).await;
        }
        Ok(())
    }

    /// Starts the container's probes of `kinds` (those it has).
    fn start_probes(&mut self, container: &Container, kinds: &[probe::Kind]) {
        let (Some(sandbox), Some(live)) =
            (self.sandbox.clone(), self.live.get_mut(&container.name))
        else {
            return;
        };
        for kind in kinds {
            let spec = match kind {
                probe::Kind::Liveness => &container.liveness_probe,
                probe::Kind::Readiness => &container.readiness_probe,
                probe::Kind::Startup => &container.startup_probe,
            };
            let Some(spec) = spec.clone() else { continue };
            let target = probe::Target {
                runtime: self.agent.runtime.clone(),
                runtime_id: live.id.clone(),
                sandbox: sandbox.clone(),
                pod_ip: self.record.pod_ip.clone().unwrap_or_default(),
                container: container.clone(),
            };
            live.probes.push(tokio::spawn(probe::run(
                *kind,
                spec,
                target,
                self.probe_reports.clone(),
            )));
        }
    }

    /// A probe failed once, or its result changed.
    async fn on_probe(&mut self, report: probe::Report) {
        let name = report.container.clone();
        if self
            .live
            .get(&name)
            .is_none_or(|l| l.id != report.runtime_id)
        {
            return; // from an earlier attempt
        }
        let Some(container) = self.container_spec(&name).cloned() else {
            return;
        };
        match report.event {
            probe::ReportEvent::Failed(message) => {
                let text = format!("{} probe failed: {message}", report.kind.title());
                self.container_event(&name, EventType::Warning, "Unhealthy", &text)
                    .await;
            }
            probe::ReportEvent::Changed(result) => match (report.kind, result) {
                (probe::Kind::Readiness, ready) => {
                    if let Some(record) = self.record_mut(&name) {
                        record.ready = ready;
                    }
                }
                (probe::Kind::Startup, true) => {
                    if let Some(record) = self.record_mut(&name) {
                        record.started = true;
                        record.ready = container.readiness_probe.is_none();
                    }
                    self.start_probes(&container, &[probe::Kind::Liveness, probe::Kind::Readiness]);
                }
                (probe::Kind::Liveness, true) => {}
                (kind, false) => self.kill_unhealthy(&container, kind).await,
            },
        }
    }

    /// A failed liveness or startup probe: the container is killed (within
    /// the probe's or the pod's grace period) and restarted per policy.
    async fn kill_unhealthy(&mut self, container: &Container, kind: probe::Kind) {
        let name = container.name.clone();
        let Some(live) = self.live.get_mut(&name) else {
            return;
        };
        live.stop_probes();
        let (id, signal) = (live.id.clone(), live.stop_signal.clone());
        let probe_grace = match kind {
            probe::Kind::Startup => container.startup_probe.as_ref(),
            _ => container.liveness_probe.as_ref(),
        }
        .and_then(|p| p.termination_grace_period_seconds);
        let grace = probe_grace
            .map(seconds)
            .unwrap_or_else(|| self.grace_period());
        if let Some(record) = self.record_mut(&name) {
            record.ready = false;
        }
        let message = format!(
            "Container {name} failed {} probe, will be restarted",
            report_kind(kind)
        );
        self.container_event(&name, EventType::Normal, "Killing", &message)
            .await;
        tracing::info!(pod = %self.key, container = %name, ?kind, "probe failed; killing the container");
        let runtime = self.agent.runtime.clone();
        tokio::spawn(async move {
            let _ = runtime.kill(&id, &signal).await;
            tokio::time::sleep(grace).await;
            // Still there after the grace period (or already gone: harmless).
            let _ = runtime.kill(&id, "KILL").await;
        });
    }

    /// Runs one lifecycle hook handler (exec, httpGet, tcpSocket or sleep)
    /// against the running container `name`, within `timeout`.
    async fn run_hook(
        &self,
        container: &Container,
        handler: &k8s_openapi::api::core::v1::LifecycleHandler,
        timeout: Duration,
    ) -> Result<(), String> {
        if let Some(sleep) = &handler.sleep {
            tokio::time::sleep(seconds(sleep.seconds).min(timeout)).await;
            return Ok(());
        }
        let (Some(live), Some(sandbox)) = (self.live.get(&container.name), self.sandbox.clone())
        else {
            return Err("the container is not running".into());
        };
        // A hook handler is a probe handler run once, bounded by `timeout`.
        let as_probe = k8s_openapi::api::core::v1::Probe {
            exec: handler.exec.clone(),
            http_get: handler.http_get.clone(),
            tcp_socket: handler.tcp_socket.clone(),
            timeout_seconds: Some(i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        let target = probe::Target {
            runtime: self.agent.runtime.clone(),
            runtime_id: live.id.clone(),
            sandbox,
            pod_ip: self.record.pod_ip.clone().unwrap_or_default(),
            container: container.clone(),
        };
        probe::probe_once(&as_probe, &target).await
    }

    /// The event message kubelet uses when a hook fails.
    fn hook_failure(
        &self,
        container: &Container,
        handler: &k8s_openapi::api::core::v1::LifecycleHandler,
        error: &str,
    ) -> String {
        let (namespace, pod, uid) = pod_name(&self.pod);
        let kind = match (&handler.exec, &handler.http_get) {
            (Some(exec), _) => format!(
                "Exec lifecycle hook ({:?})",
                exec.command.clone().unwrap_or_default()
            ),
            (None, Some(http)) => format!(
                "HTTP lifecycle hook ({})",
                http.path.clone().unwrap_or_default()
            ),
            _ => "Lifecycle hook".to_string(),
        };
        format!(
            "{kind} for Container {:?} in Pod \"{pod}_{namespace}({uid})\" failed - error: {error}",
            container.name
        )
    }

    /// postStart: runs right after the container started; if it fails the
    /// container is killed (and restarted per policy), as upstream.
    async fn post_start(&mut self, container: &Container) {
        let Some(handler) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.clone())
        else {
            return;
        };
        let grace = self.grace_period();
        if let Err(error) = self.run_hook(container, &handler, grace).await {
            let message = self.hook_failure(container, &handler, &error);
            self.container_event(
                &container.name,
                EventType::Warning,
                "FailedPostStartHook",
                &message,
            )
            .await;
            if let Some(live) = self.live.get(&container.name) {
                let _ = self.agent.runtime.kill(&live.id, "KILL").await;
            }
        }
    }

    /// preStop of every live container that has one, concurrently, within
    /// the grace period (which they use up).
    async fn pre_stop_all(&mut self, grace: Duration) {
        let containers: Vec<Container> = self
            .live
            .keys()
            .filter_map(|name| self.container_spec(name))
            .filter(|c| c.lifecycle.as_ref().is_some_and(|l| l.pre_stop.is_some()))
            .cloned()
            .collect();
        let this: &Worker = self;
        let runs = containers.iter().filter_map(|c| {
            let handler = c.lifecycle.as_ref()?.pre_stop.clone()?;
            Some(async move {
                let result = tokio::time::timeout(grace, this.run_hook(c, &handler, grace)).await;
                (c, handler, result)
            })
        });
        let results = futures::future::join_all(runs).await;
        for (container, handler, result) in results {
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error,
                Err(_) => format!("timed out after {}s", grace.as_secs()),
            };
            let message = self.hook_failure(container, &handler, &error);
            self.container_event(
                &container.name,
                EventType::Warning,
                "FailedPreStopHook",
                &message,
            )
            .await;
        }
    }

    /// The pod's terminationGracePeriodSeconds (30 by default).
    fn grace_period(&self) -> Duration {
        seconds(
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30),
        )
    }

    /// A container of the pod's spec (app or init) by name.
    fn container_spec(&self, name: &str) -> Option<&Container> {
        self.pod.spec.as_ref().and_then(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .find(|c| c.name == name)
        })
    }

    /// The host directory behind a volume (emptyDir on disk).
    fn volume_dir(&self, volume: &str) -> Result<PathBuf, String> {
        let dir = self.pod_dir().join("volumes").join(volume);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("failed to create volume {volume}: {e}"))?;
        let spec = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .and_then(|v| v.iter().find(|v| v.name == volume));
        let memory = spec
            .and_then(|v| v.empty_dir.as_ref())
            .filter(|e| e.medium.as_deref() == Some("Memory"));
        if let Some(empty_dir) = memory {
            let mounted = std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .any(|l| l.split_whitespace().nth(4) == Some(dir.to_string_lossy().as_ref()));
            if !mounted {
                // medium: Memory is a tmpfs, sized by sizeLimit when given.
                let size = empty_dir
                    .size_limit
                    .as_ref()
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
                .map_err(|e| format!("failed to mount a tmpfs for volume {volume}: {e}"))?;
            }
        }
        set_volume_ownership(&dir, crate::security::fs_group(&self.pod))
            .map_err(|e| format!("failed to set the ownership of volume {volume}: {e}"))?;
        Ok(dir)
    }

    /// Unmounts memory-backed volumes of the pod.
    fn unmount_volumes(&self) {
        let volumes = self.pod_dir().join("volumes");
        for (mount_point, error) in skiff_runtime::container::unmount_all_under(&volumes) {
            tracing::warn!(pod = %self.key, mount = %mount_point, %error, "failed to unmount a volume");
        }
    }

    /// Forgets a container whose monitor ended: removes it from the runtime
    /// and returns how it ended (with how long it ran).
    async fn reap(&mut self, name: &str) -> Option<(Termination, Option<Duration>)> {
        let live = self.live.remove(name)?;
        self.mark_log_stopped(name);
        let exited: Option<Exited> = read_state(&live.bundle, "exit.json");
        let started: Option<Started> = read_state(&live.bundle, "started.json");
        let termination_message =
            std::fs::read_to_string(self.pod_dir().join(format!("termination-{name}")))
                .unwrap_or_default();
        // Read before the runtime deletes the container's cgroup.
        let oom_killed =
            skiff_runtime::cgroups::oom_killed(&format!("{}/{}", self.cgroup_parent(), live.id));
        let _ = self.agent.runtime.delete(&live.id).await;
        let runtime = self.agent.runtime.clone();
        let bundle = live.bundle.clone();
        let _ = tokio::task::spawn_blocking(move || runtime.remove_bundle(&bundle)).await;
        // No exit record means the monitor itself was killed: report SIGKILL.
        let exit_code = exited.as_ref().map(|e| e.exit_code).unwrap_or(137);
        let termination_message = if termination_message.is_empty() && exit_code != 0 {
            self.log_tail_if_asked(name)
        } else {
            termination_message
        };
        let error = exited.as_ref().and_then(|e| e.error.clone());
        let started_at = started
            .as_ref()
            .and_then(|s| s.started_at.parse::<Timestamp>().ok());
        let finished_at = Timestamp::now();
        let ran_for = started_at.map(|s| seconds(finished_at.as_second() - s.as_second()));
        let termination = Termination {
            exit_code,
            signal: exited.as_ref().and_then(|e| e.signal),
            reason: match (exit_code, &error) {
                (_, Some(_)) => "StartError".into(),
                (137, None) if oom_killed => "OOMKilled".into(),
                (0, None) => "Completed".into(),
                _ => "Error".into(),
            },
            message: error.or(Some(termination_message).filter(|m| !m.is_empty())),
            started_at,
            finished_at,
            container_id: format!("{}://{}", self.agent.runtime.name(), live.id),
        };
        tracing::info!(pod = %self.key, container = name, exit_code, "container exited");
        Some((termination, ran_for))
    }

    /// `terminationMessagePolicy: FallbackToLogsOnError`: the end of the
    /// log (80 lines, 2 KiB at most, as upstream) stands in for the message.
    fn log_tail_if_asked(&self, name: &str) -> String {
        let asked = self.container_spec(name).is_some_and(|c| {
            c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        });
        if !asked {
            return String::new();
        }
        let (namespace, pod, _) = pod_name(&self.pod);
        let Some(entry) = self
            .agent
            .containers
            .get(&ContainerIndex::key(&namespace, &pod, name))
        else {
            return String::new();
        };
        let path = entry.dir.join(format!("{}.log", entry.attempt));
        let bytes = std::fs::read(&path).unwrap_or_else(|error| {
            tracing::warn!(pod = %self.key, container = %name, log = %path.display(), %error, "cannot read the log for the termination message");
            Vec::new()
        });
        let tail = crate::logs::render(
            &crate::logs::parse(&bytes),
            &crate::logs::LogOptions {
                tail_lines: Some(80),
                ..Default::default()
            },
        );
        // The last 2048 bytes, as upstream (the message is a string: lossy).
        let start = tail.len().saturating_sub(2048);
        String::from_utf8_lossy(&tail[start..]).into_owned()
    }

    /// A container's monitor ended: record how, and decide whether it restarts.
    async fn on_exit(&mut self, name: &str) {
        let Some((termination, ran_for)) = self.reap(name).await else {
            return;
        };
        let policy = self.restart_policy();
        let sidecar = self.record_mut(name).is_some_and(|r| r.sidecar);
        let restart = match policy.as_str() {
            _ if sidecar => !self.app_containers_done(),
            _ if self.is_init(name) && termination.exit_code == 0 => false,
            "Always" => true,
            "OnFailure" => termination.exit_code != 0,
            _ => false,
        };
        if !restart {
            if let Some(record) = self.record_mut(name) {
                record.state = State::Terminated(termination);
            }
            return;
        }
        let delay = self.back_off(name, ran_for);
        let (namespace, pod, uid) = pod_name(&self.pod);
        let message = format!(
            "back-off {} restarting failed container={name} pod={pod}_{namespace}({uid})",
            humantime(delay)
        );
        if let Some(record) = self.record_mut(name) {
            record.last = Some(termination);
            record.restart_count += 1;
            record.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(message),
            };
        }
        let event =
            format!("Back-off restarting failed container {name} in pod {pod}_{namespace}({uid})");
        self.container_event(name, EventType::Warning, "BackOff", &event)
            .await;
    }

    /// Reaps containers as their exit records appear, until none is left or `deadline`.
    async fn reap_until(&mut self, deadline: Instant) {
        while !self.live.is_empty() && Instant::now() < deadline {
            let exited: Vec<String> = self
                .live
                .iter()
                .filter(|(_, l)| l.bundle.join("exit.json").exists())
                .map(|(n, _)| n.clone())
                .collect();
            for name in exited {
                if let Some((termination, _)) = self.reap(&name).await {
                    if let Some(record) = self.record_mut(&name) {
                        record.state = State::Terminated(termination);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Signals every live container, waits up to `grace`, then kills what
    /// is left; sidecars are signalled after the other containers ended.
    async fn stop_all(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let sidecars: Vec<String> = self
            .record
            .init_containers
            .iter()
            .filter(|c| c.sidecar)
            .map(|c| c.name.clone())
            .collect();
        for (name, live) in self.live.iter().filter(|(n, _)| !sidecars.contains(n)) {
            tracing::info!(pod = %self.key, container = %name, signal = %live.stop_signal, "stopping container");
            let _ = self.agent.runtime.kill(&live.id, &live.stop_signal).await;
        }
        while self.live.keys().any(|n| !sidecars.contains(n)) && Instant::now() < deadline {
            self.reap_until(Instant::now() + Duration::from_millis(50))
                .await;
        }
        for (name, live) in self.live.iter().filter(|(n, _)| sidecars.contains(n)) {
            tracing::info!(pod = %self.key, container = %name, signal = %live.stop_signal, "stopping sidecar");
            let _ = self.agent.runtime.kill(&live.id, &live.stop_signal).await;
        }
        self.reap_until(deadline).await;
        for live in self.live.values() {
            let _ = self.agent.runtime.kill(&live.id, "KILL").await;
        }
        self.reap_until(Instant::now() + Duration::from_secs(5))
            .await;
    }

    /// Graceful deletion: stop containers within the grace period, clean
    /// up, report the final status, then confirm with a grace-0 delete.
    async fn terminate(&mut self) {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .map(seconds)
            .unwrap_or_else(|| self.grace_period());
        // A terminating pod is not ready and its probes stop, as upstream.
        for live in self.live.values_mut() {
            live.stop_probes();
        }
        for record in &mut self.record.containers {
            record.ready = false;
        }
        for name in self.live.keys() {
            self.container_event(
                name,
                EventType::Normal,
                "Killing",
                &format!("Stopping container {name}"),
            )
            .await;
        }
        // preStop hooks run first and use up part of the grace period;
        // the containers then get what is left (at least 2 s, as upstream).
        let started = Instant::now();
        self.pre_stop_all(grace).await;
        let left = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(2).min(grace));
        self.stop_all(left).await;
        self.publish();
        self.teardown().await;
        if crate::static_pods::is_static(&self.pod) {
            // Its mirror pod is the agent's to remove.
            return;
        }
        let (namespace, name, uid) = pod_name(&self.pod);
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => tracing::info!(pod = %format!("{namespace}/{name}"), "pod deleted"),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "failed to confirm deletion")
            }
        }
    }

    fn mark_log_stopped(&self, name: &str) {
        let (namespace, pod, _) = pod_name(&self.pod);
        let key = ContainerIndex::key(&namespace, &pod, name);
        if let Some(mut entry) = self.agent.containers.get(&key) {
            entry.running = false;
            self.agent.containers.set(key, entry);
        }
    }

    /// Whether every container has ended for good (Succeeded or Failed).
    fn is_terminal(&self) -> bool {
        let policy = self.restart_policy();
        self.live.is_empty()
            && matches!(
                crate::status::pod_phase(&policy, &self.record),
                "Succeeded" | "Failed"
            )
    }

    /// A terminal pod needs no sandbox: its network and sandbox go (its
    /// logs and status stay until the pod is deleted), as upstream.
    async fn release_sandbox(&mut self) {
        if self.sandbox.is_none() {
            return;
        }
        self.finished = true;
        self.stop_sandbox().await;
        tracing::info!(pod = %self.key, "pod finished; sandbox released");
    }

    /// Removes the pod network (idempotent), stops the sandbox process and
    /// removes the pod's cgroup.
    async fn stop_sandbox(&mut self) {
        if let Err(error) = self.agent.cni.remove(&self.sandbox_id).await {
            tracing::warn!(pod = %self.key, %error, "network teardown failed");
        }
        if let Some(sandbox) = self.sandbox.take() {
            let (namespace, name, _) = pod_name(&self.pod);
            self.agent.containers.set_sandbox(&namespace, &name, None);
            let _ = tokio::task::spawn_blocking(move || sandbox.stop()).await;
        }
        let _ = std::fs::remove_file(self.agent.data_dir.join("sandboxes").join(&self.sandbox_id));
        skiff_runtime::cgroups::remove_cgroup(&self.cgroup_parent());
    }

    /// Removes the sandbox, network and pod directory.
    async fn teardown(&mut self) {
        let (namespace, pod, _) = pod_name(&self.pod);
        self.agent.containers.remove_pod(&namespace, &pod);
        self.stop_sandbox().await;
        self.unmount_volumes();
        let _ = std::fs::remove_dir_all(self.pod_dir());
        tracing::info!(pod = %self.key, "pod torn down");
    }
}

/// The node's first record of a pod: app containers wait for the init
/// containers (`PodInitializing`) when there are any.
fn initial_record(pod: &Pod, host_ip: &str) -> PodRecord {
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let waiting = |reason: &str| State::Waiting {
        reason: reason.into(),
        message: None,
    };
    let app_reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    PodRecord {
        sandbox_ready: false,
        pod_ip: None,
        host_ip: host_ip.to_string(),
        start_time: Timestamp::now(),
        failed: None,
        init_containers: inits
            .iter()
            .map(|c| ContainerRecord {
                state: waiting("PodInitializing"),
                sidecar: c.restart_policy.as_deref() == Some("Always"),
                ..ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or(""))
            })
            .collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| ContainerRecord {
                state: waiting(app_reason),
                ..ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or(""))
            })
            .collect(),
    }
}

/// `liveness` / `startup`, as kubelet's kill message says it.
fn report_kind(kind: probe::Kind) -> &'static str {
    match kind {
        probe::Kind::Liveness => "liveness",
        probe::Kind::Readiness => "readiness",
        probe::Kind::Startup => "startup",
    }
}

/// Whole seconds from the API (negative counts as none).
fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

/// Go's duration formatting for backoff messages (`10s`, `5m0s`).
fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// ClusterFirst resolv.conf: without a cluster DNS service, the search
/// path Kubernetes uses plus the host's nameservers.
fn resolv_conf(namespace: &str) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<&str> = host
        .lines()
        .filter(|l| l.starts_with("nameserver") && !l.contains("127.0.0."))
        .collect();
    let mut text =
        format!("search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n");
    for server in servers {
        text.push_str(server);
        text.push('\n');
    }
    text.push_str("options ndots:5\n");
    text
}

/// The user a container runs as: securityContext, then the image's numeric `User`.
fn user_of(
    container: &Container,
    pod: &Pod,
    image_config: &Value,
    layers: &[PathBuf],
) -> Result<(u32, u32), String> {
    let pod_ctx = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let ctx = container.security_context.as_ref();
    let image_user = image_config["config"]["User"].as_str().unwrap_or("");
    // The topmost layer holding the file is what the container sees.
    let image_file = |path: &str| {
        layers
            .iter()
            .rev()
            .find_map(|layer| std::fs::read_to_string(layer.join(path)).ok())
    };
    crate::security::resolve_user(
        ctx.and_then(|c| c.run_as_user)
            .or_else(|| pod_ctx.and_then(|c| c.run_as_user)),
        ctx.and_then(|c| c.run_as_group)
            .or_else(|| pod_ctx.and_then(|c| c.run_as_group)),
        image_user,
        image_file("etc/passwd").as_deref(),
        image_file("etc/group").as_deref(),
    )
}

/// cgroup settings from requests and limits, as kubelet converts them.
/// The pod cgroup's limits: the sum of its containers' cpu requests as
/// shares; cpu and memory limits only when every container has one.
fn pod_resources(pod: &Pod, path: String) -> skiff_runtime::cgroups::PodResources {
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

fn limits_of(container: &Container) -> Limits {
    use skiff_api::quantity::Quantity;
    let resources = container.resources.as_ref();
    let get = |list: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
               name: &str| {
        list.and_then(|l| l.get(name))
            .and_then(|q| Quantity::parse(&q.0))
            .map(|q| q.milli_value())
    };
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let cpu_request = get(requests, "cpu").or_else(|| get(limits, "cpu"));
    Limits {
        memory_bytes: get(limits, "memory").map(|m| i64::try_from(m / 1000).unwrap_or(i64::MAX)),
        cpu_shares: Some(
            cpu_request
                .map(|m| u64::try_from((m * 1024 / 1000).max(2)).unwrap_or(2))
                .unwrap_or(2),
        ),
        cpu_quota: get(limits, "cpu")
            .map(|m| i64::try_from((m * 100_000 / 1000).max(1000)).unwrap_or(i64::MAX)),
        cpu_period: Some(100_000),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cpu_and_memory_become_cgroup_values() {
        let container: Container = serde_json::from_value(json!({"name": "c", "resources": {
            "requests": {"cpu": "100m", "memory": "200M"}, "limits": {"cpu": "500m", "memory": "1G"}}}))
        .unwrap_or_default();
        let limits = limits_of(&container);
        assert_eq!(limits.cpu_shares, Some(102));
        assert_eq!(limits.cpu_quota, Some(50_000));
        assert_eq!(limits.memory_bytes, Some(1_000_000_000));
        assert_eq!(
            limits_of(&Container::default()).cpu_shares,
            Some(2),
            "BestEffort gets the minimum shares"
        );
    }

    #[test]
    fn backoff_messages_use_go_durations() {
        assert_eq!(humantime(Duration::from_secs(10)), "10s");
        assert_eq!(humantime(Duration::from_secs(300)), "5m0s");
    }
}
