//! Who a request comes from and whether they may make it.
//!
//! Authentication as upstream's union of authenticators: a client
//! certificate the cluster CA signed (CN = user, O = groups), a static
//! bearer token, or a service-account JWT this server signed whose service
//! account (and bound pod) still exist with the UIDs it names. Authorization
//! by RBAC over a watch-fed [`policy::PolicyCache`]; `system:masters` may do
//! anything. Reviews (`auth can-i`, `auth whoami`, TokenReview,
//! SubjectAccessReview) and TokenRequest live beside.

pub mod escalation;
pub mod node;
pub mod node_graph;
pub mod policy;
pub mod reviews;
pub mod token_request;
pub mod tokens;

use http::request::Parts;
use http::header;
use serde_json::{json, Value};
use skiff_api::rbac::{self, Attributes, UserInfo};
use skiff_api::Status;

use crate::error::{ApiError, Result};
use crate::registry::Registry;
use crate::request::{Query, Route, Target, Verb};

pub use tokens::TokenSigner;

/// The identity the TLS layer read off a verified client certificate.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub certificate: Option<UserInfo>,
}

/// The configured ways in.
#[derive(Debug)]
pub struct Authenticator {
    /// Bearer tokens and the user each one is.
    pub static_tokens: Vec<(String, UserInfo)>,
    pub signer: Option<TokenSigner>,
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// The request's user; `Ok(None)` when it brings no credentials, an
    /// error (401) when its credentials are not valid.
    pub async fn authenticate(&self, registry: &Registry, parts: &Parts) -> Result<Option<UserInfo>> {
        if let Some(user) = parts.extensions.get::<Peer>().and_then(|p| p.certificate.clone()) {
            return Ok(Some(user));
        }
        let Some(token) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
        else {
            return Ok(None);
        };
        self.authenticate_token(registry, token, &[tokens::ISSUER])
            .await
            .map(Some)
            .map_err(|why| {
                tracing::debug!(why, "bearer token refused");
                ApiError::from(Status::unauthorized())
            })
    }

