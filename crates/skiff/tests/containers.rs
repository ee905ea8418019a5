//! Real containers (runc or crun from OCI bundles, overlay rootfs over the
//! image's layers) in a pod sandbox, each under its own `skiff monitor`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use skiff_runtime::container::spec::{oci_config, BindMount, ContainerConfig};
use skiff_runtime::container::{detect_runtime, read_state, Exited, OciRuntime, Started};
use skiff_runtime::image::build::ImageSpec;
use skiff_runtime::image::ImageStore;
use skiff_runtime::sandbox::Sandbox;

struct Node {
    dir: tempfile::TempDir,
    hostname: String,
    runtime: OciRuntime,
    layers: Vec<PathBuf>,
    sandbox: Sandbox,
    bundles: Vec<PathBuf>,
}

impl Node {
    fn new(hostname: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let archive = dir.path().join("busybox.tar");
        ImageSpec::busybox(Path::new("/bin/busybox"))?
            .write_oci_archive("skiff.local/busybox:test", &archive)?;
        let store = ImageStore::open(&dir.path().join("images"))?;
        let image = store.import(&archive)?.pop().context("image")?;
        let layers = store.layer_dirs(&image)?;
        let skiff = PathBuf::from(env!("CARGO_BIN_EXE_skiff"));
        let runtime = OciRuntime {
            binary: detect_runtime(None).context("runc or crun installed")?,
            root: dir.path().join("runtime"),
            skiff: skiff.clone(),
        };
        let sandbox = Sandbox::start(&skiff, hostname)?;
        // What the CNI loopback plugin does for real pods.
        let lo = std::process::Command::new("nsenter")
            .arg(format!("--net={}", sandbox.namespace("net").display()))
            .args(["ip", "link", "set", "lo", "up"])
            .status()?;
        ensure!(lo.success(), "bring lo up in the sandbox");
        Ok(Self {
            dir,
            hostname: hostname.to_string(),
            runtime,
            layers,
            sandbox,
            bundles: Vec::new(),
        })
    }

    /// Runs `script` in a container; returns the monitor and the log path.
    fn run(
        &mut self,
        id: &str,
        script: &str,
        mounts: Vec<BindMount>,
    ) -> Result<(tokio::process::Child, PathBuf, PathBuf)> {
        let bundle = self.dir.path().join("bundles").join(id);
        let config = ContainerConfig {
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/bin".into()],
            // The runtime sets this in the shared UTS namespace, so it is the pod's.
            hostname: self.hostname.clone(),
            namespaces: skiff_runtime::container::spec::Namespaces::of_sandbox(self.sandbox.pid),
            mounts,
            cgroups_path: format!("/skiff-test/{}/{id}", std::process::id()),
            ..Default::default()
        };
        self.runtime
            .prepare_bundle(&bundle, &self.layers, &oci_config(&config))?;
        self.bundles.push(bundle.clone());
        let log = self.dir.path().join("logs").join(format!("{id}.log"));
        let child = self.runtime.start(&bundle, id, &log, Default::default())?;
        Ok((child, bundle, log))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Plain blocking calls: this may run inside the test's async runtime.
        for bundle in &self.bundles {
            if let Some(id) = bundle.file_name() {
                let _ = std::process::Command::new(&self.runtime.binary)
                    .arg("--root")
                    .arg(&self.runtime.root)
                    .args(["delete", "--force"])
                    .arg(id)
                    .output();
            }
        }
        for bundle in &self.bundles {
            let _ = self.runtime.remove_bundle(bundle);
        }
        self.sandbox.stop();
        remove_test_cgroups();
    }
}

/// Removes this test process's cgroup parents in every hierarchy (v1 and v2).
fn remove_test_cgroups() {
    let mine = format!("skiff-test/{}", std::process::id());
    let roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .chain([PathBuf::from("/sys/fs/cgroup")])
        .collect();
    for root in roots {
        let dir = root.join(&mine);
        for child in std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
        {
            let _ = std::fs::remove_dir(child.path());
        }
        let _ = std::fs::remove_dir(&dir);
        let _ = std::fs::remove_dir(root.join("skiff-test"));
    }
}

async fn wait_started(bundle: &Path) -> Result<Started> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(started) = read_state::<Started>(bundle, "started.json") {
            return Ok(started);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "container in {} did not start",
            bundle.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_exit(bundle: &Path) -> Result<Exited> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exited) = read_state::<Exited>(bundle, "exit.json") {
            return Ok(exited);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "container in {} did not exit",
            bundle.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cri_lines(log: &Path) -> Result<Vec<(String, String)>> {
    Ok(std::fs::read_to_string(log)?
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (_time, stream, tag, text) = (
                parts.next()?,
                parts.next()?,
                parts.next()?,
                parts.next().unwrap_or(""),
            );
            (tag == "F").then(|| (stream.to_string(), text.to_string()))
        })
        .collect())
}

