//! `skiff`: a small, fast Kubernetes for Pods in one binary.
//!
//! `skiff server` runs the API server (and, as they land, the scheduler and
//! node agent) in one process and writes `<data-dir>/kubeconfig.yaml`.

mod agent;
mod progress;
mod web;

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use skiff_apiserver::clock::SystemClock;
use skiff_apiserver::pki::{self, Pki};
use skiff_apiserver::ApiServer;
use skiff_client::leader::Election;
use skiff_store::{SqliteStore, Store};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "skiff", version, about = "A small, fast Kubernetes for Pods")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server) on this machine.
    Server(ServerArgs),
    /// Run only the node agent, joined to a server with its token.
    Agent(agent::AgentArgs),
    /// Manage the node's images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Stop every pod on this node and remove their containers, networks,
    /// sandboxes and cgroups (stop `skiff server` first, or it restarts them).
    Killall(KillallArgs),
    /// The pod sandbox process: holds a pod's network, UTS and IPC namespaces.
    #[command(hide = true)]
    Pause {
        #[arg(long)]
        hostname: String,
        /// The sandbox's id (names the process).
        #[arg(long, default_value = "")]
        id: String,
        #[arg(long)]
        host_network: bool,
        #[arg(long)]
        host_ipc: bool,
        #[arg(long)]
        share_pid: bool,
    },
    /// The per-container monitor: runs one container, writes its log and exit status.
    #[command(hide = true)]
    Monitor {
        #[arg(long)]
        runtime: PathBuf,
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        log: PathBuf,
        /// The container keeps a stdin for attach.
        #[arg(long)]
        stdin: bool,
        /// Its stdin closes after the first attach.
        #[arg(long)]
        stdin_once: bool,
        /// It runs on a terminal.
        #[arg(long)]
        tty: bool,
    },
}

#[derive(clap::Args)]
struct KillallArgs {
    /// The server's data directory.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// The OCI runtime binary (default: crun on pure cgroup v2, else runc).
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// Where the CNI plugins are.
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_bin_dir: PathBuf,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Load images from an OCI archive or a `docker save` tarball (air-gapped machines).
    Import {
        file: PathBuf,
        #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// List the images on this node.
    Ls {
        #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Pack the host's busybox-static into an image (for offline demos and tests).
    PackBusybox {
        /// The static busybox binary.
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// The image name to store it under.
        #[arg(long, default_value = "skiff.local/busybox:latest")]
        name: String,
        #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Pull an image from its registry.
    Pull {
        image: String,
        #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
        data_dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where state, certificates and the kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// How long a node may go without a heartbeat before it is marked
    /// Unknown and tainted unreachable (kube-controller-manager's flag).
    #[arg(long, default_value = "50s", value_parser = parse_seconds)]
    node_monitor_grace_period: i64,
    /// Keep objects in etcd v3 at these endpoints (comma-separated
    /// `http://host:2379` or `https://host:2379`) instead of the embedded
    /// SQLite store.
    #[arg(long, value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// The CA of the etcd servers' certificates (https endpoints).
    #[arg(long)]
    datastore_cafile: Option<PathBuf>,
    /// A client certificate for etcd's --client-cert-auth.
    #[arg(long, requires = "datastore_keyfile")]
    datastore_certfile: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, requires = "datastore_certfile")]
    datastore_keyfile: Option<PathBuf>,
    /// The cluster's secret: agents join with it, and servers that share a
    /// datastore share their CA and keys under it. A second server takes
    /// the first one's (its node-token file, or the bare secret). Default:
    /// made at first start and kept in <data-dir>/token.
    #[arg(long, env = "SKIFF_TOKEN")]
    token: Option<String>,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Extra names or addresses for the serving certificate.
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// Write the kubeconfig here as well as to <data-dir>/kubeconfig.yaml.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Where the web view listens (plain HTTP: keep it on loopback); when
    /// the port is taken, the next free one of the ten after it. The address
    /// with its token is printed at start and kept in <data-dir>/web-view.url.
    #[arg(long, default_value = "127.0.0.1:6480")]
    web_address: SocketAddr,
    /// Do not serve the web view.
    #[arg(long)]
    disable_web_view: bool,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the node agent in this process (control plane only).
    #[arg(long)]
    disable_agent: bool,
    #[command(flatten)]
    node: agent::NodeArgs,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The sandbox must create its namespaces while it is single-threaded.
    if let Command::Pause {
        hostname,
        id,
        host_network,
        host_ipc,
        share_pid,
    } = &cli.command
    {
        let options = skiff_runtime::sandbox::SandboxOptions {
            id: id.clone(),
            host_network: *host_network,
            host_ipc: *host_ipc,
            share_pid: *share_pid,
        };
        return skiff_runtime::sandbox::pause(hostname, &options).context("sandbox failed");
    }
    if let Command::Monitor {
        runtime,
        root,
        bundle,
        id,
        log,
        stdin,
        stdin_once,
        tty,
    } = cli.command
    {
        let args = skiff_runtime::container::MonitorArgs {
            runtime,
            root,
            bundle,
            id,
            log,
            stdio: skiff_runtime::container::ContainerStdio {
                stdin,
                stdin_once,
                tty,
            },
        };
        return skiff_runtime::container::monitor::monitor(&args)
            .context("container monitor failed");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the runtime")?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server(args)),
        Command::Agent(args) => runtime.block_on(agent::run(args)),
        Command::Image(command) => runtime.block_on(image(command)),
        Command::Killall(args) => runtime.block_on(killall(&args)),
        Command::Pause { .. } | Command::Monitor { .. } => Ok(()),
    }
}

/// Decimal sizes as crictl prints them (`2.16MB`).
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let text = format!("{value:.3}");
    let trimmed = text
        .split('.')
        .next()
        .filter(|whole| whole.len() >= 3)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let mut t = format!("{value:.4}");
            t.truncate(4);
            t.trim_end_matches('.').to_string()
        });
    format!("{trimmed}{}", units[unit])
}

