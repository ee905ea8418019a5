//! What a configMap, secret, downwardAPI or projected volume holds, from
//! its source objects, as upstream's `MakePayload` and `CollectData`
//! compute it (with their error messages). Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIVolumeFile, KeyToPath, Pod,
    ProjectedVolumeSource, Secret, SecretProjection, SecretVolumeSource,
};

use super::atomic::{File, Payload};
use crate::env::{field_value, resource_value, NodeFacts};
use crate::sources::Objects;

/// Volumes' files default to `rw-r--r--`, as the API server defaults `defaultMode`.
pub const DEFAULT_MODE: i32 = 0o644;

fn mode(value: Option<i32>, default: i32) -> u32 {
    u32::try_from(value.unwrap_or(default)).unwrap_or(0o644) & 0o7777
}

/// A ConfigMap's keys: `data` and `binaryData`.
fn config_map_data(config_map: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let strings = config_map
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
    let binary = config_map
        .binary_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()));
    strings.chain(binary).collect()
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// Every key, or the listed `items` (key → path, own mode); a listed key
/// that is missing fails unless optional.
fn make_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    missing_key: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data {
                payload.insert(key.clone(), File { data: value.clone(), mode: mode(None, default_mode) });
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing_key(&item.key));
                };
                payload.insert(item.path.clone(), File { data: value.clone(), mode: mode(item.mode, default_mode) });
            }
        }
    }
    Ok(payload)
}

/// One object's payload, or the source is optional and absent, or the
/// object's `not found` error.
fn object_payload(
    data: Option<BTreeMap<String, Vec<u8>>>,
    not_found: String,
    missing_key: impl Fn(&str) -> String,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    match data {
        None if optional => Ok(Payload::new()),
        None => Err(not_found),
        Some(data) => make_payload(&data, items, default_mode, optional, missing_key),
    }
}

fn config_map_payload(
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    objects: &dyn Objects,
) -> Result<Payload, String> {
    object_payload(
        objects.config_map(name).map(config_map_data),
        format!("configmap {name:?} not found"),
        |key| format!("configmap references non-existent config key: {key}"),
        items,
        default_mode,
        optional,
    )
}

fn secret_payload(
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    objects: &dyn Objects,
) -> Result<Payload, String> {
    object_payload(
        objects.secret(name).map(secret_data),
        format!("secret {name:?} not found"),
        |key| format!("references non-existent secret key: {key}"),
        items,
        default_mode,
        optional,
    )
}

pub fn config_map(source: &ConfigMapVolumeSource, objects: &dyn Objects) -> Result<Payload, String> {
    config_map_payload(
        &source.name,
        source.items.as_ref(),
        source.default_mode.unwrap_or(DEFAULT_MODE),
        source.optional.unwrap_or(false),
        objects,
    )
}

pub fn secret(source: &SecretVolumeSource, objects: &dyn Objects) -> Result<Payload, String> {
    secret_payload(
        source.secret_name.as_deref().unwrap_or_default(),
        source.items.as_ref(),
        source.default_mode.unwrap_or(DEFAULT_MODE),
        source.optional.unwrap_or(false),
        objects,
    )
}

/// Go's `%q` of a string: what the downward API writes for label values.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key="value"` lines, sorted, without a final newline (`FormatMap`).
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A downward API file's content.
fn downward_value(pod: &Pod, file: &DownwardAPIVolumeFile, facts: &NodeFacts) -> Result<Vec<u8>, String> {
    if let Some(field) = &file.field_ref {
        let path = field.field_path.as_str();
        let value = match path {
            "metadata.labels" => Some(format_map(pod.metadata.labels.as_ref())),
            "metadata.annotations" => Some(format_map(pod.metadata.annotations.as_ref())),
            "metadata.name" | "metadata.namespace" | "metadata.uid" => field_value(pod, path, facts),
            _ if path.starts_with("metadata.labels['") || path.starts_with("metadata.annotations['") => {
                field_value(pod, path, facts)
            }
            _ => None,
        };
        return value
            .map(String::into_bytes)
            .ok_or_else(|| format!("unsupported fieldPath: {path}"));
    }
    if let Some(resource) = &file.resource_field_ref {
        let name = resource.container_name.as_deref().unwrap_or_default();
        let container = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == name)
            .ok_or_else(|| format!("container {name} not found in pod"))?;
        let divisor = resource.divisor.as_ref().map(|d| d.0.as_str());
        return resource_value(container, &resource.resource, divisor, facts)
            .map(String::into_bytes)
            .ok_or_else(|| format!("unsupported container resource : {:?}", resource.resource));
    }
    Ok(Vec::new())
}

