//! Running one of the step's commands: exactly the argv the workflow lists (the model picks
//! which, never adds to it), in the workspace, with a clean environment, no standard input,
//! its output bounded and its whole process group killed at the deadline. The agent's own
//! confinement (SELinux domain, cgroup, no network unless granted) is the command's too.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The most bytes kept of each of standard output and standard error.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// How a command ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    /// The exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// Output past [`MAX_OUTPUT`] was dropped.
    pub cut: bool,
    pub seconds: f64,
}

impl Ran {
    /// What the model is told.
    pub fn report(&self) -> String {
        let end = match (self.timed_out, self.code) {
            (true, _) => "killed: it ran past its time".to_string(),
            (false, Some(c)) => format!("exit status {c}"),
            (false, None) => "ended by a signal".to_string(),
        };
        let cut = if self.cut { " (output cut)" } else { "" };
        format!(
            "{end} after {:.1} s{cut}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.seconds,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Run `argv` in `dir` for at most `limit`.
pub fn run(argv: &[String], dir: &Path, limit: Duration) -> std::io::Result<Ran> {
    use std::os::unix::process::CommandExt as _;
    let (program, args) = argv.split_first().ok_or_else(|| std::io::Error::other("an empty command"))?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let group = rustix::process::Pid::from_child(&child);
    let readers = [child.stdout.take().map(drain), child.stderr.take().map(drain)];
    let deadline = started + limit;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (Some(status), false);
        }
        if Instant::now() >= deadline {
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The whole group: what the command started goes with it (and its pipes close).
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    let [out, err] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    Ok(Ran {
        code: status.code(),
        timed_out,
        cut: out.1 || err.1,
        stdout: String::from_utf8_lossy(&out.0).into_owned(),
        stderr: String::from_utf8_lossy(&err.0).into_owned(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Read a pipe to its end on a thread, keeping the first [`MAX_OUTPUT`] bytes.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        let mut cut = false;
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT - kept.len();
                    cut |= n > room;
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        (kept, cut)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_command_runs_in_the_workspace_with_a_clean_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(&argv(&["/bin/sh", "-c", "pwd; echo oops >&2; exit 3"]), dir.path(), Duration::from_secs(10))
            .expect("runs");
        let real = dir.path().canonicalize().expect("canonical");
        assert_eq!(r.stdout, format!("{}\n", real.display()));
        assert_eq!((r.code, r.timed_out, r.stderr.as_str(), r.cut), (Some(3), false, "oops\n", false));
        assert!(r.report().starts_with("exit status 3 after"), "{}", r.report());
        let env = run(&argv(&["/usr/bin/env"]), dir.path(), Duration::from_secs(10)).expect("runs");
        let mut names: Vec<&str> = env.stdout.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
        names.sort_unstable();
        assert_eq!(names, ["HOME", "LANG", "PATH"], "nothing of the agent's environment passes");
    }

    #[test]
    fn the_deadline_kills_the_whole_group_and_output_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        // A grandchild holding the pipe open must not keep the agent waiting.
        let r = run(&argv(&["/bin/sh", "-c", "sleep 30 & sleep 30"]), dir.path(), Duration::from_millis(300))
            .expect("runs");
        assert!(r.timed_out && r.code.is_none(), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        let r = run(
            &argv(&["/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a"]),
            dir.path(),
            Duration::from_secs(10),
        )
        .expect("runs");
        assert_eq!((r.stdout.len(), r.cut), (MAX_OUTPUT, true));
        assert!(run(&argv(&["/nonexistent/tool"]), dir.path(), Duration::from_secs(1)).is_err());
    }
}