async fn image(command: ImageCommand) -> Result<()> {
    let open = |data_dir: &Path| {
        skiff_runtime::image::ImageStore::open(&data_dir.join("images"))
            .with_context(|| format!("failed to open the image store in {}", data_dir.display()))
    };
    match command {
        ImageCommand::Import { file, data_dir } => {
            let store = open(&data_dir)?;
            let shown = progress::Shown::new(&format!("importing {}", file.display()));
            let imported = store.import_reporting(&file, &|step| shown.see(step));
            shown.finish();
            for image in imported.with_context(|| format!("failed to import {}", file.display()))? {
                println!("imported {} ({})", image.name, image.config);
            }
        }
        ImageCommand::PackBusybox {
            busybox,
            name,
            data_dir,
        } => {
            let store = open(&data_dir)?;
            let spec = skiff_runtime::image::build::ImageSpec::busybox(&busybox)
                .with_context(|| format!("failed to read {}", busybox.display()))?;
            let archive = data_dir.join("images").join("tmp").join("busybox.oci.tar");
            spec.write_oci_archive(&name, &archive)?;
            let imported = store.import(&archive);
            let _ = std::fs::remove_file(&archive);
            for image in imported? {
                println!(
                    "packed {} ({}) from {}",
                    image.name,
                    image.config,
                    busybox.display()
                );
            }
        }
        ImageCommand::Pull { image, data_dir } => {
            let store = open(&data_dir)?;
            let started = std::time::Instant::now();
            let shown = progress::Shown::new(&format!("pulling {image}"));
            let pulled = store
                .pull_reporting(&image, &Default::default(), &Default::default(), &|step| shown.see(step))
                .await;
            shown.finish();
            let pulled = pulled?;
            println!(
                "pulled {} ({}) in {:.1}s, {} bytes",
                pulled.name,
                pulled.config,
                started.elapsed().as_secs_f64(),
                pulled.size()
            );
        }
        ImageCommand::Ls { data_dir } => {
            let store = open(&data_dir)?;
            let mut rows = vec![[
                "IMAGE".to_string(),
                "TAG".to_string(),
                "IMAGE ID".to_string(),
                "SIZE".to_string(),
            ]];
            for image in store.list()? {
                let (repository, tag) = image.repository_and_tag();
                let id = image
                    .config
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(13)
                    .collect::<String>();
                rows.push([
                    repository.to_string(),
                    tag.to_string(),
                    id,
                    human_size(image.size()),
                ]);
            }
            let widths: Vec<usize> = (0..4)
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for row in rows {
                let line: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                println!("{}", line.join("   ").trim_end());
            }
        }
    }
    Ok(())
}