#[tokio::test]
async fn a_container_runs_logs_and_reports_its_exit_code() -> Result<()> {
    let mut node = Node::new("pod-a")?;
    let (mut monitor, bundle, log) = node.run(
        "c1",
        "echo hello; echo oops >&2; hostname; exit 3",
        Vec::new(),
    )?;
    tokio::time::timeout(Duration::from_secs(30), monitor.wait()).await??;
    let exited: Exited = read_state(&bundle, "exit.json").context("exit.json")?;
    assert_eq!(exited.exit_code, 3);
    assert!(exited.error.is_none());
    let started: Started = read_state(&bundle, "started.json").context("started.json")?;
    assert!(started.pid > 1);
    let lines = cri_lines(&log)?;
    assert!(
        lines.contains(&("stdout".into(), "hello".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stderr".into(), "oops".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stdout".into(), "pod-a".into())),
        "the sandbox's hostname: {lines:?}"
    );
    let first = std::fs::read_to_string(&log)?;
    assert!(
        first
            .split(' ')
            .next()
            .is_some_and(|t| t.ends_with('Z') && t.contains('.')),
        "RFC3339Nano timestamps: {first}"
    );
    Ok(())
}

#[tokio::test]
async fn containers_of_a_pod_share_localhost_and_volumes() -> Result<()> {
    let mut node = Node::new("pod-b")?;
    let shared = node.dir.path().join("shared");
    std::fs::create_dir_all(&shared)?;
    let hosts = node.dir.path().join("hosts");
    std::fs::write(
        &hosts,
        skiff_runtime::sandbox::hosts_file(None, "pod-b", &[]),
    )?;
    let volume = || {
        vec![
            BindMount {
                source: shared.display().to_string(),
                destination: "/data".into(),
                read_only: false,
                ..Default::default()
            },
            BindMount {
                source: hosts.display().to_string(),
                destination: "/etc/hosts".into(),
                read_only: false,
                ..Default::default()
            },
        ]
    };
    let (_server, server_bundle, _) = node.run(
        "web",
        "echo 'hello from web' > /data/index.html; httpd -f -p 127.0.0.1:8080 -h /data & trap 'kill $!; exit 0' TERM; wait",
        volume(),
    )?;
    let (mut client, client_bundle, client_log) = node.run(
        "client",
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://localhost:8080/ && exit 0; sleep 0.3; done; exit 1",
        volume(),
    )?;
    tokio::time::timeout(Duration::from_secs(30), client.wait()).await??;
    let exited: Exited = read_state(&client_bundle, "exit.json").context("exit.json")?;
    let lines = cri_lines(&client_log)?;
    ensure!(exited.exit_code == 0, "client failed: {lines:?}");
    assert!(
        lines.contains(&("stdout".into(), "hello from web".into())),
        "{lines:?}"
    );

    // The server traps SIGTERM and exits cleanly. It may answer before its
    // monitor has written started.json, so wait for the record.
    let started = wait_started(&server_bundle).await?;
    assert!(Path::new(&format!("/proc/{}", started.pid)).exists());
    // Its rootfs overlay lives in its monitor's mount namespace only.
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let rootfs = server_bundle.join("rootfs").display().to_string();
    assert!(!host_mounts.contains(&rootfs), "the overlay is not in the host's mount table");
    let container_mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", started.pid))?;
    assert!(container_mounts.lines().any(|l| l.contains(" / / ") && l.contains("overlay")), "{container_mounts}");
    node.runtime.kill("web", "TERM").await?;
    let exited = wait_exit(&server_bundle).await?;
    assert_eq!((exited.exit_code, exited.signal), (0, None));

    // PID 1 without a TERM handler ignores SIGTERM; SIGKILL ends it with 137.
    let (_stubborn, stubborn_bundle, _) = node.run("stubborn", "exec sleep 1000", Vec::new())?;
    // Before the runtime started it, `runc init` would die of the signal.
    wait_started(&stubborn_bundle).await?;
    node.runtime.kill("stubborn", "TERM").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        read_state::<Exited>(&stubborn_bundle, "exit.json").is_none(),
        "SIGTERM is ignored by a handler-less PID 1"
    );
    node.runtime.kill("stubborn", "KILL").await?;
    let killed = wait_exit(&stubborn_bundle).await?;
    assert_eq!((killed.exit_code, killed.signal), (137, Some(9)));
    node.runtime.delete("stubborn").await?;
    node.runtime.remove_bundle(&stubborn_bundle)?;

    // Teardown leaves no mount behind.
    for (id, bundle) in [("web", &server_bundle), ("client", &client_bundle)] {
        node.runtime.delete(id).await?;
        node.runtime.remove_bundle(bundle)?;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(
        !mounts.contains(&node.dir.path().display().to_string()),
        "no mount left"
    );
    Ok(())
}
