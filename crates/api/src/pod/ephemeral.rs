//! Ephemeral containers (`kubectl debug`): added to a running pod only
//! through the `pods/ephemeralcontainers` subresource, never removed or
//! changed, with a short list of the container fields they may set
//! (upstream's `validateEphemeralContainers` and
//! `ValidatePodEphemeralContainersUpdate`).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, PodSpec};

use super::validation::validate_container;
use crate::status::FieldError;

const FORBIDDEN: &str = "cannot be set for an Ephemeral Container";

/// The container an ephemeral container describes, for the checks and
/// defaults they share (`EphemeralContainerCommon` is a `Container`).
pub fn as_container(ephemeral: &EphemeralContainer) -> Container {
    let mut value = serde_json::to_value(ephemeral).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("targetContainerName");
    }
    serde_json::from_value(value).unwrap_or_default()
}

/// Back from [`as_container`], keeping `target`.
pub fn from_container(container: &Container, target: Option<String>) -> EphemeralContainer {
    let mut ephemeral: EphemeralContainer =
        serde_json::from_value(serde_json::to_value(container).unwrap_or_default()).unwrap_or_default();
    ephemeral.target_container_name = target;
    ephemeral
}

/// A pod may not be created with ephemeral containers.
pub fn validate_on_create(spec: &PodSpec) -> Vec<FieldError> {
    if spec.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        return vec![FieldError::forbidden("spec.ephemeralContainers", "cannot be set on create")];
    }
    Vec::new()
}

/// Each ephemeral container: the common container checks, a name unique
/// across all containers, a target that is a regular or init container,
/// and none of the fields only regular containers may set.
pub fn validate(spec: &PodSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let volumes: HashSet<String> = spec.volumes.iter().flatten().map(|v| v.name.clone()).collect();
    let others: HashSet<&str> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    let mut names: HashSet<&str> = others.clone();
    for (i, ephemeral) in spec.ephemeral_containers.iter().flatten().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        let mut container = as_container(ephemeral);
        errors.extend(forbidden_fields(&path, &container));
        // Checked above with upstream's message; not again as a container.
        container.ports = None;
        container.resources = None;
        container.resize_policy = None;
        container.restart_policy = None;
        container.liveness_probe = None;
        container.readiness_probe = None;
        container.startup_probe = None;
        container.lifecycle = None;
        validate_container(&mut errors, &path, &container, false, &volumes);
        if !ephemeral.name.is_empty() && !names.insert(ephemeral.name.as_str()) {
            errors.push(FieldError::duplicate(format!("{path}.name"), ephemeral.name.as_str()));
        }
        if let Some(target) = ephemeral.target_container_name.as_deref().filter(|t| !t.is_empty()) {
            if !others.contains(target) {
                errors.push(FieldError::not_found(format!("{path}.targetContainerName"), target));
            }
        }
    }
    errors
}

/// The fields outside upstream's allow list, in the struct's order.
fn forbidden_fields(path: &str, container: &Container) -> Vec<FieldError> {
    let resources_set = container.resources.as_ref().is_some_and(|r| {
        r.limits.as_ref().is_some_and(|l| !l.is_empty())
            || r.requests.as_ref().is_some_and(|l| !l.is_empty())
            || r.claims.as_ref().is_some_and(|l| !l.is_empty())
    });
    let set = [
        ("ports", container.ports.as_ref().is_some_and(|p| !p.is_empty())),
        ("resources", resources_set),
        ("resizePolicy", container.resize_policy.as_ref().is_some_and(|p| !p.is_empty())),
        ("restartPolicy", container.restart_policy.is_some()),
        ("livenessProbe", container.liveness_probe.is_some()),
        ("readinessProbe", container.readiness_probe.is_some()),
        ("startupProbe", container.startup_probe.is_some()),
        ("lifecycle", container.lifecycle.is_some()),
    ];
    let mut errors: Vec<FieldError> = set
        .iter()
        .filter(|(_, set)| *set)
        .map(|(field, _)| FieldError::forbidden(format!("{path}.{field}"), FORBIDDEN))
        .collect();
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        for (field, value) in [("subPath", &mount.sub_path), ("subPathExpr", &mount.sub_path_expr)] {
            if value.as_deref().is_some_and(|v| !v.is_empty()) {
                errors.push(FieldError::forbidden(format!("{path}.volumeMounts[{i}].{field}"), FORBIDDEN));
            }
        }
    }
    errors
}

