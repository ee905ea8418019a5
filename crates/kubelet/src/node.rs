//! The Node object: registration with capacity, addresses, node info and
//! conditions, and the heartbeat (a Lease in kube-node-lease renewed every
//! 10 s, node status refreshed every minute), as kubelet does.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How often the lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often node status is refreshed when nothing changed.
pub const STATUS_REFRESH: Duration = Duration::from_secs(60);

/// What the node reports about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub internal_ip: String,
    /// Set by the node itself (`--node-pod-cidr`); else the server assigns one.
    pub pod_cidr: Option<String>,
    pub max_pods: u32,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub kernel: String,
    pub os_image: String,
    pub runtime_version: String,
    pub kubelet_port: u16,
}

fn first_line_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().trim_matches('"').to_string())
}

impl NodeInfo {
    /// Reads the machine: CPUs, memory, disk of `data_dir`, kernel, OS, address.
    pub fn detect(name: &str, data_dir: &std::path::Path, runtime_version: &str) -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 = first_line_value(&meminfo, "MemTotal:")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let storage = nix::sys::statvfs::statvfs(data_dir)
            .map(|s| s.blocks() * s.fragment_size())
            .unwrap_or(0);
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Self {
            name: name.to_string(),
            internal_ip: detect_internal_ip(),
            pod_cidr: None,
            max_pods: 110,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_bytes: memory_kib * 1024,
            ephemeral_storage_bytes: storage,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            os_image: first_line_value(&os_release, "PRETTY_NAME=")
                .unwrap_or_else(|| "Linux".into()),
            runtime_version: runtime_version.to_string(),
            kubelet_port: 10250,
        }
    }
}

/// The address of the interface carrying the default route, else the first
/// non-loopback IPv4 address, else 127.0.0.1.
pub fn detect_internal_ip() -> String {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default_interface = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&"00000000"))
        .and_then(|f| f.first().map(|s| s.to_string()));
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let v4 = |i: &&if_addrs::Interface| i.ip().is_ipv4() && !i.is_loopback();
    interfaces
        .iter()
        .filter(v4)
        .find(|i| Some(&i.name) == default_interface.as_ref())
        .or_else(|| interfaces.iter().find(v4))
        .map(|i| i.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into())
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &Time) -> NodeCondition {
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The Node object for `info` (decided purely from it and `now`).
pub fn node_object(info: &NodeInfo, now: Timestamp) -> Node {
    let now = Time(now);
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), info.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "amd64"
            }
            .to_string(),
        ),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "amd64"
            }
            .to_string(),
        ),
    ]);
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(info.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", info.memory_bytes / 1024)),
        ),
        ("pods".to_string(), Quantity(info.max_pods.to_string())),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", info.ephemeral_storage_bytes / 1024)),
        ),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(info.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: info.pod_cidr.clone(),
            pod_cidrs: info.pod_cidr.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: info.internal_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: info.name.clone(),
                },
            ]),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                    &now,
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                    &now,
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                    &now,
                ),
                condition(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "kubelet is posting ready status",
                    &now,
                ),
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(info.kubelet_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: if cfg!(target_arch = "aarch64") {
                    "arm64"
                } else {
                    "amd64"
                }
                .into(),
                boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .unwrap_or_default()
                    .trim()
                    .into(),
                container_runtime_version: info.runtime_version.clone(),
                kernel_version: info.kernel.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: format!("v1.32.0+skiff-{}", env!("CARGO_PKG_VERSION")),
                machine_id: std::fs::read_to_string("/etc/machine-id")
                    .unwrap_or_default()
                    .trim()
                    .into(),
                operating_system: "linux".into(),
                os_image: info.os_image.clone(),
                system_uuid: String::new(),
            }),
            ..Default::default()
        }),
    }
}

/// Creates the Node, or refreshes its status if it exists.
pub async fn register(client: &kube::Client, info: &NodeInfo) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = node_object(info, Timestamp::now());
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %info.name, "registered node"),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            nodes
                .patch(
                    &info.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": node.metadata.labels}})),
                )
                .await?;
            nodes
                .patch_status(
                    &info.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": node.status})),
                )
                .await?;
            tracing::info!(node = %info.name, "node already registered; status refreshed");
        }
        Err(other) => return Err(other),
    }
    Ok(())
}

/// Waits (on a watch of the Node) for the server to give the node its
/// `spec.podCIDR`; `None` if `shutdown` fires first.
pub async fn wait_for_pod_cidr(client: &kube::Client, name: &str, shutdown: &CancellationToken) -> Result<Option<String>, kube::runtime::wait::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let has_cidr = |node: Option<&Node>| pod_cidr_of(node).is_some();
    tracing::info!(node = name, "waiting for the server to assign the node a pod CIDR");
    tokio::select! {
        _ = shutdown.cancelled() => Ok(None),
        node = kube::runtime::wait::await_condition(nodes, name, has_cidr) => Ok(pod_cidr_of(node?.as_ref())),
    }
}

fn pod_cidr_of(node: Option<&Node>) -> Option<String> {
    node?.spec.as_ref()?.pod_cidr.clone().filter(|c| !c.is_empty())
}

async fn renew_lease(client: &kube::Client, info: &NodeInfo) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(info.name.clone()),
        lease_duration_seconds: Some(40),
        renew_time: Some(now),
        ..Default::default()
    };
    match leases
        .patch(
            &info.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(info.name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        Err(other) => Err(other),
    }
}

/// Renews the lease and refreshes the status until `shutdown`.
pub async fn heartbeat(client: kube::Client, info: NodeInfo, shutdown: CancellationToken) {
    let mut lease = tokio::time::interval(LEASE_RENEW);
    let mut status = tokio::time::interval(STATUS_REFRESH);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = lease.tick() => {
                if let Err(error) = renew_lease(&client, &info).await {
                    tracing::warn!(%error, "failed to renew the node lease");
                }
            }
            _ = status.tick() => {
                let nodes: Api<Node> = Api::all(client.clone());
                let node = node_object(&info, Timestamp::now());
                if let Err(error) = nodes.patch_status(&info.name, &PatchParams::default(), &Patch::Merge(json!({"status": node.status}))).await {
                    tracing::warn!(%error, "failed to refresh node status");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_reads_like_kubelets() {
        let info = NodeInfo {
            name: "n1".into(),
            internal_ip: "192.0.2.10".into(),
            pod_cidr: Some("10.42.0.0/24".into()),
            max_pods: 110,
            cpus: 2,
            memory_bytes: 24 << 30,
            ephemeral_storage_bytes: 100 << 30,
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            runtime_version: "runc://1.1.5".into(),
            kubelet_port: 10250,
        };
        let node = node_object(&info, Timestamp::UNIX_EPOCH);
        let status = node.status.unwrap_or_default();
        assert_eq!(
            status
                .capacity
                .as_ref()
                .and_then(|c| c.get("pods"))
                .map(|q| q.0.as_str()),
            Some("110")
        );
        assert_eq!(
            status.addresses.as_ref().map(|a| a[0].address.as_str()),
            Some("192.0.2.10")
        );
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready");
        assert_eq!(
            ready.map(|c| (c.status, c.reason)),
            Some(("True".into(), Some("KubeletReady".into())))
        );
        assert_eq!(
            node.spec.and_then(|s| s.pod_cidr).as_deref(),
            Some("10.42.0.0/24")
        );
        // Roles are the server's to set: NodeRestriction refuses them from a node.
        assert!(node
            .metadata
            .labels
            .is_some_and(|l| !l.keys().any(|k| k.starts_with("node-role.kubernetes.io/"))));
    }
}
