//! Pod sandboxes and pod networking with the real CNI plugins, inside a
//! network namespace this test creates (the "node"), so pod addresses never
//! leave it. Everything is removed afterwards, failing or not.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use skiff_runtime::network::{Attachment, Cni, DefaultNetwork, PortMapping};
use skiff_runtime::sandbox::Sandbox;

/// A network namespace made with `ip netns add`, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Result<Self> {
        let name = format!("skiff-test-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        ensure!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()?
                .success(),
            "ip netns add {name}"
        );
        Ok(Self(name))
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.0)
    }

    fn exec(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Stops the sandboxes on drop.
struct Sandboxes(Vec<Sandbox>);

impl Drop for Sandboxes {
    fn drop(&mut self) {
        for sandbox in &self.0 {
            sandbox.stop();
        }
    }
}

fn in_pod(sandbox: &Sandbox, args: &[&str]) -> Result<std::process::Output> {
    let net = format!("--net={}", sandbox.namespace("net").display());
    let uts = format!("--uts={}", sandbox.namespace("uts").display());
    Ok(Command::new("nsenter")
        .arg(net)
        .arg(uts)
        .args(args)
        .output()?)
}

#[test]
fn sandboxes_get_their_own_ip_hostname_and_reach_each_other() -> Result<()> {
    let node = Netns::new("node")?;
    let dir = tempfile::tempdir()?;
    let cni = Cni {
        bin_dir: "/usr/lib/cni".into(),
        conf_dir: dir.path().join("net.d"),
        cache_dir: dir.path().join("cache"),
    };
    let ipam = dir.path().join("ipam");
    cni.write_default_config(
        &DefaultNetwork {
            bridge: "skiff0".into(),
            pod_cidr: "10.42.0.0/24".into(),
        },
        &ipam,
    )?;
    let skiff = PathBuf::from(env!("CARGO_BIN_EXE_skiff"));
    let node_path = node.path();

    // Plugins run from a thread that has joined the node namespace.
    let outcome = std::thread::spawn(move || -> Result<()> {
        let node_ns = std::fs::File::open(&node_path)?;
        nix::sched::setns(node_ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            ensure!(Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()?
                .success());
            let sandboxes = Sandboxes(vec![
                Sandbox::start(&skiff, "pod-a")?,
                Sandbox::start(&skiff, "pod-b")?,
            ]);
            let (a, b) = (&sandboxes.0[0], &sandboxes.0[1]);
            ensure!(
                std::fs::read_link(a.namespace("net"))? != std::fs::read_link("/proc/self/ns/net")?,
                "own network namespace"
            );
            let hostname = in_pod(a, &["hostname"])?;
            assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "pod-a");

            let attach = |sandbox: &Sandbox, name: &str, ports: Vec<PortMapping>| Attachment {
                id: format!("sandbox-{name}"),
                netns: sandbox.namespace("net"),
                namespace: "default".into(),
                name: name.into(),
                ports,
            };
            let published = vec![PortMapping {
                host_port: 18080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }];
            let ip_a = cni.add(&attach(a, "a", published)).await?.ip;
            let ip_b = cni.add(&attach(b, "b", Vec::new())).await?.ip;
            assert!(
                ip_a.starts_with("10.42.0.") && ip_b.starts_with("10.42.0.") && ip_a != ip_b,
                "{ip_a} {ip_b}"
            );

            let ping = in_pod(a, &["busybox", "ping", "-c", "1", "-W", "2", &ip_b])?;
            ensure!(
                ping.status.success(),
                "pod a reaches pod b: {}{}",
                String::from_utf8_lossy(&ping.stdout),
                String::from_utf8_lossy(&ping.stderr)
            );
            let from_node = Command::new("busybox")
                .args(["ping", "-c", "1", "-W", "2", &ip_a])
                .output()?;
            ensure!(
                from_node.status.success(),
                "the node reaches pod a: {}",
                String::from_utf8_lossy(&from_node.stderr)
            );

            // A server in pod a, reached by pod IP and through its hostPort.
            let www = tempfile::tempdir()?;
            std::fs::write(www.path().join("index.html"), "hello from pod a\n")?;
            let www_dir = www.path().display().to_string();
            let mut server = Command::new("nsenter")
                .arg(format!("--net={}", a.namespace("net").display()))
                .args(["busybox", "httpd", "-f", "-p", "80", "-h", &www_dir])
                .spawn()?;
            std::thread::sleep(std::time::Duration::from_millis(300));
            let direct = Command::new("busybox")
                .args(["wget", "-q", "-O", "-", &format!("http://{ip_a}/")])
                .output()?;
            let via_host_port = Command::new("busybox")
                .args(["wget", "-q", "-O", "-", "http://10.42.0.1:18080/"])
                .output()?;
            let _ = server.kill();
            let _ = server.wait();
            assert_eq!(
                String::from_utf8_lossy(&direct.stdout),
                "hello from pod a\n"
            );
            assert_eq!(
                String::from_utf8_lossy(&via_host_port.stdout),
                "hello from pod a\n"
            );

            for id in ["sandbox-a", "sandbox-b"] {
                cni.remove(id).await?;
                cni.remove(id).await?; // idempotent
            }
            assert!(cni.attached().is_empty());
            drop(sandboxes);
            Ok(())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("node thread panicked"))?;
    outcome?;

    // Nothing left behind: no veth, no IP reservation, no per-pod NAT chain.
    let links = String::from_utf8_lossy(&node.exec(&["ip", "-o", "link"])?.stdout).into_owned();
    assert!(!links.contains("veth"), "{links}");
    let reserved: Vec<String> = std::fs::read_dir(ipam.join("skiff"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(reserved.is_empty(), "IPs still reserved: {reserved:?}");
    let nat =
        String::from_utf8_lossy(&node.exec(&["iptables", "-t", "nat", "-S"])?.stdout).into_owned();
    assert!(
        !nat.lines()
            .any(|l| l.contains("sandbox-a") || l.contains("sandbox-b")),
        "{nat}"
    );
    let _ = nat.lines().next().context("iptables answered")?;
    Ok(())
}
