//! The body of `skiff monitor`: one small process per container, as conmon
//! and containerd-shim are. It becomes the subreaper of the container, holds
//! the container's stdout/stderr pipes and writes them to the log in CRI
//! format (`<RFC3339Nano> stdout F <line>`), starts it through the OCI
//! runtime, and records when it started and how it ended in the bundle:
//! `started.json` and `exit.json`. It outlives the node agent, so a
//! restarted agent reads the same files. A container with `stdin` or `tty`
//! gets its stdin (a pipe, or a terminal the runtime hands over on the
//! console socket) from the monitor, which keeps it open for attach
//! sessions (see `attach`).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio as ChildStdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::attach;

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
    pub stdio: Stdio,
}

/// A container's `stdin`, `stdinOnce` and `tty`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

impl Stdio {
    /// Whether the monitor keeps an input side for attach.
    pub fn attachable(&self) -> bool {
        self.stdin || self.tty
    }
}

/// The runtime's console socket, in the bundle (the monitor's cwd).
const CONSOLE_SOCKET: &str = "console.sock";

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

/// Copies one stream into the CRI log, a line at a time. What a read
/// leaves without a newline is written at once as a `P` (partial) record,
/// as conmon does: a prompt reaches an attached terminal before its line
/// ends.
fn copy_stream(mut input: impl Read, stream: &'static str, log: Arc<Mutex<fs::File>>) {
    const MAX_LINE: usize = 16 * 1024;
    let mut buffer = [0u8; 8192];
    let emit = |tag: &str, line: &[u8]| {
        let mut record = format!("{} {stream} {tag} ", now_rfc3339_nano()).into_bytes();
        record.extend_from_slice(line);
        record.push(b'\n');
        if let Ok(mut file) = log.lock() {
            let _ = file.write_all(&record);
        }
    };
    let mut line_open = false;
    loop {
        let n = match input.read(&mut buffer) {
            // A terminal whose other side closed reads EIO.
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &buffer[..n];
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            emit("F", &rest[..end]);
            rest = &rest[end + 1..];
        }
        for piece in rest.chunks(MAX_LINE) {
            emit("P", piece);
        }
        line_open = !rest.is_empty();
    }
    // A last line without a newline still ends (containerd writes it `F`).
    if line_open {
        emit("F", b"");
    }
}

/// The terminal's master, as the runtime sends it on the console socket.
fn receive_terminal(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let (stream, _) = listener.accept()?;
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    rustix::net::recvmsg(
        &stream,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(std::io::Error::other("the runtime sent no terminal"))
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
    // Sockets live in the bundle, named relative to it: a socket path must
    // fit in 108 bytes and a data dir may be deep.
    std::env::set_current_dir(&args.bundle)?;
    // Before any thread: unshare(CLONE_NEWNS) refuses a threaded process.
    if let Err(error) = super::mount_rootfs_privately(&args.bundle) {
        return write_json_atomically(
            &exit_path,
            &exit_record(128, None, Some(format!("cannot mount the container's root filesystem: {error}"))),
        );
    }
    let console = if args.stdio.tty {
        let _ = fs::remove_file(CONSOLE_SOCKET);
        Some(UnixListener::bind(CONSOLE_SOCKET)?)
    } else {
        None
    };
    let mut create = Command::new(&args.runtime);
    create
        .arg("--root")
        .arg(&args.root)
        .arg("--log")
        .arg(&runtime_log)
        // One runtime invocation creates and starts the container (`run
        // --detach` is `create` + `start`): each runtime exec is a Go or C
        // program's start-up on the pod's critical path.
        .args(["--log-format", "json", "run", "--detach", "--bundle"])
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&args.id);
    let mut readers: Vec<(fs::File, &'static str)> = Vec::new();
    let mut stdin_sink = None;
    if console.is_some() {
        create
            .arg("--console-socket")
            .arg(CONSOLE_SOCKET)
            .stdin(ChildStdio::null())
            .stdout(ChildStdio::null())
            .stderr(ChildStdio::null());
    } else {
        let (out_read, out_write) = std::io::pipe()?;
        let (err_read, err_write) = std::io::pipe()?;
        let stdin = if args.stdio.stdin {
            let (read, write) = std::io::pipe()?;
            stdin_sink = Some(fs::File::from(OwnedFd::from(write)));
            ChildStdio::from(read)
        } else {
            ChildStdio::null()
        };
        create.stdin(stdin).stdout(out_write).stderr(err_write);
        readers.push((fs::File::from(OwnedFd::from(out_read)), "stdout"));
        readers.push((fs::File::from(OwnedFd::from(err_read)), "stderr"));
    }
    // The runtime hands the terminal's master over while it creates.
    let terminal = console.map(|listener| {
        let (sent, received) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sent.send(receive_terminal(&listener));
        });
        received
    });
    let created = create.status()?;
    // Our copies of the container's ends of the pipes go with the command.
    drop(create);
    let _ = fs::remove_file(CONSOLE_SOCKET);
    let mut master = None;
    if let (Some(received), true) = (terminal, created.success()) {
        let fd = received
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| std::io::Error::other("the runtime never sent the terminal"))??;
        readers.push((fs::File::from(fd.try_clone()?), "stdout"));
        stdin_sink = Some(fs::File::from(fd.try_clone()?));
        master = Some(fd);
    }
    // Each reader says when its stream is drained.
    let (drained, readers_done) = mpsc::channel::<()>();
    let streams = readers.len();
    for (pipe, stream) in readers {
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
    if args.stdio.attachable() {
        let stdin = attach::Stdin::new(stdin_sink, master, args.stdio.stdin_once);
        let _ = fs::remove_file(attach::SOCKET);
        attach::serve(UnixListener::bind(attach::SOCKET)?, stdin);
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
    for _ in 0..streams {
        let left = deadline.saturating_duration_since(Instant::now());
        if readers_done.recv_timeout(left).is_err() {
            break;
        }
    }
    write_json_atomically(&exit_path, &exit_record(code, signal, None))
}
