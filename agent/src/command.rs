//! Running one of the step's commands: exactly the argv the workflow lists (the model picks
//! which, never adds to it), in the workspace, with a clean environment, no standard input,
//! its output bounded and its whole process group killed at the deadline. The agent's own
//! confinement (SELinux domain, cgroup, no network unless granted) is the command's too.
//!
//! A command's children can leave its process group (`setsid`, a test server that
//! daemonizes) and hold its output open: the agent is a child subreaper, so whatever a command
//! leaves behind becomes the agent's child when its parent ends, and is killed when the command
//! is over; and the output is read only until then, never until the last holder lets go.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Whether this process sweeps what commands leave behind ([`become_subreaper`]): only the
/// runner's own process, where every other child is a command's. (A process that runs steps
/// in-process, as the eval does, has children of its own the sweep must not reap.)
static SWEEPS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Make this process a child subreaper that kills and reaps what each command leaves behind:
/// whatever leaves a command's process group becomes this process's child when its parent ends.
pub fn become_subreaper() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    SWEEPS.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// When the runner is told to stop (SIGTERM from its supervisor: past its deadline, past its
/// workspace's bound), the command running and everything commands left are killed before it
/// exits: nothing a step started outlives it, even where no cgroup holds the step (agentd's
/// development mode). Call after [`become_subreaper`].
pub fn end_children_on_terminate() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let mut term = rt.block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) })?;
    std::thread::Builder::new().name("terminate".into()).spawn(move || {
        rt.block_on(term.recv());
        kill_children(true);
        std::process::exit(143);
    })?;
    Ok(())
}

/// The commands this process is running now (their pids): the sweep leaves them alone.
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// How long the output is still read after the command and what it left are gone.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

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
    // Spawned and recorded under the lock the sweep holds, so no sweep sees it unrecorded.
    let mut running = lock_running();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .env("LANG", "C.UTF-8")
        // git reads no configuration but the repository's own (which agentd hands over with
        // only how it is stored): none a command of the step could have written in HOME.
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let group = Pid::from_child(&child);
    running.insert(group.as_raw_nonzero().get());
    drop(running);
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
    let _ = rustix::process::kill_process_group(group, Signal::KILL);
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    lock_running().remove(&group.as_raw_nonzero().get());
    // And what left the group: its orphans are this process's children now.
    if SWEEPS.load(std::sync::atomic::Ordering::Relaxed) {
        sweep_orphans();
    }
    let until = Instant::now() + DRAIN_GRACE;
    while readers.iter().flatten().any(|r| !r.thread.is_finished()) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let [out, err] = readers.map(|r| r.map(|r| r.taken()).unwrap_or_default());
    Ok(Ran {
        code: status.code(),
        timed_out,
        cut: out.1 || err.1,
        stdout: String::from_utf8_lossy(&out.0).into_owned(),
        stderr: String::from_utf8_lossy(&err.0).into_owned(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn lock_running() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kill and reap this process's children that no running command is: the orphans of commands
/// that are over (and theirs, which come here in turn as their parents die).
pub fn sweep_orphans() {
    kill_children(false);
}

/// Kill and reap this process's children — all of them, or (`!all`) those not running as a
/// command now — and what they leave, until none is left (at most 100 rounds).
fn kill_children(all: bool) {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    for _ in 0..100 {
        let orphans: Vec<i32> = {
            // Held while the children are listed and killed: a command started meanwhile is
            // recorded before it can be seen.
            let running = lock_running();
            let orphans: Vec<i32> = children_of(me).into_iter().filter(|p| all || !running.contains(p)).collect();
            for &p in &orphans {
                if let Some(pid) = Pid::from_raw(p) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
            orphans
        };
        if orphans.is_empty() {
            return;
        }
        for &p in &orphans {
            if let Some(pid) = Pid::from_raw(p) {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
        }
    }
}

/// The pids whose parent is `parent` (this process): from each of its threads'
/// `/proc/self/task/TID/children` (no look at other processes' entries, which a confined
/// agent may not search), else from every `/proc/PID/stat`.
fn children_of(parent: i32) -> Vec<i32> {
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        let mut found = None;
        for t in tasks.filter_map(Result::ok) {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                found
                    .get_or_insert_with(Vec::new)
                    .extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
        if let Some(mut pids) = found {
            pids.sort_unstable();
            pids.dedup();
            return pids;
        }
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                // `pid (comm) state ppid …`: the name may hold spaces and parentheses.
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// A pipe read on a thread: the first [`MAX_OUTPUT`] bytes, and whether more came.
struct Reader {
    thread: std::thread::JoinHandle<()>,
    kept: Arc<Mutex<(Vec<u8>, bool)>>,
}

impl Reader {
    /// What was read so far (all of it once the thread is finished).
    fn taken(self) -> (Vec<u8>, bool) {
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// Read a pipe to its end on a thread, keeping the first [`MAX_OUTPUT`] bytes.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> Reader {
    let kept = Arc::new(Mutex::new((Vec::new(), false)));
    let shared = kept.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut k = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let room = MAX_OUTPUT - k.0.len();
                    k.1 |= n > room;
                    k.0.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    });
    Reader { thread, kept }
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
        assert_eq!(
            names,
            ["GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "HOME", "LANG", "PATH"],
            "nothing of the agent's environment passes"
        );
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

    /// The processes whose command line holds `mark`.
    fn holding(mark: &str) -> Vec<String> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok().map(|c| (e.file_name(), c)))
            .filter(|(_, c)| String::from_utf8_lossy(c).contains(mark))
            .map(|(n, c)| format!("{}: {}", n.to_string_lossy(), String::from_utf8_lossy(&c).replace('\0', " ")))
            .collect()
    }

    #[test]
    fn a_child_that_leaves_the_group_neither_holds_the_agent_nor_outlives_the_command() {
        become_subreaper().expect("subreaper");
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        // A daemon of its own session keeps the output pipe open; a double fork orphans another.
        let r = run(
            &argv(&["/bin/sh", "-c", "setsid sleep 30.5 & (sleep 30.25 &) ; echo started"]),
            dir.path(),
            Duration::from_secs(1),
        )
        .expect("runs");
        assert_eq!((r.code, r.stdout.as_str()), (Some(0), "started\n"), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(holding("30.5").is_empty() && holding("30.25").is_empty()) {
            assert!(Instant::now() < deadline, "left behind: {:?} {:?}", holding("30.5"), holding("30.25"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
