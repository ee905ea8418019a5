//! Real pods, end to end: `skiff server` with its node agent inside a
//! network namespace the test creates, driven by the real kubectl.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{pod as pod_json, Skiff, TEST_IMAGE};
use serde_json::Value;

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

/// Waits for an event of `reason` on pod `name` whose message starts with
/// `prefix`; its whole message.
fn wait_event(skiff: &Skiff, name: &str, reason: &str, prefix: &str) -> Result<String> {
    let selector = format!("involvedObject.name={name},reason={reason}");
    let mut found = String::new();
    skiff.wait_for(Duration::from_secs(30), &format!("{reason} event on {name}"), || {
        let events: Value = serde_json::from_str(
            &skiff
                .kubectl(&["get", "events", "--field-selector", &selector, "-o", "json"])?
                .ok()?
                .stdout,
        )?;
        let messages = events["items"].as_array().cloned().unwrap_or_default();
        match messages
            .iter()
            .filter_map(|e| e["message"].as_str())
            .find(|m| m.starts_with(prefix))
        {
            Some(message) => {
                found = message.to_string();
                Ok(true)
            }
            None => Ok(false),
        }
    })?;
    Ok(found)
}

fn apply(skiff: &Skiff, manifest: &str) -> Result<()> {
    skiff.kubectl_stdin(&["apply", "-f", "-"], manifest)?.ok()?;
    Ok(())
}

