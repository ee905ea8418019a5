//! What a pod worker remembers across a restart of the agent: after every
//! change it writes `checkpoint.json` in the pod's directory (the pod as last
//! seen, its sandbox, the node's record of its containers, and which runtime
//! containers and monitors are its own). A new agent reads these files and
//! re-adopts the pods instead of restarting them; the containers kept running
//! under their monitors all along.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::status::PodRecord;

const FILE: &str = "checkpoint.json";

/// One container the runtime runs for the pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveContainer {
    pub name: String,
    /// The OCI runtime's container id (its bundle is `containers/<id>`).
    pub id: String,
    pub stop_signal: String,
    /// The `skiff monitor` process holding the container.
    pub monitor_pid: u32,
}

/// A container waiting out its crash-loop back-off.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackOff {
    pub name: String,
    pub delay_ms: u64,
    /// When it may start again, in Unix milliseconds.
    pub due_unix_ms: i64,
}

/// A pod worker's state, as written beside the pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub pod: Arc<Pod>,
    pub sandbox_id: String,
    pub sandbox_pid: Option<u32>,
    pub record: PodRecord,
    /// The pod ended for good and its sandbox was released.
    pub finished: bool,
    pub live: Vec<LiveContainer>,
    #[serde(default)]
    pub backoff: Vec<BackOff>,
}

impl Checkpoint {
    pub fn uid(&self) -> String {
        self.pod.metadata.uid.clone().unwrap_or_default()
    }

    /// Writes the checkpoint into `pod_dir` (atomically; nothing if the
    /// directory is gone, as after teardown).
    pub fn save(&self, pod_dir: &Path) -> std::io::Result<()> {
        if !pod_dir.is_dir() {
            return Ok(());
        }
        let partial = pod_dir.join("checkpoint.partial");
        std::fs::write(
            &partial,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(partial, pod_dir.join(FILE))
    }
}

/// Every readable checkpoint under `<data-dir>/pods`, with its pod directory.
pub fn load_all(data_dir: &Path) -> Vec<(PathBuf, Checkpoint)> {
    std::fs::read_dir(data_dir.join("pods"))
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let text = std::fs::read(entry.path().join(FILE)).ok()?;
            match serde_json::from_slice::<Checkpoint>(&text) {
                Ok(checkpoint) => Some((entry.path(), checkpoint)),
                Err(error) => {
                    tracing::warn!(dir = %entry.path().display(), %error, "unreadable pod checkpoint; the pod is cleaned up");
                    None
                }
            }
        })
        .collect()
}

/// What a node cleanup must leave alone: the parts of re-adopted pods.
#[derive(Debug, Default)]
pub struct Keep {
    pub containers: HashSet<String>,
    pub sandboxes: HashSet<String>,
    pub pod_dirs: HashSet<PathBuf>,
    pub pod_uids: HashSet<String>,
}

impl Keep {
    pub fn of(adopted: &[(PathBuf, Checkpoint)]) -> Self {
        let mut keep = Self::default();
        for (dir, checkpoint) in adopted {
            keep.pod_dirs.insert(dir.clone());
            keep.pod_uids.insert(checkpoint.uid());
            keep.sandboxes.insert(checkpoint.sandbox_id.clone());
            keep.containers
                .extend(checkpoint.live.iter().map(|l| l.id.clone()));
        }
        keep
    }
}
