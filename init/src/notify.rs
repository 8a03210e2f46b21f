//! The sd_notify protocol, both sides.
//!
//! Receiving ([`bind`], [`recv`], [`parse`]): one datagram socket per unit, given to it as
//! `NOTIFY_SOCKET`, so daemons written for systemd work unchanged and a message can only be
//! about its own unit. Units that run as one user (every worker is `aither`) could still
//! write to each other's sockets, so each datagram carries its sender's credentials
//! (`SO_PASSCRED`) and the engine accepts it only from a process of that unit, as systemd's
//! `NotifyAccess=all` does. Sending ([`Notifier`]): agentd telling systemd, and a worker
//! telling agentd, that it is ready, its status, watchdog keep-alives and stopping.

use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;

/// What a unit said in one datagram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notification {
    pub ready: bool,
    pub stopping: bool,
    pub reloading: bool,
    pub watchdog: bool,
    pub status: Option<String>,
    pub main_pid: Option<i32>,
}

/// Parse a datagram: newline-separated `KEY=VALUE` assignments.
pub fn parse(text: &str) -> Notification {
    let mut n = Notification::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => n.ready = true,
            Some(("STOPPING", "1")) => n.stopping = true,
            Some(("RELOADING", "1")) => n.reloading = true,
            Some(("WATCHDOG", "1")) => n.watchdog = true,
            Some(("STATUS", s)) => n.status = Some(s.to_string()),
            Some(("MAINPID", p)) => n.main_pid = p.parse().ok(),
            _ => {}
        }
    }
    n
}

/// Bind the unit's socket at `dir/<unit>`, replacing a stale one. A unit that runs as
/// another user (`owner`) must be able to write to it: the directory may be passed through
/// (0711, not listed) and the socket is the unit's own (0600, chowned to it).
pub fn bind(dir: &Path, unit: &str, owner: Option<(u32, u32)>) -> std::io::Result<(PathBuf, UnixDatagram)> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    if owner.is_some() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    }
    let path = dir.join(unit);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let sock = UnixDatagram::bind(&path)?;
    rustix::net::sockopt::set_socket_passcred(&sock, true)?;
    if let Some((uid, gid)) = owner {
        // chmod while the supervisor owns it (it needs no CAP_FOWNER), then hand it over.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
    }
    Ok((path, sock))
}

/// One datagram from a socket [`bind`] made: its length and the sender's PID (the
/// kernel's, not the sender's word), without blocking (`WouldBlock` when none is queued).
pub fn recv(sock: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<(usize, Option<i32>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    let pid = control.drain().find_map(|m| match m {
        RecvAncillaryMessage::ScmCredentials(c) => Some(c.pid.as_raw_nonzero().get()),
        _ => None,
    });
    Ok((msg.bytes, pid))
}

pub use aither_sys::notify::{watchdog_interval, Notifier};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_parse_like_systemd() {
        let n = parse("READY=1\nSTATUS=serving 3 models\nMAINPID=42\nX=y");
        assert!(n.ready && !n.stopping);
        assert_eq!(n.status.as_deref(), Some("serving 3 models"));
        assert_eq!(n.main_pid, Some(42));
        assert_eq!(parse("READY=0"), Notification::default());
    }

    #[tokio::test]
    async fn a_datagram_comes_with_its_senders_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, sock) = bind(dir.path(), "unit", None).expect("bind");
        let client = std::os::unix::net::UnixDatagram::unbound().expect("socket");
        client.send_to(b"READY=1", &path).expect("send");
        sock.readable().await.expect("readable");
        let mut buf = [0u8; 64];
        let (n, pid) = recv(&sock, &mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        assert_eq!(pid, i32::try_from(std::process::id()).ok());
    }
}
