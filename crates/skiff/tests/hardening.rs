//! Hostile requests against a real server: each gets upstream's 4xx, none
//! takes the server down, and its memory stays bounded. Includes a bounded
//! HTTP fuzz run of malformed requests.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::Skiff;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PODS: &str = "/api/v1/namespaces/default/pods";
const API_ONLY: &[&str] = &["--disable-scheduler"];

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "annotations": {"a": "x".repeat(1000)}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

/// The server's resident memory in KiB, from /proc.
fn rss_kib(skiff: &Skiff) -> Result<u64> {
    let pid = skiff.pid().context("server pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

#[test]
fn hostile_requests_get_upstreams_4xx_and_the_server_stays_up() -> Result<()> {
    let skiff = Skiff::start_with(API_ONLY)?;
    let api = skiff.api()?;
    runtime()?.block_on(async {
        ensure!(api.post_json(PODS, &pod("target")).await?.status == 201);

        // CVE-2019-1002100's shape: 30 copies, each doubling the annotations.
        let ops: Vec<Value> = (0..30)
            .map(|i| json!({"op": "copy", "from": "/metadata/annotations", "path": format!("/metadata/annotations/k{i}")}))
            .collect();
        let body = serde_json::to_vec(&ops)?;
        ensure!(body.len() < 3000, "the reproducer is {} bytes", body.len());
        let started = Instant::now();
        let answer = api
            .request("PATCH", &format!("{PODS}/target"), "application/json-patch+json", body)
            .await?;
        let took = started.elapsed();
        ensure!(answer.status == 413, "amplifying patch: {} {}", answer.status, answer.text());
        ensure!(answer.json()?["reason"] == "RequestEntityTooLarge");
        ensure!(
            answer.text().contains("exceeding the limit 3145728"),
            "{}",
            answer.text()
        );
        ensure!(took < Duration::from_secs(5), "the bound applies before the copies: {took:?}");
        let rss = rss_kib(&skiff)?;
        ensure!(rss < 300 * 1024, "server RSS after the reproducer: {rss} KiB");

        // Apply bodies that are not objects, or lack apiVersion/kind: 400, nothing created.
        for body in ["[]", "5", "\"x\"", "true", "null", "{}", "{\"kind\": \"Pod\"}", "{\"apiVersion\": \"v1\"}", "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": 7}"] {
            let answer = api
                .request("PATCH", &format!("{PODS}/applied?fieldManager=t"), "application/apply-patch+yaml", body.as_bytes().to_vec())
                .await?;
            ensure!(answer.status == 400, "apply body {body}: {} {}", answer.status, answer.text());
            ensure!(api.get(&format!("{PODS}/applied")).await?.status == 404, "apply body {body} created the pod");
        }
        let answer = api
            .request("PATCH", &format!("{PODS}/applied?fieldManager=t"), "application/apply-patch+yaml",
                     b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: applied\nspec:\n  containers:\n  - name: c\n    image: busybox\n".to_vec())
            .await?;
        ensure!(answer.status == 201, "a good apply creates: {} {}", answer.status, answer.text());

        // dryRun: only All, and All writes nothing.
        for value in ["true", "all", "garbage"] {
            let create = api.post_json(&format!("{PODS}?dryRun={value}"), &pod("dry")).await?;
            ensure!(create.status == 422, "POST dryRun={value}: {} {}", create.status, create.text());
            ensure!(
                create.json()?["message"]
                    == format!("CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{{\"{value}\"}}: supported values: \"All\""),
                "{}",
                create.text()
            );
            let delete = api.request("DELETE", &format!("{PODS}/target?dryRun={value}"), "application/json", Vec::new()).await?;
            ensure!(delete.status == 422, "DELETE dryRun={value}: {}", delete.status);
        }
        ensure!(api.get(&format!("{PODS}/dry")).await?.status == 404, "no dry-run pod was stored");
        ensure!(api.post_json(&format!("{PODS}?dryRun=All"), &pod("dry")).await?.status == 201);
        ensure!(api.get(&format!("{PODS}/dry")).await?.status == 404, "dryRun=All stores nothing");
        ensure!(api.get(&format!("{PODS}/target")).await?.status == 200, "the target survived");

        // Watches with a timeout that has passed end at once; a short one ends on time.
        for (timeout, within) in [("-5", 2), ("1", 5)] {
            let mut watch = api.watch(&format!("{PODS}?watch=true&timeoutSeconds={timeout}&resourceVersion=0")).await?;
            let started = Instant::now();
            while watch.next(Duration::from_secs(10)).await?.is_some() {}
            ensure!(started.elapsed() < Duration::from_secs(within), "timeoutSeconds={timeout} took {:?}", started.elapsed());
        }

        // Exact routing: a trailing slash is not the collection, read-only paths refuse writes.
        let slash = api.request("DELETE", &format!("{PODS}/"), "application/json", Vec::new()).await?;
        ensure!(slash.status == 400, "DELETE pods/: {} {}", slash.status, slash.text());
        ensure!(slash.json()?["message"] == "name must be provided");
        ensure!(api.get(&format!("{PODS}/target")).await?.status == 200, "DELETE pods/ deleted nothing");
        for path in ["/api", "/apis", "/openapi/v3/api/v1", "/version", "/healthz"] {
            let answer = api.request("DELETE", path, "application/json", Vec::new()).await?;
            ensure!(answer.status == 405, "DELETE {path}: {}", answer.status);
        }
        ensure!(api.get("/healthz/x").await?.status == 404);
        ensure!(api.get("/healthz/ping").await?.status == 200);
        ensure!(api.get("/api/v1//pods").await?.status == 404);

        // Bodies over 3 MiB and objects over etcd's limit.
        let huge = vec![b' '; 3 * 1024 * 1024 + 1];
        let answer = api.request("POST", PODS, "application/json", huge).await?;
        ensure!(answer.status == 413, "a 3 MiB body: {}", answer.status);
        let mut big = pod("big");
        big["spec"]["containers"][0]["env"] = json!((0..3).map(|i| json!({"name": format!("V{i}"), "value": "y".repeat(600 * 1024)})).collect::<Vec<_>>());
        let answer = api.post_json(PODS, &big).await?;
        ensure!(answer.status == 413, "a 1.8 MB pod: {} {}", answer.status, answer.text());
        let mut config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"a": "z".repeat(1024 * 1024 + 1)}});
        let answer = api.post_json("/api/v1/namespaces/default/configmaps", &config).await?;
        ensure!(answer.status == 422, "a 1 MiB ConfigMap: {} {}", answer.status, answer.text());
        config["data"]["a"] = json!("z".repeat(1000));
        ensure!(api.post_json("/api/v1/namespaces/default/configmaps", &config).await?.status == 201);
        Ok(())
    })?;
    let rss = rss_kib(&skiff)?;
    ensure!(rss < 300 * 1024, "server RSS at the end: {rss} KiB");
    Ok(())
}

