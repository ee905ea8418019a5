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
    containers: HashMap<String, ContainerEntry>,
    sandboxes: HashMap<String, SandboxEntry>,
}

/// Containers by `namespace/pod/container`, sandboxes by `namespace/pod`;
/// every change is announced to [`ContainerIndex::changes`] subscribers.
#[derive(Debug, Clone)]
pub struct ContainerIndex(Arc<Mutex<Maps>>, Arc<tokio::sync::watch::Sender<u64>>);

impl Default for ContainerIndex {
    fn default() -> Self {
        ContainerIndex(Arc::default(), Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl ContainerIndex {
    pub fn key(namespace: &str, pod: &str, container: &str) -> String {
        format!("{namespace}/{pod}/{container}")
    }

    /// Wakes whoever waits for a container to change (log followers).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.1.subscribe()
    }

    fn changed(&self) {
        self.1.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn set(&self, key: String, entry: ContainerEntry) {
        if let Ok(mut maps) = self.0.lock() {
            maps.containers.insert(key, entry);
        }
        self.changed();
    }

    pub fn get(&self, key: &str) -> Option<ContainerEntry> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.containers.get(key).cloned())
    }

    pub fn set_sandbox(&self, namespace: &str, pod: &str, entry: Option<SandboxEntry>) {
        if let Ok(mut maps) = self.0.lock() {
            let key = format!("{namespace}/{pod}");
            match entry {
                Some(entry) => maps.sandboxes.insert(key, entry),
                None => maps.sandboxes.remove(&key),
            };
        }
    }

    pub fn sandbox(&self, namespace: &str, pod: &str) -> Option<SandboxEntry> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.sandboxes.get(&format!("{namespace}/{pod}")).cloned())
    }

    pub fn remove_pod(&self, namespace: &str, pod: &str) {
        let prefix = format!("{namespace}/{pod}/");
        if let Ok(mut maps) = self.0.lock() {
            maps.containers.retain(|k, _| !k.starts_with(&prefix));
            maps.sandboxes.remove(&format!("{namespace}/{pod}"));
        }
        self.changed();
    }
}
