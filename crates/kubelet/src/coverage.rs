//! Every field of a PodSpec, Container, Volume and VolumeMount, and what
//! the node does with it: honoured, refused (the pod is rejected, saying
//! why), warned (the pod runs, a Warning event names what is not
//! honoured) or a deliberate no-op (with the reason). A unit test checks
//! these lists against the vendored 1.32 OpenAPI, so a new field can never
//! be ignored by accident. Pure.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Honoured,
    /// The pod is rejected (Failed, `UnsupportedField`) with this reason.
    Refused(&'static str),
    /// The pod runs; a Warning event says this.
    Warned(&'static str),
    /// Deliberately nothing, for this reason.
    NoOp(&'static str),
}

use Handling::*;

const NO_PREEMPTION: Handling = NoOp("Skiff's scheduler never preempts and node-pressure eviction does not rank pods by priority");

pub const POD_SPEC: &[(&str, Handling)] = &[
    ("activeDeadlineSeconds", Honoured),
    // nodeAffinity is honoured; pod (anti-)affinity is checked in `review`.
    ("affinity", Honoured),
    ("automountServiceAccountToken", NoOp("no service-account token is mounted yet, whatever it says")),
    ("containers", Honoured),
    ("dnsConfig", Honoured),
    ("dnsPolicy", Honoured),
    ("enableServiceLinks", NoOp("Skiff proxies no Services, so there are no Service variables to inject")),
    ("ephemeralContainers", Honoured),
    ("hostAliases", Honoured),
    ("hostIPC", Honoured),
    ("hostNetwork", Honoured),
    ("hostPID", Honoured),
    ("hostUsers", NoOp("dropped by the API server: UserNamespacesSupport is off by default in 1.32")),
    ("hostname", Honoured),
    ("imagePullSecrets", Honoured),
    ("initContainers", Honoured),
    ("nodeName", Honoured),
    ("nodeSelector", Honoured),
    // linux is honoured; any other OS is refused in `review`.
    ("os", Honoured),
    ("overhead", Refused("pod overhead comes from RuntimeClasses, which Skiff does not serve")),
    ("preemptionPolicy", NO_PREEMPTION),
    ("priority", NO_PREEMPTION),
    ("priorityClassName", NO_PREEMPTION),
    ("readinessGates", Honoured),
    ("resourceClaims", Refused("dynamic resource allocation (ResourceClaims) is not served")),
    ("resources", NoOp("dropped by the API server: PodLevelResources is off by default in 1.32")),
    ("restartPolicy", Honoured),
    ("runtimeClassName", Refused("Skiff runs one OCI runtime (runc or crun) and serves no RuntimeClasses")),
    ("schedulerName", Honoured),
    ("schedulingGates", Honoured),
    ("securityContext", Honoured),
    ("serviceAccount", Honoured),
    ("serviceAccountName", Honoured),
    ("setHostnameAsFQDN", Honoured),
    ("shareProcessNamespace", Honoured),
    ("subdomain", Honoured),
    ("terminationGracePeriodSeconds", Honoured),
    ("tolerations", Honoured),
    ("topologySpreadConstraints", Warned("the scheduler does not spread pods by topology yet")),
    ("volumes", Honoured),
];

pub const CONTAINER: &[(&str, Handling)] = &[
    ("args", Honoured),
    ("command", Honoured),
    ("env", Honoured),
    ("envFrom", Honoured),
    ("image", Honoured),
    ("imagePullPolicy", Honoured),
    ("lifecycle", Honoured),
    ("livenessProbe", Honoured),
    ("name", Honoured),
    // hostPort is mapped; containerPort is informational, as upstream.
    ("ports", Honoured),
    ("readinessProbe", Honoured),
    ("resizePolicy", NoOp("dropped by the API server: InPlacePodVerticalScaling is off by default in 1.32")),
    ("resources", Honoured),
    ("restartPolicy", Honoured),
    ("securityContext", Honoured),
    ("startupProbe", Honoured),
    // The container's monitor holds its stdin (and terminal) for attach.
    ("stdin", Honoured),
    ("stdinOnce", Honoured),
    ("terminationMessagePath", Honoured),
    ("terminationMessagePolicy", Honoured),
    ("tty", Honoured),
    ("volumeDevices", Refused("raw block devices come from PersistentVolumeClaims, which Skiff does not serve")),
    ("volumeMounts", Honoured),
    ("workingDir", Honoured),
];

const NO_PLUGIN: Handling = Refused("the node has no such volume plugin: FailedMount names the type");

pub const VOLUME: &[(&str, Handling)] = &[
    ("awsElasticBlockStore", NO_PLUGIN),
    ("azureDisk", NO_PLUGIN),
    ("azureFile", NO_PLUGIN),
    ("cephfs", NO_PLUGIN),
    ("cinder", NO_PLUGIN),
    ("configMap", Honoured),
    ("csi", NO_PLUGIN),
    ("downwardAPI", Honoured),
    ("emptyDir", Honoured),
    ("ephemeral", NO_PLUGIN),
    ("fc", NO_PLUGIN),
    ("flexVolume", NO_PLUGIN),
    ("flocker", NO_PLUGIN),
    ("gcePersistentDisk", NO_PLUGIN),
    ("gitRepo", NO_PLUGIN),
    ("glusterfs", NO_PLUGIN),
    ("hostPath", Honoured),
    ("image", NO_PLUGIN),
    ("iscsi", NO_PLUGIN),
    ("name", Honoured),
    ("nfs", NO_PLUGIN),
    ("persistentVolumeClaim", Refused("Skiff serves no PersistentVolumeClaims: the scheduler keeps the pod Pending")),
    ("photonPersistentDisk", NO_PLUGIN),
    ("portworxVolume", NO_PLUGIN),
    ("projected", Honoured),
    ("quobyte", NO_PLUGIN),
    ("rbd", NO_PLUGIN),
    ("scaleIO", NO_PLUGIN),
    ("secret", Honoured),
    ("storageos", NO_PLUGIN),
    ("vsphereVolume", NO_PLUGIN),
];

pub const VOLUME_MOUNT: &[(&str, Handling)] = &[
    ("mountPath", Honoured),
    ("mountPropagation", Honoured),
    ("name", Honoured),
    ("readOnly", Honoured),
    ("recursiveReadOnly", Honoured),
    ("subPath", Honoured),
    ("subPathExpr", Honoured),
];

/// What the node makes of a pod's fields before running it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// Why the pod is rejected (the first refused field), if it is.
    pub refused: Option<String>,
    /// Warning event messages, one per field not honoured.
    pub warned: Vec<String>,
}

fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Number(_) => true,
    }
}

