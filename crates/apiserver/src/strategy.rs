//! Per-kind rules for create and update, as upstream's registry strategies:
//! decoding into the kind's type, defaulting, validation, and which parts of
//! an object a write to the main resource or to `/status` may change.
//! Pure functions over JSON; the registry calls them and does the I/O.

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use skiff_api::k8s_openapi::api::coordination::v1::Lease;
use skiff_api::k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, Pod, Secret, Service, ServiceAccount,
};
use skiff_api::resources::ResourceInfo;
use skiff_api::{object, pod, FieldError};

/// Kubernetes' time format for metadata timestamps.
pub fn format_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn roundtrip<T: DeserializeOwned + Serialize>(value: Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(value).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// Decodes into the kind's Go-equivalent type and back: unknown fields are
/// dropped and wrong types refused, as the apiserver's decoder does.
pub fn normalize(resource: &ResourceInfo, value: Value) -> Result<Value, String> {
    let mut out = match (resource.group, resource.kind) {
        ("", "Pod") => {
            let pod: Pod = serde_json::from_value(value).map_err(|e| e.to_string())?;
            if let Some(spec) = &pod.spec {
                pod::check_quantities(spec)?;
            }
            serde_json::to_value(pod).map_err(|e| e.to_string())?
        }
        ("", "Namespace") => roundtrip::<Namespace>(value)?,
        ("", "Node") => roundtrip::<Node>(value)?,
        ("", "Event") => roundtrip::<Event>(value)?,
        ("", "Service") => roundtrip::<Service>(value)?,
        ("", "Endpoints") => roundtrip::<k8s_openapi::api::core::v1::Endpoints>(value)?,
        ("", "ConfigMap") => roundtrip::<ConfigMap>(value)?,
        ("", "Secret") => roundtrip::<Secret>(without_line_breaks_in_data(value))?,
        ("", "ServiceAccount") => roundtrip::<ServiceAccount>(value)?,
        ("coordination.k8s.io", "Lease") => roundtrip::<Lease>(value)?,
        ("discovery.k8s.io", "EndpointSlice") => {
            roundtrip::<k8s_openapi::api::discovery::v1::EndpointSlice>(value)?
        }
        _ => value,
    };
    out["kind"] = json!(resource.kind);
    out["apiVersion"] = json!(resource.api_version());
    Ok(out)
}

/// Go's base64 decoder skips `\r` and `\n`, so Kubernetes accepts Secret
/// `data` values broken over lines (as YAML block scalars produce them);
/// they are stored without the breaks.
fn without_line_breaks_in_data(mut value: Value) -> Value {
    if let Some(data) = value.get_mut("data").and_then(Value::as_object_mut) {
        for entry in data.values_mut() {
            if let Some(text) = entry.as_str().filter(|t| t.contains(['\r', '\n'])) {
                *entry = Value::String(text.replace(['\r', '\n'], ""));
            }
        }
    }
    value
}

/// Whether writes to the main resource leave `status` alone.
pub fn has_status_subresource(resource: &ResourceInfo) -> bool {
    resource.subresource("status").is_some()
}

/// Whether spec changes bump `metadata.generation`.
fn tracks_generation(resource: &ResourceInfo) -> bool {
    resource.kind == "Pod"
}

fn with_typed_pod(object: &mut Value, change: impl FnOnce(&mut Pod)) -> Result<(), String> {
    let mut pod: Pod = serde_json::from_value(object.take()).map_err(|e| e.to_string())?;
    change(&mut pod);
    *object = serde_json::to_value(pod).map_err(|e| e.to_string())?;
    Ok(())
}

/// Defaults and resets applied to a new object (after metadata is filled in).
pub fn prepare_for_create(resource: &ResourceInfo, object: &mut Value) -> Result<(), String> {
    if tracks_generation(resource) {
        object["metadata"]["generation"] = json!(1);
    }
    match resource.kind {
        "Pod" => {
            // Clients do not set pod status; the node does.
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
            with_typed_pod(object, pod::apply_defaults)?;
        }
        "Namespace" => {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        "Service" => default_service(object),
        "RoleBinding" | "ClusterRoleBinding" => skiff_api::rbac::validation::default_subjects(object),
        "Secret" => {
            merge_string_data(object);
            if object["type"].as_str().is_none_or(str::is_empty) {
                object["type"] = json!("Opaque");
            }
        }
        _ => {}
    }
    Ok(())
}

fn default_service(object: &mut Value) {
    let spec = &mut object["spec"];
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    if let Some(ports) = spec["ports"].as_array_mut() {
        for port in ports {
            if port["protocol"].is_null() {
                port["protocol"] = json!("TCP");
            }
            if port["targetPort"].is_null() {
                port["targetPort"] = port["port"].clone();
            }
        }
    }
    if object["status"].is_null() {
        object["status"] = json!({"loadBalancer": {}});
    }
}

/// `stringData` is write-only: merged into `data` (base64) on every write.
fn merge_string_data(object: &mut Value) {
    use base64::Engine;
    let Some(string_data) = object.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return;
    };
    let Some(entries) = string_data.as_object() else {
        return;
    };
    if !object["data"].is_object() {
        object["data"] = json!({});
    }
    for (key, value) in entries {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(value.as_str().unwrap_or_default());
        object["data"][key] = json!(encoded);
    }
}

fn pod_spec(object: &Value) -> Result<skiff_api::k8s_openapi::api::core::v1::PodSpec, String> {
    serde_json::from_value(object["spec"].clone()).map_err(|e| e.to_string())
}

/// Validation of a new object.
pub fn validate_create(resource: &ResourceInfo, object: &Value) -> Vec<FieldError> {
    let mut errors = object::validate_metadata(resource, object);
    match resource.kind {
        "Pod" => match pod_spec(object) {
            Ok(spec) => {
                errors.extend(pod::validate_spec(&spec));
                errors.extend(pod::ephemeral::validate_on_create(&spec));
            }
            Err(e) => errors.push(FieldError::invalid("spec", "", e)),
        },
        "Event" if resource.group.is_empty() => errors.extend(validate_event(object)),
        "EndpointSlice" => errors.extend(validate_address_type(object)),
        _ => errors.extend(validate_rbac(resource, object)),
    }
    errors.extend(validate_data_size(resource, object));
    errors
}

/// upstream's `MaxSecretSize`, which bounds ConfigMaps too.
const MAX_DATA_BYTES: usize = 1024 * 1024;

/// ConfigMap and Secret data is at most 1 MiB (values, decoded), as upstream
/// validates it (`ValidateConfigMap`, `ValidateSecret`).
fn validate_data_size(resource: &ResourceInfo, object: &Value) -> Vec<FieldError> {
    use base64::Engine;
    let decoded_len = |value: &Value| {
        let text = value.as_str().unwrap_or("");
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_or(text.len(), |bytes| bytes.len())
    };
    let values = |field: &str| {
        object[field]
            .as_object()
            .into_iter()
            .flat_map(|map| map.values())
    };
    let (total, field) = match resource.kind {
        "ConfigMap" => (
            values("data").map(|v| v.as_str().map_or(0, str::len)).sum::<usize>()
                + values("binaryData").map(decoded_len).sum::<usize>(),
            "[]",
        ),
        "Secret" => (values("data").map(decoded_len).sum(), "data"),
        _ => return Vec::new(),
    };
    if total > MAX_DATA_BYTES {
        vec![FieldError::too_long(field, MAX_DATA_BYTES)]
    } else {
        Vec::new()
    }
}

fn validate_event(event: &Value) -> Vec<FieldError> {
    let namespace = event["metadata"]["namespace"].as_str().unwrap_or("");
    match event["involvedObject"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() && ns != namespace => {
            vec![FieldError::invalid(
                "involvedObject.namespace",
                ns,
                "does not match event.namespace",
            )]
        }
        _ => Vec::new(),
    }
}

/// Metadata fields a client cannot change after create.
const SYSTEM_METADATA: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
];

