//! The [`Store`] on etcd v3, as kube-apiserver keeps objects there: one key
//! per object (under an optional prefix), etcd's revisions as revisions
//! (mod revision = resourceVersion), compare-and-swap transactions for
//! create/update/delete, etcd's watch for watches, and compaction refused
//! to watchers that start before it.
//!
//! Spoken through etcd's JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/watch`, ...), which every etcd 3.4+ serves on its client URLs: the
//! same API as gRPC without a protobuf toolchain. `https://` endpoints are
//! reached with TLS: the CA that signed etcd's certificate and, when etcd
//! requires client certificates (`--client-cert-auth`), a client
//! certificate ([`EtcdTls`], k3s's `--datastore-cafile/-certfile/-keyfile`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError,
    WatchStream,
};

/// Items read per range request while filtering a list.
const PAGE: usize = 500;

pub struct EtcdStore {
    endpoints: Vec<String>,
    /// The endpoint that answered last.
    current: AtomicUsize,
    /// Prepended to every key (kube-apiserver's `--etcd-prefix` is a
    /// prefix of the same kind; empty by default).
    prefix: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The last compaction this store did or heard of.
    compacted: Arc<AtomicU64>,
}

fn etcd_error(endpoint: &str, message: impl Into<String>) -> StoreError {
    StoreError::Etcd {
        endpoint: endpoint.to_string(),
        message: message.into(),
    }
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn number(value: &Value) -> u64 {
    match value {
        Value::String(text) => text.parse().unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    }
}

/// etcd's `GetPrefixRangeEnd`: the first key after every key with `prefix`.
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// How to trust etcd's `https://` endpoints and be trusted by them (PEM).
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// The CA of etcd's serving certificate (none: the system's roots are not
    /// consulted either, so https endpoints then fail verification).
    pub ca: Option<String>,
    /// A client certificate and its key, for etcd's `--client-cert-auth`.
    pub client: Option<(String, String)>,
}

