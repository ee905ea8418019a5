//! `serviceaccounts/<name>/token` (TokenRequest), as upstream's
//! `TokenREST`: audiences (default: the API server's), `expirationSeconds`
//! (default 3600, at least 600), and an optional bound object (a Pod or a
//! Node, checked to exist with the UID given) whose deletion ends the
//! token.

use serde_json::{json, Value};
use skiff_api::{FieldError, Status};

use super::tokens::{self, Binding, TokenSigner, DEFAULT_EXPIRATION_SECONDS, MIN_EXPIRATION_SECONDS};
use crate::error::{ApiError, Result};
use crate::registry::Registry;
use crate::strategy::format_time;

fn invalid(name: &str, errors: &[FieldError]) -> ApiError {
    Status::invalid("TokenRequest", "authentication.k8s.io", name, errors).into()
}

/// Issues a token for `namespace/name` as `request` (a TokenRequest) asks.
pub async fn issue(
    registry: &Registry,
    signer: &TokenSigner,
    namespace: &str,
    name: &str,
    request: &Value,
) -> Result<Value> {
    let spec = &request["spec"];
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(name, &[FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration less than 10 minutes",
        )]));
    }
    if expiration > 1 << 32 {
        return Err(invalid(name, &[FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration larger than 2^32 seconds",
        )]));
    }
    let mut audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if audiences.is_empty() {
        audiences.push(tokens::ISSUER.to_string());
    }
    let accounts = ApiError::served("", "v1", "serviceaccounts")?;
    let account = registry.get(accounts, Some(namespace), name).await?;
    let account_uid = account["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let mut binding = Binding::default();
    let bound = &spec["boundObjectRef"];
    if bound.is_object() {
        let kind = bound["kind"].as_str().unwrap_or("");
        let (plural, object_namespace) = match kind {
            "Pod" => ("pods", Some(namespace)),
            "Node" => ("nodes", None),
            other => {
                return Err(invalid(name, &[FieldError::not_supported(
                    "spec.boundObjectRef.kind",
                    Value::from(other),
                    &["Pod", "Node"],
                )]))
            }
        };
        let bound_name = bound["name"].as_str().unwrap_or("");
        let object = registry.get(ApiError::served("", "v1", plural)?, object_namespace, bound_name).await?;
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if let Some(wanted) = bound["uid"].as_str().filter(|u| !u.is_empty()) {
            if wanted != uid {
                return Err(Status::new(409, "Conflict", format!(
                    "the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"
                ))
                .into());
            }
        }
        if kind == "Pod" {
            if let Some(node) = object["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                let node_uid = match registry.get(ApiError::served("", "v1", "nodes")?, None, node).await {
                    Ok(node) => node["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                    Err(_) => String::new(),
                };
                binding.node = Some((node.to_string(), node_uid));
            }
            binding.pod = Some((bound_name.to_string(), uid));
        } else {
            binding.node = Some((bound_name.to_string(), uid));
        }
    }
    let now = registry.now();
    let id = uuid::Uuid::new_v4().to_string();
    let claims = tokens::claims(namespace, (name, &account_uid), &binding, &audiences, now.as_second(), expiration, &id);
    let token = signer.sign(&claims).map_err(Status::internal)?;
    let expires = jiff::Timestamp::from_second(now.as_second() + expiration).unwrap_or(now);
    let mut spec = spec.clone();
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(expiration);
    if spec.get("boundObjectRef").is_none() {
        spec["boundObjectRef"] = Value::Null;
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": format_time(now)},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": format_time(expires)},
    }))
}
