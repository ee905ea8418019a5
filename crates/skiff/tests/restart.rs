//! The node agent survives itself: pods keep running through a SIGKILL of
//! `skiff server` and are re-adopted (same containers, same PIDs, logs
//! continuing, exits during the downtime reported with their real codes);
//! static pods run from a manifest directory and show as mirror pods.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{pod, Skiff, TEST_IMAGE};
use serde_json::Value;

/// The host PID the container's monitor recorded when it started.
fn container_pid(data: &Path, container_id: &str) -> Result<u64> {
    let id = container_id.split_once("://").context("runtime://id")?.1;
    let started: Value = serde_json::from_slice(&std::fs::read(
        data.join("containers").join(id).join("started.json"),
    )?)?;
    started["pid"].as_u64().context("pid")
}

fn alive(pid: u64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    matches!(state, Some(s) if s != 'Z')
}

fn ticks(skiff: &Skiff) -> Result<Vec<u64>> {
    let logs = skiff.kubectl(&["logs", "ticker"])?.ok()?.stdout;
    Ok(logs
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect())
}

#[test]
fn a_killed_server_re_adopts_its_pods_on_restart() -> Result<()> {
    let mut skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: ticker
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done\"]
    readinessProbe:
      exec: {{command: [\"true\"]}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: ender
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"sleep 3; echo bye; exit 3\"]
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    skiff.wait_for(Duration::from_secs(30), "both pods to run", || {
        Ok(
            pod(&skiff, "ticker")?["status"]["containerStatuses"][0]["ready"] == true
                && pod(&skiff, "ender")?["status"]["phase"] == "Running",
        )
    })?;
    let data = skiff.data_dir_path().to_path_buf();
    let before = pod(&skiff, "ticker")?;
    let status_before = before["status"]["containerStatuses"][0].clone();
    let container_id = status_before["containerID"]
        .as_str()
        .context("containerID")?
        .to_string();
    let pid = container_pid(&data, &container_id)?;
    let ender = pod(&skiff, "ender")?;
    let ender_id = ender["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .context("containerID")?
        .to_string();

    skiff.kill9()?;
    let pod_dirs = std::fs::read_dir(data.join("pods"))?.count();
    assert_eq!(pod_dirs, 2, "both pod directories stay");
    // While no agent runs, `ender` exits with 3; its monitor records that.
    let ender_exit = data
        .join("containers")
        .join(ender_id.split_once("://").context("id")?.1)
        .join("exit.json");
    skiff.wait_for(Duration::from_secs(15), "ender to exit unobserved", || {
        Ok(ender_exit.exists())
    })?;
    assert!(alive(pid), "the ticker's process runs on without skiff");
    // An agent before the node-wide tmpfs gave the token volume a tmpfs of
    // its own under the pod's directory; its containers have that one
    // mounted, so an adopting agent must keep writing there.
    let token_volume = before["spec"]["volumes"][0]["name"].as_str().context("token volume")?.to_string();
    let pod_dir = data.join("pods").join(format!("default_ticker_{}", before["metadata"]["uid"].as_str().context("uid")?));
    let own_tmpfs = pod_dir.join("volumes").join(&token_volume);
    std::fs::create_dir_all(&own_tmpfs)?;
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&own_tmpfs).status()?;
    anyhow::ensure!(mounted.success(), "mount a tmpfs at {}", own_tmpfs.display());
    // host-local's cursor just before the ticker's address: the restarted
    // agent, picking addresses itself, must know that one is taken.
    let ticker_ip: std::net::Ipv4Addr = before["status"]["podIP"].as_str().context("podIP")?.parse()?;
    let host_local = data.join("cni/ipam/skiff");
    std::fs::write(host_local.join("last_reserved_ip.0"), std::net::Ipv4Addr::from(u32::from(ticker_ip) - 1).to_string())?;

    skiff.restart()?;
    skiff.wait_for(Duration::from_secs(15), "the adopted pod's token written to its own tmpfs", || {
        Ok(own_tmpfs.join("token").exists())
    })?;
    skiff.wait_for(
        Duration::from_secs(30),
        "ender's exit to be reported",
        || Ok(pod(&skiff, "ender")?["status"]["phase"] == "Failed"),
    )?;
    let ender = pod(&skiff, "ender")?;
    let terminated = &ender["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 3, "{ender}");
    assert_eq!(terminated["reason"], "Error", "{ender}");
    assert_eq!(
        skiff.kubectl(&["logs", "ender"])?.ok()?.stdout.trim(),
        "bye"
    );

    let after = pod(&skiff, "ticker")?;
    let status_after = &after["status"]["containerStatuses"][0];
    assert_eq!(status_after["containerID"], status_before["containerID"]);
    assert_eq!(status_after["restartCount"], 0);
    assert_eq!(
        status_after["state"]["running"]["startedAt"],
        status_before["state"]["running"]["startedAt"]
    );
    assert_eq!(after["status"]["podIP"], before["status"]["podIP"]);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(container_pid(&data, &container_id)?, pid);
    assert!(alive(pid), "the same process still runs");
    // The log runs on without a gap across the downtime.
    let seen = ticks(&skiff)?;
    let last = *seen.last().context("ticks")?;
    skiff.wait_for(Duration::from_secs(10), "new ticks", || {
        Ok(ticks(&skiff)?.last().is_some_and(|t| *t > last + 3))
    })?;
    let seen = ticks(&skiff)?;
    let expected: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seen, expected, "ticks with no gap and no restart");
    // Probes, exec and deletion work on the adopted pod.
    skiff.wait_for(Duration::from_secs(10), "ticker ready", || {
        Ok(pod(&skiff, "ticker")?["status"]["containerStatuses"][0]["ready"] == true)
    })?;
    let exec = skiff
        .kubectl(&["exec", "ticker", "--", "echo", "inside"])?
        .ok()?;
    assert_eq!(exec.stdout.trim(), "inside");
    // A new pod gets another address than the ticker's, at the first try.
    skiff.kubectl(&["run", "newcomer", "--image", TEST_IMAGE, "--restart=Never", "--", "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"])?.ok()?;
    skiff.wait_for(Duration::from_secs(30), "the new pod to run", || {
        Ok(pod(&skiff, "newcomer")?["status"]["phase"] == "Running")
    })?;
    let newcomer = pod(&skiff, "newcomer")?;
    assert_ne!(newcomer["status"]["podIP"], ticker_ip.to_string(), "{newcomer}");
    assert!(!skiff.log().contains("host-local refused"), "the agent asked for a taken address:\n{}", skiff.log());
    std::fs::read_to_string(host_local.join(newcomer["status"]["podIP"].as_str().context("podIP")?))
        .context("host-local recorded the new pod's address")?;
    skiff
        .kubectl(&[
            "delete",
            "pod",
            "ticker",
            "ender",
            "newcomer",
            "--wait=true",
            "--timeout=30s",
        ])?
        .ok()?;
    assert!(!alive(pid), "deleting the adopted pod stopped its process");
    assert_eq!(std::fs::read_dir(data.join("containers"))?.count(), 0);
    Ok(())
}

#[test]
fn a_server_stopped_with_sigterm_leaves_its_pods_running() -> Result<()> {
    let mut skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: trapper
spec:
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 0.2; done\"]
"
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    skiff.wait_for(Duration::from_secs(30), "trapper to run", || {
        Ok(pod(&skiff, "trapper")?["status"]["containerStatuses"][0]["state"]["running"].is_object())
    })?;
    let before = pod(&skiff, "trapper")?["status"]["containerStatuses"][0].clone();
    let data = skiff.data_dir_path().to_path_buf();
    let pid = container_pid(&data, before["containerID"].as_str().context("containerID")?)?;

    let status = skiff.stop()?;
    assert!(status.success(), "{status:?}");
    assert!(alive(pid), "the container outlives a SIGTERM'd server");
    skiff.restart()?;
    skiff.wait_for(Duration::from_secs(30), "trapper re-adopted", || {
        Ok(pod(&skiff, "trapper")?["status"]["containerStatuses"][0]["ready"] == true)
    })?;
    let after = pod(&skiff, "trapper")?["status"]["containerStatuses"][0].clone();
    assert_eq!(after["containerID"], before["containerID"]);
    assert_eq!(after["restartCount"], 0);
    assert!(alive(pid));
    let logs = skiff.kubectl(&["logs", "trapper"])?.ok()?.stdout;
    assert!(!logs.contains("got TERM"), "{logs}");
    Ok(())
}

fn mirror_name(skiff: &Skiff) -> Result<String> {
    let node = skiff
        .kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])?
        .ok()?
        .stdout;
    Ok(format!("static-web-{}", node.trim()))
}

fn static_manifest(greeting: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: static-web
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo {greeting}; while true; do sleep 1; done\"]
"
    )
}

