//! Running a program, with its argv in every error (bootc's `CommandRunExt`).

use std::process::{Command, Stdio};

use crate::children;

/// A program that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{argv}: cannot run: {source}")]
    Spawn { argv: String, source: std::io::Error },
    #[error("{argv}: {status}: {stderr}")]
    Failed { argv: String, status: std::process::ExitStatus, stderr: String },
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

/// Run `cmd` to completion, its standard input empty; its standard output when it exits 0,
/// else an error with the argv, the status and its standard error. The child is tracked
/// ([`children`]) while it runs, so a reaper in this process leaves it to us.
pub fn run(cmd: &mut Command) -> Result<String, CommandError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = children::spawn_tracked(|| cmd.spawn(), children::pid_of)
        .map_err(|source| CommandError::Spawn { argv: argv(cmd), source })?;
    let pid = children::pid_of(&child);
    let out = child.wait_with_output();
    children::untrack(pid);
    let out = out.map_err(|source| CommandError::Spawn { argv: argv(cmd), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(CommandError::Failed {
            argv: argv(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
