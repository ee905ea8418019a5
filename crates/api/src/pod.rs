//! Pods: upstream defaulting (pkg/apis/core/v1/defaults.go plus the admission
//! plugins a default cluster runs), QoS class, and validation with upstream's
//! field paths and messages (pkg/apis/core/validation).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{SeccompProfile, 
    Container, Pod, PodSpec, Probe, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::names;
use crate::quantity::Quantity;
use crate::status::FieldError;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// Every container with the field path of its list (`spec.containers`, `spec.initContainers`).
pub fn all_containers(spec: &PodSpec) -> impl Iterator<Item = (&'static str, usize, &Container)> {
    spec.init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ("spec.initContainers", i, c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| ("spec.containers", i, c)),
        )
}

fn all_containers_mut(spec: &mut PodSpec) -> impl Iterator<Item = &mut Container> {
    spec.init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
}

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
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
    // Admission: ServiceAccount, DefaultTolerationSeconds, Priority.
    let account = spec
        .service_account_name
        .get_or_insert_with(|| "default".to_string())
        .clone();
    spec.service_account.get_or_insert(account);
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

/// Checks every quantity parses (a decode error upstream, so a 400).
pub fn check_quantities(spec: &PodSpec) -> Result<(), String> {
    for (_, _, container) in all_containers(spec) {
        let resources = container.resources.as_ref();
        for list in [
            resources.and_then(|r| r.limits.as_ref()),
            resources.and_then(|r| r.requests.as_ref()),
        ]
        .into_iter()
        .flatten()
        {
            if list.values().any(|q| Quantity::parse(&q.0).is_none()) {
                return Err(crate::quantity::QUANTITY_ERROR.to_string());
            }
        }
    }
    Ok(())
}

fn non_negative(errors: &mut Vec<FieldError>, field: String, value: Option<i32>) {
    if let Some(v) = value.filter(|v| *v < 0) {
        errors.push(FieldError::invalid(
            field,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

fn validate_port_ref(errors: &mut Vec<FieldError>, field: String, port: &IntOrString) {
    match port {
        IntOrString::Int(n) => errors.extend(names::port_number(&field, *n)),
        IntOrString::String(s) => errors.extend(names::port_name(&field, s)),
    }
}

fn validate_probe(
    errors: &mut Vec<FieldError>,
    path: &str,
    probe: &Probe,
    must_succeed_once: bool,
) {
    let handlers = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.grpc.is_some(),
    ]
    .iter()
    .filter(|h| **h)
    .count();
    if handlers == 0 {
        errors.push(FieldError::required(path, "must specify a handler type"));
    } else if handlers > 1 {
        errors.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        ));
    }
    non_negative(
        errors,
        format!("{path}.initialDelaySeconds"),
        probe.initial_delay_seconds,
    );
    non_negative(
        errors,
        format!("{path}.timeoutSeconds"),
        probe.timeout_seconds,
    );
    non_negative(
        errors,
        format!("{path}.periodSeconds"),
        probe.period_seconds,
    );
    non_negative(
        errors,
        format!("{path}.successThreshold"),
        probe.success_threshold,
    );
    non_negative(
        errors,
        format!("{path}.failureThreshold"),
        probe.failure_threshold,
    );
    if must_succeed_once {
        if let Some(v) = probe.success_threshold.filter(|v| *v != 1) {
            errors.push(FieldError::invalid(
                format!("{path}.successThreshold"),
                v,
                "must be 1",
            ));
        }
    }
    if let Some(exec) = &probe.exec {
        if exec.command.as_ref().is_none_or(|c| c.is_empty()) {
            errors.push(FieldError::required(format!("{path}.exec.command"), ""));
        }
    }
    if let Some(http) = &probe.http_get {
        validate_port_ref(errors, format!("{path}.httpGet.port"), &http.port);
        if let Some(scheme) = http
            .scheme
            .as_deref()
            .filter(|s| !matches!(*s, "HTTP" | "HTTPS"))
        {
            errors.push(FieldError::not_supported(
                format!("{path}.httpGet.scheme"),
                scheme,
                &["HTTP", "HTTPS"],
            ));
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        validate_port_ref(errors, format!("{path}.tcpSocket.port"), &tcp.port);
    }
    if let Some(grpc) = &probe.grpc {
        errors.extend(names::port_number(&format!("{path}.grpc.port"), grpc.port));
    }
    if let Some(grace) = probe.termination_grace_period_seconds.filter(|g| *g <= 0) {
        errors.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            grace,
            "must be greater than 0",
        ));
    }
}

