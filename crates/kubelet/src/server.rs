//! The node agent's HTTPS server (port 10250): the API server reaches it
//! for `pods/log`, `exec`, `attach` and `portforward`. Clients must present
//! a certificate from the cluster CA, and only the API server and
//! administrators (group `system:masters`) are authorized; anyone else
//! gets the kubelet's `Forbidden (user=..., verb=..., resource=nodes, ...)`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use skiff_runtime::container::exec::ExecRequest;
use crate::seams::{ContainerRuntime, PodCgroups};

use crate::index::{ContainerEntry, ContainerIndex};
use crate::logs::{parse, read_tail, render, Follower, LogOptions};
use crate::resource_metrics::ContainerUsage;
use crate::stream::exec::{self, Session, StreamOptions};
use crate::stream::{attach, error_status, negotiate, portforward, status_response, upgrade};


fn error(code: StatusCode, message: String) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

fn options(query: &[(String, String)]) -> (LogOptions, bool, bool) {
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let flag = |k: &str| matches!(get(k), Some("true" | "1"));
    let since = match (
        get("sinceTime"),
        get("sinceSeconds").and_then(|s| s.parse::<i64>().ok()),
    ) {
        (Some(t), _) => t.parse().ok(),
        (None, Some(seconds)) => jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(seconds))
            .ok(),
        _ => None,
    };
    let options = LogOptions {
        tail_lines: get("tailLines").and_then(|v| v.parse().ok()),
        since,
        timestamps: flag("timestamps"),
        limit_bytes: get("limitBytes").and_then(|v| v.parse().ok()),
    };
    (options, flag("follow"), flag("previous"))
}

/// What the node API reads.
#[derive(Clone)]
pub struct NodeApi {
    pub containers: ContainerIndex,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub cgroups: Arc<dyn PodCgroups>,
}

