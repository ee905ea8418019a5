//! Where and how to pull: k3s's `registries.yaml` (mirrors with endpoints,
//! per-registry credentials and TLS settings) and credentials from
//! `kubernetes.io/dockerconfigjson` pull secrets. Pure: resolves one image
//! reference into the ordered list of places to try.

use std::collections::BTreeMap;

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use serde::Deserialize;

use super::store::is_local_registry;

/// `mirrors.<registry>` of registries.yaml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

/// Credentials in registries.yaml or a docker config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Auth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// `base64(username:password)`, as docker configs store it.
    #[serde(default)]
    pub auth: String,
}

impl Auth {
    fn registry_auth(&self) -> Option<RegistryAuth> {
        if !self.username.is_empty() {
            return Some(RegistryAuth::Basic(
                self.username.clone(),
                self.password.clone(),
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&self.auth)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(RegistryAuth::Basic(user.to_string(), password.to_string()))
    }
}

/// TLS settings of one registry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Tls {
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `configs.<host>` of registries.yaml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct HostConfig {
    pub auth: Option<Auth>,
    pub tls: Option<Tls>,
}

/// k3s's registries.yaml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

impl RegistriesConfig {
    pub fn parse(yaml: &str) -> Result<Self, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }
}

/// Credentials from pull secrets, by registry host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials(pub BTreeMap<String, Auth>);

/// Docker Hub's names in docker configs.
fn normalize_host(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

impl Credentials {
    /// Adds the `auths` of a `.dockerconfigjson` document.
    pub fn add_docker_config(&mut self, json: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct DockerConfig {
            #[serde(default)]
            auths: BTreeMap<String, Auth>,
        }
        let config: DockerConfig = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        for (key, auth) in config.auths {
            self.0.insert(normalize_host(&key), auth);
        }
        Ok(())
    }
}

/// One place to pull an image from.
#[derive(Debug, Clone)]
pub struct PullSource {
    /// The reference to fetch (its registry may be a mirror).
    pub reference: Reference,
    pub plain_http: bool,
    pub accept_invalid_certs: bool,
    pub auth: RegistryAuth,
}

/// Where to try `reference`, in order: its mirrors' endpoints (the
/// registry's own entry, else `*`), then the registry itself.
pub fn sources(
    reference: &Reference,
    config: &RegistriesConfig,
    credentials: &Credentials,
) -> Vec<PullSource> {
    let registry = reference.resolve_registry().to_string();
    let canonical = normalize_host(reference.registry());
    let mirror = config
        .mirrors
        .get(&canonical)
        .or_else(|| config.mirrors.get(&registry))
        .or_else(|| config.mirrors.get("*"));
    let mut endpoints: Vec<(String, Option<bool>)> = mirror
        .into_iter()
        .flat_map(|m| m.endpoint.iter())
        .map(|endpoint| {
            let plain = endpoint.starts_with("http://");
            let host = endpoint
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            (
                host.split('/').next().unwrap_or(host).to_string(),
                Some(plain),
            )
        })
        .collect();
    endpoints.push((registry.clone(), None));
    endpoints.dedup_by(|a, b| a.0 == b.0);
    endpoints
        .into_iter()
        .map(|(host, scheme_plain)| {
            let host_config = config
                .configs
                .get(&host)
                .or_else(|| config.configs.get(&canonical))
                .cloned()
                .unwrap_or_default();
            let auth = host_config
                .auth
                .as_ref()
                .and_then(Auth::registry_auth)
                .or_else(|| {
                    credentials
                        .0
                        .get(&normalize_host(&host))
                        .and_then(Auth::registry_auth)
                })
                .or_else(|| credentials.0.get(&canonical).and_then(Auth::registry_auth))
                .unwrap_or(RegistryAuth::Anonymous);
            let target = if host == registry {
                reference.clone()
            } else {
                match (reference.tag(), reference.digest()) {
                    (_, Some(digest)) => Reference::with_digest(
                        host.clone(),
                        reference.repository().to_string(),
                        digest.to_string(),
                    ),
                    (Some(tag), None) => Reference::with_tag(
                        host.clone(),
                        reference.repository().to_string(),
                        tag.to_string(),
                    ),
                    (None, None) => Reference::with_tag(
                        host.clone(),
                        reference.repository().to_string(),
                        "latest".to_string(),
                    ),
                }
            };
            PullSource {
                reference: target,
                plain_http: scheme_plain.unwrap_or_else(|| is_local_registry(&host)),
                accept_invalid_certs: host_config.tls.is_some_and(|t| t.insecure_skip_verify),
                auth,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> Reference {
        name.parse()
            .unwrap_or_else(|_| Reference::with_tag("x".into(), "y".into(), "z".into()))
    }

    #[test]
    fn mirrors_come_first_with_their_scheme_and_credentials() -> Result<(), String> {
        let config = RegistriesConfig::parse(
            "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://127.0.0.1:5000\"\nconfigs:\n  \"127.0.0.1:5000\":\n    auth:\n      username: u\n      password: p\n  \"registry.example:443\":\n    tls:\n      insecure_skip_verify: true\n",
        )?;
        let list = sources(&reference("busybox:1.36"), &config, &Credentials::default());
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0].reference.whole(),
            "127.0.0.1:5000/library/busybox:1.36"
        );
        assert!(list[0].plain_http);
        assert_eq!(list[0].auth, RegistryAuth::Basic("u".into(), "p".into()));
        assert_eq!(list[1].reference.whole(), "docker.io/library/busybox:1.36");
        assert!(!list[1].plain_http);
        let insecure = sources(
            &reference("registry.example:443/app:1"),
            &config,
            &Credentials::default(),
        );
        assert!(insecure[0].accept_invalid_certs);
        Ok(())
    }

    #[test]
    fn pull_secret_credentials_apply_by_host() -> Result<(), String> {
        let mut credentials = Credentials::default();
        let docker_config = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpzZWNyZXQ="},"127.0.0.1:5000":{"username":"a","password":"b"}}}"#;
        credentials.add_docker_config(docker_config)?;
        let hub = sources(
            &reference("nginx"),
            &RegistriesConfig::default(),
            &credentials,
        );
        assert_eq!(
            hub[0].auth,
            RegistryAuth::Basic("user".into(), "secret".into())
        );
        let local = sources(
            &reference("127.0.0.1:5000/app:1"),
            &RegistriesConfig::default(),
            &credentials,
        );
        assert_eq!(local[0].auth, RegistryAuth::Basic("a".into(), "b".into()));
        assert!(local[0].plain_http);
        Ok(())
    }
}
