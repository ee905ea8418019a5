//! The Kubernetes core/v1 API server of Skiff.
//!
//! Owns: HTTPS serving with client-certificate, bearer-token and
//! service-account-token authentication, RBAC authorization, discovery and OpenAPI, the REST verbs over the store
//! (create, get, list, watch, update, patch, delete, deletecollection) with
//! upstream's semantics, server-side Table printing, pod binding, the
//! namespace lifecycle and store compaction, metrics, and the cluster PKI and
//! admin kubeconfig.
//!
//! Must not know: how pods run. The node agent and the scheduler are
//! clients of this API over HTTP; nothing here reaches into them.
//!
//! # Layout
//! - `request`: path/query/Accept parsing into typed requests (pure)
//! - `handlers`: authentication, dispatch, body decoding, encoding
//! - `registry`, `strategy`: object semantics over the store
//! - `watch`: watch streams; `discovery`, `openapi`, `metrics`
//! - `binding`, `connect`: pod subresources
//! - `controllers`: built-in namespaces, namespace lifecycle, compaction
//! - `node_lifecycle`: lost nodes (Unknown, taints, evictions) and PodGC;
//!   `node_ipam`: nodes' pod CIDRs
//! - `auth`: authentication, RBAC authorization, reviews, service-account tokens
//! - `pki`, `server`: certificates, kubeconfig, the TLS accept loop

mod admission;
mod auth;
mod binding;
pub mod bootstrap;
mod body;
mod cluster_objects;
mod encode;
pub mod clock;
mod connect;
pub mod controllers;
mod discovery;
mod error;
mod follow;
mod handlers;
mod join;
mod metrics;
mod metrics_api;
mod node_ipam;
mod node_lifecycle;
mod openapi;
pub mod pki;
mod protobuf;
pub mod registry;
mod request;
mod server;
mod strategy;
mod watch;

use std::sync::Arc;

use axum::Router;
use skiff_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use cluster_objects::KUBERNETES_SERVICE_IP;
pub use error::ApiError;
pub use skiff_api::rbac::UserInfo;
pub use handlers::version_info;

use crate::clock::Clock;
use crate::handlers::AppState;
use crate::registry::Registry;

/// An API server over a store, ready to serve.
pub struct ApiServer {
    state: Arc<AppState>,
    /// The controllers' flags.
    controller_settings: node_lifecycle::Settings,
}

