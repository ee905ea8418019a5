//! What Skiff's control-plane clients share: building a `kube::Client` from
//! a kubeconfig, recording Events the way kubelet and kube-scheduler do, and
//! joining a cluster with a token ([`join`]), and Lease-based leader
//! election ([`leader`]).
//!
//! Must not know: the store or the API server's internals. Everything goes
//! over HTTPS like any other client.

mod events;
pub mod join;
pub mod leader;

use std::path::Path;

pub use events::{pod_reference, EventRecorder, EventType};

/// Failures building a client or recording an event.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to read kubeconfig {path}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("failed to build an API client")]
    Build(#[from] kube::Error),
    #[error("cannot join the cluster: {0}")]
    Join(String),
}

/// A client authenticated as the kubeconfig at `path` says, named
/// `component` in its user agent (which names its writes' field manager,
/// as `kube-scheduler` and `kubelet` are named upstream).
pub async fn from_kubeconfig(path: &Path, component: &str) -> Result<kube::Client, ClientError> {
    let err = |source| ClientError::Kubeconfig {
        path: path.display().to_string(),
        source,
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(err)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(err)?;
    let mut config = config;
    if let Ok(agent) = http::HeaderValue::from_str(&format!("{component}/v1.32.0 (linux/amd64) skiff")) {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    Ok(kube::Client::try_from(config)?)
}

/// Labels the Node `name` once it is registered (k3s's server labels its
/// own node `node-role.kubernetes.io/control-plane`: a node may not set
/// role labels on itself). Waits on a watch of the Node.
pub async fn label_node_when_registered(client: kube::Client, name: &str, labels: &[(&str, &str)]) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::Node;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    if let Err(error) = kube::runtime::wait::await_condition(nodes.clone(), name, |node: Option<&Node>| node.is_some()).await {
        tracing::warn!(node = name, %error, "cannot watch for the node to label it");
        return Ok(());
    }
    let labels: serde_json::Map<String, serde_json::Value> = labels.iter().map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v))).collect();
    let patch = serde_json::json!({"metadata": {"labels": labels}});
    nodes.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await?;
    Ok(())
}
