//! A unit's output: from the journal (by the matches agentd gives: the stream it opened for
//! the unit, never the identifier alone), or from its log file in
//! development mode (followed by polling the file: no inotify dependency for a dev tool).

use std::io::{Read as _, Seek as _, Write as _};
use std::time::Duration;

use aither_api::agentd::LogTarget;

use crate::client::CallError;

/// Print a unit's last `lines` lines, and with `follow` what it writes next.
pub fn show(target: &LogTarget, follow: bool, lines: usize) -> Result<(), CallError> {
    match target {
        LogTarget::Journal { matches, .. } => journal(matches, follow, lines),
        LogTarget::File { path } => file(&path.display().to_string(), follow, lines),
        LogTarget::Inherit => Err(CallError::Failed("its output goes to agentd's own: `journalctl -u agentd`".into())),
        LogTarget::Null => Err(CallError::Failed("its output is not kept".into())),
    }
}

fn journal(matches: &[String], follow: bool, lines: usize) -> Result<(), CallError> {
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args(["--no-pager", "-o", "short-iso", "-n", &lines.to_string()]).args(matches);
    if follow {
        cmd.arg("-f");
    }
    let status = cmd.status().map_err(|e| CallError::Failed(format!("journalctl: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(CallError::Failed(format!("journalctl: {status}")))
    }
}

fn file(path: &str, follow: bool, lines: usize) -> Result<(), CallError> {
    let failed = |e: std::io::Error| CallError::Failed(format!("{path}: {e}"));
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => {
            return Err(CallError::Failed(format!("{path}: no output yet")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => loop {
            std::thread::sleep(Duration::from_millis(200));
            if let Ok(f) = std::fs::File::open(path) {
                break f;
            }
        },
        Err(e) => return Err(failed(e)),
    };
    let mut all = String::new();
    file.read_to_string(&mut all).map_err(failed)?;
    let tail: Vec<&str> = all.lines().collect();
    let mut out = std::io::stdout().lock();
    for l in &tail[tail.len().saturating_sub(lines)..] {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
    drop(out);
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let pos = file.stream_position().map_err(failed)?;
        let len = file.metadata().map_err(failed)?.len();
        if len < pos {
            file.rewind().map_err(failed)?; // truncated
        }
        let mut more = String::new();
        file.read_to_string(&mut more).map_err(failed)?;
        if !more.is_empty() {
            print!("{more}");
            let _ = std::io::stdout().flush();
        }
    }
}