pub fn downward_api(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    facts: &NodeFacts,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        match downward_value(pod, item, facts) {
            Ok(data) => {
                payload.insert(item.path.clone(), File { data, mode: mode(item.mode, default_mode) });
            }
            Err(error) => errors.push(error),
        }
    }
    aggregate(errors).map(|()| payload)
}

/// Upstream's aggregate error: one message as is, several in brackets.
fn aggregate(errors: Vec<String>) -> Result<(), String> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.into_iter().next().unwrap_or_default()),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

/// The sources of a projected volume in one directory. Sources Skiff does
/// not project yet are refused by [`super::unsupported_projection`] before
/// this runs.
pub fn projected(
    pod: &Pod,
    source: &ProjectedVolumeSource,
    objects: &dyn Objects,
    facts: &NodeFacts,
) -> Result<Payload, String> {
    let default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for projection in source.sources.iter().flatten() {
        let part = if let Some(ConfigMapProjection { name, items, optional }) = &projection.config_map {
            config_map_payload(name, items.as_ref(), default_mode, optional.unwrap_or(false), objects)
        } else if let Some(SecretProjection { name, items, optional }) = &projection.secret {
            secret_payload(name, items.as_ref(), default_mode, optional.unwrap_or(false), objects)
        } else if let Some(downward) = &projection.downward_api {
            downward_api(pod, downward.items.as_deref().unwrap_or_default(), default_mode, facts)
        } else if let Some(token) = &projection.service_account_token {
            let expiration = token.expiration_seconds.unwrap_or(crate::tokens::DEFAULT_EXPIRATION_SECONDS);
            match objects.service_account_token(token.audience.as_deref().unwrap_or(""), expiration) {
                Some(value) => Ok(Payload::from([(
                    token.path.clone(),
                    File { data: value.as_bytes().to_vec(), mode: mode(None, default_mode) },
                )])),
                None => Err(format!("failed to fetch token for path {:?}", token.path)),
            }
        } else {
            Ok(Payload::new())
        };
        match part {
            Ok(part) => payload.extend(part),
            Err(error) => errors.push(error),
        }
    }
    aggregate(errors).map(|()| payload)
}

