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

fn run_ok(command: &mut Command) -> Result<()> {
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
        let mut agent = JoinedAgent {
            child: None,
            netns: netns.clone(),
            data_dir: tempfile::tempdir()?,
            node: node.to_string(),
            ip: format!("10.99.{link}.2"),
        };
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
        let archive = agent.data_dir.path().join("busybox.tar");
        skiff_runtime::image::build::ImageSpec::busybox(Path::new("/bin/busybox"))?.write_oci_archive(TEST_IMAGE, &archive)?;
        run_ok(Command::new(env!("CARGO_BIN_EXE_skiff")).args(["image", "import"]).arg(&archive).arg("--data-dir").arg(agent.data_dir.path()))?;
        let port = self.server_url()?.rsplit(':').next().unwrap_or("6443").to_string();
        let token = std::fs::read_to_string(self.data_dir.path().join("node-token"))?;
        let log = std::fs::File::create(agent.data_dir.path().join("agent.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg(env!("CARGO_BIN_EXE_skiff"))
            .args(["agent", "--server", &format!("https://10.99.{link}.1:{port}"), "--token", token.trim()])
            .arg("--data-dir")
            .arg(agent.data_dir.path())
            .args(["--node-name", node, "--node-ip", &agent.ip])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        agent.child = Some(child);
        Ok(agent)
    }
}

impl JoinedAgent {
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
