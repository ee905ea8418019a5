//! HTTP handling: authentication, routing, decoding bodies the way the
//! apiserver does (strict/warn field validation), calling the registry, and
//! encoding answers (JSON, YAML, Table, PartialObjectMetadata, watch streams).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use jiff::Timestamp;
use serde_json::{json, Value};
use skiff_api::rbac::UserInfo;
use skiff_api::resources::ResourceInfo;
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::{patch, schema, Status};
use tokio_util::sync::CancellationToken;

use crate::body::{
    check_apply_body, check_object, decode_object, parse_body, patch_not_convertible, read_body,
    storage_resource, FieldValidation,
};
use crate::connect;
use crate::encode::{encode_watch_event, list_body, present, respond_object, JSON_TABLE};
use crate::discovery;
use crate::error::{status_response, ApiError, Result};
use crate::metrics::Metrics;
use crate::openapi;
use crate::registry::{DeleteOptions, ListParams, Registry};
use crate::request::{self, Output, Query, Route, Target, Verb};
use crate::strategy;
use crate::watch::{self, WatchRequest};

/// Upstream's `--request-timeout` default, for requests that are not watches
/// or streams.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const JSON: &str = "application/json";
const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2";

/// Shared state of the HTTP layer.
pub struct AppState {
    pub registry: Registry,
    pub authenticator: crate::auth::Authenticator,
    /// RBAC as the authorizer sees it.
    pub policy: Arc<crate::auth::policy::PolicyCache>,
    /// What node agents' pods reference, for the Node authorizer.
    pub node_graph: Arc<crate::auth::node_graph::NodeGraph>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    /// The URL clients use (legacy discovery reports it).
    pub server_address: String,
    /// TLS for requests to node agents (logs); `None` if no node is served.
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    /// Earlier scrapes of the nodes' resource metrics (`kubectl top`).
    pub resource_metrics: crate::metrics_api::History,
    /// How agents join; `None`: they cannot.
    pub join: Option<crate::join::JoinConfig>,
}

/// The version this server reports; kubectl's dispatcher picks its binary by `minor`.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": format!("v1.32.0+skiff-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "skiff",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, JSON)], value.to_string()).into_response()
}

/// The one entry point for every request, with a last-resort guard: a panic
/// in a handler is a bug, logged and answered with a 500, and the server
/// goes on serving.
pub async fn handle_guarded(state: State<Arc<AppState>>, request: Request) -> Response {
    use futures::FutureExt;
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    match std::panic::AssertUnwindSafe(handle(state, request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%method, %path, panic = %what, "a request handler panicked");
            status_response(&Status::internal("the request handler failed"))
        }
    }
}