fn apply(review: &mut Review, list: &[(&str, Handling)], object: &Value, path: &str) {
    for (field, handling) in list {
        if !is_set(&object[*field]) {
            continue;
        }
        match handling {
            Refused(why) if review.refused.is_none() => {
                review.refused = Some(format!("{path}.{field} is not supported by Skiff: {why}"));
            }
            Warned(why) => review.warned.push(format!("{path}.{field} is not honoured: {why}; the pod runs without it")),
            _ => {}
        }
    }
}

pub fn review(pod: &Pod) -> Review {
    let mut review = Review::default();
    let Some(spec) = &pod.spec else {
        return review;
    };
    let spec_value = serde_json::to_value(spec).unwrap_or_default();
    apply(&mut review, POD_SPEC, &spec_value, "spec");
    let containers: Vec<(&str, &Container)> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("initContainers", c))
        .chain(spec.containers.iter().map(|c| ("containers", c)))
        .collect();
    for (list, container) in containers {
        let value = serde_json::to_value(container).unwrap_or_default();
        apply(&mut review, CONTAINER, &value, &format!("spec.{list}[{}]", container.name));
    }
    if let Some(os) = spec.os.as_ref().filter(|os| os.name != "linux") {
        review.refused.get_or_insert(format!("spec.os.name is {:?}: Skiff runs Linux containers", os.name));
    }
    let affinity = &spec_value["affinity"];
    for field in ["podAffinity", "podAntiAffinity"] {
        if is_set(&affinity[field]) {
            review.warned.push(format!(
                "spec.affinity.{field} is not honoured: the scheduler does not place pods by other pods' labels yet; the pod runs without it"
            ));
        }
    }
    review
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;

    /// The vendored OpenAPI of core/v1 in Kubernetes 1.32.
    fn openapi_fields(schema: &str) -> Result<BTreeSet<String>, Box<dyn std::error::Error>> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/openapi/api__v1.json");
        let document: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let properties = document["components"]["schemas"][format!("io.k8s.api.core.v1.{schema}")]["properties"]
            .as_object()
            .ok_or(format!("no {schema} in {path}"))?;
        Ok(properties.keys().cloned().collect())
    }

    #[test]
    fn every_field_of_the_1_32_api_is_accounted_for() -> Result<(), Box<dyn std::error::Error>> {
        for (schema, list) in [("PodSpec", POD_SPEC), ("Container", CONTAINER), ("Volume", VOLUME), ("VolumeMount", VOLUME_MOUNT)] {
            let api = openapi_fields(schema)?;
            let listed: BTreeSet<String> = list.iter().map(|(f, _)| f.to_string()).collect();
            let unaccounted: Vec<&String> = api.difference(&listed).collect();
            let stale: Vec<&String> = listed.difference(&api).collect();
            assert!(unaccounted.is_empty(), "{schema} fields in none of the lists (honour, refuse, warn or explain them): {unaccounted:?}");
            assert!(stale.is_empty(), "{schema} lists fields the API does not have: {stale:?}");
        }
        Ok(())
    }

    #[test]
    fn volume_sources_agree_with_the_volume_plugins() -> Result<(), serde_json::Error> {
        for (field, handling) in VOLUME.iter().filter(|(f, _)| *f != "name") {
            let volume: k8s_openapi::api::core::v1::Volume = serde_json::from_value(json!({"name": "v", *field: {}}))?;
            let refused = crate::volumes::unsupported(&volume).is_some();
            assert_eq!(refused, matches!(handling, Refused(_)), "{field}");
        }
        Ok(())
    }

    #[test]
    fn pods_are_reviewed_field_by_field() -> Result<(), serde_json::Error> {
        let pod = |spec: Value| serde_json::from_value::<Pod>(json!({"metadata": {"name": "p"}, "spec": spec}));
        let plain = pod(json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}], "priority": 0, "enableServiceLinks": true}))?;
        assert_eq!(review(&plain), Review::default());
        let runtime_class = pod(json!({"containers": [{"name": "c"}], "runtimeClassName": "gvisor"}))?;
        assert_eq!(
            review(&runtime_class).refused.as_deref(),
            Some("spec.runtimeClassName is not supported by Skiff: Skiff runs one OCI runtime (runc or crun) and serves no RuntimeClasses")
        );
        let windows = pod(json!({"containers": [{"name": "c"}], "os": {"name": "windows"}}))?;
        assert_eq!(review(&windows).refused.as_deref(), Some("spec.os.name is \"windows\": Skiff runs Linux containers"));
        let linux = pod(json!({"containers": [{"name": "c"}], "os": {"name": "linux"}}))?;
        assert_eq!(review(&linux), Review::default());
        let interactive = pod(json!({"containers": [{"name": "shell", "stdin": true, "tty": true}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
            "affinity": {"nodeAffinity": {}, "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "h"}]}}}))?;
        let warned = review(&interactive);
        assert_eq!(warned.refused, None);
        assert_eq!(
            warned.warned,
            vec![
                "spec.topologySpreadConstraints is not honoured: the scheduler does not spread pods by topology yet; the pod runs without it".to_string(),
                "spec.affinity.podAntiAffinity is not honoured: the scheduler does not place pods by other pods' labels yet; the pod runs without it".into(),
            ]
        );
        Ok(())
    }
}
