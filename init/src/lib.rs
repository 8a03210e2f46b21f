//! # aither-init: the supervision engine ("the init system for agents")
//!
//! `aither-init` is the library `agentd` uses to run everything it runs. It lives beside
//! systemd: systemd is PID 1 and delegates a cgroup subtree to `agentd`, and this engine
//! starts, watches, restarts and stops the units inside that subtree.
//!
//! ## Design
//!
//! - **Units** ([`mod@unit`]) with dependencies (`requires`, `after`), readiness (`notify` over
//!   a per-unit `NOTIFY_SOCKET`, `exec`, `tcp`/`http` probes), restart policies with
//!   exponential backoff and a give-up state ([`backoff`]), and stop escalation (SIGTERM,
//!   timeout, SIGKILL to the whole cgroup). The states and their transitions: [`state`].
//! - **Groups and priorities**: start order by group priority, then dependencies; dormant
//!   units are socket-activated (`LISTEN_FDS`) on first connection. Units added together go
//!   in all or nothing, in dependency order.
//! - **Process mechanics** ([`spawn`], [`reap`]): exits seen through pidfds (never polling),
//!   child subreaper, a session per unit, rlimits, `no_new_privs`, SELinux exec contexts,
//!   descriptors beyond the unit's closed at exec, stdout/stderr to journald streams created
//!   at the unit's level.
//! - **Notifications** ([`notify`]): one socket per unit; a datagram counts only when the
//!   kernel says it came from a process of that unit (its main PID, its cgroup, or without
//!   cgroups its descendants).
//! - **cgroup v2** ([`cgroup`]) limits in the delegated subtree; OOM kills reported as such.
//! - **Re-adoption** of running units from an atomically written state file; when that file
//!   is corrupt, units are found again by their cgroup or their session and `AITHER_UNIT`
//!   ([`recover`]).
//! - The supervisor itself ([`engine`]): one task owning every unit's state, split by
//!   concern; every host path it reads is injectable ([`HostPaths`]).
//!
//! ## Limitations
//!
//! - cgroup v2 limits need a delegated subtree; without one (dev mode, cgroup v1 hosts)
//!   units run in the supervisor's cgroup and [`Supervisor::limits`] says why.
//! - An adopted unit (started by an earlier supervisor that is not its parent) reports
//!   [`ExitReason::Unknown`] when it ends: its exit status belongs to its real parent.
//! - A notification from a short-lived helper that has exited before the engine reads the
//!   datagram cannot be attributed and is ignored (systemd has the same race).

pub mod backoff;
pub mod cgroup;
pub mod engine;
pub mod notify;
pub mod reap;
pub mod recover;
pub mod spawn;
pub mod state;
pub mod unit;

pub use backoff::{Backoff, RestartMode};
pub use engine::{Config, EngineError, HostPaths, Supervisor, UnitStatus};
pub use state::{Event, ExitReason, UnitState};
pub use unit::UnitSpec;
