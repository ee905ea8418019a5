//! The node lifecycle controller and PodGC (kube-controller-manager's
//! jobs), over the registry: a node whose heartbeat is overdue by the grace
//! period gets `Unknown` conditions (`NodeStatusUnknown`), the unreachable
//! NoSchedule/NoExecute taints and a `NodeNotReady` event, its pods turn
//! Ready=False, and the taint evicts them as their tolerations say (300 s by
//! default from admission). A node that reports Ready again loses the
//! taints. Pods of a deleted Node are deleted (PodGC's orphans).
//!
//! The decisions are `skiff_api::node_lifecycle`'s; this file reads, writes
//! and waits (on store changes, or the next deadline).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use serde_json::{json, Value};
use skiff_api::node_lifecycle::{self as decide, Eviction};
use skiff_api::resources::ResourceInfo;
use tokio_util::sync::CancellationToken;

use crate::auth::node::pods_on;
use crate::error::{ApiError, Result};
use crate::registry::{DeleteOptions, ListParams, Registry};
use crate::strategy::format_time;

/// Retry delay after a failed pass or watch.
const RETRY: Duration = Duration::from_secs(5);
const COMPONENT: &str = "node-controller";

pub(crate) fn core(plural: &str) -> Result<&'static ResourceInfo> {
    ApiError::served("", "v1", plural)
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// A core/v1 Event from the node controller about `object`.
pub(crate) async fn event(registry: &Registry, object: &Value, kind: &str, event_type: &str, reason: &str, message: String) {
    let now = format_time(registry.now());
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
    let name = format!("{}.{:016x}", name_of(object), rand::random::<u64>());
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {"kind": kind, "apiVersion": "v1", "name": name_of(object),
            "namespace": object["metadata"]["namespace"], "uid": object["metadata"]["uid"]},
        "reason": reason, "message": message, "type": event_type,
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let Ok(events) = core("events") else { return };
    if let Err(error) = registry.create(events, Some(&namespace), event, false, None).await {
        tracing::warn!(%error, reason, "cannot record a node controller event");
    }
}

/// Writes `change` to the node (spec or status); a conflict is left to
/// the next pass, which the conflicting write wakes.
async fn update_node(registry: &Registry, node: Value, subresource: Option<&str>) -> Result<()> {
    let name = name_of(&node);
    match registry.update(core("nodes")?, None, &name, node, subresource, false, None).await {
        Ok(_) => Ok(()),
        Err(error) if error.code() == 409 => Ok(()),
        Err(other) => Err(other),
    }
}

/// A lost node: Unknown conditions, taints, its pods not ready.
async fn node_lost(registry: &Registry, node: &Value, now: &str) -> Result<()> {
    let mut status = node.clone();
    if decide::mark_unknown(&mut status, now) {
        let name = name_of(node);
        tracing::warn!(node = %name, "node stopped posting status; marking it Unknown");
        update_node(registry, status, Some("status")).await?;
        event(registry, node, "Node", "Normal", "NodeNotReady", format!("Node {name} status is now: NodeNotReady")).await;
        for mut pod in pods_on(registry, &name).await? {
            if decide::mark_pod_not_ready(&mut pod, now) {
                let (namespace, pod_name) = (pod["metadata"]["namespace"].as_str().unwrap_or("").to_string(), name_of(&pod));
                match registry.update(core("pods")?, Some(&namespace), &pod_name, pod.clone(), Some("status"), false, None).await {
                    Ok(_) => event(registry, &pod, "Pod", "Warning", "NodeNotReady", "Node is not ready".into()).await,
                    Err(error) => tracing::warn!(pod = %pod_name, %error, "cannot mark a pod of a lost node not ready"),
                }
            }
        }
    }
    let fresh = registry.get(core("nodes")?, None, &name_of(node)).await?;
    let mut tainted = fresh.clone();
    if decide::set_unreachable_taints(&mut tainted, true, now) {
        update_node(registry, tainted, None).await?;
    }
    Ok(())
}

