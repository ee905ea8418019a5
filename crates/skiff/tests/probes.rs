//! Liveness, readiness and startup probes on real pods, observed through
//! the real kubectl: restarts with events and the same pod IP, READY
//! flipping without restarts, startup probes holding liveness back.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{pod, pod_condition as condition, Skiff, TEST_IMAGE};
use serde_json::Value;

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The READY and RESTARTS cells of `kubectl get pod`.
fn ready_and_restarts(skiff: &Skiff, name: &str) -> Result<(String, String)> {
    let line = skiff
        .kubectl(&["get", "pod", name, "--no-headers"])?
        .ok()?
        .stdout;
    let cells: Vec<&str> = line.split_whitespace().collect();
    // NAME READY STATUS RESTARTS [(Xs ago)] AGE
    let restarts = if cells.get(4).is_some_and(|c| c.starts_with('(')) {
        format!("{} {} {}", cells[3], cells[4], cells[5])
    } else {
        cells.get(3).unwrap_or(&"").to_string()
    };
    Ok((cells.get(1).unwrap_or(&"").to_string(), restarts))
}

/// An HTTP server that answers 200 to its first 5 health checks and 500
/// after (as `smlinux/unhealthy`), with a TCP readiness probe.
fn unhealthy_manifest() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: unhealthy
spec:
  containers:
  - name: web
    image: {TEST_IMAGE}
    command:
    - sh
    - -c
    - |
      mkdir -p /www/cgi-bin
      cat > /www/cgi-bin/health <<'EOS'
      #!/bin/sh
      n=`cat /tmp/count 2>/dev/null || echo 0`; n=`expr $n + 1`; echo $n > /tmp/count
      if [ $n -le 5 ]; then echo "Status: 200 OK"; else echo "Status: 500 Internal Server Error"; fi
      echo "Content-Type: text/plain"; echo; echo $n
      EOS
      chmod +x /www/cgi-bin/health
      trap 'exit 0' TERM
      httpd -f -p 80 -h /www & wait
    ports:
    - name: http
      containerPort: 80
    livenessProbe:
      httpGet: {{path: /cgi-bin/health, port: http}}
      periodSeconds: 1
      failureThreshold: 2
    readinessProbe:
      tcpSocket: {{port: 80}}
      periodSeconds: 1
"#
    )
}

#[test]
fn a_failing_liveness_probe_restarts_the_container_not_the_pod() -> Result<()> {
    let skiff = Skiff::start_node()?;
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &unhealthy_manifest())?
        .ok()?;
    let mut first = Value::Null;
    skiff.wait_for(Duration::from_secs(30), "the pod to be Ready", || {
        first = pod(&skiff, "unhealthy")?;
        Ok(container(&first, "web")["ready"] == true)
    })?;
    assert_eq!(ready_and_restarts(&skiff, "unhealthy")?.1, "0");
    let mut restarted = Value::Null;
    skiff.wait_for(Duration::from_secs(60), "a liveness restart", || {
        restarted = pod(&skiff, "unhealthy")?;
        Ok(container(&restarted, "web")["restartCount"].as_i64() >= Some(1))
    })?;
    assert_eq!(restarted["status"]["podIP"], first["status"]["podIP"]);
    assert_eq!(restarted["metadata"]["uid"], first["metadata"]["uid"]);
    assert!(
        container(&restarted, "web")["lastState"]["terminated"].is_object(),
        "{}",
        container(&restarted, "web")
    );
    let (_, restarts) = ready_and_restarts(&skiff, "unhealthy")?;
    assert!(
        restarts.starts_with("1 (") && restarts.ends_with("ago)"),
        "{restarts}"
    );
    let describe = skiff
        .kubectl(&["describe", "pod", "unhealthy"])?
        .ok()?
        .stdout;
    for text in [
        "Liveness probe failed: HTTP probe failed with statuscode: 500",
        "Container web failed liveness probe, will be restarted",
        "http-get http://:http/cgi-bin/health delay=0s timeout=1s period=1s #success=1 #failure=2",
        "tcp-socket :80 delay=0s timeout=1s period=1s #success=1 #failure=3",
    ] {
        assert!(describe.contains(text), "{text:?} missing:\n{describe}");
    }
    // It comes back (fresh counter, so healthy again) and fails again.
    skiff.wait_for(Duration::from_secs(90), "a second restart", || {
        Ok(container(&pod(&skiff, "unhealthy")?, "web")["restartCount"].as_i64() >= Some(2))
    })?;
    Ok(())
}