/// Names and addresses the serving certificate must cover.
fn certificate_sans(args: &ServerArgs) -> Vec<String> {
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
        "10.43.0.1".to_string(),
    ];
    if let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        sans.push(hostname.trim().to_string());
    }
    if !args.bind_address.is_unspecified() {
        sans.push(args.bind_address.to_string());
    }
    if let Ok(interfaces) = if_addrs::get_if_addrs() {
        sans.extend(
            interfaces
                .iter()
                .filter(|i| !i.is_loopback())
                .map(|i| i.ip().to_string()),
        );
    }
    sans.extend(args.tls_sans.iter().cloned());
    sans.retain(|s| !s.is_empty());
    sans
}

/// A Go-style duration in whole seconds: `50s`, `2m`, `1m30s`, `1h`.
fn parse_seconds(text: &str) -> std::result::Result<i64, String> {
    let mut total = 0i64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            other => return Err(format!("unknown unit {other:?} in duration {text:?} (use s, m or h)")),
        };
        let value: i64 = digits.parse().map_err(|_| format!("invalid duration {text:?}"))?;
        total += value * unit;
        digits.clear();
    }
    if !digits.is_empty() || total <= 0 {
        return Err(format!("invalid duration {text:?}: a positive number with a unit, such as 50s"));
    }
    Ok(total)
}

fn client_url(args: &ServerArgs, port: u16) -> String {
    let host = if args.bind_address.is_unspecified() || args.bind_address.is_loopback() {
        "127.0.0.1".to_string()
    } else {
        match args.bind_address {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        }
    };
    format!("https://{host}:{port}")
}

/// Writes via a temporary file and a rename, so readers never see half a file.
pub(crate) fn write_kubeconfig(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    let partial = path.with_extension("partial");
    pki::write_secret_file(&partial, contents)
        .with_context(|| format!("failed to write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("failed to write {}", path.display()))
}

/// The data directory holds the store (every Secret), keys and tokens:
/// only root may enter it. Checked at every start; a looser mode is fixed
/// and said. (Pods do not need it: their files reach them as mounts.)
pub(crate) fn secure_data_dir(data_dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("failed to create {}", data_dir.display()))?;
    let mode = std::fs::metadata(data_dir)
        .with_context(|| format!("failed to read {}", data_dir.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o700 {
        tracing::warn!(dir = %data_dir.display(), mode = format!("{mode:o}"), "the data directory was open to other users; now 0700");
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("failed to restrict {}", data_dir.display()))?;
    }
    Ok(())
}

/// Go programs (kube-apiserver among them) raise the soft open-files limit
/// to the hard one at start; a server with many pods and watches needs it.
fn raise_open_files_limit() {
    match rlimit_nofile() {
        Ok((soft, hard)) if soft < hard => {
            if let Err(error) = set_rlimit_nofile(hard, hard) {
                tracing::warn!(%error, soft, hard, "cannot raise the open-files limit");
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read the open-files limit"),
    }
}

fn rlimit_nofile() -> std::io::Result<(u64, u64)> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_err(std::io::Error::from)
}

fn set_rlimit_nofile(soft: u64, hard: u64) -> std::io::Result<()> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard)
        .map_err(std::io::Error::from)
}

/// The cluster secret (`--token`, bare or in the node-token's K10 form,
/// else the one kept in the data dir) and the CA hash a K10 token pins.
fn server_token(args: &ServerArgs) -> Result<(String, Option<String>)> {
    let path = args.data_dir.join("token");
    let Some(given) = args.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok((pki::load_or_create_token(&path).context("failed to set up the cluster token")?, None));
    };
    let (secret, pinned) = if given.starts_with("K10") {
        let (hash, secret) = skiff_client::join::parse_token(given)?;
        (secret, Some(hash))
    } else {
        (given.to_string(), None)
    };
    pki::write_secret_file(&path, &format!("{secret}\n")).with_context(|| format!("failed to write {}", path.display()))?;
    Ok((secret, pinned))
}

