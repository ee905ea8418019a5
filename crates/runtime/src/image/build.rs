//! Building small single-layer images from host files, with Skiff's own
//! code: what the tests and the offline demo use instead of Docker Hub
//! (e.g. `busybox` from Debian's busybox-static, with its applet links).
//! The result is written as an OCI archive (for `skiff image import`) or
//! pushed to a registry.

use std::io;
use std::path::Path;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::store::{is_local_registry, parse_reference, ImageError};

/// One file of the image.
pub enum Entry {
    /// A regular file with these contents and mode.
    File {
        path: String,
        contents: Vec<u8>,
        mode: u32,
    },
    /// A symbolic link.
    Symlink { path: String, target: String },
    /// A directory.
    Dir { path: String, mode: u32 },
}

/// A single-layer image under construction.
pub struct ImageSpec {
    pub entries: Vec<Entry>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub stop_signal: Option<String>,
    /// The image's `USER` (`name`, `uid`, `name:group`...), empty for root.
    pub user: String,
}

impl ImageSpec {
    /// busybox-static from the host at /bin/busybox with a link per applet
    /// (`sh`, `httpd`, `wget`, `nc`, `sleep`, ...); CMD `sh`.
    pub fn busybox(host_busybox: &Path) -> io::Result<Self> {
        let contents = std::fs::read(host_busybox)?;
        let output = std::process::Command::new(host_busybox)
            .arg("--list")
            .output()?;
        let applets = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut entries = vec![
            Entry::Dir {
                path: "bin".into(),
                mode: 0o755,
            },
            Entry::Dir {
                path: "etc".into(),
                mode: 0o755,
            },
            Entry::Dir {
                path: "tmp".into(),
                mode: 0o1777,
            },
            Entry::Dir {
                path: "var/www".into(),
                mode: 0o755,
            },
            Entry::File {
                path: "bin/busybox".into(),
                contents,
                mode: 0o755,
            },
            Entry::File {
                path: "etc/passwd".into(),
                contents:
                    b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
                        .to_vec(),
                mode: 0o644,
            },
            Entry::File {
                path: "etc/group".into(),
                contents: b"root:x:0:\nnobody:x:65534:\n".to_vec(),
                mode: 0o644,
            },
        ];
        for applet in applets
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
        {
            entries.push(Entry::Symlink {
                path: format!("bin/{applet}"),
                target: "busybox".into(),
            });
        }
        Ok(Self {
            entries,
            entrypoint: Vec::new(),
            cmd: vec!["sh".into()],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            working_dir: String::new(),
            stop_signal: None,
            user: String::new(),
        })
    }

    /// The layer as a gzip-compressed tar.
    pub fn layer(&self) -> io::Result<Vec<u8>> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                Entry::Dir { path, mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), io::empty())?;
                }
                Entry::File {
                    path,
                    contents,
                    mode,
                } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(contents.len() as u64);
                    tar.append_data(&mut header, path, contents.as_slice())?;
                }
                Entry::Symlink { path, target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)?;
                }
            }
        }
        tar.into_inner()?.finish()
    }

    fn config(&self, layer_diff_id: &str) -> Vec<u8> {
        let mut config = json!({"Env": self.env, "Cmd": self.cmd});
        if !self.entrypoint.is_empty() {
            config["Entrypoint"] = json!(self.entrypoint);
        }
        if !self.user.is_empty() {
            config["User"] = json!(self.user);
        }
        if !self.working_dir.is_empty() {
            config["WorkingDir"] = json!(self.working_dir);
        }
        if let Some(signal) = &self.stop_signal {
            config["StopSignal"] = json!(signal);
        }
        json!({"architecture": if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }, "os": "linux",
               "config": config, "rootfs": {"type": "layers", "diff_ids": [layer_diff_id]}})
        .to_string()
        .into_bytes()
    }

    fn parts(&self) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let layer = self.layer()?;
        let mut decoder = flate2::read::GzDecoder::new(layer.as_slice());
        let mut plain = Vec::new();
        io::Read::read_to_end(&mut decoder, &mut plain)?;
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&plain)));
        Ok((layer, self.config(&diff_id)))
    }

    /// Writes the image as an OCI archive (an `oci-layout` tarball) named `name`.
    pub fn write_oci_archive(&self, name: &str, path: &Path) -> Result<(), ImageError> {
        let io_err = |source| ImageError::Io {
            path: path.display().to_string(),
            source,
        };
        let (layer, config) = self.parts().map_err(io_err)?;
        let digest = |bytes: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let manifest = json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": IMAGE_CONFIG_MEDIA_TYPE, "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": IMAGE_LAYER_GZIP_MEDIA_TYPE, "digest": digest(&layer), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(&manifest), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": parse_reference(name)?.whole(), "org.opencontainers.image.ref.name": name},
        }]})
        .to_string();
        let file = std::fs::File::create(path).map_err(io_err)?;
        let mut tar = tar::Builder::new(file);
        let mut add = |entry_path: String, bytes: &[u8]| -> io::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, entry_path, bytes)
        };
        add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err)?;
        add("index.json".into(), index.as_bytes()).map_err(io_err)?;
        for blob in [&manifest, &config, &layer] {
            add(format!("blobs/sha256/{}", &digest(blob)[7..]), blob).map_err(io_err)?;
        }
        tar.finish().map_err(io_err)
    }

    /// Pushes the image to its registry (plain HTTP for local registries).
    pub async fn push(&self, name: &str) -> Result<(), ImageError> {
        self.push_with_auth(name, &RegistryAuth::Anonymous).await
    }

    /// Pushes with credentials.
    pub async fn push_with_auth(&self, name: &str, auth: &RegistryAuth) -> Result<(), ImageError> {
        let reference = parse_reference(name)?;
        let (layer, config) = self.parts().map_err(|source| ImageError::Io {
            path: name.to_string(),
            source,
        })?;
        let protocol = if is_local_registry(reference.resolve_registry()) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        super::ensure_crypto_provider();
        let client = Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        let layers = vec![ImageLayer::new(
            layer,
            IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(),
            None,
        )];
        let config = Config::new(config, IMAGE_CONFIG_MEDIA_TYPE.to_string(), None);
        let manifest = OciImageManifest::build(&layers, &config, None);
        client
            .push(&reference, &layers, config, auth, Some(manifest))
            .await
            .map_err(|source| ImageError::Pull {
                image: name.to_string(),
                source,
            })?;
        Ok(())
    }
}