/// Connections that send half their headers, or promise a body that never
/// comes, are closed by the server's own timeouts (upstream's 32 s header
/// timeout and 60 s request timeout).
#[test]
fn stalled_connections_are_closed_by_timeouts() -> Result<()> {
    let skiff = Skiff::start_with(API_ONLY)?;
    let api = skiff.api()?;
    runtime()?.block_on(async {
        let mut half = api.tls_stream().await?;
        half.write_all(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n").await?;
        half.flush().await?;
        let mut stalled = api.tls_stream().await?;
        stalled
            .write_all(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .await?;
        stalled.flush().await?;
        let started = Instant::now();
        let half_closed = async {
            let mut rest = Vec::new();
            let _ = half.read_to_end(&mut rest).await;
            started.elapsed()
        };
        let stalled_answer = async {
            let mut answer = vec![0u8; 4096];
            let n = stalled.read(&mut answer).await.unwrap_or(0);
            (started.elapsed(), String::from_utf8_lossy(&answer[..n]).into_owned())
        };
        let limit = Duration::from_secs(90);
        let (half_after, (stalled_after, answer)) = tokio::time::timeout(limit, async { tokio::join!(half_closed, stalled_answer) })
            .await
            .context("the server held a stalled connection for 90 s")?;
        ensure!(half_after >= Duration::from_secs(25) && half_after < Duration::from_secs(45), "half-sent headers closed after {half_after:?}");
        ensure!(stalled_after >= Duration::from_secs(55), "body timeout after {stalled_after:?}");
        ensure!(answer.starts_with("HTTP/1.1 504"), "a body that never came: {answer}");
        ensure!(answer.contains("\"reason\":\"Timeout\""), "{answer}");
        Ok(())
    })
}

/// A small deterministic generator (xorshift), so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Flips, drops, duplicates and inserts bytes of a seed.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(bytes.len().max(1));
        match rng.below(5) {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
            1 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            2 => bytes.insert(at.min(bytes.len()), *rng.pick(b"{}[]\",:0-\\ \n\x00\xff")),
            3 if !bytes.is_empty() => {
                let end = (at + rng.below(16)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                bytes.splice(at..at, chunk);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

#[test]
fn a_bounded_http_fuzz_run_finds_no_5xx_and_no_crash() -> Result<()> {
    let skiff = Skiff::start_with(API_ONLY)?;
    let api = skiff.api()?;
    let pod_seed = serde_json::to_vec(&pod("fuzz"))?;
    let seeds: Vec<Vec<u8>> = vec![
        pod_seed.clone(),
        br#"[{"op":"copy","from":"/metadata","path":"/metadata/annotations/x"},{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#.to_vec(),
        br#"{"metadata":{"labels":{"a":null},"$deleteFromPrimitiveList/finalizers":["x"]},"spec":{"$setElementOrder/containers":[{"name":"c"}],"containers":[{"name":"c","$patch":"delete"}]}}"#.to_vec(),
        b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: fuzz\n  labels: &a {x: y}\n  annotations: *a\nspec:\n  containers:\n  - name: c\n    image: busybox\n".to_vec(),
        br#"{"apiVersion":"v1","kind":"DeleteOptions","gracePeriodSeconds":0,"preconditions":{"uid":"x"},"dryRun":["All"]}"#.to_vec(),
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fuzz"},"data":{"a":"b"}}"#.to_vec(),
        br#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"fuzz"},"target":{"name":"n"}}"#.to_vec(),
    ];
    let paths = [
        "/api/v1/namespaces/default/pods",
        "/api/v1/namespaces/default/pods/fuzz",
        "/api/v1/namespaces/default/pods/fuzz/status",
        "/api/v1/namespaces/default/pods/fuzz/binding",
        "/api/v1/namespaces/default/pods/fuzz/eviction",
        "/api/v1/namespaces/default/pods/",
        "/api/v1/namespaces/default/configmaps/fuzz",
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/fuzz-ns",
        "/api/v1/namespaces",
        "/api/v1/nodes/fuzz",
        "/api/v1/pods",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/fuzz",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "/api", "/apis", "/openapi/v3/api/v1", "/healthz/etcd", "/metrics", "/api/v1/namespaces/default/pods/fuzz/nope",
    ];
    let queries = [
        "", "?dryRun=All", "?dryRun=x", "?fieldValidation=Strict", "?fieldValidation=bogus",
        "?labelSelector=a%20in%20(", "?fieldSelector=spec.nodeName%3D%3Dx", "?limit=-1", "?limit=x&continue=zz",
        "?gracePeriodSeconds=-3", "?resourceVersion=abc", "?watch=1&timeoutSeconds=-1", "?resourceVersionMatch=NotOlderThan&resourceVersion=1",
    ];
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let content_types = [
        "application/json", "application/yaml", "application/json-patch+json", "application/merge-patch+json",
        "application/strategic-merge-patch+json", "application/apply-patch+yaml", "application/vnd.kubernetes.protobuf", "text/plain",
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let requests = 2500;
    let failures = runtime()?.block_on(async {
        ensure!(api.post_json(PODS, &pod("fuzz")).await?.status == 201);
        let mut failures = Vec::new();
        let mut codes = std::collections::BTreeMap::<u16, usize>::new();
        for i in 0..requests {
            let method = *rng.pick(&methods);
            let path = format!("{}{}", rng.pick(&paths), rng.pick(&queries));
            let content_type = *rng.pick(&content_types);
            let seed = rng.pick(&seeds).clone();
            let body = if rng.below(4) == 0 { seed } else { mutate(&mut rng, &seed) };
            let answer = api.request(method, &path, content_type, body.clone()).await
                .with_context(|| format!("request {i} ({method} {path}) got no answer: the server dropped the connection"))?;
            *codes.entry(answer.status).or_default() += 1;
            if answer.status >= 500 {
                failures.push(format!("{method} {path} [{content_type}] {:?} -> {} {}", String::from_utf8_lossy(&body), answer.status, answer.text()));
            }
        }
        eprintln!("status codes of {requests} fuzzed requests: {codes:?}");
        ensure!(codes.len() >= 6, "the fuzz run reached too few outcomes: {codes:?}");
        Ok(failures)
    })?;
    ensure!(failures.is_empty(), "{} of {requests} requests got a 5xx:\n{}", failures.len(), failures.join("\n"));
    ensure!(!skiff.log().contains("panicked"), "a handler panicked:\n{}", skiff.log());
    let rss = rss_kib(&skiff)?;
    ensure!(rss < 300 * 1024, "server RSS after the fuzz run: {rss} KiB");
    Ok(())
}
