//! Real pods, end to end: `skiff server` with its node agent inside a
//! network namespace the test creates, driven by the real kubectl.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{Skiff, TEST_IMAGE};
use serde_json::Value;

fn pod_json(skiff: &Skiff, name: &str) -> Result<Value> {
    skiff.get_json(&["get", "pod", name])
}

fn wait_phase(skiff: &Skiff, name: &str, phase: &str) -> Result<Value> {
    let mut last = Value::Null;
    let found = skiff.wait_for(
        Duration::from_secs(60),
        &format!("pod {name} to be {phase}"),
        || {
            last = pod_json(skiff, name)?;
            Ok(last["status"]["phase"] == phase)
        },
    );
    found.with_context(|| {
        format!(
            "last seen: {}",
            serde_json::to_string_pretty(&last["status"]).unwrap_or_default()
        )
    })?;
    Ok(last)
}

#[test]
fn a_pod_runs_serves_http_on_its_ip_and_is_deleted() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"echo hello from $(POD_NAME) > /tmp/index.html; httpd -f -p 80 -h /tmp & trap 'exit 0' TERM; wait\"]
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    ports:
    - containerPort: 80
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    let pod = wait_phase(&skiff, "web", "Running")?;
    let ip = pod["status"]["podIP"]
        .as_str()
        .context("pod IP")?
        .to_string();
    assert!(ip.starts_with("10.42.0."), "{ip}");
    assert_eq!(pod["spec"]["nodeName"], "skiff-e2e");
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["ready"], true, "{status}\n{}", skiff.node_logs());
    assert!(status["containerID"]
        .as_str()
        .is_some_and(|id| id.starts_with("runc://") || id.starts_with("crun://")));

    let page = skiff
        .on_node(&["busybox", "wget", "-q", "-O", "-", &format!("http://{ip}/")])?
        .ok()?;
    assert_eq!(page.stdout, "hello from web\n");

    let wide = skiff
        .kubectl(&["get", "pod", "web", "-o", "wide", "--no-headers"])?
        .ok()?;
    let cells: Vec<&str> = wide.stdout.split_whitespace().collect();
    assert_eq!(
        (cells[1], cells[2], cells[5], cells[6]),
        ("1/1", "Running", ip.as_str(), "skiff-e2e"),
        "{}",
        wide.stdout
    );
    let describe = skiff.kubectl(&["describe", "pod", "web"])?.ok()?;
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(
            describe.stdout.contains(reason),
            "{reason} event missing:\n{}",
            describe.stdout
        );
    }
    let nodes = skiff.kubectl(&["get", "nodes", "--no-headers"])?.ok()?;
    assert!(
        nodes.stdout.starts_with("skiff-e2e") && nodes.stdout.contains("Ready"),
        "{}",
        nodes.stdout
    );

    let started = std::time::Instant::now();
    skiff.kubectl(&["delete", "pod", "web"])?.ok()?;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the pod traps SIGTERM and exits, so deletion is quick"
    );
    skiff.kubectl(&["get", "pod", "web"])?.failed()?;
    let unreachable = skiff.on_node(&[
        "busybox",
        "wget",
        "-q",
        "-T",
        "1",
        "-O",
        "-",
        &format!("http://{ip}/"),
    ])?;
    assert!(!unreachable.status.success(), "the pod's address is gone");
    Ok(())
}

#[test]
fn exit_codes_phases_and_the_grace_period() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let pod = |name: &str, policy: &str, script: &str, grace: u32| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: {grace}\n  containers:\n  - name: c\n    image: {TEST_IMAGE}\n    command: [\"sh\", \"-c\", \"{script}\"]\n"
        )
    };
    skiff
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &pod("fails", "Never", "echo bye; exit 1", 30),
        )?
        .ok()?;
    skiff
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &pod("works", "OnFailure", "exit 0", 30),
        )?
        .ok()?;
    skiff
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &pod(
                "stubborn",
                "Always",
                "trap '' TERM; while true; do sleep 1; done",
                2,
            ),
        )?
        .ok()?;

    let failed = wait_phase(&skiff, "fails", "Failed")?;
    let terminated = &failed["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (
            terminated["exitCode"].as_i64(),
            terminated["reason"].as_str()
        ),
        (Some(1), Some("Error"))
    );
    let row = skiff
        .kubectl(&["get", "pod", "fails", "--no-headers"])?
        .ok()?;
    assert!(
        row.stdout.contains("0/1") && row.stdout.contains("Error"),
        "{}",
        row.stdout
    );

    let succeeded = wait_phase(&skiff, "works", "Succeeded")?;
    assert_eq!(
        succeeded["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    let row = skiff
        .kubectl(&["get", "pod", "works", "--no-headers"])?
        .ok()?;
    assert!(row.stdout.contains("Completed"), "{}", row.stdout);
    let ready = succeeded["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned());
    assert_eq!(
        ready.map(|r| r["reason"].clone()),
        Some(Value::from("PodCompleted"))
    );

    // Ignores SIGTERM: killed when the 2 s grace period ends.
    wait_phase(&skiff, "stubborn", "Running")?;
    let started = std::time::Instant::now();
    skiff.kubectl(&["delete", "pod", "stubborn"])?.ok()?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(12),
        "deleted after {took:?}"
    );

    // Terminal pods go at once.
    let started = std::time::Instant::now();
    skiff.kubectl(&["delete", "pod", "fails", "works"])?.ok()?;
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}
