//! The review kinds, created and answered, never stored:
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview
//! (`can-i --list`), SubjectAccessReview and LocalSubjectAccessReview,
//! SelfSubjectReview (`kubectl auth whoami`) and TokenReview.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use skiff_api::rbac::{Attributes, UserInfo};
use skiff_api::resources::ResourceInfo;
use skiff_api::{FieldError, Status};

use crate::error::{ApiError, Result};
use crate::handlers::AppState;

/// upstream's `resourceAttributes` / `nonResourceAttributes` → attributes.
fn review_attributes(kind: &str, spec: &Value) -> Result<Attributes> {
    let resource = &spec["resourceAttributes"];
    let non_resource = &spec["nonResourceAttributes"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    match (resource.is_object(), non_resource.is_object()) {
        (true, false) => Ok(Attributes::resource(
            &text(&resource["verb"]),
            &text(&resource["group"]),
            &text(&resource["resource"]),
            &text(&resource["namespace"]),
        )
        .with_subresource(&text(&resource["subresource"]))
        .with_name(&text(&resource["name"]))),
        (false, true) => Ok(Attributes::path(&text(&non_resource["verb"]), &text(&non_resource["path"]))),
        (true, true) => Err(Status::invalid(
            kind,
            "authorization.k8s.io",
            "",
            &[FieldError::invalid(
                "spec.nonResourceAttributes",
                non_resource.clone(),
                "cannot be specified in combination with resourceAttributes",
            )],
        )
        .into()),
        (false, false) => Err(Status::invalid(
            kind,
            "authorization.k8s.io",
            "",
            &[FieldError::invalid(
                "spec.resourceAttributes",
                Value::Null,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        )
        .into()),
    }
}

fn answer(kind: &str, group: &str, spec: &Value, status: Value) -> Value {
    json!({
        "kind": kind,
        "apiVersion": format!("{group}/v1"),
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    })
}

fn access_status(state: &AppState, user: &UserInfo, request: &Attributes) -> Value {
    let decision = state.policy.authorize(user, request);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    status
}

/// The user a SubjectAccessReview asks about.
fn subject(spec: &Value) -> UserInfo {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
    };
    let extra: BTreeMap<String, Vec<String>> = spec["extra"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
        .unwrap_or_default();
    UserInfo {
        username: spec["user"].as_str().unwrap_or("").to_string(),
        uid: spec["uid"].as_str().unwrap_or("").to_string(),
        groups: strings(&spec["groups"]),
        extra,
    }
}

fn rules_status(state: &AppState, user: &UserInfo, namespace: &str) -> Value {
    let rules = state.policy.read(|p| p.rules_for(user, namespace));
    let (mut resource_rules, mut non_resource_rules) = (Vec::new(), Vec::new());
    for rule in rules {
        if rule.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
            non_resource_rules.push(json!({"verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls}));
        } else {
            let mut entry = json!({"verbs": rule.verbs, "apiGroups": rule.api_groups, "resources": rule.resources});
            if let Some(names) = rule.resource_names.filter(|n| !n.is_empty()) {
                entry["resourceNames"] = json!(names);
            }
            resource_rules.push(entry);
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
}

/// Answers a create of a review kind: 201 with the review and its status.
pub async fn serve(
    state: &Arc<AppState>,
    user: &UserInfo,
    resource: &'static ResourceInfo,
    namespace: Option<&str>,
    body: &Value,
) -> Result<Value> {
    let spec = &body["spec"];
    let (kind, group) = (resource.kind, resource.group);
    let status = match kind {
        "SelfSubjectAccessReview" => access_status(state, user, &review_attributes(kind, spec)?),
        "SubjectAccessReview" => access_status(state, &subject(spec), &review_attributes(kind, spec)?),
        "LocalSubjectAccessReview" => {
            let attributes = review_attributes(kind, spec)?;
            let asked = spec["resourceAttributes"]["namespace"].as_str().unwrap_or("");
            if Some(asked) != namespace {
                let error = FieldError::invalid(
                    "spec.resourceAttributes.namespace",
                    Value::from(asked),
                    "must match metadata.namespace",
                );
                return Err(Status::invalid(kind, group, "", &[error]).into());
            }
            access_status(state, &subject(spec), &attributes)
        }
        "SelfSubjectRulesReview" => rules_status(state, user, spec["namespace"].as_str().unwrap_or("")),
        "SelfSubjectReview" => {
            return Ok(json!({
                "kind": kind,
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": user.to_json()},
            }))
        }
        "TokenReview" => {
            let token = spec["token"].as_str().unwrap_or("");
            if token.is_empty() {
                let error = FieldError::required("spec.token", "");
                return Err(Status::invalid(kind, group, "", &[error]).into());
            }
            let asked: Vec<&str> = spec["audiences"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let accepted: Vec<&str> = if asked.is_empty() { vec![super::tokens::ISSUER] } else { asked.clone() };
            match state.authenticator.authenticate_token(&state.registry, token, &accepted).await {
                Ok(reviewed) => json!({"authenticated": true, "user": reviewed.to_json(), "audiences": accepted}),
                Err(error) => json!({"authenticated": false, "user": {}, "error": error}),
            }
        }
        other => return Err(Status::internal(format!("{other} is not a review kind")).into()),
    };
    Ok(answer(kind, group, spec, status))
}

/// Reviews accept only their own kind (upstream's decoder refuses others).
pub fn check_kind(resource: &ResourceInfo, body: &Value) -> Result<()> {
    match body["kind"].as_str() {
        Some(kind) if kind != resource.kind => Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {})",
            resource.kind
        ))),
        _ => Ok(()),
    }
}
