//! Commands run inside a running container (`kubectl exec`, exec probes and
//! hooks) through the OCI runtime's `exec`: the process joins the
//! container's namespaces and cgroup and inherits its environment, user and
//! working directory from the container's `config.json`.
//!
//! With a TTY, the runtime's own stdio is a pseudo-terminal we hold the
//! master of: the runtime creates the container-side terminal and relays
//! between the two (as `runc exec -t` does in a shell). Resizes go to our
//! terminal; a SIGWINCH tells the runtime to pass the new size on.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use super::{io_err, ContainerError, OciRuntime, Result};

/// What to run, and how its stdio is connected.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The runtime's container id.
    pub id: String,
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
}

/// The stdio of an exec'd process.
pub enum ExecIo {
    Pipes {
        stdin: Option<ChildStdin>,
        stdout: ChildStdout,
        stderr: ChildStderr,
    },
    Tty(Arc<Pty>),
}

/// A running exec: the runtime process (which exits with the command's
/// exit code) and its stdio.
pub struct ExecSession {
    pub child: Child,
    pub io: Option<ExecIo>,
    pid_file: tempfile_path::TempPath,
}

impl ExecSession {
    /// Waits for the command and returns its exit code (128+signal when killed).
    pub async fn wait(&mut self) -> Result<i32> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| ContainerError::Io {
                path: "exec".into(),
                source,
            })?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255))
    }

    /// Kills the command inside the container (a timed-out probe or hook).
    pub fn kill(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.pid_file.path())
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }

    /// What resizes the terminal, when there is one (take it before `io`).
    pub fn resizer(&self) -> Option<Resizer> {
        match &self.io {
            Some(ExecIo::Tty(pty)) => Some(Resizer {
                pty: pty.clone(),
                runtime_pid: self.child.id(),
            }),
            _ => None,
        }
    }
}

/// Resizes an exec's terminal.
pub struct Resizer {
    pty: Arc<Pty>,
    runtime_pid: Option<u32>,
}

impl Resizer {
    /// Applies a size (columns × rows) to our terminal, and has the runtime
    /// pass it on to the container's.
    pub fn resize(&self, width: u16, height: u16) {
        self.pty.set_size(width, height);
        if let Some(pid) = self.runtime_pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGWINCH);
        }
    }
}

/// A temporary file path removed on drop (the exec's pid file).
mod tempfile_path {
    use std::path::{Path, PathBuf};

    pub struct TempPath(pub PathBuf);

    impl TempPath {
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// The master side of a pseudo-terminal, readable and writable from tokio.
pub struct Pty {
    master: AsyncFd<OwnedFd>,
}

impl Pty {
    /// Opens a pair; the slave is in raw mode (the runtime's relay must not
    /// echo or translate anything).
    fn open() -> std::io::Result<(Pty, OwnedFd)> {
        let pair = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
        let mut termios = tcgetattr(&pair.slave).map_err(std::io::Error::from)?;
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios).map_err(std::io::Error::from)?;
        let flags = fcntl(&pair.master, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        fcntl(
            &pair.master,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(std::io::Error::from)?;
        // `AsyncFd::new` is deprecated for fds others may close; this one is
        // owned by the `AsyncFd` alone.
        #[allow(deprecated)]
        let master = AsyncFd::new(pair.master)?;
        Ok((Pty { master }, pair.slave))
    }

    /// Reads what the process wrote; `Ok(0)` once it has closed the terminal.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_fd(), buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => return Ok(n),
                // EIO: every slave descriptor is closed (the process ended).
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` to the process's terminal.
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    fn set_size(&self, width: u16, height: u16) {
        let size = rustix::termios::Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let _ = rustix::termios::tcsetwinsize(self.master.get_ref(), size);
    }
}

impl OciRuntime {
    /// Starts `request.command` in container `request.id`.
    pub fn exec(&self, request: &ExecRequest) -> Result<ExecSession> {
        let pid_file = tempfile_path::TempPath(PathBuf::from(format!(
            "{}/exec-{}.pid",
            self.root.display(),
            uuid_like()
        )));
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .arg("--root")
            .arg(&self.root)
            .arg("exec")
            .arg("--pid-file")
            .arg(pid_file.path());
        if request.tty {
            command.arg("--tty");
        }
        command
            .arg(&request.id)
            .args(&request.command)
            .kill_on_drop(true);
        let spawn_error = |source| ContainerError::Runtime {
            runtime: self.name(),
            command: "exec".into(),
            id: request.id.clone(),
            message: format!("{source}"),
        };
        if request.tty {
            let (pty, slave) = Pty::open().map_err(io_err(&self.root))?;
            let stdio =
                |fd: &OwnedFd| -> std::io::Result<Stdio> { Ok(Stdio::from(fd.try_clone()?)) };
            command
                .stdin(stdio(&slave).map_err(io_err(&self.root))?)
                .stdout(stdio(&slave).map_err(io_err(&self.root))?)
                .stderr(Stdio::from(slave));
            let child = command.spawn().map_err(spawn_error)?;
            return Ok(ExecSession {
                child,
                io: Some(ExecIo::Tty(Arc::new(pty))),
                pid_file,
            });
        }
        command
            .stdin(if request.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(spawn_error)?;
        let io = match (child.stdout.take(), child.stderr.take()) {
            (Some(stdout), Some(stderr)) => Some(ExecIo::Pipes {
                stdin: child.stdin.take(),
                stdout,
                stderr,
            }),
            _ => None,
        };
        Ok(ExecSession {
            child,
            io,
            pid_file,
        })
    }

    /// Runs `command` in container `id` without input and returns its exit
    /// code and combined output, killing it after `timeout` (probes, hooks).
    pub async fn exec_output(
        &self,
        id: &str,
        command: &[String],
        timeout: std::time::Duration,
    ) -> Result<ExecOutput> {
        use tokio::io::AsyncReadExt;
        let mut session = self.exec(&ExecRequest {
            id: id.to_string(),
            command: command.to_vec(),
            tty: false,
            stdin: false,
        })?;
        let Some(ExecIo::Pipes {
            mut stdout,
            mut stderr,
            ..
        }) = session.io.take()
        else {
            return Err(ContainerError::InvalidConfig("exec without pipes".into()));
        };
        let run = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let (_, _, code) = tokio::join!(
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                session.wait()
            );
            out.extend_from_slice(&err);
            code.map(|code| (code, out))
        };
        let finished = tokio::time::timeout(timeout, run).await;
        match finished {
            Ok(result) => {
                let (exit_code, output) = result?;
                Ok(ExecOutput {
                    exit_code,
                    output: String::from_utf8_lossy(&output).into_owned(),
                    timed_out: false,
                })
            }
            Err(_) => {
                session.kill();
                Ok(ExecOutput {
                    exit_code: 137,
                    output: String::new(),
                    timed_out: true,
                })
            }
        }
    }
}

/// How a non-interactive exec ended.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i32,
    /// stdout followed by stderr.
    pub output: String,
    pub timed_out: bool,
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
