//! Interactive pods: `kubectl run -it --rm` on a real terminal, `kubectl
//! run -i` with piped input (stdinOnce), `kubectl attach -it`, and the
//! official Python client's attach, over WebSocket and SPDY, against real
//! pods on a node in a network namespace the test creates.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{kubectl_binary, Skiff, TEST_IMAGE};

/// Both of kubectl's wire formats: default WebSocket, then SPDY.
const TRANSPORTS: [(&str, &str); 2] = [("websocket", "true"), ("spdy", "false")];

/// An interactive shell on a pseudo-terminal: waits for the prompt
/// (pressing enter, as kubectl suggests), runs `hostname`, checks `tty`,
/// resizes the terminal and exits 3.
fn shell_steps() -> serde_json::Value {
    serde_json::json!([
        ["wait", "pressing enter", 60],
        ["send", "\r"],
        ["wait", "# ", 20],
        ["send", "hostname; tty\r"],
        ["wait", "/dev/pts/", 10],
        ["resize", 40, 100],
        ["sleep", 0.5],
        ["send", "stty size\r"],
        ["wait", "40 100", 10],
        ["send", "exit 3\r"],
    ])
}

#[test]
fn run_it_rm_gives_a_shell_on_a_terminal_then_deletes_the_pod() -> Result<()> {
    let skiff = Skiff::start_node()?;
    for (name, websockets) in TRANSPORTS {
        let pod = format!("debug-{name}");
        let image = format!("--image={TEST_IMAGE}");
        let kubectl = kubectl_binary();
        let run = skiff.drive_pty(
            &shell_steps(),
            &[&kubectl, "run", "-i", "--tty", "--rm", &image, "--restart=Never", &pod, "--", "sh"],
            &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)],
        )?;
        // The seeds' command: no "couldn't attach" fallback to logs.
        assert!(!run.stdout.contains("couldn't attach"), "{name}: {run:?}");
        assert!(run.stdout.contains(&format!("\r\n{pod}\r\n")), "{name}: hostname: {}", run.stdout);
        assert!(run.stdout.contains("/dev/pts/0"), "{name}: a real terminal: {}", run.stdout);
        assert!(run.stdout.contains("40 100"), "{name}: resize: {}", run.stdout);
        // kubectl run reports the container's exit code and deletes the pod.
        assert_eq!(run.status.code(), Some(3), "{name}: {run:?}");
        assert!(run.stdout.contains(&format!("pod \"{pod}\" deleted")), "{name}: {run:?}");
        skiff.wait_for(Duration::from_secs(30), "the pod to go", || {
            Ok(!skiff.kubectl(&["get", "pod", &pod])?.status.success())
        })?;
    }
    Ok(())
}

#[test]
fn run_i_feeds_piped_input_and_stdin_once_ends_it() -> Result<()> {
    let skiff = Skiff::start_node()?;
    for (name, websockets) in TRANSPORTS {
        let pod = format!("cat-{name}");
        let image = format!("--image={TEST_IMAGE}");
        let mut command = skiff.kubectl_cmd(
            &kubectl_binary(),
            &["run", "-i", "--rm", "-q", &image, "--restart=Never", &pod, "--", "sh", "-c", "cat; echo done"],
        );
        command
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(b"first line\nsecond line\n")?;
        }
        let run = common::Run::from_output(child.wait_with_output()?);
        // `cat` ends only when stdin closes: stdinOnce after the attach.
        assert_eq!(run.stdout, "first line\nsecond line\ndone\n", "{name}: {run:?}");
        assert!(run.status.success(), "{name}: {run:?}");
    }
    Ok(())
}