/// Serves one request.
pub async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let route = request::route(parts.uri.path());
    if matches!(route, Route::CaCerts | Route::NodeCredentials) {
        return crate::join::serve(&state, &parts, body, &route).await;
    }
    let query = Query::parse(parts.uri.query());
    let user = match state.authenticator.authenticate(&state.registry, &parts).await {
        Ok(Some(user)) => user,
        // Only the version and health checks are open to anonymous clients.
        Ok(None) if matches!(route, Route::Version | Route::Health(_)) => UserInfo::anonymous(),
        Ok(None) => {
            state.metrics.observe("", "", 401, started.elapsed());
            return status_response(&Status::unauthorized());
        }
        Err(error) => {
            state.metrics.observe("", "", error.code(), started.elapsed());
            return error.into_response();
        }
    };
    let requested_verb = match &route {
        Route::Resource(target) => request::verb(&parts.method, target, &query),
        _ => None,
    };
    let attributes = crate::auth::attributes(&route, requested_verb, &parts.method, parts.uri.path(), &query);
    // A method a resource does not have is answered 405 below, unauthorized.
    let unknown_method = matches!(route, Route::Resource(_)) && requested_verb.is_none();
    if !unknown_method {
        if let Err(error) = crate::auth::authorize(&state, &user, &attributes).await {
            state.metrics.observe("", "", error.code(), started.elapsed());
            return error.into_response();
        }
    }
    let (verb, resource, response) = match route {
        Route::Resource(target) => {
            let resource = target.resource.plural;
            let sub = target.subresource.clone();
            let label = match &sub {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.to_string(),
            };
            match requested_verb {
                Some(verb @ (Verb::Watch | Verb::Connect)) => {
                    let response = serve_resource(&state, &user, &parts, body, target, &query, verb).await;
                    (
                        verb.as_str(),
                        label,
                        response.unwrap_or_else(IntoResponse::into_response),
                    )
                }
                Some(verb) => {
                    // Upstream's request timeout for everything but long-running
                    // requests: a body that never arrives does not hold a task.
                    let serving = serve_resource(&state, &user, &parts, body, target, &query, verb);
                    let response = match tokio::time::timeout(REQUEST_TIMEOUT, serving).await {
                        Ok(response) => response.unwrap_or_else(IntoResponse::into_response),
                        Err(_) => status_response(&Status::request_timeout()),
                    };
                    (verb.as_str(), label, response)
                }
                None => {
                    let status =
                        Status::method_not_allowed(target.resource.plural, parts.method.as_str());
                    ("", label, status_response(&status))
                }
            }
        }
        // Discovery, OpenAPI, health and metrics are read-only paths.
        Route::NotFound => ("", String::new(), status_response(&Status::path_not_found())),
        _ if !matches!(parts.method, http::Method::GET | http::Method::HEAD) => (
            "",
            String::new(),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "405: Method Not Allowed",
            )
                .into_response(),
        ),
        other => (
            "get",
            String::new(),
            serve_other(&state, &parts, other).await,
        ),
    };
    state.metrics.observe(
        verb,
        &resource,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn serve_other(state: &AppState, parts: &Parts, route: Route) -> Response {
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    match route {
        Route::Version => json_response(StatusCode::OK, &version_info()),
        Route::Health(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ok",
        )
            .into_response(),
        Route::Metrics => {
            let store = state.registry.store();
            let size = store.size_bytes().await.unwrap_or(0);
            let revision = store.current_revision().await.unwrap_or(0);
            let text = state.metrics.render(size, revision);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                text,
            )
                .into_response()
        }
        Route::OpenApiIndex => json_response(StatusCode::OK, &openapi::index()),
        Route::OpenApiDocument(path) => match openapi::document(&path) {
            Some(text) => (StatusCode::OK, [(header::CONTENT_TYPE, JSON)], text).into_response(),
            None => status_response(&Status::path_not_found()),
        },
        Route::CoreVersions | Route::Groups => {
            let core = matches!(route, Route::CoreVersions);
            match discovery::aggregated_version(accept) {
                Some(version) => {
                    let content_type = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, content_type)],
                        discovery::aggregated(core, version).to_string(),
                    )
                        .into_response()
                }
                None if core => json_response(
                    StatusCode::OK,
                    &discovery::api_versions(&state.server_address),
                ),
                None => json_response(StatusCode::OK, &discovery::api_group_list()),
            }
        }
        Route::Group(name) => match discovery::group(&name) {
            Some(group) => json_response(StatusCode::OK, &group),
            None => status_response(&Status::path_not_found()),
        },
        Route::ResourceList { group, version } => {
            match discovery::resource_list(&group, &version) {
                Some(list) => json_response(StatusCode::OK, &list),
                None => status_response(&Status::path_not_found()),
            }
        }
        Route::OpenApiV2 if accept.is_some_and(|a| a.contains(OPENAPI_V2_PROTOBUF)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                format!("{OPENAPI_V2_PROTOBUF}.v1.0+protobuf"),
            )],
            skiff_api::schema::openapi_v2_protobuf(),
        )
            .into_response(),
        Route::OpenApiV2 => status_response(&Status::not_acceptable()),
        Route::NotFound | Route::Resource(_) | Route::CaCerts | Route::NodeCredentials => {
            status_response(&Status::path_not_found())
        }
    }
}

/// `dryRun`: only `All` is a valid value (`ValidateDryRun`); the options
/// kind (`CreateOptions`, ...) names what was invalid, as upstream does.
fn dry_run(query: &Query, options_kind: &str) -> Result<bool> {
    let values: Vec<&str> = query.all("dryRun").collect();
    if values.iter().all(|v| *v == "All") {
        return Ok(!values.is_empty());
    }
    let listed: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    let error = skiff_api::FieldError::not_supported("dryRun", Value::Null, &["All"]);
    let mut status = Status::invalid(options_kind, "meta.k8s.io", "", &[error]);
    status.message = format!(
        "{options_kind}.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{{{}}}: supported values: \"All\"",
        listed.join(", ")
    );
    Err(status.into())
}

