//! Pods: upstream defaulting (pkg/apis/core/v1/defaults.go plus the admission
//! plugins a default cluster runs), QoS class, and validation with upstream's
//! field paths and messages (pkg/apis/core/validation).
//! Defaulting is in [`defaults`], validation in [`validation`].

use k8s_openapi::api::core::v1::{Container, PodSpec};

mod defaults;
pub mod ephemeral;
mod references;
pub mod service_account;
mod validation;

pub use defaults::{apply_defaults, default_pull_policy, qos_class};
pub use references::references;
pub use validation::{check_quantities, validate_spec, validate_spec_update};

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use k8s_openapi::api::core::v1::Pod;
    use serde_json::Value;

    use super::*;

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn mirror_pods_name_no_service_account() {
        let mut p = pod(json!({"metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}));
        apply_defaults(&mut p);
        let spec = p.spec.unwrap_or_default();
        assert_eq!((spec.service_account_name, spec.service_account), (None, None));
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
