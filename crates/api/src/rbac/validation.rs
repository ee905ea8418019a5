//! upstream's RBAC validation (pkg/apis/rbac/validation): rules, role
//! references and subjects, with upstream's field paths and texts.

use serde_json::Value;

use crate::FieldError;

use super::GROUP;

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `ValidatePolicyRule` for every rule of a Role (`namespaced`) or ClusterRole.
pub fn validate_rules(object: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let aggregated = object["aggregationRule"].is_object();
    for (i, rule) in object["rules"].as_array().into_iter().flatten().enumerate() {
        let path = format!("rules[{i}]");
        if strings(&rule["verbs"]).is_empty() {
            errors.push(FieldError::required(format!("{path}.verbs"), "verbs must contain at least one value"));
        }
        let urls = strings(&rule["nonResourceURLs"]);
        if !urls.is_empty() {
            if namespaced {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    Value::from(format!("{urls:?}").replace(", ", " ")),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !strings(&rule["apiGroups"]).is_empty() || !strings(&rule["resources"]).is_empty() {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    Value::from(format!("{urls:?}").replace(", ", " ")),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if rule["apiGroups"].as_array().is_none_or(Vec::is_empty) {
            errors.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if strings(&rule["resources"]).is_empty() {
            errors.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    if aggregated && namespaced {
        errors.push(FieldError::forbidden("aggregationRule", "only ClusterRoles may aggregate"));
    }
    errors
}

/// `ValidateRoleBinding` / `ValidateClusterRoleBinding`.
pub fn validate_binding(object: &Value, cluster: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let role_ref = &object["roleRef"];
    let api_group = role_ref["apiGroup"].as_str().unwrap_or("");
    if api_group != GROUP {
        errors.push(FieldError::not_supported("roleRef.apiGroup", Value::from(api_group), &[GROUP]));
    }
    let kind = role_ref["kind"].as_str().unwrap_or("");
    let kinds: &[&str] = if cluster { &["ClusterRole"] } else { &["Role", "ClusterRole"] };
    if !kinds.contains(&kind) {
        errors.push(FieldError::not_supported("roleRef.kind", Value::from(kind), kinds));
    }
    if role_ref["name"].as_str().unwrap_or("").is_empty() {
        errors.push(FieldError::required("roleRef.name", ""));
    }
    for (i, subject) in object["subjects"].as_array().into_iter().flatten().enumerate() {
        let path = format!("subjects[{i}]");
        let name = subject["name"].as_str().unwrap_or("");
        if name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        }
        let group = subject["apiGroup"].as_str().unwrap_or("");
        match subject["kind"].as_str().unwrap_or("") {
            "ServiceAccount" => {
                if !group.is_empty() {
                    errors.push(FieldError::not_supported(format!("{path}.apiGroup"), Value::from(group), &[""]));
                }
                if cluster && subject["namespace"].as_str().unwrap_or("").is_empty() {
                    errors.push(FieldError::required(format!("{path}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if group != GROUP {
                    errors.push(FieldError::not_supported(format!("{path}.apiGroup"), Value::from(group), &[GROUP]));
                }
            }
            other => errors.push(FieldError::not_supported(
                format!("{path}.kind"),
                Value::from(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errors
}

/// A binding's `roleRef` may not change (delete and recreate instead).
pub fn validate_binding_update(old: &Value, new: &Value) -> Vec<FieldError> {
    if old["roleRef"] == new["roleRef"] {
        return Vec::new();
    }
    vec![FieldError::invalid("roleRef", new["roleRef"].clone(), "cannot change roleRef")]
}

/// upstream's defaulting: a binding subject's `apiGroup` follows its kind.
pub fn default_subjects(object: &mut Value) {
    for subject in object["subjects"].as_array_mut().into_iter().flatten() {
        if subject.get("apiGroup").is_some() {
            continue;
        }
        match subject["kind"].as_str() {
            Some("User" | "Group") => subject["apiGroup"] = Value::from(GROUP),
            Some("ServiceAccount") => subject["apiGroup"] = Value::from(""),
            _ => {}
        }
    }
}
