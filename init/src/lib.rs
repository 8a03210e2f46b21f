//! # aither-init: the supervision engine ("the init system for agents")
//!
//! `aither-init` is the library `agentd` uses to run everything it runs. It lives beside
//! systemd: systemd is PID 1 and delegates a cgroup subtree to `agentd`, and this engine
//! starts, watches, restarts and stops the units inside that subtree.
//!
//! ## Design (to be built by the init issue)
//!
//! - **Units** with dependencies (`requires`, `after`), readiness (`notify` over a
//!   per-unit `NOTIFY_SOCKET`, `exec`, `tcp`/`http` probes), restart policies with
//!   exponential backoff and a give-up state, and stop escalation (SIGTERM, timeout,
//!   SIGKILL to the whole cgroup).
//! - **Groups and priorities**: start order by group priority, then dependencies;
//!   dormant units are socket-activated (`LISTEN_FDS`) on first connection.
//! - **Process mechanics**: exits seen through pidfds (never polling), child subreaper,
//!   a session per unit, rlimits, `no_new_privs`, SELinux exec contexts, stdout/stderr to
//!   journald streams.
//! - **cgroup v2** limits in the delegated subtree; OOM kills reported as their own state.
//! - **Re-adoption** of running units from an atomically written state file.
//!
//! ## Status
//!
//! Built: the unit specification ([`unit`]), the state machine ([`state`], with its
//! diagram), the backoff schedule ([`backoff`]), process spawning ([`spawn`]), exit detection
//! and reaping ([`reap`]), the sd_notify protocol ([`notify`]) and the supervisor
//! ([`engine`]): priority and dependency order, notify/exec/tcp/http readiness, restart with
//! backoff and give-up, stop escalation, socket activation, re-adoption, events.
//!
//! ## Limitations
//!
//! - cgroup v2 limits ([`cgroup`]) need a delegated subtree; without one (dev mode, cgroup v1
//!   hosts) units run in the supervisor's cgroup and [`Supervisor::limits`] says why.
//! - Notifications are attributed by socket (one per unit); the sender's PID is not checked.
//! - An adopted unit (started by an earlier supervisor that is not its parent) reports
//!   [`ExitReason::Unknown`] when it ends: its exit status belongs to its real parent.
//! - An MCS-constrained child cannot write to a pipe or socket the supervisor created at its
//!   own level; give such units a `LogTarget` created at their level (journald streams with
//!   the socket creation context set are the way; not yet done).

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
pub use engine::{Config, EngineError, Supervisor, UnitStatus};
pub use state::{Event, ExitReason, UnitState};
pub use unit::UnitSpec;
