//! Skiff's live web view of pods, served by `skiff server` on loopback.
//!
//! Owns: the pages (plain HTML, CSS and JavaScript compiled into the binary,
//! [`assets`]), who may see them (the token in the address the server
//! prints, traded once for a session cookie, as Jupyter does), and a
//! read-only way from the page to the API: `GET`s under `/api` and `/apis`
//! are handed to the API server's own router, so the page sees exactly what
//! kubectl sees (Tables, watches, logs).
//!
//! Must not know: the store, pods' workings or the API's internals. It is
//! given a router that answers as one user, and a token and session secret
//! the caller made.

mod assets;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The session cookie's name.
const COOKIE: &str = "skiff_web_session";
/// Subresources the view never reaches: they act on pods or nodes.
const REFUSED_SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "proxy"];

/// At most this many connections at once. A browser needs a handful (an
/// open page holds a few watch and log streams); more wait in the kernel's
/// backlog instead of taking the server's file descriptors, which the API
/// server and the pods need.
pub const MAX_CONNECTIONS: usize = 64;
/// Half-sent request headers do not hold a connection (kube-apiserver's
/// `ReadHeaderTimeout`, as on the API's listener).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
/// How long open pages (their watch and log streams) get at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The web view: its credentials and the API it shows.
pub struct WebView {
    token: String,
    session: String,
    api: Router,
}

impl WebView {
    /// `token` goes in the printed address; `session` is the cookie a
    /// browser holding the token gets. Both must be long random strings.
    /// `api` answers the page's requests (as whoever it is built for).
    pub fn new(token: String, session: String, api: Router) -> Self {
        Self {
            token,
            session,
            api,
        }
    }

    /// Every route of the view.
    pub fn router(self) -> Router {
        Router::new()
            .fallback(serve_request)
            .with_state(Arc::new(self))
    }

    /// Serves on `listener` until `shutdown`, with at most
    /// [`MAX_CONNECTIONS`] connections open.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let app = self.router();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let graceful = GracefulShutdown::new();
        loop {
            // A free slot before the accept: excess connections wait in the
            // backlog rather than failing with EMFILE elsewhere.
            let slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let (tcp, remote) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "web view: accept failed");
                        // Transient (EMFILE, ECONNABORTED): give it a moment.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let service = TowerToHyperService::new(app.clone());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _slot = slot;
                let mut builder = Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%remote, %error, "web view: connection ended with an error");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            tracing::debug!("web view: open pages were cut off at shutdown");
        }
    }

    fn has_session(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == COOKIE && constant_time_eq(value.as_bytes(), self.session.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `token` query parameter, if any.
fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(name, value)| (name == "token").then_some(value))
}

async fn serve_request(State(view): State<Arc<WebView>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    if let Some(token) = query_token(request.uri().query()) {
        if !constant_time_eq(token.as_bytes(), view.token.as_bytes()) {
            tracing::info!(%path, "web view: a wrong token was refused");
            return refused();
        }
        // Trade the token for the session cookie and take it out of the
        // address bar (and of any later Referer).
        let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", view.session);
        return match HeaderValue::from_str(&cookie) {
            Ok(cookie) => (
                StatusCode::SEE_OTHER,
                [(header::SET_COOKIE, cookie), (header::LOCATION, HeaderValue::from_static("/"))],
            )
                .into_response(),
            Err(error) => {
                tracing::warn!(%error, "web view: the session cookie is not a header value");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        };
    }
    if !view.has_session(request.headers()) {
        return refused();
    }
    if path == "/api" || path.starts_with("/api/") || path == "/apis" || path.starts_with("/apis/") {
        return proxy(&view, request).await;
    }
    match assets::named(&path) {
        Some((content_type, body)) => page(content_type, body),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// A page or script, with headers that keep it to itself.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        body,
    )
        .into_response()
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        assets::REFUSED,
    )
        .into_response()
}

