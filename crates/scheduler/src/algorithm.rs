//! Where a pod goes: upstream's default filters (NodeUnschedulable,
//! TaintToleration, NodeAffinity for `nodeSelector`, NodePorts,
//! NodeResourcesFit) and the LeastAllocated score, as pure functions over a
//! snapshot. The message of a failure reads like kube-scheduler's.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use skiff_api::quantity::Quantity;

/// CPU in millicores, memory in bytes, pods as a count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i128,
    pub memory: i128,
    pub pods: i128,
}

impl Resources {
    fn add(&mut self, other: Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }
}

fn quantity(list: Option<&BTreeMap<String, K8sQuantity>>, name: &str) -> i128 {
    list.and_then(|l| l.get(name))
        .and_then(|q| Quantity::parse(&q.0))
        .map(|q| q.milli_value())
        .unwrap_or(0)
}

fn container_requests(container: &Container) -> Resources {
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    Resources {
        milli_cpu: quantity(requests, "cpu"),
        memory: quantity(requests, "memory") / 1000,
        pods: 0,
    }
}

/// What a pod asks of a node: the larger of its app containers (plus
/// sidecars) and any single init container, plus one pod slot.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources {
            pods: 1,
            ..Default::default()
        };
    };
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(container_requests(container));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for init in spec.init_containers.iter().flatten() {
        let request = container_requests(init);
        if init.restart_policy.as_deref() == Some("Always") {
            sidecars.add(request);
        } else {
            init_peak.milli_cpu = init_peak
                .milli_cpu
                .max(request.milli_cpu + sidecars.milli_cpu);
            init_peak.memory = init_peak.memory.max(request.memory + sidecars.memory);
        }
    }
    total.add(sidecars);
    Resources {
        milli_cpu: total.milli_cpu.max(init_peak.milli_cpu),
        memory: total.memory.max(init_peak.memory),
        pods: 1,
    }
}

/// A node's allocatable resources (capacity if allocatable is not reported).
pub fn allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let list = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
    Resources {
        milli_cpu: quantity(list, "cpu"),
        memory: quantity(list, "memory") / 1000,
        pods: quantity(list, "pods") / 1000,
    }
}

/// Upstream's toleration matching (`Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = toleration.key.as_deref().unwrap_or("");
    let key_ok = key.is_empty() || key == taint.key;
    let value_ok = match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    };
    let exists_all = key.is_empty() && toleration.operator.as_deref() == Some("Exists");
    effect_ok && (key_ok || exists_all) && value_ok
}

fn host_ports(pod: &Pod) -> BTreeSet<(i32, String)> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            p.host_port
                .filter(|h| *h > 0)
                .map(|h| (h, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        })
        .collect()
}

/// Why one node cannot take the pod; empty if it can.
pub fn filter(pod: &Pod, node: &Node, on_node: &[&Pod]) -> Vec<String> {
    let spec = pod.spec.clone().unwrap_or_default();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let tolerated = spec.tolerations.iter().flatten().any(|t| {
            tolerates(
                t,
                &Taint {
                    key: "node.kubernetes.io/unschedulable".into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                },
            )
        });
        if !tolerated {
            return vec!["node(s) were unschedulable".to_string()];
        }
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    for taint in taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
    {
        if !spec
            .tolerations
            .iter()
            .flatten()
            .any(|t| tolerates(t, taint))
        {
            return vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )];
        }
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(selector) = &spec.node_selector {
        if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return vec!["node(s) didn't match Pod's node affinity/selector".to_string()];
        }
    }
    let wanted_ports = host_ports(pod);
    if !wanted_ports.is_empty()
        && on_node
            .iter()
            .any(|other| !host_ports(other).is_disjoint(&wanted_ports))
    {
        return vec!["node(s) didn't have free ports for the requested pod ports".to_string()];
    }
    let capacity = allocatable(node);
    let mut used = Resources::default();
    for other in on_node {
        used.add(pod_requests(other));
    }
    let want = pod_requests(pod);
    let mut reasons = Vec::new();
    if used.pods + 1 > capacity.pods {
        reasons.push("Too many pods".to_string());
    }
    if want.milli_cpu > 0 && used.milli_cpu + want.milli_cpu > capacity.milli_cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if want.memory > 0 && used.memory + want.memory > capacity.memory {
        reasons.push("Insufficient memory".to_string());
    }
    reasons
}

/// LeastAllocated: the share of cpu and memory left free after placing the pod.
fn score(pod: &Pod, node: &Node, on_node: &[&Pod]) -> i128 {
    let capacity = allocatable(node);
    let mut used = pod_requests(pod);
    for other in on_node {
        used.add(pod_requests(other));
    }
    let free = |cap: i128, use_: i128| {
        if cap <= 0 {
            0
        } else {
            (cap - use_).max(0) * 100 / cap
        }
    };
    (free(capacity.milli_cpu, used.milli_cpu) + free(capacity.memory, used.memory)) / 2
}

/// Why a pod fits nowhere, summarised like kube-scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    /// Reason → number of nodes that gave it.
    pub reasons: BTreeMap<String, usize>,
    /// Why the pod fits no node at all, before any node is looked at
    /// (a PreFilter plugin's message).
    pub pre_filter: Option<String>,
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nodes == 0 {
            return write!(f, "no nodes available to schedule pods");
        }
        if let Some(message) = &self.pre_filter {
            return write!(f, "0/{} nodes are available: {message}.", self.nodes);
        }
        // Upstream sorts the formatted "<count> <reason>" strings.
        let mut listed: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        listed.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.nodes,
            listed.join(", ")
        )
    }
}

