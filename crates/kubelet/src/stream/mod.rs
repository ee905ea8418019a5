//! Streaming for `exec`, `attach` and `port-forward`: the upgrade
//! handshakes (WebSocket with Kubernetes' channel subprotocols, or
//! SPDY/3.1), and the glue between those wire formats and processes or
//! sockets in the pod.

pub mod attach;
pub mod exec;
pub mod portforward;
pub mod spdy;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// The upgraded connection, either way.
pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;
pub type WebSocket = WebSocketStream<Upgraded>;

/// Which wire format a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket with the chosen subprotocol.
    WebSocket(String),
    /// SPDY/3.1 with the chosen `X-Stream-Protocol-Version`.
    Spdy(String),
}

/// Every value of a (possibly repeated, comma-separated) header.
fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Picks the transport and subprotocol: the client's first offer that we
/// support. `Err` is the answer to give instead (kubectl falls back from
/// WebSocket to SPDY when the upgrade is refused).
pub fn negotiate(
    headers: &HeaderMap,
    websocket: &[&str],
    spdy: &[&str],
) -> Result<Transport, Box<Response>> {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let pick = |offered: Vec<String>, supported: &[&str]| {
        offered
            .into_iter()
            .find(|o| supported.iter().any(|s| s.eq_ignore_ascii_case(o)))
    };
    if upgrade == "websocket" {
        let offered = header_values(headers, "sec-websocket-protocol");
        return match pick(offered.clone(), websocket) {
            Some(protocol) => Ok(Transport::WebSocket(protocol)),
            None => Err(Box::new(status_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "unable to upgrade: none of the requested subprotocols {offered:?} is supported (supported: {websocket:?})"
                ),
            ))),
        };
    }
    if upgrade.starts_with("spdy/3.1") {
        let offered = header_values(headers, "x-stream-protocol-version");
        return match pick(offered.clone(), spdy) {
            Some(protocol) => Ok(Transport::Spdy(protocol)),
            None if offered.is_empty() => Ok(Transport::Spdy(spdy[0].to_string())),
            None => Err(Box::new(status_response(
                StatusCode::FORBIDDEN,
                &format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {spdy:?}"
                ),
            ))),
        };
    }
    Err(Box::new(status_response(
        StatusCode::BAD_REQUEST,
        "Upgrade request required",
    )))
}

/// A `metav1.Status` failure answer.
pub fn status_response(code: StatusCode, message: &str) -> Response {
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::FORBIDDEN => "Forbidden",
        _ => "BadRequest",
    };
    let body = skiff_api::Status::new(code.as_u16(), reason, message).to_json();
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Answers 101 for `transport` and hands the upgraded connection to
/// `serve` once the client has it.
pub fn upgrade<F, Fut>(mut request: Request<Body>, transport: Transport, serve: F) -> Response
where
    F: FnOnce(Connection) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut request);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    match &transport {
        Transport::WebSocket(protocol) => {
            let key = request
                .headers()
                .get("sec-websocket-key")
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default();
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert("sec-websocket-accept", value(&accept));
            headers.insert("sec-websocket-protocol", value(protocol));
        }
        Transport::Spdy(protocol) => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            headers.insert("x-stream-protocol-version", value(protocol));
        }
    }
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        let connection = match transport {
            Transport::WebSocket(protocol) => Connection::WebSocket(
                Box::new(WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await),
                protocol,
            ),
            Transport::Spdy(_) => Connection::Spdy(upgraded),
        };
        serve(connection).await;
    });
    response
}

/// An upgraded connection with its negotiated subprotocol.
pub enum Connection {
    WebSocket(Box<WebSocket>, String),
    Spdy(Upgraded),
}

/// The Status kubectl expects on the error channel when a command ends.
pub fn exit_status(exit_code: i32) -> Value {
    if exit_code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {exit_code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]},
    })
}

/// An internal-error Status for the error channel.
pub fn error_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}
