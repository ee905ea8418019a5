//! Images for a pod's containers: pull policy, pull secrets, the store's
//! integrity before use and under running containers.

use super::*;

impl Worker {
    /// Makes sure the image is present, honouring imagePullPolicy.
    pub(super) async fn ensure_image(&mut self, container: &Container) -> Result<Image, StepError> {
        // Read (and report missing) pull secrets on every attempt, as upstream.
        let credentials = self.pull_credentials().await;
        let image = container.image.clone().unwrap_or_default();
        let policy = container
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| skiff_api::pod::default_pull_policy(&image).to_string());
        let field = self.field_path(&container.name);
        let present = match self.agent.images.get(&image) {
            Ok(present) => present,
            Err(ImageError::InvalidName { reason, .. }) => {
                let message = format!("Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: {reason}");
                self.event(EventType::Warning, "InspectFailed", &message, field)
                    .await;
                return Err(StepError::Image {
                    image,
                    reason: "InvalidImageName",
                    message,
                });
            }
            Err(error) => {
                return Err(StepError::Image {
                    image,
                    reason: "ErrImagePull",
                    message: error.to_string(),
                })
            }
        };
        let present = match present {
            Some(found) => self.check_image(found, field.clone()).await?,
            None => None,
        };
        match (policy.as_str(), present) {
            ("Never", Some(found)) | ("IfNotPresent", Some(found)) => {
                self.event(
                    EventType::Normal,
                    "Pulled",
                    &format!("Container image {image:?} already present on machine"),
                    field,
                )
                .await;
                return Ok(found);
            }
            ("Never", None) => {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.event(EventType::Warning, "ErrImageNeverPull", &message, field)
                    .await;
                return Err(StepError::Image {
                    image,
                    reason: "ErrImageNeverPull",
                    message,
                });
            }
            _ => {}
        }
        self.event(
            EventType::Normal,
            "Pulling",
            &format!("Pulling image {image:?}"),
            field.clone(),
        )
        .await;
        let started = std::time::Instant::now();
        let pod = self.key.to_string();
        let log = PullLog::new(&pod, &image);
        match self
            .agent
            .images
            .pull(&image, &self.agent.registries, &credentials, &|step| log.see(step))
            .await
        {
            Ok(pulled) => {
                let took = started.elapsed().as_secs_f64();
                let message = format!("Successfully pulled image {image:?} in {took:.3}s ({took:.3}s including waiting). Image size: {} bytes.", pulled.size());
                self.event(EventType::Normal, "Pulled", &message, field)
                    .await;
                Ok(pulled)
            }
            Err(error) => {
                // The registry's own words, without repeating what failed.
                let detail = match &error {
                    ImageError::Pull { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                let hint = match &error {
                    ImageError::NotFound { tags, .. } => crate::hints::image_not_found(&image, tags),
                    _ => None,
                };
                let message = match hint {
                    Some(hint) => format!("Failed to pull image {image:?}: {detail}; {hint}"),
                    None => format!("Failed to pull image {image:?}: {detail}"),
                };
                self.event(EventType::Warning, "Failed", &message, field.clone())
                    .await;
                self.event(EventType::Warning, "Failed", "Error: ErrImagePull", field)
                    .await;
                Err(StepError::Image {
                    image,
                    reason: "ErrImagePull",
                    message,
                })
            }
        }
    }

    /// Verifies a stored image before a container uses it: damaged layers
    /// are mended from their blobs, or the image counts as absent (and is
    /// pulled again as the policy allows); either is said in an event.
    pub(super) async fn check_image(
        &self,
        image: Image,
        field: Option<String>,
    ) -> Result<Option<Image>, StepError> {
        let agent = self.agent.clone();
        let checked = image.clone();
        let failed = |message: String| StepError::Image {
            image: image.name.clone(),
            reason: "ErrImagePull",
            message,
        };
        let health = tokio::task::spawn_blocking(move || agent.images.verify(&checked))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        let name = &image.name;
        match health {
            Health::Intact => Ok(Some(image)),
            Health::Mended(layers) => {
                let message = format!("Container image {name:?} was damaged in the node's image store (layers {} changed or missing); they were unpacked again from their blobs", layers.join(", "));
                tracing::warn!(pod = %self.key, image = %name, "{message}");
                self.event(EventType::Warning, "ImageDamaged", &message, field)
                    .await;
                Ok(Some(image))
            }
            Health::Damaged(problem) => {
                let message = format!("Container image {name:?} is damaged in the node's image store: {problem}; it counts as not present");
                tracing::warn!(pod = %self.key, image = %name, "{message}");
                self.event(EventType::Warning, "ImageDamaged", &message, field)
                    .await;
                Ok(None)
            }
        }
    }

    /// Credentials from the pod's `imagePullSecrets` (dockerconfigjson);
    /// a missing secret is reported, and the pull goes on without it.
    pub(super) async fn pull_credentials(&self) -> Credentials {
        let mut credentials = Credentials::default();
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.agent.client.clone(), &namespace);
        let names: Vec<String> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .collect();
        let mut missing = Vec::new();
        for name in names {
            match api.get(&name).await {
                Ok(secret) => {
                    let data = secret.data.unwrap_or_default();
                    let config = data
                        .get(".dockerconfigjson")
                        .or_else(|| data.get(".dockercfg"));
                    if let Some(bytes) = config {
                        if let Err(error) = credentials.add_docker_config(&bytes.0) {
                            tracing::warn!(pod = %self.key, secret = %name, %error, "unreadable pull secret");
                        }
                    }
                }
                Err(_) => missing.push(name),
            }
        }
        if !missing.is_empty() {
            let message = format!("Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.", missing.join(", "));
            self.event(
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                &message,
                None,
            )
            .await;
        }
        credentials
    }

