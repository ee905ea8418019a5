//! The Node authorizer's graph (upstream's node authorizer graph, fed by
//! informers): which node's pods reference which ConfigMaps, Secrets and
//! service accounts, kept from a store watch of the pods, so a node's
//! request for one of them is answered without listing the node's pods.
//! Eventually consistent, as upstream's: a miss falls back to reading the
//! node's pods ([`super::node::allows`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use serde_json::Value;
use skiff_store::EventKind;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::registry::{ListParams, Registry};

const PODS: &str = "/registry/pods/";

/// (node, namespace, resource, name) → how many of the node's pods reference it.
type Edge = (String, String, &'static str, String);

#[derive(Default)]
struct Graph {
    /// Each pod's store key → the edges it contributes.
    pods: HashMap<String, Vec<Edge>>,
    edges: HashMap<Edge, usize>,
}

impl Graph {
    fn remove(&mut self, key: &str) {
        for edge in self.pods.remove(key).unwrap_or_default() {
            if let Some(count) = self.edges.get_mut(&edge) {
                *count -= 1;
                if *count == 0 {
                    self.edges.remove(&edge);
                }
            }
        }
    }

    fn upsert(&mut self, key: &str, pod: &Value) {
        self.remove(key);
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
        if node.is_empty() {
            return;
        }
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("");
        let mut edges: Vec<Edge> = super::node::references(pod)
            .into_iter()
            .map(|(resource, name)| (node.to_string(), namespace.to_string(), resource, name))
            .collect();
        edges.sort();
        edges.dedup();
        for edge in &edges {
            *self.edges.entry(edge.clone()).or_default() += 1;
        }
        self.pods.insert(key.to_string(), edges);
    }
}

/// The graph, shared by every request's authorization.
#[derive(Default)]
pub struct NodeGraph {
    graph: RwLock<Graph>,
}

impl NodeGraph {
    /// Whether a pod bound to `node` in `namespace` references `resource/name`.
    pub fn related(&self, node: &str, namespace: &str, resource: &'static str, name: &str) -> bool {
        let graph = self.graph.read().unwrap_or_else(|p| p.into_inner());
        graph.edges.contains_key(&(node.to_string(), namespace.to_string(), resource, name.to_string()))
    }

    fn replace(&self, graph: Graph) {
        *self.graph.write().unwrap_or_else(|p| p.into_inner()) = graph;
    }

    fn apply(&self, key: &str, kind: EventKind, value: &[u8]) {
        let mut graph = self.graph.write().unwrap_or_else(|p| p.into_inner());
        match kind {
            EventKind::Delete => graph.remove(key),
            EventKind::Create | EventKind::Update => match serde_json::from_slice::<Value>(value) {
                Ok(pod) => graph.upsert(key, &pod),
                Err(error) => tracing::warn!(key, %error, "a pod was skipped by the node authorizer's graph"),
            },
        }
    }
}

async fn load(registry: &Registry) -> Result<Graph, ApiError> {
    let mut graph = Graph::default();
    let pods = ApiError::served("", "v1", "pods")?;
    for pod in registry.list(pods, None, &ListParams::default()).await?.items {
        let key = pods.storage_key(pod["metadata"]["namespace"].as_str(), pod["metadata"]["name"].as_str().unwrap_or(""));
        graph.upsert(&key, &pod);
    }
    Ok(graph)
}

/// Keeps `graph` current until `shutdown`: load the pods, then watch them;
/// after a broken watch, load again.
pub async fn run(registry: Registry, graph: Arc<NodeGraph>, shutdown: CancellationToken) {
    let reload = || {
        let (registry, graph) = (registry.clone(), graph.clone());
        async move {
            match load(&registry).await {
                Ok(loaded) => graph.replace(loaded),
                Err(error) => tracing::warn!(%error, "loading pods for the node authorizer failed"),
            }
        }
    };
    let apply = |event: &skiff_store::Event| graph.apply(&event.kv.key, event.kind, &event.kv.value);
    crate::follow::follow(&registry, PODS, "node authorizer graph", &shutdown, reload, apply).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edges_follow_pods_as_they_bind_change_and_go() {
        let graph = NodeGraph::default();
        let pod = |node: &str, config: &str| {
            json!({"metadata": {"namespace": "ns", "name": "p"}, "spec": {"nodeName": node,
                "volumes": [{"name": "v", "configMap": {"name": config}}], "containers": []}})
        };
        let bytes = |v: Value| serde_json::to_vec(&v).unwrap_or_default();
        graph.apply("/registry/pods/ns/p", EventKind::Create, &bytes(pod("", "a")));
        assert!(!graph.related("n1", "ns", "configmaps", "a"), "an unbound pod gives no node anything");
        graph.apply("/registry/pods/ns/p", EventKind::Update, &bytes(pod("n1", "a")));
        assert!(graph.related("n1", "ns", "configmaps", "a"));
        assert!(graph.related("n1", "ns", "serviceaccounts", "default"));
        assert!(!graph.related("n2", "ns", "configmaps", "a"));
        assert!(!graph.related("n1", "other", "configmaps", "a"));
        graph.apply("/registry/pods/ns/p", EventKind::Update, &bytes(pod("n1", "b")));
        assert!(!graph.related("n1", "ns", "configmaps", "a") && graph.related("n1", "ns", "configmaps", "b"));
        graph.apply("/registry/pods/ns/p", EventKind::Delete, &[]);
        assert!(!graph.related("n1", "ns", "configmaps", "b"));
    }
}
