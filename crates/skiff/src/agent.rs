//! The node agent's side of the binary: the flags every node takes, the
//! agent built from them (embedded in `skiff server`, or alone), and
//! `skiff agent`, which joins a server with its token as k3s's agent does:
//! fetch the CA, check it against the token's hash, then get node
//! credentials (`system:node:<name>`) and a serving certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

/// What every node agent is told.
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// The node's name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's address (default: the one of the default route).
    #[arg(long)]
    pub node_ip: Option<String>,
    /// The OCI runtime binary (default: crun where it works, else runc).
    #[arg(long)]
    pub runtime: Option<PathBuf>,
    /// Where the CNI plugins are.
    #[arg(long, default_value = "/usr/lib/cni")]
    pub cni_bin_dir: PathBuf,
    /// Use the CNI config in this directory instead of Skiff's own.
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Every node's pods' addresses (no NAT inside it), as k3s's
    /// --cluster-cidr; a server gives each node a /24 of it.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// This node's pod CIDR, if not the one the server assigns.
    #[arg(long)]
    pub node_pod_cidr: Option<String>,
    /// Registry mirrors, endpoints and credentials, in k3s's registries.yaml format.
    #[arg(long)]
    pub registry_config: Option<PathBuf>,
    /// Port of the node agent's HTTPS API (logs), as kubelet's 10250.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// How many pods the node takes (its `pods` capacity), as kubelet's --max-pods.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// A directory of Pod manifests to run as static pods (kubelet's
    /// --pod-manifest-path); each shows in the API as a mirror pod.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
}

impl NodeArgs {
    /// The node's name: `--node-name`, else the hostname (lowercased).
    pub fn name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_lowercase()
        })
    }
}

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The server to join (`https://host:6443`).
    #[arg(long, env = "SKIFF_URL")]
    pub server: String,
    /// The join token (`<server data-dir>/node-token`).
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: String,
    /// Where the agent's state, credentials and pods live.
    #[arg(long, default_value = "/var/lib/skiff-agent", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Issues the node's serving certificate and key for (name, address).
pub type IssueServing<'a> = dyn Fn(&str, &str) -> Result<(String, String)> + 'a;

/// The node agent: OCI runtime, image store, CNI, node facts, talking to
/// the API at `api_address` with the client credentials in `kubeconfig`;
/// `serving` issues its serving certificate for (name, address).
pub async fn build(
    data_dir: &Path,
    args: &NodeArgs,
    kubeconfig: &Path,
    api_address: SocketAddr,
    ca_pem: &str,
    serving: &IssueServing<'_>,
    shutdown: CancellationToken,
) -> Result<skiff_kubelet::Agent> {
    let binary = skiff_runtime::container::detect_runtime(args.runtime.as_deref())
        .context("no OCI runtime found: install crun or runc, or pass --runtime")?;
    let version = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .context("failed to run the OCI runtime")?;
    let version_line = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let runtime_name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let runtime_version = format!(
        "{runtime_name}://{}",
        version_line.split_whitespace().last().unwrap_or("unknown")
    );
    let skiff = std::env::current_exe().context("cannot find the skiff binary")?;
    let runtime = skiff_runtime::container::OciRuntime {
        binary,
        root: data_dir.join("runtime"),
        skiff,
    };
    let cni_dir = data_dir.join("cni");
    let conf_dir = args
        .cni_conf_dir
        .clone()
        .unwrap_or_else(|| cni_dir.join("net.d"));
    let cni = skiff_runtime::network::Cni {
        bin_dir: args.cni_bin_dir.clone(),
        conf_dir,
        cache_dir: cni_dir.join("results"),
    };
    // Written once the server gives the node its pod CIDR.
    let own = args.cni_conf_dir.is_none().then(|| skiff_runtime::network::OwnNetwork {
        bridge: "skiff0".into(),
        cluster_cidr: args.cluster_cidr.clone(),
        ipam_dir: cni_dir.join("ipam"),
    });
    // Pods reach the API server at the `kubernetes` Service's address.
    let api_target = if api_address.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), api_address.port())
    } else {
        api_address
    };
    let service = SocketAddr::new(skiff_apiserver::KUBERNETES_SERVICE_IP.into(), 443);
    skiff_runtime::network::ensure_service_nat(service, api_target)
        .await
        .context("failed to route the kubernetes Service to the API server")?;
    let node_name = args.name();
    let mut node = skiff_kubelet::node::NodeInfo::detect(&node_name, data_dir, &runtime_version);
    if let Some(ip) = &args.node_ip {
        node.internal_ip = ip.clone();
    }
    node.pod_cidr = args.node_pod_cidr.clone();
    node.kubelet_port = args.kubelet_port;
    node.max_pods = args.max_pods;
    let (cert, key) = serving(&node_name, &node.internal_ip).context("failed to issue the node agent's certificate")?;
    let server_tls = skiff_apiserver::pki::kubelet_server_tls(ca_pem, &cert, &key)
        .context("failed to configure the node agent's TLS")?;
    let client = skiff_client::from_kubeconfig(kubeconfig, "kubelet")
        .await
        .context("failed to build the agent's client")?;
    let status = skiff_kubelet::status::start_manager(client.clone(), shutdown);
    let registries = match &args.registry_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            skiff_runtime::image::registries::RegistriesConfig::parse(&text)
                .map_err(|e| anyhow::anyhow!("invalid registry config {}: {e}", path.display()))?
        }
        None => Default::default(),
    };
    Ok(skiff_kubelet::Agent {
        events: skiff_client::EventRecorder::new(client.clone(), "kubelet", Some(&node_name)),
        sources: skiff_kubelet::sources::Sources::new(client.clone()),
        client,
        node,
        data_dir: data_dir.to_path_buf(),
        images: Arc::new(
            skiff_runtime::image::ImageStore::open(&data_dir.join("images"))
                .context("failed to open the image store")?,
        ),
        runtime: Arc::new(runtime),
        network: Arc::new(skiff_kubelet::seams::NodeNetwork::new(cni, own)),
        cgroups: Arc::new(skiff_runtime::cgroups::Cgroups::system()),
        clock: Arc::new(skiff_kubelet::seams::SystemClock),
        registries,
        status,
        containers: skiff_kubelet::index::ContainerIndex::default(),
        server_tls: Some(server_tls),
        pod_manifest_path: args.pod_manifest_path.clone(),
        removed_layers: tokio::sync::broadcast::channel(64).0,
    })
}


