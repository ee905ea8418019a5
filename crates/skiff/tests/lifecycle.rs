//! Pod lifecycle as upstream shows it: init containers in order with the
//! STATUS strings kubectl prints, failing init containers under each
//! restart policy, restart policies, and sidecars.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{kubectl_binary, pod, pod_condition as condition, Skiff, TEST_IMAGE};
use serde_json::Value;

fn status_cell(skiff: &Skiff, name: &str) -> Result<String> {
    let line = skiff
        .kubectl(&["get", "pod", name, "--no-headers"])?
        .ok()?
        .stdout;
    Ok(line.split_whitespace().nth(2).unwrap_or("").to_string())
}

#[test]
fn init_containers_run_in_order_and_kubectl_shows_their_progress() -> Result<()> {
    let skiff = Skiff::start_node()?;
    // Watch from before the pod exists, as a user would.
    let mut watch = skiff
        .kubectl_cmd(
            &kubectl_binary(),
            &["get", "pods", "--watch", "--no-headers"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().context("stdout")?;
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_sender.send(line).is_err() {
                return;
            }
        }
    });
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: inits
spec:
  initContainers:
  - name: init1
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"sleep 3; echo one >> /work/order\"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: init2
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"sleep 3; echo two >> /work/order\"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"cat /work/order; trap 'exit 0' TERM; while true; do sleep 1; done\"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  volumes:
  - name: work
    emptyDir: {{}}
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    let mut seen: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline && seen.last().map(String::as_str) != Some("Running")
    {
        if let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
            let status = line.split_whitespace().nth(2).unwrap_or("").to_string();
            if seen.last() != Some(&status) {
                seen.push(status);
            }
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let position = |s: &str| seen.iter().position(|x| x == s);
    let (zero, one, running) = (
        position("Init:0/2"),
        position("Init:1/2"),
        position("Running"),
    );
    assert!(
        zero.is_some() && one.is_some() && running.is_some() && zero < one && one < running,
        "STATUS went {seen:?}"
    );
    let p = pod(&skiff, "inits")?;
    for status in p["status"]["initContainerStatuses"]
        .as_array()
        .context("initContainerStatuses")?
    {
        assert_eq!(
            status["state"]["terminated"]["reason"], "Completed",
            "{status}"
        );
        assert_eq!(status["ready"], true, "{status}");
    }
    assert_eq!(condition(&p, "Initialized")["status"], "True");
    let logs = skiff.kubectl(&["logs", "inits", "-c", "app"])?.ok()?;
    assert_eq!(logs.stdout, "one\ntwo\n");
    let logs = skiff.kubectl(&["logs", "inits", "-c", "init1"])?.ok()?;
    assert_eq!(logs.stdout, "", "init containers' logs are there too");
    Ok(())
}

fn failing_init(name: &str, policy: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}
  initContainers:
  - name: init1
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"exit 1\"]
  - name: init2
    image: {TEST_IMAGE}
    command: [\"true\"]
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sleep\", \"3600\"]
"
    )
}