#[test]
fn logs_tail_timestamps_follow_and_previous() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let pod = |name: &str, policy: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - name: c\n    image: {TEST_IMAGE}\n    command: [\"sh\", \"-c\", \"{script}\"]\n"
        )
    };
    // stdout and stderr are separate pipes, ordered within each stream only.
    apply(
        &skiff,
        &pod(
            "talker",
            "Never",
            "echo oops >&2; sleep 0.3; echo one; echo two; echo three",
        ),
    )?;
    apply(
        &skiff,
        &pod(
            "ticker",
            "Never",
            "for i in 1 2 3; do echo tick $i; sleep 1; done",
        ),
    )?;
    apply(&skiff, &pod("crasher", "Always", "echo attempt; exit 1"))?;

    let envy = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: envy\n  labels:\n    tier: front\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: {TEST_IMAGE}\n    command: [\"sh\", \"-c\", \"echo $(GREETING) $NAME $TIER $NODE \\\"$ESCAPED\\\"\"]\n    env:\n    - name: BASE\n      value: hello\n    - name: ESCAPED\n      value: $$(BASE)\n    - name: GREETING\n      value: $(BASE)-world\n    - name: NAME\n      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}\n    - name: TIER\n      valueFrom: {{fieldRef: {{fieldPath: \"metadata.labels['tier']\"}}}}\n    - name: NODE\n      valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}\n"
    );
    apply(&skiff, &envy)?;
    wait_phase(&skiff, "envy", "Succeeded")?;
    assert_eq!(
        skiff.kubectl(&["logs", "envy"])?.ok()?.stdout,
        "hello-world envy front skiff-e2e $(BASE)\n"
    );
    wait_phase(&skiff, "talker", "Succeeded")?;
    assert_eq!(
        skiff.kubectl(&["logs", "talker"])?.ok()?.stdout,
        "oops\none\ntwo\nthree\n"
    );
    assert_eq!(
        skiff.kubectl(&["logs", "talker", "--tail=1"])?.ok()?.stdout,
        "three\n"
    );
    assert_eq!(
        skiff
            .kubectl(&["logs", "talker", "--limit-bytes=2"])?
            .ok()?
            .stdout,
        "oo"
    );
    let stamped = skiff
        .kubectl(&["logs", "talker", "--timestamps", "--tail=1"])?
        .ok()?
        .stdout;
    let (stamp, text) = stamped.split_once(' ').context("timestamp")?;
    assert!(
        stamp.parse::<jiff::Timestamp>().is_ok() && text == "three\n",
        "{stamped}"
    );
    let none = skiff.kubectl(&["logs", "talker", "--previous"])?.failed()?;
    assert!(
        none.stderr
            .contains("previous terminated container \"c\" in pod \"talker\" not found"),
        "{}",
        none.stderr
    );

    // -f streams until the container ends.
    wait_phase(&skiff, "ticker", "Running")?;
    let followed = skiff.kubectl(&["logs", "-f", "ticker"])?.ok()?;
    assert!(followed.stdout.ends_with("tick 3\n"), "{}", followed.stdout);

    // A crash-looping container: during the first back-off the dead instance is the
    // current one; after the 10 s back-off a second one runs and the first is "previous".
    skiff.wait_for(Duration::from_secs(10), "crasher to back off", || {
        Ok(
            pod_json(&skiff, "crasher")?["status"]["containerStatuses"][0]["state"]["waiting"]
                ["reason"]
                == "CrashLoopBackOff",
        )
    })?;
    assert_eq!(
        skiff.kubectl(&["logs", "crasher"])?.ok()?.stdout,
        "attempt\n"
    );
    let time = |v: &Value| {
        v.as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .context("timestamp")
    };
    let first = pod_json(&skiff, "crasher")?;
    let first_finished =
        time(&first["status"]["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"])?;
    skiff.wait_for(Duration::from_secs(40), "crasher to restart", || {
        Ok(
            pod_json(&skiff, "crasher")?["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 2,
        )
    })?;
    let second = pod_json(&skiff, "crasher")?;
    let second_started =
        time(&second["status"]["containerStatuses"][0]["lastState"]["terminated"]["startedAt"])?;
    let delay = second_started.as_second() - first_finished.as_second();
    assert!(
        (9..=13).contains(&delay),
        "the first restart waits out the 10 s back-off (took {delay}s)"
    );
    let status = pod_json(&skiff, "crasher")?;
    let container = &status["status"]["containerStatuses"][0];
    assert_eq!(container["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(
        status["metadata"]["uid"],
        pod_json(&skiff, "crasher")?["metadata"]["uid"]
    );
    assert_eq!(
        skiff
            .kubectl(&["logs", "crasher", "--previous"])?
            .ok()?
            .stdout,
        "attempt\n"
    );
    let row = skiff
        .kubectl(&["get", "pod", "crasher", "--no-headers"])?
        .ok()?;
    assert!(
        row.stdout.contains(" ago)"),
        "RESTARTS shows when: {}",
        row.stdout
    );
    // Upstream's event text, then how the container ended and its last words.
    let uid = status["metadata"]["uid"].as_str().unwrap_or_default();
    let upstream = format!("Back-off restarting failed container c in pod crasher_default({uid})");
    let back_off = wait_event(&skiff, "crasher", "BackOff", &upstream)?;
    assert_eq!(
        back_off,
        format!("{upstream}: the container exited with code 1 (Error); the end of its log: attempt")
    );
    Ok(())
}

#[test]
fn containers_of_a_pod_share_localhost_hostname_and_empty_dir() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: duo
spec:
  volumes:
  - name: shared
    emptyDir:
      medium: Memory
      sizeLimit: 16Mi
  containers:
  - name: web
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"echo from web > /data/index.html; hostname > /data/web-hostname; httpd -f -p 80 -h /data & trap 'exit 0' TERM; wait\"]
    volumeMounts:
    - name: shared
      mountPath: /data
  - name: client
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"until wget -q -O - http://localhost:80/; do sleep 0.2; done; echo; cat /shared/web-hostname; hostname; trap 'exit 0' TERM; sleep 3600 & wait\"]
    volumeMounts:
    - name: shared
      mountPath: /shared
"
    );
    apply(&skiff, &manifest)?;
    wait_phase(&skiff, "duo", "Running")?;
    skiff.wait_for(
        Duration::from_secs(20),
        "the client to reach the server",
        || {
            Ok(skiff
                .kubectl(&["logs", "duo", "-c", "client"])?
                .stdout
                .lines()
                .count()
                >= 3)
        },
    )?;
    let logs = skiff
        .kubectl(&["logs", "duo", "-c", "client"])?
        .ok()?
        .stdout;
    let lines: Vec<&str> = logs.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines,
        ["from web", "duo", "duo"],
        "localhost, the emptyDir and the hostname are shared: {logs}"
    );
    let row = skiff
        .kubectl(&["get", "pod", "duo", "--no-headers"])?
        .ok()?;
    assert!(row.stdout.contains("2/2"), "{}", row.stdout);
    // medium: Memory is a tmpfs on the node, gone with the pod.
    let pods_dir = skiff.data_dir.path().join("pods").display().to_string();
    let tmpfs = |mounts: &str| {
        mounts.lines().any(|l| {
            l.contains(&pods_dir) && l.contains("/volumes/shared") && l.contains(" tmpfs ")
        })
    };
    assert!(
        tmpfs(&std::fs::read_to_string("/proc/self/mountinfo")?),
        "the volume is a tmpfs"
    );
    // The service-account token is memory-backed and read-only in the
    // container, but on the node's one tmpfs for API-fed volumes, not a
    // mount per pod.
    let mounts = skiff.kubectl(&["exec", "duo", "-c", "web", "--", "cat", "/proc/mounts"])?.ok()?.stdout;
    assert!(
        mounts.lines().any(|l| l.contains(" /var/run/secrets/kubernetes.io/serviceaccount tmpfs ro,")),
        "the token volume is a read-only tmpfs in the container: {mounts}"
    );
    let node_tmpfs = skiff.data_dir.path().join("api-volumes");
    let under_node_tmpfs = || -> Result<usize> {
        let prefix = format!(" {}", node_tmpfs.display());
        Ok(std::fs::read_to_string("/proc/self/mountinfo")?.lines().filter(|l| l.contains(&prefix)).count())
    };
    assert_eq!(under_node_tmpfs()?, 1, "one tmpfs for every pod's API-fed volumes");
    let pod_volumes = |dir: &std::path::Path| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(pod_volumes(&node_tmpfs), 1, "the pod's directory on it");
    skiff.kubectl(&["delete", "pod", "duo"])?.ok()?;
    assert!(
        !tmpfs(&std::fs::read_to_string("/proc/self/mountinfo")?),
        "the tmpfs is unmounted"
    );
    assert_eq!(pod_volumes(&node_tmpfs), 0, "the pod's API-fed volumes are gone with it");
    Ok(())
}