#[test]
fn readiness_flips_ready_without_restarting_and_exec_probes_time_out() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: flip
spec:
  containers:
  - name: flip
    image: {TEST_IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 4; touch /tmp/ready; sleep 6; rm /tmp/ready; while true; do sleep 1; done"]
    readinessProbe:
      exec: {{command: [cat, /tmp/ready]}}
      periodSeconds: 1
  - name: slow
    image: {TEST_IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    readinessProbe:
      exec: {{command: [sleep, "5"]}}
      timeoutSeconds: 1
      periodSeconds: 2
"#
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    skiff.wait_for(Duration::from_secs(30), "both containers running", || {
        let p = pod(&skiff, "flip")?;
        Ok(["flip", "slow"]
            .iter()
            .all(|c| container(&p, c)["state"]["running"].is_object()))
    })?;
    let p = pod(&skiff, "flip")?;
    assert_eq!(container(&p, "flip")["ready"], false);
    let ready = condition(&p, "ContainersReady");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ContainersNotReady");
    assert_eq!(
        ready["message"],
        "containers with unready status: [flip slow]"
    );
    assert_eq!(ready_and_restarts(&skiff, "flip")?.0, "0/2");

    skiff.wait_for(Duration::from_secs(20), "READY 1/2", || {
        Ok(ready_and_restarts(&skiff, "flip")?.0 == "1/2")
    })?;
    let p = pod(&skiff, "flip")?;
    assert_eq!(
        condition(&p, "Ready")["message"],
        "containers with unready status: [slow]"
    );
    skiff.wait_for(Duration::from_secs(20), "READY back to 0/2", || {
        Ok(ready_and_restarts(&skiff, "flip")?.0 == "0/2")
    })?;
    let p = pod(&skiff, "flip")?;
    for name in ["flip", "slow"] {
        assert_eq!(
            container(&p, name)["restartCount"],
            0,
            "readiness never restarts"
        );
    }
    let describe = skiff.kubectl(&["describe", "pod", "flip"])?.ok()?.stdout;
    assert!(
        describe.contains("Readiness probe failed: command \"sleep 5\" timed out; while readiness fails the pod is not Ready: Services send it no traffic (the container is not restarted)"),
        "upstream's words, then what readiness means: {describe}"
    );
    Ok(())
}

#[test]
fn a_startup_probe_holds_liveness_back_until_it_passes() -> Result<()> {
    let skiff = Skiff::start_node()?;
    // Starting takes 20 s; the liveness probe alone would kill it in 1 s.
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: slowstart
spec:
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 20; touch /tmp/started; while true; do sleep 1; done"]
    startupProbe:
      exec: {{command: [test, -f, /tmp/started]}}
      periodSeconds: 2
      failureThreshold: 15
    livenessProbe:
      exec: {{command: [test, -f, /tmp/started]}}
      periodSeconds: 1
      failureThreshold: 1
"#
    );
    let created = Instant::now();
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    skiff.wait_for(Duration::from_secs(30), "the container to run", || {
        Ok(container(&pod(&skiff, "slowstart")?, "app")["state"]["running"].is_object())
    })?;
    std::thread::sleep(Duration::from_secs(8));
    let p = pod(&skiff, "slowstart")?;
    let app = container(&p, "app");
    assert_eq!(app["started"], false, "{app}");
    assert_eq!(app["ready"], false, "{app}");
    assert_eq!(app["restartCount"], 0, "{app}");
    let mut last = Value::Null;
    skiff
        .wait_for(Duration::from_secs(40), "the startup probe to pass", || {
            last = pod(&skiff, "slowstart")?;
            Ok(container(&last, "app")["started"] == true)
        })
        .with_context(|| format!("{}", container(&last, "app")))?;
    assert!(created.elapsed() >= Duration::from_secs(18));
    let app = container(&last, "app");
    assert_eq!(app["restartCount"], 0, "{app}");
    assert_eq!(app["ready"], true, "{app}");
    // Liveness now runs and passes: still no restart a few periods later.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        container(&pod(&skiff, "slowstart")?, "app")["restartCount"],
        0
    );
    Ok(())
}
