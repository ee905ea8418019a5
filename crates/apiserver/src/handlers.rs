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
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::table;
use skiff_api::{events, patch, schema, strict, Status};
use tokio_util::sync::CancellationToken;

use crate::connect;
use crate::discovery;
use crate::error::{status_response, ApiError, Result};
use crate::metrics::Metrics;
use crate::openapi;
use crate::registry::{DeleteOptions, ListParams, Registry};
use crate::request::{self, Output, Query, Route, Target, Verb};
use crate::strategy;
use crate::watch::{self, WatchEvent, WatchRequest};

/// Upstream's limit on request bodies.
const MAX_BODY: usize = 3 * 1024 * 1024;
/// Upstream's `--request-timeout` default, for requests that are not watches
/// or streams.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const JSON: &str = "application/json";
const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2";

/// Facts about the client's connection, attached by the TLS layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    /// The client presented a certificate that chains to our CA.
    pub client_cert: bool,
}

/// Shared state of the HTTP layer.
pub struct AppState {
    pub registry: Registry,
    pub tokens: Vec<String>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    /// The URL clients use (legacy discovery reports it).
    pub server_address: String,
    /// TLS for requests to node agents (logs); `None` if no node is served.
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
}

impl AppState {
    fn authenticated(&self, parts: &Parts) -> bool {
        if parts
            .extensions
            .get::<Peer>()
            .is_some_and(|p| p.client_cert)
        {
            return true;
        }
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        bearer.is_some_and(|token| {
            self.tokens
                .iter()
                .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

fn json_response(code: StatusCode, value: &Value) -> Response {
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
    if !matches!(route, Route::Version | Route::Health(_)) && !state.authenticated(&parts) {
        state.metrics.observe("", "", 401, started.elapsed());
        return status_response(&Status::unauthorized());
    }
    let query = Query::parse(parts.uri.query());
    let (verb, resource, response) = match route {
        Route::Resource(target) => {
            let resource = target.resource.plural;
            let sub = target.subresource.clone();
            let label = match &sub {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.to_string(),
            };
            match request::verb(&parts.method, &target, &query) {
                Some(verb @ (Verb::Watch | Verb::Connect)) => {
                    let response = serve_resource(&state, &parts, body, target, &query, verb).await;
                    (
                        verb.as_str(),
                        label,
                        response.unwrap_or_else(IntoResponse::into_response),
                    )
                }
                Some(verb) => {
                    // Upstream's request timeout for everything but long-running
                    // requests: a body that never arrives does not hold a task.
                    let serving = serve_resource(&state, &parts, body, target, &query, verb);
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
        Route::NotFound | Route::Resource(_) => status_response(&Status::path_not_found()),
    }
}

/// How unknown and duplicate fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    fn parse(query: &Query) -> Result<Self> {
        match query.get("fieldValidation").unwrap_or("") {
            "" | "Warn" => Ok(Self::Warn),
            "Strict" => Ok(Self::Strict),
            "Ignore" => Ok(Self::Ignore),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}. Supported values are \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// The resource whose storage and rules back `resource` (events.k8s.io
/// events are core events underneath).
fn storage_resource(resource: &'static ResourceInfo) -> &'static ResourceInfo {
    if resource.group == "events.k8s.io" {
        resources::core("events").unwrap_or(resource)
    } else {
        resource
    }
}

fn present(resource: &ResourceInfo, object: Value) -> Value {
    let object = if resource.group == "events.k8s.io" {
        events::to_events_v1(&object)
    } else {
        object
    };
    in_upstream_order(object)
}

/// Top-level fields in the order upstream's encoder writes them: `kind`,
/// `apiVersion`, `metadata`, then the kind's own fields (`spec`, `status`
/// last), whatever order writes left them in.
fn in_upstream_order(object: Value) -> Value {
    let Value::Object(mut map) = object else {
        return object;
    };
    let mut ordered = serde_json::Map::with_capacity(map.len());
    for key in ["kind", "apiVersion", "metadata"] {
        if let Some(value) = map.shift_remove(key) {
            ordered.insert(key.to_string(), value);
        }
    }
    let status = map.shift_remove("status");
    let spec = map.shift_remove("spec");
    ordered.extend(map);
    if let Some(spec) = spec {
        ordered.insert("spec".into(), spec);
    }
    if let Some(status) = status {
        ordered.insert("status".into(), status);
    }
    Value::Object(ordered)
}

fn cannot_handle(resource: &ResourceInfo, detail: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: {detail}",
        kind = resource.kind,
        version = resource.version
    ))
}

/// A body the decoder could not even read a kind from, as upstream's
/// `transformDecodeError` words it (with a summary of the data).
fn unrecognized(resource: &ResourceInfo, detail: &str, body: &[u8]) -> ApiError {
    const MAX: usize = 30;
    let summary = match body.first() {
        None => "<empty>".to_string(),
        Some(b'{') if body.len() > MAX => format!("{} ...", String::from_utf8_lossy(&body[..MAX])),
        Some(b'{') => String::from_utf8_lossy(body).into_owned(),
        Some(_) if body.len() > MAX => format!("{} ...", hex::encode(&body[..MAX])),
        Some(_) => hex::encode(body),
    };
    ApiError::bad_request(format!(
        "the object provided is unrecognized (must be of type {}): {detail} ({summary})",
        resource.kind
    ))
}

/// Parses a body as JSON (checking duplicate keys) or YAML.
fn parse_body(
    parts: &Parts,
    bytes: &[u8],
    resource: &ResourceInfo,
) -> Result<(Value, Vec<String>)> {
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(JSON);
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/yaml" | "application/apply-patch+yaml" => {
            let value: Value = serde_yaml::from_slice(bytes)
                .map_err(|e| cannot_handle(resource, &e.to_string()))?;
            Ok((value, Vec::new()))
        }
        "application/json"
        | "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | ""
        | "*/*" => strict::parse_json_checking_duplicates(bytes)
            .map_err(|e| unrecognized(resource, &format!("couldn't get version/kind; json parse error: {e}"), bytes)),
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(bytes)
            .map(|v| (v, Vec::new()))
            .map_err(|e| match e {
                // Not the generic 415: that one lists protobuf as accepted.
                crate::protobuf::ProtobufError::Unsupported(kind) => Status::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (Skiff decodes protobuf bodies of Namespace, ConfigMap, Secret, Service and ServiceAccount; got {kind})"),
                )
                .into(),
                other => cannot_handle(resource, &other.to_string()),
            }),
        other => Err(Status::unsupported_media_type(other).into()),
    }
}

/// Field problems, then decoding into the kind's type: what the apiserver
/// does to an object before any strategy runs.
fn check_object(
    resource: &'static ResourceInfo,
    mut object: Value,
    mut problems: Vec<String>,
    validation: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<Value> {
    if !object.is_object() {
        return Err(cannot_handle(resource, "the object must be a JSON object"));
    }
    let expected_version = resource.api_version();
    match object["apiVersion"].as_str() {
        Some(v) if !v.is_empty() && v != expected_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_version})"
            )));
        }
        _ => {}
    }
    match object["kind"].as_str() {
        // Upstream's decoder cannot make the expected type of it.
        Some(k) if !k.is_empty() && k != resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind, resource.kind
            )));
        }
        _ => {}
    }
    if validation != FieldValidation::Ignore {
        if let Some(schema) = schema::for_kind(resource.group, resource.version, resource.kind) {
            problems.extend(strict::unknown_fields(&object, schema));
        }
        if !problems.is_empty() {
            if validation == FieldValidation::Strict {
                return Err(cannot_handle(
                    resource,
                    &format!("strict decoding error: {}", problems.join(", ")),
                ));
            }
            warnings.append(&mut problems);
        }
    }
    if resource.group == "events.k8s.io" {
        object = events::to_core(&object);
    }
    let storage = storage_resource(resource);
    strategy::normalize(storage, object).map_err(|e| cannot_handle(resource, &e))
}