/// Builds the object to store from `old` and the client's `new`, for a write
/// to the main resource (`subresource` None) or to `status`/`finalize`.
pub fn prepare_for_update(
    resource: &ResourceInfo,
    subresource: Option<&str>,
    old: &Value,
    new: &mut Value,
) -> Result<(), String> {
    for key in SYSTEM_METADATA {
        match old["metadata"].get(*key) {
            Some(v) => new["metadata"][*key] = v.clone(),
            None => {
                if let Some(meta) = new["metadata"].as_object_mut() {
                    meta.remove(*key);
                }
            }
        }
    }
    match subresource {
        Some("status") => {
            // Only status (and labels/annotations) change through /status.
            let mut merged = old.clone();
            merged["status"] = new["status"].clone();
            for key in ["labels", "annotations"] {
                merged["metadata"][key] = new["metadata"][key].clone();
                if merged["metadata"][key].is_null() {
                    if let Some(meta) = merged["metadata"].as_object_mut() {
                        meta.remove(key);
                    }
                }
            }
            if resource.kind == "Pod" {
                merged["status"]["qosClass"] = old["status"]["qosClass"].clone();
            }
            *new = merged;
        }
        Some("ephemeralcontainers") => {
            // Only the ephemeral containers change through this subresource.
            let mut merged = old.clone();
            merged["spec"]["ephemeralContainers"] = new["spec"]["ephemeralContainers"].clone();
            with_typed_pod(&mut merged, pod::apply_defaults)?;
            *new = merged;
        }
        Some("finalize") => {
            let mut merged = old.clone();
            merged["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
            *new = merged;
        }
        _ => {
            if has_status_subresource(resource) {
                new["status"] = old["status"].clone();
            }
            if resource.kind == "Namespace" {
                new["spec"] = old["spec"].clone();
            }
            if resource.kind == "Pod" {
                with_typed_pod(new, pod::apply_defaults)?;
            }
            if resource.kind == "Secret" {
                merge_string_data(new);
            }
            if resource.kind == "Service" {
                keep_allocated_cluster_ip(old, new);
            }
            if matches!(resource.kind, "RoleBinding" | "ClusterRoleBinding") {
                skiff_api::rbac::validation::default_subjects(new);
            }
            if tracks_generation(resource) && old["spec"] != new["spec"] {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                new["metadata"]["generation"] = json!(generation + 1);
            }
        }
    }
    if let Some(map) = new.as_object_mut() {
        for key in ["status", "spec"] {
            if map.get(key).is_some_and(Value::is_null) {
                map.remove(key);
            }
        }
    }
    Ok(())
}

/// Whether a Service has a cluster IP to keep (every type but ExternalName).
fn needs_cluster_ip(service: &Value) -> bool {
    service["spec"]["type"] != "ExternalName"
}

/// An update that leaves the cluster IP out keeps the allocated one, as
/// upstream's `patchAllocatedValues`.
fn keep_allocated_cluster_ip(old: &Value, new: &mut Value) {
    if !(needs_cluster_ip(old) && needs_cluster_ip(new)) {
        return;
    }
    if new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty) {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if !old["spec"][field].is_null() {
                new["spec"][field] = old["spec"][field].clone();
            }
        }
    }
}

