//! A small cluster inside network namespaces the test creates: a "hub"
//! namespace with a bridge (10.98.0.1/24) and a 3-member etcd on it, and
//! nodes (servers or joined agents), each in its own namespace, linked to
//! the bridge by a veth pair at `10.98.0.<n>`. All nodes share one L2
//! segment, so host-gw routes between their pod CIDRs work as on a LAN.
//! Dropping the cluster stops etcd and deletes the hub (drop nodes first).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::agent::run_ok;
use super::{kill_namespace_processes, release_namespace, wait_for_etcd, JoinedAgent, Skiff};

const MEMBERS: [(&str, u16, u16); 3] = [("etcd-0", 2379, 2380), ("etcd-1", 2479, 2480), ("etcd-2", 2579, 2580)];
const HUB_IP: &str = "10.98.0.1";

pub struct Cluster {
    pub hub: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// The hub namespace, its bridge and a healthy 3-member etcd.
    pub fn start() -> Result<Self> {
        let hub = format!("skc-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &hub]).stderr(Stdio::null()).status();
        run_ok(Command::new("ip").args(["netns", "add", &hub]))?;
        let cluster = Self { hub: hub.clone(), dir: tempfile::tempdir()? };
        run_ok(Command::new("ip").args(["-n", &hub, "link", "add", "skbr", "type", "bridge"]))?;
        run_ok(Command::new("ip").args(["-n", &hub, "addr", "add", &format!("{HUB_IP}/24"), "dev", "skbr"]))?;
        for dev in ["skbr", "lo"] {
            run_ok(Command::new("ip").args(["-n", &hub, "link", "set", dev, "up"]))?;
        }
        let initial: Vec<String> = MEMBERS.iter().map(|(name, _, peer)| format!("{name}=http://{HUB_IP}:{peer}")).collect();
        for (name, client, peer) in MEMBERS {
            let (client, peer) = (format!("http://{HUB_IP}:{client}"), format!("http://{HUB_IP}:{peer}"));
            let log = std::fs::File::create(cluster.dir.path().join(format!("{name}.log")))?;
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{hub}"))
                .arg("etcd")
                .args(["--name", name, "--data-dir"])
                .arg(cluster.dir.path().join(name))
                .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("etcd is installed (Debian's etcd-server)")?;
        }
        wait_for_etcd(&hub, &cluster.endpoints(), Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// Every member's client URL, comma-separated.
    pub fn endpoints(&self) -> String {
        MEMBERS.iter().map(|(_, client, _)| format!("http://{HUB_IP}:{client}")).collect::<Vec<_>>().join(",")
    }

    /// Links namespace `ns` to the hub's bridge at `10.98.0.<host>`.
    fn link(&self, ns: &str, host: u8) -> Result<String> {
        let ip = format!("10.98.0.{host}");
        let (hub_side, node_side) = (format!("skh{host}"), format!("skn{host}"));
        run_ok(Command::new("ip").args(["-n", &self.hub, "link", "add", &hub_side, "type", "veth", "peer", "name", &node_side, "netns", ns]))?;
        run_ok(Command::new("ip").args(["-n", &self.hub, "link", "set", &hub_side, "master", "skbr", "up"]))?;
        run_ok(Command::new("ip").args(["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", &node_side]))?;
        for dev in [node_side.as_str(), "lo"] {
            run_ok(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]))?;
        }
        run_ok(Command::new("nsenter").arg(format!("--net=/run/netns/{ns}")).args(["sysctl", "-qw", "net.ipv4.ip_forward=1"]))?;
        Ok(ip)
    }

    /// A `skiff server` node named `node` at `10.98.0.<host>` on this
    /// cluster's etcd (with `token`, it joins the servers already there).
    pub fn server(&self, node: &str, host: u8, token: Option<&str>) -> Result<Skiff> {
        let mut skiff = Skiff::prepare_node(&["--node-monitor-grace-period=15s"])?;
        let ns = skiff.netns.clone().context("node tests have a namespace")?;
        let ip = self.link(&ns, host)?;
        if let Some(at) = skiff.extra_args.iter().position(|a| a == "--node-name") {
            skiff.extra_args[at + 1] = node.to_string();
        }
        skiff.extra_args.extend(
            ["--datastore-endpoint", &self.endpoints(), "--bind-address", "0.0.0.0", "--tls-san", &ip, "--node-ip", &ip]
                .map(str::to_string),
        );
        if let Some(token) = token {
            skiff.extra_args.extend(["--token".to_string(), token.to_string()]);
        }
        skiff.spawn()?;
        Ok(skiff)
    }

    /// A `skiff agent` node named `node` at `10.98.0.<host>`, joined to
    /// `server` (its API at `server_ip`).
    pub fn agent(&self, node: &str, host: u8, server: &Skiff, server_ip: &str) -> Result<JoinedAgent> {
        let netns = format!("{}-{host}", self.hub);
        run_ok(Command::new("ip").args(["netns", "add", &netns]))?;
        let ip = format!("10.98.0.{host}");
        let mut agent = JoinedAgent::prepare(&netns, node, &ip)?;
        self.link(&netns, host)?;
        let port = server.server_url()?.rsplit(':').next().unwrap_or("6443").to_string();
        let token = std::fs::read_to_string(server.data_dir.path().join("node-token"))?;
        agent.start(&format!("https://{server_ip}:{port}"), token.trim())?;
        Ok(agent)
    }

    pub fn etcd_log(&self) -> String {
        MEMBERS
            .iter()
            .map(|(name, _, _)| std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        kill_namespace_processes(&self.hub);
        release_namespace(&self.hub, Path::new(self.dir.path()));
    }
}
