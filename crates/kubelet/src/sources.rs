//! The ConfigMaps and Secrets this node's pods read (volumes and env),
//! each watched by name while some pod needs it, as the kubelet's
//! watch-based object manager: a worker subscribes, is woken when the
//! object appears, changes or goes, and reads it without an API call.
//! The last subscription gone stops the watch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::Api;
use kube::runtime::reflector;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ConfigMap,
    Secret,
}

/// What the agent knows of one object.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The watch has not listed it yet.
    Pending,
    /// It does not exist.
    Missing,
    ConfigMap(Arc<ConfigMap>),
    Secret(Arc<Secret>),
}

type Key = (Kind, String, String);

/// The objects a pod's volumes and environment read, as the agent knows
/// them; `None` is an object that does not exist.
pub trait Objects {
    fn config_map(&self, name: &str) -> Option<&ConfigMap>;
    fn secret(&self, name: &str) -> Option<&Secret>;
    /// The pod's service-account token for an audience (empty: the API
    /// server's) and lifetime, as last requested.
    fn service_account_token(&self, audience: &str, expiration_seconds: i64) -> Option<&str>;
    /// The Services whose variables containers get (the pod's namespace's
    /// and `default/kubernetes`).
    fn services(&self) -> &[Arc<Service>];
}

/// The objects of one namespace at one moment.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    /// By (audience, expirationSeconds).
    pub tokens: BTreeMap<(String, i64), String>,
    pub services: Vec<Arc<Service>>,
}

impl Objects for Snapshot {
    fn config_map(&self, name: &str) -> Option<&ConfigMap> {
        self.config_maps.get(name)
    }
    fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }
    fn service_account_token(&self, audience: &str, expiration_seconds: i64) -> Option<&str> {
        self.tokens.get(&(audience.to_string(), expiration_seconds)).map(String::as_str)
    }
    fn services(&self) -> &[Arc<Service>] {
        &self.services
    }
}

