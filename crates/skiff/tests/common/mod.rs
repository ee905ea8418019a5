//! Test support: a real `skiff server` process on an ephemeral port with its
//! own data directory, the real kubectl pointed at it with a fresh discovery
//! cache, and a small HTTPS client for raw API calls. Everything is torn down
//! when the handle drops, whether the test passed or not.
#![allow(dead_code)]

mod agent;
mod cluster;
#[allow(unused_imports)]
pub use agent::{caller_ip_seen, joinable_server_args, pod_on, ready_status, tolerant_pod_on, JoinedAgent, CALLER_IP_SERVER};
#[allow(unused_imports)]
pub use cluster::Cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The kubectl to drive (the dispatcher by default).
pub fn kubectl_binary() -> String {
    std::env::var("SKIFF_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// A versioned kubectl shipped beside the dispatcher, e.g. "1.27".
pub fn versioned_kubectl(version: &str) -> String {
    format!("/usr/lib/google-cloud-sdk/bin/kubectl.{version}")
}

/// A pod whose container has a stdin and echoes each line it reads
/// (`got:<line>`), for attach tests.
pub fn echoer_pod() -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: echoer
spec:
  containers:
  - name: echoer
    image: {TEST_IMAGE}
    stdin: true
    command: [\"sh\", \"-c\", \"while read line; do echo got:$line; done\"]
"
    )
}

pub struct Skiff {
    child: Option<Child>,
    /// The network namespace the server (and its pods) run in, if any.
    pub netns: Option<String>,
    pub data_dir: tempfile::TempDir,
    cache_dir: tempfile::TempDir,
    extra_args: Vec<String>,
    /// Run the node agent too (only inside a test network namespace).
    with_agent: bool,
}

/// The output of a command, decoded.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(output: Output) -> Self {
        Self::from(output)
    }

    fn from(output: Output) -> Self {
        Self {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Fails the test with both streams if the command failed.
    pub fn ok(self) -> Result<Self> {
        if !self.status.success() {
            bail!(
                "command failed ({}):\nstdout: {}\nstderr: {}",
                self.status,
                self.stdout,
                self.stderr
            );
        }
        Ok(self)
    }

    /// Fails the test unless the command failed.
    pub fn failed(self) -> Result<Self> {
        if self.status.success() {
            bail!(
                "command unexpectedly succeeded:\nstdout: {}\nstderr: {}",
                self.stdout,
                self.stderr
            );
        }
        Ok(self)
    }
}

impl Skiff {
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Result<Self> {
        let mut skiff = Self {
            child: None,
            netns: None,
            data_dir: tempfile::tempdir()?,
            cache_dir: tempfile::tempdir()?,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            with_agent: false,
        };
        skiff.spawn()?;
        Ok(skiff)
    }

    pub fn data_dir_path(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("kubeconfig.yaml")
    }

    fn spawn(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("server.log"))?;
        let mut command = match &self.netns {
            // nsenter switches only the network namespace; `ip netns exec`
            // would also give the server a private /sys without cgroups.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg(env!("CARGO_BIN_EXE_skiff"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_skiff")),
        };
        let child = command
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--https-listen-port", "0", "--web-address", "127.0.0.1:0"])
            .args(if self.with_agent {
                &[][..]
            } else {
                &["--disable-agent"][..]
            })
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("failed to start skiff")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.kubeconfig().exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("skiff exited early with {status}:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "skiff did not write its kubeconfig within 30s:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then wait; returns the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("server not running")?;
        signal(child.id(), libc::SIGTERM);
        wait_timeout(&mut child, Duration::from_secs(20))
    }

    /// Waits for the server to exit on its own; returns the exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("server not running")?;
        wait_timeout(&mut child, timeout)
    }

    /// SIGKILL, then wait.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn()
    }

    pub fn kubectl_cmd(&self, binary: &str, args: &[&str]) -> Command {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.cache_dir.path())
            .env("HOME", self.cache_dir.path())
            .stdin(Stdio::null());
        command
    }

    /// Runs `tests/python/<script>` (the official Python client) as kubectl
    /// runs, against this server (in the node's network namespace for node
    /// tests), with `env` added; its stdout, or a failure with both streams.
    pub fn python(&self, script: &str, env: &[(&str, &str)]) -> Result<String> {
        let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
        let output = self
            .kubectl_cmd("python3", &[&path])
            .envs(env.iter().copied())
            .output()
            .context("python3")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        anyhow::ensure!(
            output.status.success(),
            "python {script} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stdout)
    }

    /// Runs `command` (in the node's namespace) on a pseudo-terminal driven
    /// by `steps` (see tests/python/pty_drive.py); its output and exit code.
    pub fn drive_pty(&self, steps: &serde_json::Value, command: &[&str], env: &[(&str, &str)]) -> Result<Run> {
        let driver = format!("{}/tests/python/pty_drive.py", env!("CARGO_MANIFEST_DIR"));
        let output = self
            .kubectl_cmd("python3", &[&driver])
            .args(command)
            .env("PTY_STEPS", steps.to_string())
            .envs(env.iter().copied())
            .output()
            .context("python3 pty_drive.py")?;
        Ok(Run::from_output(output))
    }

    /// Runs kubectl with `args`.
    pub fn kubectl(&self, args: &[&str]) -> Result<Run> {
        self.kubectl_with(&kubectl_binary(), args)
    }

    pub fn kubectl_with(&self, binary: &str, args: &[&str]) -> Result<Run> {
        let output = self
            .kubectl_cmd(binary, args)
            .output()
            .with_context(|| format!("failed to run {binary}"))?;
        Ok(Run::from(output))
    }

    /// Runs kubectl with `input` on stdin (`-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<Run> {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(&kubectl_binary(), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
        Ok(Run::from(child.wait_with_output()?))
    }

    /// Parses `kubectl get ... -o json`.
    pub fn get_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let run = self.kubectl(&all)?.ok()?;
        Ok(serde_json::from_str(&run.stdout)?)
    }

    /// Polls `check` until it returns true or `timeout` passes.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if check()? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A raw HTTPS client authenticated with the admin certificate.
    pub fn api(&self) -> Result<Api> {
        Api::new(self.data_dir.path(), &self.server_url()?, true)
    }

    /// A raw HTTPS client without credentials.
    pub fn anonymous_api(&self) -> Result<Api> {
        Api::new(self.data_dir.path(), &self.server_url()?, false)
    }

    pub fn server_url(&self) -> Result<String> {
        let text = std::fs::read_to_string(self.kubeconfig())?;
        let config: serde_yaml::Value = serde_yaml::from_str(&text)?;
        config["clusters"][0]["cluster"]["server"]
            .as_str()
            .map(str::to_string)
            .context("no server in kubeconfig")
    }

    pub fn token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.data_dir.path().join("token"))?
            .trim()
            .to_string())
    }
}

