//! Background work that belongs to the control plane: the built-in
//! namespaces, the namespace lifecycle controller (empties a deleted
//! namespace, then removes it) and store compaction.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::resources::{self, RESOURCES};

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::registry::{decode, DeleteOptions, ListParams, Registry};

/// Namespaces every cluster has.
pub const BUILTIN_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
/// Revisions of history kept for watchers that resume.
const HISTORY: u64 = 10_000;
const COMPACT_EVERY: Duration = Duration::from_secs(300);
/// Re-check interval for a terminating namespace whose pods wait on their node.
const NAMESPACE_RECHECK: Duration = Duration::from_secs(5);

/// Creates the built-in namespaces that are missing.
pub async fn ensure_builtin_namespaces(registry: &Registry) -> Result<()> {
    let Some(namespaces) = resources::core("namespaces") else {
        return Ok(());
    };
    for name in BUILTIN_NAMESPACES {
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
            "labels": {"kubernetes.io/metadata.name": name}}});
        match registry.create(namespaces, None, object, false, None).await {
            Ok(_) => tracing::info!(namespace = name, "created namespace"),
            Err(error) if error.code() == 409 => {}
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// Deletes everything in namespace `name`; true once nothing is left.
async fn empty_namespace(registry: &Registry, name: &str) -> Result<bool> {
    let mut empty = true;
    for resource in RESOURCES
        .iter()
        .filter(|r| r.namespaced && r.is_stored() && r.group != "events.k8s.io")
    {
        let list = registry
            .list(resource, Some(name), &ListParams::default())
            .await?;
        for item in list.items {
            empty = false;
            if !item["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let item_name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
            match registry
                .delete(resource, Some(name), &item_name, &DeleteOptions::default())
                .await
            {
                Ok(_) => {}
                Err(error) if error.code() == 404 => {}
                Err(other) => return Err(other),
            }
        }
    }
    Ok(empty)
}

/// Removes the `kubernetes` finalizer; the registry deletes the namespace
/// once no finalizer is left.
async fn finalize(registry: &Registry, name: &str) -> Result<()> {
    let Some(namespaces) = resources::core("namespaces") else {
        return Ok(());
    };
    registry
        .system_update(namespaces, None, name, |ns| {
            let finalizers: Vec<Value> = ns["spec"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != "kubernetes")
                .collect();
            ns["spec"]["finalizers"] = Value::Array(finalizers);
            Ok(true)
        })
        .await
        .map(|_| ())
}

async fn terminating_namespaces(registry: &Registry) -> Result<Vec<String>> {
    let Some(namespaces) = resources::core("namespaces") else {
        return Ok(Vec::new());
    };
    let list = registry
        .list(namespaces, None, &ListParams::default())
        .await?;
    Ok(list
        .items
        .iter()
        .filter(|ns| !ns["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|ns| ns["metadata"]["name"].as_str().map(str::to_string))
        .collect())
}

/// One pass: empties and removes terminating namespaces. Returns the store
/// revision the pass started at and the namespaces still terminating.
async fn namespace_pass(registry: &Registry) -> Result<(u64, Vec<String>)> {
    let start = registry.store().current_revision().await?;
    let mut waiting = Vec::new();
    for name in terminating_namespaces(registry).await? {
        if empty_namespace(registry, &name).await? {
            finalize(registry, &name).await?;
            tracing::info!(namespace = %name, "namespace deleted");
        } else {
            waiting.push(name);
        }
    }
    Ok((start, waiting))
}

/// Runs the namespace lifecycle controller until `shutdown`: a pass, then
/// sleep until a namespace changes or an object in a terminating one does.
pub async fn run_namespace_controller(registry: Registry, shutdown: CancellationToken) {
    loop {
        let (start, waiting) = match namespace_pass(&registry).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, "namespace controller pass failed");
                (0, Vec::new())
            }
        };
        let mut changes = match registry.store().watch("/registry/", start).await {
            Ok(changes) if start > 0 => changes,
            _ => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(NAMESPACE_RECHECK) => continue,
                }
            }
        };
        let wake = async {
            while let Some(Ok(event)) = changes.next().await {
                if event.kv.key.starts_with("/registry/namespaces/") {
                    return;
                }
                if waiting.is_empty() {
                    continue;
                }
                let in_waiting = decode(&event.kv).is_ok_and(|o| {
                    o["metadata"]["namespace"]
                        .as_str()
                        .is_some_and(|ns| waiting.iter().any(|w| w == ns))
                });
                if in_waiting {
                    return;
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake => {}
            // Pods whose deletion waits on a node are re-checked now and then.
            _ = tokio::time::sleep(NAMESPACE_RECHECK), if !waiting.is_empty() => {}
        }
    }
}

/// Compacts store history older than the last `HISTORY` revisions.
pub async fn run_compactor(registry: Registry, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(COMPACT_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let store = registry.store();
        match store.current_revision().await {
            Ok(revision) if revision > HISTORY => {
                if let Err(error) = store.compact(revision - HISTORY).await {
                    tracing::warn!(%error, "compaction failed");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot read the store revision"),
        }
    }
}