fn validate_resources(errors: &mut Vec<FieldError>, path: &str, resources: &ResourceRequirements) {
    let parse = |q: &K8sQuantity| Quantity::parse(&q.0);
    for (kind, list) in [
        ("limits", &resources.limits),
        ("requests", &resources.requests),
    ] {
        for (name, value) in list.iter().flatten() {
            if parse(value).is_some_and(|q| q.is_negative()) {
                errors.push(FieldError::invalid(
                    format!("{path}.{kind}[{name}]"),
                    value.0.clone(),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    for (name, request) in resources.requests.iter().flatten() {
        let limit = resources.limits.as_ref().and_then(|l| l.get(name));
        if let (Some(req), Some(lim)) = (parse(request), limit.and_then(parse)) {
            if req > lim {
                let limit_text = limit.map(|l| l.0.clone()).unwrap_or_default();
                errors.push(FieldError::invalid(
                    format!("{path}.requests"),
                    request.0.clone(),
                    format!("must be less than or equal to {name} limit of {limit_text}"),
                ));
            }
        }
    }
}

fn validate_container(
    errors: &mut Vec<FieldError>,
    path: &str,
    container: &Container,
    is_init: bool,
    volumes: &HashSet<String>,
) {
    if container.name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        errors.extend(names::dns1123_label(
            &format!("{path}.name"),
            &container.name,
        ));
    }
    if container
        .image
        .as_deref()
        .is_none_or(|i| i.trim().is_empty())
    {
        errors.push(FieldError::required(format!("{path}.image"), ""));
    }
    let sidecar = is_init && container.restart_policy.as_deref() == Some("Always");
    match (&container.restart_policy, is_init) {
        (Some(policy), true) if policy != "Always" => {
            errors.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                policy.as_str(),
                &["Always"],
            ));
        }
        (Some(_), false) => {
            errors.push(FieldError::forbidden(
                format!("{path}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
        _ => {}
    }
    if let Some(policy) = container
        .image_pull_policy
        .as_deref()
        .filter(|p| !PULL_POLICIES.contains(p))
    {
        errors.push(FieldError::not_supported(
            format!("{path}.imagePullPolicy"),
            policy,
            PULL_POLICIES,
        ));
    }
    if let Some(policy) = container
        .termination_message_policy
        .as_deref()
        .filter(|p| !MESSAGE_POLICIES.contains(p))
    {
        errors.push(FieldError::not_supported(
            format!("{path}.terminationMessagePolicy"),
            policy,
            MESSAGE_POLICIES,
        ));
    }
    let mut port_names = HashSet::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let port_path = format!("{path}.ports[{i}]");
        if let Some(name) = &port.name {
            errors.extend(names::port_name(&format!("{port_path}.name"), name));
            if !port_names.insert(name.clone()) {
                errors.push(FieldError::duplicate(
                    format!("{port_path}.name"),
                    name.as_str(),
                ));
            }
        }
        if port.container_port == 0 {
            errors.push(FieldError::required(
                format!("{port_path}.containerPort"),
                "",
            ));
        } else {
            errors.extend(names::port_number(
                &format!("{port_path}.containerPort"),
                port.container_port,
            ));
        }
        if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
            errors.extend(names::port_number(
                &format!("{port_path}.hostPort"),
                host_port,
            ));
        }
        if let Some(protocol) = port.protocol.as_deref().filter(|p| !PROTOCOLS.contains(p)) {
            errors.push(FieldError::not_supported(
                format!("{port_path}.protocol"),
                protocol,
                PROTOCOLS,
            ));
        }
    }
    for (i, env) in container.env.iter().flatten().enumerate() {
        let env_path = format!("{path}.env[{i}]");
        if env.name.is_empty() {
            errors.push(FieldError::required(format!("{env_path}.name"), ""));
        } else {
            errors.extend(names::env_var_name(&format!("{env_path}.name"), &env.name));
        }
        if let Some(source) = &env.value_from {
            if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errors.push(FieldError::invalid(
                    format!("{env_path}.valueFrom"),
                    "",
                    "may not be specified when `value` is not empty",
                ));
            }
            let sources = [
                source.field_ref.is_some(),
                source.resource_field_ref.is_some(),
                source.config_map_key_ref.is_some(),
                source.secret_key_ref.is_some(),
            ]
            .iter()
            .filter(|s| **s)
            .count();
            if sources != 1 {
                errors.push(FieldError::invalid(
                    format!("{env_path}.valueFrom"),
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                ));
            }
            if let Some(field_ref) = &source.field_ref {
                let path_text = field_ref.field_path.as_str();
                let base = path_text.split('[').next().unwrap_or(path_text);
                let subscripted = path_text.contains('[');
                let ok = if subscripted {
                    matches!(base, "metadata.labels" | "metadata.annotations")
                        && path_text.ends_with("']")
                } else {
                    FIELD_PATHS.contains(&base)
                        && !matches!(base, "metadata.labels" | "metadata.annotations")
                };
                if field_ref.field_path.is_empty() {
                    errors.push(FieldError::required(
                        format!("{env_path}.valueFrom.fieldRef.fieldPath"),
                        "",
                    ));
                } else if !ok {
                    errors.push(FieldError::not_supported(
                        format!("{env_path}.valueFrom.fieldRef.fieldPath"),
                        path_text,
                        FIELD_PATHS,
                    ));
                }
            }
            if let Some(resource_ref) = &source.resource_field_ref {
                if !RESOURCE_FIELDS.contains(&resource_ref.resource.as_str()) {
                    errors.push(FieldError::not_supported(
                        format!("{env_path}.valueFrom.resourceFieldRef.resource"),
                        resource_ref.resource.as_str(),
                        RESOURCE_FIELDS,
                    ));
                }
            }
        }
    }
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let mount_path = format!("{path}.volumeMounts[{i}]");
        if mount.name.is_empty() {
            errors.push(FieldError::required(format!("{mount_path}.name"), ""));
        } else if !volumes.contains(&mount.name) {
            errors.push(FieldError::not_found(
                format!("{mount_path}.name"),
                mount.name.as_str(),
            ));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(format!("{mount_path}.mountPath"), ""));
        }
    }
    if let Some(resources) = &container.resources {
        validate_resources(errors, &format!("{path}.resources"), resources);
    }
    let probes = [
        ("livenessProbe", &container.liveness_probe, true),
        ("readinessProbe", &container.readiness_probe, false),
        ("startupProbe", &container.startup_probe, true),
    ];
    for (name, probe, must_succeed_once) in probes {
        let Some(probe) = probe else { continue };
        let probe_path = format!("{path}.{name}");
        if is_init && !sidecar {
            errors.push(FieldError::forbidden(
                probe_path,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        validate_probe(errors, &probe_path, probe, must_succeed_once);
    }
    if let Some(lifecycle) = &container.lifecycle {
        if is_init && !sidecar {
            errors.push(FieldError::forbidden(
                format!("{path}.lifecycle"),
                "may not be set for init containers without restartPolicy=Always",
            ));
        } else {
            for (name, handler) in [
                ("postStart", &lifecycle.post_start),
                ("preStop", &lifecycle.pre_stop),
            ] {
                let Some(handler) = handler else { continue };
                let count = [
                    handler.exec.is_some(),
                    handler.http_get.is_some(),
                    handler.tcp_socket.is_some(),
                    handler.sleep.is_some(),
                ]
                .iter()
                .filter(|h| **h)
                .count();
                let hook_path = format!("{path}.lifecycle.{name}");
                if count == 0 {
                    errors.push(FieldError::required(
                        hook_path,
                        "must specify a handler type",
                    ));
                } else if count > 1 {
                    errors.push(FieldError::forbidden(
                        hook_path,
                        "may not specify more than 1 handler type",
                    ));
                }
            }
        }
    }
}

/// Validates a pod spec for create (everything but object metadata).
const SECCOMP_TYPES: &[&str] = &["RuntimeDefault", "Unconfined", "Localhost"];

fn validate_seccomp(errors: &mut Vec<FieldError>, path: &str, profile: Option<&SeccompProfile>) {
    let Some(profile) = profile else {
        return;
    };
    if !SECCOMP_TYPES.contains(&profile.type_.as_str()) {
        errors.push(FieldError::not_supported(
            format!("{path}.type"),
            profile.type_.as_str(),
            SECCOMP_TYPES,
        ));
    }
    match (profile.type_.as_str(), profile.localhost_profile.as_deref()) {
        ("Localhost", None | Some("")) => errors.push(FieldError::required(
            format!("{path}.localhostProfile"),
            "must be set when seccomp type is Localhost",
        )),
        ("Localhost", _) | (_, None) => {}
        (_, Some(value)) => errors.push(FieldError::invalid(
            format!("{path}.localhostProfile"),
            value,
            "can only be set when seccomp type is Localhost",
        )),
    }
}

/// Upstream's checks on security settings: seccomp profiles, escalation
/// against privileged/CAP_SYS_ADMIN, hostPort under hostNetwork.
fn validate_security(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    validate_seccomp(
        errors,
        "spec.securityContext.seccompProfile",
        spec.security_context.as_ref().and_then(|c| c.seccomp_profile.as_ref()),
    );
    let host_network = spec.host_network.unwrap_or(false);
    for (list, i, container) in all_containers(spec) {
        let path = format!("{list}[{i}]");
        if host_network {
            for (p, port) in container.ports.iter().flatten().enumerate() {
                if let Some(host_port) = port.host_port.filter(|h| *h != port.container_port) {
                    errors.push(FieldError::invalid(
                        format!("{path}.ports[{p}].hostPort"),
                        host_port,
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
        let Some(context) = container.security_context.as_ref() else {
            continue;
        };
        validate_seccomp(
            errors,
            &format!("{path}.securityContext.seccompProfile"),
            context.seccomp_profile.as_ref(),
        );
        if context.allow_privilege_escalation == Some(false) {
            if context.privileged == Some(true) {
                errors.push(FieldError::invalid(
                    format!("{path}.securityContext"),
                    "",
                    "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                ));
            }
            let adds_sys_admin = context
                .capabilities
                .as_ref()
                .and_then(|c| c.add.as_ref())
                .is_some_and(|add| add.iter().any(|c| c == "CAP_SYS_ADMIN" || c == "SYS_ADMIN"));
            if adds_sys_admin {
                errors.push(FieldError::invalid(
                    format!("{path}.securityContext"),
                    "",
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                ));
            }
        }
    }
}

pub fn validate_spec(spec: &PodSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut volumes = HashSet::new();
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        let path = format!("spec.volumes[{i}].name");
        if volume.name.is_empty() {
            errors.push(FieldError::required(path, ""));
        } else {
            errors.extend(names::dns1123_label(&path, &volume.name));
            if !volumes.insert(volume.name.clone()) {
                errors.push(FieldError::duplicate(path, volume.name.as_str()));
            }
        }
    }
    if spec.containers.is_empty() {
        errors.push(FieldError::required("spec.containers", ""));
    }
    let mut container_names = HashSet::new();
    for (list, i, container) in all_containers(spec) {
        let path = format!("{list}[{i}]");
        validate_container(
            &mut errors,
            &path,
            container,
            list == "spec.initContainers",
            &volumes,
        );
        if !container.name.is_empty() && !container_names.insert(container.name.clone()) {
            errors.push(FieldError::duplicate(
                format!("{path}.name"),
                container.name.as_str(),
            ));
        }
    }
    validate_security(spec, &mut errors);
    if let Some(policy) = spec
        .restart_policy
        .as_deref()
        .filter(|p| !RESTART_POLICIES.contains(p))
    {
        errors.push(FieldError::not_supported(
            "spec.restartPolicy",
            policy,
            RESTART_POLICIES,
        ));
    }
    if let Some(policy) = spec
        .dns_policy
        .as_deref()
        .filter(|p| !DNS_POLICIES.contains(p))
    {
        errors.push(FieldError::not_supported(
            "spec.dnsPolicy",
            policy,
            DNS_POLICIES,
        ));
    }
    if let Some(deadline) = spec
        .active_deadline_seconds
        .filter(|d| *d <= 0 || *d > i64::from(i32::MAX))
    {
        errors.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            deadline,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(selector) = &spec.node_selector {
        errors.extend(names::labels("spec.nodeSelector", selector));
    }
    if let Some(hostname) = &spec.hostname {
        errors.extend(names::dns1123_label("spec.hostname", hostname));
    }
    if let Some(subdomain) = &spec.subdomain {
        errors.extend(names::dns1123_label("spec.subdomain", subdomain));
    }
    for (i, toleration) in spec.tolerations.iter().flatten().enumerate() {
        let path = format!("spec.tolerations[{i}]");
        match toleration.operator.as_deref() {
            None | Some("Equal") | Some("Exists") => {}
            Some(other) => errors.push(FieldError::not_supported(
                format!("{path}.operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if toleration.operator.as_deref() == Some("Exists")
            && toleration.value.as_deref().is_some_and(|v| !v.is_empty())
        {
            errors.push(FieldError::invalid(
                format!("{path}.operator"),
                toleration.value.clone().unwrap_or_default(),
                "value must be empty when `operator` is 'Exists'",
            ));
        }
        if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                errors.push(FieldError::not_supported(
                    format!("{path}.effect"),
                    effect,
                    &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                ));
            }
        }
    }
    for (i, gate) in spec.readiness_gates.iter().flatten().enumerate() {
        errors.extend(names::qualified_name(
            &format!("spec.readinessGates[{i}].conditionType"),
            &gate.condition_type,
        ));
    }
    errors
}

const UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Validates a spec update: only images, activeDeadlineSeconds, added
/// tolerations and a negative-to-1 grace period may change.
pub fn validate_spec_update(old: &PodSpec, new: &PodSpec) -> Vec<FieldError> {
    let mut errors = validate_spec(new);
    let mut masked = new.clone();
    for (masked_c, old_c) in masked.containers.iter_mut().zip(&old.containers) {
        masked_c.image.clone_from(&old_c.image);
    }
    if let (Some(masked_init), Some(old_init)) = (
        masked.init_containers.as_mut(),
        old.init_containers.as_ref(),
    ) {
        for (masked_c, old_c) in masked_init.iter_mut().zip(old_init) {
            masked_c.image.clone_from(&old_c.image);
        }
    }
    if let Some(new_deadline) = new.active_deadline_seconds {
        if old
            .active_deadline_seconds
            .is_some_and(|old_deadline| new_deadline > old_deadline)
        {
            errors.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                new_deadline,
                "must be less than or equal to previous value",
            ));
        }
    } else if old.active_deadline_seconds.is_some() {
        errors.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            Value::Null,
            "must not update from a positive integer to nil value",
        ));
    }
    masked.active_deadline_seconds = old.active_deadline_seconds;
    let old_tolerations = old.tolerations.clone().unwrap_or_default();
    let new_tolerations = new.tolerations.clone().unwrap_or_default();
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        masked.tolerations.clone_from(&old.tolerations);
    }
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && new.termination_grace_period_seconds == Some(1)
    {
        masked.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    if masked != *old {
        let detail = format!("{UPDATE_FORBIDDEN}\n{}", spec_diff(old, &masked));
        errors.push(FieldError::forbidden("spec", detail));
    }
    errors
}

/// A short diff of the spec fields that differ, in place of go-cmp's.
fn spec_diff(old: &PodSpec, new: &PodSpec) -> String {
    let old = serde_json::to_value(old).unwrap_or_default();
    let new = serde_json::to_value(new).unwrap_or_default();
    let mut lines = vec!["  core.PodSpec{".to_string()];
    let keys: std::collections::BTreeSet<&String> = old
        .as_object()
        .into_iter()
        .chain(new.as_object())
        .flat_map(|m| m.keys())
        .collect();
    for key in keys {
        let (a, b) = (&old[key.as_str()], &new[key.as_str()]);
        if a != b {
            lines.push(format!("-  \t{key}: {a},"));
            lines.push(format!("+  \t{key}: {b},"));
        }
    }
    lines.push("  }".to_string());
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn defaults_match_upstream() {
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "busybox", "ports": [{"containerPort": 80}],
             "livenessProbe": {"httpGet": {"port": 80}},
             "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}}},
            {"name": "d", "image": "busybox:1.36"}
        ]}}));
        apply_defaults(&mut p);
        let v = serde_json::to_value(&p).unwrap_or_default();
        let spec = &v["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["serviceAccountName"], "default");
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(
            c["resources"]["limits"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(v["status"]["qosClass"], "Burstable");
        assert_eq!(v["status"]["phase"], "Pending");
        assert_eq!(spec["tolerations"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn qos_classes() {
        let spec = |resources: Value| -> PodSpec {
            serde_json::from_value(json!({"containers": [{"name": "c", "resources": resources}]}))
                .unwrap_or_default()
        };
        assert_eq!(qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&spec(
                json!({"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"cpu": "100m", "memory": "100Mi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(
                json!({"requests": {"cpu": "100m", "memory": "200M"}, "limits": {"cpu": "500m", "memory": "1G"}})
            )),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(json!({"limits": {"cpu": "100m"}}))),
            "Burstable"
        );
    }

    fn messages(spec: Value) -> Vec<String> {
        let spec: PodSpec = serde_json::from_value(spec).unwrap_or_default();
        validate_spec(&spec)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn security_settings_are_validated_as_upstream() {
        assert_eq!(
            messages(json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]})),
            vec!["spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true"]
        );
        assert_eq!(
            messages(json!({"securityContext": {"seccompProfile": {"type": "Localhost"}}, "containers": [{"name": "c", "image": "i",
                "securityContext": {"seccompProfile": {"type": "Bogus"}, "privileged": true, "allowPrivilegeEscalation": false}}]})),
            vec![
                "spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost",
                "spec.containers[0].securityContext.seccompProfile.type: Unsupported value: \"Bogus\": supported values: \"RuntimeDefault\", \"Unconfined\", \"Localhost\"",
                "spec.containers[0].securityContext: Invalid value: \"\": cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ]
        );
        let mut pod: Pod = serde_json::from_value(json!({"spec": {"hostUsers": false, "containers": [{"name": "c", "securityContext": {"procMount": "Unmasked"}}]}})).unwrap_or_default();
        apply_defaults(&mut pod);
        let spec = pod.spec.unwrap_or_default();
        assert_eq!(spec.host_users, None, "dropped: UserNamespacesSupport is off in 1.32");
        assert_eq!(spec.containers[0].security_context.as_ref().and_then(|c| c.proc_mount.clone()), None);
    }

    #[test]
    fn validation_messages_match_upstream() {
        assert_eq!(
            messages(json!({"containers": []})),
            vec!["spec.containers: Required value"]
        );
        assert_eq!(
            messages(json!({"containers": [{"name": "c"}]})),
            vec!["spec.containers[0].image: Required value"]
        );
        assert_eq!(
            messages(
                json!({"initContainers": [{"name": "c", "image": "i"}], "containers": [{"name": "c", "image": "i"}]})
            ),
            vec!["spec.containers[0].name: Duplicate value: \"c\""]
        );
        assert_eq!(
            messages(json!({"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Sometimes"})),
            vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""]
        );
        assert_eq!(
            messages(json!({"initContainers": [{"name": "i", "image": "i", "readinessProbe": {"exec": {"command": ["true"]}}}],
                            "containers": [{"name": "c", "image": "i"}]})),
            vec!["spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"]
        );
        assert_eq!(
            messages(
                json!({"containers": [{"name": "c", "image": "i", "livenessProbe": {"successThreshold": 2, "exec": {"command": ["true"]}}}]})
            ),
            vec!["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"]
        );
        assert_eq!(
            messages(json!({"containers": [{"name": "c", "image": "i", "readinessProbe": {}}]})),
            vec!["spec.containers[0].readinessProbe: Required value: must specify a handler type"]
        );
        assert_eq!(
            messages(json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}]})),
            vec!["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]
        );
        assert_eq!(
            messages(json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]})),
            vec!["spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"]
        );
        assert_eq!(
            messages(
                json!({"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]})
            ),
            vec!["spec.containers[0].volumeMounts[0].name: Not found: \"data\""]
        );
    }

    #[test]
    fn only_some_spec_fields_may_change() {
        let old: PodSpec =
            serde_json::from_value(json!({"containers": [{"name": "c", "image": "a:1"}]}))
                .unwrap_or_default();
        let mut image = old.clone();
        image.containers[0].image = Some("a:2".into());
        assert!(validate_spec_update(&old, &image).is_empty());
        let mut command = old.clone();
        command.containers[0].command = Some(vec!["sh".into()]);
        let errors = validate_spec_update(&old, &command);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"));
    }
}
