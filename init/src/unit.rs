//! What a unit is: how to run it, when it is ready, how to restart and stop it, its limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::{Backoff, RestartMode};

/// One supervised program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitSpec {
    pub name: String,
    /// The group it belongs to; groups start in `priority` order (lower first).
    pub group: String,
    pub priority: u32,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub working_directory: Option<PathBuf>,
    /// Numeric user and group to run as (agentd resolves names).
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
    /// Units that must be running (ready) first; if one gives up, this one does not start.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Units to start first when they are being started too.
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub readiness: Readiness,
    /// How long `Starting` may last before the unit is stopped as failed.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Duration,
    pub restart: RestartMode,
    /// Exit statuses that mean "do not restart" whatever `restart` says (systemd's
    /// `RestartPreventExitStatus=`): a worker whose model file is invalid will not get better.
    #[serde(default)]
    pub restart_prevent_exit_status: Vec<i32>,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: Duration,
    /// Started on the first connection to these sockets rather than at start.
    #[serde(default)]
    pub listen: Vec<Listen>,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default = "yes")]
    pub no_new_privs: bool,
    /// SELinux context to exec with (applied only when SELinux is enabled).
    #[serde(default)]
    pub selinux_context: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub log: LogTarget,
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_stop_timeout() -> Duration {
    Duration::from_secs(10)
}
fn yes() -> bool {
    true
}

impl UnitSpec {
    /// A unit with defaults: restart on failure, ready once started.
    pub fn new(name: impl Into<String>, argv: &[&str]) -> UnitSpec {
        UnitSpec {
            name: name.into(),
            group: "default".into(),
            priority: 50,
            argv: argv.iter().map(|s| (*s).to_string()).collect(),
            env: vec![],
            working_directory: None,
            uid: None,
            gid: None,
            requires: vec![],
            after: vec![],
            readiness: Readiness::Exec,
            ready_timeout: default_ready_timeout(),
            restart: RestartMode::OnFailure,
            restart_prevent_exit_status: vec![],
            backoff: Backoff::default(),
            stop_timeout: default_stop_timeout(),
            listen: vec![],
            rlimits: vec![],
            no_new_privs: true,
            selinux_context: None,
            limits: Limits::default(),
            log: LogTarget::Inherit,
        }
    }
}

/// When a unit counts as ready.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Readiness {
    /// Once the process has been started.
    #[default]
    Exec,
    /// When it sends `READY=1` on its `NOTIFY_SOCKET` (the sd_notify protocol).
    Notify,
    /// When a TCP connection to this address succeeds.
    Tcp { addr: SocketAddr },
    /// When `GET path` on this address answers 2xx.
    Http { addr: SocketAddr, path: String },
}

/// A socket held while the unit is dormant and handed over with `LISTEN_FDS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Listen {
    Tcp { addr: SocketAddr },
    Unix { path: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE` and friends, as their name without the prefix: `nofile`, `nproc`,
    /// `core`, `memlock`, `stack`, `as`, `fsize`.
    pub resource: RlimitResource,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RlimitResource {
    Nofile,
    Nproc,
    Core,
    Memlock,
    Stack,
    As,
    /// The largest file the process may write (`RLIMIT_FSIZE`).
    Fsize,
}

/// cgroup v2 limits, applied in the unit's cgroup when a delegated subtree exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    pub cpu_weight: Option<u32>,
    pub io_weight: Option<u32>,
    pub cpuset: Option<String>,
    /// Kill the whole cgroup when one process is OOM-killed (memory.oom.group).
    #[serde(default = "yes")]
    pub oom_group: bool,
}

/// Where the unit's stdout and stderr go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LogTarget {
    /// The supervisor's own stdout/stderr.
    #[default]
    Inherit,
    /// Appended to this file (dev mode).
    File { path: PathBuf },
    /// A journald stream with the unit's name as identifier.
    Journal,
    /// Discarded.
    Null,
}