/// An update through `pods/ephemeralcontainers`: the new list is valid,
/// and every existing entry is still there, unchanged.
pub fn validate_update(old: &PodSpec, new: &PodSpec) -> Vec<FieldError> {
    let mut errors = validate(new);
    let new_list = new.ephemeral_containers.as_deref().unwrap_or_default();
    for existing in old.ephemeral_containers.iter().flatten() {
        match new_list.iter().find(|e| e.name == existing.name) {
            None => errors.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {:?} may not be removed\n", existing.name),
            )),
            Some(changed) if changed != existing => errors.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!(
                    "existing ephemeral containers {:?} may not be changed\n{}",
                    existing.name,
                    super::validation::value_diff(
                        "core.EphemeralContainer",
                        &serde_json::to_value(existing).unwrap_or_default(),
                        &serde_json::to_value(changed).unwrap_or_default(),
                    )
                ),
            )),
            Some(_) => {}
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("spec: {e}"))
    }

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn what_an_ephemeral_container_may_set() {
        let base = json!({"containers": [{"name": "app", "image": "i"}], "volumes": [{"name": "v", "emptyDir": {}}]});
        let with = |ephemeral: serde_json::Value| {
            let mut value = base.clone();
            value["ephemeralContainers"] = ephemeral;
            spec(value)
        };
        // What kubectl debug sends: fine.
        let debug = with(json!([{"name": "debugger-abcde", "image": "busybox", "stdin": true, "tty": true,
            "targetContainerName": "app", "terminationMessagePolicy": "File", "resources": {}}]));
        assert_eq!(messages(&validate(&debug)), Vec::<String>::new());
        let table = [
            (json!([{"name": "d", "image": "i", "ports": [{"containerPort": 80}]}]),
             vec!["spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container"]),
            (json!([{"name": "d", "image": "i", "readinessProbe": {"exec": {"command": ["true"]}}, "lifecycle": {}}]),
             vec!["spec.ephemeralContainers[0].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
                  "spec.ephemeralContainers[0].lifecycle: Forbidden: cannot be set for an Ephemeral Container"]),
            (json!([{"name": "d", "image": "i", "resources": {"limits": {"cpu": "1"}}}]),
             vec!["spec.ephemeralContainers[0].resources: Forbidden: cannot be set for an Ephemeral Container"]),
            (json!([{"name": "d", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "x"}]}]),
             vec!["spec.ephemeralContainers[0].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container"]),
            (json!([{"name": "app", "image": "i"}]),
             vec!["spec.ephemeralContainers[0].name: Duplicate value: \"app\""]),
            (json!([{"name": "d", "image": "i", "targetContainerName": "nope"}]),
             vec!["spec.ephemeralContainers[0].targetContainerName: Not found: \"nope\""]),
            (json!([{"name": "d"}]),
             vec!["spec.ephemeralContainers[0].image: Required value"]),
        ];
        for (ephemeral, expected) in table {
            assert_eq!(messages(&validate(&with(ephemeral.clone()))), expected, "{ephemeral}");
        }
    }

    #[test]
    fn existing_ephemeral_containers_stay_as_they_are() {
        let old = spec(json!({"containers": [{"name": "app", "image": "i"}],
            "ephemeralContainers": [{"name": "d", "image": "i"}]}));
        let added = spec(json!({"containers": [{"name": "app", "image": "i"}],
            "ephemeralContainers": [{"name": "d", "image": "i"}, {"name": "e", "image": "i"}]}));
        assert!(validate_update(&old, &added).is_empty());
        let removed = spec(json!({"containers": [{"name": "app", "image": "i"}], "ephemeralContainers": []}));
        assert_eq!(
            messages(&validate_update(&old, &removed)),
            vec!["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"d\" may not be removed\n"]
        );
        let changed = spec(json!({"containers": [{"name": "app", "image": "i"}],
            "ephemeralContainers": [{"name": "d", "image": "j"}]}));
        let errors = messages(&validate_update(&old, &changed));
        assert!(errors[0].starts_with("spec.ephemeralContainers: Forbidden: existing ephemeral containers \"d\" may not be changed\n"), "{errors:?}");
        let created = validate_on_create(&old);
        assert_eq!(messages(&created), vec!["spec.ephemeralContainers: Forbidden: cannot be set on create"]);
    }
}
