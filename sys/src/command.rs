//! Running a program, with its argv in every error (bootc's `CommandRunExt`).

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::children;

/// How long [`run`] lets a program run.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(600);

/// A program that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{argv}: cannot run: {source}")]
    Spawn { argv: String, source: std::io::Error },
    #[error("{argv}: {status}: {stderr}")]
    Failed { argv: String, status: std::process::ExitStatus, stderr: String },
    #[error("{argv}: still running after {} s: killed", limit.as_secs_f64())]
    TimedOut { argv: String, limit: Duration },
}

/// The command line, quoted where needed, for messages.
pub fn argv(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "\"'\\$".contains(c)) {
                format!("{a:?}")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd` to completion (for at most [`DEFAULT_LIMIT`]), its standard input empty; its
/// standard output when it exits 0, else an error with the argv, the status and its standard
/// error. The child is tracked ([`children`]) while it runs, so a reaper in this process
/// leaves it to us.
pub fn run(cmd: &mut Command) -> Result<String, CommandError> {
    run_for(cmd, DEFAULT_LIMIT)
}

/// [`run`], killing the program once it has run for `limit`.
pub fn run_for(cmd: &mut Command, limit: Duration) -> Result<String, CommandError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = children::spawn_tracked(|| cmd.spawn(), children::pid_of)
        .map_err(|source| CommandError::Spawn { argv: argv(cmd), source })?;
    let pid = children::pid_of(&child);
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let err = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(CommandError::TimedOut { argv: argv(cmd), limit });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(source) => break Err(CommandError::Spawn { argv: argv(cmd), source }),
        }
    };
    children::untrack(pid);
    let status = status?;
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    if status.success() {
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    } else {
        Err(CommandError::Failed {
            argv: argv(cmd),
            status,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_past_its_limit_is_killed_and_named() {
        let started = Instant::now();
        let e = run_for(Command::new("sleep").arg("30"), Duration::from_millis(200)).expect_err("killed");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(e.to_string(), "sleep 30: still running after 0.2 s: killed");
    }

    #[test]
    fn success_gives_the_output_and_failure_the_argv() {
        assert_eq!(run(Command::new("echo").arg("hi")).expect("echo"), "hi\n");
        let e = run(Command::new("sh").args(["-c", "echo no >&2; exit 3"])).expect_err("fails");
        assert!(matches!(e, CommandError::Failed { ref stderr, .. } if stderr == "no"), "{e}");
        assert!(e.to_string().starts_with("sh -c \"echo no >&2; exit 3\": "), "{e}");
        let e = run(&mut Command::new("/nonexistent/program")).expect_err("missing");
        assert!(matches!(e, CommandError::Spawn { .. }), "{e}");
    }
}
