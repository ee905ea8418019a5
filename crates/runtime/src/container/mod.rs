//! Containers through a real OCI runtime (crun or runc): a bundle per
//! container whose rootfs is an overlay over the image's shared layers, run
//! under its own `skiff monitor` process.

pub mod attach;
pub mod exec;
pub mod seccomp;
pub mod monitor;
pub mod spec;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::Value;

pub use monitor::{Exited, MonitorArgs, Started, Stdio as ContainerStdio};

/// What can go wrong with a container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("invalid OCI config: {0}")]
    InvalidConfig(String),
    #[error("failed to mount the rootfs of {bundle}")]
    Mount { bundle: String, source: nix::Error },
    #[error("{runtime} {command} {id} failed: {message}")]
    Runtime {
        runtime: String,
        command: String,
        id: String,
        message: String,
    },
    #[error("i/o error on {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, ContainerError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError + '_ {
    move |source| ContainerError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Picks the OCI runtime: `explicit` if given, else crun on a pure cgroup v2
/// host, else runc (crun 1.8 refuses v1 and hybrid layouts).
pub fn detect_runtime(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    let find = |name: &str| {
        [
            "/usr/local/bin",
            "/usr/local/sbin",
            "/usr/bin",
            "/usr/sbin",
            "/bin",
            "/sbin",
        ]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
    };
    let crun = find("crun").filter(|_| crate::cgroups::is_v2());
    crun.or_else(|| find("runc"))
}

/// An OCI runtime binary plus where its state and our monitors live.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    pub binary: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    /// The `skiff` binary (for `skiff monitor`).
    pub skiff: PathBuf,
}

impl OciRuntime {
    /// `crun` or `runc`, for container IDs (`crun://<id>`).
    pub fn name(&self) -> String {
        self.binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runc".into())
    }

