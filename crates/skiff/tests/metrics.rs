//! `kubectl top pod` and `kubectl top node` from the node's cgroups, with
//! no metrics-server installed; the Python client reads the same API.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Skiff, TEST_IMAGE};

/// The CPU column of `kubectl top` (`950m`, `1`) in millicores.
fn millicores(text: &str) -> Option<u64> {
    match text.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => text.parse::<u64>().ok().map(|cores| cores * 1000),
    }
}

#[test]
fn kubectl_top_shows_what_pods_and_the_node_use() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: burner
  labels: {{app: burner}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: burn
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"while :; do :; done\"]
  - name: idle
    image: {TEST_IMAGE}
    command: [\"sleep\", \"3600\"]
"
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    skiff.wait_for(Duration::from_secs(30), "burner to run", || {
        Ok(skiff.get_json(&["get", "pod", "burner"])?["status"]["phase"] == "Running")
    })?;
    // The first scrape only starts the rate (as on a fresh metrics-server).
    let mut rows = String::new();
    skiff.wait_for(Duration::from_secs(30), "pod metrics", || {
        let run = skiff.kubectl(&["top", "pod", "burner", "--containers"])?;
        rows = run.stdout;
        Ok(run.status.success())
    })?;
    // POD NAME CPU(cores) MEMORY(bytes)
    let burn: Vec<&str> = rows
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("burn"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(burn.len(), 4, "{rows}");
    assert!(millicores(burn[2]).is_some_and(|m| m >= 200), "a busy loop uses CPU: {rows}");
    assert!(burn[3].ends_with("Mi"), "{rows}");
    let idle = rows.lines().find(|l| l.split_whitespace().nth(1) == Some("idle"));
    assert!(idle.is_some_and(|l| l.split_whitespace().nth(2).and_then(millicores).is_some_and(|m| m < 50)), "{rows}");
    // Lists, label selectors and the node.
    let listed = skiff.kubectl(&["top", "pod", "-l", "app=burner"])?.ok()?;
    assert!(listed.stdout.lines().nth(1).is_some_and(|l| l.starts_with("burner ")), "{listed:?}");
    let node = skiff.kubectl(&["top", "node"])?.ok()?;
    let row: Vec<&str> = node.stdout.lines().nth(1).map(|l| l.split_whitespace().collect()).unwrap_or_default();
    assert_eq!(row.first(), Some(&"skiff-e2e"), "{node:?}");
    assert!(row.get(1).and_then(|c| millicores(c)).is_some_and(|m| m >= 200), "{node:?}");
    assert!(row.get(2).is_some_and(|p| p.ends_with('%')), "{node:?}");
    let missing = skiff.kubectl(&["top", "pod", "nope"])?;
    assert!(
        missing.stderr.contains("pods.metrics.k8s.io \"default/nope\" not found"),
        "{missing:?}"
    );
    let stdout = skiff.python("top.py", &[])?;
    assert_eq!(stdout.trim(), "['burn', 'idle'] NodeMetrics");
    Ok(())
}
