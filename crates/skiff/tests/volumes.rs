//! Data into pods with real pods and the real kubectl: configMap, secret,
//! downwardAPI, projected and hostPath volumes, env from ConfigMaps and
//! Secrets, updates that reach running pods, sources that are missing
//! (the pod waits, says why and starts once they appear), and volumes the
//! node cannot serve (said out loud, never Running without them).

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{pod, Skiff, TEST_IMAGE};
use serde_json::Value;

fn apply(skiff: &Skiff, manifest: &str) -> Result<()> {
    skiff.kubectl_stdin(&["apply", "-f", "-"], manifest)?.ok()?;
    Ok(())
}

fn phase(skiff: &Skiff, name: &str) -> String {
    pod(skiff, name)
        .map(|p| p["status"]["phase"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn wait_running(skiff: &Skiff, name: &str) -> Result<()> {
    skiff
        .wait_for(Duration::from_secs(60), &format!("{name} to run"), || Ok(phase(skiff, name) == "Running"))
        .with_context(|| format!("{name}: {:#}", pod(skiff, name).unwrap_or_default()["status"]))
}

/// Runs a shell command in the pod's container and returns its stdout.
fn exec(skiff: &Skiff, name: &str, script: &str) -> Result<String> {
    Ok(skiff.kubectl(&["exec", name, "--", "sh", "-c", script])?.ok()?.stdout)
}

fn event_with(skiff: &Skiff, name: &str, reason: &str, message: &str) -> Result<bool> {
    let selector = format!("involvedObject.name={name}");
    let events = skiff.get_json(&["get", "events", "--field-selector", &selector])?;
    Ok(events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["reason"] == reason && e["message"].as_str().is_some_and(|m| m.contains(message))))
}

fn wait_event(skiff: &Skiff, name: &str, reason: &str, message: &str) -> Result<()> {
    skiff
        .wait_for(Duration::from_secs(60), &format!("{reason} on {name}: {message}"), || {
            event_with(skiff, name, reason, message)
        })
        .with_context(|| {
            let selector = format!("involvedObject.name={name}");
            skiff
                .kubectl(&["get", "events", "--field-selector", &selector])
                .map(|r| r.stdout)
                .unwrap_or_default()
        })
}

fn waiting_state(skiff: &Skiff, name: &str) -> Value {
    pod(skiff, name).unwrap_or_default()["status"]["containerStatuses"][0]["state"]["waiting"].clone()
}

#[test]
fn config_maps_secrets_and_the_downward_api_reach_pods_and_follow_updates() -> Result<()> {
    let skiff = Skiff::start_node()?;
    // The Secret's value is broken over lines, as a YAML block writes it:
    // Go's base64 decoder (and so Kubernetes) accepts that.
    let manifest = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
  size: L
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
data:
  password: |
    aHVudGVy
    Mg==
---
apiVersion: v1
kind: Pod
metadata:
  name: reader
  labels:
    tier: front
spec:
  volumes:
  - name: config
    configMap:
      name: settings
      items:
      - {{key: color, path: color, mode: 0600}}
      - {{key: size, path: nested/size}}
  - name: whole
    configMap:
      name: settings
  - name: secret
    secret:
      secretName: creds
      defaultMode: 0400
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
  - name: all
    projected:
      sources:
      - configMap: {{name: settings, items: [{{key: color, path: color}}]}}
      - secret: {{name: creds}}
      - downwardAPI: {{items: [{{path: name, fieldRef: {{fieldPath: metadata.name}}}}]}}
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    env:
    - {{name: COLOR, valueFrom: {{configMapKeyRef: {{name: settings, key: color}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    envFrom:
    - {{prefix: CFG_, configMapRef: {{name: settings}}}}
    volumeMounts:
    - {{name: config, mountPath: /config}}
    - {{name: whole, mountPath: /pinned/color, subPath: color}}
    - {{name: secret, mountPath: /secret}}
    - {{name: info, mountPath: /info}}
    - {{name: all, mountPath: /all}}
"#
    );
    apply(&skiff, &manifest)?;
    wait_running(&skiff, "reader")?;

    let env = exec(&skiff, "reader", "echo $COLOR $PASSWORD $CFG_color $CFG_size")?;
    assert_eq!(env.trim(), "blue hunter2 blue L");
    let files = exec(
        &skiff,
        "reader",
        "cat /config/color; echo; cat /config/nested/size; echo; cat /secret/password; echo; cat /pinned/color; echo; cat /all/color /all/password /all/name",
    )?;
    assert_eq!(files, "blue\nL\nhunter2\nblue\nbluehunter2reader");
    let modes = exec(&skiff, "reader", "stat -L -c %a /config/color /config/nested/size /secret/password")?;
    assert_eq!(modes.split_whitespace().collect::<Vec<_>>(), ["600", "644", "400"]);
    assert_eq!(exec(&skiff, "reader", "cat /info/labels")?, "tier=\"front\"");
    // The kubelet's atomic-writer layout, and read-only for the container.
    let layout = exec(&skiff, "reader", "readlink /config/color; readlink /config/..data")?;
    assert!(layout.starts_with("..data/color\n..20"), "{layout}");
    let write = skiff.kubectl(&["exec", "reader", "--", "touch", "/config/new"])?;
    assert!(!write.status.success() && write.stderr.contains("Read-only file system"), "{}", write.stderr);

    // A ConfigMap update reaches the mounted files (not the subPath mount
    // nor the environment, as upstream), driven by the watch.
    let patched = Instant::now();
    skiff
        .kubectl(&["patch", "configmap", "settings", "-p", r#"{"data":{"color":"red"}}"#])?
        .ok()?;
    skiff.wait_for(Duration::from_secs(15), "the new color in the pod", || {
        Ok(exec(&skiff, "reader", "cat /config/color /all/color")? == "redred")
    })?;
    let took = patched.elapsed();
    assert!(took < Duration::from_secs(10), "an update took {took:?}");
    assert_eq!(exec(&skiff, "reader", "cat /pinned/color; echo $COLOR")?, "blueblue\n");
    // Label changes reach the downward API file.
    skiff.kubectl(&["label", "pod", "reader", "tier=back", "--overwrite"])?.ok()?;
    skiff.wait_for(Duration::from_secs(15), "the new label in the pod", || {
        Ok(exec(&skiff, "reader", "cat /info/labels")? == "tier=\"back\"")
    })?;
    // A Secret update too.
    skiff
        .kubectl(&["patch", "secret", "creds", "-p", r#"{"stringData":{"password":"s3cret"}}"#])?
        .ok()?;
    skiff.wait_for(Duration::from_secs(15), "the new password in the pod", || {
        Ok(exec(&skiff, "reader", "cat /secret/password")? == "s3cret")
    })?;
    Ok(())
}

#[test]
fn missing_sources_keep_pods_waiting_until_they_appear() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: mounter
spec:
  volumes:
  - name: cfg
    configMap:
      name: late
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "cat /cfg/greeting; echo; trap 'exit 0' TERM; sleep 3600 & wait"]
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
---
apiVersion: v1
kind: Pod
metadata:
  name: envreader
spec:
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "echo token=$TOKEN; trap 'exit 0' TERM; sleep 3600 & wait"]
    env:
    - {{name: TOKEN, valueFrom: {{secretKeyRef: {{name: later, key: token}}}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: relaxed
spec:
  volumes:
  - name: cfg
    configMap:
      name: never
      optional: true
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "ls -A /cfg | wc -l; echo maybe=$MAYBE; trap 'exit 0' TERM; sleep 3600 & wait"]
    env:
    - {{name: MAYBE, valueFrom: {{configMapKeyRef: {{name: never, key: k, optional: true}}}}}}
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
"#
    );
    apply(&skiff, &manifest)?;
    // Optional sources that do not exist: the pod runs without them.
    wait_running(&skiff, "relaxed")?;
    skiff.wait_for(Duration::from_secs(20), "relaxed to report", || {
        Ok(skiff.kubectl(&["logs", "relaxed"])?.stdout.contains("maybe="))
    })?;
    let logs = skiff.kubectl(&["logs", "relaxed"])?.stdout;
    assert!(logs.starts_with("0\nmaybe=\n") || logs.starts_with("2\nmaybe=\n"), "{logs}");

    wait_event(&skiff, "mounter", "FailedMount", r#"MountVolume.SetUp failed for volume "cfg" : configmap "late" not found"#)?;
    assert_eq!(phase(&skiff, "mounter"), "Pending");
    assert_eq!(waiting_state(&skiff, "mounter")["reason"], "ContainerCreating");
    let row = skiff.kubectl(&["get", "pod", "mounter", "--no-headers"])?.ok()?.stdout;
    assert!(row.contains("ContainerCreating"), "{row}");

    skiff.wait_for(Duration::from_secs(60), "envreader's config error", || {
        Ok(waiting_state(&skiff, "envreader")["reason"] == "CreateContainerConfigError")
    })?;
    assert_eq!(waiting_state(&skiff, "envreader")["message"], r#"secret "later" not found"#);
    wait_event(&skiff, "envreader", "Failed", r#"Error: secret "later" not found"#)?;

    // The sources appear: both pods start by themselves (no restart, no
    // back-off wait), the Secret first without the key.
    let created = Instant::now();
    skiff.kubectl(&["create", "configmap", "late", "--from-literal=greeting=hello"])?.ok()?;
    skiff.kubectl(&["create", "secret", "generic", "later", "--from-literal=other=x"])?.ok()?;
    wait_running(&skiff, "mounter")?;
    skiff.wait_for(Duration::from_secs(30), "the key error", || {
        Ok(waiting_state(&skiff, "envreader")["message"] == "couldn't find key token in Secret default/later")
    })?;
    skiff
        .kubectl(&["patch", "secret", "later", "-p", r#"{"stringData":{"token":"t0k"}}"#])?
        .ok()?;
    wait_running(&skiff, "envreader")?;
    assert!(created.elapsed() < Duration::from_secs(20), "took {:?}", created.elapsed());
    let logs = |name: &str| skiff.kubectl(&["logs", name]).map(|r| r.stdout).unwrap_or_default();
    skiff
        .wait_for(Duration::from_secs(20), "the pods to report", || {
            Ok(logs("mounter").contains("hello") && logs("envreader").contains("token=t0k"))
        })
        .with_context(|| format!("mounter: {:?}, envreader: {:?}", logs("mounter"), logs("envreader")))?;
    Ok(())
}

#[test]
fn host_paths_are_type_checked_and_unsupported_volumes_are_refused() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let host = tempfile::tempdir()?;
    let made = host.path().join("made/here");
    let existing = host.path().join("existing");
    std::fs::create_dir_all(&existing)?;
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hosted
spec:
  volumes:
  - name: made
    hostPath: {{path: {made}, type: DirectoryOrCreate}}
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "echo from-pod > /host/file; trap 'exit 0' TERM; sleep 3600 & wait"]
    volumeMounts:
    - {{name: made, mountPath: /host}}
---
apiVersion: v1
kind: Pod
metadata:
  name: wrongtype
spec:
  volumes:
  - name: h
    hostPath: {{path: {existing}, type: File}}
  containers:
  - name: c
    image: {TEST_IMAGE}
    volumeMounts:
    - {{name: h, mountPath: /h}}
---
apiVersion: v1
kind: Pod
metadata:
  name: nfs
spec:
  volumes:
  - name: share
    nfs: {{server: 10.0.0.1, path: /exports}}
  containers:
  - name: c
    image: {TEST_IMAGE}
    volumeMounts:
    - {{name: share, mountPath: /share}}
---
apiVersion: v1
kind: Pod
metadata:
  name: claimed
spec:
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data}}
  containers:
  - name: c
    image: {TEST_IMAGE}
    volumeMounts:
    - {{name: data, mountPath: /data}}
"#,
        made = made.display(),
        existing = existing.display(),
    );
    apply(&skiff, &manifest)?;
    wait_running(&skiff, "hosted")?;
    skiff.wait_for(Duration::from_secs(20), "the pod's file on the host", || {
        Ok(std::fs::read_to_string(made.join("file")).unwrap_or_default() == "from-pod\n")
    })?;

    let wrong = format!(
        "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a file, it's a Directory",
        existing.display()
    );
    wait_event(&skiff, "wrongtype", "FailedMount", &wrong)?;
    wait_event(&skiff, "nfs", "FailedMount", r#"MountVolume.SetUp failed for volume "share" : volume type "nfs" is not supported by Skiff"#)?;
    let condition = |name: &str| -> Value {
        pod(&skiff, name).unwrap_or_default()["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "PodScheduled")
            .cloned()
            .unwrap_or_default()
    };
    skiff.wait_for(Duration::from_secs(30), "claimed to be unschedulable", || {
        Ok(condition("claimed")["status"] == "False")
    })?;
    assert_eq!(
        condition("claimed")["message"],
        r#"0/1 nodes are available: persistentvolumeclaim "data" not found."#
    );
    for name in ["wrongtype", "nfs", "claimed"] {
        assert_eq!(phase(&skiff, name), "Pending", "{name}");
    }
    Ok(())
}

#[test]
fn the_python_client_feeds_a_pod_from_a_config_map_and_a_secret() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let stdout = skiff.python("volumes.py", &[("TEST_IMAGE", TEST_IMAGE)])?;
    assert!(stdout.contains("updated"), "{stdout}");
    Ok(())
}