/// Reads, parses and checks a create/update body: the object to store and
/// the field warnings for the client.
async fn decode_object(
    parts: &Parts,
    body: Body,
    resource: &'static ResourceInfo,
    query: &Query,
) -> Result<(Value, Vec<String>)> {
    let bytes = read_body(body).await?;
    let (value, problems) = parse_body(parts, &bytes, resource)?;
    let mut warnings = Vec::new();
    let object = check_object(
        resource,
        value,
        problems,
        FieldValidation::parse(query)?,
        &mut warnings,
    )?;
    Ok((object, warnings))
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

fn encode_object(
    resource: &ResourceInfo,
    output: Output,
    object: Value,
    now: Timestamp,
) -> Result<(String, String)> {
    Ok(match output {
        Output::Table(include) => {
            let rv = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (
                JSON_TABLE.to_string(),
                table::table(resource, &[object], &rv, None, now, include).to_string(),
            )
        }
        Output::Metadata => (
            JSON.to_string(),
            table::partial_object_metadata(&object).to_string(),
        ),
        Output::Yaml => (
            "application/yaml".to_string(),
            serde_yaml::to_string(&present(resource, object))
                .map_err(|e| Status::internal(e.to_string()))?,
        ),
        Output::Json => (JSON.to_string(), present(resource, object).to_string()),
    })
}

const JSON_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn respond_object(
    code: StatusCode,
    resource: &ResourceInfo,
    output: Output,
    object: Value,
    now: Timestamp,
) -> Result<Response> {
    let (content_type, body) = encode_object(resource, output, object, now)?;
    Ok((code, [(header::CONTENT_TYPE, content_type)], body).into_response())
}

fn strip_type_meta(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        // shift_remove keeps the order of the other fields (remove swaps).
        map.shift_remove("kind");
        map.shift_remove("apiVersion");
    }
    object
}