#[test]
fn attach_reaches_a_running_containers_stdin_from_kubectl_and_python() -> Result<()> {
    let skiff = Skiff::start_node()?;
    skiff.kubectl_stdin(&["apply", "-f", "-"], &common::echoer_pod())?.ok()?;
    skiff.wait_for(Duration::from_secs(30), "echoer to run", || {
        Ok(skiff.get_json(&["get", "pod", "echoer"])?["status"]["phase"] == "Running")
    })?;
    let stdout = skiff.python("attach_stdin.py", &[])?;
    assert_eq!(stdout.trim(), "attached twice");
    // kubectl attach -i: the input arrives, the container keeps running
    // after the session (no stdinOnce).
    for (name, websockets) in TRANSPORTS {
        let mut command = skiff.kubectl_cmd(&kubectl_binary(), &["attach", "-i", "echoer"]);
        command
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn()?;
        let mut stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(format!("via {name}\n").as_bytes())?;
            // Kept open: the session lasts until we have the answer.
            let wanted = format!("got:via {name}\n");
            let mut seen = String::new();
            let mut reader = std::io::BufReader::new(&mut stdout);
            while !seen.contains(&wanted) {
                let mut line = String::new();
                if std::io::BufRead::read_line(&mut reader, &mut line)? == 0 {
                    break;
                }
                seen.push_str(&line);
            }
            assert!(seen.contains(&wanted), "{name}: {seen:?}");
            drop(stdin);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let pod = skiff.get_json(&["get", "pod", "echoer"])?;
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    Ok(())
}

/// `kubectl debug -it` on a pseudo-terminal: in the debug container's
/// shell, `ps` must show the target's `sleep`.
fn debug_steps() -> serde_json::Value {
    serde_json::json!([
        ["wait", "pressing enter", 60],
        ["send", "\r"],
        ["wait", "# ", 20],
        ["send", "ps -o pid,args\r"],
        ["wait", "sleep 3600", 10],
        ["send", "exit\r"],
    ])
}

#[test]
fn kubectl_debug_adds_an_ephemeral_container_that_sees_its_target() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  containers:
  - name: app
    image: {TEST_IMAGE}
    command: [\"sleep\", \"3600\"]
"
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    skiff.wait_for(Duration::from_secs(30), "app to run", || {
        Ok(skiff.get_json(&["get", "pod", "app"])?["status"]["phase"] == "Running")
    })?;
    // Discovery names the subresource (kubectl debug checks nothing else).
    let discovery: serde_json::Value =
        serde_json::from_str(&skiff.kubectl(&["get", "--raw", "/api/v1"])?.ok()?.stdout)?;
    let listed = discovery["resources"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["name"] == "pods/ephemeralcontainers"));
    assert!(listed, "{discovery}");
    let image = format!("--image={TEST_IMAGE}");
    let kubectl = kubectl_binary();
    let run = skiff.drive_pty(
        &debug_steps(),
        &[&kubectl, "debug", "-it", "app", &image, "--target=app", "-c", "debugger", "--", "sh"],
        &[],
    )?;
    assert!(run.stdout.contains("sleep 3600"), "the target's processes: {run:?}");
    assert!(
        run.stdout.contains("Session ended, the ephemeral container will not be restarted"),
        "{run:?}"
    );
    assert!(run.status.success(), "{run:?}");
    // Ended for good; the pod itself is untouched.
    skiff.wait_for(Duration::from_secs(30), "the debug container to end", || {
        let pod = skiff.get_json(&["get", "pod", "app"])?;
        Ok(pod["status"]["ephemeralContainerStatuses"][0]["state"]["terminated"].is_object())
    })?;
    let pod = skiff.get_json(&["get", "pod", "app"])?;
    let debugger = &pod["status"]["ephemeralContainerStatuses"][0];
    assert_eq!(debugger["name"], "debugger");
    assert_eq!(debugger["restartCount"], 0);
    assert_eq!(debugger["state"]["terminated"]["exitCode"], 0);
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(pod["spec"]["ephemeralContainers"][0]["targetContainerName"], "app");
    assert_eq!(pod["spec"]["ephemeralContainers"][0]["terminationMessagePath"], "/dev/termination-log");
    // Upstream's refusals: no removal, no change, not on create.
    let removal = skiff.kubectl(&[
        "patch", "pod", "app", "--subresource=ephemeralcontainers", "--type=json",
        "-p", r#"[{"op": "remove", "path": "/spec/ephemeralContainers/0"}]"#,
    ])?;
    assert!(
        removal.stderr.contains("spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be removed"),
        "{removal:?}"
    );
    let created = skiff.kubectl_stdin(
        &["create", "-f", "-"],
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: born-debugged
spec:
  containers:
  - name: c
    image: {TEST_IMAGE}
  ephemeralContainers:
  - name: d
    image: {TEST_IMAGE}
"
        ),
    )?;
    assert!(
        created.stderr.contains("spec.ephemeralContainers: Forbidden: cannot be set on create"),
        "{created:?}"
    );
    // The official Python client adds one too; both are reported.
    let logged = skiff.python("ephemeral.py", &[("IMAGE", TEST_IMAGE)])?;
    assert_eq!(logged.trim(), "from python debug");
    let pod = skiff.get_json(&["get", "pod", "app"])?;
    assert_eq!(pod["status"]["ephemeralContainerStatuses"].as_array().map(Vec::len), Some(2));
    // --copy-to: a copy of the pod with a changed command, sharing
    // processes (kubectl posts the copy as protobuf).
    skiff
        .kubectl(&["debug", "app", "--copy-to=app-copy", "--share-processes", "--container=app", "--", "sh", "-c", "echo copied; sleep 3600"])?
        .ok()?;
    skiff.wait_for(Duration::from_secs(30), "the copy to run", || {
        Ok(skiff.get_json(&["get", "pod", "app-copy"])?["status"]["phase"] == "Running")
    })?;
    let copy = skiff.get_json(&["get", "pod", "app-copy"])?;
    assert_eq!(copy["spec"]["shareProcessNamespace"], true);
    assert_eq!(copy["spec"]["containers"][0]["command"], serde_json::json!(["sh", "-c", "echo copied; sleep 3600"]));
    skiff.wait_for(Duration::from_secs(30), "the copy's log", || {
        Ok(skiff.kubectl(&["logs", "app-copy"])?.stdout == "copied\n")
    })?;
    let ports = skiff.kubectl(&[
        "patch", "pod", "app", "--subresource=ephemeralcontainers", "--type=strategic",
        "-p", &format!(r#"{{"spec": {{"ephemeralContainers": [{{"name": "web", "image": "{TEST_IMAGE}", "ports": [{{"containerPort": 80}}]}}]}}}}"#),
    ])?;
    assert!(
        ports.stderr.contains("spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container"),
        "{ports:?}"
    );
    Ok(())
}
