//! Node lifecycle with the real kubectl: a node whose heartbeat stops goes
//! `Ready=Unknown` (`NodeStatusUnknown`) after the grace period, is tainted
//! unreachable, its pods turn Ready=False and are evicted as their
//! `tolerationSeconds` say; a node that reports again loses the taints;
//! the pods of a deleted node are garbage-collected; cordon and uncordon.
//! The node here is an API object with no agent behind it (a node that
//! died), so the test controls its heartbeats.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Skiff, TEST_IMAGE};
use serde_json::{json, Value};

const NODE: &str = "ghost";

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What the node agent would post: Ready, with a fresh heartbeat, and a renewed Lease.
fn heartbeat(skiff: &Skiff) -> Result<()> {
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
    skiff.kubectl(&["patch", "node", NODE, "--subresource=status", "--type=merge", "-p", &status.to_string()])?.ok()?;
    let lease = json!({"spec": {"renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()}});
    skiff.kubectl(&["patch", "lease", NODE, "-n", "kube-node-lease", "--type=merge", "-p", &lease.to_string()])?.ok()?;
    Ok(())
}

fn pod(name: &str, tolerations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": NODE, "tolerations": tolerations, "containers": [{"name": "c", "image": TEST_IMAGE}]}})
}

fn unreachable_for(seconds: i64) -> Value {
    json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}])
}

fn terminating(skiff: &Skiff, name: &str) -> Result<bool> {
    Ok(!skiff.get_json(&["get", "pod", name])?["metadata"]["deletionTimestamp"].is_null())
}

fn ready_condition(object: &Value) -> Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn a_lost_node_goes_unknown_is_tainted_and_its_pods_are_evicted_as_they_tolerate() -> Result<()> {
    let skiff = Skiff::start_with(&["--node-monitor-grace-period=3s"])?;
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}},
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": NODE, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40}},
        pod("short", unreachable_for(2)),
        pod("tolerant", unreachable_for(12)),
        pod("forever", json!([{"operator": "Exists"}])),
    ]});
    skiff.kubectl_stdin(&["create", "-f", "-"], &objects.to_string())?.ok()?;
    heartbeat(&skiff)?;
    // The pod runs and is ready, as its node agent reported before it died.
    let running = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}]}});
    skiff.kubectl(&["patch", "pod", "tolerant", "--subresource=status", "--type=merge", "-p", &running.to_string()])?.ok()?;

    // No more heartbeats: Unknown after the grace period, tainted.
    skiff.wait_for(Duration::from_secs(20), "the node to go Unknown", || {
        Ok(ready_condition(&skiff.get_json(&["get", "node", NODE])?)["status"] == "Unknown")
    })?;
    let node = skiff.get_json(&["get", "node", NODE])?;
    let ready = ready_condition(&node);
    assert_eq!((ready["reason"].as_str(), ready["message"].as_str()), (Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status.")));
    let taints: Vec<(String, String)> = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (t["key"].as_str().unwrap_or("").to_string(), t["effect"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(taints.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into())), "{taints:?}");
    assert!(taints.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into())), "{taints:?}");
    assert!(skiff.kubectl(&["get", "node", NODE])?.ok()?.stdout.contains("NotReady"));
    skiff.wait_for(Duration::from_secs(10), "the pod to turn not ready", || {
        Ok(ready_condition(&skiff.get_json(&["get", "pod", "tolerant"])?)["status"] == "False")
    })?;

    // Evictions follow tolerationSeconds.
    skiff.wait_for(Duration::from_secs(15), "the short-tolerating pod to be evicted", || terminating(&skiff, "short"))?;
    assert!(!terminating(&skiff, "tolerant")?, "evicted before its tolerationSeconds");
    let events = skiff.kubectl(&["get", "events", "--field-selector", "involvedObject.name=short"])?.ok()?.stdout;
    assert!(events.contains("TaintManagerEviction") && events.contains("Marking for deletion Pod default/short"), "{events}");
    skiff.wait_for(Duration::from_secs(20), "the tolerant pod to be evicted", || terminating(&skiff, "tolerant"))?;
    assert!(!terminating(&skiff, "forever")?, "a pod tolerating forever stays");

    // The node reports again: the taints go.
    heartbeat(&skiff)?;
    skiff.wait_for(Duration::from_secs(10), "the taints to be removed", || {
        Ok(skiff.get_json(&["get", "node", NODE])?["spec"]["taints"].is_null())
    })?;

    // Cordon and uncordon.
    skiff.kubectl(&["cordon", NODE])?.ok()?;
    assert!(skiff.kubectl(&["get", "node", NODE])?.ok()?.stdout.contains("SchedulingDisabled"));
    skiff.kubectl(&["uncordon", NODE])?.ok()?;
    assert!(skiff.get_json(&["get", "node", NODE])?["spec"]["unschedulable"].is_null());

    // A deleted node's pods are garbage-collected.
    skiff.kubectl(&["delete", "node", NODE])?.ok()?;
    skiff.wait_for(Duration::from_secs(10), "the orphans to be deleted", || {
        Ok(skiff.get_json(&["get", "pods"])?["items"].as_array().is_some_and(Vec::is_empty))
    })?;
    Ok(())
}
