//! The pod sandbox: one small process per pod (`skiff pause`, no image
//! needed) that creates the pod's network, UTS and IPC namespaces (those the
//! pod does not take from the host), and with `shareProcessNamespace` a PID
//! namespace whose init it is; it sets the hostname and `lo` up and holds the
//! namespaces until it is stopped. Containers join them through
//! `/proc/<pid>/ns/*`, after checking that `<pid>` is still this sandbox.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{sethostname, Pid};

/// What can go wrong with a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("failed to start the sandbox process {binary}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("the sandbox process exited before it was ready: {0}")]
    NotReady(String),
    #[error("failed to create the sandbox namespaces")]
    Namespaces(#[source] nix::Error),
    #[error("failed to set the loopback interface up")]
    Loopback(#[source] std::io::Error),
}

/// A running sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub pid: u32,
}

/// Which namespaces a sandbox makes: those the pod does not take from the
/// host, and a PID namespace when its containers share one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxOptions {
    /// Names the process (`--id`), so a recycled pid is never taken for it.
    pub id: String,
    /// `hostNetwork`: the host's network and UTS namespaces.
    pub host_network: bool,
    /// `hostIPC`.
    pub host_ipc: bool,
    /// `shareProcessNamespace`: the sandbox is PID 1 of the pod's PID namespace.
    pub share_pid: bool,
}

impl SandboxOptions {
    fn args(&self, hostname: &str) -> Vec<String> {
        let mut args = vec!["pause".to_string(), "--hostname".into(), hostname.into()];
        if !self.id.is_empty() {
            args.extend(["--id".into(), self.id.clone()]);
        }
        for (set, flag) in [
            (self.host_network, "--host-network"),
            (self.host_ipc, "--host-ipc"),
            (self.share_pid, "--share-pid"),
        ] {
            if set {
                args.push(flag.into());
            }
        }
        args
    }
}

impl Sandbox {
    /// Whether `pid` is still the sandbox `id` (a `skiff pause --id <id>`):
    /// checked before a container joins its namespaces, so a dead sandbox
    /// whose pid was reused is never joined.
    pub fn is(&self, id: &str) -> bool {
        crate::process::running(self.pid)
            && crate::process::runs_with_argument(self.pid, "pause")
            && crate::process::runs_with_argument(self.pid, id)
    }

    /// The path of one of the sandbox's namespaces (`net`, `uts`, `ipc`).
    pub fn namespace(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid))
    }

    /// Whether the process still runs.
    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// Starts a sandbox with the pod's own network, UTS and IPC namespaces.
    pub fn start(binary: &Path, hostname: &str) -> Result<Self, SandboxError> {
        Self::start_with(binary, hostname, &SandboxOptions::default())
    }

    /// Starts `binary pause --hostname <hostname> ...` in its own process
    /// group and waits until its namespaces exist.
    pub fn start_with(
        binary: &Path,
        hostname: &str,
        options: &SandboxOptions,
    ) -> Result<Self, SandboxError> {
        let spawn_err = |source| SandboxError::Spawn {
            binary: binary.display().to_string(),
            source,
        };
        let mut child = {
            use std::os::unix::process::CommandExt;
            Command::new(binary)
                .args(options.args(hostname))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .map_err(spawn_err)?
        };
        // The sandbox writes the pid holding its namespaces and a newline
        // once they and the hostname are set.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        if let Some(mut out) = child.stdout.take() {
            while line.len() < 16 && matches!(out.read(&mut byte), Ok(1)) && byte[0] != b'\n' {
                line.push(byte[0]);
            }
        }
        let holder = std::str::from_utf8(&line).ok().and_then(|l| l.trim().parse::<u32>().ok());
        let Some(pid) = holder else {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                if let Err(error) = err.read_to_string(&mut stderr) {
                    stderr = format!("(its error output could not be read: {error})");
                }
            }
            if let Err(error) = child.wait() {
                tracing::warn!(%error, "failed to reap a sandbox that did not start");
            }
            return Err(SandboxError::NotReady(stderr.trim().to_string()));
        };
        if pid != child.id() {
            // With a shared PID namespace the holder is pause's child, PID 1
            // of the pod; the process we started leaves once it is ready.
            if let Err(error) = child.wait() {
                tracing::warn!(%error, "failed to reap the sandbox's launcher");
            }
        }
        // No thread waits on it: `stop` reaps it (a sandbox that died
        // early stays a zombie until then; its pod is torn down anyway).
        Ok(Self { pid })
    }

    /// Connects to `address` from inside the sandbox's network namespace
    /// (port-forward, probes). Only the socket is made on a short-lived
    /// thread that joined the namespace; connecting is async.
    pub async fn connect(
        &self,
        address: std::net::SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<tokio::net::TcpStream> {
        let netns = self.namespace("net");
        let (sender, receiver) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = sender.send(socket_in(&netns, address.is_ipv6()));
        });
        let socket = receiver
            .await
            .map_err(|_| std::io::Error::other("socket thread ended"))??;
        let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
        tokio::time::timeout(timeout, socket.connect(address))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("dial tcp {address}: i/o timeout"),
                )
            })?
    }

    /// Stops the sandbox process (its namespaces go with it once no
    /// container holds them): SIGKILL, then a wait on its pidfd.
    pub fn stop(&self) {
        let Ok(pid) = i32::try_from(self.pid) else {
            return;
        };
        let pid = Pid::from_raw(pid);
        let _ = kill(pid, Signal::SIGKILL);
        if !crate::process::wait_exited(self.pid, Duration::from_secs(1)) {
            tracing::warn!(pid = self.pid, "the sandbox process did not exit within 1s of SIGKILL");
        }
        // Reaped here if it is our child; an adopted sandbox's parent
        // reaps it.
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}

