//! Why a step of a pod's sync failed, and the status reason and event that
//! say so (upstream's `CreateContainerConfigError`, `ErrImagePull`, ...).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    /// The container's configuration cannot be honoured as given.
    #[error("{message}")]
    Config { container: String, message: String },
    /// Creating or starting the container failed.
    #[error("{message}")]
    Create { container: String, message: String },
    /// Preparing a file or directory the container needs failed.
    #[error("failed to prepare {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The pod's sandbox process is gone: the pod needs a new sandbox.
    #[error("the pod sandbox is gone")]
    SandboxGone,
    /// The sandbox (namespaces, cgroup, network) could not be made.
    #[error("Failed to create pod sandbox: {message}")]
    Sandbox { pod: String, message: String },
    /// A volume could not be set up for the container; it waits in
    /// `ContainerCreating` (event `FailedMount`), as upstream.
    #[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
    Mount { volume: String, message: String },
    /// The image is not available: `reason` is the waiting reason
    /// (`ErrImagePull`, `InvalidImageName`, `ErrImageNeverPull`).
    #[error("{message}")]
    Image {
        image: String,
        reason: &'static str,
        message: String,
    },
}

impl StepError {
    /// The container's waiting reason while this error stands.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::Config { .. } => "CreateContainerConfigError",
            Self::Create { .. } | Self::Io { .. } | Self::SandboxGone => "CreateContainerError",
            Self::Sandbox { .. } => "FailedCreatePodSandBox",
            Self::Mount { .. } => "ContainerCreating",
            Self::Image { reason, .. } => reason,
        }
    }

    /// The event that reports it on the container (reason, message).
    pub(super) fn event(&self) -> (&'static str, String) {
        match self {
            Self::Mount { .. } => ("FailedMount", self.to_string()),
            _ => ("Failed", format!("Error: {self}")),
        }
    }

    pub(super) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_upstream_reasons() {
        let cases = [
            (
                StepError::Config {
                    container: "c".into(),
                    message: "container has runAsNonRoot and image will run as root".into(),
                },
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            ),
            (
                StepError::Create {
                    container: "c".into(),
                    message: "no command specified".into(),
                },
                "CreateContainerError",
                "no command specified",
            ),
            (StepError::SandboxGone, "CreateContainerError", "the pod sandbox is gone"),
            (
                StepError::Sandbox {
                    pod: "default/p".into(),
                    message: "pod cgroup: denied".into(),
                },
                "FailedCreatePodSandBox",
                "Failed to create pod sandbox: pod cgroup: denied",
            ),
            (
                StepError::Image {
                    image: "x".into(),
                    reason: "ErrImageNeverPull",
                    message: "Container image \"x\" is not present with pull policy of Never".into(),
                },
                "ErrImageNeverPull",
                "Container image \"x\" is not present with pull policy of Never",
            ),
            (
                StepError::Mount {
                    volume: "config".into(),
                    message: "configmap \"settings\" not found".into(),
                },
                "ContainerCreating",
                "MountVolume.SetUp failed for volume \"config\" : configmap \"settings\" not found",
            ),
            (
                StepError::io("/pods/p/c")(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
                "CreateContainerError",
                "failed to prepare /pods/p/c: permission denied",
            ),
        ];
        for (error, reason, message) in cases {
            assert_eq!(error.reason(), reason, "{error:?}");
            assert_eq!(error.to_string(), message, "{error:?}");
        }
    }
}