#[test]
fn images_are_pulled_from_a_registry_and_failures_back_off() -> Result<()> {
    let skiff = Skiff::start_node()?;
    skiff.start_registry("127.0.0.1:5000/test/busybox:1")?;
    let pod = |name: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
        )
    };
    // `skiff image pull` off a terminal: what it fetches, each layer, the marks.
    let elsewhere = tempfile::tempdir()?;
    let pull = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", skiff.netns.clone().unwrap_or_default()))
        .arg(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "pull", "127.0.0.1:5000/test/busybox:1", "--data-dir"])
        .arg(elsewhere.path())
        .output()?;
    let said = String::from_utf8_lossy(&pull.stderr).into_owned();
    assert!(pull.status.success(), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    let what = "pulling 127.0.0.1:5000/test/busybox:1";
    assert!(lines.first().is_some_and(|l| l.starts_with(&format!("{what}: 1 layer, "))), "{said}");
    assert!(lines.iter().any(|l| l.starts_with("layer 1/1 ")), "{said}");
    assert!(lines.iter().any(|l| l.starts_with(&format!("{what}: 100% ("))), "{said}");

    apply(&skiff, &pod("pulled", "127.0.0.1:5000/test/busybox:1"))?;
    apply(&skiff, &pod("missing", "127.0.0.1:5000/test/nope:1"))?;
    apply(&skiff, &pod("invalid", "Not/A/Valid:Name"))?;

    wait_phase(&skiff, "pulled", "Running")?;
    let describe = skiff.kubectl(&["describe", "pod", "pulled"])?.ok()?.stdout;
    assert!(
        describe.contains("Pulling image \"127.0.0.1:5000/test/busybox:1\""),
        "{describe}"
    );
    assert!(
        describe.contains("Successfully pulled image \"127.0.0.1:5000/test/busybox:1\" in "),
        "{describe}"
    );
    assert!(describe.contains("Image size: "), "{describe}");
    let image_id = pod_json(&skiff, "pulled")?["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        image_id.starts_with("127.0.0.1:5000/test/busybox@sha256:"),
        "{image_id}"
    );

    let waiting_reason = |name: &str| -> Result<String> {
        Ok(
            pod_json(&skiff, name)?["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    skiff.wait_for(Duration::from_secs(20), "missing to back off", || {
        Ok(waiting_reason("missing")? == "ImagePullBackOff")
    })?;
    let describe = skiff.kubectl(&["describe", "pod", "missing"])?.ok()?.stdout;
    assert!(
        describe.contains("Failed to pull image \"127.0.0.1:5000/test/nope:1\""),
        "{describe}"
    );
    assert!(
        describe.contains("Error: ErrImagePull") && describe.contains("Back-off pulling image"),
        "{describe}"
    );
    let row = skiff
        .kubectl(&["get", "pod", "missing", "--no-headers"])?
        .ok()?;
    assert!(
        row.stdout.contains("0/1") && row.stdout.contains("ImagePullBackOff"),
        "{}",
        row.stdout
    );
    assert_eq!(pod_json(&skiff, "missing")?["status"]["phase"], "Pending");

    skiff.wait_for(Duration::from_secs(20), "invalid to be refused", || {
        Ok(waiting_reason("invalid")? == "InvalidImageName")
    })?;
    Ok(())
}

#[test]
fn create_delete_cycles_leave_nothing_behind() -> Result<()> {
    let skiff = Skiff::start_node()?;
    const CYCLES: usize = 50;
    let mut uids = Vec::new();
    for i in 0..CYCLES {
        let name = format!("cycle-{i}");
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {TEST_IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n    ports:\n    - containerPort: 80\n      hostPort: 18080\n"
        );
        apply(&skiff, &manifest)?;
        let pod = wait_phase(&skiff, &name, "Running")?;
        uids.push(pod["metadata"]["uid"].as_str().unwrap_or("").to_string());
        skiff.kubectl(&["delete", "pod", &name])?.ok()?;
    }
    let data = skiff.data_dir.path();
    let entries = |dir: &str| -> Vec<String> {
        std::fs::read_dir(data.join(dir))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        entries("containers"),
        Vec::<String>::new(),
        "container bundles"
    );
    assert_eq!(entries("sandboxes"), Vec::<String>::new(), "sandboxes");
    assert_eq!(entries("pods"), Vec::<String>::new(), "pod directories");
    assert_eq!(
        entries("cni/results"),
        Vec::<String>::new(),
        "cached networks"
    );
    let reserved: Vec<String> = entries("cni/ipam/skiff")
        .into_iter()
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(reserved.is_empty(), "IP reservations: {reserved:?}");
    let links = skiff.on_node(&["ip", "-o", "link"])?.ok()?.stdout;
    assert!(!links.contains("veth"), "{links}");
    let nat = skiff
        .on_node(&["iptables", "-t", "nat", "-S"])?
        .ok()?
        .stdout;
    // portmap's shared CNI-HOSTPORT-DNAT chain and the node's one rule for
    // the kubernetes Service stay; per-pod chains and targets must not.
    let per_pod: Vec<&str> = nat
        .lines()
        .filter(|l| l.contains("CNI-DN-") || l.contains("--to-destination"))
        .filter(|l| !l.contains("skiff kubernetes service"))
        .collect();
    assert!(per_pod.is_empty(), "hostPort rules left: {per_pod:?}");
    // Only the node's own tmpfs for API-fed volumes stays mounted, empty.
    let node_tmpfs = data.join("api-volumes").display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let under_data: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.starts_with(&data.display().to_string()) && *m != node_tmpfs)
        .collect();
    assert!(under_data.is_empty(), "mounts under the data dir: {under_data:?}");
    assert_eq!(entries("api-volumes"), Vec::<String>::new(), "pods' API-fed volumes");
    // Pod cgroups of these pods under kubepods (v1 memory hierarchy here,
    // the unified tree on cgroup v2); other tests' pods may run meanwhile.
    let pod_cgroups = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .iter()
        .flat_map(|root| {
            ["kubepods", "kubepods/burstable", "kubepods/besteffort"]
                .map(|tree| std::path::Path::new(root).join(tree))
        })
        .flat_map(|dir| {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
        })
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            uids.iter().any(|uid| name == format!("pod{uid}"))
        })
        .count();
    assert_eq!(pod_cgroups, 0, "pod cgroups left");
    let processes = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()?;
    let leftovers: Vec<String> = String::from_utf8_lossy(&processes.stdout)
        .lines()
        .filter(|l| !l.contains("skiff server"))
        .filter(|l| l.contains(&data.display().to_string()) || l.contains("--hostname cycle-"))
        .map(str::to_string)
        .collect();
    assert!(leftovers.is_empty(), "processes left: {leftovers:?}");
    Ok(())
}

