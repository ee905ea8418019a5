//! What upstream's node lifecycle controller decides, without I/O: whether a
//! node's heartbeat (its Lease, or its Ready condition) is overdue, the
//! `Unknown` conditions and `unreachable` taints a lost node gets, which of
//! its pods the taint evicts and when (`tolerationSeconds`), and which pods
//! are orphans of a deleted node (PodGC).

use jiff::Timestamp;
use serde_json::{json, Value};

pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// upstream's `--node-monitor-grace-period` default (1.32).
pub const DEFAULT_GRACE_SECONDS: i64 = 50;
const CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

fn time(value: &Value) -> Option<Timestamp> {
    value.as_str()?.parse().ok()
}

fn ready_condition(node: &Value) -> Option<&Value> {
    node["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")
}

/// The node's last sign of life: its Lease's renewTime or its Ready
/// condition's lastHeartbeatTime, whichever is later (creation if neither).
pub fn last_heartbeat(node: &Value, lease: Option<&Value>) -> Option<Timestamp> {
    let renewed = lease.and_then(|l| time(&l["spec"]["renewTime"]));
    let posted = ready_condition(node).and_then(|c| time(&c["lastHeartbeatTime"]));
    let created = time(&node["metadata"]["creationTimestamp"]);
    [renewed, posted, created].into_iter().flatten().max()
}

/// When the node counts as lost (its heartbeat plus the grace period).
pub fn lost_at(node: &Value, lease: Option<&Value>, grace_seconds: i64) -> Option<Timestamp> {
    last_heartbeat(node, lease).and_then(|at| at.checked_add(jiff::SignedDuration::from_secs(grace_seconds)).ok())
}

/// Sets the node's conditions to `Unknown` as upstream does for a node
/// that stopped posting status; whether anything changed.
pub fn mark_unknown(node: &mut Value, now: &str) -> bool {
    let mut changed = false;
    let conditions = node["status"]["conditions"].as_array_mut();
    let Some(conditions) = conditions else {
        node["status"]["conditions"] = json!([unknown("Ready", now)]);
        return true;
    };
    for kind in CONDITIONS {
        match conditions.iter_mut().find(|c| c["type"] == *kind) {
            Some(condition) if condition["status"] == "Unknown" => {}
            Some(condition) => {
                condition["status"] = json!("Unknown");
                condition["reason"] = json!("NodeStatusUnknown");
                condition["message"] = json!("Kubelet stopped posting node status.");
                condition["lastTransitionTime"] = json!(now);
                changed = true;
            }
            None if *kind == "Ready" => {
                conditions.push(unknown(kind, now));
                changed = true;
            }
            None => {}
        }
    }
    changed
}

fn unknown(kind: &str, now: &str) -> Value {
    json!({"type": kind, "status": "Unknown", "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": now, "lastTransitionTime": now})
}

/// Whether the node's Ready condition says the kubelet reports it Ready.
pub fn reported_ready(node: &Value) -> bool {
    ready_condition(node).is_some_and(|c| c["status"] == "True")
}