    /// A bearer token's user, for requests and TokenReview.
    pub async fn authenticate_token(
        &self,
        registry: &Registry,
        token: &str,
        audiences: &[&str],
    ) -> std::result::Result<UserInfo, String> {
        if let Some((_, user)) = self
            .static_tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
        {
            return Ok(user.clone());
        }
        let signer = self.signer.as_ref().ok_or("invalid bearer token")?;
        let claims = signer.verify(token).ok_or("invalid bearer token")?;
        let now = registry.now().as_second();
        tokens::check(&claims, now, audiences).map_err(str::to_string)?;
        service_account_user(registry, &claims).await
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// matched without regard to case, as upstream's bearer authenticator does
/// (the Python client's in-cluster loader sends `bearer`).
pub(crate) fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// upstream's service-account token validator: the account, and the pod a
/// token is bound to, must still exist with the UIDs the token names.
async fn service_account_user(registry: &Registry, claims: &Value) -> std::result::Result<UserInfo, String> {
    let private = &claims["kubernetes.io"];
    let namespace = private["namespace"].as_str().ok_or("token names no namespace")?;
    let name = private["serviceaccount"]["name"].as_str().ok_or("token names no service account")?;
    let uid = private["serviceaccount"]["uid"].as_str().unwrap_or("");
    let accounts = ApiError::served("", "v1", "serviceaccounts").map_err(|e| e.to_string())?;
    let account = registry
        .get(accounts, Some(namespace), name)
        .await
        .map_err(|_| format!("service account {namespace}/{name} has been deleted"))?;
    if account["metadata"]["uid"] != uid {
        return Err(format!("service account UID ({uid}) does not match claim"));
    }
    let mut user = UserInfo::service_account(namespace, name, uid);
    if let Some(pod_name) = private["pod"]["name"].as_str() {
        let pod_uid = private["pod"]["uid"].as_str().unwrap_or("");
        let pods = ApiError::served("", "v1", "pods").map_err(|e| e.to_string())?;
        let pod = registry
            .get(pods, Some(namespace), pod_name)
            .await
            .map_err(|_| format!("pod {namespace}/{pod_name} has been deleted"))?;
        if pod["metadata"]["uid"] != pod_uid {
            return Err(format!("pod UID ({pod_uid}) does not match claim"));
        }
        user.extra.insert("authentication.kubernetes.io/pod-name".into(), vec![pod_name.to_string()]);
        user.extra.insert("authentication.kubernetes.io/pod-uid".into(), vec![pod_uid.to_string()]);
    }
    if let Some(node) = private["node"]["name"].as_str() {
        user.extra.insert("authentication.kubernetes.io/node-name".into(), vec![node.to_string()]);
    }
    if let Some(id) = claims["jti"].as_str() {
        user.extra.insert("authentication.kubernetes.io/credential-id".into(), vec![format!("JTI={id}")]);
    }
    Ok(user)
}

/// upstream's `RequestInfo` verb of a resource request.
fn resource_verb(verb: Verb, target: &Target, method: &http::Method) -> &'static str {
    match (verb, target.subresource.as_deref()) {
        (Verb::Connect, Some("log")) => "get",
        // Exec, attach and port-forward need `create` over WebSocket and
        // SPDY alike (upstream 1.31's websocket upgrade check).
        (Verb::Connect, _) => "create",
        _ if *method == http::Method::HEAD => "get",
        (other, _) => other.as_str(),
    }
}

/// A list or watch narrowed to one name by `metadata.name=` authorizes as
/// that name, as upstream's RequestInfo does.
fn selected_name(query: &Query) -> String {
    query
        .get("fieldSelector")
        .and_then(|s| s.strip_prefix("metadata.name="))
        .filter(|name| !name.contains(','))
        .unwrap_or("")
        .to_string()
}

/// What a request asks for, in authorizer terms.
pub fn attributes(route: &Route, verb: Option<Verb>, method: &http::Method, path: &str, query: &Query) -> Attributes {
    match (route, verb) {
        (Route::Resource(target), Some(verb)) => {
            let name = match verb {
                Verb::List | Verb::Watch => selected_name(query),
                _ => target.name.clone().unwrap_or_default(),
            };
            Attributes::resource(
                resource_verb(verb, target, method),
                target.resource.group,
                target.resource.plural,
                target.namespace.as_deref().unwrap_or(""),
            )
            .with_subresource(target.subresource.as_deref().unwrap_or(""))
            .with_name(&name)
        }
        _ => Attributes::path(&method.as_str().to_lowercase(), path),
    }
}

/// The authorizer chain, as kube-apiserver's `--authorization-mode=Node,RBAC`:
/// a 403 unless one of them allows.
pub async fn authorize(state: &crate::handlers::AppState, user: &UserInfo, request: &Attributes) -> Result<()> {
    if state.policy.authorize(user, request).allowed {
        return Ok(());
    }
    match node::node_name(user) {
        Some(node) if node::allows(&state.registry, &state.node_graph, node, request).await? => Ok(()),
        Some(node) => Err(forbidden(user, request, &node::refusal(node))),
        None => Err(forbidden(user, request, "")),
    }
}

/// upstream's 403: `pods "web" is forbidden: User "..." cannot ...`.
pub fn forbidden(user: &UserInfo, request: &Attributes, extra: &str) -> ApiError {
    let mut reason = rbac::forbidden_message(user, request);
    if !extra.is_empty() {
        reason = format!("{reason}: {extra}");
    }
    forbidden_status(request, &reason)
}

/// A 403 Status about the request's object with `reason` after `is forbidden: `.
pub fn forbidden_status(request: &Attributes, reason: &str) -> ApiError {
    let (message, details) = match &request.target {
        rbac::Target::Path(_) => (format!("forbidden: {reason}"), json!({})),
        rbac::Target::Resource { group, resource, name, .. } => {
            let qualified = if group.is_empty() { resource.clone() } else { format!("{resource}.{group}") };
            let mut details = json!({"kind": resource});
            if !group.is_empty() {
                details["group"] = json!(group);
            }
            if name.is_empty() {
                (format!("{qualified} is forbidden: {reason}"), details)
            } else {
                details["name"] = json!(name);
                (format!("{qualified} {name:?} is forbidden: {reason}"), details)
            }
        }
    };
    let mut status = Status::new(403, "Forbidden", message);
    status.details = Some(details);
    status.into()
}
