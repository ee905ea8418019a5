//! What a container runs: the command line from `command`/`args` against the
//! image's ENTRYPOINT/CMD, and its environment from the image, `env` with
//! `envFrom` and the downward API (`fieldRef`, `resourceFieldRef`),
//! ConfigMap and Secret keys, with `$(VAR)`
//! expansion and `$$` escaping as upstream. Pure functions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;
use skiff_api::quantity::Quantity;

use crate::sources::Objects;

/// Upstream's `$(VAR)` expansion: known variables are replaced, unknown
/// references are kept as written, `$$` becomes `$`.
pub fn expand(input: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars(name) {
                            Some(value) => out.push_str(&value),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// The process arguments, as upstream combines them with the image config.
pub fn command_line(
    container: &Container,
    image_config: &Value,
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let entrypoint = strings(&image_config["config"]["Entrypoint"]);
    let cmd = strings(&image_config["config"]["Cmd"]);
    let lookup = |name: &str| env.get(name).cloned();
    let expand_all = |list: &[String]| list.iter().map(|s| expand(s, &lookup)).collect::<Vec<_>>();
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    match (command.is_empty(), args.is_empty()) {
        (false, _) => [expand_all(&command), expand_all(&args)].concat(),
        (true, false) => [entrypoint, expand_all(&args)].concat(),
        (true, true) => [entrypoint, cmd].concat(),
    }
}

/// Node-side facts the downward API exposes.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub node_name: String,
    pub host_ip: String,
    pub pod_ip: String,
    /// Allocatable cpu (millicores) and memory (bytes): what limits default to.
    pub allocatable_milli_cpu: i128,
    pub allocatable_memory: i128,
}

/// A `fieldRef` value, or why it cannot be given.
pub fn field_value(pod: &Pod, path: &str, facts: &NodeFacts) -> Option<String> {
    let meta = &pod.metadata;
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    if let Some(key) = subscript("metadata.labels['") {
        return Some(
            meta.labels
                .as_ref()
                .and_then(|l| l.get(&key))
                .cloned()
                .unwrap_or_default(),
        );
    }
    if let Some(key) = subscript("metadata.annotations['") {
        return Some(
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(&key))
                .cloned()
                .unwrap_or_default(),
        );
    }
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| facts.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        _ => return None,
    })
}

/// A `resourceFieldRef` value: the request or limit divided by `divisor`
/// (rounded up), with node allocatable standing in for a missing limit.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    facts: &NodeFacts,
) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let resources = container.resources.as_ref();
    let list = if kind == "limits" {
        resources.and_then(|r| r.limits.as_ref())
    } else {
        resources.and_then(|r| r.requests.as_ref())
    };
    let milli = list
        .and_then(|l| l.get(name))
        .and_then(|q| Quantity::parse(&q.0))
        .map(|q| q.milli_value());
    let milli = match (milli, kind, name) {
        (Some(v), _, _) => v,
        (None, "limits", "cpu") => facts.allocatable_milli_cpu,
        (None, "limits", "memory") => facts.allocatable_memory * 1000,
        (None, _, _) => 0,
    };
    let divisor = Quantity::parse(divisor.filter(|d| !d.is_empty()).unwrap_or("1"))
        .map(|q| q.milli_value())
        .filter(|d| *d > 0)?;
    Some(((milli + divisor - 1) / divisor).to_string())
}

