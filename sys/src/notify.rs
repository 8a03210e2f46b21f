//! Sending sd_notify messages: a daemon telling its supervisor (systemd, or aither-init for
//! its units) that it is ready, its status, watchdog keep-alives and stopping. Without
//! `$NOTIFY_SOCKET` (development mode, tests) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr;
use std::time::Duration;

/// Where systemd listens, when it does.
#[derive(Debug)]
pub struct Notifier {
    target: Option<SocketAddr>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|p| {
            let p = p.to_string_lossy().into_owned();
            match p.strip_prefix('@') {
                Some(abs) => SocketAddr::from_abstract_name(abs.as_bytes()).ok(),
                None => SocketAddr::from_pathname(p).ok(),
            }
        });
        Notifier { target }
    }

    /// Send `state` (`READY=1`, `STATUS=...`, newline-separated); false when it could not be sent.
    pub fn notify(&self, state: &str) -> bool {
        let Some(target) = &self.target else { return false };
        let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else { return false };
        sock.send_to_addr(state.as_bytes(), target).is_ok()
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }
}

/// The watchdog interval systemd expects keep-alives within (`WatchdogSec=`), when it is
/// meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        let n = Notifier { target: Some(SocketAddr::from_pathname(&path).expect("addr")) };
        assert!(n.notify("READY=1\nSTATUS=up"));
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        assert!(!Notifier { target: None }.notify("READY=1"));
    }
}