/// Sets the group-read bits an fsGroup gives a volume's files (upstream's
/// `SetVolumeOwnership` for read-only volumes).
pub fn with_fs_group(mut payload: Payload) -> Payload {
    for file in payload.values_mut() {
        file.mode |= 0o440;
    }
    payload
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;
    use serde_json::json;

    use super::*;

    use crate::sources::Snapshot;

    fn store() -> Snapshot {
        let mut store = Snapshot::default();
        store.config_maps.insert(
            "settings".into(),
            ConfigMap {
                metadata: ObjectMeta { name: Some("settings".into()), ..Default::default() },
                data: Some([("color".to_string(), "blue".to_string()), ("size".into(), "L".into())].into()),
                binary_data: Some([("blob".to_string(), ByteString(vec![0, 255]))].into()),
                ..Default::default()
            },
        );
        store.secrets.insert(
            "creds".into(),
            Secret {
                data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
                ..Default::default()
            },
        );
        store
    }

    fn paths(payload: &Payload) -> Vec<(String, String, u32)> {
        payload
            .iter()
            .map(|(p, f)| (p.clone(), String::from_utf8_lossy(&f.data).into_owned(), f.mode))
            .collect()
    }

    fn source<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn config_map_volumes_follow_make_payload() -> Result<(), serde_json::Error> {
        let store = store();
        type Files<'a> = Vec<(&'a str, &'a str, u32)>;
        let cases: Vec<(serde_json::Value, Result<Files, &str>)> = vec![
            (json!({"name": "settings"}), Ok(vec![("blob", "\0\u{fffd}", 0o644), ("color", "blue", 0o644), ("size", "L", 0o644)])),
            (json!({"name": "settings", "defaultMode": 0o400}), Ok(vec![("blob", "\0\u{fffd}", 0o400), ("color", "blue", 0o400), ("size", "L", 0o400)])),
            (
                json!({"name": "settings", "items": [{"key": "color", "path": "conf/color.txt", "mode": 0o600}, {"key": "size", "path": "size"}]}),
                Ok(vec![("conf/color.txt", "blue", 0o600), ("size", "L", 0o644)]),
            ),
            (json!({"name": "settings", "items": [{"key": "nope", "path": "x"}]}), Err("configmap references non-existent config key: nope")),
            (json!({"name": "settings", "optional": true, "items": [{"key": "nope", "path": "x"}, {"key": "size", "path": "s"}]}), Ok(vec![("s", "L", 0o644)])),
            (json!({"name": "absent"}), Err("configmap \"absent\" not found")),
            (json!({"name": "absent", "optional": true}), Ok(vec![])),
        ];
        for (spec, want) in cases {
            let got = config_map(&source(spec.clone())?, &store);
            let want = want.map(|files| files.into_iter().map(|(p, d, m)| (p.to_string(), d.to_string(), m)).collect::<Vec<_>>()).map_err(str::to_string);
            assert_eq!(got.map(|p| paths(&p)), want, "{spec}");
        }
        Ok(())
    }

    #[test]
    fn secret_volumes_follow_make_payload() -> Result<(), serde_json::Error> {
        let store = store();
        let got = secret(&source(json!({"secretName": "creds"}))?, &store).map(|p| paths(&p));
        assert_eq!(got, Ok(vec![("password".to_string(), "hunter2".to_string(), 0o644)]));
        let missing_key = secret(&source(json!({"secretName": "creds", "items": [{"key": "token", "path": "t"}]}))?, &store);
        assert_eq!(missing_key, Err("references non-existent secret key: token".to_string()));
        let missing = secret(&source(json!({"secretName": "gone"}))?, &store);
        assert_eq!(missing, Err("secret \"gone\" not found".to_string()));
        Ok(())
    }

    #[test]
    fn downward_api_files_format_like_upstream() -> Result<(), serde_json::Error> {
        let pod: Pod = source(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                "labels": {"tier": "front", "app": "web"},
                "annotations": {"note": "say \"hi\"\nbye"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}]}
        }))?;
        let facts = NodeFacts { allocatable_milli_cpu: 2000, allocatable_memory: 1 << 30, ..Default::default() };
        let items: Vec<DownwardAPIVolumeFile> = source(json!([
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}, "mode": 0o600},
            {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
        ]))?;
        let got = downward_api(&pod, &items, DEFAULT_MODE, &facts).map(|p| paths(&p));
        let want: Vec<(String, String, u32)> = [
            ("annotations", "note=\"say \\\"hi\\\"\\nbye\"", 0o600),
            ("cpu", "250", 0o644),
            ("labels", "app=\"web\"\ntier=\"front\"", 0o644),
            ("mem", "64", 0o644),
            ("name", "web", 0o644),
            ("tier", "front", 0o644),
        ]
        .into_iter()
        .map(|(p, d, m)| (p.to_string(), d.to_string(), m))
        .collect();
        assert_eq!(got, Ok(want));
        let bad: Vec<DownwardAPIVolumeFile> = source(json!([{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]))?;
        assert_eq!(downward_api(&pod, &bad, DEFAULT_MODE, &facts), Err("unsupported fieldPath: status.podIP".to_string()));
        Ok(())
    }

    #[test]
    fn projected_volumes_merge_their_sources_and_gather_errors() -> Result<(), serde_json::Error> {
        let store = store();
        let pod: Pod = source(json!({"metadata": {"name": "web"}}))?;
        let facts = NodeFacts::default();
        let ok: ProjectedVolumeSource = source(json!({"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "settings", "items": [{"key": "color", "path": "color"}]}},
            {"secret": {"name": "creds"}},
            {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"configMap": {"name": "absent", "optional": true}},
        ]}))?;
        let got = projected(&pod, &ok, &store, &facts).map(|p| paths(&p));
        let want: Vec<(String, String, u32)> = [("color", "blue"), ("name", "web"), ("password", "hunter2")]
            .into_iter()
            .map(|(p, d)| (p.to_string(), d.to_string(), 0o440))
            .collect();
        assert_eq!(got, Ok(want));
        let bad: ProjectedVolumeSource = source(json!({"sources": [
            {"configMap": {"name": "absent"}}, {"secret": {"name": "gone"}},
        ]}))?;
        assert_eq!(
            projected(&pod, &bad, &store, &facts),
            Err("[configmap \"absent\" not found, secret \"gone\" not found]".to_string())
        );
        Ok(())
    }
}