/// The Docker-links-style variables of Services with a cluster IP
/// (upstream's `envvars.FromServices`): `default/kubernetes` always, the
/// pod's own namespace's as given (its entry wins over `default`'s).
pub fn service_variables(services: &[std::sync::Arc<k8s_openapi::api::core::v1::Service>], namespace: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut ordered: Vec<_> = services.iter().collect();
    // The pod's own namespace last, so its `kubernetes` Service (if any) wins.
    ordered.sort_by_key(|s| s.metadata.namespace.as_deref() == Some(namespace));
    for service in ordered {
        let Some(spec) = &service.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = service.metadata.name.as_deref().unwrap_or("").to_uppercase().replace('-', "_");
        env.insert(format!("{name}_SERVICE_HOST"), ip.to_string());
        let ports = spec.ports.as_deref().unwrap_or_default();
        for (index, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let number = port.port;
            let url = format!("{}://{ip}:{number}", protocol.to_lowercase());
            if index == 0 {
                env.insert(format!("{name}_SERVICE_PORT"), number.to_string());
                env.insert(format!("{name}_PORT"), url.clone());
            }
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                env.insert(format!("{name}_SERVICE_PORT_{}", port_name.to_uppercase().replace('-', "_")), number.to_string());
            }
            let prefix = format!("{name}_PORT_{number}_{}", protocol.to_uppercase());
            env.insert(format!("{prefix}_PROTO"), protocol.to_lowercase());
            env.insert(format!("{prefix}_PORT"), number.to_string());
            env.insert(format!("{prefix}_ADDR"), ip.to_string());
            env.insert(prefix, url);
        }
    }
    env
}

/// A container's environment and what was skipped on the way.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Environment {
    pub vars: BTreeMap<String, String>,
    /// `InvalidEnvironmentVariableNames` event messages: `envFrom` keys
    /// that are not valid variable names.
    pub skipped: Vec<String>,
}

