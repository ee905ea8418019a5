//! Servers that share a datastore share the cluster's identity through it,
//! as k3s's servers do: the CA (certificate and key), the admin client
//! certificate and the service-account signing key live in one record under
//! `/bootstrap/<hash of the token>`, sealed with AES-256-GCM under a key
//! derived from the token (PBKDF2-HMAC-SHA256), so only a holder of the
//! token can read them. The first server publishes its files; every later
//! one adopts them before it loads its certificates, then issues its own
//! serving certificate from the shared CA.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use skiff_store::{Store, StoreError};

use crate::pki::{write_secret_file, PkiError};

/// The files every server of a cluster holds alike.
const SHARED_FILES: [&str; 5] = ["ca.crt", "ca.key", "admin.crt", "admin.key", "service-account.key"];
/// Files issued from the CA on each server: stale once the CA changes.
const ISSUED_FILES: [&str; 4] = ["server.crt", "server.sans", "kubelet.crt", "kubelet.sans"];
const PBKDF2_ROUNDS: u32 = 100_000;
const WRONG_TOKEN: &str = "the datastore already holds a cluster whose bootstrap data this token does not open: give this server the first server's token (--token, from its node-token file)";

#[derive(Serialize, Deserialize)]
struct Sealed {
    salt: String,
    nonce: String,
    data: String,
}

/// Where the record for `secret` lives (a hash: the key names no secret).
pub fn bootstrap_key(secret: &str) -> String {
    let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    format!("/bootstrap/{}", &digest[..12])
}

fn bootstrap_error(message: impl Into<String>) -> PkiError {
    PkiError::Bootstrap(message.into())
}

fn sealing_key(secret: &str, salt: &[u8]) -> Result<LessSafeKey, PkiError> {
    let mut key = [0u8; 32];
    let rounds = NonZeroU32::new(PBKDF2_ROUNDS).ok_or_else(|| bootstrap_error("zero rounds"))?;
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, salt, secret.as_bytes(), &mut key);
    let key = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| bootstrap_error("cannot build the sealing key"))?;
    Ok(LessSafeKey::new(key))
}

/// Seals `files` (name → contents) with `secret`.
fn seal(secret: &str, files: &BTreeMap<String, String>) -> Result<Vec<u8>, PkiError> {
    let random = SystemRandom::new();
    let (mut salt, mut nonce) = ([0u8; 16], [0u8; NONCE_LEN]);
    random.fill(&mut salt).map_err(|_| bootstrap_error("no randomness"))?;
    random.fill(&mut nonce).map_err(|_| bootstrap_error("no randomness"))?;
    let mut data = serde_json::to_vec(files).map_err(|e| bootstrap_error(e.to_string()))?;
    sealing_key(secret, &salt)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| bootstrap_error("sealing failed"))?;
    let sealed = Sealed { salt: STANDARD.encode(salt), nonce: STANDARD.encode(nonce), data: STANDARD.encode(data) };
    serde_json::to_vec(&sealed).map_err(|e| bootstrap_error(e.to_string()))
}

/// Opens what [`seal`] sealed; a wrong secret is an error, never garbage.
fn open(secret: &str, value: &[u8]) -> Result<BTreeMap<String, String>, PkiError> {
    let unreadable = || bootstrap_error("the stored bootstrap data is not readable");
    let sealed: Sealed = serde_json::from_slice(value).map_err(|_| unreadable())?;
    let salt = STANDARD.decode(&sealed.salt).map_err(|_| unreadable())?;
    let nonce: [u8; NONCE_LEN] = STANDARD.decode(&sealed.nonce).ok().and_then(|n| n.try_into().ok()).ok_or_else(unreadable)?;
    let mut data = STANDARD.decode(&sealed.data).map_err(|_| unreadable())?;
    let plain = sealing_key(secret, &salt)?
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| bootstrap_error(WRONG_TOKEN))?;
    serde_json::from_slice(plain).map_err(|_| unreadable())
}

