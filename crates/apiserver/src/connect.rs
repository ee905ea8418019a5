//! Connect subresources (`log`, `exec`, `attach`, `portforward`): the
//! apiserver's own checks (which container, whether the pod has a node)
//! before the request goes to the pod's node.

use std::sync::Arc;

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

/// The node agent's address for `node`: InternalIP (else Hostname) and its
/// kubelet port.
async fn node_endpoint(registry: &Registry, node: &str) -> Result<(String, u16)> {
    let nodes = ApiError::served("", "v1", "nodes")?;
    let object = registry.get(nodes, None, node).await.map_err(|_| {
        ApiError::from(Status::service_unavailable(format!(
            "node {node:?} is not registered"
        )))
    })?;
    let addresses = object["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pick = |kind: &str| {
        addresses
            .iter()
            .find(|a| a["type"] == kind)
            .and_then(|a| a["address"].as_str())
            .map(str::to_string)
    };
    let host = pick("InternalIP")
        .or_else(|| pick("Hostname"))
        .unwrap_or_else(|| node.to_string());
    let port = object["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(10250);
    Ok((host, port))
}

/// A TLS connection to the node agent (which checks our client certificate).
async fn dial_node(
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let unavailable = |what: String| ApiError::from(Status::service_unavailable(what));
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| unavailable(format!("dial tcp {host}:{port}: {e}")))?;
    let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| unavailable(format!("bad node address {host:?}: {e}")))?;
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| unavailable(format!("TLS to node agent {host}:{port}: {e}")))
}

/// GETs `path` from the node agent: its successful answer, or its error.
async fn node_get(
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>> {
    let unavailable = |what: String| ApiError::from(Status::service_unavailable(what));
    let stream = dial_node(tls, host, port).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(format!("node agent {host}:{port}: {e}")))?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::from(Status::internal(e.to_string())))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unavailable(format!("node agent {host}:{port}: {e}")))?;
    if response.status().is_success() {
        return Ok(response);
    }
    let code = response.status().as_u16();
    let text = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_string();
    Err(if code == 404 {
        Status::new(404, "NotFound", message).into()
    } else {
        ApiError::bad_request(message)
    })
}

/// GETs `path` from the node agent and streams its answer back.
async fn proxy_get(
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    path: &str,
) -> Result<Response> {
    let response = node_get(tls, host, port, path).await?;
    let body = axum::body::Body::new(response.into_body());
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

/// The whole answer of node `node` to a GET of `path` (resource metrics).
pub async fn fetch_from_node(
    registry: &Registry,
    tls: &Arc<rustls::ClientConfig>,
    node: &str,
    path: &str,
) -> Result<bytes::Bytes> {
    let (host, port) = node_endpoint(registry, node).await?;
    let response = node_get(tls, &host, port, path).await?;
    http_body_util::BodyExt::collect(response.into_body())
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ApiError::from(Status::service_unavailable(format!("node agent {host}:{port}: {e}"))))
}

/// Headers of an upgrade request that the node agent needs to see, and of
/// its 101 answer that the client needs back.
const UPGRADE_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];
const UPGRADE_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Sends an upgrade request (exec, attach, port-forward) on to the node
/// agent; once both sides have switched protocols, relays bytes between
/// them without looking at them (the node speaks WebSocket or SPDY).
async fn proxy_upgrade(
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    parts: &http::request::Parts,
    path: &str,
) -> Result<Response> {
    let unavailable = |what: String| ApiError::from(Status::service_unavailable(what));
    let Some(client_upgrade) = parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned() else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let stream = dial_node(tls, host, port).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(format!("node agent {host}:{port}: {e}")))?;
    tokio::spawn(connection.with_upgrades());
    let mut request = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(path)
        .header(header::HOST, format!("{host}:{port}"));
    for name in UPGRADE_REQUEST_HEADERS {
        for value in parts.headers.get_all(*name) {
            request = request.header(*name, value);
        }
    }
    let request = request
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::from(Status::internal(e.to_string())))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unavailable(format!("node agent {host}:{port}: {e}")))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The node's refusal (a Status) goes back as it is.
        let code = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut answer = (code, body).into_response();
        if let Some(content_type) = content_type {
            answer
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        return Ok(answer);
    }
    let mut answer = Response::new(axum::body::Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in UPGRADE_RESPONSE_HEADERS {
        for value in response.headers().get_all(*name) {
            answer.headers_mut().append(*name, value.clone());
        }
    }
    tokio::spawn(async move {
        let (node, client) = match tokio::join!(hyper::upgrade::on(response), client_upgrade) {
            (Ok(node), Ok(client)) => (node, client),
            (Err(error), _) | (_, Err(error)) => {
                tracing::debug!(%error, "upgrade to the node agent failed");
                return;
            }
        };
        let mut node = hyper_util::rt::TokioIo::new(node);
        let mut client = hyper_util::rt::TokioIo::new(client);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
    });
    Ok(answer)
}

/// The log options passed on to the node (everything but `container`).
fn log_query(query: &Query) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for key in [
        "follow",
        "previous",
        "tailLines",
        "sinceSeconds",
        "sinceTime",
        "timestamps",
        "limitBytes",
    ] {
        if let Some(value) = query.get(key) {
            out.append_pair(key, value);
        }
    }
    out.finish()
}

/// Serves a connect request for pod `namespace/name`.
pub async fn serve(
    registry: &Registry,
    kubelet_tls: Option<&Arc<rustls::ClientConfig>>,
    parts: &http::request::Parts,
    namespace: &str,
    name: &str,
    subresource: &str,
    query: &Query,
) -> Result<Response> {
    let pods = resources::core("pods")
        .ok_or_else(|| ApiError::from(Status::internal("pods are not served")))?;
    let pod = registry.get(pods, Some(namespace), name).await?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    let container = if subresource == "portforward" {
        String::new()
    } else {
        choose_container(&pod, query.get("container"))?
    };
    if node.is_empty() {
        if subresource == "log" {
            // Upstream answers an empty log for a pod that has no node yet.
            return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "").into_response());
        }
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    if subresource == "log" {
        if let Some(tls) = kubelet_tls {
            let (host, port) = node_endpoint(registry, &node).await?;
            let path = format!(
                "/containerLogs/{namespace}/{name}/{container}?{}",
                log_query(query)
            );
            return proxy_get(tls, &host, port, &path).await;
        }
    }
    if let Some(tls) = kubelet_tls {
        let (host, port) = node_endpoint(registry, &node).await?;
        let raw_query = parts.uri.query().unwrap_or("");
        let path = match subresource {
            "exec" => format!("/exec/{namespace}/{name}/{container}?{raw_query}"),
            "attach" => format!("/attach/{namespace}/{name}/{container}?{raw_query}"),
            _ => format!("/portForward/{namespace}/{name}?{raw_query}"),
        };
        return proxy_upgrade(tls, &host, port, parts, &path).await;
    }
    Err(ApiError::from(Status::service_unavailable(format!(
        "no node agent is serving {subresource} for node {node:?} (pod {namespace}/{name})"
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