#[test]
fn a_registry_mirror_serves_docker_hub_names_offline() -> Result<()> {
    // registries.yaml is read at start; the registry it names starts later.
    let config_dir = tempfile::tempdir()?;
    let config = config_dir.path().join("registries.yaml");
    std::fs::write(
        &config,
        "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://127.0.0.1:5000\"\n",
    )?;
    let config_arg = config.display().to_string();
    let skiff = Skiff::start_node_with(&["--registry-config", &config_arg])?;
    skiff.start_registry("127.0.0.1:5000/library/busybox:mirrored")?;
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hub\nspec:\n  containers:\n  - name: c\n    image: busybox:mirrored\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n";
    apply(&skiff, manifest)?;
    let pod = wait_phase(&skiff, "hub", "Running")?;
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["image"], "busybox:mirrored");
    let describe = skiff.kubectl(&["describe", "pod", "hub"])?.ok()?.stdout;
    assert!(
        describe.contains("Successfully pulled image \"busybox:mirrored\""),
        "{describe}"
    );

    // A misspelt tag: the mirror's "not found" (not docker.io's network
    // error), then the tag that exists.
    apply(&skiff, &manifest.replace("name: hub", "name: typo").replace("busybox:mirrored", "busybox:mirored"))?;
    let failed = wait_event(&skiff, "typo", "Failed", "Failed to pull image \"busybox:mirored\": ")?;
    assert!(
        failed.ends_with("busybox:mirored: not found; the repository has no tag \"mirored\": did you mean \"busybox:mirrored\"?"),
        "{failed}"
    );
    let images = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "ls", "--data-dir"])
        .arg(skiff.data_dir.path())
        .output()?;
    let listing = String::from_utf8_lossy(&images.stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("docker.io/library/busybox") && l.contains("mirrored")),
        "stored under its own name: {listing}"
    );
    Ok(())
}