/// A Service's cluster IP may not change once set (unless it becomes or
/// stops being an ExternalName), as upstream validates it.
fn validate_cluster_ip_update(old: &Value, new: &Value) -> Vec<FieldError> {
    if !(needs_cluster_ip(old) && needs_cluster_ip(new)) {
        return Vec::new();
    }
    let primary = |s: &Value| {
        s["spec"]["clusterIPs"][0]
            .as_str()
            .or_else(|| s["spec"]["clusterIP"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    if primary(old).is_empty() || primary(old) == primary(new) {
        return Vec::new();
    }
    let ips = match &new["spec"]["clusterIPs"] {
        Value::Array(ips) => Value::Array(ips.clone()),
        _ => json!([primary(new)]),
    };
    vec![FieldError::invalid("spec.clusterIPs[0]", ips, "may not change once set")]
}

/// An EndpointSlice's `addressType`: required, one of upstream's three.
fn validate_rbac(resource: &ResourceInfo, object: &Value) -> Vec<FieldError> {
    use skiff_api::rbac::validation;
    match resource.kind {
        "Role" => validation::validate_rules(object, true),
        "ClusterRole" => validation::validate_rules(object, false),
        "RoleBinding" => validation::validate_binding(object, false),
        "ClusterRoleBinding" => validation::validate_binding(object, true),
        _ => Vec::new(),
    }
}

fn validate_address_type(slice: &Value) -> Vec<FieldError> {
    const TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
    match slice["addressType"].as_str() {
        None | Some("") => vec![FieldError::required("addressType", "")],
        Some(t) if !TYPES.contains(&t) => vec![FieldError::not_supported("addressType", t, TYPES)],
        Some(_) => Vec::new(),
    }
}

/// Validation of an update.
pub fn validate_update(
    resource: &ResourceInfo,
    subresource: Option<&str>,
    old: &Value,
    new: &Value,
) -> Vec<FieldError> {
    let mut errors = object::validate_metadata(resource, new);
    errors.extend(validate_rbac(resource, new));
    if matches!(resource.kind, "RoleBinding" | "ClusterRoleBinding") {
        errors.extend(skiff_api::rbac::validation::validate_binding_update(old, new));
    }
    if resource.kind == "Service" {
        errors.extend(validate_cluster_ip_update(old, new));
    }
    if resource.kind == "EndpointSlice" {
        errors.extend(validate_address_type(new));
        if old["addressType"] != new["addressType"] {
            errors.push(FieldError::invalid("addressType", new["addressType"].clone(), "field is immutable"));
        }
    }
    if resource.kind == "Pod" && subresource == Some("ephemeralcontainers") {
        if old["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
            return vec![FieldError::forbidden("", "static pods do not support ephemeral containers")];
        }
        match (pod_spec(old), pod_spec(new)) {
            (Ok(old_spec), Ok(new_spec)) => {
                errors.extend(pod::ephemeral::validate_update(&old_spec, &new_spec))
            }
            (_, Err(e)) | (Err(e), _) => errors.push(FieldError::invalid("spec", "", e)),
        }
    } else if resource.kind == "Pod" {
        match (pod_spec(old), pod_spec(new)) {
            (Ok(old_spec), Ok(new_spec)) => {
                errors.extend(pod::validate_spec_update(&old_spec, &new_spec))
            }
            (_, Err(e)) | (Err(e), _) => errors.push(FieldError::invalid("spec", "", e)),
        }
    }
    errors.extend(validate_data_size(resource, new));
    if resource.kind == "Node" {
        let (old_cidr, new_cidr) = (&old["spec"]["podCIDR"], &new["spec"]["podCIDR"]);
        if !old_cidr.is_null() && old_cidr != new_cidr {
            errors.push(FieldError::forbidden(
                "spec.podCIDR",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources;

    #[test]
    fn pod_status_is_reset_on_create_and_kept_on_spec_updates() -> Result<(), String> {
        let pods = resources::core("pods").ok_or("pods")?;
        let mut created = normalize(
            pods,
            json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i:1"}]}, "status": {"phase": "Running"}}),
        )?;
        prepare_for_create(pods, &mut created)?;
        assert_eq!(created["status"]["phase"], "Pending");
        assert_eq!(created["metadata"]["generation"], 1);

        let mut running = created.clone();
        running["status"]["phase"] = json!("Running");
        let mut client = created.clone();
        client["spec"]["containers"][0]["image"] = json!("i:2");
        client["status"]["phase"] = json!("Failed");
        prepare_for_update(pods, None, &running, &mut client)?;
        assert_eq!(
            client["status"]["phase"], "Running",
            "main resource writes keep status"
        );
        assert_eq!(
            client["metadata"]["generation"], 2,
            "spec change bumps generation"
        );

        let mut status_write = running.clone();
        status_write["status"]["phase"] = json!("Succeeded");
        status_write["spec"]["containers"][0]["image"] = json!("ignored");
        prepare_for_update(pods, Some("status"), &running, &mut status_write)?;
        assert_eq!(status_write["status"]["phase"], "Succeeded");
        assert_eq!(
            status_write["spec"]["containers"][0]["image"], "i:1",
            "status writes keep spec"
        );
        Ok(())
    }

    #[test]
    fn unknown_fields_are_dropped_and_wrong_types_refused() -> Result<(), String> {
        let pods = resources::core("pods").ok_or("pods")?;
        let out = normalize(
            pods,
            json!({"metadata": {"name": "p"}, "spec": {"bogus": 1, "containers": []}}),
        )?;
        assert!(out["spec"].get("bogus").is_none());
        let bad = normalize(
            pods,
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "x"}]}]}}),
        );
        assert!(bad.is_err());
        let bad_quantity = normalize(
            pods,
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1x"}}}]}}),
        );
        assert!(bad_quantity.is_err_and(|e| e.starts_with("quantities must match")));
        Ok(())
    }

    #[test]
    fn secrets_merge_string_data() -> Result<(), String> {
        let secrets = resources::core("secrets").ok_or("secrets")?;
        let mut secret = normalize(
            secrets,
            json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
        )?;
        prepare_for_create(secrets, &mut secret)?;
        assert_eq!(secret["data"]["k"], "dg==");
        assert_eq!(secret["type"], "Opaque");
        assert!(secret.get("stringData").is_none());
        Ok(())
    }

    #[test]
    fn secret_data_broken_over_lines_is_accepted_as_go_decodes_it() -> Result<(), String> {
        let secrets = resources::core("secrets").ok_or("secrets")?;
        // "hello world, in a long line" base64-encoded, wrapped as YAML `|` does.
        let secret = normalize(
            secrets,
            json!({"metadata": {"name": "s"}, "data": {"k": "aGVsbG8gd29y\nbGQsIGluIGEg\r\nbG9uZyBsaW5l\n"}}),
        )?;
        assert_eq!(secret["data"]["k"], "aGVsbG8gd29ybGQsIGluIGEgbG9uZyBsaW5l");
        let bad = normalize(secrets, json!({"metadata": {"name": "s"}, "data": {"k": "not base64!"}}));
        assert!(bad.is_err());
        Ok(())
    }
}
