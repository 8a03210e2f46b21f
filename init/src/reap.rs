//! Exit detection and reaping.
//!
//! A unit's main process is watched through its pidfd: the descriptor becomes readable when
//! the process exits, which tokio's reactor reports without any periodic wakeup; the status
//! is then collected with `waitid(P_PIDFD)`. As a child subreaper the engine also inherits
//! the orphans of its units' process trees; they are reaped on `SIGCHLD`, leaving the
//! tracked children ([`aither_sys::children`]: the units' main processes, and the programs
//! the daemon runs itself) to whoever waits for them.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};

use aither_sys::children;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::state::ExitReason;

/// Become the child subreaper of this process.
pub fn become_subreaper() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(std::io::Error::from)
}

/// Open a pidfd for `pid`.
pub fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    let pid =
        rustix::process::Pid::from_raw(pid).ok_or_else(|| std::io::Error::from_raw_os_error(nix::libc::EINVAL))?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map_err(std::io::Error::from)
}

/// Register an owned descriptor with the reactor for readability.
pub fn readable_fd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and refers to the
    // same file for as long as it is registered, and as_raw_fd returns that descriptor.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// Wait until the process behind `fd` exits and return why. `child` says whether it is our
/// child (its status can be collected) or an adopted process (it cannot).
pub async fn wait_exit(fd: OwnedFd, child: bool) -> ExitReason {
    let afd = match readable_fd(fd) {
        Ok(a) => a,
        Err(e) => return ExitReason::SpawnFailed { error: format!("cannot watch the process: {e}") },
    };
    if let Err(e) = afd.readable().await {
        return ExitReason::SpawnFailed { error: format!("cannot watch the process: {e}") };
    }
    if !child {
        return ExitReason::Unknown;
    }
    loop {
        match waitid(Id::PIDFd(afd.get_ref().as_fd()), WaitPidFlag::WEXITED) {
            Ok(WaitStatus::Exited(_, code)) => return ExitReason::Code { code },
            Ok(WaitStatus::Signaled(_, sig, _)) => return ExitReason::Signal { signal: sig as i32 },
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            // Reaped elsewhere (should not happen: the reaper skips tracked PIDs).
            Err(_) => return ExitReason::Unknown,
        }
    }
}

/// Reap every exited child that no watcher owns. Called on `SIGCHLD`.
pub fn reap_orphans() -> usize {
    // Held across peek and reap, so a child being spawned is never taken for an orphan.
    let tracked = children::tracked();
    let mut reaped = 0;
    loop {
        let peek = waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT);
        let pid = match peek {
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => pid,
            _ => return reaped,
        };
        if tracked.contains(&pid.as_raw()) {
            // Its watcher collects it; once it has, untracking it kicks the reaper again.
            return reaped;
        }
        if waitid(Id::Pid(Pid::from_raw(pid.as_raw())), WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG).is_ok() {
            reaped += 1;
        }
    }
}