impl Skiff {
    /// A server with the node agent, inside a fresh network namespace (the
    /// node), with the busybox test image already imported.
    pub fn start_node() -> Result<Self> {
        Self::start_node_with(&[])
    }

    /// Like [`Skiff::start_node`], with extra `skiff server` arguments;
    /// `{data}` in them stands for the data directory.
    pub fn start_node_with(extra: &[&str]) -> Result<Self> {
        let mut skiff = Self::prepare_node(extra)?;
        skiff.spawn()?;
        Ok(skiff)
    }

    /// A node test's server on a real etcd (Debian's etcd-server) that runs
    /// inside the node's namespace on loopback (it goes with the namespace).
    pub fn start_node_on_etcd(extra: &[&str]) -> Result<Self> {
        let mut skiff = Self::prepare_node(extra)?;
        let ns = skiff.netns.clone().context("netns")?;
        let dir = skiff.data_dir.path().join("etcd");
        let (client, peer) = ("http://127.0.0.1:2379", "http://127.0.0.1:2380");
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .arg("etcd")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen-client-urls", client, "--advertise-client-urls", client])
            .args(["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("etcd is installed (Debian's etcd-server)")?;
        wait_for_etcd(&ns, client, Duration::from_secs(30))?;
        skiff.extra_args.extend(["--datastore-endpoint".to_string(), client.to_string()]);
        skiff.spawn()?;
        Ok(skiff)
    }

    /// A fresh node namespace with the test image imported; not started.
    fn prepare_node(extra: &[&str]) -> Result<Self> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ns = format!("skiff-e2e-{}-{n}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        if !Command::new("ip")
            .args(["netns", "add", &ns])
            .status()?
            .success()
        {
            bail!("ip netns add {ns} failed");
        }
        let mut skiff = Self {
            child: None,
            netns: Some(ns.clone()),
            data_dir: tempfile::tempdir()?,
            cache_dir: tempfile::tempdir()?,
            extra_args: vec!["--node-name".into(), "skiff-e2e".into()],
            with_agent: true,
        };
        let data = skiff.data_dir.path().display().to_string();
        skiff
            .extra_args
            .extend(extra.iter().map(|a| a.replace("{data}", &data)));
        let lo = Command::new("ip")
            .args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])
            .status()?;
        if !lo.success() {
            bail!("cannot bring lo up in {ns}");
        }
        let archive = skiff.data_dir.path().join("busybox.tar");
        skiff_runtime::image::build::ImageSpec::busybox(Path::new("/bin/busybox"))?
            .write_oci_archive(TEST_IMAGE, &archive)?;
        let import = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["image", "import"])
            .arg(&archive)
            .arg("--data-dir")
            .arg(skiff.data_dir.path())
            .output()?;
        if !import.status.success() {
            bail!(
                "image import failed: {}",
                String::from_utf8_lossy(&import.stderr)
            );
        }
        Ok(skiff)
    }

