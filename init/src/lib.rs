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
//! Built so far: the unit specification ([`unit`]), the state machine ([`state`]), the
//! backoff schedule ([`backoff`]) and process spawning ([`spawn`]). The supervisor loop,
//! readiness, socket activation, cgroups and re-adoption are being built.
//!
//! ## Limitations
//!
//! The supervisor itself is not yet built.

pub mod backoff;
pub mod engine;
pub mod notify;
pub mod reap;
pub mod spawn;
pub mod state;
pub mod unit;

pub use backoff::{Backoff, RestartMode};
pub use engine::{Config, EngineError, Supervisor, UnitStatus};
pub use state::{Event, ExitReason, UnitState};
pub use unit::UnitSpec;
