//! Agents joining the cluster, in k3s's manner: `/cacerts` serves the
//! cluster CA to anyone (the agent checks it against the hash in its join
//! token before trusting it), and `/v1-skiff/node-credentials`, for holders
//! of the token's secret, issues the node's identity (`system:node:<name>`
//! in `system:nodes`, which the Node authorizer governs) and its serving
//! certificate.

use std::path::PathBuf;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, StatusCode};
use serde_json::{json, Value};
use skiff_api::{FieldError, Status};

use crate::error::status_response;
use crate::handlers::{json_response, AppState};
use crate::request::Route;

/// What the server needs to let agents join.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// The secret part of the join token.
    pub secret: String,
    pub ca_pem: String,
    /// Where the cluster CA's key is.
    pub pki_dir: PathBuf,
}

pub async fn serve(state: &AppState, parts: &Parts, body: Body, route: &Route) -> Response {
    let Some(join) = &state.join else {
        return status_response(&Status::path_not_found());
    };
    match route {
        Route::CaCerts => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], join.ca_pem.clone()).into_response(),
        Route::NodeCredentials => {
            if parts.method != http::Method::POST {
                return status_response(&Status::method_not_allowed("node-credentials", parts.method.as_str()));
            }
            let presented = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::auth::bearer_token)
                .unwrap_or("");
            if !crate::auth::constant_time_eq(presented.as_bytes(), join.secret.as_bytes()) {
                return status_response(&Status::unauthorized());
            }
            match credentials(join, body).await {
                Ok(answer) => json_response(StatusCode::OK, &answer),
                Err(status) => status_response(&status),
            }
        }
        _ => status_response(&Status::path_not_found()),
    }
}

async fn credentials(join: &JoinConfig, body: Body) -> Result<Value, Status> {
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| Status::request_entity_too_large("limit is 64 KiB"))?;
    let request: Value = serde_json::from_slice(&bytes).map_err(|e| Status::bad_request(format!("invalid join request: {e}")))?;
    let node = request["nodeName"].as_str().unwrap_or("");
    let errors = skiff_api::names::dns1123_subdomain("nodeName", node);
    if node.is_empty() || !errors.is_empty() {
        let errors: Vec<FieldError> = if node.is_empty() { vec![FieldError::required("nodeName", "")] } else { errors };
        return Err(Status::invalid("NodeCredentials", "", node, &errors));
    }
    let addresses: Vec<String> = request["addresses"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
    let user = format!("system:node:{node}");
    let (client_cert, client_key) = crate::pki::issue_client_certificate(&join.pki_dir, &user, Some(crate::auth::node::NODES_GROUP))
        .map_err(|e| Status::internal(format!("cannot issue the node's certificate: {e}")))?;
    let (serving_cert, serving_key) = crate::pki::issue_serving_certificate(&join.pki_dir, node, &addresses)
        .map_err(|e| Status::internal(format!("cannot issue the node's serving certificate: {e}")))?;
    tracing::info!(node, "issued node credentials to a joining agent");
    Ok(json!({
        "clientCertificate": client_cert, "clientKey": client_key,
        "servingCertificate": serving_cert, "servingKey": serving_key,
    }))
}