    /// A layer was removed from the image store: containers whose rootfs
    /// uses it no longer see their files. Said in an event, and they are
    /// killed, to start again (per restartPolicy) on a verified image.
    pub(super) async fn on_layer_removed(&mut self, digest: &str) {
        let hit: Vec<(String, String)> = self
            .live
            .iter()
            .filter(|(_, live)| live.layers.iter().any(|l| l == digest))
            .map(|(name, live)| (name.clone(), live.image.clone()))
            .collect();
        for (name, image) in hit {
            let message = format!("Layer {digest} of container image {image:?} was removed from the node's image store while container {name} ran; the container is killed and started again on a verified image");
            tracing::warn!(pod = %self.key, container = %name, "{message}");
            self.container_event(&name, EventType::Warning, "ImageDamaged", &message)
                .await;
            if let Some(live) = self.live.get(&name) {
                if let Err(error) = self.agent.runtime.kill(&live.id, "KILL").await {
                    tracing::warn!(pod = %self.key, container = %name, %error, "failed to kill the container");
                }
            }
        }
    }

    /// After missed removal notices: every running container's layers are
    /// looked at directly.
    pub(super) async fn check_live_layers(&mut self) {
        let missing: Vec<String> = self
            .live
            .values()
            .flat_map(|live| live.layers.iter())
            .filter(|digest| !self.agent.images.has_layer(digest))
            .cloned()
            .collect();
        for digest in missing {
            self.on_layer_removed(&digest).await;
        }
    }
}

/// Pulls this big say how far they got in the agent's log.
const BIG_PULL: u64 = 32 * 1024 * 1024;

/// Log lines for a big pull: what it fetches, then each tenth.
struct PullLog<'a> {
    pod: &'a str,
    image: &'a str,
    state: std::sync::Mutex<(u64, skiff_runtime::image::progress::Marks)>,
}

impl<'a> PullLog<'a> {
    fn new(pod: &'a str, image: &'a str) -> Self {
        Self {
            pod,
            image,
            state: std::sync::Mutex::new((0, skiff_runtime::image::progress::Marks::every(10))),
        }
    }

    fn see(&self, step: skiff_runtime::image::Progress) {
        use skiff_runtime::image::Progress;
        const MIB: f64 = 1024.0 * 1024.0;
        let Ok(mut state) = self.state.lock() else { return };
        let (total, marks) = &mut *state;
        match step {
            Progress::Started { layers, bytes } if bytes >= BIG_PULL => {
                *total = bytes;
                tracing::info!(pod = %self.pod, image = %self.image, layers, mib = format!("{:.1}", bytes as f64 / MIB), "pulling a big image");
            }
            Progress::Bytes { done } if *total > 0 => {
                if let Some(percent) = marks.passed(done, *total) {
                    tracing::info!(pod = %self.pod, image = %self.image, percent, mib = format!("{:.1} of {:.1}", done as f64 / MIB, *total as f64 / MIB), "pulling");
                }
            }
            _ => {}
        }
    }
}
