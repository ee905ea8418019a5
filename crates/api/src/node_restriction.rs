//! upstream's NodeRestriction admission plugin (plugin/pkg/admission/
//! noderestriction), the content checks that complement the Node
//! authorizer for node agents (`system:node:<name>`): a node may create or
//! change only its own Node (not its taints, not labels outside the
//! kubelet's allowed set), only its own Lease, only mirror pods bound to
//! itself, owned by its Node and referencing no other API objects, and may
//! delete or evict only pods bound to itself. Messages are upstream's;
//! the caller wraps them in `<resource> "<name>" is forbidden: ...`.

use serde_json::Value;

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Labels a kubelet may set on its own Node (upstream's
/// `kubeletapis.KubeletLabels` and the allowed namespaces).
const ALLOWED_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "node.kubernetes.io/instance-type",
];
const ALLOWED_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// Whether a kubelet may not set the label `key` on its Node.
fn forbidden_label(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    if prefix == "node-restriction.kubernetes.io" || prefix.ends_with(".node-restriction.kubernetes.io") {
        return true;
    }
    let kubernetes = |p: &str| p == "kubernetes.io" || p.ends_with(".kubernetes.io") || p == "k8s.io" || p.ends_with(".k8s.io");
    if !kubernetes(prefix) || ALLOWED_LABELS.contains(&key) {
        return false;
    }
    !ALLOWED_LABEL_NAMESPACES.iter().any(|ns| prefix == *ns || prefix.ends_with(&format!(".{ns}")))
}

