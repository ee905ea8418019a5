//! The vendored upstream 1.32 OpenAPI v3 documents (see tools/gen_openapi.py):
//! served for `kubectl explain`, and walked for strict field validation and
//! strategic merge patch.

use std::sync::OnceLock;

use serde_json::Value;

/// (URL path under /openapi/v3/, document text)
static DOCUMENTS: &[(&str, &str)] = &[
    ("api/v1", include_str!("../openapi/api__v1.json")),
    (
        "apis/coordination.k8s.io/v1",
        include_str!("../openapi/apis__coordination.k8s.io__v1.json"),
    ),
    (
        "apis/events.k8s.io/v1",
        include_str!("../openapi/apis__events.k8s.io__v1.json"),
    ),
    ("apis/apps/v1", include_str!("../openapi/apis__apps__v1.json")),
    ("apis/batch/v1", include_str!("../openapi/apis__batch__v1.json")),
    (
        "apis/discovery.k8s.io/v1",
        include_str!("../openapi/apis__discovery.k8s.io__v1.json"),
    ),
    (
        "apis/networking.k8s.io/v1",
        include_str!("../openapi/apis__networking.k8s.io__v1.json"),
    ),
    (
        "apis/rbac.authorization.k8s.io/v1",
        include_str!("../openapi/apis__rbac.authorization.k8s.io__v1.json"),
    ),
    (
        "apis/authorization.k8s.io/v1",
        include_str!("../openapi/apis__authorization.k8s.io__v1.json"),
    ),
    (
        "apis/authentication.k8s.io/v1",
        include_str!("../openapi/apis__authentication.k8s.io__v1.json"),
    ),
];

/// OpenAPI v2 as gnostic protobuf: only paths and PATCH operations, which is
/// what kubectl 1.27 reads to learn that the server validates fields.
pub fn openapi_v2_protobuf() -> &'static [u8] {
    include_bytes!("../openapi/v2.pb")
}

/// The served documents: (path, text).
pub fn documents() -> &'static [(&'static str, &'static str)] {
    DOCUMENTS
}

/// All component schemas of all documents, parsed once.
fn schemas() -> &'static serde_json::Map<String, Value> {
    static SCHEMAS: OnceLock<serde_json::Map<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut all = serde_json::Map::new();
        for (_, text) in DOCUMENTS {
            if let Ok(doc) = serde_json::from_str::<Value>(text) {
                if let Some(map) = doc["components"]["schemas"].as_object() {
                    all.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        all
    })
}

/// The schema named e.g. `io.k8s.api.core.v1.Pod`.
pub fn named(name: &str) -> Option<&'static Value> {
    schemas().get(name)
}

/// The definition name of a kind in a group-version, as upstream's
/// OpenAPI and generated.proto name it (`io.k8s.api.core.v1.Pod`).
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    if group.is_empty() {
        format!("io.k8s.api.core.{version}.{kind}")
    } else {
        let short = group.split('.').next().unwrap_or(group);
        format!("io.k8s.api.{short}.{version}.{kind}")
    }
}

/// The schema of a kind in a group-version.
pub fn for_kind(group: &str, version: &str, kind: &str) -> Option<&'static Value> {
    named(&definition_name(group, version, kind))
}

/// Follows `$ref` (bare or wrapped in `allOf`) to the referenced schema.
pub fn resolve(node: &'static Value) -> &'static Value {
    let reference = node["$ref"]
        .as_str()
        .or_else(|| node["allOf"][0]["$ref"].as_str());
    match reference.and_then(|r| r.rsplit('/').next()).and_then(named) {
        Some(target) => target,
        None => node,
    }
}

/// The resolved schema of property `key` of an object schema, and the
/// property node itself (which carries the patch extensions).
pub fn property(object: &'static Value, key: &str) -> Option<(&'static Value, &'static Value)> {
    let prop = object["properties"].get(key)?;
    Some((resolve(prop), prop))
}

/// Whether the schema describes an object that accepts arbitrary keys.
pub fn is_open(schema: &Value) -> bool {
    schema.get("properties").is_none()
        || schema.get("x-kubernetes-preserve-unknown-fields").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_schema_is_vendored_with_patch_metadata() {
        let pod = for_kind("", "v1", "Pod");
        assert!(pod.is_some());
        let spec = pod.and_then(|p| property(p, "spec")).map(|(s, _)| s);
        let containers = spec.and_then(|s| property(s, "containers")).map(|(_, p)| p);
        assert_eq!(
            containers.map(|c| c["x-kubernetes-patch-merge-key"].clone()),
            Some("name".into())
        );
        assert!(for_kind("coordination.k8s.io", "v1", "Lease").is_some());
    }
}
