//! The conformance suite every [`Store`] backend must pass.
//!
//! Call [`run_all`] from a backend's tests with a factory that opens a fresh,
//! empty store for each case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::{guaranteed_update, EtcdStore, EventKind, ListOptions, Store, StoreError, WatchStream};

/// Runs every case against fresh stores from `open`.
pub async fn run_all<S, F, E>(mut open: F)
where
    S: Store,
    F: FnMut() -> Result<S, E>,
    E: std::fmt::Debug,
{
    let mut fresh = || Arc::new(open().expect("open a fresh store"));
    create_get_and_already_exists(&*fresh()).await;
    update_is_compare_and_swap(&*fresh()).await;
    delete_honours_preconditions(&*fresh()).await;
    list_filters_pages_and_isolates_prefixes(&*fresh()).await;
    watch_replays_then_streams_in_order(&*fresh()).await;
    watch_after_compaction_is_refused(&*fresh()).await;
    concurrent_updates_conflict_and_none_is_lost(fresh()).await;
    lagging_watcher_catches_up_without_gaps(&*fresh()).await;
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn next_event(stream: &mut WatchStream) -> crate::Event {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch event within 10s")
        .expect("watch stream still open")
        .expect("watch event, not an error")
}

async fn create_get_and_already_exists(store: &dyn Store) {
    assert!(store
        .get("/registry/pods/default/a")
        .await
        .unwrap()
        .is_none());
    let created = store
        .create("/registry/pods/default/a", b("one"))
        .await
        .unwrap();
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(
        store.current_revision().await.unwrap(),
        created.mod_revision
    );
    let got = store
        .get("/registry/pods/default/a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, created);
    assert_eq!(got.value, b("one"));
    let again = store.create("/registry/pods/default/a", b("two")).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    let second = store
        .create("/registry/pods/default/b", b("x"))
        .await
        .unwrap();
    assert!(
        second.mod_revision > created.mod_revision,
        "revisions increase"
    );
}

async fn update_is_compare_and_swap(store: &dyn Store) {
    let created = store.create("/k", b("1")).await.unwrap();
    let updated = store
        .update("/k", created.mod_revision, b("2"))
        .await
        .unwrap();
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.create_revision, created.mod_revision);
    let stale = store.update("/k", created.mod_revision, b("3")).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(store.get("/k").await.unwrap().unwrap().value, b("2"));
    let missing = store.update("/missing", 1, b("x")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

async fn delete_honours_preconditions(store: &dyn Store) {
    let created = store.create("/d", b("v")).await.unwrap();
    let stale = store.delete("/d", Some(created.mod_revision + 100)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let deleted = store
        .delete("/d", Some(created.mod_revision))
        .await
        .unwrap();
    assert_eq!(deleted.value, b("v"), "delete returns the last value");
    assert!(
        deleted.mod_revision > created.mod_revision,
        "delete gets its own revision"
    );
    assert!(store.get("/d").await.unwrap().is_none());
    let again = store.delete("/d", None).await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    // The name can be reused, with a new create revision.
    let recreated = store.create("/d", b("w")).await.unwrap();
    assert!(recreated.create_revision > deleted.mod_revision);
}

async fn list_filters_pages_and_isolates_prefixes(store: &dyn Store) {
    for name in ["c", "a", "b", "e", "d"] {
        store
            .create(&format!("/registry/pods/ns/{name}"), b(name))
            .await
            .unwrap();
    }
    store
        .create("/registry/pods/ns2/z", b("other namespace"))
        .await
        .unwrap();
    store
        .create("/registry/podsx/ns/a", b("other resource"))
        .await
        .unwrap();

    let all = store
        .list("/registry/pods/ns/", ListOptions::default())
        .await
        .unwrap();
    let keys: Vec<_> = all
        .items
        .iter()
        .map(|kv| kv.key.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["a", "b", "c", "d", "e"]);
    assert!(!all.more);
    assert_eq!(all.revision, store.current_revision().await.unwrap());

    let page = store
        .list(
            "/registry/pods/ns/",
            ListOptions {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.more);
    let rest = store
        .list(
            "/registry/pods/ns/",
            ListOptions {
                start_after: Some(page.items[1].key.clone()),
                limit: Some(10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 3);
    assert!(!rest.more);

    let vowels: crate::Predicate = Arc::new(|kv| kv.value == b("a") || kv.value == b("e"));
    let filtered = store
        .list(
            "/registry/pods/ns/",
            ListOptions {
                predicate: Some(vowels),
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(filtered.items.len(), 1, "limit counts matching items only");
    assert_eq!(filtered.items[0].value, b("a"));
    assert!(filtered.more);

    let everything = store
        .list("/registry/pods/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(everything.items.len(), 6);
}

async fn watch_replays_then_streams_in_order(store: &dyn Store) {
    let start = store.current_revision().await.unwrap();
    let a = store.create("/w/a", b("1")).await.unwrap();
    store.create("/other/x", b("ignored")).await.unwrap();
    let a2 = store.update("/w/a", a.mod_revision, b("2")).await.unwrap();

    let mut stream = store.watch("/w/", start).await.unwrap();
    let first = next_event(&mut stream).await;
    assert_eq!(
        (first.kind, first.kv.mod_revision, first.prev_value.clone()),
        (EventKind::Create, a.mod_revision, None)
    );
    let second = next_event(&mut stream).await;
    assert_eq!(second.kind, EventKind::Update);
    assert_eq!(second.kv.mod_revision, a2.mod_revision);
    assert_eq!(second.prev_value, Some(b("1")));

    let deleted = store.delete("/w/a", None).await.unwrap();
    let third = next_event(&mut stream).await;
    assert_eq!(
        (third.kind, third.kv.mod_revision),
        (EventKind::Delete, deleted.mod_revision)
    );
    assert_eq!(
        third.kv.value,
        b("2"),
        "a delete event carries the last value"
    );

    // A watch from the middle sees only what came after.
    let mut late = store.watch("/w/", a.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut late).await.kv.mod_revision, a2.mod_revision);
}

async fn watch_after_compaction_is_refused(store: &dyn Store) {
    let first = store.create("/c/a", b("1")).await.unwrap();
    let second = store
        .update("/c/a", first.mod_revision, b("2"))
        .await
        .unwrap();
    store
        .update("/c/a", second.mod_revision, b("3"))
        .await
        .unwrap();
    store.compact(second.mod_revision).await.unwrap();
    assert_eq!(
        store.compacted_revision().await.unwrap(),
        second.mod_revision
    );
    let old = store.watch("/c/", first.mod_revision).await;
    assert!(
        matches!(old, Err(StoreError::Compacted { .. })),
        "watch before compaction is refused"
    );
    let mut ok = store.watch("/c/", second.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut ok).await.kv.value, b("3"));
    assert_eq!(
        store.get("/c/a").await.unwrap().unwrap().value,
        b("3"),
        "compaction keeps current values"
    );
}

async fn concurrent_updates_conflict_and_none_is_lost<S: Store>(store: Arc<S>) {
    const WRITERS: usize = 8;
    const INCREMENTS: usize = 25;
    let start = store.create("/counter", b("0")).await.unwrap().mod_revision;
    let mut watch = store.watch("/counter", start).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                guaranteed_update(&*store, "/counter", |kv| {
                    let n: usize = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    Ok::<_, StoreError>(Some(Bytes::from((n + 1).to_string())))
                })
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = WRITERS * INCREMENTS;
    assert_eq!(
        store.get("/counter").await.unwrap().unwrap().value,
        Bytes::from(total.to_string())
    );
    let mut seen = HashSet::new();
    let mut last = start;
    for _ in 0..total {
        let event = next_event(&mut watch).await;
        assert!(
            event.kv.mod_revision > last,
            "watch events arrive in revision order"
        );
        last = event.kv.mod_revision;
        assert!(
            seen.insert(event.kv.value.clone()),
            "every increment is a distinct event"
        );
    }
}

async fn lagging_watcher_catches_up_without_gaps(store: &dyn Store) {
    // More writes than any live buffer holds, while the watcher is not polled.
    const WRITES: usize = 5000;
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/lag/", start).await.unwrap();
    for i in 0..WRITES {
        store.create(&format!("/lag/{i:05}"), b("x")).await.unwrap();
    }
    let mut last = start;
    for i in 0..WRITES {
        let event = next_event(&mut watch).await;
        assert_eq!(event.kv.key, format!("/lag/{i:05}"));
        assert!(event.kv.mod_revision > last);
        last = event.kv.mod_revision;
    }
}

/// A real etcd (Debian's etcd-server) on loopback ports of its own with a
/// temporary data dir, for tests; killed when dropped.
pub struct Etcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA, etcd's serving certificate and a client certificate, written
/// under `dir`: what etcd serves TLS with, and what a store connects with.
pub fn etcd_certificates(dir: &std::path::Path) -> (EtcdServerTls, crate::EtcdTls) {
    let issue = |ca: &rcgen::Issuer<'_, rcgen::KeyPair>, name: &str, server: bool| {
        let sans = if server { vec!["127.0.0.1".to_string(), "localhost".to_string()] } else { Vec::new() };
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        // etcd's JSON gateway dials etcd's own gRPC with the serving
        // certificate, so with --client-cert-auth that one is a client's too.
        params.extended_key_usages = if server {
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]
        };
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "etcd-ca");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let ca = rcgen::Issuer::new(ca_params, ca_key);
    let (server_cert, server_key) = issue(&ca, "etcd", true);
    let (client_cert, client_key) = issue(&ca, "skiff", false);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    write("client.crt", &client_cert);
    write("client.key", &client_key);
    let server = EtcdServerTls {
        cert_file: write("server.crt", &server_cert),
        key_file: write("server.key", &server_key),
        client_ca_file: write("ca.crt", &ca_pem),
    };
    (server, crate::EtcdTls { ca: Some(ca_pem), client: Some((client_cert, client_key)) })
}

/// Files etcd serves TLS with: its certificate and key, and the CA whose
/// client certificates it accepts (`--client-cert-auth`).
pub struct EtcdServerTls {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub client_ca_file: std::path::PathBuf,
}

impl Etcd {
    /// etcd on loopback; ready once it answers a range request.
    pub async fn start() -> Etcd {
        Self::start_with(None, &crate::EtcdTls::default()).await
    }

    /// etcd on loopback with `https://` client URLs served with `server`
    /// (requiring client certificates); ready once a store with `client`
    /// answers.
    pub async fn start_tls(server: &EtcdServerTls, client: &crate::EtcdTls) -> Etcd {
        Self::start_with(Some(server), client).await
    }

    async fn start_with(tls: Option<&EtcdServerTls>, client_tls: &crate::EtcdTls) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{client}");
        let mut command = Command::new("etcd");
        command
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer}")]);
        if let Some(tls) = tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert_file)
                .arg("--key-file")
                .arg(&tls.key_file)
                .arg("--trusted-ca-file")
                .arg(&tls.client_ca_file)
                .arg("--client-cert-auth");
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (Debian's etcd-server)");
        let etcd = Etcd { child, url, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(error) = EtcdStore::connect_with(std::slice::from_ref(&etcd.url), "", client_tls).await {
            assert!(Instant::now() < deadline, "etcd did not start: {error}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        etcd
    }
}