fn running_container_id(skiff: &Skiff, name: &str) -> Result<Option<String>> {
    let Ok(mirror) = pod(skiff, name) else {
        return Ok(None);
    };
    let status = &mirror["status"]["containerStatuses"][0];
    Ok(status["state"]["running"].is_object().then(|| {
        status["containerID"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }))
}

#[test]
fn static_pods_run_from_files_and_show_as_mirror_pods() -> Result<()> {
    let mut skiff = Skiff::start_node_with(&["--pod-manifest-path", "{data}/manifests"])?;
    let data = skiff.data_dir_path().to_path_buf();
    let file = data.join("manifests").join("web.yaml");
    std::fs::create_dir_all(data.join("manifests"))?;
    std::fs::write(&file, static_manifest("hello"))?;
    let name = mirror_name(&skiff)?;
    skiff.wait_for(Duration::from_secs(30), "the mirror pod to run", || {
        Ok(running_container_id(&skiff, &name)?.is_some())
    }).with_context(|| skiff.log())?;
    let mirror = pod(&skiff, &name)?;
    let annotations = &mirror["metadata"]["annotations"];
    assert_eq!(annotations["kubernetes.io/config.source"], "file");
    assert_eq!(
        annotations["kubernetes.io/config.mirror"],
        annotations["kubernetes.io/config.hash"]
    );
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(mirror["metadata"]["labels"]["app"], "web");
    assert_eq!(
        skiff.kubectl(&["logs", &name])?.ok()?.stdout.trim(),
        "hello"
    );
    let container = running_container_id(&skiff, &name)?.context("running")?;

    // Deleting the mirror pod does not stop the static pod; the mirror returns.
    let first_uid = mirror["metadata"]["uid"].clone();
    skiff
        .kubectl(&["delete", "pod", &name, "--timeout=30s"])?
        .ok()
        .with_context(|| skiff.log())?;
    skiff.wait_for(Duration::from_secs(30), "the mirror pod to return", || {
        let Ok(again) = pod(&skiff, &name) else {
            return Ok(false);
        };
        Ok(again["metadata"]["uid"] != first_uid
            && running_container_id(&skiff, &name)?.as_ref() == Some(&container))
    })?;

    // Static pods outlive the server, and are re-adopted.
    skiff.kill9()?;
    let pid = container_pid(&data, &container)?;
    std::thread::sleep(Duration::from_secs(1));
    assert!(alive(pid));
    skiff.restart()?;
    skiff.wait_for(
        Duration::from_secs(30),
        "the static pod after a restart",
        || Ok(running_container_id(&skiff, &name)?.as_ref() == Some(&container)),
    )?;
    assert!(alive(pid));

    // An edited file is a new pod.
    std::fs::write(&file, static_manifest("edited"))?;
    skiff.wait_for(Duration::from_secs(40), "the edited static pod", || {
        Ok(
            running_container_id(&skiff, &name)?.is_some_and(|id| id != container)
                && skiff.kubectl(&["logs", &name])?.stdout.trim() == "edited",
        )
    })?;
    assert!(!alive(pid), "the old version was stopped");

    // A removed file removes the pod and its mirror.
    let edited = container_pid(
        &data,
        &running_container_id(&skiff, &name)?.context("running")?,
    )?;
    std::fs::remove_file(&file)?;
    skiff.wait_for(Duration::from_secs(30), "the mirror pod to go", || {
        Ok(!skiff
            .kubectl(&["get", "pods", "-o", "name"])?
            .ok()?
            .stdout
            .contains("static-web"))
    })?;
    skiff.wait_for(Duration::from_secs(15), "the static pod to stop", || {
        Ok(!alive(edited))
    })?;
    Ok(())
}