/// The options kind whose `dryRun` a verb reads.
fn options_kind(verb: Verb) -> &'static str {
    match verb {
        Verb::Create => "CreateOptions",
        Verb::Update => "UpdateOptions",
        Verb::Patch => "PatchOptions",
        _ => "DeleteOptions",
    }
}

fn list_params(query: &Query, resource: &'static ResourceInfo) -> Result<ListParams> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or(""),
        storage_resource(resource),
    )
    .map_err(ApiError::bad_request)?;
    let limit = query
        .number("limit")
        .map_err(ApiError::bad_request)?
        .and_then(|l| usize::try_from(l).ok());
    let continue_token = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Ok(ListParams {
        labels,
        fields,
        limit,
        continue_token,
    })
}

fn delete_options(query: &Query, body: &[u8]) -> Result<DeleteOptions> {
    let mut options = DeleteOptions {
        grace_period_seconds: query
            .number("gracePeriodSeconds")
            .map_err(ApiError::bad_request)?,
        dry_run: dry_run(query, "DeleteOptions")?,
        ..Default::default()
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let parsed: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions: {e}"
            ))
        })?;
        apply_delete_body(&mut options, &parsed)?;
    }
    Ok(options)
}

fn apply_delete_body(options: &mut DeleteOptions, body: &Value) -> Result<()> {
    if let Some(grace) = body["gracePeriodSeconds"].as_i64() {
        options.grace_period_seconds = Some(grace);
    }
    if let Some(uid) = body["preconditions"]["uid"].as_str() {
        options.precondition_uid = Some(uid.to_string());
    }
    if let Some(rv) = body["preconditions"]["resourceVersion"].as_str() {
        options.precondition_resource_version = Some(rv.to_string());
    }
    if let Some(values) = body["dryRun"].as_array() {
        let values: Vec<(String, String)> = values
            .iter()
            .map(|v| ("dryRun".to_string(), v.as_str().unwrap_or("").to_string()))
            .collect();
        options.dry_run |= dry_run(&Query(values), "DeleteOptions")?;
    }
    Ok(())
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {}", serde_json::Value::String(warning.clone()));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("Warning", value);
        }
    }
    response
}

