//! Pulling from registries into the store: every place a reference may be
//! pulled from (mirrors, then the registry), progress as it goes, and a
//! registry's "not found" with the tags it has.

use std::fs;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};

use super::progress::{self, CountingWriter, Progress, Report};
use super::registries::{sources, Credentials, PullSource, RegistriesConfig};
use super::store::{io_err, parse_reference, Image, ImageError, ImageStore, Layer, Result};

/// A registry's "no such manifest/repository", as opposed to not reaching it.
fn is_not_found(error: &ImageError) -> bool {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode as Code};
    match error {
        ImageError::Pull { source, .. } => match source {
            E::ImageManifestNotFoundError(_) => true,
            E::ServerError { code, .. } => *code == 404,
            E::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, Code::ManifestUnknown | Code::NameUnknown | Code::NotFound)),
            _ => false,
        },
        _ => false,
    }
}

/// A registry client for one pull source.
fn client_for(source: &PullSource) -> Client {
    super::ensure_crypto_provider();
    Client::new(ClientConfig {
        protocol: if source.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: source.accept_invalid_certs,
        platform_resolver: Some(Box::new(oci_client::client::current_platform_resolver)),
        ..Default::default()
    })
}

impl ImageStore {
    /// Pulls `name` from its registry; layers already present are not fetched again.
    pub async fn pull(
        &self,
        name: &str,
        config: &RegistriesConfig,
        credentials: &Credentials,
    ) -> Result<Image> {
        self.pull_reporting(name, config, credentials, &progress::ignore).await
    }

    /// [`ImageStore::pull`], saying how far it got as it goes.
    pub async fn pull_reporting(
        &self,
        name: &str,
        config: &RegistriesConfig,
        credentials: &Credentials,
        report: Report<'_>,
    ) -> Result<Image> {
        let reference = parse_reference(name)?;
        let mut last_error = None;
        // A registry that answered "no such tag" says more than a later
        // fallback that could not be reached.
        let mut not_found = None;
        for source in sources(&reference, config, credentials) {
            match self.pull_from(name, &reference, &source, report).await {
                Ok(image) => return Ok(image),
                Err(error) => {
                    tracing::debug!(image = name, from = %source.reference.whole(), %error, "pull attempt failed");
                    if not_found.is_none() && is_not_found(&error) {
                        not_found = Some(source);
                    }
                    last_error = Some(error);
                }
            }
        }
        if let Some(source) = not_found {
            let tags = match client_for(&source)
                .list_tags(&source.reference, &source.auth, None, None)
                .await
            {
                Ok(listed) => listed.tags,
                Err(error) => {
                    tracing::debug!(image = name, %error, "cannot list the repository's tags");
                    Vec::new()
                }
            };
            return Err(ImageError::NotFound {
                image: name.to_string(),
                reference: source.reference.whole(),
                tags,
            });
        }
        Err(last_error.unwrap_or_else(|| ImageError::InvalidName {
            name: name.to_string(),
            reason: "no registry to pull from".into(),
        }))
    }

    /// Pulls from one source; the image is recorded under `reference`'s name.
    async fn pull_from(
        &self,
        name: &str,
        reference: &Reference,
        source: &PullSource,
        report: Report<'_>,
    ) -> Result<Image> {
        let auth = &source.auth;
        let original = reference;
        let reference = &source.reference;
        let client = client_for(source);
        let pull_err = |source| ImageError::Pull {
            image: name.to_string(),
            source,
        };
        let (manifest, digest, config_json, list_digest) = client
            .pull_manifest_and_config_and_list_digest(reference, auth)
            .await
            .map_err(pull_err)?;
        let config_path = self.scratch("config");
        fs::write(&config_path, config_json.as_bytes()).map_err(io_err(&config_path))?;
        self.commit_blob(&config_path, &manifest.config.digest, "image config")?;
        // Each layer, and whether its blob will be here when it is reached
        // (stored already, or an earlier layer of the same digest): the
        // total to fetch is known before the first byte.
        let mut planned: Vec<(_, Layer, bool)> = Vec::new();
        for descriptor in &manifest.layers {
            let layer = Layer {
                digest: descriptor.digest.clone(),
                media_type: descriptor.media_type.clone(),
                size: u64::try_from(descriptor.size).unwrap_or(0),
            };
            let stored = planned.iter().any(|(_, earlier, _)| earlier.digest == layer.digest)
                || self.blob_path(&layer.digest)?.exists();
            planned.push((descriptor, layer, stored));
        }
        report(Progress::Started {
            layers: planned.len(),
            bytes: planned.iter().filter(|(_, _, stored)| !stored).map(|(_, l, _)| l.size).sum(),
        });
        let mut layers = Vec::new();
        let mut fetched_bytes = 0;
        for (index, (descriptor, layer, stored)) in planned.into_iter().enumerate() {
            report(Progress::Layer {
                index: index + 1,
                digest: layer.digest.clone(),
                size: layer.size,
                stored,
            });
            if !stored {
                let partial = self.scratch("layer");
                let file = tokio::fs::File::create(&partial)
                    .await
                    .map_err(io_err(&partial))?;
                let mut writer = CountingWriter::new(tokio::io::BufWriter::new(file), fetched_bytes, report);
                let fetched = client.pull_blob(reference, descriptor, &mut writer).await;
                let flushed = tokio::io::AsyncWriteExt::flush(&mut writer).await;
                fetched_bytes = writer.done();
                if let Err(error) = fetched {
                    let _ = fs::remove_file(&partial);
                    return Err(pull_err(error));
                }
                flushed.map_err(io_err(&partial))?;
                self.commit_blob(&partial, &layer.digest, "layer")?;
            }
            self.unpack(name, &layer)?;
            layers.push(layer);
        }
        let repo_digest = list_digest.unwrap_or(digest);
        self.record(Image {
            name: original.whole(),
            repo_digest,
            config: manifest.config.digest.clone(),
            layers,
        })
    }
}
