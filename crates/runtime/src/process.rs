//! Waiting on processes that are not (or no longer) our children, such as
//! container monitors adopted after a restart of the agent: a pidfd becomes
//! readable when its process exits, so waiting costs no thread and no poll.

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Resolves once process `pid` has exited (at once if it is already gone).
pub async fn exited(pid: u32) -> std::io::Result<()> {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Ok(());
    };
    let fd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let watched = register(fd)?;
    let _ready = watched.readable().await?;
    Ok(())
}

/// Blocks until process `pid` has exited (a zombie has) or `timeout`
/// passed, on its pidfd; whether it exited.
pub fn wait_exited(pid: u32, timeout: std::time::Duration) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    let fd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return true,
        Err(_) => return !running(pid.as_raw_nonzero().get().unsigned_abs()),
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timespec = rustix::event::Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timespec)) {
            Ok(ready) => return ready > 0,
            Err(rustix::io::Errno::INTR) if !left.is_zero() => continue,
            Err(_) => return false,
        }
    }
}

/// Sends signal number `signal` to `pid` if it is a child of `parent` (a
/// container's init under its monitor, which is its subreaper), through a
/// pidfd so that a recycled pid is never signalled; no process is spawned.
/// `Ok(false)` when `pid` is not, or no longer, `parent`'s child, or the
/// signal has no name.
pub fn signal_child_of(pid: u32, parent: u32, signal: i32) -> std::io::Result<bool> {
    let (Some(raw), Some(signal)) = (
        i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw),
        rustix::process::Signal::from_named_raw(signal),
    ) else {
        return Ok(false);
    };
    let fd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(false),
        Err(error) => return Err(error.into()),
    };
    // The pidfd holds the process that had `pid` when it was opened. If
    // `pid` belongs to `parent`'s child now, the pidfd's process is that
    // child (or has died since, and the signal below finds nobody).
    if parent_of(pid) != Some(parent) {
        return Ok(false);
    }
    match rustix::process::pidfd_send_signal(&fd, signal) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// The parent of `pid`, from `/proc/<pid>/status`.
fn parent_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Registers a pidfd with tokio's reactor.
#[allow(unsafe_code)]
fn register(fd: std::os::fd::OwnedFd) -> std::io::Result<AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor that stays the same
    // until the AsyncFd, which owns it, is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(Into::into)
}

/// Whether process `pid` exists and has not exited (a zombie has).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(") ")?;
            Some(!rest.starts_with('Z') && !rest.starts_with('X'))
        })
        .unwrap_or(false)
}

/// Whether process `pid` runs and its command line contains `needle`
/// (guards against a recycled pid).
pub fn runs_with_argument(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == needle.as_bytes())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_a_process_exits() -> std::io::Result<()> {
        let mut child = std::process::Command::new("sleep").arg("0.5").spawn()?;
        let pid = child.id();
        // Until it execs, the child still shows our command line.
        for _ in 0..200 {
            if runs_with_argument(pid, "0.5") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(runs_with_argument(pid, "0.5"));
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), exited(pid)).await;
        assert!(matches!(waited, Ok(Ok(()))));
        let _ = child.wait();
        assert!(!runs_with_argument(pid, "0.5"));
        Ok(())
    }
}
