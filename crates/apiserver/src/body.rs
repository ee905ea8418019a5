//! Request bodies: reading them (size-capped), parsing (JSON checked for
//! duplicate keys, YAML, protobuf), checking them against the kind
//! (apiVersion, kind, unknown fields per `fieldValidation`, the typed
//! decode), and upstream's words for what cannot be decoded.

use axum::body::Body;
use bytes::Bytes;
use http::header;
use http::request::Parts;
use serde_json::Value;
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::{events, schema, strict, Status};

use crate::error::{ApiError, Result};
use crate::handlers::JSON;
use crate::request::Query;
use crate::strategy;

/// Upstream's limit on request bodies.
pub(crate) const MAX_BODY: usize = 3 * 1024 * 1024;
/// How unknown and duplicate fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub(crate) fn parse(query: &Query) -> Result<Self> {
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
pub(crate) fn storage_resource(resource: &'static ResourceInfo) -> &'static ResourceInfo {
    if resource.group == "events.k8s.io" {
        resources::core("events").unwrap_or(resource)
    } else {
        resource
    }
}

pub(crate) fn cannot_handle(resource: &ResourceInfo, detail: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: {detail}",
        kind = resource.kind,
        version = resource.version
    ))
}

/// A body the decoder could not even read a kind from, as upstream's
/// `transformDecodeError` words it (with a summary of the data).
pub(crate) fn unrecognized(resource: &ResourceInfo, detail: &str, body: &[u8]) -> ApiError {
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
pub(crate) fn parse_body(
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
                    format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (Skiff decodes protobuf bodies of the kinds it serves; got {kind})"),
                )
                .into(),
                other => cannot_handle(resource, &other.to_string()),
            }),
        other => Err(Status::unsupported_media_type(other).into()),
    }
}

/// Field problems, then decoding into the kind's type: what the apiserver
/// does to an object before any strategy runs.
pub(crate) fn check_object(
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
        let mut unknown = Vec::new();
        if let Some(schema) = schema::for_kind(resource.group, resource.version, resource.kind) {
            unknown = strict::unknown_fields(&object, schema);
            problems.extend(unknown.iter().map(strict::UnknownField::problem));
        }
        if !problems.is_empty() {
            if validation == FieldValidation::Strict {
                // Upstream's message, then what was probably meant.
                let meant: Vec<String> = unknown
                    .iter()
                    .filter_map(|field| field.did_you_mean.as_ref())
                    .map(|meant| format!("{meant:?}"))
                    .collect();
                let hint = if meant.is_empty() {
                    String::new()
                } else {
                    format!("; did you mean {}?", meant.join(", "))
                };
                return Err(cannot_handle(
                    resource,
                    &format!("strict decoding error: {}{hint}", problems.join(", ")),
                ));
            }
            warnings.append(&mut problems);
            warnings.extend(unknown.iter().filter_map(|field| {
                field.hint().map(|hint| format!("{}: {hint}", field.problem()))
            }));
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
pub(crate) async fn decode_object(
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

pub(crate) async fn read_body(body: Body) -> Result<Bytes> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::from(Status::request_entity_too_large(&format!(
            "limit is {MAX_BODY}"
        )))
    })
}

/// What upstream's apply patcher refuses before merging: a body that is not
/// an object, and one whose apiVersion or kind is not the resource's.
pub(crate) fn check_apply_body(resource: &ResourceInfo, body: &Value) -> Result<()> {
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

/// A strategic merge patch whose result is not the kind's type: 422, as
/// upstream's `strategicPatchObject` reports it.
pub(crate) fn patch_not_convertible(patch: &Value, decode_error: &str) -> ApiError {
    let errors = [skiff_api::FieldError::invalid("patch", go_value(patch), go_decode_message(decode_error))];
    Status::invalid("", "", "", &errors).into()
}

/// Go's `%+v` of a decoded JSON value (`map[a:1 b:[x y]]`).
pub(crate) fn go_value(value: &Value) -> String {
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
pub(crate) fn go_decode_message(serde_message: &str) -> String {
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