/// Adds (`on`) or removes the unreachable taints; whether the taints changed.
pub fn set_unreachable_taints(node: &mut Value, on: bool, now: &str) -> bool {
    let taints = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    let (ours, others): (Vec<Value>, Vec<Value>) = taints.into_iter().partition(|t| t["key"] == UNREACHABLE_TAINT);
    let wanted: Vec<Value> = if on {
        ["NoSchedule", "NoExecute"]
            .iter()
            .map(|effect| {
                ours.iter().find(|t| t["effect"] == *effect).cloned().unwrap_or_else(|| {
                    let mut taint = json!({"key": UNREACHABLE_TAINT, "effect": effect});
                    if *effect == "NoExecute" {
                        taint["timeAdded"] = json!(now);
                    }
                    taint
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    if wanted == ours {
        return false;
    }
    let all: Vec<Value> = others.into_iter().chain(wanted).collect();
    if all.is_empty() {
        if let Some(spec) = node["spec"].as_object_mut() {
            spec.remove("taints");
        }
    } else {
        node["spec"]["taints"] = json!(all);
    }
    true
}

/// When the NoExecute unreachable taint was added, if the node has it.
pub fn unreachable_since(node: &Value) -> Option<Timestamp> {
    node["spec"]["taints"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == UNREACHABLE_TAINT && t["effect"] == "NoExecute")
        .map(|t| time(&t["timeAdded"]).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// When a pod on an unreachable node is evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Now,
    At(Timestamp),
    Never,
}

/// upstream's taint manager: a pod not tolerating the taint goes at once,
/// one tolerating it for `tolerationSeconds` goes that long after the taint
/// was added, one tolerating it without a limit stays.
pub fn eviction(pod: &Value, tainted_at: Timestamp) -> Eviction {
    let tolerating = pod["spec"]["tolerations"].as_array().into_iter().flatten().filter(|t| {
        let key_matches = match t["operator"].as_str().unwrap_or("Equal") {
            "Exists" => t["key"].as_str().is_none_or(|k| k.is_empty() || k == UNREACHABLE_TAINT),
            _ => t["key"] == UNREACHABLE_TAINT && t["value"].as_str().unwrap_or("").is_empty(),
        };
        let effect_matches = t["effect"].as_str().is_none_or(|e| e.is_empty() || e == "NoExecute");
        key_matches && effect_matches
    });
    // The shortest tolerationSeconds among matching tolerations wins.
    let mut best: Option<Option<i64>> = None;
    for toleration in tolerating {
        let seconds = toleration["tolerationSeconds"].as_i64();
        best = Some(match (best, seconds) {
            (None, s) => s,
            (Some(None), s) => s,
            (Some(Some(a)), Some(b)) => Some(a.min(b)),
            (Some(Some(a)), None) => Some(a),
        });
    }
    match best {
        None => Eviction::Now,
        Some(None) => Eviction::Never,
        Some(Some(seconds)) if seconds <= 0 => Eviction::Now,
        Some(Some(seconds)) => tainted_at
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .map_or(Eviction::Now, Eviction::At),
    }
}

/// upstream's `MarkPodsNotReady`: the pod's Ready condition becomes False;
/// whether it changed.
pub fn mark_pod_not_ready(pod: &mut Value, now: &str) -> bool {
    let Some(conditions) = pod["status"]["conditions"].as_array_mut() else {
        return false;
    };
    match conditions.iter_mut().find(|c| c["type"] == "Ready") {
        Some(ready) if ready["status"] != "False" => {
            ready["status"] = json!("False");
            ready["lastTransitionTime"] = json!(now);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_node_is_lost_a_grace_period_after_its_last_heartbeat() {
        let node = json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:10Z"}]}});
        let lease = json!({"spec": {"renewTime": "2026-01-01T00:00:30.000000Z"}});
        assert_eq!(lost_at(&node, Some(&lease), 50), Some(at("2026-01-01T00:01:20Z")));
        assert_eq!(lost_at(&node, None, 50), Some(at("2026-01-01T00:01:00Z")));
    }

    #[test]
    fn lost_nodes_get_unknown_conditions_and_unreachable_taints_once() {
        let mut node = json!({"spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"}, {"type": "MemoryPressure", "status": "False"}]}});
        assert!(mark_unknown(&mut node, "T"));
        assert!(!mark_unknown(&mut node, "T2"));
        assert_eq!(node["status"]["conditions"][0]["reason"], "NodeStatusUnknown");
        assert_eq!(node["status"]["conditions"][1]["status"], "Unknown");
        assert!(set_unreachable_taints(&mut node, true, "T"));
        assert!(!set_unreachable_taints(&mut node, true, "T2"));
        assert_eq!(node["spec"]["taints"].as_array().map(Vec::len), Some(3));
        assert_eq!(unreachable_since(&node), Some(Timestamp::UNIX_EPOCH));
        assert!(set_unreachable_taints(&mut node, false, "T3"));
        assert_eq!(node["spec"]["taints"], json!([{"key": "gpu", "effect": "NoSchedule"}]));
    }

    #[test]
    fn evictions_follow_tolerations() {
        let t0 = at("2026-01-01T00:00:00Z");
        let pod = |tolerations: Value| json!({"spec": {"tolerations": tolerations}});
        let cases = [
            (pod(json!([])), Eviction::Now),
            (pod(json!([{"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])), Eviction::At(at("2026-01-01T00:05:00Z"))),
            (pod(json!([{"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                         {"key": UNREACHABLE_TAINT, "operator": "Exists", "tolerationSeconds": 10}])), Eviction::At(at("2026-01-01T00:00:10Z"))),
            (pod(json!([{"operator": "Exists"}])), Eviction::Never),
            (pod(json!([{"key": "other", "operator": "Exists"}])), Eviction::Now),
            (pod(json!([{"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"}])), Eviction::Now),
        ];
        for (pod, expected) in cases {
            assert_eq!(eviction(&pod, t0), expected, "{pod}");
        }
    }
}
