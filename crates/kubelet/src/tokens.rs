//! Service-account tokens for a pod's projected volumes, as the kubelet's
//! token manager keeps them: requested through TokenRequest, bound to the
//! pod (so they die with it), and requested again once 80% of their
//! lifetime (at most 24 h) has passed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// upstream's default `expirationSeconds` of a serviceAccountToken projection.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MAX_REFRESH_AFTER: Duration = Duration::from_secs(24 * 3600);
/// After a failed request, when to ask again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// (audience, expirationSeconds): what one projection asks for.
pub type Wanted = (String, i64);

/// When a token living `ttl` is requested again (upstream's
/// `requiresRefresh`: 80% of its life, or a day).
pub fn refresh_after(ttl: Duration) -> Duration {
    ttl.mul_f64(0.8).min(MAX_REFRESH_AFTER)
}

/// The tokens the pod's projected volumes ask for.
pub fn wanted(pod: &Pod) -> Vec<Wanted> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let mut wanted: Vec<Wanted> = volumes
        .flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()))
        .filter_map(|source| source.service_account_token.as_ref())
        .map(|token| {
            (
                token.audience.clone().unwrap_or_default(),
                token.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
            )
        })
        .collect();
    wanted.sort();
    wanted.dedup();
    wanted
}

/// The first volume that projects a token (for FailedMount reports).
pub fn volume_of(pod: &Pod) -> Option<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .find(|v| {
            v.projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .any(|s| s.service_account_token.is_some())
        })
        .map(|v| v.name.clone())
}

/// One pod's tokens.
#[derive(Debug, Default)]
pub struct PodTokens {
    /// The token (none after a failed request) and when to ask again.
    issued: BTreeMap<Wanted, (Option<String>, Instant)>,
}

impl PodTokens {
    /// Requests the tokens that are missing or due; the first failure's text.
    pub async fn refresh(&mut self, client: &kube::Client, pod: &Pod) -> Result<(), String> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let mut failure = None;
        for wanted in wanted(pod) {
            let now = Instant::now();
            if self.issued.get(&wanted).is_some_and(|(_, due)| *due > now) {
                continue;
            }
            let (audience, expiration) = wanted.clone();
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: if audience.is_empty() { Vec::new() } else { vec![audience] },
                    expiration_seconds: Some(expiration),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: pod.metadata.name.clone(),
                        uid: pod.metadata.uid.clone(),
                    }),
                },
                ..TokenRequest::default()
            };
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
            match api.create_token_request(&account, &PostParams::default(), &request).await {
                Ok(answer) => {
                    let token = answer.status.map(|s| s.token).unwrap_or_default();
                    let ttl = Duration::from_secs(expiration.unsigned_abs());
                    self.issued.insert(wanted, (Some(token), now + refresh_after(ttl)));
                }
                Err(error) => {
                    tracing::warn!(pod = %pod.metadata.name.clone().unwrap_or_default(), %error, "service-account token request failed");
                    let kept = self.issued.remove(&wanted).and_then(|(token, _)| token);
                    self.issued.insert(wanted, (kept, now + RETRY_AFTER));
                    failure.get_or_insert(format!("failed to fetch token: {error}"));
                }
            }
        }
        match failure {
            // A token still valid from before keeps the volume usable.
            Some(error) if self.issued.values().any(|(token, _)| token.is_none()) => Err(error),
            _ => Ok(()),
        }
    }

    /// The tokens to project, by what they were asked for.
    pub fn current(&self) -> BTreeMap<Wanted, String> {
        self.issued
            .iter()
            .filter_map(|(wanted, (token, _))| token.clone().map(|t| (wanted.clone(), t)))
            .collect()
    }

    /// When the next token is due.
    pub fn next_refresh(&self) -> Option<Instant> {
        self.issued.values().map(|(_, due)| *due).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_at_four_fifths_of_their_life_or_a_day() {
        assert_eq!(refresh_after(Duration::from_secs(3600)), Duration::from_secs(2880));
        assert_eq!(refresh_after(Duration::from_secs(365 * 24 * 3600)), MAX_REFRESH_AFTER);
    }

    #[test]
    fn projections_ask_for_one_token_per_audience_and_lifetime() -> Result<(), serde_json::Error> {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [], "volumes": [
            {"name": "a", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 3607}}]}},
            {"name": "b", "projected": {"sources": [
                {"serviceAccountToken": {"path": "t", "expirationSeconds": 3607}},
                {"serviceAccountToken": {"path": "v", "audience": "vault"}}]}},
        ]}}))?;
        assert_eq!(wanted(&pod), vec![(String::new(), 3607), ("vault".to_string(), 3600)]);
        Ok(())
    }
}