impl EtcdTls {
    fn client_config(&self) -> Result<rustls::ClientConfig> {
        let invalid = |what: &str| etcd_error("", format!("the datastore's {what} is not usable PEM"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca.as_deref().unwrap_or("").as_bytes()) {
            roots.add(cert.map_err(|_| invalid("CA file"))?).map_err(|_| invalid("CA file"))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| etcd_error("", e.to_string()))?
            .with_root_certificates(roots);
        let config = match &self.client {
            Some((cert, key)) => {
                let chain = rustls_pemfile::certs(&mut cert.as_bytes()).collect::<std::result::Result<Vec<_>, _>>().map_err(|_| invalid("certificate file"))?;
                let key = rustls_pemfile::private_key(&mut key.as_bytes()).ok().flatten().ok_or_else(|| invalid("key file"))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| etcd_error("", format!("the datastore's client certificate: {e}")))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(config)
    }
}

impl EtcdStore {
    /// A store on the etcd cluster at `endpoints` (`http://host:2379`),
    /// checked to answer.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self> {
        Self::connect_with(endpoints, prefix, &EtcdTls::default()).await
    }

    /// [`EtcdStore::connect`] with TLS settings for `https://` endpoints.
    pub async fn connect_with(endpoints: &[String], prefix: &str, tls: &EtcdTls) -> Result<Self> {
        let store = Self::with_tls(endpoints, prefix, tls)?;
        store.current_revision().await?;
        Ok(store)
    }

    /// A store on `endpoints`, not yet contacted.
    pub fn new(endpoints: &[String], prefix: &str) -> Result<Self> {
        Self::with_tls(endpoints, prefix, &EtcdTls::default())
    }

    /// A store on `endpoints` with TLS settings, not yet contacted.
    pub fn with_tls(endpoints: &[String], prefix: &str, tls: &EtcdTls) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(etcd_error("", "no etcd endpoint given"));
        }
        if let Some(odd) = endpoints.iter().find(|e| !e.starts_with("http://") && !e.starts_with("https://")) {
            return Err(etcd_error(odd, "an etcd endpoint is http://host:port or https://host:port"));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.client_config()?)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            current: AtomicUsize::new(0),
            prefix: prefix.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            compacted: Arc::default(),
        })
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.prefix).into_bytes()
    }

    fn decode_kv(&self, kv: &Value) -> Result<KeyValue> {
        let decode = |field: &Value| {
            STANDARD
                .decode(field.as_str().unwrap_or(""))
                .map_err(|e| etcd_error("", format!("undecodable key or value: {e}")))
        };
        let key = String::from_utf8(decode(&kv["key"])?)
            .map_err(|_| etcd_error("", "a key is not UTF-8"))?;
        Ok(KeyValue {
            key: key.strip_prefix(&self.prefix).unwrap_or(&key).to_string(),
            value: Bytes::from(decode(&kv["value"])?),
            create_revision: number(&kv["create_revision"]),
            mod_revision: number(&kv["mod_revision"]),
        })
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    async fn call(&self, path: &str, body: Value) -> Result<Value> {
        let response = self.send(path, body).await?;
        let (endpoint, response) = response;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| etcd_error(&endpoint, e.to_string()))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| etcd_error(&endpoint, format!("undecodable answer: {e}")))?;
        if !status.is_success() || value.get("error").is_some() {
            let message = value["message"]
                .as_str()
                .or(value["error"].as_str())
                .unwrap_or("request failed")
                .to_string();
            return Err(etcd_error(&endpoint, message));
        }
        Ok(value)
    }

    async fn send(
        &self,
        path: &str,
        body: Value,
    ) -> Result<(String, hyper::Response<hyper::body::Incoming>)> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for offset in 0..self.endpoints.len() {
            let index = (start + offset) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let request = hyper::Request::post(format!("{endpoint}{path}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| etcd_error(endpoint, e.to_string()))?;
            match self.client.request(request).await {
                Ok(response) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok((endpoint.clone(), response));
                }
                Err(error) => {
                    tracing::warn!(endpoint = %endpoint, %error, "etcd endpoint did not answer");
                    last_error = Some(etcd_error(endpoint, error.to_string()));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| etcd_error("", "no etcd endpoint")))
    }

    async fn range(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        revision: Revision,
    ) -> Result<Value> {
        let mut body = json!({"key": b64(key)});
        if let Some(end) = end {
            body["range_end"] = json!(b64(end));
        }
        if limit > 0 {
            body["limit"] = json!(limit);
        }
        if revision > 0 {
            body["revision"] = json!(revision);
        }
        self.call("/v3/kv/range", body).await
    }

    /// The key's current state, for the error a failed transaction gets.
    async fn refusal(&self, key: &str, expected: Revision) -> StoreError {
        match self.get(key).await {
            Ok(Some(current)) => StoreError::Conflict {
                key: key.to_string(),
                expected,
                actual: current.mod_revision,
            },
            Ok(None) => StoreError::NotFound {
                key: key.to_string(),
            },
            Err(error) => error,
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let answer = self.range(&self.full_key(key), None, 0, 0).await?;
        answer["kvs"]
            .as_array()
            .and_then(|kvs| kvs.first())
            .map(|kv| self.decode_kv(kv))
            .transpose()
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let full_prefix = self.full_key(prefix);
        let end = range_end(&full_prefix);
        let mut from = match &options.start_after {
            // The first key after the continue token's.
            Some(after) => {
                let mut key = self.full_key(after);
                key.push(0);
                key
            }
            None => full_prefix.clone(),
        };
        let limit = options.limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        let mut revision = 0;
        loop {
            let batch = if limit.is_some() || options.predicate.is_some() {
                PAGE
            } else {
                0
            };
            let answer = self.range(&from, Some(&end), batch, revision).await?;
            if revision == 0 {
                revision = number(&answer["header"]["revision"]);
            }
            let kvs = answer["kvs"].as_array().cloned().unwrap_or_default();
            for kv in &kvs {
                let kv = self.decode_kv(kv)?;
                if options.predicate.as_ref().is_none_or(|keep| keep(&kv)) {
                    items.push(kv);
                }
                if limit.is_some_and(|l| items.len() > l) {
                    items.truncate(limit.unwrap_or(0));
                    return Ok(ListResult {
                        items,
                        revision,
                        more: true,
                    });
                }
            }
            let more = answer["more"].as_bool().unwrap_or(false);
            match kvs.last() {
                Some(last) if more => {
                    from = STANDARD
                        .decode(last["key"].as_str().unwrap_or(""))
                        .unwrap_or_default();
                    from.push(0);
                }
                _ => {
                    return Ok(ListResult {
                        items,
                        revision,
                        more: false,
                    })
                }
            }
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let full = b64(&self.full_key(key));
        let answer = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": full, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
                    "success": [{"request_put": {"key": full, "value": b64(&value)}}],
                }),
            )
            .await?;
        if answer["succeeded"] != true {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let revision = number(&answer["header"]["revision"]);
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, expected: Revision, value: Bytes) -> Result<KeyValue> {
        let full = b64(&self.full_key(key));
        let answer = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": full, "target": "MOD", "result": "EQUAL", "mod_revision": expected}],
                    "success": [{"request_put": {"key": full, "value": b64(&value), "prev_kv": true}}],
                }),
            )
            .await?;
        if answer["succeeded"] != true {
            return Err(self.refusal(key, expected).await);
        }
        let previous = &answer["responses"][0]["response_put"]["prev_kv"];
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: number(&previous["create_revision"]),
            mod_revision: number(&answer["header"]["revision"]),
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let full = b64(&self.full_key(key));
        let compare = match expected {
            Some(revision) => {
                json!({"key": full, "target": "MOD", "result": "EQUAL", "mod_revision": revision})
            }
            None => {
                json!({"key": full, "target": "CREATE", "result": "GREATER", "create_revision": 0})
            }
        };
        let answer = self
            .call(
                "/v3/kv/txn",
                json!({"compare": [compare], "success": [{"request_delete_range": {"key": full, "prev_kv": true}}]}),
            )
            .await?;
        let previous = &answer["responses"][0]["response_delete_range"]["prev_kvs"][0];
        if answer["succeeded"] != true || previous.is_null() {
            return Err(self.refusal(key, expected.unwrap_or(0)).await);
        }
        let mut last = self.decode_kv(previous)?;
        last.mod_revision = number(&answer["header"]["revision"]);
        Ok(last)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let compacted = self.compacted.load(Ordering::Acquire);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let full_prefix = self.full_key(prefix);
        let body = json!({"create_request": {
            "key": b64(&full_prefix),
            "range_end": b64(&range_end(&full_prefix)),
            "start_revision": after + 1,
            "prev_kv": true,
        }});
        let (endpoint, response) = self.send("/v3/watch", body).await?;
        let mut lines = Box::pin(json_lines(response.into_body()));
        // The first answer says whether the watch was created.
        let first = lines
            .next()
            .await
            .ok_or_else(|| etcd_error(&endpoint, "the watch ended before it started"))??;
        let result = &first["result"];
        let compact = number(&result["compact_revision"]);
        if compact > 0 {
            self.compacted
                .fetch_max(compact.saturating_sub(1), Ordering::AcqRel);
            return Err(StoreError::Compacted {
                requested: after,
                compacted: compact.saturating_sub(1),
            });
        }
        if result["canceled"] == true || first.get("error").is_some() {
            return Err(etcd_error(&endpoint, format!("watch refused: {first}")));
        }
        let prefix = self.prefix.clone();
        let events = lines.flat_map(move |line| {
            let events: Vec<Result<Event>> = match line {
                Err(error) => vec![Err(error)],
                Ok(message) => {
                    let compact = number(&message["result"]["compact_revision"]);
                    if compact > 0 {
                        vec![Err(StoreError::Compacted {
                            requested: after,
                            compacted: compact.saturating_sub(1),
                        })]
                    } else {
                        message["result"]["events"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|event| watch_event(&prefix, event))
                            .collect()
                    }
                }
            };
            futures::stream::iter(events)
        });
        Ok(events.boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let answer = self.range(&self.full_key("/"), None, 1, 0).await?;
        Ok(number(&answer["header"]["revision"]))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self
            .call("/v3/kv/compaction", json!({"revision": revision}))
            .await
        {
            Ok(_) => {}
            // Another server compacted as far already.
            Err(StoreError::Etcd { message, .. }) if message.contains("compacted") => {}
            Err(other) => return Err(other),
        }
        self.compacted.fetch_max(revision, Ordering::AcqRel);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.compacted.load(Ordering::Acquire))
    }

    async fn size_bytes(&self) -> Result<u64> {
        let answer = self.call("/v3/maintenance/status", json!({})).await?;
        Ok(number(&answer["dbSize"]).max(number(&answer["db_size"])))
    }
}

