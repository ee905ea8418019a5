//! One task per pod (by UID), fed the latest desired Pod through a watch
//! channel (updates that arrive while it works coalesce), as kubelet's pod
//! workers. It owns the pod's sandbox, network and containers: pulls images,
//! starts containers in order (init containers first, one at a time),
//! restarts them per restartPolicy with crash-loop backoff, and on deletion
//! stops them (SIGTERM or the image's STOPSIGNAL, SIGKILL after the grace
//! period), tears everything down and confirms the deletion.
//!
//! What to do next is decided by [`crate::plan`] (pure, table-tested);
//! this module runs the loop and executes the plan. The seams: `sandbox`
//! (process, network, cgroup, volumes), `images` (policy, secrets,
//! integrity), `containers` (create, start, reap, exits), `hooks` (probes,
//! postStart, preStop), `termination` (stop, delete, deadline, eviction),
//! `adopt` (checkpoints and re-adoption after an agent restart).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod, Secret};
use kube::api::{Api, DeleteParams, Preconditions};
use serde_json::Value;
use skiff_client::{pod_reference, EventType};
use skiff_runtime::container::spec::{oci_config, BindMount, ContainerConfig, Limits, Namespace, Namespaces};
use skiff_runtime::container::{read_state, ContainerStdio, Exited, Started};
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

mod adopt;
mod containers;
mod error;
mod hooks;
mod images;
mod sandbox;
mod termination;
mod trace;
mod volumes;

pub use adopt::adopt;
use containers::*;
use error::StepError;
use sandbox::*;

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
    /// The newest version of the pod, shared with the agent's channel.
    pod: Arc<Pod>,
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
    /// Signalled whenever a container's monitor ends (with `exits`), for
    /// waits that do not run in the main loop (stopping containers).
    exit_notice: Arc<tokio::sync::Notify>,
    /// The ConfigMaps and Secrets the pod reads, watched while it runs.
    subscriptions: Vec<crate::sources::Subscription>,
    /// Told of every change to one of them.
    source_changes: mpsc::UnboundedSender<()>,
    /// Every volume was set up once.
    volumes_ready: bool,
    /// Where the pod's start went (logged once it runs).
    trace: trace::StartTrace,
    /// Service-account tokens of its projected volumes.
    tokens: crate::tokens::PodTokens,
    /// The last FailedMount message reported (each is said once).
    mount_error: Option<String>,
    /// Fields not honoured were reported (once per worker).
    warned_fields: bool,
    /// While the pod terminates: its newer versions (a shorter grace).
    deletion: Option<Desired>,
}

/// The newest version of a pod as the agent hands it to the pod's worker
/// (`None`: stop it).
pub type Desired = watch::Receiver<Option<Arc<Pod>>>;

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
    mpsc::UnboundedReceiver<()>,
);

/// Runs one pod until it is deleted or forgotten.
pub async fn run(agent: Arc<Agent>, mut desired: Desired) {
    let Some(pod) = desired.borrow_and_update().clone() else {
        return;
    };
    let record = initial_record(&pod, &agent.node.internal_ip, agent.clock.now());
    let (worker, inbox) = Worker::new(agent, pod, record);
    worker.run(desired, inbox).await;
}