/// Whether a path names a subresource that acts (exec, attach,
/// port-forward, proxy) rather than one that reads.
fn acts(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    if rest.first() == Some(&"namespaces") && rest.len() > 2 {
        rest = &rest[2..];
    }
    rest.get(2).is_some_and(|sub| REFUSED_SUBRESOURCES.contains(sub))
}

/// Hands a read to the API server's router.
async fn proxy(view: &WebView, request: Request) -> Response {
    if request.method() != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "the web view only reads\n").into_response();
    }
    let path = request.uri().path();
    if acts(path) {
        return (StatusCode::FORBIDDEN, "the web view does not exec, attach, port-forward or proxy\n").into_response();
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.to_string(), |p| p.as_str().to_string());
    let mut forwarded = Request::new(Body::empty());
    *forwarded.uri_mut() = match target.parse() {
        Ok(uri) => uri,
        Err(_) => return (StatusCode::BAD_REQUEST, "malformed path\n").into_response(),
    };
    if let Some(accept) = request.headers().get(header::ACCEPT) {
        forwarded.headers_mut().insert(header::ACCEPT, accept.clone());
    }
    match view.api.clone().oneshot(forwarded).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use http_body_util::BodyExt;

    use super::*;

    fn view() -> Router {
        let api = Router::new().route("/api/v1/pods", get(|| async { "pods" }));
        WebView::new("t0ken".into(), "s3ssion".into(), api).router()
    }

    async fn send(router: &Router, uri: &str, cookie: Option<&str>, method: Method) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::new(Body::empty());
        *request.method_mut() = method;
        *request.uri_mut() = uri.parse().unwrap_or_default();
        if let Some(cookie) = cookie {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                request.headers_mut().insert(header::COOKIE, value);
            }
        }
        let Ok(response) = router.clone().oneshot(request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn only_the_token_or_its_session_gets_in() {
        let router = view();
        for (uri, cookie) in [
            ("/", None),
            ("/app.js", None),
            ("/api/v1/pods", None),
            ("/?token=wrong", None),
            ("/api/v1/pods", Some("skiff_web_session=other")),
            ("/api/v1/pods", Some("other=s3ssion")),
        ] {
            let (status, _, body) = send(&router, uri, cookie, Method::GET).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {cookie:?}");
            assert!(!body.contains("pods") || body.contains("token"), "{body}");
        }
        let (status, headers, _) = send(&router, "/?token=t0ken", None, Method::GET).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/");
        assert_eq!(
            headers[header::SET_COOKIE],
            "skiff_web_session=s3ssion; Path=/; HttpOnly; SameSite=Strict"
        );
        let session = Some("a=b; skiff_web_session=s3ssion");
        let (status, _, body) = send(&router, "/api/v1/pods", session, Method::GET).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "pods"));
        let (status, headers, _) = send(&router, "/", session, Method::GET).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap_or("").contains("script-src 'self'"));
    }

    #[tokio::test]
    async fn the_view_only_reads() {
        let router = view();
        let session = Some("skiff_web_session=s3ssion");
        let (status, _, _) = send(&router, "/api/v1/pods", session, Method::POST).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _, _) = send(&router, "/api/v1/namespaces/default/pods/web/exec?command=sh", session, Method::GET).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn acting_subresources() {
        for (path, want) in [
            ("/api/v1/namespaces/default/pods/web/exec", true),
            ("/api/v1/namespaces/default/pods/web/attach", true),
            ("/api/v1/namespaces/default/pods/web/portforward", true),
            ("/api/v1/nodes/n1/proxy", true),
            ("/api/v1/namespaces/default/pods/exec", false),
            ("/api/v1/namespaces/default/pods/web/log", false),
            ("/api/v1/namespaces/exec", false),
            ("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web", false),
            ("/api/v1/pods", false),
        ] {
            assert_eq!(acts(path), want, "{path}");
        }
    }
}
