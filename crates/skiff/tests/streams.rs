//! `kubectl exec` (plain, `-i`, `-it` on a real terminal) and `kubectl
//! port-forward`, over the WebSocket protocols kubectl 1.32 uses by default
//! and over the SPDY fallback, against real pods on a node in a network
//! namespace the test creates.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{kubectl_binary, Skiff, TEST_IMAGE};

/// Both of kubectl's wire formats: default WebSocket, then SPDY.
const TRANSPORTS: [(&str, &str); 2] = [("websocket", "true"), ("spdy", "false")];

fn start_web(skiff: &Skiff) -> Result<()> {
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"mkdir -p /www && echo hello from web > /www/index.html && httpd -f -p 80 -h /www & trap 'exit 0' TERM; wait\"]
  - name: side
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    skiff.wait_for(Duration::from_secs(60), "pod web to be Ready", || {
        let pod = skiff.get_json(&["get", "pod", "web"])?;
        Ok(pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"))
    })
}

/// kubectl with the remote-command transport chosen.
fn exec(
    skiff: &Skiff,
    websockets: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<common::Run> {
    use std::io::Write;
    let mut command = skiff.kubectl_cmd(&kubectl_binary(), args);
    command
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    Ok(common::Run::from_output(child.wait_with_output()?))
}

#[test]
fn exec_passes_output_stdin_and_exit_codes_over_both_transports() -> Result<()> {
    let skiff = Skiff::start_node()?;
    start_web(&skiff)?;
    for (name, websockets) in TRANSPORTS {
        let run = exec(
            &skiff,
            websockets,
            &[
                "exec",
                "web",
                "-c",
                "web",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            None,
        )?;
        assert_eq!(run.status.code(), Some(3), "{name}: {run:?}");
        assert_eq!(run.stdout, "out\n", "{name}");
        assert!(run.stderr.contains("err\n"), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains("command terminated with exit code 3"),
            "{name}: {}",
            run.stderr
        );

        // stdin reaches the process and its EOF ends it.
        let run = exec(
            &skiff,
            websockets,
            &["exec", "-i", "web", "-c", "side", "--", "wc", "-l"],
            Some("one\ntwo\nthree\n"),
        )?
        .ok()?;
        assert_eq!(run.stdout.trim(), "3", "{name}");

        // The command runs in the container: its hostname, its files,
        // its environment.
        let run = exec(
            &skiff,
            websockets,
            &[
                "exec",
                "web",
                "-c",
                "web",
                "--",
                "sh",
                "-c",
                "hostname; cat /www/index.html; echo $HOSTNAME",
            ],
            None,
        )?
        .ok()?;
        assert_eq!(run.stdout, "web\nhello from web\nweb\n", "{name}");

        let run = exec(
            &skiff,
            websockets,
            &["exec", "web", "-c", "nope", "--", "true"],
            None,
        )?
        .failed()?;
        assert!(
            run.stderr.contains(
                "Error from server (BadRequest): container nope is not valid for pod web"
            ),
            "{name}: {}",
            run.stderr
        );
    }
    // Without -c in a two-container pod, kubectl picks the first and says so.
    let run = skiff
        .kubectl(&["exec", "web", "--", "cat", "/www/index.html"])?
        .ok()?;
    assert_eq!(run.stdout, "hello from web\n");
    Ok(())
}

/// `kubectl exec -it` on a pseudo-terminal: runs `hostname`, resizes the
/// terminal, interrupts a `sleep` with Ctrl-C and exits 7.
fn exec_it_steps() -> serde_json::Value {
    serde_json::json!([
        ["wait", "# ", 20],
        ["send", "hostname\r"],
        ["wait", "\r\nweb\r\n", 10],
        ["resize", 50, 132],
        ["sleep", 0.5],
        ["send", "stty size\r"],
        ["wait", "50 132", 10],
        ["send", "sleep 60; echo slept\r"],
        ["sleep", 1],
        ["send", "\u{3}"],
        ["sleep", 0.5],
        ["send", "exit 7\r"],
    ])
}

#[test]
fn exec_it_gives_a_real_terminal_over_both_transports() -> Result<()> {
    let skiff = Skiff::start_node()?;
    start_web(&skiff)?;
    for (name, websockets) in TRANSPORTS {
        let started = std::time::Instant::now();
        let kubectl = kubectl_binary();
        let run = skiff.drive_pty(
            &exec_it_steps(),
            &[&kubectl, "exec", "-it", "web", "-c", "web", "--", "sh"],
            &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)],
        )?;
        assert_eq!(run.status.code(), Some(7), "{name}: {run:?}");
        assert!(run.stdout.contains("\r\nweb\r\n"), "{name}: {}", run.stdout);
        assert!(
            run.stdout.contains("50 132"),
            "{name}: resize: {}",
            run.stdout
        );
        assert!(
            !run.stdout.contains("\r\nslept"),
            "{name}: Ctrl-C interrupts the sleep: {}",
            run.stdout
        );
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{name}: the interrupted sleep did not hold the session"
        );
    }
    Ok(())
}