async fn serve_resource(
    state: &Arc<AppState>,
    user: &UserInfo,
    parts: &Parts,
    body: Body,
    target: Target,
    query: &Query,
    verb: Verb,
) -> Result<Response> {
    if target.resource.namespaced
        && target.namespace.is_none()
        && !matches!(verb, Verb::List | Verb::Watch)
    {
        return Err(ApiError::from(Status::path_not_found()));
    }
    if target.name.as_deref() == Some("") {
        // upstream's namer: `errEmptyName`
        return Err(ApiError::bad_request("name must be provided"));
    }
    let resource = target.resource;
    if target.subresource.is_none() && verb != Verb::Connect && !resource.allows(verb.as_str()) {
        let status = match resource.read_only_reason() {
            Some(reason) => Status::new(
                405,
                "MethodNotAllowed",
                format!("the server does not allow this method on the requested resource: {reason}"),
            ),
            None => Status::method_not_allowed(&resource.qualified(), verb.as_str()),
        };
        return Err(status.into());
    }
    if resource.group == "metrics.k8s.io" {
        let params = list_params(query, resource)?;
        return crate::metrics_api::serve(state, resource, &target, params, verb).await;
    }
    if !resource.is_stored() {
        let bytes = read_body(body).await?;
        let (review, _) = parse_body(parts, &bytes, resource)?;
        crate::auth::reviews::check_kind(resource, &review)?;
        let answer = crate::auth::reviews::serve(state, user, resource, target.namespace.as_deref(), &review).await?;
        return Ok(json_response(StatusCode::CREATED, &answer));
    }
    let storage = storage_resource(resource);
    let registry = &state.registry;
    let ns = target.namespace.as_deref();
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let output = request::output(accept, query);
    let now = registry.now();
    let dry_run = match verb {
        Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection => {
            dry_run(query, options_kind(verb))?
        }
        _ => false,
    };
    let name = target.name.as_deref().unwrap_or("");
    let sub = target.subresource.as_deref();
    let response = match verb {
        Verb::Get => respond_object(
            StatusCode::OK,
            resource,
            output,
            registry.get(storage, ns, name).await?,
            now,
        )?,
        Verb::List => {
            let list = registry
                .list_stored(storage, ns, &list_params(query, resource)?)
                .await?;
            let (content_type, text) = list_body(
                resource,
                output,
                list.items.iter().map(crate::registry::decode),
                list.revision,
                list.continue_token.as_deref(),
                now,
            )?;
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response()
        }
        Verb::Watch => serve_watch(state, resource, ns, query, output).await?,
        Verb::Create if sub == Some("binding") => {
            let bytes = read_body(body).await?;
            let (binding, _) = parse_body(parts, &bytes, resource)?;
            let node = binding["target"]["name"].as_str().unwrap_or("");
            if node.is_empty() {
                let errors = [skiff_api::FieldError::required("target.name", "")];
                return Err(Status::invalid("Binding", "", name, &errors).into());
            }
            crate::binding::bind(registry, ns.unwrap_or("default"), name, node, dry_run).await?;
            json_response(StatusCode::CREATED, &created_status())
        }
        Verb::Create if sub == Some("eviction") => {
            crate::admission::restrict_node(registry, user, "create", resource, ns, name, sub, None).await?;
            let bytes = read_body(body).await?;
            let (eviction, _) = parse_body(parts, &bytes, resource)?;
            let mut options = delete_options(query, b"")?;
            apply_delete_body(&mut options, &eviction["deleteOptions"])?;
            registry.delete(storage, ns, name, &options).await?;
            json_response(StatusCode::CREATED, &created_status())
        }
        Verb::Create if sub == Some("token") => {
            let bytes = read_body(body).await?;
            let (request, _) = parse_body(parts, &bytes, resource)?;
            let signer = state.authenticator.signer.as_ref().ok_or_else(|| {
                ApiError::from(Status::service_unavailable("this server has no service-account signing key"))
            })?;
            let issued = crate::auth::token_request::issue(registry, signer, ns.unwrap_or("default"), name, &request).await?;
            json_response(StatusCode::CREATED, &issued)
        }
        Verb::Create => {
            let (mut object, warnings) = decode_object(parts, body, resource, query).await?;
            crate::auth::escalation::check(state, user, resource, ns, &object)?;
            crate::admission::restrict_node(registry, user, "create", resource, ns, name, sub, Some(&object)).await?;
            if resource.kind == "Pod" && sub.is_none() {
                crate::admission::admit_pod(registry, ns.unwrap_or("default"), &mut object).await?;
            }
            let manager = field_manager(parts, query, "Update");
            let created = registry.create(storage, ns, object, dry_run, Some(&manager)).await?;
            with_warnings(
                respond_object(StatusCode::CREATED, resource, output, created, now)?,
                &warnings,
            )
        }
        Verb::Update => {
            let (object, warnings) = decode_object(parts, body, resource, query).await?;
            crate::auth::escalation::check(state, user, resource, ns, &object)?;
            crate::admission::restrict_node(registry, user, "update", resource, ns, name, sub, Some(&object)).await?;
            let updated = registry
                .update(storage, ns, name, object, sub, dry_run, Some(&field_manager(parts, query, "Update")))
                .await?;
            with_warnings(
                respond_object(StatusCode::OK, resource, output, updated, now)?,
                &warnings,
            )
        }
        Verb::Patch => {
            let bytes = read_body(body).await?;
            serve_patch(state, user, parts, &bytes, &target, query, output, now).await?
        }
        Verb::Delete => {
            crate::admission::restrict_node(registry, user, "delete", resource, ns, name, sub, None).await?;
            let bytes = read_body(body).await?;
            let options = delete_options(query, &bytes)?;
            let deleted = registry.delete(storage, ns, name, &options).await?;
            respond_object(StatusCode::OK, resource, output, deleted, now)?
        }
        Verb::DeleteCollection => {
            let bytes = read_body(body).await?;
            let options = delete_options(query, &bytes)?;
            let mut params = list_params(query, resource)?;
            params.limit = None;
            let list = registry.list(storage, ns, &params).await?;
            let mut deleted = Vec::new();
            for item in list.items {
                let item_ns = item["metadata"]["namespace"].as_str().map(str::to_string);
                let item_name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
                match registry
                    .delete(storage, item_ns.as_deref(), &item_name, &options)
                    .await
                {
                    Ok(object) => deleted.push(object),
                    Err(error) if error.code() == 404 => {}
                    Err(other) => return Err(other),
                }
            }
            let revision = registry.store().current_revision().await?;
            let (content_type, text) = list_body(resource, output, deleted.into_iter().map(Ok), revision, None, now)?;
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response()
        }
        Verb::Connect => {
            connect::serve(
                registry,
                state.kubelet_tls.as_ref(),
                parts,
                ns.unwrap_or("default"),
                name,
                sub.unwrap_or(""),
                query,
            )
            .await?
        }
    };
    Ok(response)
}