fn query_pairs(query: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// What exec and attach speak: WebSocket channel protocols, SPDY streams.
const REMOTE_COMMAND_WEBSOCKET: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
const REMOTE_COMMAND_SPDY: &[&str] = &["v4.channel.k8s.io"];

/// The running container `key` (`ns/pod/container`), or upstream's 404.
fn running_container(
    api: &NodeApi,
    key: &str,
    container: &str,
) -> Result<ContainerEntry, Box<Response>> {
    api.containers
        .get(key)
        .filter(|e| e.running)
        .ok_or_else(|| {
            Box::new(status_response(
                StatusCode::NOT_FOUND,
                &format!("container not found ({container:?})"),
            ))
        })
}

/// `kubectl exec`: runs a command in a running container.
async fn exec(
    State(api): State<NodeApi>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    request: Request<Body>,
) -> Response {
    let query = query_pairs(query);
    let command: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return status_response(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let options = StreamOptions::from_query(&query);
    let key = api.containers.key_by_name(&namespace, &pod, &container);
    let entry = match running_container(&api, &key, &container) {
        Ok(entry) => entry,
        Err(response) => return *response,
    };
    let transport = match negotiate(
        request.headers(),
        REMOTE_COMMAND_WEBSOCKET,
        REMOTE_COMMAND_SPDY,
    ) {
        Ok(transport) => transport,
        Err(response) => return *response,
    };
    tracing::info!(pod = %format!("{namespace}/{pod}"), %container, ?command, tty = options.tty, "exec");
    let runtime = api.runtime.clone();
    let request_for_runtime = ExecRequest {
        id: entry.runtime_id,
        command,
        tty: options.tty,
        stdin: options.stdin,
    };
    let session: Session = Box::new(move |channels| {
        Box::pin(async move {
            match runtime.exec(&request_for_runtime) {
                Ok(session) => exec::run_exec(session, channels).await,
                Err(error) => {
                    error_status(&format!("error executing command in container: {error}"))
                }
            }
        })
    });
    upgrade(request, transport, move |connection| {
        exec::serve(connection, options, session)
    })
}

/// `kubectl attach`: the container's output from now on, and its stdin
/// and terminal when it has them.
async fn attach(
    State(api): State<NodeApi>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    request: Request<Body>,
) -> Response {
    let options = StreamOptions::from_query(&query_pairs(query));
    let key = api.containers.key_by_name(&namespace, &pod, &container);
    let entry = match running_container(&api, &key, &container) {
        Ok(entry) => entry,
        Err(response) => return *response,
    };
    let transport = match negotiate(
        request.headers(),
        REMOTE_COMMAND_WEBSOCKET,
        REMOTE_COMMAND_SPDY,
    ) {
        Ok(transport) => transport,
        Err(response) => return *response,
    };
    // Input goes to the container's monitor; without `stdin` or `tty` in
    // its spec there is none, and the client's input is dropped.
    let input = if options.stdin || options.tty {
        match api.runtime.attach(&entry.bundle).await {
            Ok(input) => input,
            Err(error) => {
                return status_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("error attaching to container {container:?}: {error}"),
                )
            }
        }
    } else {
        None
    };
    tracing::info!(pod = %format!("{namespace}/{pod}"), %container, stdin = input.is_some(), tty = options.tty, "attach");
    let log = entry.dir.join(format!("{}.log", entry.attempt));
    let index = api.containers.clone();
    let session: Session = Box::new(move |channels| {
        Box::pin(attach::follow(index, key, log, input, options.tty, channels))
    });
    upgrade(request, transport, move |connection| {
        exec::serve(connection, options, session)
    })
}

/// `kubectl port-forward`: relays connections to ports inside the pod.
async fn port_forward(
    State(api): State<NodeApi>,
    Path((namespace, pod)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request<Body>,
) -> Response {
    let Some(sandbox) = api.containers.sandbox(&namespace, &pod) else {
        return status_response(
            StatusCode::NOT_FOUND,
            &format!("pod {namespace}/{pod} has no running sandbox on this node"),
        );
    };
    // `?ports=8080,9090` (channel protocols; SPDY names ports per stream).
    let ports: Vec<u16> = query_pairs(query)
        .into_iter()
        .filter(|(k, _)| k == "ports" || k == "port")
        .flat_map(|(_, v)| v.split(',').filter_map(|p| p.trim().parse().ok()).collect::<Vec<u16>>())
        .collect();
    let transport = match negotiate(
        request.headers(),
        &["SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"],
        &["portforward.k8s.io"],
    ) {
        Ok(transport) => transport,
        Err(response) => return *response,
    };
    tracing::info!(pod = %format!("{namespace}/{pod}"), "port-forward");
    upgrade(request, transport, move |connection| {
        portforward::serve(connection, sandbox, ports)
    })
}

async fn container_logs(
    State(api): State<NodeApi>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let index = api.containers;
    let query = query_pairs(query);
    let (options, follow, previous) = options(&query);
    let key = index.key_by_name(&namespace, &pod, &container);
    let Some(entry) = index.get(&key) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
            ),
        );
    };
    let attempt = if previous {
        entry.attempt - 1
    } else {
        entry.attempt
    };
    let path = entry.dir.join(format!("{attempt}.log"));
    if attempt < 0 || !path.exists() {
        return if previous {
            error(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            )
        } else {
            error(
                StatusCode::BAD_REQUEST,
                format!(
                    "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
                ),
            )
        };
    }
    // One open file for the whole request: the log stays readable after the
    // pod's directory is removed (a deleted pod's last lines still arrive),
    // and bytes are read once, never re-read, and served as written.
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to open the log of container {container:?}: {e}"),
            )
        }
    };
    let read = match (options.tail_lines, options.since) {
        // Only the tail is needed: read it from the end.
        (Some(lines), None) => read_tail(&mut file, lines).await,
        _ => {
            let mut seen = Vec::new();
            file.read_to_end(&mut seen).await.map(|_| seen)
        }
    };
    let mut seen = read.unwrap_or_else(|e| {
        tracing::warn!(log = %path.display(), error = %e, "failed to read a container log");
        Vec::new()
    });
    let first = render(&parse(&seen), &options);
    if !follow || previous {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            first,
        )
            .into_response();
    }
    // Follow: new complete lines as they arrive, until the container ends.
    let unfinished = match seen.iter().rposition(|b| *b == b'\n') {
        Some(end) => seen.split_off(end + 1),
        None => std::mem::take(&mut seen),
    };
    let options = LogOptions {
        tail_lines: None,
        since: None,
        ..options
    };
    let follower = Follower::new(file, &path, unfinished, index, key);
    let stream = futures::stream::unfold(
        (Some(first), follower),
        move |(pending, mut follower)| {
            let options = options.clone();
            async move {
                if let Some(chunk) = pending {
                    return Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), (None, follower)));
                }
                let lines = follower.next().await?;
                Some((Ok(Bytes::from(render(&lines, &options))), (None, follower)))
            }
        },
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `/metrics/resource`: what each running container and the node use.
async fn resource_metrics(State(api): State<NodeApi>) -> Response {
    let containers: Vec<ContainerUsage> = api
        .containers
        .running()
        .into_iter()
        .filter_map(|(namespace, pod, container, entry)| {
            let usage = api.cgroups.usage(&entry.cgroup)?;
            Some(ContainerUsage { namespace, pod, container, usage })
        })
        .collect();
    let now = jiff::Timestamp::now().as_millisecond();
    let text = crate::resource_metrics::render(&containers, api.cgroups.node_usage(), now);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The kubelet authorizer's answer for a caller: `None` when allowed
/// (administrators, the API server among them), else upstream's 403 with
/// the verb and subresource the kubelet maps the request to.
fn forbidden(user: Option<&skiff_api::rbac::UserInfo>, method: &axum::http::Method, path: &str) -> Option<Response> {
    if user.is_some_and(|u| u.in_group(skiff_api::rbac::MASTERS)) {
        return None;
    }
    let verb = match *method {
        axum::http::Method::GET | axum::http::Method::HEAD => "get",
        axum::http::Method::POST => "create",
        axum::http::Method::PUT => "update",
        axum::http::Method::PATCH => "patch",
        axum::http::Method::DELETE => "delete",
        _ => "*",
    };
    let subresource = if path.starts_with("/metrics") { "metrics" } else { "proxy" };
    let name = user.map_or("system:anonymous", |u| u.username.as_str());
    Some(error(
        StatusCode::FORBIDDEN,
        format!("Forbidden (user={name}, verb={verb}, resource=nodes, subresource(s)=[{subresource}])"),
    ))
}

/// Serves the node API over TLS on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: NodeApi,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .route("/metrics/resource", get(resource_metrics))
        .with_state(api);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| skiff_api::rbac::certificate_identity(leaf));
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let refusal = forbidden(user.as_ref(), request.method(), request.uri().path());
                    let app = app.clone();
                    async move {
                        match refusal {
                            Some(response) => Ok(response),
                            None => app.oneshot(request.map(Body::new)).await,
                        }
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await;
        });
    }
}