#[test]
fn image_pull_secrets_authenticate_to_a_private_registry() -> Result<()> {
    let skiff = Skiff::start_node()?;
    skiff.start_registry_with_auth(
        "127.0.0.1:5000/private/busybox:1",
        Some(("skiff", "s3cret")),
    )?;
    let pod = |name: &str, secrets: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{secrets}  containers:\n  - name: c\n    image: 127.0.0.1:5000/private/busybox:1\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
        )
    };
    apply(&skiff, &pod("anonymous", ""))?;
    skiff.wait_for(
        Duration::from_secs(20),
        "the anonymous pull to fail",
        || {
            let reason = pod_json(&skiff, "anonymous")?["status"]["containerStatuses"][0]["state"]
                ["waiting"]["reason"]
                .clone();
            Ok(reason == "ErrImagePull" || reason == "ImagePullBackOff")
        },
    )?;
    let describe = skiff
        .kubectl(&["describe", "pod", "anonymous"])?
        .ok()?
        .stdout;
    assert!(
        describe
            .contains("Failed to pull image \"127.0.0.1:5000/private/busybox:1\": Not authorized"),
        "{describe}"
    );

    // What `kubectl create secret docker-registry` sends (protobuf) is understood.
    skiff
        .kubectl(&[
            "create",
            "secret",
            "docker-registry",
            "regcred",
            "--docker-server=127.0.0.1:5000",
            "--docker-username=skiff",
            "--docker-password=s3cret",
        ])?
        .ok()?;
    apply(
        &skiff,
        &pod("authorized", "  imagePullSecrets:\n  - name: regcred\n"),
    )?;
    wait_phase(&skiff, "authorized", "Running")?;

    apply(
        &skiff,
        &pod("no-such-secret", "  imagePullSecrets:\n  - name: nope\n"),
    )?;
    skiff.wait_for(
        Duration::from_secs(20),
        "the missing secret to be reported",
        || {
            Ok(skiff
                .kubectl(&["describe", "pod", "no-such-secret"])?
                .stdout
                .contains("Unable to retrieve some image pull secrets (nope)"))
        },
    )?;
    Ok(())
}