/// A running `kubectl port-forward`, killed on drop.
struct Forward(Child);

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kubectl port-forward <args>` and returns it with the local port
/// of its first "Forwarding from 127.0.0.1:PORT" line.
fn port_forward(skiff: &Skiff, websockets: &str, args: &[&str]) -> Result<(Forward, u16)> {
    let mut all = vec!["port-forward"];
    all.extend(args);
    let mut child = skiff
        .kubectl_cmd(&kubectl_binary(), &all)
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let forward = Forward(child);
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // kubectl logs every connection to stdout: keep reading it.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let port = line
        .trim()
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("unexpected port-forward output {line:?}"))?;
    Ok((forward, port))
}

/// GET / on 127.0.0.1:port inside the node's namespace, `n` at a time.
fn fetch_parallel(skiff: &Skiff, port: u16, n: usize) -> Result<Vec<String>> {
    let script = format!(
        "import concurrent.futures, urllib.request
def get(_):
    with urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=20) as r:
        return r.read().decode()
with concurrent.futures.ThreadPoolExecutor({n}) as pool:
    for body in pool.map(get, range({n})):
        print(body.strip())
"
    );
    let run = skiff.on_node(&["python3", "-c", &script])?.ok()?;
    Ok(run.stdout.lines().map(str::to_string).collect())
}

#[test]
fn port_forward_relays_parallel_connections_and_reports_refusals() -> Result<()> {
    let skiff = Skiff::start_node()?;
    start_web(&skiff)?;
    for (name, websockets) in TRANSPORTS {
        let (forward, port) = port_forward(&skiff, websockets, &["web", ":80"])?;
        let bodies = fetch_parallel(&skiff, port, 20)?;
        assert_eq!(bodies.len(), 20, "{name}");
        assert!(
            bodies.iter().all(|b| b == "hello from web"),
            "{name}: {bodies:?}"
        );
        drop(forward);

        // Nothing listens on 81: kubectl reports the node's error and gives up.
        let (mut forward, port) = port_forward(&skiff, websockets, &["pod/web", ":81"])?;
        let _ = skiff.on_node(&[
            "python3",
            "-c",
            &format!("import socket; s=socket.create_connection(('127.0.0.1',{port})); s.recv(10)"),
        ])?;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = forward.0.try_wait()? {
                break status;
            }
            if std::time::Instant::now() > deadline {
                bail!("{name}: port-forward kept running after the refused connection");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        if let Some(mut err) = forward.0.stderr.take() {
            use std::io::Read;
            err.read_to_string(&mut stderr)?;
        }
        assert!(!status.success(), "{name}");
        assert!(
            stderr.contains("dial tcp4 127.0.0.1:81: connect: connection refused")
                && stderr.contains("lost connection to pod"),
            "{name}: {stderr}"
        );
    }
    Ok(())
}

#[test]
fn attach_streams_output_until_the_container_ends() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: ticker
spec:
  restartPolicy: Never
  containers:
  - name: ticker
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"sleep 2; for i in 1 2 3 4 5 6; do echo tick $i; echo tock $i >&2; sleep 1; done\"]
"
    );
    skiff
        .kubectl_stdin(&["apply", "-f", "-"], &manifest)?
        .ok()?;
    skiff.wait_for(Duration::from_secs(30), "ticker to run", || {
        Ok(skiff.get_json(&["get", "pod", "ticker"])?["status"]["phase"] == "Running")
    })?;
    let started = std::time::Instant::now();
    let run = skiff.kubectl(&["attach", "ticker"])?.ok()?;
    assert!(run.stdout.contains("tick 6\n"), "{run:?}");
    assert!(run.stderr.contains("tock 6\n"), "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "attach ends with the container"
    );
    Ok(())
}

#[test]
fn the_python_clients_exec_stdin_arrives_as_text_frames() -> Result<()> {
    let skiff = Skiff::start_node()?;
    start_web(&skiff)?;
    let stdout = skiff.python("exec_stdin.py", &[])?;
    assert_eq!(stdout.trim(), "got:hello from python");
    Ok(())
}

#[test]
fn the_python_clients_port_forward_speaks_websocket_channels() -> Result<()> {
    let skiff = Skiff::start_node()?;
    start_web(&skiff)?;
    let stdout = skiff.python("port_forward.py", &[])?;
    assert_eq!(stdout.trim(), "forwarded");
    Ok(())
}