    /// Makes `bundle/` with `config.json` and an overlay rootfs over
    /// `layers` (bottom first).
    pub fn prepare_bundle(&self, bundle: &Path, layers: &[PathBuf], config: &Value) -> Result<()> {
        spec::validate(config).map_err(ContainerError::InvalidConfig)?;
        let rootfs = bundle.join("rootfs");
        for dir in [bundle.join("upper"), bundle.join("work"), rootfs.clone()] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|l| l.display().to_string())
            .collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            bundle.join("upper").display(),
            bundle.join("work").display()
        );
        if needs_host_propagation(config) {
            mount(
                Some("overlay"),
                &rootfs,
                Some("overlay"),
                MsFlags::empty(),
                Some(options.as_str()),
            )
            .map_err(|source| ContainerError::Mount {
                bundle: bundle.display().to_string(),
                source,
            })?;
        } else {
            // Mounted at start in the monitor's own mount namespace.
            let path = bundle.join(PRIVATE_ROOTFS);
            std::fs::write(&path, &options).map_err(io_err(&path))?;
        }
        // The config holds the container's environment (Secrets among it).
        let path = bundle.join("config.json");
        write_owner_only(&path, config.to_string().as_bytes()).map_err(io_err(&path))
    }

    /// Starts the container under a new `skiff monitor`; the returned child
    /// exits when the container has. `stdio` must match the bundle's
    /// `process.terminal`.
    pub fn start(
        &self,
        bundle: &Path,
        id: &str,
        log: &Path,
        stdio: ContainerStdio,
    ) -> Result<tokio::process::Child> {
        let mut command = tokio::process::Command::new(&self.skiff);
        command
            .arg("monitor")
            .arg("--runtime")
            .arg(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .arg("--bundle")
            .arg(bundle)
            .arg("--id")
            .arg(id)
            .arg("--log")
            .arg(log);
        for (flag, set) in [
            ("--stdin", stdio.stdin),
            ("--stdin-once", stdio.stdin_once),
            ("--tty", stdio.tty),
        ] {
            if set {
                command.arg(flag);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        command.spawn().map_err(io_err(&self.skiff))
    }

    /// Runs `<runtime> --root <root> <command> <id> <extra...>`.
    async fn run(&self, command: &str, id: &str, extra: &[&str]) -> Result<()> {
        let output = tokio::process::Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .arg(command)
            .arg(id)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(io_err(&self.binary))?;
        if output.status.success() {
            return Ok(());
        }
        Err(ContainerError::Runtime {
            runtime: self.name(),
            command: [command]
                .iter()
                .chain(extra)
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            id: id.to_string(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the container's init.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        self.run("kill", id, &[signal]).await
    }

    /// Sends `signal` to a container's init without spawning the runtime:
    /// straight to the pid its monitor recorded in `started.json`, while
    /// that process is still the monitor's child; otherwise, or for a
    /// signal without a name here, `<runtime> kill`.
    pub async fn signal_init(&self, id: &str, bundle: &Path, monitor_pid: u32, signal: &str) -> Result<()> {
        let started: Option<monitor::Started> = read_state(bundle, "started.json");
        if let (Some(started), Some(number)) = (started, signal_number(signal)) {
            match crate::process::signal_child_of(started.pid, monitor_pid, number) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => tracing::debug!(container = id, %error, "cannot signal the container's init directly; asking the runtime"),
            }
        }
        self.kill(id, signal).await
    }

    /// Forgets a stopped container (idempotent).
    pub async fn delete(&self, id: &str) -> Result<()> {
        match self.run("delete", id, &["--force"]).await {
            Err(ContainerError::Runtime { message, .. })
                if message.contains("does not exist") || message.contains("not found") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Unmounts the rootfs and removes the bundle (idempotent).
    pub fn remove_bundle(&self, bundle: &Path) -> Result<()> {
        let rootfs = bundle.join("rootfs");
        match umount2(&rootfs, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(source) => {
                return Err(ContainerError::Mount {
                    bundle: bundle.display().to_string(),
                    source,
                })
            }
        }
        match std::fs::remove_dir_all(bundle) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(bundle)(e)),
        }
    }
}

/// In a bundle: the rootfs overlay's options, when the overlay is mounted
/// in the monitor's own mount namespace rather than the host's.
pub(crate) const PRIVATE_ROOTFS: &str = "rootfs.overlay";

/// Whether a container needs host mounts to propagate into it
/// (`HostToContainer`, `Bidirectional`): then its rootfs is mounted where
/// the host's mounts reach it, in the host's namespace.
///
/// Otherwise the overlay lives in a private mount namespace of the
/// container's monitor and goes with it. Every runtime invocation reads the
/// whole mount table of its namespace (runc's cgroup and rootfs lookups),
/// so a host table holding every pod's overlay makes each pod start cost
/// more as pods are added (measured: ~16 ms more CPU per `runc run` per
/// 1,000 mounts).
fn needs_host_propagation(config: &Value) -> bool {
    let propagating = |option: &Value| {
        matches!(option.as_str(), Some("rslave" | "slave" | "rshared" | "shared"))
    };
    config["linux"]["rootfsPropagation"].is_string()
        || config["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["options"].as_array().into_iter().flatten().any(propagating))
}

/// For the monitor, while it is single-threaded: if the bundle's overlay
/// is to be private, a mount namespace of its own (private: nothing mounted
/// on the host later reaches it, nothing here leaks out) with the overlay
/// mounted in it. Runs once per monitor, before the runtime.
pub(crate) fn mount_rootfs_privately(bundle: &Path) -> Result<()> {
    let private = bundle.join(PRIVATE_ROOTFS);
    let options = match std::fs::read_to_string(&private) {
        Ok(options) => options,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_err(&private)(error)),
    };
    let failed = |source| ContainerError::Mount {
        bundle: bundle.display().to_string(),
        source,
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(failed)?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(failed)?;
    mount(
        Some("overlay"),
        &bundle.join("rootfs"),
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(failed)
}

/// A signal as runc takes it (`TERM`, `SIGTERM`, `15`) as its number.
pub fn signal_number(signal: &str) -> Option<i32> {
    if let Ok(number) = signal.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(number).ok().map(|s| s as i32);
    }
    let name = signal.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<nix::sys::signal::Signal>().ok().map(|s| s as i32)
}

/// Unmounts every mount point under `dir` (a pod's memory-backed
/// volumes); returns the ones that failed.
pub fn unmount_all_under(dir: &Path) -> Vec<(String, nix::Error)> {
    let prefix = dir.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.starts_with(&prefix))
        .filter_map(|m| {
            umount2(m, MntFlags::MNT_DETACH)
                .err()
                .map(|e| (m.to_string(), e))
        })
        .collect()
}

/// Unmounts the mount points directly under `dir` (a pod's memory-backed
/// volumes: each a tmpfs, on a device of its own); returns the ones that
/// failed. Stats each entry instead of reading the host's mount table,
/// which grows with every pod on the node.
pub fn unmount_children(dir: &Path) -> Vec<(String, nix::Error)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(parent) = std::fs::metadata(dir) else {
        return Vec::new();
    };
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(std::io::Result::ok)
        .map(|entry| entry.path())
        .filter(|path| std::fs::metadata(path).is_ok_and(|m| m.is_dir() && m.dev() != parent.dev()))
        .filter_map(|path| {
            umount2(&path, MntFlags::MNT_DETACH)
                .err()
                .map(|e| (path.display().to_string(), e))
        })
        .collect()
}

/// Whether `dir` is a mount point of a different filesystem than its
/// parent's (a tmpfs volume), without reading the host's mount table.
pub fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = dir.parent() else {
        return true;
    };
    match (std::fs::metadata(dir), std::fs::metadata(parent)) {
        (Ok(dir), Ok(parent)) => dir.dev() != parent.dev(),
        _ => false,
    }
}

/// Reads `started.json` / `exit.json` of a bundle.
pub fn read_state<T: serde::de::DeserializeOwned>(bundle: &Path, file: &str) -> Option<T> {
    std::fs::read(bundle.join(file))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Writes a file only its owner (root) can read.
fn write_owner_only(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_propagating_volumes_keep_the_rootfs_in_the_host_namespace() {
        let bind = |options: serde_json::Value| {
            serde_json::json!({"mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/srv", "options": options},
            ]})
        };
        for (config, host) in [
            (serde_json::json!({}), false),
            (bind(serde_json::json!(["rbind", "rprivate", "ro"])), false),
            (bind(serde_json::json!(["rbind", "rslave"])), true),
            (bind(serde_json::json!(["rbind", "rshared"])), true),
            (serde_json::json!({"linux": {"rootfsPropagation": "rslave"}}), true),
        ] {
            assert_eq!(needs_host_propagation(&config), host, "{config}");
        }
    }

    /// Mounts a tmpfs (as root, as the node agent runs); the mount is gone
    /// when the test ends, passing or not.
    #[test]
    fn tmpfs_volumes_are_found_and_unmounted_without_the_mount_table() -> std::io::Result<()> {
        let volumes = tempfile::tempdir()?;
        let tmpfs = volumes.path().join("tokens");
        let plain = volumes.path().join("scratch");
        std::fs::create_dir_all(&tmpfs)?;
        std::fs::create_dir_all(&plain)?;
        mount(Some("tmpfs"), &tmpfs, Some("tmpfs"), MsFlags::empty(), None::<&str>).map_err(std::io::Error::from)?;
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = umount2(&self.0, MntFlags::MNT_DETACH);
            }
        }
        let _guard = Unmount(tmpfs.clone());
        assert!(is_mount_point(&tmpfs));
        assert!(!is_mount_point(&plain));
        assert!(unmount_children(volumes.path()).is_empty());
        assert!(!is_mount_point(&tmpfs), "unmounted");
        assert!(unmount_children(volumes.path()).is_empty(), "nothing left to unmount");
        Ok(())
    }

    #[test]
    fn signals_by_name_or_number() {
        for (given, want) in [("TERM", Some(15)), ("SIGKILL", Some(9)), ("sigquit", Some(3)), ("2", Some(2)), ("SIGRTMIN+3", None), ("NOPE", None), ("0", None)] {
            assert_eq!(signal_number(given), want, "{given}");
        }
    }

    #[test]
    fn only_a_child_of_the_named_parent_is_signalled() -> std::io::Result<()> {
        let mut child = std::process::Command::new("sleep").arg("30").spawn()?;
        let me = std::process::id();
        // Not its parent: refused, and the child lives on.
        assert!(!crate::process::signal_child_of(child.id(), me + 1, 15)?);
        assert!(child.try_wait()?.is_none());
        assert!(crate::process::signal_child_of(child.id(), me, 15)?);
        let status = child.wait()?;
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(15));
        // Gone (reaped): nothing to signal.
        assert!(!crate::process::signal_child_of(child.id(), me, 15)?);
        Ok(())
    }
}
