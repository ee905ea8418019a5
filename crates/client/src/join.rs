//! Joining a cluster as k3s's agents do: the token
//! `K10<sha256 of the cluster CA>::server:<secret>` pins the CA (fetched
//! from `/cacerts` before any certificate is trusted, then checked against
//! the hash), and the secret buys node credentials from
//! `/v1-skiff/node-credentials`.

use base64::Engine;
use kube::config::{AuthInfo, Cluster, Context, Kubeconfig, KubeConfigOptions, NamedAuthInfo, NamedCluster, NamedContext};
use serde_json::{json, Value};
use sha2::Digest;

use crate::ClientError;

/// What a joining node gets.
#[derive(Debug, Clone)]
pub struct NodeCredentials {
    pub ca_pem: String,
    pub client_cert: String,
    pub client_key: String,
    pub serving_cert: String,
    pub serving_key: String,
}

/// The CA hash and the secret of a join token.
pub fn parse_token(token: &str) -> Result<(String, String), ClientError> {
    let invalid = || ClientError::Join("the token is not a join token (K10<ca hash>::server:<secret>, from the server's node-token file)".into());
    let rest = token.trim().strip_prefix("K10").ok_or_else(invalid)?;
    let (hash, credentials) = rest.split_once("::").ok_or_else(invalid)?;
    let secret = credentials.split_once(':').map(|(_, s)| s).ok_or_else(invalid)?;
    if hash.len() != 64 || secret.is_empty() {
        return Err(invalid());
    }
    Ok((hash.to_lowercase(), secret.to_string()))
}

fn client_for(server: &str, ca_pem: Option<&str>, token: Option<&str>) -> Kubeconfig {
    let cluster = Cluster {
        server: Some(server.to_string()),
        insecure_skip_tls_verify: Some(ca_pem.is_none()),
        certificate_authority_data: ca_pem.map(|pem| base64::engine::general_purpose::STANDARD.encode(pem)),
        ..Cluster::default()
    };
    Kubeconfig {
        clusters: vec![NamedCluster { name: "join".into(), cluster: Some(cluster), other: Default::default() }],
        auth_infos: vec![NamedAuthInfo {
            name: "join".into(),
            auth_info: Some(AuthInfo { token: token.map(|t| t.to_string().into()), ..AuthInfo::default() }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "join".into(),
            context: Some(Context { cluster: "join".into(), user: Some("join".into()), ..Context::default() }),
            other: Default::default(),
        }],
        current_context: Some("join".into()),
        ..Kubeconfig::default()
    }
}

async fn client(kubeconfig: Kubeconfig) -> Result<kube::Client, ClientError> {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| ClientError::Join(format!("bad join configuration: {e}")))?;
    Ok(kube::Client::try_from(config)?)
}

/// Joins `server` with `token` as node `node` at `addresses`.
pub async fn join(server: &str, token: &str, node: &str, addresses: &[String]) -> Result<NodeCredentials, ClientError> {
    let (hash, secret) = parse_token(token)?;
    let request = |method: &str, path: &str, body: Vec<u8>| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| ClientError::Join(e.to_string()))
    };
    // Not yet trusted: checked against the token below.
    let untrusted = client(client_for(server, None, None)).await?;
    let ca_pem = untrusted.request_text(request("GET", "/cacerts", Vec::new())?).await?;
    let served = hex::encode(sha2::Sha256::digest(ca_pem.as_bytes()));
    if served != hash {
        return Err(ClientError::Join(format!(
            "the server's CA (sha256 {served}) is not the one the token names ({hash}): wrong server, or a man in the middle"
        )));
    }
    let trusted = client(client_for(server, Some(&ca_pem), Some(&secret))).await?;
    let body = json!({"nodeName": node, "addresses": addresses}).to_string().into_bytes();
    let answer: Value = trusted.request(request("POST", "/v1-skiff/node-credentials", body)?).await?;
    let field = |name: &str| -> Result<String, ClientError> {
        answer[name].as_str().map(str::to_string).ok_or_else(|| ClientError::Join(format!("the server's answer has no {name}")))
    };
    Ok(NodeCredentials {
        client_cert: field("clientCertificate")?,
        client_key: field("clientKey")?,
        serving_cert: field("servingCertificate")?,
        serving_key: field("servingKey")?,
        ca_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_carry_a_ca_hash_and_a_secret() {
        let hash = "a".repeat(64);
        assert_eq!(parse_token(&format!("K10{hash}::server:s3cret")).ok(), Some((hash.clone(), "s3cret".to_string())));
        assert!(parse_token("s3cret").is_err());
        assert!(parse_token(&format!("K10{hash}::server:")).is_err());
        assert!(parse_token("K10abc::server:x").is_err());
    }
}
