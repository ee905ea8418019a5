//! Joined agents for multi-node tests: `skiff agent` in a network
//! namespace of its own, linked to the server's node by a veth pair.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{kill_namespace_processes, release_namespace, signal, wait_timeout, Skiff, TEST_IMAGE};

/// A `skiff agent` joined to a node test's server: its own network
/// namespace, linked to the server's by a veth pair (server side
/// `10.99.<link>.1`, agent side `10.99.<link>.2`), its own data dir with the
/// test image; the server assigns its pod CIDR. The server must listen on every
/// address with `10.99.<link>.1` among its certificate's names
/// ([`joinable_server_args`]). Dropping it stops the agent and removes its
/// pods, mounts and namespace.
pub struct JoinedAgent {
    child: Option<Child>,
    pub netns: String,
    pub data_dir: tempfile::TempDir,
    pub node: String,
    pub ip: String,
}

/// A pod pinned to `node` running `script` in the test image.
pub fn pod_on(name: &str, node: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector:
    kubernetes.io/hostname: {node}
  containers:
  - name: main
    image: {TEST_IMAGE}
    command: ["sh", "-c", {script:?}]
"#
    )
}

/// [`pod_on`] that tolerates its node's unreachable taint for `seconds`.
pub fn tolerant_pod_on(name: &str, node: &str, seconds: u32) -> String {
    pod_on(name, node, "sleep 3600").replace(
        "  containers:",
        &format!("  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n    tolerationSeconds: {seconds}\n  containers:"),
    )
}

/// A web server on 8080 whose `/cgi-bin/ip` answers with the caller's address.
pub const CALLER_IP_SERVER: &str = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www";

/// What the [`CALLER_IP_SERVER`] at `web_ip` says pod `client` is.
pub fn caller_ip_seen(skiff: &Skiff, client: &str, web_ip: &str) -> Result<String> {
    // busybox's nc: its static wget would look the service up through NSS.
    let request = format!("printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {web_ip} 8080");
    let seen = skiff.kubectl(&["exec", client, "--", "sh", "-c", &request])?.ok()?.stdout;
    // busybox httpd listens on IPv6 and names IPv4 callers `[::ffff:a.b.c.d]`.
    Ok(seen.lines().last().unwrap_or("").trim().trim_start_matches("[::ffff:").trim_end_matches(']').to_string())
}

/// The `Ready` condition's status of a pod or node ("" if none).
pub fn ready_status(object: &serde_json::Value) -> String {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The server flags a [`JoinedAgent`] on `link` needs.
pub fn joinable_server_args(link: u8) -> Vec<String> {
    vec![
        "--bind-address".into(),
        "0.0.0.0".into(),
        "--tls-san".into(),
        format!("10.99.{link}.1"),
        "--node-ip".into(),
        format!("10.99.{link}.1"),
    ]
}

pub(crate) fn run_ok(command: &mut Command) -> Result<()> {
    let output = command.output()?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

impl Skiff {
    /// Joins a second node, `node`, over link number `link`.
    pub fn join_agent(&self, node: &str, link: u8) -> Result<JoinedAgent> {
        let server_ns = self.netns.clone().context("agents join node tests' servers")?;
        let netns = format!("{server_ns}-{link}");
        run_ok(Command::new("ip").args(["netns", "add", &netns]))?;
        let mut agent = JoinedAgent::prepare(&netns, node, &format!("10.99.{link}.2"))?;
        let (server_side, agent_side) = (format!("sk{link}a"), format!("sk{link}b"));
        run_ok(Command::new("ip").args(["-n", &server_ns, "link", "add", &server_side, "type", "veth", "peer", "name", &agent_side, "netns", &netns]))?;
        run_ok(Command::new("ip").args(["-n", &server_ns, "addr", "add", &format!("10.99.{link}.1/24"), "dev", &server_side]))?;
        run_ok(Command::new("ip").args(["-n", &netns, "addr", "add", &format!("10.99.{link}.2/24"), "dev", &agent_side]))?;
        for (ns, dev) in [(&server_ns, &server_side), (&netns, &agent_side), (&netns, &"lo".to_string())] {
            run_ok(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]))?;
        }
        for ns in [&server_ns, &netns] {
            run_ok(Command::new("nsenter").arg(format!("--net=/run/netns/{ns}")).args(["sysctl", "-qw", "net.ipv4.ip_forward=1"]))?;
        }
        let port = self.server_url()?.rsplit(':').next().unwrap_or("6443").to_string();
        let token = std::fs::read_to_string(self.data_dir.path().join("node-token"))?;
        agent.start(&format!("https://10.99.{link}.1:{port}"), token.trim())?;
        Ok(agent)
    }
}

impl JoinedAgent {
    /// An agent for `node` at `ip` in the existing namespace `netns`, not
    /// yet started (dropping it deletes the namespace).
    pub fn prepare(netns: &str, node: &str, ip: &str) -> Result<Self> {
        Ok(Self { child: None, netns: netns.to_string(), data_dir: tempfile::tempdir()?, node: node.to_string(), ip: ip.to_string() })
    }

    /// Imports the test image and runs `skiff agent` joined to `server` with `token`.
    pub fn start(&mut self, server: &str, token: &str) -> Result<()> {
        let archive = self.data_dir.path().join("busybox.tar");
        skiff_runtime::image::build::ImageSpec::busybox(Path::new("/bin/busybox"))?.write_oci_archive(TEST_IMAGE, &archive)?;
        run_ok(Command::new(env!("CARGO_BIN_EXE_skiff")).args(["image", "import"]).arg(&archive).arg("--data-dir").arg(self.data_dir.path()))?;
        let log = std::fs::File::create(self.data_dir.path().join("agent.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(env!("CARGO_BIN_EXE_skiff"))
            .args(["agent", "--server", server, "--token", token])
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--node-name", &self.node, "--node-ip", &self.ip])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The agent's own kubeconfig (its node credentials).
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("kubeconfig.yaml")
    }

    /// SIGKILLs the agent (its pods keep running, as a node that died).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            signal(child.id(), libc::SIGTERM);
        }
        if let Some(mut child) = self.child.take() {
            let _ = wait_timeout(&mut child, Duration::from_secs(10));
        }
        let _ = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(env!("CARGO_BIN_EXE_skiff"))
            .args(["killall", "--data-dir"])
            .arg(self.data_dir.path())
            .output();
        kill_namespace_processes(&self.netns);
        release_namespace(&self.netns, self.data_dir.path());
    }
}