/// A non-blocking TCP socket created in the network namespace at `netns`
/// (the calling thread joins it, so call it on a thread of its own).
fn socket_in(netns: &Path, ipv6: bool) -> std::io::Result<socket2::Socket> {
    let file = std::fs::File::open(netns)?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    let domain = if ipv6 {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The pod's `/etc/hosts`, as kubelet writes it: localhost entries, the
/// pod's own address and name, then `hostAliases` (ip, hostnames).
pub fn hosts_file(
    pod_ip: Option<&str>,
    hostname: &str,
    aliases: &[(String, Vec<String>)],
) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = pod_ip.filter(|ip| !ip.is_empty()) {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    if !aliases.is_empty() {
        text.push_str("\n# Entries added by HostAliases.\n");
        for (ip, names) in aliases {
            text.push_str(&format!("{ip}\t{}\n", names.join("\t")));
        }
    }
    text
}

/// The body of `skiff pause`: new namespaces (all but those taken from the
/// host), the hostname, then the pid holding them and a newline on stdout,
/// then sleep until SIGTERM or SIGINT. With `share_pid` it forks PID 1 of a
/// new PID namespace, which holds the namespaces and reaps the orphans of
/// the pod's containers, and returns. Must run before any other thread starts.
pub fn pause(hostname: &str, options: &SandboxOptions) -> Result<(), SandboxError> {
    let mut flags = CloneFlags::empty();
    if !options.host_network {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    if !options.host_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if options.share_pid {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    unshare(flags).map_err(SandboxError::Namespaces)?;
    if !options.host_network {
        sethostname(hostname).map_err(SandboxError::Namespaces)?;
        bring_up_loopback().map_err(SandboxError::Loopback)?;
    }
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        signals.add(signal);
    }
    signals.thread_block().map_err(SandboxError::Namespaces)?;
    if options.share_pid {
        // SAFETY: fork is sound here: no other thread exists yet in this
        // process (pause runs first thing in main), so no lock is held.
        #[allow(unsafe_code)]
        let forked = unsafe { nix::unistd::fork() }.map_err(SandboxError::Namespaces)?;
        if let nix::unistd::ForkResult::Parent { child } = forked {
            announce(u32::try_from(child.as_raw()).unwrap_or(0));
            return Ok(());
        }
    } else {
        announce(std::process::id());
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => {
                // Orphans of the pod's containers end up here when we are PID 1.
                while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    if status == WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(_) | Err(_) => return Ok(()),
        }
    }
}

/// Sets `lo` up in the calling thread's network namespace, as CRI-O and
/// containerd 2 do themselves: the CNI loopback plugin did only this, and
/// its maintainers deprecate it (one exec of a Go program less per pod).
fn bring_up_loopback() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: an all-zero ifreq is a valid value (a C struct of integers
    // and arrays); the name fits with its NUL.
    #[allow(unsafe_code)]
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write only `request`,
    // which outlives the calls; the union's flags member is the one these
    // requests use.
    #[allow(unsafe_code)]
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn announce(pid: u32) {
    let mut stdout = std::io::stdout();
    if let Err(error) = writeln!(stdout, "{pid}").and_then(|()| stdout.flush()) {
        eprintln!("sandbox: cannot report readiness: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_reads_like_kubelets() {
        let hosts = hosts_file(
            Some("10.42.0.7"),
            "web",
            &[("123.45.67.89".into(), vec!["foo".into(), "bar".into()])],
        );
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("10.42.0.7\tweb\n"));
        assert!(hosts.ends_with("# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\n"));
        assert!(!hosts_file(None, "web", &[]).contains("web"));
    }

    /// In a new network namespace (a thread of its own joins it) `lo` is
    /// down until the sandbox sets it up; then 127.0.0.1 answers.
    #[test]
    fn the_sandbox_sets_loopback_up_in_a_new_network_namespace() -> std::io::Result<()> {
        std::thread::spawn(|| -> std::io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
            assert!(socket.send_to(b"ping", socket.local_addr()?).is_err(), "lo starts down");
            bring_up_loopback()?;
            socket.send_to(b"ping", socket.local_addr()?)?;
            let mut buffer = [0u8; 4];
            assert_eq!(socket.recv(&mut buffer)?, 4);
            Ok(())
        })
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
    }

    #[test]
    fn pause_arguments_name_the_sandbox_and_its_host_namespaces() {
        let options = SandboxOptions {
            id: "abc".into(),
            host_network: true,
            host_ipc: false,
            share_pid: true,
        };
        assert_eq!(
            options.args("web"),
            ["pause", "--hostname", "web", "--id", "abc", "--host-network", "--share-pid"]
        );
        assert_eq!(SandboxOptions::default().args("web"), ["pause", "--hostname", "web"]);
    }
}
