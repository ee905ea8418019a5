//! The API objects a pod refers to by name: the ConfigMaps and Secrets of
//! its volumes (projected ones too), env and envFrom of every container,
//! its image pull Secrets, and its service account. What the Node
//! authorizer lets a node read and NodeRestriction forbids in mirror pods.

use serde_json::Value;

/// (resource, name) for each reference; a source present without a name
/// gives an empty name. The service account is `default` when unset.
pub fn references(pod: &Value) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    let mut add = |resource: &'static str, source: &Value, field: &str| {
        if !source.is_null() {
            found.push((resource, source[field].as_str().unwrap_or("").to_string()));
        }
    };
    let spec = &pod["spec"];
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        add("configmaps", &volume["configMap"], "name");
        add("secrets", &volume["secret"], "secretName");
        for source in volume["projected"]["sources"].as_array().into_iter().flatten() {
            add("configmaps", &source["configMap"], "name");
            add("secrets", &source["secret"], "name");
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in spec[list].as_array().into_iter().flatten() {
            for var in container["env"].as_array().into_iter().flatten() {
                add("configmaps", &var["valueFrom"]["configMapKeyRef"], "name");
                add("secrets", &var["valueFrom"]["secretKeyRef"], "name");
            }
            for from in container["envFrom"].as_array().into_iter().flatten() {
                add("configmaps", &from["configMapRef"], "name");
                add("secrets", &from["secretRef"], "name");
            }
        }
    }
    for pull in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add("secrets", pull, "name");
    }
    let account = spec["serviceAccountName"].as_str().filter(|n| !n.is_empty()).unwrap_or("default");
    found.push(("serviceaccounts", account.to_string()));
    found
}