#[test]
fn a_failing_init_container_blocks_the_pod_or_fails_it() -> Result<()> {
    let skiff = Skiff::start_node()?;
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &failing_init("retry", "Always"))?
        .ok()?;
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &failing_init("once", "Never"))?
        .ok()?;

    let mut last = Value::Null;
    skiff
        .wait_for(Duration::from_secs(60), "init1 to be restarted", || {
            last = pod(&skiff, "retry")?;
            Ok(last["status"]["initContainerStatuses"][0]["restartCount"].as_i64() >= Some(1))
        })
        .with_context(|| format!("{:#}", last["status"]))?;
    let p = pod(&skiff, "retry")?;
    assert_eq!(p["status"]["phase"], "Pending");
    let initialized = condition(&p, "Initialized");
    assert_eq!(initialized["status"], "False");
    assert_eq!(initialized["reason"], "ContainersNotInitialized");
    assert_eq!(
        initialized["message"],
        "containers with incomplete status: [init1 init2]"
    );
    assert_eq!(
        p["status"]["initContainerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    let status = status_cell(&skiff, "retry")?;
    assert!(
        status == "Init:CrashLoopBackOff" || status == "Init:Error",
        "{status}"
    );

    let p = pod(&skiff, "once")?;
    assert_eq!(p["status"]["phase"], "Failed", "{:#}", p["status"]);
    assert_eq!(
        condition(&p, "Initialized")["message"],
        "containers with incomplete status: [init1 init2]"
    );
    assert_eq!(status_cell(&skiff, "once")?, "Init:Error");
    assert_eq!(
        p["status"]["initContainerStatuses"][0]["restartCount"], 0,
        "Never does not restart"
    );
    Ok(())
}

#[test]
fn restart_policies_decide_what_a_crash_means() -> Result<()> {
    let skiff = Skiff::start_node()?;
    // Fails on its first run (marker absent), then, depending on the
    // policy, runs on (Always) or succeeds (OnFailure).
    for (name, policy, second_run) in [
        (
            "always",
            "Always",
            "trap 'exit 0' TERM; while true; do sleep 1; done",
        ),
        ("onfailure", "OnFailure", "exit 0"),
        ("never", "Never", "exit 0"),
    ] {
        let manifest = format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"if [ -f /data/ran ]; then {second_run}; fi; touch /data/ran; exit 1\"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    emptyDir: {{}}
"
        );
        skiff
            .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
            .ok()?;
    }
    let wait = |name: &str, phase: &str, restarts: i64| -> Result<Value> {
        let mut last = Value::Null;
        skiff
            .wait_for(Duration::from_secs(60), &format!("{name} {phase}"), || {
                last = pod(&skiff, name)?;
                let c = &last["status"]["containerStatuses"][0];
                Ok(last["status"]["phase"] == phase
                    && c["restartCount"] == restarts
                    && (phase != "Running" || c["state"]["running"].is_object()))
            })
            .with_context(|| format!("{:#}", last["status"]))?;
        Ok(last)
    };
    let always = wait("always", "Running", 1)?;
    let ip = always["status"]["podIP"].clone();
    wait("onfailure", "Succeeded", 1)?;
    wait("never", "Failed", 0)?;
    let always = pod(&skiff, "always")?;
    assert_eq!(
        always["status"]["podIP"], ip,
        "the pod IP survives a restart"
    );
    assert_eq!(
        always["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );
    Ok(())
}

#[test]
fn a_sidecar_starts_before_the_app_counts_in_ready_and_stops_after_it() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: sidecar
spec:
  restartPolicy: Never
  initContainers:
  - name: proxy
    image: {TEST_IMAGE}
    restartPolicy: Always
    command: [\"sh\", \"-c\", \"echo up > /shared/proxy; trap 'exit 0' TERM; while true; do sleep 1; done\"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"cat /shared/proxy; sleep 4\"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  volumes:
  - name: shared
    emptyDir: {{}}
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    skiff.wait_for(Duration::from_secs(30), "READY 2/2", || {
        let line = skiff
            .kubectl(&["get", "pod", "sidecar", "--no-headers"])?
            .stdout;
        Ok(line.split_whitespace().nth(1) == Some("2/2"))
    })?;
    let mut last = Value::Null;
    skiff
        .wait_for(Duration::from_secs(40), "the pod to succeed", || {
            last = pod(&skiff, "sidecar")?;
            Ok(last["status"]["phase"] == "Succeeded")
        })
        .with_context(|| format!("{:#}", last["status"]))?;
    let logs = skiff.kubectl(&["logs", "sidecar", "-c", "app"])?.ok()?;
    assert_eq!(logs.stdout, "up\n", "the sidecar ran before the app");
    let proxy = &last["status"]["initContainerStatuses"][0];
    assert!(proxy["state"]["terminated"].is_object(), "{proxy}");
    Ok(())
}

/// Reads a cgroup file of the pod's cgroup (or of a container below it).
fn cgroup_value(v1_controller: &str, relative: &str, file: &str) -> String {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let path = if v2 {
        format!("/sys/fs/cgroup/{relative}/{file}")
    } else {
        format!("/sys/fs/cgroup/{v1_controller}/{relative}/{file}")
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| format!("<{path}: {e}>"))
        .trim()
        .to_string()
}

#[test]
fn requests_and_limits_become_cgroup_settings_under_kubepods() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: burstable
spec:
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]
    resources:
      requests: {{cpu: \"0.1\", memory: 200M}}
      limits: {{cpu: \"0.5\", memory: 1G}}
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    let mut p = Value::Null;
    skiff.wait_for(Duration::from_secs(30), "the pod to run", || {
        p = pod(&skiff, "burstable")?;
        Ok(p["status"]["phase"] == "Running")
    })?;
    assert_eq!(p["status"]["qosClass"], "Burstable");
    let uid = p["metadata"]["uid"].as_str().context("uid")?;
    let id = p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|id| id.split("://").nth(1))
        .context("containerID")?;
    let pod_cgroup = format!("kubepods/burstable/pod{uid}");
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    // 1G rounded down to whole pages, as the kernel stores it.
    let memory = (1_000_000_000u64 / 4096 * 4096).to_string();
    for dir in [pod_cgroup.clone(), format!("{pod_cgroup}/{id}")] {
        if v2 {
            assert_eq!(cgroup_value("", &dir, "cpu.weight"), "4", "{dir}");
            assert_eq!(cgroup_value("", &dir, "cpu.max"), "50000 100000", "{dir}");
            assert_eq!(cgroup_value("", &dir, "memory.max"), memory, "{dir}");
        } else {
            assert_eq!(cgroup_value("cpu", &dir, "cpu.shares"), "102", "{dir}");
            assert_eq!(
                cgroup_value("cpu", &dir, "cpu.cfs_quota_us"),
                "50000",
                "{dir}"
            );
            assert_eq!(
                cgroup_value("cpu", &dir, "cpu.cfs_period_us"),
                "100000",
                "{dir}"
            );
            assert_eq!(
                cgroup_value("memory", &dir, "memory.limit_in_bytes"),
                memory,
                "{dir}"
            );
        }
    }
    skiff.kubectl(&["delete", "pod", "burstable"])?.ok()?;
    let gone = if v2 {
        format!("/sys/fs/cgroup/{pod_cgroup}")
    } else {
        format!("/sys/fs/cgroup/memory/{pod_cgroup}")
    };
    assert!(
        !std::path::Path::new(&gone).exists(),
        "{gone} removed with the pod"
    );
    Ok(())
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: {TEST_IMAGE}
    command: [\"awk\", \"BEGIN {{ s = 1234567890; while (1) s = s s }}\"]
    resources:
      limits: {{memory: 32Mi}}
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    let mut p = Value::Null;
    skiff
        .wait_for(Duration::from_secs(60), "the hog to be killed", || {
            p = pod(&skiff, "hog")?;
            Ok(p["status"]["phase"] == "Failed")
        })
        .with_context(|| format!("{:#}", p["status"]))?;
    let terminated = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137, "{terminated}");
    assert_eq!(status_cell(&skiff, "hog")?, "OOMKilled");
    Ok(())
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Result<Vec<String>> {
    let ps = std::process::Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()?;
    Ok(String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(needle) && !l.contains(" ps "))
        .map(str::to_string)
        .collect())
}

#[test]
fn killall_stops_every_pod_and_cleans_the_node() -> Result<()> {
    let mut skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: stays
spec:
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sleep\", \"3600\"]
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    skiff.wait_for(Duration::from_secs(30), "the pod to run", || {
        Ok(pod(&skiff, "stays")?["status"]["phase"] == "Running")
    })?;
    let data = skiff.data_dir_path().to_path_buf();
    let sandbox_pids: Vec<String> = std::fs::read_dir(data.join("sandboxes"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    assert_eq!(sandbox_pids.len(), 1);
    assert!(!processes_mentioning(&data.display().to_string())?.is_empty());
    // The server goes away hard; its pods keep running until killall.
    skiff.kill9()?;
    assert!(!processes_mentioning(&format!("{}/containers", data.display()))?.is_empty());
    let run = skiff
        .on_node(&[
            env!("CARGO_BIN_EXE_skiff"),
            "killall",
            "--data-dir",
            &data.display().to_string(),
        ])?
        .ok()?;
    assert!(run.stdout.contains("stopped every pod"), "{run:?}");
    assert_eq!(
        processes_mentioning(&data.display().to_string())?,
        Vec::<String>::new()
    );
    for pid in sandbox_pids {
        // Gone, or a zombie waiting for whoever inherited it.
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        assert!(
            matches!(state, None | Some(Some('Z'))),
            "sandbox {pid} still runs: {stat}"
        );
    }
    assert_eq!(std::fs::read_dir(data.join("containers"))?.count(), 0);
    let links = skiff.on_node(&["ip", "-o", "link"])?.ok()?.stdout;
    assert!(!links.contains("veth"), "{links}");
    // The node's tmpfs for API-fed volumes goes too.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(!mounts.contains(&data.display().to_string()), "mounts under the data dir are left: {mounts}");
    Ok(())
}

#[test]
fn hooks_deadlines_and_termination_messages() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'echo TERM; exit 0' TERM; sleep 2; cat /tmp/poststart; while true; do sleep 1; done\"]
    lifecycle:
      postStart:
        exec: {{command: [\"sh\", \"-c\", \"echo poststart > /tmp/poststart\"]}}
      preStop:
        exec: {{command: [\"sh\", \"-c\", \"echo prestop > /proc/1/fd/1; sleep 2\"]}}
---
apiVersion: v1
kind: Pod
metadata:
  name: badhook
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sleep\", \"3600\"]
    lifecycle:
      postStart:
        exec: {{command: [\"false\"]}}
---
apiVersion: v1
kind: Pod
metadata:
  name: deadline
spec:
  activeDeadlineSeconds: 3
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]
---
apiVersion: v1
kind: Pod
metadata:
  name: fallback
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"echo -n DONE; false\"]
    terminationMessagePolicy: FallbackToLogsOnError
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;

    // postStart ran in the container before its command looked.
    skiff.wait_for(Duration::from_secs(30), "the postStart file", || {
        Ok(skiff
            .kubectl(&["logs", "hooked"])?
            .stdout
            .contains("poststart"))
    })?;
    // preStop runs before SIGTERM: follow the log through the deletion.
    let follow = skiff
        .kubectl_cmd(&kubectl_binary(), &["logs", "-f", "hooked"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    skiff.kubectl(&["delete", "pod", "hooked"])?.ok()?;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "preStop's sleep counts"
    );
    let output = follow.wait_with_output()?;
    let log = String::from_utf8_lossy(&output.stdout).into_owned();
    let (pre, term) = (log.find("prestop"), log.find("TERM"));
    assert!(pre.is_some() && term.is_some() && pre < term, "{log:?}");

    let mut p = Value::Null;
    skiff
        .wait_for(Duration::from_secs(30), "badhook to fail", || {
            p = pod(&skiff, "badhook")?;
            Ok(p["status"]["phase"] == "Failed")
        })
        .with_context(|| format!("{:#}", p["status"]))?;
    let describe = skiff.kubectl(&["describe", "pod", "badhook"])?.ok()?.stdout;
    assert!(describe.contains("FailedPostStartHook"), "{describe}");

    skiff
        .wait_for(Duration::from_secs(30), "the deadline to pass", || {
            p = pod(&skiff, "deadline")?;
            Ok(p["status"]["phase"] == "Failed")
        })
        .with_context(|| format!("{:#}", p["status"]))?;
    assert_eq!(p["status"]["reason"], "DeadlineExceeded");
    assert_eq!(
        p["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );

    skiff.wait_for(Duration::from_secs(30), "fallback to fail", || {
        p = pod(&skiff, "fallback")?;
        Ok(p["status"]["phase"] == "Failed")
    })?;
    let message = &p["status"]["containerStatuses"][0]["state"]["terminated"]["message"];
    assert_eq!(message.as_str().map(str::trim), Some("DONE"), "{message}");
    Ok(())
}

/// The eviction manager's local-storage limits: a disk emptyDir over its
/// sizeLimit and a container over its ephemeral-storage limit get the pod
/// evicted (Failed, reason Evicted, upstream's message and event); a pod
/// within its limits keeps running.
#[test]
fn local_storage_limits_evict_the_pod() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: filler}}
spec:
  volumes: [{{name: scratch, emptyDir: {{sizeLimit: 5Mi}}}}]
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "dd if=/dev/zero of=/scratch/blob bs=1M count=8 && sync && sleep 3600"]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: writer}}
spec:
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "dd if=/dev/zero of=/blob bs=1M count=6 && sync && sleep 3600"]
    resources: {{limits: {{ephemeral-storage: 4Mi}}}}
  - name: idle
    image: {TEST_IMAGE}
    command: ["sleep", "3600"]
    resources: {{limits: {{ephemeral-storage: 10Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: alone}}
spec:
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "dd if=/dev/zero of=/blob bs=1M count=6 && sync && sleep 3600"]
    resources: {{limits: {{ephemeral-storage: 4Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: modest}}
spec:
  volumes: [{{name: scratch, emptyDir: {{sizeLimit: 5Mi}}}}]
  containers:
  - name: c
    image: {TEST_IMAGE}
    command: ["sh", "-c", "dd if=/dev/zero of=/scratch/blob bs=1M count=1 && sleep 3600"]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
"#
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    let evicted = |name: &str, message: &str| -> Result<()> {
        let mut p = Value::Null;
        skiff
            .wait_for(Duration::from_secs(60), &format!("{name} to be evicted"), || {
                p = pod(&skiff, name)?;
                Ok(p["status"]["phase"] == "Failed")
            })
            .with_context(|| format!("{:#}", p["status"]))?;
        assert_eq!(p["status"]["reason"], "Evicted", "{:#}", p["status"]);
        assert_eq!(p["status"]["message"], message);
        let state = &p["status"]["containerStatuses"][0]["state"];
        assert!(state["terminated"].is_object(), "{state:#}");
        let events = skiff
            .kubectl(&["get", "events", "--field-selector", &format!("involvedObject.name={name},reason=Evicted"), "-o", "json"])?
            .ok()?
            .stdout;
        let events: Value = serde_json::from_str(&events)?;
        assert_eq!(events["items"][0]["type"], "Warning", "{events:#}");
        assert_eq!(events["items"][0]["message"], message);
        Ok(())
    };
    evicted("filler", "Usage of EmptyDir volume \"scratch\" exceeds the limit \"5Mi\". ")?;
    evicted("writer", "Container c exceeded its local ephemeral storage limit \"4Mi\". ")?;
    // Alone, its limit is also the pod's, which upstream checks first.
    evicted("alone", "Pod ephemeral local storage usage exceeds the total limit of containers 4Mi. ")?;
    let modest = pod(&skiff, "modest")?;
    assert_eq!(modest["status"]["phase"], "Running", "{:#}", modest["status"]);
    Ok(())
}

/// A pod deleted again with a shorter grace period is killed by the
/// shorter deadline, as the kubelet does.
#[test]
fn deleting_again_with_a_shorter_grace_period_cuts_the_wait() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: stubborn
spec:
  terminationGracePeriodSeconds: 120
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap '' TERM; echo started; while true; do sleep 0.2; done\"]
"
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    skiff.wait_for(Duration::from_secs(30), "stubborn to run", || {
        Ok(pod(&skiff, "stubborn")?["status"]["phase"] == "Running")
    })?;
    skiff.kubectl(&["delete", "pod", "stubborn", "--wait=false"])?.ok()?;
    skiff.wait_for(Duration::from_secs(10), "stubborn to terminate", || {
        Ok(pod(&skiff, "stubborn")?["metadata"]["deletionGracePeriodSeconds"] == 120)
    })?;
    let again = std::time::Instant::now();
    skiff
        .kubectl(&["delete", "pod", "stubborn", "--grace-period=1", "--wait=false"])?
        .ok()?;
    skiff.wait_for(Duration::from_secs(30), "stubborn to be gone", || {
        Ok(skiff.kubectl(&["get", "pod", "stubborn"])?.stderr.contains("NotFound"))
    })?;
    assert!(again.elapsed() < Duration::from_secs(20), "took {:?}", again.elapsed());
    Ok(())
}

/// The node keys pods by UID: a pod force-deleted and created again at
/// once under the same name keeps its own logs and exec after the old
/// pod's teardown ends.
#[test]
fn a_pod_recreated_under_the_same_name_keeps_its_own_logs_and_exec() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = |word: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: phoenix
spec:
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap '' TERM; echo {word}; while true; do sleep 0.2; done\"]
"
        )
    };
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest("first"))?.ok()?;
    skiff.wait_for(Duration::from_secs(30), "the first pod to run", || {
        Ok(pod(&skiff, "phoenix")?["status"]["phase"] == "Running")
    })?;
    let old_uid = pod(&skiff, "phoenix")?["metadata"]["uid"].clone();
    skiff
        .kubectl(&["delete", "pod", "phoenix", "--grace-period=0", "--force"])?
        .ok()?;
    skiff.kubectl_stdin(&["create", "-f", "-"], &manifest("second"))?.ok()?;
    skiff.wait_for(Duration::from_secs(30), "the second pod to run", || {
        let now = pod(&skiff, "phoenix")?;
        Ok(now["metadata"]["uid"] != old_uid && now["status"]["phase"] == "Running")
    })?;
    // The old pod ignores SIGTERM: its teardown ends after the kill.
    let pods_dir = skiff.data_dir_path().join("pods");
    skiff.wait_for(Duration::from_secs(30), "the old pod's teardown", || {
        Ok(std::fs::read_dir(&pods_dir)?.count() == 1)
    })?;
    skiff.wait_for(Duration::from_secs(10), "the second pod's log", || {
        Ok(skiff.kubectl(&["logs", "phoenix"])?.stdout == "second\n")
    })?;
    let exec = skiff.kubectl(&["exec", "phoenix", "--", "echo", "inside"])?.ok()?;
    assert_eq!(exec.stdout, "inside\n");
    Ok(())
}
