//! upstream's Node authorizer (plugin/pkg/auth/authorizer/node), for
//! node agents (`system:node:<name>` in `system:nodes`): they may read
//! nodes, pods, services and endpoints, write their own Node, Lease, the
//! status of pods bound to them and events, and read only the ConfigMaps,
//! Secrets and service-account tokens of pods bound to them. Anything else
//! is left to RBAC, which grants nodes nothing, so it is refused with
//! upstream's `no relationship found between node ... and this object`.

use serde_json::Value;
use skiff_api::rbac::{Attributes, Target, UserInfo};
use skiff_api::selector::FieldSelector;

use super::node_graph::NodeGraph;
use crate::error::{ApiError, Result};
use crate::registry::{ListParams, Registry};

pub const NODES_GROUP: &str = "system:nodes";
const NODE_PREFIX: &str = "system:node:";

/// The node a user is, if it is a node agent.
pub fn node_name(user: &UserInfo) -> Option<&str> {
    if !user.in_group(NODES_GROUP) {
        return None;
    }
    user.username.strip_prefix(NODE_PREFIX).filter(|n| !n.is_empty())
}

/// Why a node was refused (appended to the 403 text).
pub fn refusal(node: &str) -> String {
    format!("no relationship found between node '{node}' and this object")
}

const READ: &[&str] = &["get", "list", "watch"];

fn one_of(verb: &str, verbs: &[&str]) -> bool {
    verbs.contains(&verb)
}

/// The pods bound to `node`.
pub(crate) async fn pods_on(registry: &Registry, node: &str) -> Result<Vec<Value>> {
    let pods = ApiError::served("", "v1", "pods")?;
    let fields = FieldSelector::parse(&format!("spec.nodeName={node}"), pods).map_err(ApiError::bad_request)?;
    Ok(registry.list(pods, None, &ListParams { fields, ..ListParams::default() }).await?.items)
}

/// The ConfigMaps, Secrets and service account a pod reads (named ones).
pub(crate) fn references(pod: &Value) -> Vec<(&'static str, String)> {
    let mut found = skiff_api::pod::references(pod);
    found.retain(|(_, name)| !name.is_empty());
    found
}

/// Whether a pod bound to `node` in `namespace` references `resource/name`:
/// the graph knows at once; a miss (a pod bound a moment ago) reads the
/// node's pods.
async fn related(registry: &Registry, graph: &NodeGraph, node: &str, namespace: &str, resource: &'static str, name: &str) -> Result<bool> {
    if name.is_empty() {
        return Ok(false);
    }
    if graph.related(node, namespace, resource, name) {
        return Ok(true);
    }
    Ok(pods_on(registry, node).await?.iter().any(|pod| {
        pod["metadata"]["namespace"] == namespace
            && references(pod).iter().any(|(kind, referenced)| *kind == resource && referenced == name)
    }))
}

/// Whether the Node authorizer allows `request` of `node`.
pub async fn allows(registry: &Registry, graph: &NodeGraph, node: &str, request: &Attributes) -> Result<bool> {
    let Target::Resource { group, resource, subresource, namespace, name } = &request.target else {
        return Ok(false);
    };
    let verb = request.verb.as_str();
    let own = name == node;
    Ok(match (group.as_str(), resource.as_str(), subresource.as_str()) {
        ("", "nodes", "") if one_of(verb, READ) => true,
        ("", "nodes", "" | "status") if verb == "create" || (own && one_of(verb, &["get", "update", "patch", "delete"])) => true,
        ("coordination.k8s.io", "leases", "") if namespace == "kube-node-lease" && (verb == "create" || (own && one_of(verb, &["get", "update", "patch", "delete"]))) => true,
        ("", "pods", "") if one_of(verb, READ) => true,
        // Mirror pods of its static pods (upstream's NodeRestriction narrows these further).
        ("", "pods", "") if one_of(verb, &["create", "delete"]) => true,
        ("", "pods", "status") if one_of(verb, &["get", "update", "patch"]) => {
            let pods = ApiError::served("", "v1", "pods")?;
            match registry.get(pods, Some(namespace), name).await {
                Ok(pod) => pod["spec"]["nodeName"] == node,
                Err(error) if error.code() == 404 => false,
                Err(other) => return Err(other),
            }
        }
        ("", "pods", "eviction") if verb == "create" => true,
        ("" | "events.k8s.io", "events", "") if one_of(verb, &["create", "update", "patch"]) => true,
        ("", "services" | "endpoints", "") if one_of(verb, READ) => true,
        ("", "configmaps", "") if one_of(verb, READ) => related(registry, graph, node, namespace, "configmaps", name).await?,
        ("", "secrets", "") if one_of(verb, READ) => related(registry, graph, node, namespace, "secrets", name).await?,
        ("", "serviceaccounts", "token") if verb == "create" => related(registry, graph, node, namespace, "serviceaccounts", name).await?,
        ("authentication.k8s.io", "tokenreviews", "") | ("authorization.k8s.io", "subjectaccessreviews", "") if verb == "create" => true,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_reference_their_volumes_env_pull_secrets_and_account() {
        let pod = json!({"spec": {
            "volumes": [{"name": "a", "configMap": {"name": "cm"}}, {"name": "b", "projected": {"sources": [{"secret": {"name": "s1"}}]}}],
            "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s2"}}], "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm2", "key": "k"}}}]}],
            "imagePullSecrets": [{"name": "pull"}],
        }});
        let mut found = references(&pod);
        found.sort();
        assert_eq!(found, vec![
            ("configmaps", "cm".to_string()),
            ("configmaps", "cm2".to_string()),
            ("secrets", "pull".to_string()),
            ("secrets", "s1".to_string()),
            ("secrets", "s2".to_string()),
            ("serviceaccounts", "default".to_string()),
        ]);
    }

    #[test]
    fn only_node_users_are_nodes() {
        let node = UserInfo::authenticated("system:node:n1", &[NODES_GROUP]);
        assert_eq!(node_name(&node), Some("n1"));
        assert_eq!(node_name(&UserInfo::authenticated("system:node:n1", &[])), None);
        assert_eq!(node_name(&UserInfo::authenticated("alice", &[NODES_GROUP])), None);
    }
}