/// Whether the scheduler is responsible for `pod` now.
pub fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    spec.node_name.as_deref().is_none_or(str::is_empty)
        && spec
            .scheduler_name
            .as_deref()
            .unwrap_or("default-scheduler")
            == "default-scheduler"
        && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Picks the node for `pod` given every node and the pods already on each
/// (by node name). Ties go to the first name, so decisions are repeatable.
pub fn schedule<'a>(
    pod: &Pod,
    nodes: &'a [Node],
    assigned: &BTreeMap<String, Vec<&Pod>>,
) -> Result<&'a Node, FitError> {
    // VolumeBinding's PreFilter: Skiff serves no PersistentVolumeClaims,
    // so a pod that needs one waits as upstream waits for a missing claim.
    let claim = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .find_map(|v| v.persistent_volume_claim.as_ref());
    if let Some(claim) = claim {
        return Err(FitError {
            nodes: nodes.len(),
            reasons: BTreeMap::new(),
            pre_filter: Some(format!("persistentvolumeclaim {:?} not found", claim.claim_name)),
        });
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(&Node, i128)> = None;
    let empty = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let on_node = assigned.get(&name).unwrap_or(&empty);
        let failures = filter(pod, node, on_node);
        if failures.is_empty() {
            let node_score = score(pod, node, on_node);
            if best.is_none_or(|(_, s)| node_score > s) {
                best = Some((node, node_score));
            }
        } else {
            for reason in failures {
                *reasons.entry(reason).or_default() += 1;
            }
        }
    }
    best.map(|(node, _)| node).ok_or(FitError {
        nodes: nodes.len(),
        reasons,
        pre_filter: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cpu: &str, memory: &str, extra: serde_json::Value) -> Node {
        let mut value = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}});
        if let (Some(target), Some(more)) = (value.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                if k == "labels" {
                    if let Some(l) = target["metadata"]["labels"].as_object_mut() {
                        l.extend(v.as_object().cloned().unwrap_or_default());
                    }
                } else {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
        serde_json::from_value(value).unwrap_or_default()
    }

    fn pod(cpu: &str, memory: &str, extra: serde_json::Value) -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]});
        if let (Some(target), Some(more)) = (spec.as_object_mut(), extra.as_object()) {
            target.extend(more.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap_or_default()
    }

    fn pick(
        p: &Pod,
        nodes: &[Node],
        assigned: &BTreeMap<String, Vec<&Pod>>,
    ) -> Result<String, String> {
        schedule(p, nodes, assigned)
            .map(|n| n.metadata.name.clone().unwrap_or_default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn resources_decide_and_the_message_reads_like_upstream() {
        let nodes = [node("n1", "2", "4Gi", json!({}))];
        let none = BTreeMap::new();
        assert_eq!(
            pick(&pod("1", "1Gi", json!({})), &nodes, &none),
            Ok("n1".into())
        );
        assert_eq!(
            pick(&pod("100m", "1000Gi", json!({})), &nodes, &none),
            Err("0/1 nodes are available: 1 Insufficient memory.".into())
        );
        let busy = pod("1500m", "1Gi", json!({}));
        let assigned = BTreeMap::from([("n1".to_string(), vec![&busy])]);
        assert_eq!(
            pick(&pod("1", "1Gi", json!({})), &nodes, &assigned),
            Err("0/1 nodes are available: 1 Insufficient cpu.".into())
        );
        assert_eq!(
            pick(&pod("1", "1Gi", json!({})), &[], &none),
            Err("no nodes available to schedule pods".into())
        );
    }

    #[test]
    fn node_selector_taints_and_least_allocated() {
        let nodes = [
            node("big", "8", "16Gi", json!({"labels": {"disk": "ssd"}})),
            node("small", "2", "4Gi", json!({})),
            node(
                "tainted",
                "16",
                "32Gi",
                json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
            ),
        ];
        let none = BTreeMap::new();
        assert_eq!(
            pick(&pod("1", "1Gi", json!({})), &nodes, &none),
            Ok("big".into()),
            "most free after placing"
        );
        let selector = pod("1", "1Gi", json!({"nodeSelector": {"disk": "hdd"}}));
        assert_eq!(
            pick(&selector, &nodes, &none),
            Err("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector.".into())
        );
        let tolerant = pod(
            "1",
            "1Gi",
            json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
        );
        assert_eq!(pick(&tolerant, &nodes, &none), Ok("tainted".into()));
    }

    #[test]
    fn a_claim_keeps_the_pod_pending_with_upstreams_message() {
        let nodes = [node("a", "4", "8Gi", json!({}))];
        let claimed = pod("100m", "64Mi", json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}));
        assert_eq!(
            pick(&claimed, &nodes, &BTreeMap::new()),
            Err("0/1 nodes are available: persistentvolumeclaim \"data\" not found.".into())
        );
    }

    #[test]
    fn init_containers_count_at_their_peak() {
        let p = pod(
            "100m",
            "64Mi",
            json!({"initContainers": [{"name": "i", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "32Mi"}}}]}),
        );
        let r = pod_requests(&p);
        assert_eq!((r.milli_cpu, r.memory, r.pods), (2000, 64 * 1024 * 1024, 1));
    }

    #[test]
    fn only_unbound_default_scheduler_pods_are_ours() {
        assert!(wants_scheduling(&pod("1", "1", json!({}))));
        assert!(!wants_scheduling(&pod("1", "1", json!({"nodeName": "n1"}))));
        assert!(!wants_scheduling(&pod(
            "1",
            "1",
            json!({"schedulerName": "other"})
        )));
        assert!(!wants_scheduling(&pod(
            "1",
            "1",
            json!({"schedulingGates": [{"name": "g"}]})
        )));
    }
}