impl ApiServer {
    /// `tokens` are the accepted bearer tokens and who each one is;
    /// `server_address` is the URL clients reach this server at.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        tokens: Vec<(String, UserInfo)>,
        server_address: String,
        shutdown: CancellationToken,
    ) -> Self {
        let state = AppState {
            registry: Registry::new(store, clock),
            authenticator: auth::Authenticator { static_tokens: tokens, signer: None },
            policy: Default::default(),
            node_graph: Default::default(),
            metrics: metrics::Metrics::default(),
            shutdown,
            server_address,
            kubelet_tls: None,
            resource_metrics: Default::default(),
            join: None,
        };
        Self {
            state: Arc::new(state),
            controller_settings: node_lifecycle::Settings {
                grace_seconds: skiff_api::node_lifecycle::DEFAULT_GRACE_SECONDS,
                cluster_cidr: None,
            },
        }
    }

    /// Lets the server reach node agents (for `pods/log`) with this TLS config.
    pub fn with_kubelet_client(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.kubelet_tls = Some(tls);
        }
        self
    }

    /// Lets agents join with the token secret `secret`; the cluster CA and
    /// its key are in `pki_dir`.
    pub fn with_node_join(mut self, secret: String, ca_pem: String, pki_dir: std::path::PathBuf) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.join = Some(join::JoinConfig { secret, ca_pem, pki_dir });
        }
        self
    }

    /// upstream's `--node-monitor-grace-period`.
    pub fn with_node_monitor_grace_period(mut self, seconds: i64) -> Self {
        self.controller_settings.grace_seconds = seconds.max(1);
        self
    }

    /// Gives nodes pod CIDRs (a /24 each) from `cidr` (k3s's `--cluster-cidr`).
    pub fn with_cluster_cidr(mut self, cidr: &str) -> Result<Self, String> {
        self.controller_settings.cluster_cidr = Some(skiff_api::node_ipam::Cidr::parse(cidr)?);
        Ok(self)
    }

    /// Signs and accepts service-account tokens with this key (PKCS#8 PEM,
    /// ECDSA P-256: [`pki::Pki::service_account_key`]).
    pub fn with_service_account_key(mut self, pem: &str) -> Result<Self, String> {
        let signer = auth::TokenSigner::from_pem(pem)?;
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.authenticator.signer = Some(signer);
        }
        Ok(self)
    }

    /// Creates the built-in namespaces, bootstrap RBAC, the built-in
    /// namespaces' accounts and the `kubernetes` Service (naming the API
    /// server at `advertised`), and starts the authorizer's policy watch:
    /// what every server does. `ca_pem` is the cluster CA.
    pub async fn start_control_plane(&self, ca_pem: String, advertised: std::net::SocketAddr) -> Result<(), ApiError> {
        controllers::ensure_builtin_namespaces(&self.state.registry).await?;
        auth::policy::bootstrap(&self.state.registry, &self.state.policy).await?;
        // The built-in namespaces have their accounts before anyone asks.
        cluster_objects::namespace_pass(&self.state.registry, &ca_pem).await?;
        cluster_objects::ensure_kubernetes_service(&self.state.registry, advertised.ip(), advertised.port()).await?;
        tokio::spawn(auth::policy::run(self.state.registry.clone(), self.state.policy.clone(), self.state.shutdown.clone()));
        tokio::spawn(auth::node_graph::run(self.state.registry.clone(), self.state.node_graph.clone(), self.state.shutdown.clone()));
        Ok(())
    }

    /// The controllers (kube-controller-manager's part: namespace objects
    /// and lifecycle, node lifecycle and PodGC, compaction), to run on one
    /// server of a cluster at a time: [`Controllers::run`] under leader
    /// election. `ca_pem` is the cluster CA every namespace's
    /// `kube-root-ca.crt` holds.
    pub fn controllers(&self, ca_pem: String) -> Controllers {
        Controllers { registry: self.state.registry.clone(), ca_pem, settings: self.controller_settings.clone() }
    }

    /// The HTTP application (no TLS): every route.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(handlers::handle_guarded)
            .with_state(self.state.clone())
    }

    /// The HTTP application answering as `user`, for a front end in this
    /// process that authenticates its own users (the web view): requests
    /// are authorized as `user` and bring no credentials of their own.
    pub fn router_as(&self, user: UserInfo) -> Router {
        self.router().layer(axum::Extension(auth::Peer { certificate: Some(user) }))
    }

    /// Serves HTTPS on `listener` until shutdown; in-flight requests finish.
    pub async fn serve(self, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
        let shutdown = self.state.shutdown.clone();
        server::serve(listener, tls, self.router(), shutdown).await;
    }
}

/// The control loops only one server runs at a time.
#[derive(Clone)]
pub struct Controllers {
    registry: Registry,
    ca_pem: String,
    settings: node_lifecycle::Settings,
}

impl Controllers {
    /// Runs every controller until `stop` fires.
    pub fn run(&self, stop: CancellationToken) -> impl std::future::Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            tokio::join!(
                cluster_objects::run_namespace_objects(this.registry.clone(), this.ca_pem.clone(), stop.clone()),
                controllers::run_namespace_controller(this.registry.clone(), stop.clone()),
                node_lifecycle::run(this.registry.clone(), this.settings.clone(), stop.clone()),
                controllers::run_compactor(this.registry, stop),
            );
        }
    }
}
