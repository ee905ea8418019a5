//! What the node API needs to find: each container's logs and runtime id,
//! and each pod's sandbox. Pod workers write it; the node API reads it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One container of a pod on this node.
#[derive(Debug, Clone)]
pub struct ContainerEntry {
    /// `<data-dir>/pods/<ns>_<name>_<uid>/<container>`: its logs.
    pub dir: PathBuf,
    /// The attempt (restart count) of the newest log.
    pub attempt: i32,
    pub running: bool,
    /// The OCI runtime's id of the current attempt.
    pub runtime_id: String,
    /// Its bundle, where its monitor keeps the attach socket.
    pub bundle: PathBuf,
    /// Its cgroup (`/kubepods/.../pod<uid>/<id>`), for resource metrics.
    pub cgroup: String,
}

/// A pod's sandbox: the process holding its namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxEntry {
    pub id: String,
    pub pid: u32,
    pub uid: String,
}

#[derive(Debug, Default)]
struct Maps {
    /// By [`ContainerIndex::key`]: pod UID and container name.
    containers: HashMap<String, ContainerEntry>,
    /// By pod UID.
    sandboxes: HashMap<String, SandboxEntry>,
    /// `namespace/name` of each pod UID known here.
    pods: HashMap<String, String>,
    /// The pod UID a `namespace/name` means now: the newest pod of that
    /// name (a pod deleted and created again keeps its old one's logs
    /// apart, and the old one's teardown cannot take the name back).
    names: HashMap<String, String>,
}

/// Containers by pod UID and name, sandboxes by pod UID, and which pod a
/// name means; every change is announced to [`ContainerIndex::changes`]
/// subscribers.
#[derive(Debug, Clone)]
pub struct ContainerIndex(Arc<Mutex<Maps>>, Arc<tokio::sync::watch::Sender<u64>>);

impl Default for ContainerIndex {
    fn default() -> Self {
        ContainerIndex(Arc::default(), Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl ContainerIndex {
    /// A container's key: its pod's UID and its name.
    pub fn key(uid: &str, container: &str) -> String {
        format!("{uid}/{container}")
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes whoever waits for a container to change (log followers).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.1.subscribe()
    }

    fn changed(&self) {
        self.1.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Makes `namespace/name` mean the pod `uid` (a new pod of a name
    /// takes it over; a known one does not take it back).
    pub fn register(&self, namespace: &str, name: &str, uid: &str) {
        let mut maps = self.maps();
        if !maps.pods.contains_key(uid) {
            let full = format!("{namespace}/{name}");
            maps.pods.insert(uid.to_string(), full.clone());
            maps.names.insert(full, uid.to_string());
        }
    }

    /// The UID of the pod `namespace/name` on this node now.
    pub fn resolve(&self, namespace: &str, name: &str) -> Option<String> {
        self.maps().names.get(&format!("{namespace}/{name}")).cloned()
    }

    pub fn set(&self, key: String, entry: ContainerEntry) {
        self.maps().containers.insert(key, entry);
        self.changed();
    }

    pub fn get(&self, key: &str) -> Option<ContainerEntry> {
        self.maps().containers.get(key).cloned()
    }

    /// Every running container: its pod's namespace and name, its name.
    pub fn running(&self) -> Vec<(String, String, String, ContainerEntry)> {
        let maps = self.maps();
        maps.containers
            .iter()
            .filter(|(_, entry)| entry.running)
            .filter_map(|(key, entry)| {
                let (uid, container) = key.split_once('/')?;
                let (namespace, name) = maps.pods.get(uid)?.split_once('/')?;
                Some((namespace.to_string(), name.to_string(), container.to_string(), entry.clone()))
            })
            .collect()
    }

    /// The key of a container of the pod `namespace/name` now: a pod
    /// created again under the same name is not its predecessor. (A name
    /// no pod has gives a key nothing is stored under.)
    pub fn key_by_name(&self, namespace: &str, name: &str, container: &str) -> String {
        Self::key(&self.resolve(namespace, name).unwrap_or_default(), container)
    }

    pub fn set_sandbox(&self, uid: &str, entry: Option<SandboxEntry>) {
        let mut maps = self.maps();
        match entry {
            Some(entry) => maps.sandboxes.insert(uid.to_string(), entry),
            None => maps.sandboxes.remove(uid),
        };
    }

    /// The sandbox of the pod `namespace/name` now.
    pub fn sandbox(&self, namespace: &str, name: &str) -> Option<SandboxEntry> {
        let uid = self.resolve(namespace, name)?;
        self.maps().sandboxes.get(&uid).cloned()
    }

    /// Forgets a pod; its name goes back to another pod of that name
    /// still known here, if any.
    pub fn remove_pod(&self, uid: &str) {
        {
            let mut maps = self.maps();
            let prefix = format!("{uid}/");
            maps.containers.retain(|k, _| !k.starts_with(&prefix));
            maps.sandboxes.remove(uid);
            if let Some(full) = maps.pods.remove(uid) {
                if maps.names.get(&full).is_some_and(|u| u == uid) {
                    maps.names.remove(&full);
                    let other = maps.pods.iter().find(|(_, n)| **n == full).map(|(u, _)| u.clone());
                    if let Some(other) = other {
                        maps.names.insert(full, other);
                    }
                }
            }
        }
        self.changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(runtime_id: &str) -> ContainerEntry {
        ContainerEntry {
            dir: PathBuf::from("/logs"),
            attempt: 0,
            running: true,
            runtime_id: runtime_id.into(),
            bundle: PathBuf::from("/bundles").join(runtime_id),
            cgroup: format!("/kubepods/pod1/{runtime_id}"),
        }
    }

    #[test]
    fn a_name_means_the_newest_pod_and_the_old_ones_teardown_keeps_it() {
        let index = ContainerIndex::default();
        index.register("default", "web", "old");
        index.set(ContainerIndex::key("old", "c"), entry("a"));
        // Force-deleted and created again: the new pod takes the name.
        index.register("default", "web", "new");
        index.set(ContainerIndex::key("new", "c"), entry("b"));
        assert_eq!(index.get(&index.key_by_name("default", "web", "c")).map(|e| e.runtime_id), Some("b".into()));
        // The old pod's worker writing again does not take it back ...
        index.register("default", "web", "old");
        index.set(ContainerIndex::key("old", "c"), entry("a2"));
        assert_eq!(index.resolve("default", "web").as_deref(), Some("new"));
        // ... nor does its teardown remove the new pod.
        index.remove_pod("old");
        assert_eq!(index.get(&index.key_by_name("default", "web", "c")).map(|e| e.runtime_id), Some("b".into()));
        index.remove_pod("new");
        assert_eq!(index.resolve("default", "web"), None);
    }
}