impl Worker {
    fn new(agent: Arc<Agent>, pod: Arc<Pod>, record: PodRecord) -> (Self, Inbox) {
        let (namespace, name, uid) = pod_name(&pod);
        let (exits, exited) = mpsc::unbounded_channel();
        let (probe_reports, probed) = mpsc::unbounded_channel();
        let (sandbox_exits, sandbox_exited) = mpsc::unbounded_channel();
        let removed_layers = agent.removed_layers.subscribe();
        let (source_changes, sources_changed) = mpsc::unbounded_channel();
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
            exit_notice: Arc::new(tokio::sync::Notify::new()),
            subscriptions: Vec::new(),
            source_changes,
            volumes_ready: false,
            trace: trace::StartTrace::new(),
            tokens: Default::default(),
            mount_error: None,
            warned_fields: false,
            deletion: None,
        };
        (worker, (exited, probed, sandbox_exited, removed_layers, sources_changed))
    }

    async fn run(mut self, mut desired: Desired, inbox: Inbox) {
        let (mut exited, mut probed, mut sandbox_exited, mut removed_layers, mut sources_changed) = inbox;
        tracing::info!(pod = %self.key, "pod worker started");
        loop {
            let latest = desired.borrow_and_update().clone();
            match latest {
                // A static pod whose file went: stopped as gracefully as a
                // deleted pod.
                None if crate::static_pods::is_static(&self.pod) => {
                    Box::pin(self.terminate()).await;
                    return;
                }
                None => {
                    Box::pin(self.stop_all(Duration::from_secs(2))).await;
                    Box::pin(self.teardown()).await;
                    return;
                }
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    self.pod = pod;
                    // A later deletion with a shorter grace period cuts the
                    // wait short, as upstream.
                    self.deletion = Some(desired.clone());
                    Box::pin(self.terminate()).await;
                    return;
                }
                Some(pod) => self.pod = pod,
            }
            // Each step is boxed: the worker's own future, held for the
            // pod's whole life, stays small (1.9 KiB, not 15 KiB, in a release build),
            // and a step's state exists only while it runs.
            Box::pin(self.sync()).await;
            self.publish();
            if self.is_terminal() {
                Box::pin(self.release_sandbox()).await;
            }
            let wake = self.next_wake();
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        // The agent is stopping (pods it forgets get `None`):
                        // the containers run on under their monitors and the
                        // next agent re-adopts them from the checkpoint.
                        tracing::info!(pod = %self.key, "agent stopping; the pod keeps running");
                        return;
                    }
                }
                Some(name) = exited.recv() => Box::pin(self.on_exit(&name)).await,
                Some(report) = probed.recv() => Box::pin(self.on_probe(report)).await,
                Some(pid) = sandbox_exited.recv() => Box::pin(self.on_sandbox_exit(pid)).await,
                Some(()) = sources_changed.recv() => self.on_source_change(),
                removed = removed_layers.recv() => match removed {
                    Ok(digest) => Box::pin(self.on_layer_removed(&digest)).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(pod = %self.key, missed, "missed layer removals; checking every container's layers");
                        Box::pin(self.check_live_layers()).await;
                    }
                    // The agent is going away.
                    Err(broadcast::error::RecvError::Closed) => removed_layers = self.agent.removed_layers.subscribe(),
                },
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
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

    /// The pod's directory on the node's tmpfs for API-fed volumes.
    fn node_tmpfs_dir(&self) -> PathBuf {
        self.agent.data_dir.join(crate::volumes::NODE_TMPFS_DIR).join(&self.key)
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

    /// The pod's kernel hostname: the node's under hostNetwork, else its
    /// `hostname` (or name), fully qualified with `setHostnameAsFQDN`.
    fn hostname(&self) -> String {
        let spec = self.pod.spec.as_ref();
        if spec.and_then(|s| s.host_network).unwrap_or(false) {
            // The host's UTS namespace: the machine's own name.
            if let Some(name) = nix::unistd::gethostname().ok().and_then(|n| n.into_string().ok()) {
                return name;
            }
        }
        let short = self.short_hostname();
        crate::dns::kernel_hostname(&self.pod, &short).unwrap_or(short)
    }

    /// `spec.hostname` or the pod's name, as a DNS label.
    fn short_hostname(&self) -> String {
        let spec = self.pod.spec.as_ref();
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

    /// One of the pod's ephemeral containers, by name.
    fn ephemeral(&self, name: &str) -> Option<&EphemeralContainer> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.iter().flatten().find(|c| c.name == name))
    }

    /// A container's field path in events, as kubelet sets it.
    fn field_path(&self, name: &str) -> Option<String> {
        let list = if self.is_init(name) {
            "initContainers"
        } else if self.ephemeral(name).is_some() {
            "ephemeralContainers"
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
        let status = pod_status(&self.pod, &self.record, self.agent.clock.now());
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
            .chain(self.record.ephemeral_containers.iter_mut())
            .find(|c| c.name == name)
    }

    /// When `activeDeadlineSeconds` runs out, counted from the pod's start.
    fn deadline(&self) -> crate::plan::Deadline {
        let limit = self.pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        crate::plan::deadline(limit, self.record.start_time, self.agent.clock.now())
    }

    /// The kubelet's admission: a pod it cannot run as specified (unsafe
    /// sysctls, AppArmor) is rejected: Failed, with the reason and
    /// `Pod was rejected: ...`, never started half-way.
    async fn admit(&mut self) -> bool {
        let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.trim() == "Y");
        let review = crate::coverage::review(&self.pod);
        if !std::mem::replace(&mut self.warned_fields, true) {
            for message in &review.warned {
                tracing::warn!(pod = %self.key, "{message}");
                self.event(EventType::Warning, "UnsupportedField", message, None)
                    .await;
            }
        }
        let admitted = match review.refused {
            Some(message) => Err(crate::security::Rejection {
                reason: "UnsupportedField",
                message,
            }),
            None => crate::security::admit(&self.pod, apparmor),
        };
        match admitted {
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
        match self.set_up_volumes().await {
            Ok(true) => {
                self.mount_error = None;
                self.trace.volumes_ready();
            }
            // The pod's objects are being listed; their arrival wakes us.
            Ok(false) => return,
            Err(error) => {
                let message = error.to_string();
                if self.mount_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(pod = %self.key, %error, "volume setup failed");
                    self.event(EventType::Warning, "FailedMount", &message, None)
                        .await;
                    self.mount_error = Some(message);
                }
                // Until every volume is there the pod waits; a running pod
                // keeps its volumes as they were.
                if !self.volumes_ready && self.live.is_empty() {
                    return;
                }
            }
        }
        if self.sandbox.is_none() {
            if let Err(error) = self.create_sandbox().await {
                self.event(EventType::Warning, error.reason(), &error.to_string(), None)
                    .await;
                tracing::warn!(pod = %self.key, %error, "sandbox creation failed");
                return;
            }
            self.publish();
        }
        add_ephemeral_records(&self.pod, &mut self.record);
        let policy = self.restart_policy();
        let live: std::collections::HashSet<&str> = self.live.keys().map(String::as_str).collect();
        let actions = crate::plan::compute_pod_actions(&self.record, &policy, &live, |name| self.due(name));
        tracing::trace!(pod = %self.key, ?actions, "sync");
        for name in &actions.stop_sidecars {
            if let Some(live) = self.live.get(name) {
                tracing::info!(pod = %self.key, container = %name, "app containers done; stopping sidecar");
                if let Err(error) = self.agent.runtime.kill(&live.id, &live.stop_signal).await {
                    tracing::warn!(pod = %self.key, container = %name, %error, "failed to stop a sidecar");
                }
            }
        }
        for name in &actions.pull_back_off {
            let image = self
                .container_spec(name)
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let message = format!("Back-off pulling image {image:?}");
            let field = self.field_path(name);
            self.event(EventType::Normal, "BackOff", &message, field.clone())
                .await;
            self.event(EventType::Warning, "Failed", "Error: ImagePullBackOff", field)
                .await;
            self.set_waiting(name, "ImagePullBackOff", Some(message));
        }
        for name in &actions.start {
            if let Some(container) = self.container_spec(name) {
                self.start_container(&container).await;
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
        let deadline = match self.deadline() {
            _ if self.record.failed.is_some() => None,
            crate::plan::Deadline::Unbounded => None,
            crate::plan::Deadline::In(left) => Some(Instant::now() + left),
            crate::plan::Deadline::Exceeded => Some(Instant::now()),
        };
        let storage_check = (!self.live.is_empty()
            && self.record.failed.is_none()
            && crate::eviction::has_limits(&self.pod))
        .then(|| {
            self.storage_checked_at
                .map_or_else(Instant::now, |at| at + crate::eviction::MONITORING_PERIOD)
        });
        let token_refresh = (!self.finished).then(|| self.tokens.next_refresh()).flatten();
        self.backoff
            .values()
            .map(|(_, at)| *at)
            .filter(|at| *at > Instant::now())
            .chain(soon)
            .chain(token_refresh)
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
        let delay = crate::plan::next_back_off(previous, ran_for);
        self.backoff
            .insert(name.to_string(), (delay, Instant::now() + delay));
        delay
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

    /// A container of the pod's spec (app, init or ephemeral) by name.
    fn container_spec(&self, name: &str) -> Option<Container> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| c.name == name)
                    .cloned()
            })
            .or_else(|| self.ephemeral(name).map(skiff_api::pod::ephemeral::as_container))
    }

    fn mark_log_stopped(&self, name: &str) {
        let (_, _, uid) = pod_name(&self.pod);
        let key = ContainerIndex::key(&uid, name);
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

}

/// The node's first record of a pod: app containers wait for the init
/// containers (`PodInitializing`) when there are any.
fn initial_record(pod: &Pod, host_ip: &str, now: Timestamp) -> PodRecord {
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
        start_time: now,
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
        ephemeral_containers: Vec::new(),
    }
}

/// Records for ephemeral containers the spec gained since the last sync
/// (`kubectl debug` adds them to a running pod).
fn add_ephemeral_records(pod: &Pod, record: &mut PodRecord) {
    for ephemeral in pod.spec.iter().flat_map(|s| s.ephemeral_containers.iter().flatten()) {
        if record.ephemeral_containers.iter().all(|c| c.name != ephemeral.name) {
            record.ephemeral_containers.push(ContainerRecord::new(
                &ephemeral.name,
                ephemeral.image.as_deref().unwrap_or(""),
            ));
        }
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