/// Evicts the pods the unreachable taint no longer tolerates; the next
/// eviction deadline, if any.
async fn evict_due(registry: &Registry, node: &str, tainted_at: Timestamp, now: Timestamp) -> Result<Option<Timestamp>> {
    let mut next = None;
    for pod in pods_on(registry, node).await? {
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        match decide::eviction(&pod, tainted_at) {
            Eviction::Never => continue,
            Eviction::At(at) if at > now => {
                next = Some(next.map_or(at, |n: Timestamp| n.min(at)));
                continue;
            }
            Eviction::At(_) | Eviction::Now => {}
        }
        let (namespace, name) = (pod["metadata"]["namespace"].as_str().unwrap_or("").to_string(), name_of(&pod));
        tracing::info!(pod = %name, %namespace, node, "taint manager evicting a pod");
        let mut marked = pod.clone();
        if let Some(conditions) = marked["status"]["conditions"].as_array_mut() {
            conditions.retain(|c| c["type"] != "DisruptionTarget");
            conditions.push(json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": format_time(now)}));
            if let Err(error) = registry.update(core("pods")?, Some(&namespace), &name, marked, Some("status"), false, None).await {
                tracing::debug!(pod = %name, %error, "cannot add the DisruptionTarget condition");
            }
        }
        event(registry, &pod, "Pod", "Normal", "TaintManagerEviction", format!("Marking for deletion Pod {namespace}/{name}")).await;
        match registry.delete(core("pods")?, Some(&namespace), &name, &DeleteOptions::default()).await {
            Ok(_) => {}
            Err(error) if error.code() == 404 => {}
            Err(other) => return Err(other),
        }
    }
    Ok(next)
}

/// PodGC: pods bound to a node that no longer exists are deleted at once.
async fn collect_orphans(registry: &Registry, node: &str) -> Result<()> {
    for pod in pods_on(registry, node).await? {
        let (namespace, name) = (pod["metadata"]["namespace"].as_str().unwrap_or("").to_string(), name_of(&pod));
        tracing::info!(pod = %name, %namespace, node, "deleting a pod of a deleted node");
        let options = DeleteOptions { grace_period_seconds: Some(0), ..DeleteOptions::default() };
        match registry.delete(core("pods")?, Some(&namespace), &name, &options).await {
            Ok(_) => {}
            Err(error) if error.code() == 404 => {}
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// One look at every node: the next moment something is due, and whether
/// some node carries the unreachable taint (its pods' changes then matter).
async fn pass(registry: &Registry, settings: &Settings, started: Timestamp, known: &mut BTreeSet<String>) -> Result<(Option<Timestamp>, bool)> {
    let grace_seconds = settings.grace_seconds;
    let nodes = registry.list(core("nodes")?, None, &ListParams::default()).await?.items;
    if let Some(cluster) = &settings.cluster_cidr {
        crate::node_ipam::assign(registry, &nodes, cluster).await?;
    }
    let leases = ApiError::served("coordination.k8s.io", "v1", "leases")?;
    let leases: BTreeMap<String, Value> = registry
        .list(leases, Some("kube-node-lease"), &ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|l| (name_of(&l), l))
        .collect();
    let now = registry.now();
    let now_text = format_time(now);
    let mut next: Option<Timestamp> = None;
    let mut earliest = |at: Timestamp| next = Some(next.map_or(at, |n| n.min(at)));
    let mut present = BTreeSet::new();
    let mut tainted = false;
    for node in &nodes {
        let name = name_of(node);
        present.insert(name.clone());
        // As upstream's probe timestamps: a node gets a full grace period
        // from when this controller started watching it.
        let watched_from = started.checked_add(jiff::SignedDuration::from_secs(grace_seconds)).ok();
        match decide::lost_at(node, leases.get(&name), grace_seconds).max(watched_from) {
            Some(lost) if lost <= now => node_lost(registry, node, &now_text).await?,
            Some(lost) => {
                earliest(lost);
                let mut cleared = node.clone();
                if decide::reported_ready(node) && decide::set_unreachable_taints(&mut cleared, false, &now_text) {
                    tracing::info!(node = %name, "node is back; removing the unreachable taints");
                    update_node(registry, cleared, None).await?;
                }
            }
            None => {}
        }
        let fresh = registry.get(core("nodes")?, None, &name).await?;
        if let Some(tainted_at) = decide::unreachable_since(&fresh) {
            tainted = true;
            if let Some(at) = evict_due(registry, &name, tainted_at, now).await? {
                earliest(at);
            }
        }
    }
    for gone in known.difference(&present) {
        collect_orphans(registry, gone).await?;
    }
    *known = present;
    Ok((next, tainted))
}

/// What the controllers are told (kube-controller-manager's flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--node-monitor-grace-period`, in seconds.
    pub grace_seconds: i64,
    /// `--cluster-cidr` with `--allocate-node-cidrs`: nodes get pod CIDRs from it.
    pub cluster_cidr: Option<skiff_api::node_ipam::Cidr>,
}

/// Whether a change under `key` concerns the controller.
fn concerns(key: &str, watching_pods: bool) -> bool {
    key.starts_with("/registry/minions/")
        || key.starts_with("/registry/leases/kube-node-lease/")
        || (watching_pods && key.starts_with("/registry/pods/"))
}

/// Runs until `shutdown`: a pass, then wait for a node or lease change (or
/// a pod change while some node is tainted) or the next deadline.
pub async fn run(registry: Registry, settings: Settings, shutdown: CancellationToken) {
    // Nodes deleted while the server was down leave orphans too.
    let mut known: BTreeSet<String> = BTreeSet::new();
    let started = registry.now();
    if let Ok(pods) = core("pods") {
        if let Ok(list) = registry.list(pods, None, &ListParams::default()).await {
            known.extend(list.items.iter().filter_map(|p| p["spec"]["nodeName"].as_str()).filter(|n| !n.is_empty()).map(str::to_string));
        }
    }
    loop {
        let start = registry.store().current_revision().await.unwrap_or(0);
        let (next, tainted) = match pass(&registry, &settings, started, &mut known).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, "node lifecycle pass failed");
                (registry.now().checked_add(RETRY).ok(), false)
            }
        };
        let sleep = next
            .map(|at| Duration::try_from(at.duration_since(registry.now())).unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        let mut changes = match registry.store().watch("/registry/", start).await {
            Ok(changes) => changes,
            Err(error) => {
                tracing::warn!(%error, "node lifecycle cannot watch");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        let wake = async {
            while let Some(Ok(event)) = changes.next().await {
                if concerns(&event.kv.key, tainted) {
                    return;
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
