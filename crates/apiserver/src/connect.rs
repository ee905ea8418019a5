//! Connect subresources (`log`, `exec`, `attach`, `portforward`): the
//! apiserver's own checks (which container, whether the pod has a node)
//! before the request goes to the pod's node.

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde_json::Value;
use skiff_api::resources;
use skiff_api::Status;

use crate::error::{ApiError, Result};
use crate::registry::Registry;
use crate::request::Query;

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// Upstream's `validateContainer`: the container named, or the only one.
pub fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let containers = names(&pod["spec"]["containers"]);
    let init = names(&pod["spec"]["initContainers"]);
    let ephemeral = names(&pod["spec"]["ephemeralContainers"]);
    match requested.filter(|c| !c.is_empty()) {
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                message.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
        Some(c)
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c) =>
        {
            Ok(c.to_string())
        }
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
    }
}

/// Serves a connect request for pod `namespace/name`.
pub async fn serve(
    registry: &Registry,
    namespace: &str,
    name: &str,
    subresource: &str,
    query: &Query,
) -> Result<Response> {
    let pods = resources::core("pods")
        .ok_or_else(|| ApiError::from(Status::internal("pods are not served")))?;
    let pod = registry.get(pods, Some(namespace), name).await?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    if subresource == "portforward" {
        if node.is_empty() {
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        }
    } else {
        choose_container(&pod, query.get("container"))?;
        if node.is_empty() {
            if subresource == "log" {
                // Upstream answers an empty log for a pod that has no node yet.
                return Ok(
                    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "").into_response()
                );
            }
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        }
    }
    Err(ApiError::from(Status::service_unavailable(format!(
        "no node agent is serving node {node:?} for pod {namespace}/{name}"
    ))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn container_choice_follows_upstream() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let err = choose_container(&pod, None)
            .err()
            .map(|e| e.status().message);
        assert_eq!(err.as_deref(), Some("a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"));
        assert_eq!(choose_container(&pod, Some("i")).ok().as_deref(), Some("i"));
        let bad = choose_container(&pod, Some("nope"))
            .err()
            .map(|e| e.status().message);
        assert_eq!(
            bad.as_deref(),
            Some("container nope is not valid for pod p")
        );
    }
}
