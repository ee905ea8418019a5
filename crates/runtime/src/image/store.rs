//! The node's image store, content-addressed under one directory:
//!
//! ```text
//! blobs/sha256/<hex>      layer blobs, configs (verified against their digest)
//! layers/sha256/<hex>/    each layer unpacked once, shared by every image using it
//! layers/sha256/<hex>.fingerprint   its entry count and bytes, checked before use
//! images.json             image name -> manifest digest, config, layers
//! tmp/                    downloads and imports in progress
//! ```
//!
//! Images arrive by pulling from a registry (Docker Hub-style token auth,
//! manifest lists resolved to this platform, gzip/zstd/plain layers) or by
//! importing an OCI archive or a `docker save` tarball.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::Reference;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::progress::{self, CountingReader, Progress, Report};
use super::unpack::{unpack_layer, Compression, UnpackError};

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// An image known to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Fully qualified name, e.g. `docker.io/library/busybox:1.36`.
    pub name: String,
    /// The manifest (or manifest list) digest it was pulled by; empty for
    /// images imported from a `docker save` tarball.
    pub repo_digest: String,
    /// The config blob's digest: the image ID.
    pub config: String,
    pub layers: Vec<Layer>,
}

impl Image {
    /// The name without its tag (`127.0.0.1:5000/app:v1` → `127.0.0.1:5000/app`) and the tag.
    pub fn repository_and_tag(&self) -> (&str, &str) {
        match self.name.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, tag),
            _ => (&self.name, "<none>"),
        }
    }

    /// The image ID kubelet reports: `repository@digest`, or the config digest.
    pub fn image_id(&self) -> String {
        if self.repo_digest.is_empty() {
            self.config.clone()
        } else {
            format!("{}@{}", self.repository_and_tag().0, self.repo_digest)
        }
    }

    /// Bytes of all layer blobs, as kubelet reports image size.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// What can go wrong with images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("image {0:?} is not present")]
    NotPresent(String),
    /// The registry has no such tag (or repository): containerd's words.
    #[error("failed to resolve reference {reference:?}: {reference}: not found")]
    NotFound {
        image: String,
        /// Where it was looked for (a mirror's name for it, maybe).
        reference: String,
        /// The tags the repository has, when it would list them.
        tags: Vec<String>,
    },
    #[error("failed to pull image {image:?}: {source}")]
    Pull {
        image: String,
        source: oci_client::errors::OciDistributionError,
    },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("layer {digest} of image {image:?} was refused: {source}")]
    Layer {
        image: String,
        digest: String,
        source: UnpackError,
    },
    #[error("archive {path} is neither an OCI archive nor a docker save tarball")]
    UnknownArchive { path: String },
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("i/o error on {path}")]
    Io { path: String, source: io::Error },
}

pub(super) type Result<T> = std::result::Result<T, ImageError>;

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn hex_of(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex),
        _ => Err(ImageError::Malformed {
            what: "digest".into(),
            reason: format!("{digest:?} is not a sha256 digest"),
        }),
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(io_err(path))?;
        if n == 0 {
            return Ok(format!("sha256:{}", hex::encode(hasher.finalize())));
        }
        hasher.update(&buffer[..n]);
    }
}

/// Parses and normalizes an image name the way Docker and kubelet do.
pub fn parse_reference(name: &str) -> Result<Reference> {
    super::reference::parse(name).map_err(|e| ImageError::InvalidName {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

/// Registries reached over plain HTTP without configuration, as Docker does.
pub fn is_local_registry(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An image's state in the store, checked before a container uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Intact,
    /// Damaged layers were unpacked again from their (verified) blobs.
    Mended(Vec<String>),
    /// Parts are missing or corrupt and were removed: the image must be
    /// pulled again. Says what was wrong.
    Damaged(String),
}

/// What an unpacked layer holds: entries and bytes of regular files.
/// Recorded when it is unpacked; a layer that no longer matches was
/// changed or partly deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    entries: u64,
    bytes: u64,
}

impl Fingerprint {
    fn of(dir: &Path) -> io::Result<Self> {
        let mut fingerprint = Fingerprint { entries: 0, bytes: 0 };
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                fingerprint.entries += 1;
                if kind.is_dir() {
                    pending.push(entry.path());
                } else if kind.is_file() {
                    fingerprint.bytes += entry.metadata()?.len();
                }
            }
        }
        Ok(fingerprint)
    }

    fn parse(text: &str) -> Option<Self> {
        let (entries, bytes) = text.trim().split_once(' ')?;
        Some(Fingerprint {
            entries: entries.parse().ok()?,
            bytes: bytes.parse().ok()?,
        })
    }

    fn text(&self) -> String {
        format!("{} {}\n", self.entries, self.bytes)
    }
}

