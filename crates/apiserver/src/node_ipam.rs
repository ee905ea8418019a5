//! kube-controller-manager's node IPAM (range allocator) over the
//! registry: a node without `spec.podCIDR` gets the first free /24 of the
//! cluster CIDR (`skiff_api::node_ipam` decides); when none is left the
//! node gets upstream's `CIDRNotAvailable` event. Run from the node
//! lifecycle controller's pass, which node changes wake.

use serde_json::{json, Value};
use skiff_api::node_ipam::{next_free, Cidr};

use crate::error::Result;
use crate::registry::Registry;

/// Gives every node in `nodes` that lacks one a pod CIDR from `cluster`.
pub async fn assign(registry: &Registry, nodes: &[Value], cluster: &Cidr) -> Result<()> {
    let mut taken: Vec<String> = nodes
        .iter()
        .filter_map(|n| n["spec"]["podCIDR"].as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    for node in nodes.iter().filter(|n| n["spec"]["podCIDR"].as_str().unwrap_or("").is_empty()) {
        let name = node["metadata"]["name"].as_str().unwrap_or("");
        let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
        let Some(cidr) = next_free(cluster, &refs) else {
            tracing::warn!(node = name, cluster = %cluster, "no pod CIDR left for the node");
            super::node_lifecycle::event(registry, node, "Node", "Normal", "CIDRNotAvailable", format!("Node {name} status is now: CIDRNotAvailable")).await;
            continue;
        };
        let mut assigned = node.clone();
        assigned["spec"]["podCIDR"] = json!(cidr.to_string());
        assigned["spec"]["podCIDRs"] = json!([cidr.to_string()]);
        match registry.update(super::node_lifecycle::core("nodes")?, None, name, assigned, None, false, None).await {
            Ok(_) => {
                tracing::info!(node = name, pod_cidr = %cidr, "assigned the node a pod CIDR");
                taken.push(cidr.to_string());
            }
            // Changed meanwhile: the change wakes the next pass.
            Err(error) if error.code() == 409 => {}
            Err(other) => return Err(other),
        }
    }
    Ok(())
}
