//! Pod validation with upstream's field paths and messages
//! (pkg/apis/core/validation).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, ResourceRequirements, SeccompProfile};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::names;
use crate::quantity::Quantity;
use crate::status::FieldError;

use super::all_containers;

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

pub(super) fn validate_container(
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
    value_diff(
        "core.PodSpec",
        &serde_json::to_value(old).unwrap_or_default(),
        &serde_json::to_value(new).unwrap_or_default(),
    )
}

/// The top-level fields of `type_name` that differ, in go-cmp's shape.
pub(super) fn value_diff(type_name: &str, old: &Value, new: &Value) -> String {
    let mut lines = vec![format!("  {type_name}{{")];
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