fn list_body(
    resource: &ResourceInfo,
    output: Output,
    items: Vec<Value>,
    revision: u64,
    continue_token: Option<&str>,
    now: Timestamp,
) -> Result<(String, String)> {
    let rv = revision.to_string();
    let mut metadata = json!({"resourceVersion": rv});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    Ok(match output {
        Output::Table(include) => (
            JSON_TABLE.to_string(),
            table::table(resource, &items, &rv, continue_token, now, include).to_string(),
        ),
        Output::Metadata => {
            let items: Vec<Value> = items.iter().map(table::partial_object_metadata).collect();
            let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items});
            (JSON.to_string(), list.to_string())
        }
        Output::Json | Output::Yaml => {
            let items: Vec<Value> = items
                .into_iter()
                .map(|o| strip_type_meta(present(resource, o)))
                .collect();
            let list = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": metadata, "items": items});
            if output == Output::Yaml {
                (
                    "application/yaml".to_string(),
                    serde_yaml::to_string(&list).map_err(|e| Status::internal(e.to_string()))?,
                )
            } else {
                (JSON.to_string(), list.to_string())
            }
        }
    })
}

async fn read_body(body: Body) -> Result<Bytes> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::from(Status::request_entity_too_large(&format!(
            "limit is {MAX_BODY}"
        )))
    })
}

