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

#[test]
fn the_server_reaches_etcd_over_tls_with_a_client_certificate() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let certs = tempfile::tempdir()?;
    let (server, tls) = skiff_store::testing::etcd_certificates(certs.path());
    let etcd = runtime.block_on(skiff_store::testing::Etcd::start_tls(&server, &tls));
    let file = |name: &str| certs.path().join(name).display().to_string();
    let (ca, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
    let skiff = Skiff::start_with(&["--datastore-endpoint", &etcd.url, "--datastore-cafile", &ca, "--datastore-certfile", &cert, "--datastore-keyfile", &key])?;
    skiff.kubectl(&["create", "configmap", "over-tls"])?.ok()?;
    let read = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.url, "--cacert", &ca, "--cert", &cert, "--key", &key])
        .args(["get", "/registry/configmaps/default/over-tls", "--keys-only"])
        .output()?;
    assert!(String::from_utf8_lossy(&read.stdout).contains("/registry/configmaps/default/over-tls"), "{read:?}");
    drop(skiff);

    // Without the client certificate the server says why it cannot start.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--disable-agent", "--https-listen-port", "0", "--web-address", "127.0.0.1:0", "--datastore-endpoint", &etcd.url, "--datastore-cafile", &ca])
        .arg("--data-dir")
        .arg(certs.path().join("refused"))
        .output()?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("failed to reach etcd"), "{}", String::from_utf8_lossy(&refused.stderr));
    drop(etcd);
    Ok(())
}
