//! Upstream's pod defaulting (pkg/apis/core/v1/defaults.go, plus the
//! admission plugins a default cluster runs) and the QoS class.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Probe, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::quantity::Quantity;

use super::{all_containers, all_containers_mut};

/// The image pull policy upstream defaults for an image reference.
pub fn default_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_probe(probe: &mut Probe) {
    probe.timeout_seconds.get_or_insert(1);
    probe.period_seconds.get_or_insert(10);
    probe.success_threshold.get_or_insert(1);
    probe.failure_threshold.get_or_insert(3);
    if let Some(http) = probe.http_get.as_mut() {
        http.path.get_or_insert_with(|| "/".to_string());
        http.scheme.get_or_insert_with(|| "HTTP".to_string());
    }
}

/// Rounds quantities up to milli-units and writes them in canonical form.
fn canonical_resources(list: &mut Option<BTreeMap<String, K8sQuantity>>) {
    for value in list.iter_mut().flat_map(|l| l.values_mut()) {
        if let Some(q) = Quantity::parse(&value.0) {
            value.0 = q.canonical();
        }
    }
}

fn default_resources(resources: &mut ResourceRequirements) {
    canonical_resources(&mut resources.limits);
    canonical_resources(&mut resources.requests);
    if let Some(limits) = resources.limits.clone() {
        let requests = resources.requests.get_or_insert_with(BTreeMap::new);
        for (name, value) in limits {
            requests.entry(name).or_insert(value);
        }
    }
}

fn default_container(container: &mut Container, host_network: bool) {
    container
        .termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".to_string());
    container
        .termination_message_policy
        .get_or_insert_with(|| "File".to_string());
    if container.image_pull_policy.is_none() {
        if let Some(image) = &container.image {
            container.image_pull_policy = Some(default_pull_policy(image).to_string());
        }
    }
    for port in container.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".to_string());
        if host_network && port.host_port.is_none() {
            port.host_port = Some(port.container_port);
        }
    }
    for probe in [
        &mut container.liveness_probe,
        &mut container.readiness_probe,
        &mut container.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lifecycle) = container.lifecycle.as_mut() {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            if let Some(http) = handler.http_get.as_mut() {
                http.path.get_or_insert_with(|| "/".to_string());
                http.scheme.get_or_insert_with(|| "HTTP".to_string());
            }
        }
    }
    for env in container.env.iter_mut().flatten() {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            field_ref
                .api_version
                .get_or_insert_with(|| "v1".to_string());
        }
    }
    default_resources(container.resources.get_or_insert_with(Default::default));
}

/// Applies upstream's defaults and the additions of the default admission
/// plugins (service account, default tolerations, priority). Idempotent.
pub fn apply_defaults(pod: &mut Pod) {
    // Mirror pods skip ServiceAccount admission: they may name no account.
    let mirror = pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let spec = pod.spec.get_or_insert_with(Default::default);
    let host_network = spec.host_network.unwrap_or(false);
    spec.restart_policy
        .get_or_insert_with(|| "Always".to_string());
    spec.dns_policy
        .get_or_insert_with(|| "ClusterFirst".to_string());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".to_string());
    spec.security_context.get_or_insert_with(Default::default);
    // Kubernetes 1.32 drops fields whose feature gates are off by default
    // (UserNamespacesSupport, ProcMountType): hostUsers and procMount.
    spec.host_users = None;
    // PodLevelResources and InPlacePodVerticalScaling are off by default
    // in 1.32 too: pod-level resources and resizePolicy are dropped.
    spec.resources = None;
    for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        container.resize_policy = None;
    }
    spec.enable_service_links.get_or_insert(true);
    match spec.termination_grace_period_seconds {
        None => spec.termination_grace_period_seconds = Some(30),
        Some(negative) if negative < 0 => spec.termination_grace_period_seconds = Some(1),
        Some(_) => {}
    }
    for container in all_containers_mut(spec) {
        default_container(container, host_network);
        if let Some(context) = container.security_context.as_mut() {
            context.proc_mount = None;
        }
    }
    // Ephemeral containers share the containers' defaults.
    for ephemeral in spec.ephemeral_containers.iter_mut().flatten() {
        let mut container = super::ephemeral::as_container(ephemeral);
        default_container(&mut container, host_network);
        if let Some(context) = container.security_context.as_mut() {
            context.proc_mount = None;
        }
        let target = ephemeral.target_container_name.take();
        *ephemeral = super::ephemeral::from_container(&container, target);
    }
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
    // Admission: ServiceAccount, DefaultTolerationSeconds, Priority.
    if !mirror {
        let account = spec
            .service_account_name
            .get_or_insert_with(|| "default".to_string())
            .clone();
        spec.service_account.get_or_insert(account);
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = tolerations.iter().any(|t| {
            t.key.as_deref() == Some(key)
                || (t.key.is_none() && t.operator.as_deref() == Some("Exists"))
        });
        if !tolerated {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some("NoExecute".to_string()),
                toleration_seconds: Some(300),
                value: None,
            });
        }
    }
    spec.priority.get_or_insert(0);
    spec.preemption_policy
        .get_or_insert_with(|| "PreemptLowerPriority".to_string());
    let qos = qos_class(spec).to_string();
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase.get_or_insert_with(|| "Pending".to_string());
    status.qos_class.get_or_insert(qos);
}

fn default_volume(volume: &mut k8s_openapi::api::core::v1::Volume) {
    let has_source = serde_json::to_value(&*volume)
        .ok()
        .and_then(|v| v.as_object().map(|m| m.keys().any(|k| k != "name")))
        .unwrap_or(true);
    if !has_source {
        volume.empty_dir = Some(Default::default());
    }
    if let Some(cm) = volume.config_map.as_mut() {
        cm.default_mode.get_or_insert(0o644);
    }
    if let Some(secret) = volume.secret.as_mut() {
        secret.default_mode.get_or_insert(0o644);
    }
    if let Some(downward) = volume.downward_api.as_mut() {
        downward.default_mode.get_or_insert(0o644);
    }
    if let Some(projected) = volume.projected.as_mut() {
        projected.default_mode.get_or_insert(0o644);
    }
}

/// Upstream's QoS rules (pkg/apis/core/helper/qos): Guaranteed, Burstable or BestEffort.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let parse = |q: &K8sQuantity| Quantity::parse(&q.0).map(|q| q.milli_value()).unwrap_or(0);
    for (_, _, container) in all_containers(spec) {
        let resources = container.resources.clone().unwrap_or_default();
        let req = resources.requests.unwrap_or_default();
        let lim = resources.limits.unwrap_or_default();
        for (name, value) in &req {
            if matches!(name.as_str(), "cpu" | "memory") && parse(value) != 0 {
                let name = if name == "cpu" { "cpu" } else { "memory" };
                *requests.entry(name).or_default() += parse(value);
            }
        }
        let mut limited = HashSet::new();
        for (name, value) in &lim {
            if matches!(name.as_str(), "cpu" | "memory") && parse(value) != 0 {
                let name = if name == "cpu" { "cpu" } else { "memory" };
                limited.insert(name);
                *limits.entry(name).or_default() += parse(value);
            }
        }
        if limited.len() < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests == limits {
        return "Guaranteed";
    }
    "Burstable"
}
