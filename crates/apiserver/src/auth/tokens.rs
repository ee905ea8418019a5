//! Service-account tokens as upstream's TokenRequest issues them: JWTs
//! (ES256 here; upstream signs with whatever key it is given) whose claims
//! name the service account and, when bound, the pod, with `iss`, `aud`,
//! `exp`, `iat`, `nbf` and `jti`. The key is kept in the data dir; only this
//! server verifies what it signed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{json, Value};
use sha2::Digest;

/// Issuer and default audience (upstream's and k3s's default).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// upstream: tokens shorter than ten minutes are refused.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// upstream's default `expirationSeconds` of a TokenRequest.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Clock skew tolerated on `nbf` and `exp` (upstream's jwt leeway).
const LEEWAY_SECONDS: i64 = 60;

pub struct TokenSigner {
    key: EcdsaKeyPair,
    public_key: Vec<u8>,
    key_id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("key_id", &self.key_id).finish()
    }
}

impl TokenSigner {
    /// From a PKCS#8 PEM ECDSA P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let der = match rustls_pemfile::private_key(&mut pem.as_bytes()) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(der))) => der,
            _ => return Err("the service-account key is not a PKCS#8 PEM key".into()),
        };
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der(), &rng)
            .map_err(|e| format!("the service-account key is not an ECDSA P-256 key: {e}"))?;
        let public_key = key.public_key().as_ref().to_vec();
        let key_id = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&public_key));
        Ok(Self { key, public_key, key_id, rng })
    }

    /// A signed JWT of `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "signing the token failed".to_string())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }

    /// The claims of a token this signer signed; `None` for anything else
    /// (another issuer's JWT, a forged signature, not a JWT at all).
    pub fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header["alg"] != "ES256" {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let public = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public_key);
        let signing_input = &token[..header_and_claims_len(token)?];
        public.verify(signing_input.as_bytes(), &signature).ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        (claims["iss"] == ISSUER).then_some(claims)
    }
}

fn header_and_claims_len(token: &str) -> Option<usize> {
    token.rfind('.')
}

/// What a token is bound to besides its service account.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    pub pod: Option<(String, String)>,
    pub node: Option<(String, String)>,
}

/// upstream's `privateClaims` + registered claims.
#[allow(clippy::too_many_arguments)]
pub fn claims(
    namespace: &str,
    account: (&str, &str),
    binding: &Binding,
    audiences: &[String],
    now: i64,
    expiration_seconds: i64,
    id: &str,
) -> Value {
    let (name, uid) = account;
    let mut kubernetes = json!({
        "namespace": namespace,
        "serviceaccount": {"name": name, "uid": uid},
    });
    if let Some((pod, pod_uid)) = &binding.pod {
        kubernetes["pod"] = json!({"name": pod, "uid": pod_uid});
    }
    if let Some((node, node_uid)) = &binding.node {
        kubernetes["node"] = json!({"name": node, "uid": node_uid});
    }
    json!({
        "aud": audiences,
        "exp": now + expiration_seconds,
        "iat": now,
        "iss": ISSUER,
        "jti": id,
        "kubernetes.io": kubernetes,
        "nbf": now,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
    })
}

/// Why a verified token is not (or no longer) valid at `now` for an
/// audience of `accepted`.
pub fn check(claims: &Value, now: i64, accepted: &[&str]) -> Result<(), &'static str> {
    let exp = claims["exp"].as_i64().ok_or("token has no expiry")?;
    if now > exp + LEEWAY_SECONDS {
        return Err("token has expired");
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err("token is not valid yet");
    }
    let audiences: Vec<&str> = match &claims["aud"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.iter().any(|a| accepted.contains(a)) {
        return Err("token audiences is invalid for the target audiences");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let key = rcgen::KeyPair::generate().map(|k| k.serialize_pem()).unwrap_or_default();
        TokenSigner::from_pem(&key).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn tokens_verify_only_with_their_key_and_within_their_lifetime() {
        let (one, other) = (signer(), signer());
        let claims = claims("default", ("default", "u1"), &Binding::default(), &[ISSUER.to_string()], 1000, 600, "j");
        let token = one.sign(&claims).unwrap_or_default();
        let verified = one.verify(&token);
        assert_eq!(verified.as_ref().map(|c| c["sub"].clone()), Some(json!("system:serviceaccount:default:default")));
        assert!(other.verify(&token).is_none());
        let tampered = token.replacen('.', ".x", 1);
        assert!(one.verify(&tampered).is_none());
        let verified = verified.unwrap_or_default();
        assert_eq!(check(&verified, 1500, &[ISSUER]), Ok(()));
        assert_eq!(check(&verified, 1700, &[ISSUER]), Err("token has expired"));
        assert!(check(&verified, 1500, &["other"]).is_err());
    }
}