/// The ConfigMaps and Secrets a pod reads: from its volumes (projected
/// sources among them) and its containers' `env` and `envFrom`.
pub fn referenced(pod: &Pod) -> BTreeSet<(Kind, String)> {
    let mut found = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return found;
    };
    for volume in spec.volumes.iter().flatten() {
        if let Some(source) = &volume.config_map {
            found.insert((Kind::ConfigMap, source.name.clone()));
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            found.insert((Kind::Secret, name));
        }
        for projection in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(source) = &projection.config_map {
                found.insert((Kind::ConfigMap, source.name.clone()));
            }
            if let Some(source) = &projection.secret {
                found.insert((Kind::Secret, source.name.clone()));
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        for var in container.env.iter().flatten() {
            let source = var.value_from.as_ref();
            if let Some(key) = source.and_then(|s| s.config_map_key_ref.as_ref()) {
                found.insert((Kind::ConfigMap, key.name.clone()));
            }
            if let Some(key) = source.and_then(|s| s.secret_key_ref.as_ref()) {
                found.insert((Kind::Secret, key.name.clone()));
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(source) = &from.config_map_ref {
                found.insert((Kind::ConfigMap, source.name.clone()));
            }
            if let Some(source) = &from.secret_ref {
                found.insert((Kind::Secret, source.name.clone()));
            }
        }
    }
    found
}

struct Entry {
    value: watch::Sender<Lookup>,
    subscribers: usize,
    task: tokio::task::AbortHandle,
}

/// The node's watched objects, shared by all pod workers.
#[derive(Clone)]
pub struct Sources {
    client: kube::Client,
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    /// Every Service, for containers' service variables (the kubelet's
    /// service informer).
    services: reflector::Store<Service>,
}

/// A worker's interest in one object; dropping it ends the interest.
pub struct Subscription {
    key: Key,
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    current: watch::Receiver<Lookup>,
    /// Tells the subscriber of each change.
    forwarder: tokio::task::AbortHandle,
}

impl Subscription {
    /// What the object is now.
    pub fn get(&self) -> Lookup {
        self.current.borrow().clone()
    }
}

impl Sources {
    /// Starts the watch of Services (inside a Tokio runtime).
    pub fn new(client: kube::Client) -> Self {
        let (services, writer) = reflector::store();
        let stream = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
            .modify(|service| service.metadata.managed_fields = None)
            .default_backoff()
            .reflect(writer);
        tokio::spawn(stream.for_each(|event| {
            if let Err(error) = event {
                tracing::warn!(%error, "watching services failed; retrying");
            }
            futures::future::ready(())
        }));
        Self {
            client,
            entries: Arc::default(),
            services,
        }
    }

    /// The Services a pod in `namespace` sees (all of its namespace's when
    /// `links`, and always `default/kubernetes`), once they were listed.
    pub async fn services_for(&self, namespace: &str, links: bool) -> Vec<Arc<Service>> {
        if self.services.wait_until_ready().await.is_err() {
            return Vec::new();
        }
        self.services
            .state()
            .into_iter()
            .filter(|s| {
                let ns = s.metadata.namespace.as_deref().unwrap_or("");
                let name = s.metadata.name.as_deref().unwrap_or("");
                (ns == "default" && name == "kubernetes") || (links && ns == namespace)
            })
            .collect()
    }

    /// Starts (or joins) the watch of one object; `changed` hears of every
    /// change until the subscription is dropped.
    pub fn subscribe(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        changed: tokio::sync::mpsc::UnboundedSender<()>,
    ) -> Subscription {
        let key = (kind, namespace.to_string(), name.to_string());
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let current = match entries.get_mut(&key) {
            Some(entry) => {
                entry.subscribers += 1;
                entry.value.subscribe()
            }
            None => {
                let (value, current) = watch::channel(Lookup::Pending);
                let task = match kind {
                    Kind::ConfigMap => tokio::spawn(follow(
                        Api::<ConfigMap>::namespaced(self.client.clone(), namespace),
                        name.to_string(),
                        value.clone(),
                        |o| Lookup::ConfigMap(Arc::new(o)),
                    )),
                    Kind::Secret => tokio::spawn(follow(
                        Api::<Secret>::namespaced(self.client.clone(), namespace),
                        name.to_string(),
                        value.clone(),
                        |o| Lookup::Secret(Arc::new(o)),
                    )),
                };
                entries.insert(
                    key.clone(),
                    Entry {
                        value,
                        subscribers: 1,
                        task: task.abort_handle(),
                    },
                );
                current
            }
        };
        let mut watched = current.clone();
        let forwarder = tokio::spawn(async move {
            while watched.changed().await.is_ok() {
                if changed.send(()).is_err() {
                    return;
                }
            }
        });
        Subscription {
            key,
            entries: self.entries.clone(),
            current,
            forwarder: forwarder.abort_handle(),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.forwarder.abort();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get_mut(&self.key) {
            entry.subscribers = entry.subscribers.saturating_sub(1);
            if entry.subscribers == 0 {
                entry.task.abort();
                entries.remove(&self.key);
            }
        }
    }
}

/// Watches one object by name and publishes what it is.
async fn follow<K>(api: Api<K>, name: String, value: watch::Sender<Lookup>, wrap: fn(K) -> Lookup)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut listed: Option<K> = None;
    loop {
        match events.try_next().await {
            Ok(Some(watcher::Event::Init)) => listed = None,
            Ok(Some(watcher::Event::InitApply(object))) => listed = Some(object),
            Ok(Some(watcher::Event::InitDone)) => {
                value.send_replace(listed.take().map_or(Lookup::Missing, wrap));
            }
            Ok(Some(watcher::Event::Apply(object))) => {
                value.send_replace(wrap(object));
            }
            Ok(Some(watcher::Event::Delete(_))) => {
                value.send_replace(Lookup::Missing);
            }
            Ok(None) => return,
            Err(error) => tracing::warn!(object = %name, %error, "watching a pod's source object failed; retrying"),
        }
    }
}
