//! The sd_notify protocol: one datagram socket per unit, given to it as `NOTIFY_SOCKET`, so
//! daemons written for systemd work unchanged and a message can only be about its own unit.

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

/// Bind the unit's socket at `dir/<unit>`, replacing a stale one.
pub fn bind(dir: &Path, unit: &str) -> std::io::Result<(PathBuf, UnixDatagram)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(unit);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let sock = UnixDatagram::bind(&path)?;
    Ok((path, sock))
}

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
}
