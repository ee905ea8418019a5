//! `Status` objects: the body of every failed API call, built here so that
//! kubectl prints exactly what it prints against Kubernetes.

use serde::Serialize;
use serde_json::{json, Value};

use crate::resources::ResourceInfo;

/// The kind of a field error, as `field.ErrorType` upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    NotFound,
}

impl FieldErrorKind {
    fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::NotFound => "FieldValueNotFound",
        }
    }
}

/// One validation failure at a field path, as `field.Error` upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    /// The offending value, already JSON (strings quoted, numbers bare).
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Required,
            value: None,
            detail: detail.into(),
        }
    }
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            value: Some(value.into()),
            detail: detail.into(),
        }
    }
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Duplicate,
            value: Some(value.into()),
            detail: String::new(),
        }
    }
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            field: field.into(),
            kind: FieldErrorKind::NotSupported,
            value: Some(value.into()),
            detail: format!("supported values: {}", list.join(", ")),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            value: None,
            detail: detail.into(),
        }
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::TooLong,
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::NotFound,
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    /// The message without the field path (`field.Error.ErrorBody`).
    pub fn body(&self) -> String {
        let value = self.value.as_ref().map(render_value).unwrap_or_default();
        let head = match self.kind {
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Forbidden => "Forbidden".to_string(),
            FieldErrorKind::TooLong => "Too long".to_string(),
            FieldErrorKind::Invalid => format!("Invalid value: {value}"),
            FieldErrorKind::Duplicate => format!("Duplicate value: {value}"),
            FieldErrorKind::NotSupported => format!("Unsupported value: {value}"),
            FieldErrorKind::NotFound => format!("Not found: {value}"),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        // Go's `%#v` of a []string, as upstream prints such values.
        Value::Array(items) if items.iter().all(Value::is_string) => format!(
            "[]string{{{}}}",
            items.iter().map(|i| format!("{:?}", i.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// A failed call: HTTP code plus the `Status` fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

/// `pods` or `leases.coordination.k8s.io`, as messages name a resource.
fn qualified(resource: &ResourceInfo) -> String {
    resource.qualified()
}

fn details(resource: &ResourceInfo, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": resource.plural});
    if !resource.group.is_empty() {
        d["group"] = json!(resource.group);
    }
    d
}

impl Status {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(resource: &ResourceInfo, name: &str) -> Self {
        Self {
            details: Some(details(resource, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} {name:?} not found", qualified(resource)),
            )
        }
    }

    /// A missing namespace when creating into it.
    pub fn namespace_not_found(namespace: &str) -> Self {
        Self {
            details: Some(json!({"name": namespace, "kind": "namespaces"})),
            ..Self::new(
                404,
                "NotFound",
                format!("namespaces {namespace:?} not found"),
            )
        }
    }

    pub fn already_exists(resource: &ResourceInfo, name: &str) -> Self {
        Self {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", qualified(resource)),
            )
        }
    }

    /// A stale resourceVersion or failed precondition.
    pub fn conflict(resource: &ResourceInfo, name: &str, why: &str) -> Self {
        Self {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: {why}",
                    qualified(resource)
                ),
            )
        }
    }

    pub fn modified(resource: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error; kubectl prints the causes.
    pub fn invalid(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Self {
        let listed = match errors {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let mut details = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        Self {
            details: Some(details),
            ..Self::new(
                422,
                "Invalid",
                format!("{kind} {name:?} is invalid: {listed}"),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `errors.NewRequestEntityTooLargeError`.
    pub fn request_entity_too_large(message: &str) -> Self {
        Self::request_entity_too_large_raw(format!("Request entity too large: {message}"))
    }
    /// A 413 whose message is given whole.
    pub fn request_entity_too_large_raw(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }
    /// `errors.NewTimeoutError` as the request-timeout filter writes it.
    pub fn request_timeout() -> Self {
        Self::new(
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
        )
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(resource: &str, verb: &str) -> Self {
        Self::new(405, "MethodNotAllowed", format!("the server does not allow this method on the requested resource ({verb} {resource})"))
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"))
    }

    pub fn not_acceptable() -> Self {
        Self::new(406, "NotAcceptable", "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io")
    }

    pub fn path_not_found() -> Self {
        Self {
            details: Some(json!({})),
            ..Self::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            details: Some(json!({"causes": [{"message": message}]})),
            ..Self::new(
                500,
                "InternalError",
                format!("Internal error occurred: {message}"),
            )
        }
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// A successful deletion answered with a Status (deletecollection, eviction).
    pub fn success_json(details: Option<Value>) -> Value {
        let mut v =
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
        if let Some(d) = details {
            v["details"] = d;
        }
        v
    }

    /// The wire form: `{"kind":"Status","apiVersion":"v1",...}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v["code"] = json!(self.code);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;

    #[test]
    fn not_found_reads_like_upstream() {
        let pods = resources::core("pods").map(|r| Status::not_found(r, "nope"));
        let status = pods.map(|s| s.to_json());
        assert_eq!(
            status,
            Some(
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"pods \"nope\" not found","reason":"NotFound",
                "details":{"name":"nope","kind":"pods"},"code":404})
            )
        );
    }

    #[test]
    fn invalid_lists_causes() {
        let one = Status::invalid(
            "Pod",
            "",
            "bad",
            &[FieldError::required("spec.containers[0].image", "")],
        );
        assert_eq!(
            one.message,
            "Pod \"bad\" is invalid: spec.containers[0].image: Required value"
        );
        let two = Status::invalid(
            "Pod",
            "",
            "x",
            &[
                FieldError::required("spec.initContainers[0].image", ""),
                FieldError::not_supported(
                    "spec.restartPolicy",
                    "Sometimes",
                    &["Always", "OnFailure", "Never"],
                ),
            ],
        );
        assert_eq!(
            two.message,
            "Pod \"x\" is invalid: [spec.initContainers[0].image: Required value, spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"]"
        );
        assert_eq!(
            two.details
                .as_ref()
                .map(|d| d["causes"][1]["reason"].clone()),
            Some(json!("FieldValueNotSupported"))
        );
    }
}
