//! `skiff server --datastore-endpoint`: objects kept in a real etcd (Debian's
//! etcd-server, started on loopback by the test), one key per object under
//! `/registry/` as kube-apiserver writes them, read back by the real
//! `etcdctl`; watches and restarts work as on SQLite.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::Skiff;
use serde_json::json;

#[test]
fn objects_live_in_etcd_and_survive_a_restart() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let etcd = runtime.block_on(skiff_store::testing::Etcd::start());
    let mut skiff = Skiff::start_with(&["--datastore-endpoint", &etcd.url])?;
    skiff.kubectl(&["create", "configmap", "settings", "--from-literal=mode=fast"])?.ok()?;

    let etcdctl = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.url, "get", "/registry/configmaps/default/settings", "--print-value-only"])
        .output()
        .context("etcdctl is installed (Debian's etcd-client)")?;
    let stored: serde_json::Value = serde_json::from_slice(&etcdctl.stdout)
        .with_context(|| String::from_utf8_lossy(&etcdctl.stderr).into_owned())?;
    assert_eq!(stored["data"], json!({"mode": "fast"}));
    ensure!(!skiff.data_dir_path().join("state.db").exists(), "no SQLite store beside etcd");

    // A watch sees a change made afterwards.
    runtime.block_on(async {
        let api = skiff.api()?;
        let path = "/api/v1/namespaces/default/configmaps";
        let listed = api.get(path).await?.json()?;
        let rv = listed["metadata"]["resourceVersion"].as_str().context("rv")?.to_string();
        let mut watch = api.watch(&format!("{path}?watch=true&resourceVersion={rv}")).await?;
        let created = api.post_json(path, &json!({"metadata": {"name": "later"}, "data": {"a": "b"}})).await?;
        ensure!(created.status == 201, "{}", created.text());
        let event = watch.next(Duration::from_secs(10)).await?.context("event")?;
        assert_eq!((event["type"].as_str(), event["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("later")));
        anyhow::Ok(())
    })?;

    skiff.restart()?;
    let mode = skiff.kubectl(&["get", "configmap", "settings", "-o", "jsonpath={.data.mode}"])?.ok()?.stdout;
    assert_eq!(mode, "fast");
    assert_eq!(skiff.kubectl(&["auth", "can-i", "get", "pods"])?.ok()?.stdout, "yes\n");
    drop(skiff);
    drop(etcd);
    Ok(())
}