/// The certificates in `dir`, sharing the CA and keys with the other
/// servers of the datastore: adopted if one published them, else made
/// here and published.
async fn shared_pki(store: &dyn Store, dir: &Path, secret: &str, sans: &[String]) -> Result<Pki> {
    use skiff_apiserver::bootstrap;
    let adopted = bootstrap::adopt(store, dir, secret).await?;
    let pki = Pki::load_or_create(dir, sans).context("failed to set up certificates")?;
    if adopted || bootstrap::publish(store, dir, secret).await? {
        return Ok(pki);
    }
    // Another server published first, a moment ago: theirs wins.
    bootstrap::adopt(store, dir, secret).await?;
    Pki::load_or_create(dir, sans).context("failed to set up certificates")
}

/// A kubeconfig for an in-process component's own identity (`user`, in
/// `group`), issued from the cluster CA at each start into
/// `<data-dir>/cred/<name>.kubeconfig`.
fn component_kubeconfig(pki: &Pki, data_dir: &Path, url: &str, name: &str, user: &str, group: Option<&str>) -> Result<PathBuf> {
    let (cert, key) = pki::issue_client_certificate(&data_dir.join("tls"), user, group)
        .with_context(|| format!("failed to issue the {name} credentials"))?;
    let path = data_dir.join("cred").join(format!("{name}.kubeconfig"));
    write_kubeconfig(&path, &pki::kubeconfig(url, &pki.ca_cert, user, &cert, &key))?;
    Ok(path)
}

