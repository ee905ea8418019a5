//! The body of `skiff monitor`: one small process per container, as conmon
//! and containerd-shim are. It becomes the subreaper of the container, holds
//! the container's stdout/stderr pipes and writes them to the log in CRI
//! format (`<RFC3339Nano> stdout F <line>`), starts it through the OCI
//! runtime, and records when it started and how it ended in the bundle:
//! `started.json` and `exit.json`. It outlives the node agent, so a
//! restarted agent reads the same files.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Where a monitor finds what to run and where to write.
#[derive(Debug, Clone)]
pub struct MonitorArgs {
    /// runc or crun.
    pub runtime: PathBuf,
    /// The OCI runtime's state root (`--root`).
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub id: String,
    pub log: PathBuf,
}

/// What `started.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub pid: u32,
    #[serde(rename = "startedAt")]
    pub started_at: String,
}

/// What `exit.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exited {
    #[serde(rename = "exitCode")]
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    #[serde(rename = "finishedAt")]
    pub finished_at: String,
    /// Set when the container never ran: the runtime's complaint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Kubernetes' timestamp format with nanoseconds (CRI logs).
pub fn now_rfc3339_nano() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    fs::write(
        &partial,
        serde_json::to_vec(value).map_err(std::io::Error::other)?,
    )?;
    fs::rename(&partial, path)
}

/// The last error line the runtime logged (`--log`, JSON lines), for `exit.json`.
fn runtime_error(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["level"] == "error")
        .and_then(|l| l["msg"].as_str().map(str::to_string))
        .unwrap_or_else(|| "the OCI runtime failed to create the container".to_string())
}

/// Copies one stream into the CRI log, a line at a time; a line longer than
/// the buffer is written in `P` (partial) pieces.
fn copy_stream(mut input: impl Read, stream: &'static str, log: Arc<Mutex<fs::File>>) {
    const MAX_LINE: usize = 16 * 1024;
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 8192];
    let emit = |tag: &str, line: &[u8]| {
        let mut record = format!("{} {stream} {tag} ", now_rfc3339_nano()).into_bytes();
        record.extend_from_slice(line);
        record.push(b'\n');
        if let Ok(mut file) = log.lock() {
            let _ = file.write_all(&record);
        }
    };
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            emit("F", &pending[..end]);
            pending.drain(..=end);
        }
        while pending.len() >= MAX_LINE {
            emit("P", &pending[..MAX_LINE]);
            pending.drain(..MAX_LINE);
        }
    }
    if !pending.is_empty() {
        emit("F", &pending);
    }
}

fn exit_record(code: i32, signal: Option<i32>, error: Option<String>) -> Exited {
    Exited {
        exit_code: code,
        signal,
        finished_at: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        error,
    }
}

/// Runs one container to completion. Errors of the monitor itself are
/// returned; the container's fate is written to `exit.json`.
pub fn monitor(args: &MonitorArgs) -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
    let exit_path = args.bundle.join("exit.json");
    let runtime_log = args.bundle.join("runtime.log");
    let pid_file = args.bundle.join("container.pid");
    if let Some(parent) = args.log.parent() {
        fs::create_dir_all(parent)?;
    }
    let log = Arc::new(Mutex::new(
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.log)?,
    ));
    let (out_read, out_write) = std::io::pipe()?;
    let (err_read, err_write) = std::io::pipe()?;
    let created = Command::new(&args.runtime)
        .arg("--root")
        .arg(&args.root)
        .arg("--log")
        .arg(&runtime_log)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(out_write)
        .stderr(err_write)
        .status()?;
    // Each reader says when its pipe is drained.
    let (drained, readers_done) = std::sync::mpsc::channel::<()>();
    for (pipe, stream) in [(out_read, "stdout"), (err_read, "stderr")] {
        let (log, drained) = (log.clone(), drained.clone());
        std::thread::spawn(move || {
            copy_stream(pipe, stream, log);
            let _ = drained.send(());
        });
    }
    drop(drained);
    if !created.success() {
        return write_json_atomically(
            &exit_path,
            &exit_record(128, None, Some(runtime_error(&runtime_log))),
        );
    }
    let pid: i32 = fs::read_to_string(&pid_file)?
        .trim()
        .parse()
        .map_err(std::io::Error::other)?;
    let started = Command::new(&args.runtime)
        .arg("--root")
        .arg(&args.root)
        .arg("start")
        .arg(&args.id)
        .stdin(Stdio::null())
        .status()?;
    if !started.success() {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
        return write_json_atomically(
            &exit_path,
            &exit_record(128, None, Some(runtime_error(&runtime_log))),
        );
    }
    write_json_atomically(
        &args.bundle.join("started.json"),
        &Started {
            pid: pid as u32,
            started_at: jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        },
    )?;
    let (code, signal) = loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => break (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                break (128 + sig as i32, Some(sig as i32))
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break (255, None),
        }
    };
    // Output still buffered in the pipes belongs to this run; a daemon that
    // kept the pipes open does not hold the exit record back for long.
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if readers_done.recv_timeout(left).is_err() {
            break;
        }
    }
    write_json_atomically(&exit_path, &exit_record(code, signal, None))
}
