//! Pod volumes on the node (kubelet's volume plugins): which kind each
//! volume is, what the node can set up and what it refuses out loud.
//! [`atomic`] writes API-fed volumes, [`payload`] computes their files,
//! [`host_path`] checks hostPath types. The pod worker executes.

pub mod atomic;
pub mod host_path;
pub mod payload;

use k8s_openapi::api::core::v1::Volume;

/// What the node does with a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    EmptyDir,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    HostPath,
    /// A claim: Skiff serves no PersistentVolumeClaims (the scheduler keeps
    /// such pods Pending).
    PersistentVolumeClaim,
    /// A volume plugin the node lacks, by its field name (`csi`, `nfs`, ...).
    Unsupported(&'static str),
}

/// Volume source fields of core/v1 Volume (1.32), by JSON name.
const SOURCES: [&str; 31] = [
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi",
    "downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk",
    "gitRepo", "glusterfs", "hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim",
    "photonPersistentDisk", "portworxVolume", "projected", "quobyte", "rbd", "scaleIO", "secret",
    "storageos", "vsphereVolume", "unknown",
];

pub fn kind(volume: &Volume) -> Kind {
    if volume.config_map.is_some() {
        Kind::ConfigMap
    } else if volume.secret.is_some() {
        Kind::Secret
    } else if volume.downward_api.is_some() {
        Kind::DownwardApi
    } else if volume.projected.is_some() {
        Kind::Projected
    } else if volume.host_path.is_some() {
        Kind::HostPath
    } else if volume.persistent_volume_claim.is_some() {
        Kind::PersistentVolumeClaim
    } else if volume.empty_dir.is_some() {
        Kind::EmptyDir
    } else {
        // Any other source set names itself; none at all is an emptyDir,
        // as the API server defaults it.
        let value = serde_json::to_value(volume).unwrap_or_default();
        let set = value
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .find(|k| k.as_str() != "name")
            .map(|k| SOURCES.iter().find(|s| **s == k.as_str()).copied().unwrap_or("unknown"));
        match set {
            Some(name) => Kind::Unsupported(name),
            None => Kind::EmptyDir,
        }
    }
}

/// Why a volume cannot be set up on this node, before trying: unsupported
/// plugins and projected sources Skiff does not project yet.
pub fn unsupported(volume: &Volume) -> Option<String> {
    match kind(volume) {
        Kind::Unsupported(plugin) => Some(format!(
            "volume type {plugin:?} is not supported by Skiff (supported: emptyDir, configMap, secret, downwardAPI, projected, hostPath)"
        )),
        Kind::PersistentVolumeClaim => Some(format!(
            "persistentvolumeclaim {:?} not found: Skiff serves no PersistentVolumeClaims",
            volume.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()).unwrap_or_default()
        )),
        Kind::Projected => volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .find_map(|source| {
                if source.cluster_trust_bundle.is_some() {
                    Some("projected source \"clusterTrustBundle\" is not supported by Skiff")
                } else {
                    None
                }
            })
            .map(str::to_string),
        _ => None,
    }
}

/// Whether the volume's files come from API objects and are kept current
/// (read-only to containers, as upstream mounts them).
pub fn is_api_fed(kind: Kind) -> bool {
    matches!(kind, Kind::ConfigMap | Kind::Secret | Kind::DownwardApi | Kind::Projected)
}

/// Where a memory-backed volume lives, as upstream keeps secrets and
/// projections (which may hold secrets) and `medium: Memory` emptyDirs off
/// the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// On disk (or the host's path).
    No,
    /// A directory of the node's one tmpfs for API-fed volumes: secrets and
    /// projections, written by the agent only and read-only to containers,
    /// so no per-volume size limit applies. One mount for all pods keeps
    /// the host's mount table (which every runtime start reads and every
    /// new mount namespace copies) from growing with each pod.
    NodeTmpfs,
    /// A tmpfs of its own, sized by the emptyDir's sizeLimit.
    OwnTmpfs,
}

/// Whether and where the volume lives in memory.
pub fn memory(volume: &Volume) -> Memory {
    match kind(volume) {
        Kind::Secret | Kind::Projected => Memory::NodeTmpfs,
        Kind::EmptyDir if volume.empty_dir.as_ref().is_some_and(|e| e.medium.as_deref() == Some("Memory")) => Memory::OwnTmpfs,
        _ => Memory::No,
    }
}

/// The directory of the node's tmpfs for API-fed volumes, in the data dir.
pub const NODE_TMPFS_DIR: &str = "api-volumes";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_and_projections_live_on_the_node_tmpfs_memory_empty_dirs_on_their_own() -> Result<(), serde_json::Error> {
        let cases = [
            (json!({"name": "v", "secret": {"secretName": "s"}}), Memory::NodeTmpfs),
            (json!({"name": "v", "projected": {"sources": []}}), Memory::NodeTmpfs),
            (json!({"name": "v", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}), Memory::OwnTmpfs),
            (json!({"name": "v", "emptyDir": {}}), Memory::No),
            (json!({"name": "v", "configMap": {"name": "c"}}), Memory::No),
            (json!({"name": "v", "hostPath": {"path": "/tmp"}}), Memory::No),
        ];
        for (volume, expected) in cases {
            assert_eq!(memory(&serde_json::from_value(volume.clone())?), expected, "{volume}");
        }
        Ok(())
    }

    #[test]
    fn volumes_are_classified_by_their_source() -> Result<(), serde_json::Error> {
        let cases = [
            (json!({"name": "v"}), Kind::EmptyDir, None),
            (json!({"name": "v", "emptyDir": {}}), Kind::EmptyDir, None),
            (json!({"name": "v", "configMap": {"name": "c"}}), Kind::ConfigMap, None),
            (json!({"name": "v", "secret": {"secretName": "s"}}), Kind::Secret, None),
            (json!({"name": "v", "downwardAPI": {}}), Kind::DownwardApi, None),
            (json!({"name": "v", "hostPath": {"path": "/tmp"}}), Kind::HostPath, None),
            (json!({"name": "v", "projected": {"sources": [{"configMap": {"name": "c"}}]}}), Kind::Projected, None),
            (
                json!({"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}),
                Kind::Projected,
                None,
            ),
            (
                json!({"name": "v", "persistentVolumeClaim": {"claimName": "data"}}),
                Kind::PersistentVolumeClaim,
                Some("persistentvolumeclaim \"data\" not found: Skiff serves no PersistentVolumeClaims"),
            ),
            (
                json!({"name": "v", "csi": {"driver": "d"}}),
                Kind::Unsupported("csi"),
                Some("volume type \"csi\" is not supported by Skiff (supported: emptyDir, configMap, secret, downwardAPI, projected, hostPath)"),
            ),
            (json!({"name": "v", "nfs": {"server": "s", "path": "/"}}), Kind::Unsupported("nfs"), Some("volume type \"nfs\" is not supported by Skiff (supported: emptyDir, configMap, secret, downwardAPI, projected, hostPath)")),
        ];
        for (spec, want_kind, want_refusal) in cases {
            let volume: Volume = serde_json::from_value(spec.clone())?;
            assert_eq!(kind(&volume), want_kind, "{spec}");
            assert_eq!(unsupported(&volume).as_deref(), want_refusal, "{spec}");
        }
        Ok(())
    }
}