/// One etcd watch event as a store event (keys without the prefix).
fn watch_event(prefix: &str, event: &Value) -> Result<Event> {
    let decode = |field: &Value| {
        STANDARD
            .decode(field.as_str().unwrap_or(""))
            .unwrap_or_default()
    };
    let kv = &event["kv"];
    let key =
        String::from_utf8(decode(&kv["key"])).map_err(|_| etcd_error("", "a key is not UTF-8"))?;
    let key = key.strip_prefix(prefix).unwrap_or(&key).to_string();
    let previous = &event["prev_kv"];
    let prev_value = (!previous.is_null()).then(|| Bytes::from(decode(&previous["value"])));
    let deleted = event["type"] == "DELETE";
    let kind = match (
        deleted,
        number(&kv["create_revision"]) == number(&kv["mod_revision"]),
    ) {
        (true, _) => EventKind::Delete,
        (false, true) => EventKind::Create,
        (false, false) => EventKind::Update,
    };
    let kv = if deleted {
        KeyValue {
            key,
            value: prev_value.clone().unwrap_or_default(),
            create_revision: number(&previous["create_revision"]),
            mod_revision: number(&kv["mod_revision"]),
        }
    } else {
        KeyValue {
            key,
            value: Bytes::from(decode(&kv["value"])),
            create_revision: number(&kv["create_revision"]),
            mod_revision: number(&kv["mod_revision"]),
        }
    };
    let prev_value = if kind == EventKind::Create {
        None
    } else {
        prev_value
    };
    Ok(Event {
        kind,
        kv,
        prev_value,
    })
}

