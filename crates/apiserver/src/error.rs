//! The apiserver's error type and its single mapping to `Status` responses.

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use skiff_api::Status;
use skiff_store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A failure already expressed as an upstream `Status` (404, 409, 422, ...).
    #[error("{}", .0.message)]
    Status(Box<Status>),
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("failed to encode {what}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        Self::Status(Box::new(status))
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Status::bad_request(message).into()
    }

    /// A resource the server's own code needs, or a 500 saying it is not
    /// served (`group` "" for core/v1).
    pub fn served(group: &str, version: &str, plural: &str) -> Result<&'static skiff_api::resources::ResourceInfo, ApiError> {
        skiff_api::resources::find(group, version, plural)
            .ok_or_else(|| Status::internal(format!("{plural} are not served")).into())
    }

    /// The HTTP code this error answers with.
    pub fn code(&self) -> u16 {
        match self {
            Self::Status(status) => status.code,
            other => other.status().code,
        }
    }

    /// The `Status` a client sees.
    pub fn status(&self) -> Status {
        match self {
            Self::Status(status) => (**status).clone(),
            Self::Store(StoreError::Compacted {
                requested,
                compacted,
            }) => Status::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            Self::Store(error) => Status::internal(error.to_string()),
            Self::Encode { what, source } => {
                Status::internal(format!("failed to encode {what}: {source}"))
            }
        }
    }
}

/// Renders a `Status` as an HTTP response.
pub fn status_response(status: &Status) -> Response {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = status.to_json().to_string();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.code >= 500 {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "request failed");
        }
        status_response(&status)
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;