/// A gzip'd tar with one entry climbing out of the layer (written by hand:
/// tar writers refuse such paths).
fn escaping_layer() -> Result<Vec<u8>> {
    let mut tar = Vec::new();
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..15].copy_from_slice(b"../../../escape");
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(5);
    header.set_cksum();
    tar.extend_from_slice(header.as_bytes());
    tar.extend_from_slice(b"evil\n");
    tar.resize(512 * 2 + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar)?;
    Ok(gz.finish()?)
}

#[test]
fn a_malicious_layer_is_refused_with_a_clear_event() -> Result<()> {
    let skiff = Skiff::start_node()?;
    skiff.start_registry("127.0.0.1:5000/test/busybox:1")?;
    skiff.push_raw_layer("127.0.0.1:5000/test/evil:1", escaping_layer()?)?;
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: evil\nspec:\n  containers:\n  - name: c\n    image: 127.0.0.1:5000/test/evil:1\n";
    apply(&skiff, manifest)?;
    skiff.wait_for(Duration::from_secs(20), "the pull to be refused", || {
        Ok(skiff
            .kubectl(&["describe", "pod", "evil"])?
            .stdout
            .contains("would write outside the layer"))
    })?;
    let reason = pod_json(&skiff, "evil")?["status"]["containerStatuses"][0]["state"]["waiting"]
        ["reason"]
        .clone();
    assert!(
        reason == "ErrImagePull" || reason == "ImagePullBackOff",
        "{reason}"
    );
    // Nothing was written outside the layer directory, nor left half-unpacked.
    let data = skiff.data_dir.path();
    for candidate in [
        data.join("escape"),
        data.join("images/escape"),
        data.join("images/layers/escape"),
        std::path::PathBuf::from("/escape"),
    ] {
        assert!(!candidate.exists(), "{} was written", candidate.display());
    }
    let layers: Vec<String> = std::fs::read_dir(data.join("images/layers/sha256"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        layers.iter().all(|l| !l.contains("partial")),
        "no scratch dirs: {layers:?}"
    );
    Ok(())
}

/// The image store is checked under running and starting containers: a
/// layer removed by hand is said in an event, the container restarts on a
/// layer unpacked again from its blob; with the blob corrupt too, the image
/// is pulled again.
#[test]
fn a_damaged_image_store_is_noticed_mended_and_pulled_again() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let image = "127.0.0.1:5000/test/busybox:1";
    skiff.start_registry(image)?;
    apply(
        &skiff,
        &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: steady\nspec:\n  containers:\n  - name: c\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n"),
    )?;
    wait_phase(&skiff, "steady", "Running")?;
    let store = skiff.data_dir_path().join("images");
    let index: Value = serde_json::from_slice(&std::fs::read(store.join("images.json"))?)?;
    let digest = index[image]["layers"][0]["digest"]
        .as_str()
        .context("the image's layer")?
        .to_string();
    let hex = digest.trim_start_matches("sha256:");
    let layer = store.join("layers/sha256").join(hex);
    let restarted = |count: i64| -> Result<()> {
        let mut p = Value::Null;
        skiff
            .wait_for(Duration::from_secs(60), &format!("restart {count} to run"), || {
                p = pod_json(&skiff, "steady")?;
                let status = &p["status"]["containerStatuses"][0];
                Ok(status["restartCount"] == count && status["state"]["running"].is_object())
            })
            .with_context(|| format!("{:#}", p["status"]))?;
        Ok(())
    };
    let events = || -> Result<String> {
        Ok(skiff
            .kubectl(&["get", "events", "--field-selector", "involvedObject.name=steady", "-o", "custom-columns=R:.reason,M:.message", "--no-headers"])?
            .ok()?
            .stdout)
    };

    std::fs::remove_dir_all(&layer)?;
    restarted(1)?;
    let seen = events()?;
    assert!(
        seen.contains(&format!("ImageDamaged   Layer {digest} of container image \"{image}\" was removed")),
        "{seen}"
    );
    assert!(seen.contains("they were unpacked again from their blobs"), "{seen}");
    assert!(layer.join("bin/busybox").is_file(), "the layer is unpacked again");

    std::fs::write(store.join("blobs/sha256").join(hex), b"corrupt")?;
    std::fs::remove_dir_all(&layer)?;
    restarted(2)?;
    let seen = events()?;
    assert!(seen.contains("it counts as not present"), "{seen}");
    // (A repeated Pulling event is counted, not repeated; these differ.)
    assert_eq!(seen.matches("Successfully pulled image").count(), 2, "{seen}");
    let exec = skiff.kubectl(&["exec", "steady", "--", "ls", "/bin/busybox"])?.ok()?.stdout;
    assert!(exec.contains("/bin/busybox"), "{exec}");
    Ok(())
}