/// The labels of `node` a kubelet may not set that differ from `old`'s.
fn modified_forbidden_labels(node: &Value, old: Option<&Value>) -> Vec<String> {
    let labels = |object: Option<&Value>| object.and_then(|o| o["metadata"]["labels"].as_object().cloned()).unwrap_or_default();
    let (new, old) = (labels(Some(node)), labels(old));
    let mut keys: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(old.keys().filter(|k| !new.contains_key(*k)).cloned())
        .filter(|k| forbidden_label(k))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A node creating (`old` is None) or updating a Node named `name`.
pub fn admit_node(node: &str, name: &str, object: &Value, old: Option<&Value>) -> Result<(), String> {
    let forbidden = modified_forbidden_labels(object, old);
    if old.is_none() && !forbidden.is_empty() {
        return Err(format!("node {node:?} is not allowed to set the following labels: {}", forbidden.join(", ")));
    }
    if name != node {
        return Err(format!("node {node:?} is not allowed to modify node {name:?}"));
    }
    if let Some(old) = old {
        let taints = |o: &Value| o["spec"]["taints"].as_array().cloned().unwrap_or_default();
        if taints(object) != taints(old) {
            return Err(format!("node {node:?} is not allowed to modify taints"));
        }
        if !forbidden.is_empty() {
            return Err(format!("is not allowed to modify labels: {}", forbidden.join(", ")));
        }
    }
    Ok(())
}

/// A node creating or changing the Lease `name` in `namespace`.
pub fn admit_lease(node: &str, namespace: &str, name: &str) -> Result<(), String> {
    if namespace != "kube-node-lease" {
        return Err("can only access leases in the kube-node-lease namespace".into());
    }
    if name != node {
        return Err("can only access node lease with the same name as the requesting node".into());
    }
    Ok(())
}

/// Whether the pod refers to any object of `resource` (named or not).
fn refers_to(pod: &Value, resource: &str) -> bool {
    crate::pod::references(pod).iter().any(|(kind, _)| *kind == resource)
}

/// A node creating a pod: only a mirror pod of its own, owned by its Node
/// (`node_uid`), referencing no other API object.
pub fn admit_pod_create(node: &str, node_uid: Option<&str>, pod: &Value) -> Result<(), String> {
    if !pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_string() {
        return Err(format!("pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"));
    }
    if pod["spec"]["nodeName"].as_str() != Some(node) {
        return Err(format!("node {node:?} can only create pods with spec.nodeName set to itself"));
    }
    let owners = pod["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
    match owners.as_slice() {
        [] => return Err(format!("node {node:?} can only create pods with an owner reference set to itself")),
        [owner] => {
            if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"].as_str() != Some(node) {
                return Err(format!("node {node:?} can only create pods with an owner reference set to itself"));
            }
            if owner["controller"] != true {
                return Err(format!("node {node:?} can only create pods with a controller owner reference set to itself"));
            }
            if owner["blockOwnerDeletion"] == true {
                return Err(format!("node {node:?} must not set blockOwnerDeletion on an owner reference"));
            }
            if node_uid.is_some_and(|uid| owner["uid"].as_str() != Some(uid)) {
                return Err(format!("the UID in the owner reference does not match the current UID of node {node:?}"));
            }
        }
        _ => return Err(format!("node {node:?} can only create pods with a single owner reference set to itself")),
    }
    let spec = &pod["spec"];
    if spec["serviceAccountName"].as_str().is_some_and(|s| !s.is_empty()) {
        return Err(format!("node {node:?} can not create pods that reference a service account"));
    }
    if refers_to(pod, "secrets") {
        return Err(format!("node {node:?} can not create pods that reference secrets"));
    }
    if refers_to(pod, "configmaps") {
        return Err(format!("node {node:?} can not create pods that reference configmaps"));
    }
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    if volumes.iter().any(|v| !v["persistentVolumeClaim"].is_null()) {
        return Err(format!("node {node:?} can not create pods that reference persistentvolumeclaims"));
    }
    if volumes.iter().any(|v| !v["ephemeral"].is_null()) {
        return Err(format!("node {node:?} can not create pods that use generic ephemeral volumes"));
    }
    if spec["resourceClaims"].as_array().is_some_and(|c| !c.is_empty()) {
        return Err(format!("node {node:?} can not create pods that reference resourceclaims"));
    }
    Ok(())
}

/// A node deleting (`evict` false) or evicting a pod bound to `bound_to`.
pub fn admit_pod_removal(node: &str, bound_to: &str, evict: bool) -> Result<(), String> {
    match (bound_to == node, evict) {
        (true, _) => Ok(()),
        (false, false) => Err(format!("node {node:?} can only delete pods with spec.nodeName set to itself")),
        (false, true) => Err(format!("node {node} can only evict pods with spec.nodeName set to itself")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mirror(owner: Value) -> Value {
        json!({"metadata": {"name": "web-n1", "annotations": {MIRROR_ANNOTATION: "abc"}, "ownerReferences": [owner]},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})
    }

    fn owner() -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1", "controller": true})
    }

    #[test]
    fn nodes_create_only_their_own_mirror_pods_without_references() {
        assert_eq!(admit_pod_create("n1", Some("u1"), &mirror(owner())), Ok(()));
        let mut not_mirror = mirror(owner());
        not_mirror["metadata"]["annotations"] = json!({});
        let mut elsewhere = mirror(owner());
        elsewhere["spec"]["nodeName"] = json!("n2");
        let mut secret = mirror(owner());
        secret["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "x"}}]);
        let mut config = mirror(owner());
        config["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "x"}}]);
        let mut account = mirror(owner());
        account["spec"]["serviceAccountName"] = json!("robot");
        let mut claim = mirror(owner());
        claim["spec"]["volumes"] = json!([{"name": "c", "persistentVolumeClaim": {"claimName": "x"}}]);
        let mut two = mirror(owner());
        two["metadata"]["ownerReferences"] = json!([owner(), owner()]);
        let mut uncontrolled = owner();
        uncontrolled["controller"] = json!(false);
        let mut other_uid = owner();
        other_uid["uid"] = json!("u2");
        let cases = [
            (not_mirror, r#"pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#),
            (elsewhere, r#"node "n1" can only create pods with spec.nodeName set to itself"#),
            (secret, r#"node "n1" can not create pods that reference secrets"#),
            (config, r#"node "n1" can not create pods that reference configmaps"#),
            (account, r#"node "n1" can not create pods that reference a service account"#),
            (claim, r#"node "n1" can not create pods that reference persistentvolumeclaims"#),
            (two, r#"node "n1" can only create pods with a single owner reference set to itself"#),
            (mirror(uncontrolled), r#"node "n1" can only create pods with a controller owner reference set to itself"#),
            (mirror(other_uid), r#"the UID in the owner reference does not match the current UID of node "n1""#),
        ];
        for (pod, want) in cases {
            assert_eq!(admit_pod_create("n1", Some("u1"), &pod), Err(want.to_string()), "{pod}");
        }
    }

    #[test]
    fn nodes_change_only_themselves_and_not_their_taints_or_restricted_labels() {
        let node = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "node.kubernetes.io/x": "1", "example.com/y": "2"}}});
        assert_eq!(admit_node("n1", "n1", &node, None), Ok(()));
        assert_eq!(admit_node("n1", "n2", &node, None), Err(r#"node "n1" is not allowed to modify node "n2""#.into()));
        let mut role = node.clone();
        role["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("true");
        role["metadata"]["labels"]["node-restriction.kubernetes.io/a"] = json!("b");
        assert_eq!(
            admit_node("n1", "n1", &role, None),
            Err(r#"node "n1" is not allowed to set the following labels: node-restriction.kubernetes.io/a, node-role.kubernetes.io/control-plane"#.into())
        );
        // Labels someone else set may stay; the node may not change them.
        assert_eq!(admit_node("n1", "n1", &role, Some(&role)), Ok(()));
        assert_eq!(
            admit_node("n1", "n1", &node, Some(&role)),
            Err("is not allowed to modify labels: node-restriction.kubernetes.io/a, node-role.kubernetes.io/control-plane".into())
        );
        let mut tainted = node.clone();
        tainted["spec"]["taints"] = json!([{"key": "k", "effect": "NoSchedule"}]);
        assert_eq!(admit_node("n1", "n1", &node, Some(&tainted)), Err(r#"node "n1" is not allowed to modify taints"#.into()));
    }

    #[test]
    fn leases_and_removals_are_a_nodes_own() {
        assert_eq!(admit_lease("n1", "kube-node-lease", "n1"), Ok(()));
        assert!(admit_lease("n1", "kube-node-lease", "n2").is_err_and(|e| e.contains("same name")));
        assert!(admit_lease("n1", "kube-system", "n1").is_err());
        assert_eq!(admit_pod_removal("n1", "n1", false), Ok(()));
        assert_eq!(admit_pod_removal("n1", "n2", false), Err(r#"node "n1" can only delete pods with spec.nodeName set to itself"#.into()));
        assert_eq!(admit_pod_removal("n1", "n2", true), Err("node n1 can only evict pods with spec.nodeName set to itself".into()));
    }
}
