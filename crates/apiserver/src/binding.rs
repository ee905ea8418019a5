//! `pods/binding`: assigning a pod to a node, as the scheduler does.

use serde_json::{json, Value};
use skiff_api::resources;
use skiff_api::Status;

use crate::error::{ApiError, Result};
use crate::registry::Registry;
use crate::strategy::format_time;

fn binding_conflict(name: &str, why: String) -> ApiError {
    let mut status = Status::new(
        409,
        "Conflict",
        format!("Operation cannot be fulfilled on pods/binding {name:?}: {why}"),
    );
    status.details = Some(json!({"name": name, "kind": "pods/binding"}));
    ApiError::from(status)
}

/// Sets `spec.nodeName` and the PodScheduled condition; refuses a pod that
/// is already bound or being deleted.
pub async fn bind(
    registry: &Registry,
    namespace: &str,
    name: &str,
    node: &str,
    dry_run: bool,
) -> Result<Value> {
    let pods = resources::core("pods")
        .ok_or_else(|| ApiError::from(Status::internal("pods are not served")))?;
    let now = format_time(registry.now());
    registry
        .system_update(pods, Some(namespace), name, |pod| {
            if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(binding_conflict(name, format!("pod {name} is already assigned to node {existing:?}")));
            }
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                return Err(binding_conflict(name, format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            pod["spec"]["nodeName"] = json!(node);
            let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
            let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conditions.push(scheduled);
            pod["status"]["conditions"] = Value::Array(conditions);
            Ok(!dry_run)
        })
        .await
}
