//! The scheduler, observed through kubectl: pods bind to nodes that fit,
//! and pods that fit nowhere stay Pending with upstream's condition and event.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::Skiff;

const NODE: &str = "apiVersion: v1
kind: Node
metadata:
  name: n1
  labels:
    kubernetes.io/hostname: n1
status:
  allocatable: {cpu: \"2\", memory: 4Gi, pods: \"110\"}
  capacity: {cpu: \"2\", memory: 4Gi, pods: \"110\"}
";

fn pod(name: &str, memory: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra}  containers:\n  - name: c\n    image: busybox\n    resources:\n      requests: {{memory: {memory}}}\n"
    )
}

fn node_of(skiff: &Skiff, name: &str) -> Result<String> {
    let pod = skiff.get_json(&["get", "pod", name])?;
    Ok(pod["spec"]["nodeName"].as_str().unwrap_or("").to_string())
}

#[test]
fn pods_bind_to_fitting_nodes_and_others_stay_pending() -> Result<()> {
    let skiff = Skiff::start()?;
    skiff
        .kubectl_stdin(&["create", "-f", "-"], &pod("early", "64Mi", ""))?
        .ok()?;
    skiff.wait_for(
        Duration::from_secs(10),
        "FailedScheduling without nodes",
        || {
            Ok(skiff
                .kubectl(&["describe", "pod", "early"])?
                .stdout
                .contains("no nodes available to schedule pods"))
        },
    )?;

    skiff.kubectl_stdin(&["create", "-f", "-"], NODE)?.ok()?;
    skiff.wait_for(
        Duration::from_secs(10),
        "early to be bound once a node exists",
        || Ok(node_of(&skiff, "early")? == "n1"),
    )?;
    let describe = skiff.kubectl(&["describe", "pod", "early"])?.ok()?;
    assert!(
        describe
            .stdout
            .contains("Successfully assigned default/early to n1"),
        "{}",
        describe.stdout
    );
    let wide = skiff
        .kubectl(&["get", "pod", "early", "-o", "wide", "--no-headers"])?
        .ok()?;
    assert!(
        wide.stdout.split_whitespace().nth(6) == Some("n1"),
        "{}",
        wide.stdout
    );

    skiff
        .kubectl_stdin(&["create", "-f", "-"], &pod("huge", "1000Gi", ""))?
        .ok()?;
    skiff.wait_for(
        Duration::from_secs(10),
        "huge to be reported unschedulable",
        || {
            let pod = skiff.get_json(&["get", "pod", "huge"])?;
            Ok(pod["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter().any(|c| {
                    c["type"] == "PodScheduled"
                        && c["status"] == "False"
                        && c["reason"] == "Unschedulable"
                })
            }))
        },
    )?;
    let events = skiff.kubectl(&["describe", "pod", "huge"])?.ok()?;
    assert!(
        events.stdout.contains("FailedScheduling")
            && events
                .stdout
                .contains("0/1 nodes are available: 1 Insufficient memory."),
        "{}",
        events.stdout
    );
    assert_eq!(node_of(&skiff, "huge")?, "");
    let row = skiff
        .kubectl(&["get", "pod", "huge", "--no-headers"])?
        .ok()?;
    assert!(
        row.stdout.contains("0/1") && row.stdout.contains("Pending"),
        "{}",
        row.stdout
    );
    Ok(())
}

#[test]
fn node_selector_waits_for_a_matching_label() -> Result<()> {
    let skiff = Skiff::start()?;
    skiff.kubectl_stdin(&["create", "-f", "-"], NODE)?.ok()?;
    skiff
        .kubectl_stdin(
            &["create", "-f", "-"],
            &pod("picky", "64Mi", "  nodeSelector:\n    disk: ssd\n"),
        )?
        .ok()?;
    skiff.wait_for(Duration::from_secs(10), "picky to be unschedulable", || {
        Ok(skiff
            .kubectl(&["describe", "pod", "picky"])?
            .stdout
            .contains(
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
            ))
    })?;
    skiff.kubectl(&["label", "node", "n1", "disk=ssd"])?.ok()?;
    skiff.wait_for(
        Duration::from_secs(10),
        "picky to be bound after the label",
        || Ok(node_of(&skiff, "picky")? == "n1"),
    )?;

    // A pod naming its node skips the scheduler entirely.
    skiff
        .kubectl_stdin(
            &["create", "-f", "-"],
            &pod("pinned", "64Mi", "  nodeName: elsewhere\n"),
        )?
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node_of(&skiff, "pinned")?, "elsewhere");
    let describe = skiff.kubectl(&["describe", "pod", "pinned"])?.ok()?;
    assert!(
        !describe.stdout.contains("Scheduled"),
        "{}",
        describe.stdout
    );
    let _ = describe.stdout.lines().last().context("output")?;
    Ok(())
}