#[allow(clippy::too_many_arguments)]
async fn serve_patch(
    state: &Arc<AppState>,
    user: &UserInfo,
    parts: &Parts,
    bytes: &[u8],
    target: &Target,
    query: &Query,
    output: Output,
    now: Timestamp,
) -> Result<Response> {
    let resource = target.resource;
    let storage = storage_resource(resource);
    let ns = target.namespace.as_deref();
    let name = target.name.as_deref().unwrap_or("");
    let sub = target.subresource.as_deref();
    let dry_run = dry_run(query, "PatchOptions")?;
    let validation = FieldValidation::parse(query)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let (patch_body, duplicates) = parse_body(parts, bytes, resource)?;
    if media == "application/apply-patch+yaml" {
        check_apply_body(resource, &patch_body)?;
    }
    let object_schema = schema::for_kind(resource.group, resource.version, resource.kind);
    let mut manager = field_manager(parts, query, "Update");
    let applying = media == "application/apply-patch+yaml";
    if applying {
        manager.operation = "Apply";
        manager.applied = Some(patch_body.clone());
    }
    let force = query.flag("force");
    if resource.plural == "leases" {
        crate::admission::restrict_node(&state.registry, user, "patch", resource, ns, name, sub, None).await?;
    }
    let node_user = crate::auth::node::node_name(user).filter(|_| resource.plural == "nodes" && resource.group.is_empty() && sub.is_none());
    // Warnings are the same on every retry; keep the last attempt's.
    let collected = std::sync::Mutex::new(Vec::new());
    let apply = |old: &Value| -> Result<Value> {
        let old = present(resource, old.clone());
        let patched = match media.as_str() {
            "application/json-patch+json" => {
                patch::json_patch(&old, &patch_body).map_err(|e| match e {
                    patch::PatchError::TooLarge(message) => {
                        ApiError::from(Status::request_entity_too_large(&message))
                    }
                    other => ApiError::from(Status::new(422, "Invalid", other.to_string())),
                })?
            }
            "application/merge-patch+json" => patch::merge_patch(&old, &patch_body),
            "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
                patch::strategic_merge_patch(&old, &patch_body, object_schema)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            other => return Err(Status::unsupported_media_type(other).into()),
        };
        let mut patched = patched;
        if applying {
            // Server-side apply: conflicts with other managers' fields, and
            // the fields this manager stopped applying go.
            let conflicts = skiff_api::managed::apply(object_schema, &old, &mut patched, &patch_body, &manager.name, force);
            if !conflicts.is_empty() {
                return Err(apply_conflict(&conflicts));
            }
        }
        let mut local = Vec::new();
        let strategic = media != "application/json-patch+json" && media != "application/merge-patch+json";
        let kept = strategic.then(|| patched.clone());
        let checked = match check_object(resource, patched, duplicates.clone(), validation, &mut local) {
            Ok(checked) => checked,
            // Upstream converts a strategic merge result into the typed
            // object and says what could not be converted, of the patch.
            Err(error) => match kept.map(|patched| strategy::normalize(storage, patched)) {
                Some(Err(decode)) => return Err(patch_not_convertible(&patch_body, &decode)),
                _ => return Err(error),
            },
        };
        crate::auth::escalation::check(state, user, resource, ns, &checked)?;
        if let Some(node) = node_user {
            skiff_api::node_restriction::admit_node(node, name, &checked, Some(&old))
                .map_err(|message| crate::admission::refused("nodes", name, &message))?;
        }
        *collected.lock().unwrap_or_else(|p| p.into_inner()) = local;
        Ok(checked)
    };
    let result = state
        .registry
        .patch(storage, ns, name, sub, dry_run, Some(&manager), apply)
        .await;
    let mut warnings = collected.into_inner().unwrap_or_else(|p| p.into_inner());
    let (code, object) = match result {
        Ok(object) => (StatusCode::OK, object),
        Err(error)
            if error.code() == 404 && media == "application/apply-patch+yaml" && sub.is_none() =>
        {
            let mut object = patch_body.clone();
            object["metadata"]["name"] = json!(name);
            let mut object = check_object(
                resource,
                object,
                duplicates.clone(),
                validation,
                &mut warnings,
            )?;
            crate::auth::escalation::check(state, user, resource, ns, &object)?;
            crate::admission::restrict_node(&state.registry, user, "create", resource, ns, name, sub, Some(&object)).await?;
            if resource.kind == "Pod" {
                crate::admission::admit_pod(&state.registry, ns.unwrap_or("default"), &mut object).await?;
            }
            (
                StatusCode::CREATED,
                state.registry.create(storage, ns, object, dry_run, Some(&manager)).await?,
            )
        }
        Err(other) => return Err(other),
    };
    Ok(with_warnings(
        respond_object(code, resource, output, object, now)?,
        &warnings,
    ))
}

