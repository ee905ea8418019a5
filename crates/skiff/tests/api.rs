//! The API server over raw HTTPS: authentication, durability across restarts
//! and `kill -9`, watch semantics, paging, subresources and metrics.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::Skiff;
use serde_json::{json, Value};

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "burst"}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

const PODS: &str = "/api/v1/namespaces/default/pods";
/// These tests observe the API alone; the scheduler would add its own writes and watches.
const API_ONLY: &[&str] = &["--disable-scheduler"];

#[test]
fn authentication_is_required_except_for_health_and_version() -> Result<()> {
    let skiff = Skiff::start_with(API_ONLY)?;
    runtime()?.block_on(async {
        let anonymous = skiff.anonymous_api()?;
        for open in ["/version", "/healthz", "/livez", "/readyz"] {
            assert_eq!(anonymous.get(open).await?.status, 200, "{open} is public");
        }
        let version = anonymous.get("/version").await?.json()?;
        assert_eq!(
            (version["major"].as_str(), version["minor"].as_str()),
            (Some("1"), Some("32"))
        );
        let denied = anonymous.get(PODS).await?;
        assert_eq!(denied.status, 401);
        assert_eq!(denied.json()?["reason"], "Unauthorized");
        let mut wrong = skiff.anonymous_api()?;
        wrong.bearer = Some("not-the-token".into());
        assert_eq!(wrong.get(PODS).await?.status, 401);
        let mut token = skiff.anonymous_api()?;
        token.bearer = Some(skiff.token()?);
        assert_eq!(
            token.get(PODS).await?.status,
            200,
            "the node token authenticates"
        );
        assert_eq!(
            skiff.api()?.get(PODS).await?.status,
            200,
            "the admin certificate authenticates"
        );
        Ok(())
    })
}

