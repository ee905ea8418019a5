//! PodSpec fields beyond containers and volumes, with real pods: name
//! resolution (dnsPolicy, dnsConfig, subdomain, setHostnameAsFQDN),
//! recursive read-only mounts, and fields Skiff does not serve, which are
//! refused or warned about out loud, never silently ignored.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{pod, Skiff, TEST_IMAGE};

fn exec(skiff: &Skiff, name: &str, script: &str) -> Result<String> {
    Ok(skiff.kubectl(&["exec", name, "--", "sh", "-c", script])?.ok()?.stdout)
}

fn wait_phase(skiff: &Skiff, name: &str, phase: &str) -> Result<serde_json::Value> {
    let mut last = serde_json::Value::Null;
    skiff
        .wait_for(Duration::from_secs(60), &format!("{name} to be {phase}"), || {
            last = pod(skiff, name)?;
            Ok(last["status"]["phase"] == phase)
        })
        .with_context(|| format!("{name}: {:#}", last["status"]))?;
    Ok(last)
}

#[test]
fn dns_settings_and_fully_qualified_names_reach_the_pod() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: named
spec:
  hostname: web-0
  subdomain: db
  setHostnameAsFQDN: true
  dnsPolicy: None
  dnsConfig:
    nameservers: ["10.0.0.10"]
    searches: ["corp.example"]
    options: [{{name: ndots, value: "2"}}]
  volumes:
  - name: scratch
    emptyDir: {{}}
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumeMounts:
    - {{name: scratch, mountPath: /ro, readOnly: true, recursiveReadOnly: Enabled}}
"#
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    wait_phase(&skiff, "named", "Running")?;
    assert_eq!(
        exec(&skiff, "named", "cat /etc/resolv.conf")?,
        "search corp.example\nnameserver 10.0.0.10\noptions ndots:2\n"
    );
    assert_eq!(exec(&skiff, "named", "hostname")?.trim(), "web-0.db.default.svc.cluster.local");
    let hosts = exec(&skiff, "named", "cat /etc/hosts")?;
    assert!(hosts.lines().any(|l| l.ends_with("\tweb-0.db.default.svc.cluster.local\tweb-0")), "{hosts}");
    let mounts = exec(&skiff, "named", "grep ' /ro ' /proc/self/mountinfo")?;
    assert!(mounts.split_whitespace().nth(5).is_some_and(|o| o.split(',').any(|f| f == "ro")), "{mounts}");
    Ok(())
}

#[test]
fn fields_skiff_does_not_serve_are_refused_or_warned_about() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: sandboxed
spec:
  runtimeClassName: gvisor
  containers:
  - name: c
    image: {TEST_IMAGE}
---
apiVersion: v1
kind: Pod
metadata:
  name: spread
  labels: {{app: spread}}
spec:
  topologySpreadConstraints:
  - {{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {{matchLabels: {{app: spread}}}}}}
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    let refused = wait_phase(&skiff, "sandboxed", "Failed")?;
    assert_eq!(refused["status"]["reason"], "UnsupportedField");
    assert_eq!(
        refused["status"]["message"],
        "Pod was rejected: spec.runtimeClassName is not supported by Skiff: Skiff runs one OCI runtime (runc or crun) and serves no RuntimeClasses"
    );
    wait_phase(&skiff, "spread", "Running")?;
    let events = skiff.get_json(&["get", "events", "--field-selector", "involvedObject.name=spread"])?;
    let warned = events["items"].as_array().into_iter().flatten().any(|e| {
        e["reason"] == "UnsupportedField"
            && e["type"] == "Warning"
            && e["message"].as_str().is_some_and(|m| m.starts_with("spec.topologySpreadConstraints is not honoured"))
    });
    assert!(warned, "{events:#}");
    Ok(())
}
