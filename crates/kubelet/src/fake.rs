//! A recording fake of every seam (runtime, images, network, cgroups,
//! clock) for unit tests: it does nothing but note each call, in order, as
//! `"<seam>.<call> <arguments>"`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use skiff_runtime::cgroups::{PodResources, Usage};
use skiff_runtime::container::exec::{ExecOutput, ExecRequest, ExecSession};
use skiff_runtime::container::attach::AttachSession;
use skiff_runtime::container::{ContainerError, ContainerStdio};
use skiff_runtime::image::registries::{Credentials, RegistriesConfig};
use skiff_runtime::image::progress::Report;
use skiff_runtime::image::{Health, Image, ImageError};
use skiff_runtime::network::{Attachment, NetworkError, PodAddress};
use skiff_runtime::sandbox::{Sandbox, SandboxError, SandboxOptions};

use crate::seams::{Clock, ContainerRuntime, ImageService, PodCgroups, PodNetwork};

#[derive(Debug, Default)]
pub struct Recorder {
    /// Every call so far (read with [`Recorder::calls`]).
    pub calls: Mutex<Vec<String>>,
    /// Sandboxes `attached` reports.
    pub networks: Vec<String>,
    /// Pod cgroups `pod_cgroups` reports.
    pub pod_cgroups: Vec<String>,
    /// What `now` returns.
    pub now: Timestamp,
}

impl Recorder {
    fn note(&self, call: String) {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(call);
    }

    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

fn unsupported(what: &str) -> std::io::Error {
    std::io::Error::other(format!("the recording fake does not {what}"))
}

#[async_trait::async_trait]
impl ContainerRuntime for Recorder {
    fn name(&self) -> String {
        "fake".into()
    }
    fn start_sandbox(&self, hostname: &str, _: &SandboxOptions) -> Result<Sandbox, SandboxError> {
        self.note(format!("runtime.start_sandbox {hostname}"));
        Err(SandboxError::Spawn {
            binary: "fake".into(),
            source: unsupported("start sandboxes"),
        })
    }
    fn stop_sandbox(&self, sandbox: &Sandbox) {
        self.note(format!("runtime.stop_sandbox {}", sandbox.pid));
    }
    fn prepare_bundle(&self, bundle: &Path, _: &[PathBuf], _: &Value) -> Result<(), ContainerError> {
        self.note(format!("runtime.prepare_bundle {}", bundle.display()));
        Ok(())
    }
    fn start(&self, bundle: &Path, id: &str, _: &Path, _: ContainerStdio) -> Result<tokio::process::Child, ContainerError> {
        self.note(format!("runtime.start {id}"));
        Err(ContainerError::Io {
            path: bundle.display().to_string(),
            source: unsupported("start containers"),
        })
    }
    async fn attach(&self, bundle: &Path) -> Result<Option<AttachSession>, ContainerError> {
        self.note(format!("runtime.attach {}", bundle.display()));
        Ok(None)
    }
    async fn kill(&self, id: &str, signal: &str) -> Result<(), ContainerError> {
        self.note(format!("runtime.kill {id} {signal}"));
        Ok(())
    }
    async fn delete(&self, id: &str) -> Result<(), ContainerError> {
        self.note(format!("runtime.delete {id}"));
        Ok(())
    }
    fn remove_bundle(&self, bundle: &Path) -> Result<(), ContainerError> {
        self.note(format!("runtime.remove_bundle {}", bundle.display()));
        std::fs::remove_dir_all(bundle).map_err(|source| ContainerError::Io {
            path: bundle.display().to_string(),
            source,
        })
    }
    fn exec(&self, request: &ExecRequest) -> Result<ExecSession, ContainerError> {
        self.note(format!("runtime.exec {}", request.id));
        Err(ContainerError::Io {
            path: request.id.clone(),
            source: unsupported("exec"),
        })
    }
    async fn exec_output(&self, id: &str, command: &[String], _: Duration) -> Result<ExecOutput, ContainerError> {
        self.note(format!("runtime.exec_output {id} {}", command.join(" ")));
        Ok(ExecOutput {
            exit_code: 0,
            output: String::new(),
            timed_out: false,
        })
    }
}

#[async_trait::async_trait]
impl ImageService for Recorder {
    fn get(&self, name: &str) -> Result<Option<Image>, ImageError> {
        self.note(format!("images.get {name}"));
        Ok(None)
    }
    async fn pull(&self, name: &str, _: &RegistriesConfig, _: &Credentials, _: Report<'_>) -> Result<Image, ImageError> {
        self.note(format!("images.pull {name}"));
        Err(ImageError::Io {
            path: name.into(),
            source: unsupported("pull"),
        })
    }
    fn verify(&self, image: &Image) -> Result<Health, ImageError> {
        self.note(format!("images.verify {}", image.name));
        Ok(Health::Intact)
    }
    fn config(&self, image: &Image) -> Result<Value, ImageError> {
        self.note(format!("images.config {}", image.name));
        Ok(Value::Null)
    }
    fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        self.note(format!("images.layer_dirs {}", image.name));
        Ok(Vec::new())
    }
    fn layers_dir(&self) -> PathBuf {
        PathBuf::from("/nonexistent/layers")
    }
    fn has_layer(&self, _: &str) -> bool {
        true
    }
}

#[async_trait::async_trait]
impl PodNetwork for Recorder {
    async fn add(&self, attachment: &Attachment) -> Result<PodAddress, NetworkError> {
        self.note(format!("network.add {}", attachment.id));
        Err(NetworkError::Io {
            path: attachment.id.clone(),
            source: unsupported("attach networks"),
        })
    }
    async fn remove(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        self.note(format!("network.remove {sandbox_id}"));
        Ok(())
    }
    fn attached(&self) -> Vec<String> {
        self.networks.clone()
    }
    async fn configure(&self, pod_cidr: &str) -> Result<(), NetworkError> {
        self.note(format!("network.configure {pod_cidr}"));
        Ok(())
    }
}

impl PodCgroups for Recorder {
    fn ensure(&self, resources: &PodResources) -> std::io::Result<()> {
        self.note(format!("cgroups.ensure {}", resources.path));
        Ok(())
    }
    fn remove(&self, path: &str) {
        self.note(format!("cgroups.remove {path}"));
    }
    fn oom_killed(&self, _: &str) -> bool {
        false
    }
    fn pod_cgroups(&self) -> Vec<String> {
        self.pod_cgroups.clone()
    }
    fn usage(&self, _: &str) -> Option<Usage> {
        None
    }
    fn node_usage(&self) -> Option<Usage> {
        None
    }
}

impl Clock for Recorder {
    fn now(&self) -> Timestamp {
        self.now
    }
}