#[test]
fn restart_keeps_objects_and_resource_versions() -> Result<()> {
    let mut skiff = Skiff::start_with(API_ONLY)?;
    let rt = runtime()?;
    let before = rt.block_on(async {
        let api = skiff.api()?;
        for name in ["a", "b", "c"] {
            ensure!(api.post_json(PODS, &pod(name)).await?.status == 201);
        }
        api.get(PODS).await?.json()
    })?;
    skiff.restart()?;
    let after = rt.block_on(async { skiff.api()?.get(PODS).await?.json() })?;
    assert_eq!(
        before["items"], after["items"],
        "same objects with the same resourceVersions"
    );
    // The store's revision carries on (the restarted server, on a new
    // port, may have rewritten the `kubernetes` Endpoints meanwhile).
    let revision = |list: &serde_json::Value| -> Result<u64> {
        Ok(list["metadata"]["resourceVersion"].as_str().context("rv")?.parse()?)
    };
    assert!(revision(&after)? >= revision(&before)?);
    let next = rt.block_on(async { skiff.api()?.post_json(PODS, &pod("d")).await?.json() })?;
    let rv: u64 = next["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .parse()?;
    let old: u64 = before["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .parse()?;
    assert!(rv > old, "revisions keep increasing after a restart");
    Ok(())
}

#[test]
fn kill_9_during_a_burst_of_creates_loses_no_acknowledged_pod() -> Result<()> {
    let mut skiff = Skiff::start_with(API_ONLY)?;
    let rt = runtime()?;
    let api = skiff.api()?;
    let acknowledged = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let burst = {
        let acknowledged = acknowledged.clone();
        std::thread::spawn(move || -> Result<()> {
            runtime()?.block_on(async move {
                let mut tasks = Vec::new();
                for worker in 0..8 {
                    let (api, acknowledged, started) =
                        (api.clone(), acknowledged.clone(), started_tx.clone());
                    tasks.push(tokio::spawn(async move {
                        for i in 0..25 {
                            let name = format!("burst-{worker}-{i}");
                            match api.post_json(PODS, &pod(&name)).await {
                                Ok(response) if response.status == 201 => {
                                    acknowledged.lock().map(|mut a| a.insert(name)).ok();
                                    let _ = started.send(());
                                }
                                Ok(_) | Err(_) => {}
                            }
                        }
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
                Ok(())
            })
        })
    };
    // Kill the server in the middle of the burst.
    for _ in 0..60 {
        started_rx
            .recv_timeout(Duration::from_secs(20))
            .context("creates are being acknowledged")?;
    }
    skiff.kill9()?;
    let _ = burst.join();
    let acknowledged = acknowledged.lock().map(|a| a.clone()).unwrap_or_default();
    ensure!(
        acknowledged.len() >= 60 && acknowledged.len() < 200,
        "killed mid-burst ({} acknowledged)",
        acknowledged.len()
    );
    skiff.restart()?;
    let stored: BTreeSet<String> = rt.block_on(async { skiff.api()?.get(PODS).await?.json() })?
        ["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged creates were lost: {lost:?}",
        lost.len()
    );
    Ok(())
}

#[test]
fn sigterm_stops_cleanly() -> Result<()> {
    let mut skiff = Skiff::start_with(API_ONLY)?;
    let status = skiff.stop()?;
    assert!(status.success(), "exit status {status}");
    assert!(skiff.log().contains("SIGTERM received"));
    Ok(())
}

#[test]
fn watch_streams_changes_with_selectors_and_resource_versions() -> Result<()> {
    let skiff = Skiff::start_with(API_ONLY)?;
    runtime()?.block_on(async {
        let api = skiff.api()?;
        let created = api.post_json(PODS, &pod("w1")).await?.json()?;
        let rv = created["metadata"]["resourceVersion"].as_str().context("rv")?.to_string();
        let timeout = Duration::from_secs(10);

        // From "0": the current state first.
        let mut initial = api.watch(&format!("{PODS}?watch=true&resourceVersion=0")).await?;
        let first = initial.next(timeout).await?.context("event")?;
        assert_eq!((first["type"].as_str(), first["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("w1")));

        // From a resourceVersion: only what came after, selector transitions included.
        let mut labelled = api.watch(&format!("{PODS}?watch=true&resourceVersion={rv}&labelSelector=tier%3Dfront")).await?;
        let mut by_name = api
            .watch(&format!("{PODS}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dw1&allowWatchBookmarks=true"))
            .await?;
        for tier in ["front", "back"] {
            let body = serde_json::to_vec(&json!({"metadata": {"labels": {"tier": tier}}}))?;
            let patched = api.request("PATCH", &format!("{PODS}/w1"), "application/merge-patch+json", body).await?;
            ensure!(patched.status == 200, "{}", patched.text());
        }
        let added = labelled.next(timeout).await?.context("event")?;
        assert_eq!(added["type"], "ADDED", "starting to match is ADDED");
        let left = labelled.next(timeout).await?.context("event")?;
        assert_eq!(left["type"], "DELETED", "ceasing to match is DELETED");
        assert_eq!(by_name.next(timeout).await?.context("event")?["type"], "MODIFIED");
        assert_eq!(by_name.next(timeout).await?.context("event")?["type"], "MODIFIED");
        ensure!(api.request("DELETE", &format!("{PODS}/w1"), "application/json", Vec::new()).await?.status == 200);
        let deleted = by_name.next(timeout).await?.context("event")?;
        assert_eq!(deleted["type"], "DELETED");
        let deleted_rv: u64 = deleted["object"]["metadata"]["resourceVersion"].as_str().context("rv")?.parse()?;
        assert!(deleted_rv > rv.parse::<u64>()?);

        // timeoutSeconds ends the stream.
        let mut short = api.watch(&format!("{PODS}?watch=true&resourceVersion={deleted_rv}&timeoutSeconds=1")).await?;
        assert!(short.next(Duration::from_secs(5)).await?.is_none(), "the server closes the watch at its timeout");

        // Tables in watch events, as kubectl get -w asks.
        ensure!(api.post_json(PODS, &pod("w2")).await?.status == 201);
        let mut tables = api
            .watch_accept(&format!("{PODS}?watch=true&resourceVersion=0"), "application/json;as=Table;v=v1;g=meta.k8s.io")
            .await?;
        let event = tables.next(timeout).await?.context("event")?;
        assert_eq!(event["object"]["kind"], "Table");
        assert_eq!(event["object"]["rows"][0]["cells"][0], "w2");
        assert_eq!(event["object"]["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        Ok(())
    })
}

#[test]
fn lists_page_with_limit_and_continue() -> Result<()> {
    let skiff = Skiff::start_with(API_ONLY)?;
    runtime()?.block_on(async {
        let api = skiff.api()?;
        for i in 0..7 {
            ensure!(api.post_json(PODS, &pod(&format!("p{i}"))).await?.status == 201);
        }
        let mut names = Vec::new();
        let mut path = format!("{PODS}?limit=3");
        loop {
            let page = api.get(&path).await?.json()?;
            let items = page["items"].as_array().context("items")?;
            assert!(items.len() <= 3);
            names.extend(
                items
                    .iter()
                    .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string)),
            );
            match page["metadata"]["continue"].as_str() {
                Some(token) => path = format!("{PODS}?limit=3&continue={token}"),
                None => break,
            }
        }
        assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
        let bad = api.get(&format!("{PODS}?continue=garbage")).await?;
        assert_eq!(bad.status, 400);
        Ok(())
    })
}

#[test]
fn status_binding_and_deletecollection_subresources() -> Result<()> {
    // Binding by hand: no scheduler racing us.
    let skiff = Skiff::start_with(&["--disable-scheduler"])?;
    runtime()?.block_on(async {
        let api = skiff.api()?;
        ensure!(api.post_json(PODS, &pod("s1")).await?.status == 201);
        ensure!(api.post_json("/api/v1/nodes", &json!({"metadata": {"name": "n1"}})).await?.status == 201);

        // Writes to /status change status only; writes to the pod keep status.
        let status_patch = serde_json::to_vec(&json!({"status": {"phase": "Running", "message": "hello"}, "spec": {"nodeName": "ignored"}}))?;
        let patched = api.request("PATCH", &format!("{PODS}/s1/status"), "application/merge-patch+json", status_patch).await?.json()?;
        assert_eq!(patched["status"]["message"], "hello");
        assert_eq!(patched["status"]["qosClass"], "BestEffort", "qosClass never changes");
        assert!(patched["spec"]["nodeName"].is_null());
        let label = serde_json::to_vec(&json!({"metadata": {"labels": {"x": "y"}}, "status": {"phase": "Failed"}}))?;
        let relabelled = api.request("PATCH", &format!("{PODS}/s1"), "application/merge-patch+json", label).await?.json()?;
        assert_eq!(relabelled["status"]["phase"], "Running");

        // Binding assigns a node once.
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "s1"}, "target": {"kind": "Node", "name": "n1"}});
        let bound = api.post_json(&format!("{PODS}/s1/binding"), &binding).await?;
        assert_eq!(bound.status, 201, "{}", bound.text());
        assert_eq!(bound.json()?, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}));
        let live = api.get(&format!("{PODS}/s1")).await?.json()?;
        assert_eq!(live["spec"]["nodeName"], "n1");
        assert!(live["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "True")));
        let again = api.post_json(&format!("{PODS}/s1/binding"), &binding).await?;
        assert_eq!(again.status, 409);
        assert_eq!(again.json()?["message"], "Operation cannot be fulfilled on pods/binding \"s1\": pod s1 is already assigned to node \"n1\"");

        // Objects are written in upstream's field order, lists' items too.
        let text = api.get(&format!("{PODS}/s1")).await?.text();
        assert!(text.starts_with(r#"{"kind":"Pod","apiVersion":"v1","metadata":{"#), "{text}");
        let (spec, status) = (text.find(r#""spec":"#), text.rfind(r#""status":"#));
        assert!(spec.is_some() && spec < status && text.ends_with('}'), "{text}");
        let list = api.get(PODS).await?.text();
        assert!(list.starts_with(r#"{"kind":"PodList","apiVersion":"v1","metadata":{"#), "{list}");
        assert!(list.contains(r#""items":[{"metadata":{"#), "{list}");

        // Eviction answers as upstream's create handler: code 201 in the Status.
        ensure!(api.post_json(PODS, &pod("evicted")).await?.status == 201);
        let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "evicted"}});
        let evicted = api.post_json(&format!("{PODS}/evicted/eviction"), &eviction).await?;
        assert_eq!(evicted.status, 201, "{}", evicted.text());
        assert_eq!(evicted.json()?, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}));

        // deletecollection by label.
        for name in ["x1", "x2"] {
            let mut p = pod(name);
            p["metadata"]["labels"] = json!({"group": "x"});
            ensure!(api.post_json(PODS, &p).await?.status == 201);
        }
        let removed = api.request("DELETE", &format!("{PODS}?labelSelector=group%3Dx"), "application/json", Vec::new()).await?;
        assert_eq!(removed.status, 200);
        assert_eq!(removed.json()?["items"].as_array().map(Vec::len), Some(2));
        let left = api.get(&format!("{PODS}?labelSelector=group%3Dx")).await?.json()?;
        assert_eq!(left["items"].as_array().map(Vec::len), Some(0));

        // generateName, dry-run and PUT without a resourceVersion.
        let generated = api.post_json(PODS, &json!({"metadata": {"generateName": "gen-"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).await?.json()?;
        assert!(generated["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("gen-") && n.len() == 9));
        let dry = api.post_json(&format!("{PODS}?dryRun=All"), &pod("dry")).await?;
        assert_eq!(dry.status, 201);
        assert_eq!(api.get(&format!("{PODS}/dry")).await?.status, 404);
        Ok(())
    })
}

#[test]
fn metrics_count_requests_and_watches() -> Result<()> {
    let skiff = Skiff::start_with(API_ONLY)?;
    runtime()?.block_on(async {
        let api = skiff.api()?;
        api.get(PODS).await?;
        api.get(&format!("{PODS}/missing")).await?;
        let _watch = api.watch(&format!("{PODS}?watch=true")).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = api.get("/metrics").await?.text();
        assert!(text.contains("apiserver_request_total{verb=\"list\",resource=\"pods\",code=\"200\"}"), "{text}");
        assert!(text.contains("apiserver_request_total{verb=\"get\",resource=\"pods\",code=\"404\"} 1"), "{text}");
        assert!(text.contains("apiserver_request_duration_seconds_bucket{verb=\"list\",resource=\"pods\",le=\"+Inf\"}"));
        assert!(text.contains("apiserver_registered_watchers 1"), "{text}");
        assert!(text.contains("apiserver_storage_size_bytes "));
        Ok(())
    })
}

#[test]
fn python_kubernetes_client_lists_creates_patches_and_watches() -> Result<()> {
    let skiff = Skiff::start_with(API_ONLY)?;
    let stdout = skiff.python("client.py", &[])?;
    assert!(stdout.contains("watched ADDED py-pod"), "{stdout}");
    assert!(stdout.contains("watched MODIFIED py-pod"), "{stdout}");
    assert!(stdout.contains("watched DELETED py-pod"), "{stdout}");
    assert!(stdout.contains("strict error with hint"), "{stdout}");
    Ok(())
}

#[test]
fn patches_without_a_version_are_retried_and_version_zero_is_unconditional() -> Result<()> {
    let skiff = Skiff::start_with(API_ONLY)?;
    runtime()?.block_on(async {
        let api = skiff.api()?;
        ensure!(api.post_json(PODS, &pod("busy")).await?.status == 201);
        // Many writers at once (as the scheduler and node agent write a
        // pod a user patches): none gets a conflict, none is lost.
        let patches = (0..16).map(|i| {
            let api = api.clone();
            async move {
                let body = serde_json::to_vec(&json!({"metadata": {"labels": {format!("l{i}"): "x"}}}))?;
                let response = api
                    .request("PATCH", &format!("{PODS}/busy"), "application/merge-patch+json", body)
                    .await?;
                anyhow::Ok(response.status)
            }
        });
        let codes: Vec<u16> = futures::future::try_join_all(patches).await?;
        assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
        let labels = api.get(&format!("{PODS}/busy")).await?.json()?["metadata"]["labels"].clone();
        assert_eq!(labels.as_object().map(|l| l.len()), Some(16 + 1), "{labels}");

        // A patch that pins a stale version still conflicts.
        let stale = serde_json::to_vec(&json!({"metadata": {"resourceVersion": "1", "labels": {"late": "x"}}}))?;
        let conflict = api.request("PATCH", &format!("{PODS}/busy"), "application/merge-patch+json", stale).await?;
        assert_eq!(conflict.status, 409);

        // An update with resourceVersion "0" is unconditional.
        let mut current = api.get(&format!("{PODS}/busy")).await?.json()?;
        current["metadata"]["resourceVersion"] = json!("0");
        current["metadata"]["labels"]["replaced"] = json!("yes");
        let replaced = api.request("PUT", &format!("{PODS}/busy"), "application/json", serde_json::to_vec(&current)?).await?;
        assert_eq!(replaced.status, 200, "{}", replaced.text());
        Ok(())
    })
}

