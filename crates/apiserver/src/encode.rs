//! Response bodies: objects in upstream's field order and shape (JSON,
//! YAML, Table, PartialObjectMetadata), lists, and watch events.

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use jiff::Timestamp;
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use skiff_api::{events, table, Status};

use crate::error::Result;
use crate::handlers::JSON;
use crate::request::Output;
use crate::watch::{self, WatchEvent};

pub(crate) fn present(resource: &ResourceInfo, object: Value) -> Value {
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
pub(crate) fn in_upstream_order(object: Value) -> Value {
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

pub(crate) fn encode_object(
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

pub(crate) const JSON_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

pub(crate) fn respond_object(
    code: StatusCode,
    resource: &ResourceInfo,
    output: Output,
    object: Value,
    now: Timestamp,
) -> Result<Response> {
    let (content_type, body) = encode_object(resource, output, object, now)?;
    Ok((code, [(header::CONTENT_TYPE, content_type)], body).into_response())
}

pub(crate) fn strip_type_meta(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        // shift_remove keeps the order of the other fields (remove swaps).
        map.shift_remove("kind");
        map.shift_remove("apiVersion");
    }
    object
}

/// A list's body. Items are decoded and written one at a time, so a list of
/// a thousand pods is never held decoded at once (only as text).
pub(crate) fn list_body<I>(
    resource: &ResourceInfo,
    output: Output,
    items: I,
    revision: u64,
    continue_token: Option<&str>,
    now: Timestamp,
) -> Result<(String, String)>
where
    I: IntoIterator<Item = Result<Value>>,
{
    let rv = revision.to_string();
    let mut metadata = json!({"resourceVersion": rv});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    let items = items.into_iter();
    Ok(match output {
        Output::Table(include) => {
            let head = table::table_head(resource, &rv, continue_token);
            let rows = items.map(|o| o.map(|o| table::row(resource.kind, &o, now, include)));
            (JSON_TABLE.to_string(), splice(head, rows)?)
        }
        Output::Metadata => {
            let head = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": []});
            let items = items.map(|o| o.map(|o| table::partial_object_metadata(&o)));
            (JSON.to_string(), splice(head, items)?)
        }
        Output::Json | Output::Yaml => {
            let head = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": metadata, "items": []});
            let items = items.map(|o| o.map(|o| strip_type_meta(present(resource, o))));
            if output == Output::Yaml {
                let mut list = head;
                list["items"] = Value::Array(items.collect::<Result<_>>()?);
                (
                    "application/yaml".to_string(),
                    serde_yaml::to_string(&list).map_err(|e| Status::internal(e.to_string()))?,
                )
            } else {
                (JSON.to_string(), splice(head, items)?)
            }
        }
    })
}

/// `head` as JSON with `items` in its last field, an empty array, written
/// as they come.
fn splice(head: Value, items: impl Iterator<Item = Result<Value>>) -> Result<String> {
    use std::fmt::Write;
    let mut text = head.to_string();
    if !text.ends_with("[]}") {
        return Err(Status::internal("a list's last field is not an empty array").into());
    }
    text.truncate(text.len() - 2);
    for (i, item) in items.enumerate() {
        if i > 0 {
            text.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(text, "{}", item?);
    }
    text.push_str("]}");
    Ok(text)
}

pub(crate) fn encode_watch_event(
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