/// A node agent that cannot run (here: its pods directory is a file)
/// stops the server with an error naming it, instead of a server that
/// accepts pods nobody runs.
#[test]
fn a_dead_node_agent_stops_the_server() -> Result<()> {
    let mut skiff = Skiff::start_node()?;
    skiff.stop()?;
    let pods = skiff.data_dir_path().join("pods");
    std::fs::remove_dir_all(&pods)?;
    std::fs::write(&pods, "not a directory")?;
    skiff.restart()?;
    let status = skiff.wait_exit(Duration::from_secs(30))?;
    assert!(!status.success(), "{status}");
    let log = skiff.log();
    assert!(log.contains("the node agent stopped"), "{log}");
    assert!(log.contains("failed to prepare"), "{log}");
    Ok(())
}

/// Logs are bytes: a line that is not UTF-8 comes back byte for byte from
/// `kubectl logs` and `kubectl logs -f` (which follows it as it is written).
#[test]
fn logs_that_are_not_utf8_are_served_byte_for_byte() -> Result<()> {
    let skiff = Skiff::start_node()?;
    apply(
        &skiff,
        &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: latin\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: {TEST_IMAGE}\n    command: [\"sh\", \"-c\", \"printf 'caf\\\\351 \\\\377\\\\n'; sleep 2; printf 'end\\\\376\\\\n'\"]\n"),
    )?;
    wait_phase(&skiff, "latin", "Running")?;
    let followed = skiff
        .kubectl_cmd(&common::kubectl_binary(), &["logs", "-f", "latin"])
        .output()?;
    let expected: &[u8] = b"caf\xe9 \xff\nend\xfe\n";
    assert_eq!(followed.stdout, expected, "{:?}", String::from_utf8_lossy(&followed.stdout));
    wait_phase(&skiff, "latin", "Succeeded")?;
    let logs = skiff.kubectl_cmd(&common::kubectl_binary(), &["logs", "latin"]).output()?;
    assert_eq!(logs.stdout, expected);
    let tail = skiff
        .kubectl_cmd(&common::kubectl_binary(), &["logs", "latin", "--tail=1"])
        .output()?;
    assert_eq!(tail.stdout, b"end\xfe\n");
    Ok(())
}
