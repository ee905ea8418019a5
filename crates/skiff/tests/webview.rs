//! The web view in a real browser: headless Chromium, driven over the
//! DevTools protocol, inside the test node's network namespace. A pod
//! created with kubectl appears and turns Running without a reload; its
//! page draws the timeline, the diagram, the log and the YAML; the nodes
//! page shows what is allocated; nothing gets in without the token.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use common::{Skiff, TEST_IMAGE};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Headless Chromium in a network namespace, killed (with its helpers)
/// when dropped.
struct Browser {
    child: Child,
    devtools: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(netns: &str) -> Result<Self> {
        let profile = tempfile::tempdir()?;
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args([
                "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            // Its scratch files go with the profile.
            .env("TMPDIR", profile.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("cannot start chromium (apt-get install chromium)")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (found, wait) = std::sync::mpsc::channel();
        // Reads on to the end, so chromium never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = found.send(url.trim().to_string());
                }
            }
        });
        let mut browser = Self { child, devtools: String::new(), _profile: profile };
        browser.devtools = wait
            .recv_timeout(Duration::from_secs(30))
            .context("chromium did not open its DevTools port")?;
        Ok(browser)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One DevTools session on a page.
struct Page {
    socket: Socket,
    session: String,
    next_id: u64,
    /// Uncaught exceptions the page threw.
    exceptions: Vec<String>,
    /// The page's load events since the last navigation.
    loads: usize,
}

impl Page {
    /// Attaches to the page `target` (made with [`Page::create`]).
    async fn attach(devtools: &str, target: &str) -> Result<Self> {
        let (socket, _) = tokio_tungstenite::connect_async(devtools).await?;
        let mut page = Self { socket, session: String::new(), next_id: 0, exceptions: Vec::new(), loads: 0 };
        let attached = page
            .call(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true}))
            .await?;
        page.session = attached["sessionId"].as_str().context("no session")?.to_string();
        page.send("Runtime.enable", json!({})).await?;
        page.send("Page.enable", json!({})).await?;
        Ok(page)
    }

    /// A new blank page; its target id.
    async fn create(devtools: &str) -> Result<String> {
        let (socket, _) = tokio_tungstenite::connect_async(devtools).await?;
        let mut browser = Self { socket, session: String::new(), next_id: 0, exceptions: Vec::new(), loads: 0 };
        let created = browser.call(None, "Target.createTarget", json!({"url": "about:blank"})).await?;
        Ok(created["targetId"].as_str().context("no target")?.to_string())
    }

    async fn send(&mut self, method: &str, params: Value) -> Result<Value> {
        let session = Some(self.session.clone());
        self.call(session, method, params).await
    }

    async fn call(&mut self, session: Option<String>, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        self.socket.send(Message::text(message.to_string())).await?;
        while let Some(frame) = self.socket.next().await {
            let Message::Text(text) = frame? else { continue };
            let reply: Value = serde_json::from_str(text.as_str())?;
            if reply["method"] == "Page.loadEventFired" {
                self.loads += 1;
            }
            if reply["method"] == "Runtime.exceptionThrown" {
                let details = &reply["params"]["exceptionDetails"];
                self.exceptions.push(format!("{} {}", details["text"], details["exception"]["description"]));
            }
            if reply["id"] == id {
                if let Some(error) = reply.get("error") {
                    bail!("{method}: {error}");
                }
                return Ok(reply["result"].clone());
            }
        }
        bail!("devtools closed during {method}")
    }

    /// Evaluates `expression` (awaiting a promise); its value.
    async fn eval(&mut self, expression: &str) -> Result<Value> {
        let result = self
            .send("Runtime.evaluate", json!({"expression": expression, "awaitPromise": true, "returnByValue": true}))
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("{}", exception["exception"]["description"].as_str().unwrap_or(&exception.to_string()));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits, as the page changes (a MutationObserver, no polling), until
    /// the JavaScript expression `check` is truthy; its value.
    async fn wait_until(&mut self, what: &str, check: &str) -> Result<Value> {
        let script = format!(
            r#"new Promise((resolve, reject) => {{
                const check = () => {{ try {{ return ({check}); }} catch (e) {{ return null; }} }};
                let observer;
                const timer = setTimeout(() => {{ observer.disconnect(); reject(new Error({what:?} + " within 90 s; page: " + document.body.innerText.slice(0, 2000))); }}, 90000);
                const attempt = () => {{ const v = check(); if (v) {{ observer.disconnect(); clearTimeout(timer); resolve(v); }} }};
                observer = new MutationObserver(attempt);
                observer.observe(document, {{ subtree: true, childList: true, characterData: true, attributes: true }});
                attempt();
            }})"#
        );
        self.eval(&script).await.with_context(|| format!("waiting for {what}"))
    }

    /// Opens `url` and waits for its load event.
    async fn navigate(&mut self, url: &str) -> Result<()> {
        self.loads = 0;
        self.send("Page.navigate", json!({"url": url})).await?;
        while self.loads == 0 {
            let Some(frame) = self.socket.next().await else { bail!("devtools closed while loading {url}") };
            let Message::Text(text) = frame? else { continue };
            let event: Value = serde_json::from_str(text.as_str())?;
            if event["method"] == "Page.loadEventFired" {
                self.loads += 1;
            }
        }
        Ok(())
    }

    async fn screenshot(&mut self) -> Result<Vec<u8>> {
        let shot = self
            .send("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}))
            .await?;
        Ok(base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap_or(""))?)
    }
}

