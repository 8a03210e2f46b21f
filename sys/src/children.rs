//! The children a process waits for itself.
//!
//! A process that collects every exited child (agentd's engine is a child subreaper and reaps
//! its units' orphans with `waitid(P_ALL)`) must leave alone the children someone else in the
//! process waits for, or that waiter finds its child gone (`ECHILD`: a `journalctl` whose
//! output is lost, a `semodule` reported as failed). This registry is what such a reaper
//! checks: the engine tracks each unit's main process, and [`run`](crate::command::run)
//! tracks the programs it runs.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

/// PIDs whose exit belongs to whoever spawned them, not to an orphan reaper.
static TRACKED: LazyLock<Mutex<HashSet<i32>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Called once a tracked child has been collected and untracked: a reaper that stopped at it
/// (it peeks the next exited child and leaves a tracked one in place) goes on.
type Release = Box<dyn Fn() + Send + Sync>;
static ON_UNTRACK: Mutex<Option<Release>> = Mutex::new(None);

/// The tracked PIDs, locked: a reaper holds this across peeking and collecting a child, so a
/// child being spawned is never taken for an orphan.
pub fn tracked() -> MutexGuard<'static, HashSet<i32>> {
    TRACKED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Leave the exit of `pid` (already running) to its spawner.
pub fn track(pid: i32) {
    tracked().insert(pid);
}

/// Run `spawn` and track the PID `pid_of` reads from what it returns, with no instant in
/// between in which a reaper could collect a child that exits at once.
pub fn spawn_tracked<T, E>(spawn: impl FnOnce() -> Result<T, E>, pid_of: impl FnOnce(&T) -> i32) -> Result<T, E> {
    let mut guard = tracked();
    let child = spawn()?;
    guard.insert(pid_of(&child));
    Ok(child)
}

/// The spawner has collected `pid`; the reaper is told (see [`on_untrack`]).
pub fn untrack(pid: i32) {
    tracked().remove(&pid);
    if let Some(release) = ON_UNTRACK.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        release();
    }
}

/// The PID of a child std spawned (PIDs are below 2^22; `pid_max` allows no more).
pub fn pid_of(child: &std::process::Child) -> i32 {
    i32::try_from(child.id()).unwrap_or(i32::MAX)
}

/// What [`untrack`] calls: the reaper of this process, which may have stopped at that child.
/// A later call replaces an earlier one.
pub fn on_untrack(release: impl Fn() + Send + Sync + 'static) {
    *ON_UNTRACK.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(release));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_child_is_tracked_until_its_spawner_collects_it() {
        let mut child = spawn_tracked(|| std::process::Command::new("true").spawn(), pid_of).expect("true");
        let pid = pid_of(&child);
        assert!(tracked().contains(&pid));
        assert!(child.wait().expect("its status").success());
        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = released.clone();
        on_untrack(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        untrack(pid);
        assert!(!tracked().contains(&pid));
        assert!(released.load(std::sync::atomic::Ordering::SeqCst), "the reaper is told");
        let failed = spawn_tracked(|| std::process::Command::new("/nonexistent/program").spawn(), pid_of);
        assert!(failed.is_err());
    }
}
