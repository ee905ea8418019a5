//! Static pods (kubelet's file source): every Pod manifest in the
//! `--pod-manifest-path` directory runs on this node without the API server,
//! and the API server shows each as a read-only mirror pod.
//!
//! As upstream: the pod is named `<name>-<nodeName>`, its UID is a hash of
//! the manifest, the node and the file (so editing the file makes a new pod),
//! and the mirror pod carries `kubernetes.io/config.mirror: <hash>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";

/// kubelet also rereads the directory this often, in case an event was missed.
const RESCAN: Duration = Duration::from_secs(20);

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The UID (manifest hash) of the static pod a mirror pod stands for.
pub fn mirrored_uid(pod: &Pod) -> Option<&str> {
    annotation(pod, MIRROR_ANNOTATION)
}

/// A mirror pod: the API server's picture of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    mirrored_uid(pod).is_some()
}

/// A pod that came from a manifest file.
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, SOURCE_ANNOTATION) == Some("file")
}

/// The static pod kubelet would run for one manifest file.
pub fn static_pod(text: &str, path: &Path, node: &str) -> Result<Pod, String> {
    let value: serde_json::Value =
        serde_yaml::from_str(text).map_err(|e| format!("invalid manifest: {e}"))?;
    if value["kind"] != "Pod" || value["apiVersion"] != "v1" {
        return Err(format!(
            "not a v1 Pod (apiVersion {}, kind {})",
            value["apiVersion"], value["kind"]
        ));
    }
    let mut pod: Pod =
        serde_json::from_value(value.clone()).map_err(|e| format!("invalid pod: {e}"))?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name: Required value: name is required")?;
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&value).map_err(|e| e.to_string())?);
    hasher.update(format!("host:{node}file:{}", path.display()));
    let hash = hex::encode(&hasher.finalize()[..16]);
    pod.metadata.name = Some(format!("{name}-{node}"));
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(hash.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(HASH_ANNOTATION.into(), hash);
    annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
    annotations.insert(SEEN_ANNOTATION.into(), jiff::Timestamp::now().to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_string());
    // Static pods tolerate every NoExecute taint, as upstream's.
    spec.tolerations
        .get_or_insert_with(Vec::new)
        .push(Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        });
    skiff_api::pod::apply_defaults(&mut pod);
    let errors = skiff_api::pod::validate_spec(pod.spec.as_ref().ok_or("no spec")?);
    if let Some(first) = errors.first() {
        return Err(format!("invalid pod: {first}"));
    }
    Ok(pod)
}

/// Every valid static pod in `dir` (dot files are skipped, as kubelet does).
pub fn scan(dir: &Path, node: &str) -> Vec<Pod> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            match static_pod(&text, &path, node) {
                Ok(pod) => Some(pod),
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "static pod manifest skipped");
                    None
                }
            }
        })
        .collect()
}

/// Sends the directory's static pods now, and again whenever a file in it
/// changes (inotify) or every 20 s, until `shutdown`.
pub async fn watch(
    dir: PathBuf,
    node: String,
    pods: mpsc::Sender<Vec<Pod>>,
    shutdown: CancellationToken,
) {
    use inotify::WatchMask;
    let _ = std::fs::create_dir_all(&dir);
    let mut events = crate::notify::Changes::watch(
        &dir,
        WatchMask::CREATE
            | WatchMask::CLOSE_WRITE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::MODIFY,
        "the static pod directory is reread every 20 s",
    );
    loop {
        if pods.send(scan(&dir, &node)).await.is_err() {
            return;
        }
        let event = async {
            events.next().await;
            // Let an editor finish writing before reading again.
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = event => {}
            _ = tokio::time::sleep(RESCAN) => {}
        }
    }
}

/// The mirror pod for a static pod: same metadata and spec, the mirror
/// annotation, owned by the node.
pub fn mirror_of(pod: &Pod, node_uid: Option<String>) -> Pod {
    let mut mirror = Pod {
        metadata: pod.metadata.clone(),
        spec: pod.spec.clone(),
        status: None,
    };
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    // The account our defaulting named; a mirror pod may name none (a
    // manifest's own account is refused by the API server, as upstream).
    if let Some(spec) = mirror.spec.as_mut().filter(|s| s.service_account_name.as_deref() == Some("default")) {
        spec.service_account_name = None;
        spec.service_account = None;
    }
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    mirror
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(MIRROR_ANNOTATION.into(), hash);
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    mirror.metadata.owner_references = node_uid.map(|uid| {
        vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node,
            uid,
            controller: Some(true),
            ..Default::default()
        }]
    });
    mirror
}

