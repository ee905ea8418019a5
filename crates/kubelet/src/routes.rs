//! One flat pod network across nodes, as flannel's host-gw backend builds
//! it: every other node's `spec.podCIDR` is routed via that node's
//! InternalIP, with plain routes and no encapsulation, so pods reach pods
//! on other nodes by their own addresses. Watched from the Nodes; a node
//! that goes away takes its route with it.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio_util::sync::CancellationToken;

/// The route a node needs to another: (pod CIDR, via address).
pub fn route_to(node: &Node) -> Option<(String, String)> {
    let cidr = node.spec.as_ref()?.pod_cidr.clone().filter(|c| !c.is_empty())?;
    let address = node
        .status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .clone();
    Some((cidr, address))
}

/// Keeps the routes to every node but `own` until `shutdown`.
pub async fn run(client: kube::Client, own: String, shutdown: CancellationToken) {
    let nodes: Api<Node> = Api::all(client);
    let mut events = std::pin::pin!(watcher(nodes, watcher::Config::default()).default_backoff());
    // name → (cidr, via) routed now.
    let mut routed: BTreeMap<String, (String, String)> = BTreeMap::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.try_next() => event,
        };
        let (applied, deleted) = match event {
            Ok(Some(watcher::Event::Apply(node) | watcher::Event::InitApply(node))) => (Some(node), None),
            Ok(Some(watcher::Event::Delete(node))) => (None, Some(node)),
            Ok(Some(_)) => continue,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "watching nodes for routes failed; retrying");
                continue;
            }
        };
        if let Some(node) = applied {
            let name = node.metadata.name.clone().unwrap_or_default();
            if name == own {
                continue;
            }
            let Some(route) = route_to(&node) else { continue };
            if routed.get(&name) == Some(&route) {
                continue;
            }
            match skiff_runtime::network::ensure_route(&route.0, &route.1).await {
                Ok(()) => {
                    tracing::info!(node = %name, cidr = %route.0, via = %route.1, "routing a node's pods");
                    routed.insert(name, route);
                }
                Err(error) => tracing::warn!(node = %name, %error, "cannot route a node's pods"),
            }
        }
        if let Some(node) = deleted {
            let name = node.metadata.name.clone().unwrap_or_default();
            if let Some((cidr, _)) = routed.remove(&name) {
                if let Err(error) = skiff_runtime::network::remove_route(&cidr).await {
                    tracing::warn!(node = %name, %error, "cannot remove a deleted node's route");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_go_to_a_nodes_pod_cidr_via_its_internal_ip() -> Result<(), serde_json::Error> {
        let node: Node = serde_json::from_value(serde_json::json!({
            "spec": {"podCIDR": "10.42.1.0/24"},
            "status": {"addresses": [{"type": "Hostname", "address": "b"}, {"type": "InternalIP", "address": "10.99.0.2"}]},
        }))?;
        assert_eq!(route_to(&node), Some(("10.42.1.0/24".to_string(), "10.99.0.2".to_string())));
        assert_eq!(route_to(&Node::default()), None);
        Ok(())
    }
}