async fn server(args: ServerArgs) -> Result<()> {
    let data_dir = &args.data_dir;
    secure_data_dir(data_dir)?;
    raise_open_files_limit();
    let store: Arc<dyn Store> = if args.datastore_endpoint.is_empty() {
        Arc::new(
            SqliteStore::open(&data_dir.join("state.db"))
                .with_context(|| format!("failed to open the store in {}", data_dir.display()))?,
        )
    } else {
        let read = |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()));
        let tls = skiff_store::EtcdTls {
            ca: args.datastore_cafile.as_ref().map(read).transpose()?,
            client: match (&args.datastore_certfile, &args.datastore_keyfile) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            },
        };
        let store = skiff_store::EtcdStore::connect_with(&args.datastore_endpoint, "", &tls)
            .await
            .with_context(|| format!("failed to reach etcd at {}", args.datastore_endpoint.join(",")))?;
        tracing::info!(endpoints = %args.datastore_endpoint.join(","), "objects are kept in etcd");
        Arc::new(store)
    };
    let (token, pinned_ca) = server_token(&args)?;
    let pki = shared_pki(store.as_ref(), &data_dir.join("tls"), &token, &certificate_sans(&args)).await?;
    if let Some(hash) = pinned_ca {
        let ours = pki::join_token(&pki.ca_cert, &token);
        if !ours.starts_with(&format!("K10{hash}::")) {
            anyhow::bail!("the token names a cluster CA (K10{hash}…) that is not this datastore's: is it another cluster's token?");
        }
    }
    let address = SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("failed to listen on {address}"))?;
    // With port 0 the kernel picks one; the kubeconfig names the real port.
    let address = listener
        .local_addr()
        .context("failed to read the listening address")?;
    let url = client_url(&args, address.port());
    let tls = pki.server_config().context("failed to configure TLS")?;

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;
    // The API server outlives the components it serves, so they can finish
    // (release their Leases, post their last status) when the server stops.
    let api_shutdown = CancellationToken::new();
    let api = ApiServer::new(
        store,
        Arc::new(SystemClock),
        // The cluster token is an administrator's (servers share it);
        // agents trade it for node credentials of their own.
        vec![(token.clone(), skiff_apiserver::UserInfo::authenticated("system:admin", &["system:masters"]))],
        url.clone(),
        api_shutdown.clone(),
    )
    .with_node_monitor_grace_period(args.node_monitor_grace_period)
    .with_cluster_cidr(&args.node.cluster_cidr)
    .map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?
    .with_node_join(token.clone(), pki.ca_cert.clone(), data_dir.join("tls"))
    .with_service_account_key(&pki.service_account_key)
    .map_err(|e| anyhow::anyhow!("failed to load the service-account key: {e}"))?
    .with_kubelet_client(
        pki.kubelet_client_config()
            .context("failed to configure TLS to node agents")?,
    );
    // The address the `kubernetes` Service's endpoints name: the bound
    // one, or the node's own when the server listens on every address.
    let advertised_ip = if args.bind_address.is_unspecified() || args.bind_address.is_loopback() {
        skiff_kubelet::node::detect_internal_ip()
            .parse()
            .unwrap_or(args.bind_address)
    } else {
        args.bind_address
    };
    api.start_control_plane(pki.ca_cert.clone(), SocketAddr::new(advertised_ip, address.port()))
        .await
        .context("failed to start the control plane")?;
    // Before the kubeconfig: whoever waits for it finds the view's address too.
    if !args.disable_web_view {
        // The page reads the API as an administrator; only its token's holder gets in.
        let viewer = skiff_apiserver::UserInfo::authenticated("skiff:web-view", &["system:masters"]);
        if let Err(error) = web::start(args.web_address, api.router_as(viewer), data_dir, shutdown.clone()).await {
            tracing::warn!(error = format!("{error:#}"), "serving no web view");
        }
    }
    let kubeconfig = pki.kubeconfig(&url);
    let kubeconfig_path = data_dir.join("kubeconfig.yaml");
    write_kubeconfig(&kubeconfig_path, &kubeconfig)?;
    // What `skiff agent --token` takes, in k3s's format.
    pki::write_secret_file(&data_dir.join("node-token"), &format!("{}\n", pki::join_token(&pki.ca_cert, &token)))
        .context("failed to write the node token")?;
    if let Some(extra) = &args.write_kubeconfig {
        write_kubeconfig(extra, &kubeconfig)?;
    }
    tracing::info!(%address, kubeconfig = %kubeconfig_path.display(), "skiff API server ready");
    let controllers = api.controllers(pki.ca_cert.clone());
    let serving = tokio::spawn(api.serve(listener, tls));
    // The scheduler and the node agent are API clients like any other, over
    // HTTPS. Either one ending while the server runs stops the server: a
    // server that accepts pods nobody schedules or runs would only mislead.
    let mut components: tokio::task::JoinSet<(&'static str, Result<()>)> = tokio::task::JoinSet::new();
    // kube-controller-manager's and kube-scheduler's work runs on one
    // server at a time, elected by Leases in kube-system as upstream's are.
    let identity = format!("{}_{}", args.node.name(), uuid::Uuid::new_v4());
    let admin = skiff_client::from_kubeconfig(&kubeconfig_path, "kube-controller-manager")
        .await
        .context("failed to build the controllers' client")?;
    let election = Election::new(admin, "kube-system", "kube-controller-manager", &identity);
    let elected_shutdown = shutdown.clone();
    components.spawn(async move {
        let outcome = election.run(elected_shutdown, |stop| controllers.run(stop)).await;
        ("controllers", outcome.map_or(Ok(()), |()| Err(anyhow::anyhow!("the controllers returned"))))
    });
    if !args.disable_scheduler {
        // The scheduler is `system:kube-scheduler`, with upstream's role.
        let credentials = component_kubeconfig(&pki, data_dir, &url, "scheduler", "system:kube-scheduler", None)?;
        let client = skiff_client::from_kubeconfig(&credentials, "kube-scheduler")
            .await
            .context("failed to build the scheduler's client")?;
        let election = Election::new(client.clone(), "kube-system", "kube-scheduler", &identity);
        let elected_shutdown = shutdown.clone();
        components.spawn(async move {
            let outcome = election.run(elected_shutdown, |stop| skiff_scheduler::run(client.clone(), stop)).await;
            ("scheduler", outcome.unwrap_or(Ok(())).map_err(anyhow::Error::from))
        });
    }
    if !args.disable_agent {
        let serving = |name: &str, ip: &str| -> Result<(String, String)> {
            Ok(pki.kubelet_serving(name, &[ip.to_string()])?)
        };
        // The node agent is `system:node:<name>`, held to its own node's
        // objects by the Node authorizer, as a joined agent is.
        let user = format!("system:node:{}", args.node.name());
        let credentials = component_kubeconfig(&pki, data_dir, &url, "node", &user, Some("system:nodes"))?;
        let agent = agent::build(data_dir, &args.node, &credentials, address, &pki.ca_cert, &serving, shutdown.clone())
            .await
            .context("failed to set up the node agent")?;
        let admin = skiff_client::from_kubeconfig(&kubeconfig_path, "skiff-server")
            .await
            .context("failed to build the server's client")?;
        let node_name = args.node.name();
        tokio::spawn(async move {
            let role = [("node-role.kubernetes.io/control-plane", "true")];
            if let Err(error) = skiff_client::label_node_when_registered(admin, &node_name, &role).await {
                tracing::warn!(node = %node_name, %error, "cannot label the server's node control-plane");
            }
        });
        let shutdown = shutdown.clone();
        components.spawn(async move {
            let outcome = skiff_kubelet::run(agent, shutdown).await;
            ("node agent", outcome.map_err(anyhow::Error::from))
        });
    }
    let mut failure = None;
    while let Some(ended) = components.join_next().await {
        let (component, outcome) = match ended {
            Ok(ended) => ended,
            Err(error) => ("a component", Err(anyhow::anyhow!("task failed: {error}"))),
        };
        if shutdown.is_cancelled() {
            if let Err(error) = outcome {
                tracing::warn!(component, error = format!("{error:#}"), "stopped with an error during shutdown");
            }
            continue;
        }
        let error = outcome.err().unwrap_or_else(|| anyhow::anyhow!("it returned while the server was running"));
        tracing::error!(component, error = format!("{error:#}"), "a server component stopped; stopping the server");
        failure = Some(error.context(format!("the {component} stopped")));
        shutdown.cancel();
    }
    api_shutdown.cancel();
    serving.await.context("the API server task failed")?;
    if let Some(error) = failure {
        return Err(error);
    }
    tracing::info!("skiff server stopped");
    Ok(())
}

/// `skiff killall`: every pod of this node's data directory stopped and removed.
async fn killall(args: &KillallArgs) -> Result<()> {
    let binary = skiff_runtime::container::detect_runtime(args.runtime.as_deref())
        .context("no OCI runtime found: install crun or runc, or pass --runtime")?;
    let runtime = skiff_runtime::container::OciRuntime {
        binary,
        root: args.data_dir.join("runtime"),
        skiff: std::env::current_exe().context("cannot find the skiff binary")?,
    };
    let cni_dir = args.data_dir.join("cni");
    let cni = skiff_runtime::network::Cni {
        bin_dir: args.cni_bin_dir.clone(),
        conf_dir: cni_dir.join("net.d"),
        cache_dir: cni_dir.join("results"),
    };
    let cgroups = skiff_runtime::cgroups::Cgroups::system();
    skiff_kubelet::clean::clean_node(&args.data_dir, &runtime, &cni, &cgroups, &Default::default()).await;
    println!("stopped every pod of {}", args.data_dir.display());
    Ok(())
}

pub(crate) fn spawn_signal_handler(shutdown: CancellationToken) -> Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("failed to handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to handle SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
        }
        shutdown.cancel();
    });
    Ok(())
}