async fn serve_resource(
    state: &Arc<AppState>,
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
                .list(storage, ns, &list_params(query, resource)?)
                .await?;
            let (content_type, text) = list_body(
                resource,
                output,
                list.items,
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
            let bytes = read_body(body).await?;
            let (eviction, _) = parse_body(parts, &bytes, resource)?;
            let mut options = delete_options(query, b"")?;
            apply_delete_body(&mut options, &eviction["deleteOptions"])?;
            registry.delete(storage, ns, name, &options).await?;
            json_response(StatusCode::CREATED, &created_status())
        }
        Verb::Create => {
            let (object, warnings) = decode_object(parts, body, resource, query).await?;
            let created = registry.create(storage, ns, object, dry_run).await?;
            with_warnings(
                respond_object(StatusCode::CREATED, resource, output, created, now)?,
                &warnings,
            )
        }
        Verb::Update => {
            let (object, warnings) = decode_object(parts, body, resource, query).await?;
            let updated = registry
                .update(storage, ns, name, object, sub, dry_run)
                .await?;
            with_warnings(
                respond_object(StatusCode::OK, resource, output, updated, now)?,
                &warnings,
            )
        }
        Verb::Patch => {
            let bytes = read_body(body).await?;
            serve_patch(state, parts, &bytes, &target, query, output, now).await?
        }
        Verb::Delete => {
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
            let (content_type, text) = list_body(resource, output, deleted, revision, None, now)?;
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

async fn serve_patch(
    state: &Arc<AppState>,
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
        *collected.lock().unwrap_or_else(|p| p.into_inner()) = local;
        Ok(checked)
    };
    let result = state
        .registry
        .patch(storage, ns, name, sub, dry_run, apply)
        .await;
    let mut warnings = collected.into_inner().unwrap_or_else(|p| p.into_inner());
    let (code, object) = match result {
        Ok(object) => (StatusCode::OK, object),
        Err(error)
            if error.code() == 404 && media == "application/apply-patch+yaml" && sub.is_none() =>
        {
            let mut object = patch_body.clone();
            object["metadata"]["name"] = json!(name);
            let object = check_object(
                resource,
                object,
                duplicates.clone(),
                validation,
                &mut warnings,
            )?;
            (
                StatusCode::CREATED,
                state.registry.create(storage, ns, object, dry_run).await?,
            )
        }
        Err(other) => return Err(other),
    };
    Ok(with_warnings(
        respond_object(code, resource, output, object, now)?,
        &warnings,
    ))
}

/// What upstream's apply patcher refuses before merging: a body that is not
/// an object, and one whose apiVersion or kind is not the resource's.
fn check_apply_body(resource: &ResourceInfo, body: &Value) -> Result<()> {
    let Some(map) = body.as_object() else {
        let go_type = match body {
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "bool",
            _ => "null",
        };
        if body.is_null() {
            return Err(ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{body}'"
            )));
        }
        return Err(ApiError::bad_request(format!(
            "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {go_type} into Go value of type map[string]interface {{}}"
        )));
    };
    if map.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
        return Err(cannot_handle(resource, "metadata must be an object"));
    }
    let version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if version != resource.api_version() {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {}",
            resource.api_version()
        )));
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(kind) if kind == resource.kind => Ok(()),
        Some(kind) if !kind.is_empty() => Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            resource.kind
        ))),
        _ => Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{body}'"
        ))),
    }
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

fn encode_watch_event(
    resource: &ResourceInfo,
    output: Output,
    event: WatchEvent,
    now: Timestamp,
) -> String {
    let kind = event.type_name();
    let object = match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => match output {
            Output::Table(include) => {
                let rv = o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                table::table(resource, &[o], &rv, None, now, include)
            }
            Output::Metadata => table::partial_object_metadata(&o),
            Output::Json | Output::Yaml => present(resource, o),
        },
        WatchEvent::Bookmark(revision, end) => {
            let bookmark = watch::bookmark_object(resource, revision, end);
            match output {
                Output::Table(_) => {
                    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": revision.to_string()},
                           "columnDefinitions": null, "rows": null})
                }
                _ => bookmark,
            }
        }
        WatchEvent::Error(status) => status.to_json(),
    };
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    line
}

/// A strategic merge patch whose result is not the kind's type: 422, as
/// upstream's `strategicPatchObject` reports it.
fn patch_not_convertible(patch: &Value, decode_error: &str) -> ApiError {
    let errors = [skiff_api::FieldError::invalid("patch", go_value(patch), go_decode_message(decode_error))];
    Status::invalid("", "", "", &errors).into()
}

/// Go's `%+v` of a decoded JSON value (`map[a:1 b:[x y]]`).
fn go_value(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let items: Vec<String> = keys.iter().map(|k| format!("{k}:{}", go_value(&map[*k]))).collect();
            format!("map[{}]", items.join(" "))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

/// The unstructured converter's words for a value of the wrong type
/// (`cannot restore map from string`), from serde's.
fn go_decode_message(serde_message: &str) -> String {
    let found = serde_message
        .split("invalid type: ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ',']).next())
        .map(|kind| match kind {
            "integer" => "int64",
            "floating" => "float64",
            "boolean" => "bool",
            "sequence" => "slice",
            "map" => "map",
            other => other,
        });
    let expected = if serde_message.contains("expected a map") || serde_message.contains("expected a struct") {
        Some("map")
    } else if serde_message.contains("expected a sequence") {
        Some("slice")
    } else {
        None
    };
    match (expected, found) {
        (Some(expected), Some(found)) => format!("cannot restore {expected} from {found}"),
        _ => serde_message.to_string(),
    }
}

/// What a create that makes no object answers (binding, eviction): a
/// success Status with the response code, as upstream's create handler
/// fills it in.
fn created_status() -> serde_json::Value {
    let mut status = Status::success_json(None);
    status["code"] = serde_json::json!(201);
    status
}

