//! The state of a unit, and the events the engine publishes when it changes.
//!
//! ```text
//!              start                 spawned           READY=1 / probe ok / exec
//!  Inactive ─────────► Waiting ─────────► Starting ─────────────────────► Running
//!     ▲   ╲ dormant      (deps)              │  ╲ ready timeout               │
//!     │    ╲──► Dormant ──first connection───┘   ╲────────────┐               │ exit / crash
//!     │                                                       ▼               ▼
//!     │  stop (SIGTERM, timeout, SIGKILL)               ┌──────────── Exited{failed} ─────┐
//!     ├────────────── Stopping ◄── stop ── any running  │  policy says restart            │ policy says stay
//!     │                                                 ▼                                 ▼
//!     │                                        Backoff{delay} ── timer ──► Starting    Inactive / Failed
//!     │                                                 │ burst exceeded
//!     │                                                 ▼
//!     └─────────────────────────────────────────── GaveUp (until started again)
//!                                    OomKilled: an Exited whose cause was the cgroup OOM killer
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a unit's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ExitReason {
    /// Exited with this status.
    Code { code: i32 },
    /// Killed by this signal.
    Signal { signal: i32 },
    /// Killed by the OOM killer inside its cgroup (memory.events oom_kill grew).
    OomKilled,
    /// It did not become ready in time and was stopped.
    ReadyTimeout,
    /// It could not be started (exec failed, bad working directory, ...).
    SpawnFailed { error: String },
    /// An adopted process (started by an earlier supervisor) ended; its status is not ours
    /// to collect.
    Unknown,
    /// A unit it requires failed or gave up.
    DependencyFailed { unit: String },
}

impl ExitReason {
    /// Whether this counts as a failure for `on-failure` restarts.
    pub fn failed(&self) -> bool {
        !matches!(self, ExitReason::Code { code: 0 })
    }
}

/// The state machine of a unit (see the diagram in the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum UnitState {
    /// Not running and not asked to.
    Inactive,
    /// Asked to start, waiting for the units it requires or is ordered after.
    Waiting,
    /// Not running; its listening sockets are held and the first connection starts it.
    Dormant,
    /// Spawned, not ready yet.
    Starting { pid: i32 },
    /// Ready.
    Running { pid: i32 },
    /// Asked to stop; SIGTERM sent, SIGKILL after the stop timeout.
    Stopping { pid: i32 },
    /// Its process ended; what happens next depends on the restart policy.
    Exited { reason: ExitReason },
    /// Waiting to be restarted.
    Backoff { delay_ms: u64, reason: ExitReason },
    /// Restarted too often in too short a time; stays down until started again.
    GaveUp { reason: ExitReason },
    /// Stopped for good after a failure (restart policy says stay).
    Failed { reason: ExitReason },
}

impl UnitState {
    pub fn pid(&self) -> Option<i32> {
        match self {
            UnitState::Starting { pid } | UnitState::Running { pid } | UnitState::Stopping { pid } => Some(*pid),
            _ => None,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self, UnitState::Starting { .. } | UnitState::Running { .. })
    }

    pub fn backoff(delay: Duration, reason: ExitReason) -> UnitState {
        UnitState::Backoff { delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), reason }
    }
}

/// A state change, as published on the engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub unit: String,
    pub state: UnitState,
    /// The unit's `STATUS=` line, when it sent one.
    pub status: Option<String>,
}