/// If the datastore holds this cluster's shared files, writes them into
/// `dir` (replacing different local ones, and dropping certificates issued
/// from another CA so they are issued again). Returns whether it did.
pub async fn adopt(store: &dyn Store, dir: &Path, secret: &str) -> Result<bool, PkiError> {
    let Some(stored) = store.get(&bootstrap_key(secret)).await? else {
        // Another token's record means another server made this cluster:
        // a server with its own CA here would split it in two.
        let options = skiff_store::ListOptions { limit: Some(1), ..Default::default() };
        if !store.list("/bootstrap/", options).await?.items.is_empty() {
            return Err(bootstrap_error(WRONG_TOKEN));
        }
        return Ok(false);
    };
    let files = open(secret, &stored.value)?;
    if let Some(missing) = SHARED_FILES.iter().find(|name| !files.contains_key(**name)) {
        return Err(bootstrap_error(format!("the stored bootstrap data lacks {missing}")));
    }
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.to_path_buf(), source })?;
    let local_ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap_or_default();
    if files.get("ca.crt").is_some_and(|ca| *ca != local_ca) {
        if !local_ca.is_empty() {
            tracing::warn!(dir = %dir.display(), "this server's own CA differs from the cluster's; adopting the cluster's");
        }
        for name in ISSUED_FILES {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    for (name, contents) in files.iter().filter(|(name, _)| SHARED_FILES.contains(&name.as_str())) {
        write_secret_file(&dir.join(name), contents)?;
    }
    tracing::info!("adopted the cluster's CA and keys from the datastore");
    Ok(true)
}

/// Publishes the shared files in `dir` for servers that join later.
/// Returns false if another server published first (adopt theirs, then).
pub async fn publish(store: &dyn Store, dir: &Path, secret: &str) -> Result<bool, PkiError> {
    let mut files = BTreeMap::new();
    for name in SHARED_FILES {
        let path = dir.join(name);
        let contents = std::fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })?;
        files.insert(name.to_string(), contents);
    }
    match store.create(&bootstrap_key(secret), Bytes::from(seal(secret, &files)?)).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_open_with_the_token_and_not_without() -> Result<(), PkiError> {
        let files = BTreeMap::from([("ca.crt".to_string(), "PEM".to_string())]);
        let sealed = seal("secret", &files)?;
        assert!(!String::from_utf8_lossy(&sealed).contains("PEM"));
        assert_eq!(open("secret", &sealed)?, files);
        assert!(open("other", &sealed).is_err_and(|e| e.to_string().contains("first server's token")));
        Ok(())
    }

    #[test]
    fn the_key_names_a_hash_of_the_token() {
        assert!(bootstrap_key("secret").starts_with("/bootstrap/"));
        assert!(!bootstrap_key("secret").contains("secret"));
        assert_ne!(bootstrap_key("a"), bootstrap_key("b"));
    }

    #[tokio::test]
    async fn a_second_server_adopts_what_the_first_published() -> Result<(), Box<dyn std::error::Error>> {
        let scratch = tempfile::tempdir()?;
        let store = skiff_store::SqliteStore::open(&scratch.path().join("state.db"))?;
        let (first, second) = (scratch.path().join("first"), scratch.path().join("second"));
        crate::pki::Pki::load_or_create(&first, &["a".into()])?;
        assert!(!adopt(&store, &first, "t").await?);
        assert!(publish(&store, &first, "t").await?);
        assert!(!publish(&store, &first, "t").await?, "only one server publishes");
        crate::pki::Pki::load_or_create(&second, &["b".into()])?;
        assert!(adopt(&store, &second, "t").await?);
        let a = crate::pki::Pki::load_or_create(&first, &["a".into()])?;
        let b = crate::pki::Pki::load_or_create(&second, &["b".into()])?;
        assert_eq!(a.ca_cert, b.ca_cert);
        assert_eq!(a.service_account_key, b.service_account_key);
        assert_ne!(a.server_cert, b.server_cert, "each server has its own serving certificate");
        let refused = adopt(&store, &second, "wrong").await;
        assert!(refused.is_err_and(|e| e.to_string().contains("first server's token")), "a wrong token must not start a second cluster");
        Ok(())
    }
}