/// Where tests leave what a person should look at.
fn artefacts() -> Result<PathBuf> {
    let dir = std::env::var_os("SKIFF_TEST_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artefacts"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A plain HTTP/1.1 GET from inside the namespace: the status code.
fn http_status(address: &str, path: &str) -> Result<u16> {
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let code = answer.split_whitespace().nth(1).context("no status line")?;
    Ok(code.parse()?)
}

#[test]
fn the_web_view_shows_pods_live_and_only_to_the_token_holder() -> Result<()> {
    let skiff = Skiff::start_node()?;
    let netns = skiff.netns.clone().context("node test")?;
    let url = std::fs::read_to_string(skiff.data_dir.path().join("web-view.url"))?.trim().to_string();
    let (origin, token) = url.split_once("/?token=").context("the printed address carries a token")?;
    let address = origin.trim_start_matches("http://").to_string();
    let origin = origin.to_string();

    // Without the token: nothing but the sign-in words, at every path.
    let (plain_address, wrong) = (address.clone(), format!("/?token={}", "0".repeat(token.len())));
    skiff.in_netns(move || async move {
        for path in ["/", "/app.js", "/api/v1/pods", "/api/v1/namespaces/default/pods/web/log", wrong.as_str()] {
            assert_eq!(http_status(&plain_address, path)?, 401, "{path} without the session");
        }
        Ok(())
    })?;

    let browser = Browser::start(&netns)?;
    let devtools = browser.devtools.clone();
    let target = {
        let devtools = devtools.clone();
        let (send, receive) = std::sync::mpsc::channel();
        skiff.in_netns(move || async move {
            send.send(Page::create(&devtools).await?)?;
            Ok(())
        })?;
        receive.recv()?
    };

    // The browser without the token is refused; with it, it gets the pods
    // table, and keeps a mark that a reload would wipe.
    {
        let (devtools, target, origin, url) = (devtools.clone(), target.clone(), origin.clone(), url.clone());
        skiff.in_netns(move || async move {
            let mut page = Page::attach(&devtools, &target).await?;
            page.navigate(&format!("{origin}/")).await?;
            let text = page.eval("document.body.innerText").await?;
            assert!(text.as_str().unwrap_or("").contains("needs its token"), "{text}");
            assert_eq!(page.eval("document.getElementById('pods-table') === null").await?, true);
            page.navigate(&url).await?;
            page.wait_until("the pods table", "document.getElementById('pods-table')").await?;
            assert_eq!(page.eval("location.search").await?, "", "the token leaves the address bar");
            page.eval("window.skiffMark = 'not reloaded'").await?;
            assert!(page.exceptions.is_empty(), "the page threw: {:?}", page.exceptions);
            Ok(())
        })?;
    }

    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  volumes:\n  - name: scratch\n    emptyDir: {{}}\n  containers:\n  - name: app\n    image: {TEST_IMAGE}\n    imagePullPolicy: Never\n    resources:\n      requests:\n        cpu: 250m\n        memory: 64Mi\n    volumeMounts:\n    - name: scratch\n      mountPath: /scratch\n    command: [\"sh\", \"-c\", \"echo hello from the web view test; trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &manifest)?.ok()?;
    let flaky = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: flaky\nspec:\n  containers:\n  - name: app\n    image: {TEST_IMAGE}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"echo starting; echo config missing: /etc/app.conf >&2; exit 3\"]\n"
    );
    skiff.kubectl_stdin(&["apply", "-f", "-"], &flaky)?.ok()?;

    {
        let (devtools, target) = (devtools.clone(), target.clone());
        skiff.in_netns(move || async move {
            let mut page = Page::attach(&devtools, &target).await?;
            let row = "document.querySelector('tr[data-name=\"web\"][data-namespace=\"default\"]')";
            page.wait_until("the pod's row", row).await?;
            let status = page
                .wait_until("the row to turn Running", &format!("{row} && {row}.querySelector('td[data-column=\"Status\"]').textContent === 'Running' && {row}.innerText"))
                .await?;
            let cells = status.as_str().unwrap_or("");
            assert!(cells.contains("1/1") && cells.contains("default"), "kubectl's columns: {cells}");
            assert_eq!(page.eval("window.skiffMark").await?, "not reloaded", "the row changed without a reload");

            // The pod's page (a hash change, still no reload).
            page.eval("location.hash = '#/pods/default/web'").await?;
            page.wait_until("a running bar on the timeline", "document.querySelector('#timeline svg rect[data-state=\"running\"]')").await?;
            page.wait_until("the Started event on the timeline", "document.querySelector('#timeline circle[data-reason=\"Started\"]')").await?;
            page.wait_until("the container's log", "document.getElementById('log').textContent.includes('hello from the web view test')").await?;
            let diagram = page.wait_until("the pod diagram", "document.querySelector('#diagram [data-container=\"app\"]') && document.getElementById('diagram').innerText").await?;
            let diagram = diagram.as_str().unwrap_or("");
            assert!(diagram.contains("scratch → /scratch") && diagram.contains("emptyDir"), "volumes drawn: {diagram}");
            let yaml = page.wait_until("the YAML", "document.getElementById('yaml').textContent").await?;
            let yaml = yaml.as_str().unwrap_or("");
            assert!(yaml.contains("kind: Pod") && yaml.contains("  name: web") && !yaml.contains("managedFields"), "{yaml}");
            std::fs::write(artefacts()?.join("webview-pod.png"), page.screenshot().await?)?;

            // The node: capacity, and the pod's requests allocated on it.
            page.eval("location.hash = '#/nodes'").await?;
            let cpu = page
                .wait_until("the pod's CPU request allocated on the node", "(document.querySelector('[data-node] tr[data-resource=\"cpu\"]') || {}).innerText?.includes('250m') && document.querySelector('[data-node]').innerText")
                .await?;
            assert!(cpu.as_str().unwrap_or("").contains("default/web"), "the node lists its pod: {cpu}");
            std::fs::write(artefacts()?.join("webview-nodes.png"), page.screenshot().await?)?;

            // A crash-looping pod's timeline: the failed run in red and the
            // BackOff event that says how it ended.
            page.eval("location.hash = '#/pods/default/flaky'").await?;
            // Two runs: the first, the 10 s back-off, the second.
            page.wait_until("two failed runs on the timeline", "document.querySelectorAll('#timeline svg rect[data-state=\"terminated\"]').length >= 2").await?;
            let back_off = page
                .wait_until("the BackOff event", "(document.querySelector('#timeline circle[data-reason=\"BackOff\"] title') || {}).textContent")
                .await?;
            // stdout and stderr reach the log through separate pipes, so
            // two lines written at once may land in either order.
            let back_off = back_off.as_str().unwrap_or("");
            assert!(
                ["starting | config missing: /etc/app.conf", "config missing: /etc/app.conf | starting"]
                    .iter()
                    .any(|tail| back_off.contains(&format!("exited with code 3 (Error); the end of its log: {tail}"))),
                "{back_off}"
            );
            std::fs::write(artefacts()?.join("webview-timeline.png"), page.screenshot().await?)?;
            assert_eq!(page.eval("window.skiffMark").await?, "not reloaded");
            assert!(page.exceptions.is_empty(), "the page threw: {:?}", page.exceptions);
            Ok(())
        })?;
    }

    // Deleted with kubectl: the rows go, live.
    skiff.kubectl(&["delete", "pod", "web", "flaky", "--wait=false"])?.ok()?;
    skiff.in_netns(move || async move {
        let mut page = Page::attach(&devtools, &target).await?;
        page.eval("location.hash = '#/'").await?;
        page.wait_until("the pods table", "document.getElementById('pods-table')").await?;
        page.wait_until("the row to go", "!document.querySelector('tr[data-name]') && document.getElementById('pods').innerText.includes('No pods')").await?;
        Ok(())
    })?;
    drop(browser);
    Ok(())
}

/// Sends a keep-alive GET on `stream` and reads the status line.
fn keep_alive_status(stream: &mut std::net::TcpStream, address: &str) -> Result<String> {
    write!(stream, "GET / HTTP/1.1\r\nHost: {address}\r\n\r\n")?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    Ok(line)
}

#[test]
fn the_web_view_holds_a_bounded_number_of_connections() -> Result<()> {
    let skiff = Skiff::start()?;
    let url = std::fs::read_to_string(skiff.data_dir.path().join("web-view.url"))?;
    let address = url.trim().trim_start_matches("http://").split('/').next().context("address")?.to_string();
    let cap = skiff_webview::MAX_CONNECTIONS;
    // `cap` open keep-alive connections, each answered once.
    let mut held = Vec::new();
    for _ in 0..cap {
        let mut stream = std::net::TcpStream::connect(&address)?;
        let status = keep_alive_status(&mut stream, &address)?;
        assert!(status.starts_with("HTTP/1.1 401"), "{status}");
        held.push(stream);
    }
    // One more waits in the backlog: no answer while the others stay open.
    // (A nothing-happens check needs some wait; an uncapped server answers
    // in about a millisecond.)
    let mut waiting = std::net::TcpStream::connect(&address)?;
    waiting.set_read_timeout(Some(Duration::from_millis(500)))?;
    let early = keep_alive_status(&mut waiting, &address);
    assert!(early.is_err(), "connection {} was served while {cap} were open: {early:?}", cap + 1);
    // The API's own listener is not affected.
    let run = skiff.kubectl(&["get", "namespaces", "-o", "name"])?;
    assert!(run.stdout.contains("namespace/default"), "{}", run.stderr);
    // Once one closes, the waiting connection is served.
    drop(held.pop());
    waiting.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(waiting.try_clone()?).read_line(&mut line)?;
    assert!(line.starts_with("HTTP/1.1 401"), "{line}");
    Ok(())
}