/// The JSON objects of a streamed gateway answer, one per line.
fn json_lines(body: hyper::body::Incoming) -> impl futures::Stream<Item = Result<Value>> {
    futures::stream::unfold(
        (body, Vec::<u8>::new(), false),
        |(mut body, mut buffer, done)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let parsed = serde_json::from_slice(&line)
                        .map_err(|e| etcd_error("", format!("undecodable watch answer: {e}")));
                    return Some((parsed, (body, buffer, done)));
                }
                if done {
                    return None;
                }
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buffer.extend_from_slice(&data);
                        }
                    }
                    Some(Err(error)) => {
                        return Some((Err(etcd_error("", error.to_string())), (body, buffer, true)))
                    }
                    None => {
                        buffer.push(b'\n');
                        return match buffer.iter().all(u8::is_ascii_whitespace) {
                            true => None,
                            false => {
                                let line = std::mem::take(&mut buffer);
                                let parsed = serde_json::from_slice(&line).map_err(|e| {
                                    etcd_error("", format!("undecodable watch answer: {e}"))
                                });
                                Some((parsed, (body, buffer, true)))
                            }
                        };
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_where_etcd_says() {
        assert_eq!(range_end(b"/registry/"), b"/registry0".to_vec());
        assert_eq!(range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(range_end(b""), vec![0]);
    }
}
