//! The cluster's certificates: a CA, the serving certificate (re-issued when
//! its SANs change) and an admin client certificate, kept as PEM files in a
//! directory and reused across restarts; plus the bearer token file and the
//! admin kubeconfig.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

/// What can go wrong creating or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("failed to access {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to generate {what}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("{path} does not hold a usable PEM certificate or key")]
    Pem { path: PathBuf },
    #[error("failed to build the TLS configuration")]
    Tls(#[from] rustls::Error),
    #[error("failed to build the client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("cluster bootstrap data: {0}")]
    Bootstrap(String),
    #[error("failed to reach the datastore for the cluster's bootstrap data")]
    Store(#[from] skiff_store::StoreError),
}

type Result<T> = std::result::Result<T, PkiError>;

const CA_NAME: &str = "skiff-server-ca";

/// Loaded certificates and keys, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
    pub ca_cert: String,
    pub server_cert: String,
    server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    /// Signs service-account tokens (PKCS#8 PEM, ECDSA P-256); upstream's
    /// `--service-account-signing-key-file`.
    pub service_account_key: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(contents.as_bytes()).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err(path))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(io_err(path))
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|source| PkiError::Generate { what: "CA", source })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2034, 1, 1);
    Ok(params)
}

fn leaf(
    what: &'static str,
    sans: Vec<String>,
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String)> {
    let mut params =
        CertificateParams::new(sans).map_err(|source| PkiError::Generate { what, source })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    params.distinguished_name = dn;
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2034, 1, 1);
    let key = KeyPair::generate().map_err(|source| PkiError::Generate { what, source })?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| PkiError::Generate { what, source })?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Loads the certificates in `dir`, creating what is missing and
    /// re-issuing the serving certificate if `sans` changed.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = |name: &str| dir.join(name);
        let (ca_cert_path, ca_key_path) = (path("ca.crt"), path("ca.key"));
        if !ca_cert_path.exists() || !ca_key_path.exists() {
            let key = KeyPair::generate().map_err(|source| PkiError::Generate {
                what: "CA key",
                source,
            })?;
            let cert = ca_params()?
                .self_signed(&key)
                .map_err(|source| PkiError::Generate { what: "CA", source })?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            fs::write(&ca_cert_path, cert.pem()).map_err(io_err(&ca_cert_path))?;
            for stale in ["server.crt", "admin.crt"] {
                let _ = fs::remove_file(path(stale));
            }
        }
        let ca_key = KeyPair::from_pem(&read(&ca_key_path)?).map_err(|_| PkiError::Pem {
            path: ca_key_path.clone(),
        })?;
        // The issuer is rebuilt from the same name and key, so new leaves chain to the stored CA.
        let issuer = Issuer::new(ca_params()?, ca_key);

        let mut sans: Vec<String> = sans.to_vec();
        sans.sort();
        sans.dedup();
        let sans_text = sans.join("\n");
        let (server_cert_path, server_key_path, sans_path) =
            (path("server.crt"), path("server.key"), path("server.sans"));
        let current_sans = fs::read_to_string(&sans_path).unwrap_or_default();
        if !server_cert_path.exists() || !server_key_path.exists() || current_sans != sans_text {
            let (cert, key) = leaf(
                "serving certificate",
                sans.clone(),
                "skiff-apiserver",
                None,
                ExtendedKeyUsagePurpose::ServerAuth,
                &issuer,
            )?;
            write_private(&server_key_path, &key)?;
            fs::write(&server_cert_path, cert).map_err(io_err(&server_cert_path))?;
            fs::write(&sans_path, &sans_text).map_err(io_err(&sans_path))?;
        }
        let (admin_cert_path, admin_key_path) = (path("admin.crt"), path("admin.key"));
        if !admin_cert_path.exists() || !admin_key_path.exists() {
            let (cert, key) = leaf(
                "admin certificate",
                Vec::new(),
                "system:admin",
                Some("system:masters"),
                ExtendedKeyUsagePurpose::ClientAuth,
                &issuer,
            )?;
            write_private(&admin_key_path, &key)?;
            fs::write(&admin_cert_path, cert).map_err(io_err(&admin_cert_path))?;
        }
        let signing_key_path = path("service-account.key");
        if !signing_key_path.exists() {
            let key = KeyPair::generate().map_err(|source| PkiError::Generate {
                what: "service-account signing key",
                source,
            })?;
            write_private(&signing_key_path, &key.serialize_pem())?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            service_account_key: read(&signing_key_path)?,
            ca_cert: read(&ca_cert_path)?,
            server_cert: read(&server_cert_path)?,
            server_key: read(&server_key_path)?,
            admin_cert: read(&admin_cert_path)?,
            admin_key: read(&admin_key_path)?,
        })
    }

    /// TLS for the API server: our serving certificate; client certificates
    /// are verified against the CA but optional (tokens also authenticate).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_path = PathBuf::from("ca.crt");
        let mut roots = rustls::RootCertStore::empty();
        for cert in parse_certs(&self.ca_cert, &ca_path)? {
            roots.add(cert)?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()?;
        let chain = parse_certs(&self.server_cert, Path::new("server.crt"))?;
        let key = rustls_pemfile::private_key(&mut self.server_key.as_bytes())
            .ok()
            .flatten()
            .ok_or_else(|| PkiError::Pem {
                path: PathBuf::from("server.key"),
            })?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A serving certificate for a node agent (SANs: its name and
    /// addresses), issued by the cluster CA and kept beside the others.
    pub fn kubelet_serving(&self, node: &str, sans: &[String]) -> Result<(String, String)> {
        let (cert_path, key_path, sans_path) = (
            self.dir.join("kubelet.crt"),
            self.dir.join("kubelet.key"),
            self.dir.join("kubelet.sans"),
        );
        let wanted = serving_names(node, sans).join("\n");
        if !cert_path.exists()
            || !key_path.exists()
            || fs::read_to_string(&sans_path).unwrap_or_default() != wanted
        {
            let (cert, key) = issue_serving_certificate(&self.dir, node, sans)?;
            write_private(&key_path, &key)?;
            fs::write(&cert_path, cert).map_err(io_err(&cert_path))?;
            fs::write(&sans_path, &wanted).map_err(io_err(&sans_path))?;
        }
        Ok((read(&cert_path)?, read(&key_path)?))
    }

    /// TLS for the API server's requests to node agents: trusts the CA and
    /// presents the admin client certificate.
    pub fn kubelet_client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in parse_certs(&self.ca_cert, Path::new("ca.crt"))? {
            roots.add(cert)?;
        }
        let chain = parse_certs(&self.admin_cert, Path::new("admin.crt"))?;
        let key = rustls_pemfile::private_key(&mut self.admin_key.as_bytes())
            .ok()
            .flatten()
            .ok_or_else(|| PkiError::Pem {
                path: PathBuf::from("admin.key"),
            })?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// TLS for a node agent's server: its serving certificate; clients must
    /// present a certificate issued by the CA.
    pub fn kubelet_server_config(&self, cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>> {
        kubelet_server_tls(&self.ca_cert, cert, key)
    }

    /// A kubeconfig for the admin user against `server` (`https://host:port`).
    pub fn kubeconfig(&self, server: &str) -> String {
        kubeconfig(server, &self.ca_cert, "admin", &self.admin_cert, &self.admin_key)
    }
}

fn parse_certs(pem: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| PkiError::Pem {
            path: path.to_path_buf(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Writes a file readable only by its owner (kubeconfigs, tokens).
pub fn write_secret_file(path: &Path, contents: &str) -> Result<()> {
    write_private(path, contents)
}

/// The node-join token in `path`, created on first use.
/// TLS for a node agent's server: its serving certificate; clients must
/// present a certificate issued by the CA.
pub fn kubelet_server_tls(ca_pem: &str, cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in parse_certs(ca_pem, Path::new("ca.crt"))? {
        roots.add(ca)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let chain = parse_certs(cert, Path::new("kubelet.crt"))?;
    let key = rustls_pemfile::private_key(&mut key.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| PkiError::Pem {
            path: PathBuf::from("kubelet.key"),
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}


/// A kubeconfig for `user`'s client certificate against `server`.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, cert: &str, key: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: skiff\ncontexts:\n- context:\n    cluster: skiff\n    user: {user}\n  name: skiff\ncurrent-context: skiff\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(ca_pem),
        cert = b64(cert),
        key = b64(key),
    )
}

fn stored_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>> {
    let ca_key_path = dir.join("ca.key");
    let ca_key = KeyPair::from_pem(&read(&ca_key_path)?).map_err(|_| PkiError::Pem { path: ca_key_path.clone() })?;
    Ok(Issuer::new(ca_params()?, ca_key))
}

/// A client certificate for `user` (in `group`, if given) signed by the
/// cluster CA kept in `dir`: an identity RBAC then grants what it grants.
pub fn issue_client_certificate(dir: &Path, user: &str, group: Option<&str>) -> Result<(String, String)> {
    leaf("client certificate", Vec::new(), user, group, ExtendedKeyUsagePurpose::ClientAuth, &stored_issuer(dir)?)
}

/// A node agent's serving certificate's names: its node name, its
/// addresses and loopback.
fn serving_names(node: &str, addresses: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec![node.to_string(), "localhost".into(), "127.0.0.1".into()];
    names.extend(addresses.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// A serving certificate for a joining node agent (SANs: its name, its
/// addresses and loopback), signed by the cluster CA kept in `dir`.
pub fn issue_serving_certificate(dir: &Path, node: &str, addresses: &[String]) -> Result<(String, String)> {
    leaf("kubelet serving certificate", serving_names(node, addresses), node, None, ExtendedKeyUsagePurpose::ServerAuth, &stored_issuer(dir)?)
}

/// k3s's join token: `K10<sha256 of the CA certificate>::server:<secret>`;
/// an agent checks the CA it is served against the hash before trusting it.
pub fn join_token(ca_pem: &str, secret: &str) -> String {
    use sha2::Digest;
    format!("K10{}::server:{secret}", hex::encode(sha2::Sha256::digest(ca_pem.as_bytes())))
}

pub fn load_or_create_token(path: &Path) -> Result<String> {
    if let Ok(existing) = fs::read_to_string(path) {
        let token = existing.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let bytes: [u8; 24] = rand::random();
    let token = hex::encode(bytes);
    write_private(path, &format!("{token}\n"))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_created_once_and_reissued_on_new_sans(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = Pki::load_or_create(dir.path(), &sans)?;
        let again = Pki::load_or_create(dir.path(), &sans)?;
        assert_eq!(
            first.server_cert, again.server_cert,
            "restart reuses certificates"
        );
        assert_eq!(first.admin_cert, again.admin_cert);
        let more = Pki::load_or_create(
            dir.path(),
            &[sans.clone(), vec!["skiff.example".to_string()]].concat(),
        )?;
        assert_ne!(
            first.server_cert, more.server_cert,
            "new SANs re-issue the serving certificate"
        );
        assert_eq!(first.ca_cert, more.ca_cert);
        more.server_config()?;
        let mode = fs::metadata(dir.path().join("ca.key"))?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(first
            .kubeconfig("https://127.0.0.1:6443")
            .contains("server: https://127.0.0.1:6443"));
        Ok(())
    }
}
