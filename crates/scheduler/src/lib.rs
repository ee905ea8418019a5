//! Skiff's scheduler: binds pending pods to nodes, as kube-scheduler does.
//!
//! Owns: watching pods and nodes (reflectors over the API), deciding with
//! the pure filters and score in [`algorithm`], binding through
//! `pods/binding`, the PodScheduled=False/Unschedulable condition and the
//! `Scheduled`/`FailedScheduling` events.
//!
//! Must not know: the store or the API server's internals (it is an HTTP
//! client), or how nodes run pods.

pub mod algorithm;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use skiff_client::{pod_reference, EventRecorder, EventType};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A pod as the scheduler's cache keeps it: what [`algorithm`] reads
/// (requests, host ports, init containers' restart policy, claims,
/// tolerations, selectors, gates, phase) and the identity events need.
/// The rest (managedFields, annotations, env, probes, mounts, container
/// statuses) would be most of a cached pod's size.
fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        let slim = |c: &mut k8s_openapi::api::core::v1::Container| {
            *c = k8s_openapi::api::core::v1::Container {
                name: std::mem::take(&mut c.name),
                resources: c.resources.take(),
                ports: c.ports.take().map(|ports| {
                    ports.into_iter().filter(|p| p.host_port.is_some()).collect()
                }),
                restart_policy: c.restart_policy.take(),
                ..Default::default()
            };
        };
        spec.containers.iter_mut().for_each(slim);
        spec.init_containers.iter_mut().flatten().for_each(slim);
        spec.ephemeral_containers = None;
        if let Some(volumes) = spec.volumes.as_mut() {
            volumes.retain(|v| v.persistent_volume_claim.is_some());
        }
    }
    if let Some(status) = pod.status.as_mut() {
        *status = k8s_openapi::api::core::v1::PodStatus {
            phase: status.phase.take(),
            ..Default::default()
        };
    }
}

/// A node as the scheduler's cache keeps it: without managedFields and
/// the list of images it holds.
fn slim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(status) = node.status.as_mut() {
        status.images = None;
    }
}

/// What stops the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the pod or node cache never became ready")]
    CacheNotReady,
}

/// Keeps `store` in sync with the API and pokes `changed` on every change.
/// `slim` drops what placing pods never reads: the cache holds every pod.
fn reflect<K>(
    api: Api<K>,
    slim: fn(&mut K),
    changed: Arc<Notify>,
    shutdown: CancellationToken,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default()).modify(slim);
    let stream = reflector::reflector(writer, events).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                event = stream.try_next() => match event {
                    Ok(Some(_)) => changed.notify_one(),
                    Ok(None) => return,
                    Err(error) => tracing::warn!(%error, "watch failed; retrying"),
                },
            }
        }
    });
    reader
}

/// Runs the scheduler until `shutdown`.
pub async fn run(client: kube::Client, shutdown: CancellationToken) -> Result<(), SchedulerError> {
    let changed = Arc::new(Notify::new());
    let pods = reflect(
        Api::<Pod>::all(client.clone()),
        slim_pod,
        changed.clone(),
        shutdown.clone(),
    );
    let nodes = reflect(
        Api::<Node>::all(client.clone()),
        slim_node,
        changed.clone(),
        shutdown.clone(),
    );
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        ready = async { tokio::try_join!(pods.wait_until_ready(), nodes.wait_until_ready()) } => {
            ready.map_err(|_| SchedulerError::CacheNotReady)?;
        }
    }
    tracing::info!("scheduler started");
    let mut scheduler = Scheduler {
        client: client.clone(),
        events: EventRecorder::new(client, "default-scheduler", None),
        reported: HashMap::new(),
    };
    loop {
        scheduler.pass(&pods.state(), &nodes.state()).await;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = changed.notified() => {}
        }
    }
}

struct Scheduler {
    client: kube::Client,
    events: EventRecorder,
    /// Last failure reported per pod uid, so a retry with the same outcome stays quiet.
    reported: HashMap<String, String>,
}

impl Scheduler {
    /// Schedules every pending pod against one snapshot, oldest first,
    /// counting this pass's own bindings.
    async fn pass(&mut self, pods: &[Arc<Pod>], nodes: &[Arc<Node>]) {
        let nodes: Vec<Node> = nodes.iter().map(|n| (**n).clone()).collect();
        // Shared with the cache: a pass copies no pod.
        let mut assigned: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        let mut pending = Vec::new();
        for pod in pods {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if !node.is_empty() && !matches!(phase, Some("Succeeded" | "Failed")) {
                assigned.entry(node).or_default().push(pod.clone());
            } else if algorithm::wants_scheduling(pod) {
                pending.push(pod.clone());
            }
        }
        pending.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        });
        let live: std::collections::HashSet<String> =
            pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        self.reported.retain(|uid, _| live.contains(uid));
        for pod in pending {
            let view: BTreeMap<String, Vec<&Pod>> = assigned
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().map(|p| &**p).collect()))
                .collect();
            match algorithm::schedule(&pod, &nodes, &view) {
                Ok(node) => {
                    let node_name = node.metadata.name.clone().unwrap_or_default();
                    if self.bind(&pod, &node_name).await {
                        let mut bound = (*pod).clone();
                        if let Some(spec) = bound.spec.as_mut() {
                            spec.node_name = Some(node_name.clone());
                        }
                        assigned.entry(node_name).or_default().push(Arc::new(bound));
                    }
                }
                Err(fit) => self.unschedulable(&pod, &fit.to_string()).await,
            }
        }
    }

    async fn bind(&mut self, pod: &Pod, node: &str) -> bool {
        let (namespace, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                             "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %format!("{namespace}/{name}"), node, "bound pod");
                let message = format!("Successfully assigned {namespace}/{name} to {node}");
                self.events
                    .record(
                        &pod_reference(pod, None),
                        EventType::Normal,
                        "Scheduled",
                        &message,
                    )
                    .await;
                true
            }
            Err(error) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), node, %error, "binding failed");
                false
            }
        }
    }

    async fn unschedulable(&mut self, pod: &Pod, message: &str) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.reported.get(&uid).is_some_and(|m| m == message) {
            return;
        }
        let (namespace, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        tracing::info!(pod = %format!("{namespace}/{name}"), reason = message, "pod is unschedulable");
        let condition = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null, "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}]}});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Strategic(&condition),
            )
            .await
        {
            tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "failed to set PodScheduled=False");
        }
        self.events
            .record(
                &pod_reference(pod, None),
                EventType::Warning,
                "FailedScheduling",
                message,
            )
            .await;
        self.reported.insert(uid, message.to_string());
    }
}