    /// Starts Debian's docker-registry on 127.0.0.1:5000 inside the node's
    /// namespace and pushes the busybox test image to it as `image`.
    pub fn start_registry(&self, image: &str) -> Result<()> {
        self.start_registry_with_auth(image, None)
    }

    /// Like [`Skiff::start_registry`]; with `Some((user, password))` the
    /// registry requires HTTP basic auth (htpasswd), and the push uses it.
    pub fn start_registry_with_auth(
        &self,
        image: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<()> {
        let ns = self.netns.clone().context("not a node test")?;
        let dir = self.data_dir.path().join("registry");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
            dir.join("data").display()
        );
        if let Some((user, password)) = credentials {
            let htpasswd = dir.join("htpasswd");
            std::fs::write(
                &htpasswd,
                format!("{user}:{}\n", bcrypt::hash(password, 4)?),
            )?;
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, text)?;
        let auth = match credentials {
            Some((user, password)) => {
                oci_client::secrets::RegistryAuth::Basic(user.to_string(), password.to_string())
            }
            None => oci_client::secrets::RegistryAuth::Anonymous,
        };
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["docker-registry", "serve"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let image = image.to_string();
        // The push runs from a thread inside the node's network namespace.
        self.in_node_netns(move || async move {
            let spec = skiff_runtime::image::build::ImageSpec::busybox(Path::new("/bin/busybox"))?;
            spec.push_with_auth(&image, &auth).await?;
            Ok(())
        })
    }

    /// Pushes a one-layer image whose layer is `layer_gz` (any bytes, e.g. a
    /// malicious tar) to the node's registry started by `start_registry`.
    pub fn push_raw_layer(&self, image: &str, layer_gz: Vec<u8>) -> Result<()> {
        let image = image.to_string();
        self.in_node_netns(move || async move {
            use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
            use oci_client::manifest::{OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE};
            let reference: oci_client::Reference = image.parse()?;
            let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
            let layers = vec![ImageLayer::new(layer_gz, IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(), None)];
            let config = Config::new(config, IMAGE_CONFIG_MEDIA_TYPE.to_string(), None);
            let manifest = OciImageManifest::build(&layers, &config, None);
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = oci_client::Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
            client.push(&reference, &layers, config, &oci_client::secrets::RegistryAuth::Anonymous, Some(manifest)).await?;
            Ok(())
        })
    }

    /// Runs `work` on a thread that joined the node's network namespace,
    /// once the registry on 127.0.0.1:5000 answers.
    pub fn in_node_netns<F, Fut>(&self, work: F) -> Result<()>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<()>>,
    {
        self.in_netns(move || async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect("127.0.0.1:5000").is_err() {
                if Instant::now() > deadline {
                    bail!("registry did not start");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            work().await
        })
    }

    /// Runs `work` on a thread that joined the node's network namespace
    /// (where the API server listens), on a runtime of its own.
    pub fn in_netns<F, Fut>(&self, work: F) -> Result<()>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let ns = self.netns.clone().context("not a node test")?;
        std::thread::spawn(move || -> Result<()> {
            use std::os::fd::AsFd;
            let netns = std::fs::File::open(format!("/run/netns/{ns}"))?;
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(work())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("node thread panicked"))?
    }

    /// Every container log on the node, for failure messages.
    pub fn node_logs(&self) -> String {
        let mut out = String::new();
        let pods = self.data_dir.path().join("pods");
        for pod in std::fs::read_dir(&pods)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
        {
            for container in std::fs::read_dir(pod.path())
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
            {
                for log in std::fs::read_dir(container.path())
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok())
                {
                    out.push_str(&format!(
                        "== {}\n{}",
                        log.path().display(),
                        std::fs::read_to_string(log.path()).unwrap_or_default()
                    ));
                }
            }
        }
        out.push_str(&format!("== server log\n{}", self.log()));
        out
    }

    /// Runs a command inside the node's network namespace.
    pub fn on_node(&self, args: &[&str]) -> Result<Run> {
        let ns = self.netns.as_deref().context("not a node test")?;
        let output = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(args)
            .output()?;
        Ok(Run::from(output))
    }

    /// Removes everything a node test started, whatever state it is in.
    fn sweep_node(&mut self) {
        let Some(ns) = self.netns.clone() else { return };
        // Let the agent stop pods the normal way first.
        let _ = self.kubectl(&[
            "delete",
            "pods",
            "--all",
            "-A",
            "--grace-period=1",
            "--timeout=20s",
        ]);
        if let Some(child) = self.child.as_ref() {
            signal(child.id(), libc::SIGTERM);
        }
        if let Some(mut child) = self.child.take() {
            let _ = wait_timeout(&mut child, Duration::from_secs(10));
        }
        // Sandboxes live in their own network namespaces; they are recorded by pid.
        for entry in std::fs::read_dir(self.data_dir.path().join("sandboxes"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
        {
            if let Some(pid) = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                signal(pid, libc::SIGKILL);
            }
        }
        // Anything still in the node namespace (monitors, the server) is killed.
        kill_namespace_processes(&ns);
        let runtime_root = self.data_dir.path().join("runtime");
        for runtime in ["runc", "crun"] {
            if let Ok(list) = Command::new(runtime)
                .arg("--root")
                .arg(&runtime_root)
                .args(["list", "-q"])
                .output()
            {
                for id in String::from_utf8_lossy(&list.stdout).split_whitespace() {
                    let _ = Command::new(runtime)
                        .arg("--root")
                        .arg(&runtime_root)
                        .args(["delete", "--force", id])
                        .output();
                }
            }
        }
        release_namespace(&ns, self.data_dir.path());
    }
}

/// SIGKILLs every process in the network namespace `ns`.
/// Waits until `etcdctl endpoint health` of `endpoints`, run in the
/// namespace `ns`, says every member is healthy.
pub(crate) fn wait_for_etcd(ns: &str, endpoints: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let health = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["etcdctl", "--endpoints", endpoints, "endpoint", "health"])
            .env("ETCDCTL_API", "3")
            .output()?;
        if health.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("etcd did not become healthy: {}", String::from_utf8_lossy(&health.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn kill_namespace_processes(ns: &str) {
    if let Ok(output) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<u32>() {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// Unmounts whatever is mounted under `data_dir` and deletes `ns`.
pub(crate) fn release_namespace(ns: &str, data_dir: &Path) {
    let data = data_dir.display().to_string();
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
        for mount_point in mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&data))
        {
            let _ = Command::new("umount").args(["-l", mount_point]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

/// The image every node test imports (built from the host's busybox-static).
/// `kubectl get pod NAME -o json`.
pub fn pod(skiff: &Skiff, name: &str) -> Result<serde_json::Value> {
    skiff.get_json(&["get", "pod", name])
}

/// A pod's condition of type `kind` (Null when absent).
pub fn pod_condition<'a>(pod: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == kind))
        .unwrap_or(&serde_json::Value::Null)
}

pub const TEST_IMAGE: &str = "skiff.local/busybox:e2e";

impl Drop for Skiff {
    fn drop(&mut self) {
        self.sweep_node();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a pid we spawned; no memory is touched.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTPS client for raw API requests.
#[derive(Clone)]
pub struct Api {
    connector: tokio_rustls::TlsConnector,
    host: String,
    port: u16,
    pub bearer: Option<String>,
}

/// A raw response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api {
    fn new(data_dir: &Path, url: &str, with_cert: bool) -> Result<Self> {
        let tls = data_dir.join("tls");
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(tls.join("ca.crt"))?;
        for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = if with_cert {
            let cert_pem = std::fs::read(tls.join("admin.crt"))?;
            let key_pem = std::fs::read(tls.join("admin.key"))?;
            let certs =
                rustls_pemfile::certs(&mut cert_pem.as_slice()).collect::<Result<Vec<_>, _>>()?;
            let key =
                rustls_pemfile::private_key(&mut key_pem.as_slice())?.context("no admin key")?;
            builder.with_client_auth_cert(certs, key)?
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let rest = url.strip_prefix("https://").context("https URL")?;
        let (host, port) = rest.rsplit_once(':').context("port in URL")?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            host: host.to_string(),
            port: port.parse()?,
            bearer: None,
        })
    }

    /// A raw TLS connection to the server, authenticated as the admin.
    pub async fn tls_stream(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())?;
        Ok(self.connector.connect(name, tcp).await?)
    }

    async fn send(
        &self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let tls = self.tls_stream().await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(sender.send_request(request).await?)
    }

    fn build(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        accept: &str,
    ) -> Result<hyper::Request<Full<Bytes>>> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{}:{}", self.host, self.port))
            .header("content-type", content_type)
            .header("accept", accept);
        if let Some(token) = &self.bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        Ok(builder.body(Full::new(Bytes::from(body)))?)
    }

    /// One request, whole response.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Response> {
        self.request_accept(method, path, content_type, body, "application/json")
            .await
    }

    pub async fn request_accept(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        accept: &str,
    ) -> Result<Response> {
        let response = self
            .send(self.build(method, path, content_type, body, accept)?)
            .await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Response> {
        self.request("GET", path, "application/json", Vec::new())
            .await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<Response> {
        self.request("POST", path, "application/json", serde_json::to_vec(body)?)
            .await
    }

    /// Opens a watch and returns its line stream.
    pub async fn watch(&self, path: &str) -> Result<WatchLines> {
        self.watch_accept(path, "application/json").await
    }

    pub async fn watch_accept(&self, path: &str, accept: &str) -> Result<WatchLines> {
        let response = self
            .send(self.build("GET", path, "application/json", Vec::new(), accept)?)
            .await?;
        if response.status().as_u16() != 200 {
            bail!("watch answered {}", response.status());
        }
        Ok(WatchLines {
            body: response.into_body(),
            buffer: Vec::new(),
        })
    }
}

/// Newline-delimited JSON events of a watch response.
pub struct WatchLines {
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
}

impl WatchLines {
    /// The next event, or `None` when the server ends the watch.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<serde_json::Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=pos).collect();
                return Ok(Some(serde_json::from_slice(&line)?));
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => bail!("no watch event within {timeout:?}"),
                Ok(None) => return Ok(None),
                Ok(Some(frame)) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

