//! The ServiceAccount admission's change to a new pod (upstream's
//! plugin/pkg/admission/serviceaccount): the `kube-api-access-<suffix>`
//! projected volume (a bound token, the cluster CA, the namespace) mounted
//! read-only at [`MOUNT_PATH`] in every container that does not mount
//! something there already.

use serde_json::{json, Value};

pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// upstream's admission asks for 3607 s: one hour, plus seven seconds that
/// mark the token as one the kubelet may extend.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const VOLUME_PREFIX: &str = "kube-api-access-";

/// Whether the pod gets a token: the pod's `automountServiceAccountToken`,
/// else the account's, else yes.
pub fn automount(pod: &Value, account: &Value) -> bool {
    pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Adds the token volume (named with `suffix`, five random characters) and
/// its mounts; a pod that already has one keeps it.
pub fn add_token_volume(pod: &mut Value, suffix: &str) {
    let spec = &mut pod["spec"];
    let existing = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|name| name.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let name = existing.clone().unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    if existing.is_none() {
        match spec["volumes"].as_array_mut() {
            Some(volumes) => volumes.push(token_volume(&name)),
            None => spec["volumes"] = json!([token_volume(&name)]),
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in spec[list].as_array_mut().into_iter().flatten() {
            let mounted = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(MOUNT_PATH));
            if mounted {
                continue;
            }
            let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
            match container["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount),
                None => container["volumeMounts"] = json!([mount]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_mounts_the_token_unless_it_mounts_that_path() {
        let mut pod = json!({"spec": {
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]}],
            "initContainers": [{"name": "i"}],
            "volumes": [{"name": "own", "emptyDir": {}}],
        }});
        add_token_volume(&mut pod, "abcde");
        assert_eq!(pod["spec"]["volumes"][1]["name"], "kube-api-access-abcde");
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"][0]["name"], "kube-api-access-abcde");
        assert_eq!(pod["spec"]["containers"][1]["volumeMounts"].as_array().map(Vec::len), Some(1));
        assert_eq!(pod["spec"]["initContainers"][0]["volumeMounts"][0]["readOnly"], true);
        let again = pod.clone();
        add_token_volume(&mut pod, "zzzzz");
        assert_eq!(pod, again);
    }

    #[test]
    fn the_pod_overrides_the_account_on_automounting() {
        let (yes, no) = (json!({"automountServiceAccountToken": true}), json!({"automountServiceAccountToken": false}));
        assert!(automount(&json!({"spec": {}}), &json!({})));
        assert!(!automount(&json!({"spec": {}}), &no));
        assert!(automount(&json!({"spec": yes}), &no));
        assert!(!automount(&json!({"spec": no}), &yes));
    }
}
