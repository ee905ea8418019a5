//! The store conformance suite against a real etcd (Debian's etcd-server),
//! started on loopback for this test with its own data dir and stopped
//! after, failing or not. Each case gets a fresh key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use skiff_store::testing::Etcd;
use skiff_store::{EtcdStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passes_the_store_conformance_suite() {
    let etcd = Etcd::start().await;
    let cases = AtomicUsize::new(0);
    skiff_store::testing::run_all(|| {
        let n = cases.fetch_add(1, Ordering::Relaxed);
        EtcdStore::new(std::slice::from_ref(&etcd.url), &format!("/case-{n}"))
    })
    .await;
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.url), "")
        .await
        .unwrap();
    assert!(store.size_bytes().await.unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_client_certificates_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (server, tls) = skiff_store::testing::etcd_certificates(dir.path());
    let etcd = Etcd::start_tls(&server, &tls).await;
    assert!(etcd.url.starts_with("https://"));
    let cases = AtomicUsize::new(0);
    skiff_store::testing::run_all(|| {
        let n = cases.fetch_add(1, Ordering::Relaxed);
        EtcdStore::with_tls(std::slice::from_ref(&etcd.url), &format!("/case-{n}"), &tls)
    })
    .await;
    // Without a client certificate, or trusting another CA, etcd is not reached.
    let anonymous = skiff_store::EtcdTls { ca: tls.ca.clone(), client: None };
    assert!(EtcdStore::connect_with(std::slice::from_ref(&etcd.url), "", &anonymous).await.is_err());
    assert!(EtcdStore::connect(std::slice::from_ref(&etcd.url), "").await.is_err(), "an untrusted server certificate is refused");
}