/// The environment: image `Env`, then `HOSTNAME`, then `envFrom` (later
/// sources win), then the container's `env` in order (each may use the
/// ones before it). A missing ConfigMap, Secret or key fails unless
/// optional, with upstream's message (`CreateContainerConfigError`).
pub fn environment(
    pod: &Pod,
    container: &Container,
    image_config: &Value,
    hostname: &str,
    facts: &NodeFacts,
    objects: &dyn Objects,
) -> Result<Environment, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut skipped = Vec::new();
    for entry in image_config["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Some((k, v)) = entry.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    env.insert("HOSTNAME".into(), hostname.to_string());
    env.extend(service_variables(objects.services(), namespace));
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (entries, what, name): (Vec<(String, String)>, &str, &str) = if let Some(source) = &from.config_map_ref {
            let Some(config_map) = objects.config_map(&source.name) else {
                if source.optional.unwrap_or(false) {
                    continue;
                }
                return Err(format!("configmap {:?} not found", source.name));
            };
            let data = config_map.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
            (data, "configMap", &source.name)
        } else if let Some(source) = &from.secret_ref {
            let Some(secret) = objects.secret(&source.name) else {
                if source.optional.unwrap_or(false) {
                    continue;
                }
                return Err(format!("secret {:?} not found", source.name));
            };
            let data = secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            (data, "secret", &source.name)
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in entries {
            let key = format!("{prefix}{key}");
            if skiff_api::names::env_var_name("", &key).is_empty() {
                env.insert(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            skipped.push(format!(
                "Keys [{}] from the EnvFrom {what} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(source) = &var.value_from {
            if let Some(field) = &source.field_ref {
                field_value(pod, &field.field_path, facts).unwrap_or_default()
            } else if let Some(resource) = &source.resource_field_ref {
                let target = pod
                    .spec
                    .iter()
                    .flat_map(|s| {
                        s.containers
                            .iter()
                            .chain(s.init_containers.iter().flatten())
                    })
                    .find(|c| {
                        resource
                            .container_name
                            .as_deref()
                            .is_none_or(|n| n.is_empty() || n == c.name)
                    })
                    .unwrap_or(container);
                resource_value(
                    target,
                    &resource.resource,
                    resource.divisor.as_ref().map(|d| d.0.as_str()),
                    facts,
                )
                .unwrap_or_default()
            } else if let Some(key) = &source.config_map_key_ref {
                let optional = key.optional.unwrap_or(false);
                let Some(config_map) = objects.config_map(&key.name) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("configmap {:?} not found", key.name));
                };
                match config_map.data.as_ref().and_then(|d| d.get(&key.key)) {
                    Some(value) => value.clone(),
                    None if optional => continue,
                    None => {
                        return Err(format!("couldn't find key {} in ConfigMap {namespace}/{}", key.key, key.name))
                    }
                }
            } else if let Some(key) = &source.secret_key_ref {
                let optional = key.optional.unwrap_or(false);
                let Some(secret) = objects.secret(&key.name) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("secret {:?} not found", key.name));
                };
                match secret.data.as_ref().and_then(|d| d.get(&key.key)) {
                    Some(value) => String::from_utf8_lossy(&value.0).into_owned(),
                    None if optional => continue,
                    None => return Err(format!("couldn't find key {} in Secret {namespace}/{}", key.key, key.name)),
                }
            } else {
                String::new()
            }
        } else {
            let known = env.clone();
            expand(var.value.as_deref().unwrap_or(""), &|name| {
                known.get(name).cloned()
            })
        };
        env.insert(var.name.clone(), value);
    }
    Ok(Environment { vars: env, skipped })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "FOO" => Some("foo-value".into()),
            "BAR" => Some("bar-value".into()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_upstream() {
        assert_eq!(expand("$(FOO);;$(BAR)", &vars), "foo-value;;bar-value");
        assert_eq!(expand("$$(FOO)", &vars), "$(FOO)");
        assert_eq!(expand("$(MISSING) stays", &vars), "$(MISSING) stays");
        assert_eq!(expand("a $ b $(FOO", &vars), "a $ b $(FOO");
    }

    #[test]
    fn command_and_args_against_the_image() {
        let image = json!({"config": {"Entrypoint": ["/agnhost"], "Cmd": ["pause"]}});
        let env = BTreeMap::from([("TEST_VAR".to_string(), "test-value".to_string())]);
        let container =
            |value: Value| -> Container { serde_json::from_value(value).unwrap_or_default() };
        assert_eq!(
            command_line(&container(json!({"name": "c"})), &image, &env),
            ["/agnhost", "pause"]
        );
        assert_eq!(
            command_line(
                &container(json!({"name": "c", "args": ["a"]})),
                &image,
                &env
            ),
            ["/agnhost", "a"]
        );
        assert_eq!(
            command_line(
                &container(json!({"name": "c", "command": ["/x"]})),
                &image,
                &env
            ),
            ["/x"]
        );
        let shell = container(
            json!({"name": "c", "command": ["sh", "-c", "TEST_VAR=wrong echo \"$(TEST_VAR)\""]}),
        );
        assert_eq!(
            command_line(&shell, &image, &env)[2],
            "TEST_VAR=wrong echo \"test-value\""
        );
    }

    #[test]
    fn downward_api_values() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "default", "containers": [{"name": "c",
              "resources": {"requests": {"cpu": "250m", "memory": "32Mi"}, "limits": {"cpu": "1250m", "memory": "64Mi"}},
              "env": [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y"},
                      {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                      {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                      {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                      {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                      {"name": "CPU_REQUEST", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
                      {"name": "MEMORY_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                      {"name": "MEMORY_REQUEST", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}}]}]}}))
        .unwrap_or_default();
        let container = pod
            .spec
            .as_ref()
            .map(|s| s.containers[0].clone())
            .unwrap_or_default();
        let facts = NodeFacts {
            pod_ip: "10.42.0.5".into(),
            ..Default::default()
        };
        let env = environment(
            &pod,
            &container,
            &json!({"config": {"Env": ["PATH=/bin"]}}),
            "p",
            &facts,
            &crate::sources::Snapshot::default(),
        )
        .unwrap_or_default()
        .vars;
        let get = |k: &str| env.get(k).cloned().unwrap_or_default();
        assert_eq!(
            (
                get("B"),
                get("NAME"),
                get("APP"),
                get("IP"),
                get("HOSTNAME"),
                get("PATH")
            ),
            (
                "x-y".into(),
                "p".into(),
                "web".into(),
                "10.42.0.5".into(),
                "p".into(),
                "/bin".into()
            )
        );
        assert_eq!(
            (get("CPU_LIMIT"), get("CPU_REQUEST")),
            ("2".into(), "1".into())
        );
        assert_eq!(
            (get("MEMORY_LIMIT"), get("MEMORY_REQUEST")),
            ("67108864".into(), "33554432".into())
        );
    }

    #[test]
    fn config_maps_and_secrets_feed_the_environment_as_upstream() -> Result<(), serde_json::Error> {
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let mut objects = crate::sources::Snapshot::default();
        objects.config_maps.insert(
            "settings".into(),
            serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": "settings"},
                "data": {"COLOR": "blue", "SIZE": "L", "bad key": "x", "1ST": "y"}}))?,
        );
        objects.secrets.insert(
            "creds".into(),
            serde_json::from_value::<Secret>(json!({"metadata": {"name": "creds"}, "data": {"password": "aHVudGVyMg=="}}))?,
        );
        let pod = |env: Value| -> Result<(Pod, Container), serde_json::Error> {
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"},
                "spec": {"containers": [{"name": "c"}]}}))?;
            let mut container: Container = serde_json::from_value(json!({"name": "c"}))?;
            if let Some(from) = env.get("envFrom") {
                container.env_from = serde_json::from_value(from.clone())?;
            }
            if let Some(vars) = env.get("env") {
                container.env = serde_json::from_value(vars.clone())?;
            }
            Ok((pod, container))
        };
        let run = |spec: Value| -> Result<Result<Environment, String>, serde_json::Error> {
            let (pod, container) = pod(spec)?;
            Ok(environment(&pod, &container, &json!({}), "p", &NodeFacts::default(), &objects))
        };
        let all = run(json!({"envFrom": [{"configMapRef": {"name": "settings"}}, {"prefix": "S_", "secretRef": {"name": "creds"}}],
            "env": [{"name": "SIZE", "value": "XL"}, {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "SHADE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "COLOR"}}},
                    {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}}]}))?
        .map_err(|e| serde_json::Error::io(std::io::Error::other(e)))?;
        let get = |k: &str| all.vars.get(k).cloned();
        assert_eq!(get("COLOR").as_deref(), Some("blue"));
        assert_eq!(get("SIZE").as_deref(), Some("XL"), "env overrides envFrom");
        assert_eq!(get("S_password").as_deref(), Some("hunter2"));
        assert_eq!(get("PASS").as_deref(), Some("hunter2"));
        assert_eq!(get("SHADE").as_deref(), Some("blue"));
        assert_eq!(get("GONE"), None, "an optional missing source sets nothing");
        assert_eq!(
            all.skipped,
            vec!["Keys [1ST, bad key] from the EnvFrom configMap shop/settings were skipped since they are considered invalid environment variable names.".to_string()]
        );
        let errors = [
            (json!({"envFrom": [{"configMapRef": {"name": "absent"}}]}), "configmap \"absent\" not found"),
            (json!({"envFrom": [{"secretRef": {"name": "absent"}}]}), "secret \"absent\" not found"),
            (json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}}]}), "couldn't find key nope in ConfigMap shop/settings"),
            (json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}]}), "couldn't find key nope in Secret shop/creds"),
            (json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}), "secret \"absent\" not found"),
        ];
        for (spec, want) in errors {
            assert_eq!(run(spec.clone())?, Err(want.to_string()), "{spec}");
        }
        let optional_key = run(json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope", "optional": true}}}]}))?;
        assert!(optional_key.is_ok_and(|e| !e.vars.contains_key("X")));
        Ok(())
    }

    #[test]
    fn services_become_docker_link_variables() -> Result<(), serde_json::Error> {
        let service = |namespace: &str, name: &str, ip: &str| -> Result<std::sync::Arc<k8s_openapi::api::core::v1::Service>, serde_json::Error> {
            Ok(std::sync::Arc::new(serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
            }))?))
        };
        let services = [service("default", "kubernetes", "10.43.0.1")?, service("web", "my-db", "10.43.0.9")?, service("web", "headless", "None")?];
        let env = service_variables(&services, "web");
        let expected = [
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("MY_DB_SERVICE_HOST", "10.43.0.9"),
            ("MY_DB_PORT_53_UDP", "udp://10.43.0.9:53"),
            ("MY_DB_PORT_53_UDP_ADDR", "10.43.0.9"),
        ];
        for (key, value) in expected {
            assert_eq!(env.get(key).map(String::as_str), Some(value), "{key}");
        }
        assert!(!env.keys().any(|k| k.starts_with("HEADLESS_")));
        Ok(())
    }
}