/// The image store rooted at a directory.
pub struct ImageStore {
    root: PathBuf,
    /// Held while damaged layers are removed and unpacked again.
    repairs: std::sync::Mutex<()>,
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<Self> {
        for dir in ["blobs/sha256", "layers/sha256", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            repairs: std::sync::Mutex::new(()),
        })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    /// The unpacked directory of a layer (by its blob digest).
    pub fn layer_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("layers/sha256").join(hex_of(digest)?))
    }

    /// Where unpacked layers live (`<hex>/` each), for watching removals.
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers/sha256")
    }

    fn fingerprint_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("layers/sha256")
            .join(format!("{}.fingerprint", hex_of(digest)?)))
    }

    fn write_fingerprint(&self, digest: &str, fingerprint: Fingerprint) -> Result<()> {
        let path = self.fingerprint_path(digest)?;
        fs::write(&path, fingerprint.text()).map_err(io_err(&path))
    }

    /// Checks what a container of `image` will use: the config blob's
    /// digest and each unpacked layer against its fingerprint. A damaged
    /// layer is unpacked again from its blob when the blob is intact;
    /// anything that cannot be mended here is removed, so that a pull
    /// fetches it again.
    pub fn verify(&self, image: &Image) -> Result<Health> {
        let _repairing = self.repairs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut mended = Vec::new();
        let config = self.blob_path(&image.config)?;
        let config_intact = config.exists() && sha256_file(&config)? == image.config;
        if !config_intact {
            let _ = fs::remove_file(&config);
            return Ok(Health::Damaged(format!("its config blob {} is missing or corrupt", image.config)));
        }
        for layer in &image.layers {
            let dir = self.layer_path(&layer.digest)?;
            let fingerprint_path = self.fingerprint_path(&layer.digest)?;
            let recorded = fs::read_to_string(&fingerprint_path)
                .ok()
                .and_then(|text| Fingerprint::parse(&text));
            let actual = Fingerprint::of(&dir).ok();
            match (recorded, actual) {
                (Some(recorded), Some(actual)) if recorded == actual => continue,
                // Unpacked by a store that kept no fingerprints: trust it once.
                (None, Some(actual)) => {
                    self.write_fingerprint(&layer.digest, actual)?;
                    continue;
                }
                _ => {}
            }
            tracing::warn!(image = %image.name, layer = %layer.digest, "unpacked layer is missing or changed");
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
            }
            let _ = fs::remove_file(&fingerprint_path);
            let blob = self.blob_path(&layer.digest)?;
            if blob.exists() && sha256_file(&blob)? == layer.digest {
                self.unpack(&image.name, layer)?;
                mended.push(layer.digest.clone());
                continue;
            }
            let _ = fs::remove_file(&blob);
            return Ok(Health::Damaged(format!(
                "layer {} is missing or corrupt",
                layer.digest
            )));
        }
        Ok(if mended.is_empty() {
            Health::Intact
        } else {
            Health::Mended(mended)
        })
    }

    pub(super) fn scratch(&self, name: &str) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{name}-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        ))
    }

    /// Runs `change` on the index under an exclusive file lock, so the
    /// server and `skiff image` commands can share a store.
    fn with_index<T>(&self, change: impl FnOnce(&mut BTreeMap<String, Image>) -> T) -> Result<T> {
        let lock_path = self.root.join("images.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        let path = self.root.join("images.json");
        let mut index: BTreeMap<String, Image> = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Malformed {
                what: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let before = index.clone();
        let result = change(&mut index);
        if index != before {
            let partial = path.with_extension("json.partial");
            let bytes = serde_json::to_vec_pretty(&index).map_err(|e| ImageError::Malformed {
                what: "image index".into(),
                reason: e.to_string(),
            })?;
            fs::write(&partial, bytes).map_err(io_err(&partial))?;
            fs::rename(&partial, &path).map_err(io_err(&path))?;
        }
        Ok(result)
    }

    /// Every image, by name.
    pub fn list(&self) -> Result<Vec<Image>> {
        self.with_index(|index| index.values().cloned().collect())
    }

    /// The image stored under `name` (normalized), if present.
    pub fn get(&self, name: &str) -> Result<Option<Image>> {
        let whole = parse_reference(name)?.whole();
        self.with_index(|index| index.get(&whole).cloned())
    }

    /// The image's config (Entrypoint, Cmd, Env, User, WorkingDir, ...).
    pub fn config(&self, image: &Image) -> Result<serde_json::Value> {
        let path = self.blob_path(&image.config)?;
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Malformed {
            what: format!("config of {}", image.name),
            reason: e.to_string(),
        })
    }

    /// Unpacked layer directories, bottom first.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        image
            .layers
            .iter()
            .map(|l| self.layer_path(&l.digest))
            .collect()
    }

    /// Moves a verified file into the blob store under `digest`.
    pub(super) fn commit_blob(&self, file: &Path, digest: &str, what: &str) -> Result<()> {
        let actual = sha256_file(file)?;
        if actual != digest {
            let _ = fs::remove_file(file);
            return Err(ImageError::Digest {
                what: what.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        let dest = self.blob_path(digest)?;
        fs::rename(file, &dest).map_err(io_err(&dest))
    }

    pub(super) fn unpack(&self, image: &str, layer: &Layer) -> Result<()> {
        let dest = self.layer_path(&layer.digest)?;
        if dest.exists() {
            return Ok(());
        }
        let blob = self.blob_path(&layer.digest)?;
        let mut file = fs::File::open(&blob).map_err(io_err(&blob))?;
        let mut head = [0u8; 4];
        let n = file.read(&mut head).map_err(io_err(&blob))?;
        let file = fs::File::open(&blob).map_err(io_err(&blob))?;
        let compression = match Compression::from_media_type(&layer.media_type) {
            Compression::None => Compression::sniff(&head[..n]),
            known => known,
        };
        tracing::debug!(image, layer = %layer.digest, ?compression, "unpacking layer");
        unpack_layer(io::BufReader::new(file), compression, &dest).map_err(|source| {
            ImageError::Layer {
                image: image.to_string(),
                digest: layer.digest.clone(),
                source,
            }
        })?;
        let fingerprint = Fingerprint::of(&dest).map_err(io_err(&dest))?;
        self.write_fingerprint(&layer.digest, fingerprint)
    }

    pub(super) fn record(&self, image: Image) -> Result<Image> {
        self.with_index(|index| index.insert(image.name.clone(), image.clone()))?;
        Ok(image)
    }

    /// Imports every image in an OCI archive or a `docker save` tarball.
    pub fn import(&self, archive: &Path) -> Result<Vec<Image>> {
        self.import_reporting(archive, &progress::ignore)
    }

    /// [`ImageStore::import`], saying how much of the archive it has read.
    pub fn import_reporting(&self, archive: &Path, report: Report<'_>) -> Result<Vec<Image>> {
        let work = self.scratch("import");
        fs::create_dir_all(&work).map_err(io_err(&work))?;
        let outcome = self.import_into(archive, &work, report);
        let _ = fs::remove_dir_all(&work);
        outcome
    }

    fn import_into(&self, archive: &Path, work: &Path, report: Report<'_>) -> Result<Vec<Image>> {
        let file = fs::File::open(archive).map_err(io_err(archive))?;
        let size = file.metadata().map_err(io_err(archive))?.len();
        report(Progress::Started { layers: 0, bytes: size });
        // tar's unpack_in refuses entries that would land outside `work`.
        let mut tar = tar::Archive::new(io::BufReader::new(CountingReader::new(file, report)));
        tar.unpack(work).map_err(io_err(archive))?;
        let images = if work.join("manifest.json").exists() {
            self.import_docker(work)?
        } else if work.join("index.json").exists() {
            self.import_oci(work)?
        } else {
            return Err(ImageError::UnknownArchive {
                path: archive.display().to_string(),
            });
        };
        images.into_iter().map(|image| self.record(image)).collect()
    }

    /// Copies a file of the archive into the blob store; returns its digest.
    fn adopt(&self, path: &Path) -> Result<(String, u64)> {
        let digest = sha256_file(path)?;
        let size = fs::metadata(path).map_err(io_err(path))?.len();
        let dest = self.blob_path(&digest)?;
        if !dest.exists() {
            fs::rename(path, &dest)
                .or_else(|_| fs::copy(path, &dest).map(|_| ()))
                .map_err(io_err(&dest))?;
        }
        Ok((digest, size))
    }

    fn import_docker(&self, work: &Path) -> Result<Vec<Image>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let path = work.join("manifest.json");
        let entries: Vec<Entry> = serde_json::from_slice(&fs::read(&path).map_err(io_err(&path))?)
            .map_err(|e| ImageError::Malformed {
                what: "docker save manifest.json".into(),
                reason: e.to_string(),
            })?;
        let mut images = Vec::new();
        for entry in entries {
            let inside = |rel: &str| -> Result<PathBuf> {
                let rel = Path::new(rel);
                if rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
                {
                    return Err(ImageError::Malformed {
                        what: "docker save manifest.json".into(),
                        reason: format!("path {rel:?} leaves the archive"),
                    });
                }
                Ok(work.join(rel))
            };
            let (config, _) = self.adopt(&inside(&entry.config)?)?;
            let mut layers = Vec::new();
            for rel in &entry.layers {
                let (digest, size) = self.adopt(&inside(rel)?)?;
                let layer = Layer {
                    digest,
                    media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
                    size,
                };
                layers.push(layer);
            }
            for tag in entry.repo_tags.unwrap_or_default() {
                let name = parse_reference(&tag)?.whole();
                for layer in &layers {
                    self.unpack(&name, layer)?;
                }
                images.push(Image {
                    name,
                    repo_digest: String::new(),
                    config: config.clone(),
                    layers: layers.clone(),
                });
            }
        }
        Ok(images)
    }

    fn import_oci(&self, work: &Path) -> Result<Vec<Image>> {
        let read_json = |digest: &str| -> Result<serde_json::Value> {
            let path = work.join("blobs/sha256").join(hex_of(digest)?);
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
            if actual != digest {
                return Err(ImageError::Digest {
                    what: "archive blob".into(),
                    expected: digest.into(),
                    actual,
                });
            }
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Malformed {
                what: format!("blob {digest}"),
                reason: e.to_string(),
            })
        };
        let index_path = work.join("index.json");
        let index: serde_json::Value = serde_json::from_slice(
            &fs::read(&index_path).map_err(io_err(&index_path))?,
        )
        .map_err(|e| ImageError::Malformed {
            what: "index.json".into(),
            reason: e.to_string(),
        })?;
        let mut images = Vec::new();
        for entry in index["manifests"].as_array().into_iter().flatten() {
            let annotations = &entry["annotations"];
            let Some(name) = annotations["io.containerd.image.name"]
                .as_str()
                .or(annotations["org.opencontainers.image.ref.name"].as_str())
            else {
                continue;
            };
            let name = parse_reference(name)?.whole();
            let mut digest = entry["digest"].as_str().unwrap_or("").to_string();
            let repo_digest = digest.clone();
            let mut manifest = read_json(&digest)?;
            if manifest["manifests"].is_array() {
                let arch = if cfg!(target_arch = "aarch64") {
                    "arm64"
                } else {
                    "amd64"
                };
                let chosen = manifest["manifests"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| {
                        m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch
                    });
                digest = chosen
                    .and_then(|m| m["digest"].as_str())
                    .unwrap_or("")
                    .to_string();
                manifest = read_json(&digest)?;
            }
            let manifest: OciImageManifest =
                serde_json::from_value(manifest).map_err(|e| ImageError::Malformed {
                    what: format!("manifest {digest}"),
                    reason: e.to_string(),
                })?;
            let adopt = |d: &OciDescriptor| -> Result<Layer> {
                let path = work.join("blobs/sha256").join(hex_of(&d.digest)?);
                let (actual, size) = self.adopt(&path)?;
                if actual != d.digest {
                    return Err(ImageError::Digest {
                        what: "archive layer".into(),
                        expected: d.digest.clone(),
                        actual,
                    });
                }
                Ok(Layer {
                    digest: actual,
                    media_type: d.media_type.clone(),
                    size,
                })
            };
            let config = adopt(&manifest.config)?.digest;
            let layers = manifest
                .layers
                .iter()
                .map(adopt)
                .collect::<Result<Vec<_>>>()?;
            for layer in &layers {
                self.unpack(&name, layer)?;
            }
            images.push(Image {
                name,
                repo_digest,
                config,
                layers,
            });
        }
        Ok(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_keep_registry_ports() {
        let image = Image {
            name: "127.0.0.1:5000/app:v1".into(),
            repo_digest: "sha256:ab".into(),
            config: "sha256:cd".into(),
            layers: Vec::new(),
        };
        assert_eq!(image.repository_and_tag(), ("127.0.0.1:5000/app", "v1"));
        assert_eq!(image.image_id(), "127.0.0.1:5000/app@sha256:ab");
        let saved = Image {
            repo_digest: String::new(),
            ..image
        };
        assert_eq!(saved.image_id(), "sha256:cd");
    }

    #[test]
    fn names_normalize_like_docker() -> Result<()> {
        assert_eq!(
            parse_reference("busybox")?.whole(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            parse_reference("127.0.0.1:5000/app:v1")?.whole(),
            "127.0.0.1:5000/app:v1"
        );
        assert!(matches!(
            parse_reference("Bad Name"),
            Err(ImageError::InvalidName { .. })
        ));
        assert!(
            is_local_registry("127.0.0.1:5000")
                && is_local_registry("localhost:5000")
                && is_local_registry("[::1]:5000")
        );
        assert!(!is_local_registry("docker.io") && !is_local_registry("10.0.0.1:5000"));
        Ok(())
    }
}
