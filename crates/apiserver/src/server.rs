//! The HTTPS accept loop: TLS handshakes, HTTP/1.1 and HTTP/2 with upgrades,
//! the client-certificate fact attached to each request, upstream's
//! connection timeouts, a cap on open connections below the fd limit, and
//! graceful shutdown (stop accepting, let in-flight requests finish).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::auth::Peer;

/// How long in-flight requests get after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// kube-apiserver's `ReadHeaderTimeout` (secure_serving.go): half-sent
/// request headers do not hold a connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
/// kube-apiserver's `IdleTimeout`: a connection with no request in flight
/// for this long is closed (HTTP/1.1 keep-alive and HTTP/2 alike).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// File descriptors kept free for the store, pods' logs and the node agent.
const RESERVED_FDS: usize = 1024;

/// How many connections may be open at once: most of the fd limit.
fn connection_limit() -> usize {
    let soft = rlimit_nofile().unwrap_or(1024);
    soft.saturating_sub(RESERVED_FDS).max(64)
}

fn rlimit_nofile() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `app` over TLS on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let limit = connection_limit();
    let slots = Arc::new(Semaphore::new(limit));
    tracing::debug!(limit, "connection limit");
    loop {
        // Waiting for a free slot before accepting leaves excess connections
        // in the kernel's backlog instead of failing with EMFILE.
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
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%remote, %error, "cannot set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            // The TLS layer verified the chain; the leaf names the user.
            let peer = Peer {
                certificate: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| skiff_api::rbac::certificate_identity(leaf)),
            };
            let activity = Arc::new(Activity::new());
            let tracked = activity.clone();
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(peer.clone());
                    let busy = Busy::start(tracked.clone());
                    let response = app.clone().oneshot(request.map(axum::body::Body::new));
                    async move {
                        let response = response.await?;
                        Ok::<_, std::convert::Infallible>(
                            response.map(|body| axum::body::Body::new(TrackedBody { body, _busy: busy })),
                        )
                    }
                },
            );
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder.http2().timer(TokioTimer::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::select! {
                result = watcher.watch(connection.into_owned()) => {
                    if let Err(error) = result {
                        tracing::debug!(%remote, error = %error, "connection ended with an error");
                    }
                }
                () = activity.idle_expired() => {
                    tracing::debug!(%remote, "closing an idle connection");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the drain timeout");
    }
}

/// Requests in flight on one connection and when it last became idle.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    became_idle: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            became_idle: Notify::new(),
        }
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once no request has been in flight for `IDLE_TIMEOUT`.
    async fn idle_expired(&self) {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                let notified = self.became_idle.notified();
                if self.in_flight.load(Ordering::Acquire) > 0 {
                    notified.await;
                }
                continue;
            }
            let since = self.idle_since();
            tokio::time::sleep_until(since + IDLE_TIMEOUT).await;
            if self.in_flight.load(Ordering::Acquire) == 0 && self.idle_since() == since {
                return;
            }
        }
    }
}

/// One request in flight, until its response body is done or dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.became_idle.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted as in flight.
struct TrackedBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