async fn serve_watch(
    state: &Arc<AppState>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    query: &Query,
    output: Output,
) -> Result<Response> {
    let params = list_params(query, resource)?;
    let resource_version = match query.get("resourceVersion").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
        ),
    };
    let timeout = match query
        .number("timeoutSeconds")
        .map_err(ApiError::bad_request)?
    {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds.unsigned_abs()),
        // A negative timeout has already passed: upstream's watch ends at once.
        Some(seconds) if seconds < 0 => Duration::ZERO,
        // Upstream picks a random timeout in [30m, 60m) so watches spread out.
        _ => Duration::from_secs(1800 + u64::from(rand::random::<u16>()) % 1800),
    };
    let request = WatchRequest {
        resource: storage_resource(resource),
        namespace: ns.map(str::to_string),
        params,
        resource_version,
        send_initial_events: query.flag("sendInitialEvents"),
        timeout,
        bookmarks: query.flag("allowWatchBookmarks"),
    };
    let events = watch::start(&state.registry, request, state.shutdown.clone()).await?;
    state.metrics.watch_started();
    let guard = WatchGuard(state.clone());
    let registry = state.registry.clone();
    let lines = events.map(move |event| {
        let _keep = &guard;
        let line = encode_watch_event(resource, output, event, registry.now());
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let content_type = match output {
        Output::Table(_) => JSON_TABLE,
        _ => JSON,
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(lines),
    )
        .into_response())
}

/// Decrements the open-watch gauge when the response stream is dropped.
struct WatchGuard(Arc<AppState>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.metrics.watch_ended();
    }
}

/// Upstream's 409 for a server-side apply that would take fields from
/// other managers without `force`.
fn apply_conflict(conflicts: &[skiff_api::managed::Conflict]) -> ApiError {
    let mut status = Status::new(409, "Conflict", skiff_api::managed::conflict_message(conflicts));
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.path}))
        .collect();
    status.details = Some(json!({"causes": causes}));
    status.into()
}

/// The request's field manager: `fieldManager`, else the user agent's
/// product, as upstream names it.
fn field_manager(parts: &Parts, query: &Query, operation: &'static str) -> skiff_api::managed::Manager {
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    skiff_api::managed::Manager::from_request(query.get("fieldManager"), user_agent, operation)
}

/// What a create that makes no object answers (binding, eviction): a
/// success Status with the response code, as upstream's create handler
/// fills it in.
fn created_status() -> serde_json::Value {
    let mut status = Status::success_json(None);
    status["code"] = serde_json::json!(201);
    status
}

