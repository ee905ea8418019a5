//! Generic object rules that apply to every kind: metadata validation and
//! `generateName`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::names;
use crate::resources::ResourceInfo;
use crate::status::FieldError;

/// Characters upstream uses for generated name suffixes (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` plus five characters picked by `random` (given any u32).
pub fn generate_name(prefix: &str, mut random: impl FnMut() -> u32) -> String {
    let prefix = &prefix[..prefix.len().min(58)];
    let suffix: String = (0..5)
        .map(|_| NAME_ALPHABET[(random() as usize) % NAME_ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Validates `metadata` of an object of `resource` (name format by kind,
/// labels, annotations).
pub fn validate_metadata(resource: &ResourceInfo, object: &Value) -> Vec<FieldError> {
    let meta = &object["metadata"];
    let mut errors = Vec::new();
    match meta["name"].as_str().filter(|n| !n.is_empty()) {
        None => errors.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => errors.extend(match resource.kind {
            "Namespace" => names::dns1123_label("metadata.name", name),
            "Service" => names::dns1035_label("metadata.name", name),
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => names::path_segment("metadata.name", name),
            _ => names::dns1123_subdomain("metadata.name", name),
        }),
    }
    errors.extend(names::labels(
        "metadata.labels",
        &string_map(&meta["labels"]),
    ));
    errors.extend(names::annotations(
        "metadata.annotations",
        &string_map(&meta["annotations"]),
    ));
    if let Some(labels) = meta["labels"].as_object() {
        for (key, value) in labels {
            if !value.is_string() {
                errors.push(FieldError::invalid(
                    format!("metadata.labels[{key}]"),
                    value.clone(),
                    "must be a string",
                ));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources;

    #[test]
    fn generated_names_use_upstream_alphabet() {
        let mut n = 0;
        let name = generate_name("web-", || {
            n += 1;
            n
        });
        assert_eq!(name, "web-cdfgh");
    }

    #[test]
    fn metadata_names_are_checked_per_kind() {
        let Some(ns) = resources::core("namespaces") else {
            return;
        };
        let errors = validate_metadata(ns, &json!({"metadata": {"name": "a.b"}}));
        assert_eq!(errors.len(), 1);
        let Some(pods) = resources::core("pods") else {
            return;
        };
        assert!(validate_metadata(pods, &json!({"metadata": {"name": "a.b"}})).is_empty());
        let missing = validate_metadata(pods, &json!({"metadata": {}}));
        assert_eq!(
            missing[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }
}