/// Keeps mirror pods in the API server in line with the static pods.
#[derive(Clone)]
pub struct Mirrors {
    pub client: kube::Client,
    pub node: String,
}

impl Mirrors {
    fn api(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    /// Makes sure `pod` has a current mirror pod: one that is missing,
    /// outdated (another hash) or being deleted is replaced. Returns
    /// whether a mirror was created.
    pub async fn ensure(&self, pod: &Pod) -> Result<bool, kube::Error> {
        let api = self.api(pod);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hash = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(existing) = api.get_opt(&name).await? {
            let current = mirrored_uid(&existing) == Some(hash.as_str())
                && existing.metadata.deletion_timestamp.is_none();
            if current {
                return Ok(false);
            }
            tracing::info!(pod = %name, "replacing a deleted or outdated mirror pod");
            delete_now(&api, &existing).await?;
        }
        let node_uid = Api::<Node>::all(self.client.clone())
            .get_opt(&self.node)
            .await?
            .and_then(|n| n.metadata.uid);
        match api
            .create(&PostParams::default(), &mirror_of(pod, node_uid))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Deletes the mirror of a static pod that no longer runs (only if it
    /// still mirrors that pod, not a newer version of the file).
    pub async fn remove(&self, pod: &Pod) -> Result<(), kube::Error> {
        let api = self.api(pod);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hash = pod.metadata.uid.clone().unwrap_or_default();
        match api.get_opt(&name).await? {
            Some(existing) if mirrored_uid(&existing) == Some(hash.as_str()) => {
                delete_now(&api, &existing).await
            }
            _ => Ok(()),
        }
    }
}

impl Mirrors {
    /// Deletes a mirror pod no static pod of this node stands behind.
    pub async fn remove_orphan(&self, mirror: &Pod) -> Result<(), kube::Error> {
        delete_now(&self.api(mirror), mirror).await
    }
}

/// Deletes a pod at once (grace 0), only the very object given.
async fn delete_now(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api
        .delete(pod.metadata.name.as_deref().unwrap_or_default(), &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: app
    image: busybox
";

    #[test]
    fn a_manifest_becomes_a_static_pod_named_after_the_node() -> Result<(), String> {
        let pod = static_pod(MANIFEST, Path::new("/etc/skiff/web.yaml"), "node1")?;
        assert_eq!(pod.metadata.name.as_deref(), Some("web-node1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        assert_eq!(uid.len(), 32);
        assert_eq!(annotation(&pod, HASH_ANNOTATION), Some(uid.as_str()));
        assert!(is_static(&pod) && !is_mirror(&pod));
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(spec.node_name.as_deref(), Some("node1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        // Same file, same pod; an edit or another node, another UID.
        let again = static_pod(MANIFEST, Path::new("/etc/skiff/web.yaml"), "node1")?;
        assert_eq!(again.metadata.uid, pod.metadata.uid);
        let edited = static_pod(
            &MANIFEST.replace("busybox", "busybox:1"),
            Path::new("/etc/skiff/web.yaml"),
            "node1",
        )?;
        assert_ne!(edited.metadata.uid, pod.metadata.uid);
        let mirror = mirror_of(&pod, Some("node-uid".into()));
        assert!(is_mirror(&mirror));
        assert_eq!(mirrored_uid(&mirror), Some(uid.as_str()));
        assert_eq!(mirror.metadata.uid, None);
        Ok(())
    }

    #[test]
    fn bad_manifests_are_refused_with_a_reason() {
        let path = Path::new("/x.yaml");
        assert!(static_pod("kind: Service\napiVersion: v1\n", path, "n").is_err());
        assert!(static_pod(
            "apiVersion: v1\nkind: Pod\nspec: {containers: []}\n",
            path,
            "n"
        )
        .is_err_and(|e| e.contains("name")));
        assert!(static_pod(": :", path, "n").is_err());
    }
}