/// `skiff agent`: join the server, then run the node agent until SIGTERM.
pub async fn run(args: AgentArgs) -> Result<()> {
    let data_dir = &args.data_dir;
    crate::secure_data_dir(data_dir)?;
    let node_name = args.node.name();
    let node_ip = args.node.node_ip.clone().unwrap_or_else(skiff_kubelet::node::detect_internal_ip);
    let server = args.server.trim_end_matches('/');
    let api_address = api_address(server).await?;
    let credentials = skiff_client::join::join(server, &args.token, &node_name, std::slice::from_ref(&node_ip))
        .await
        .with_context(|| format!("failed to join {server}"))?;
    tracing::info!(server, node = %node_name, "joined the cluster");
    let kubeconfig = data_dir.join("kubeconfig.yaml");
    let user = format!("system:node:{node_name}");
    let text = skiff_apiserver::pki::kubeconfig(server, &credentials.ca_pem, &user, &credentials.client_cert, &credentials.client_key);
    crate::write_kubeconfig(&kubeconfig, &text)?;
    let shutdown = CancellationToken::new();
    crate::spawn_signal_handler(shutdown.clone())?;
    let mut node = args.node.clone();
    node.node_name = Some(node_name);
    node.node_ip = Some(node_ip);
    let serving = (credentials.serving_cert.clone(), credentials.serving_key.clone());
    let agent = build(data_dir, &node, &kubeconfig, api_address, &credentials.ca_pem, &|_, _| Ok(serving.clone()), shutdown.clone())
        .await
        .context("failed to set up the node agent")?;
    skiff_kubelet::run(agent, shutdown).await?;
    tracing::info!("skiff agent stopped");
    Ok(())
}

/// The address behind `https://host:port` (the `kubernetes` Service's target).
async fn api_address(server: &str) -> Result<SocketAddr> {
    let authority = server
        .strip_prefix("https://")
        .with_context(|| format!("the server URL {server} is not https://host:port"))?;
    let authority = authority.split('/').next().unwrap_or(authority);
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    let mut addresses = tokio::net::lookup_host(with_port.as_str())
        .await
        .with_context(|| format!("cannot resolve {with_port}"))?;
    addresses.next().with_context(|| format!("{with_port} has no address"))
}
