//! The supervisor: one task owns every unit's state; everything that happens reaches it as a
//! message (a command, a process exit from a pidfd watcher, a notification, a timer, a
//! connection on a dormant unit's socket) and every state change goes out as an [`Event`].
//!
//! Idle, the engine sleeps in the reactor: no timer is armed unless a unit is starting,
//! stopping, backing off, or the state file has unwritten changes.
//!
//! By concern: `order` (which units may be added together, and in what order), `schedule`
//! (wanting and starting in group and dependency order, dormant sockets), `lifecycle`
//! (launch, readiness, exit, restart, stop), `adopt` (the state file and recovery), `probe`
//! (readiness probes), `journal` (log streams), [`procfs`] (other processes' facts). Every
//! host path the engine reads is in [`HostPaths`].

mod adopt;
mod journal;
mod lifecycle;
mod order;
mod probe;
pub mod procfs;
mod schedule;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::backoff::RestartHistory;
use crate::notify;
use crate::reap;
use crate::state::{Event, ExitReason, UnitState};
use crate::unit::UnitSpec;
use order::validate;

/// Where the engine keeps its runtime files.
#[derive(Debug, Clone)]
pub struct Config {
    /// Notify sockets go under `runtime_dir/notify/`.
    pub runtime_dir: PathBuf,
    /// Running units are recorded here (atomically), for re-adoption after a restart.
    pub state_file: Option<PathBuf>,
    /// Become the child subreaper (the real supervisor does; tests may not).
    pub subreaper: bool,
    /// Re-adopt units recorded in `state_file` that are still running.
    pub adopt: bool,
    /// The delegated cgroup v2 subtree ([`crate::cgroup::Cgroups::detect`] then `prepare`),
    /// or why there is none: limits are then off.
    pub cgroups: Result<crate::cgroup::Cgroups, crate::cgroup::Unavailable>,
    /// The host paths the engine reads and connects to.
    pub host: HostPaths,
}

/// Where the engine finds the host: `/proc`, `/sys` and journald's stream socket on a real
/// system ([`HostPaths::default`]), fixture trees in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    /// journald's stream socket (`/run/systemd/journal/stdout`).
    pub journal_stdout: PathBuf,
}

impl Default for HostPaths {
    fn default() -> HostPaths {
        HostPaths {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            journal_stdout: PathBuf::from("/run/systemd/journal/stdout"),
        }
    }
}

impl HostPaths {
    /// Whether SELinux is enabled on this kernel.
    pub fn selinux_enabled(&self) -> bool {
        aither_sys::selinux::enabled(&self.sys)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no unit named {0:?}")]
    UnknownUnit(String),
    #[error("unit {unit:?}: {problem}")]
    Invalid { unit: String, problem: String },
    #[error("the engine has stopped")]
    Stopped,
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// A unit as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatus {
    pub name: String,
    pub group: String,
    pub priority: u32,
    pub state: UnitState,
    pub status: Option<String>,
    /// Times it was started again: by its restart policy, or asked to (`restart`).
    pub restarts: u32,
}

/// A change asked of the engine; each is answered with its result.
enum Change {
    StartAll,
    StartSet(Vec<String>),
    Start(String),
    Add(Vec<UnitSpec>),
    Remove(String),
    Detach,
    Stop(String),
    Restart(String),
    Shutdown,
}

/// A command and where its reply goes, typed per command.
enum Cmd {
    Change(Change, oneshot::Sender<Result<(), EngineError>>),
    Status(oneshot::Sender<Vec<UnitStatus>>),
    Limits(oneshot::Sender<String>),
}

enum TimerKind {
    Restart,
    ReadyTimeout,
    Kill,
}

enum Msg {
    Cmd(Cmd),
    Exited { unit: String, generation: u64, reason: ExitReason },
    Notify { unit: String, note: notify::Notification, sender: Option<i32> },
    Timer { unit: String, generation: u64, kind: TimerKind },
    Probed { unit: String, generation: u64 },
    Activate { unit: String },
    Reap,
    Flush,
}

/// Handle to a running engine.
#[derive(Debug, Clone)]
pub struct Supervisor {
    tx: mpsc::UnboundedSender<Msg>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl Supervisor {
    /// Start the engine task on the current tokio runtime with these units (none started yet).
    pub fn spawn(
        config: Config,
        units: Vec<UnitSpec>,
    ) -> Result<(Supervisor, tokio::task::JoinHandle<()>), EngineError> {
        let mut by_name = BTreeMap::new();
        for spec in units {
            validate(&spec)?;
            if by_name.contains_key(&spec.name) {
                return Err(EngineError::Invalid { unit: spec.name, problem: "defined twice".into() });
            }
            by_name.insert(spec.name.clone(), Unit::new(spec));
        }
        for u in by_name.values() {
            for dep in u.spec.requires.iter().chain(&u.spec.after) {
                if !by_name.contains_key(dep) {
                    return Err(EngineError::Invalid {
                        unit: u.spec.name.clone(),
                        problem: format!("depends on unknown unit {dep:?}"),
                    });
                }
            }
        }
        if config.subreaper {
            reap::become_subreaper()
                .map_err(|source| EngineError::Io { what: "PR_SET_CHILD_SUBREAPER".into(), source })?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        // A program the daemon ran and collected may have held the reaper up.
        let kick = tx.clone();
        aither_sys::children::on_untrack(move || {
            let _ = kick.send(Msg::Reap);
        });
        let (events, _) = broadcast::channel(4096);
        let mut engine = Engine {
            cfg: config,
            units: by_name,
            tx: tx.clone(),
            events: events.clone(),
            epoch: Instant::now(),
            shutdown: None,
            dirty: false,
            detached: false,
        };
        engine.adopt();
        let sigchld_tx = tx.clone();
        // Orphans reparented to us are reaped on SIGCHLD.
        tokio::spawn(async move {
            let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) else { return };
            while sig.recv().await.is_some() {
                if sigchld_tx.send(Msg::Reap).is_err() {
                    break;
                }
            }
        });
        let handle = tokio::spawn(engine.run(rx));
        Ok((Supervisor { tx, events }, handle))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Send a command; `reply` is its answer, once the engine has it.
    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Cmd(cmd(tx))).map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    async fn done(&self, change: Change) -> Result<(), EngineError> {
        self.ask(|tx| Cmd::Change(change, tx)).await?
    }

    /// Start every unit: groups in priority order, then dependencies; dormant units hold
    /// their sockets.
    pub async fn start_all(&self) -> Result<(), EngineError> {
        self.done(Change::StartAll).await
    }
    /// Start these units together: all are wanted before any is scheduled, so group order
    /// holds among them.
    pub async fn start_set(&self, units: Vec<String>) -> Result<(), EngineError> {
        self.done(Change::StartSet(units)).await
    }
    pub async fn start(&self, unit: &str) -> Result<(), EngineError> {
        self.done(Change::Start(unit.into())).await
    }
    /// Add a unit, or replace the specification of one that is not up (a running unit keeps
    /// its process; the new specification applies from its next start).
    pub async fn add(&self, spec: UnitSpec) -> Result<(), EngineError> {
        self.done(Change::Add(vec![spec])).await
    }
    /// Add or replace several units at once, all or nothing: their dependencies may be on
    /// each other or on units already there, in any order; when one is invalid (or they
    /// make a dependency cycle) none is added and the engine is as it was.
    pub async fn add_all(&self, specs: Vec<UnitSpec>) -> Result<(), EngineError> {
        self.done(Change::Add(specs)).await
    }
    /// Remove a unit that is not up (stop it first).
    pub async fn remove(&self, unit: &str) -> Result<(), EngineError> {
        self.done(Change::Remove(unit.into())).await
    }
    /// End the engine and leave every unit running, recorded in the state file for the next
    /// engine to adopt (`systemctl restart agentd`).
    pub async fn detach(&self) -> Result<(), EngineError> {
        self.done(Change::Detach).await
    }
    pub async fn stop(&self, unit: &str) -> Result<(), EngineError> {
        self.done(Change::Stop(unit.into())).await
    }
    pub async fn restart(&self, unit: &str) -> Result<(), EngineError> {
        self.done(Change::Restart(unit.into())).await
    }
    pub async fn status(&self) -> Result<Vec<UnitStatus>, EngineError> {
        self.ask(Cmd::Status).await
    }
    /// Whether cgroup limits are applied, and if not why.
    pub async fn limits(&self) -> Result<String, EngineError> {
        self.ask(Cmd::Limits).await
    }

    /// Stop every unit, highest priority number first, and end the engine.
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        self.done(Change::Shutdown).await
    }
}

struct Unit {
    spec: UnitSpec,
    state: UnitState,
    wanted: bool,
    history: RestartHistory,
    restarts: u32,
    started: Instant,
    generation: u64,
    status: Option<String>,
    notify_path: Option<PathBuf>,
    /// Why a stop was asked for (a ready timeout), reported when the process is gone.
    stop_reason: Option<ExitReason>,
    listeners: Vec<OwnedFd>,
    /// A restart was asked for: start again once stopped.
    restart_after_stop: bool,
    /// The cgroup's OOM kill count when the current run started.
    oom_before: Option<u64>,
}

impl Unit {
    fn new(spec: UnitSpec) -> Unit {
        Unit {
            spec,
            state: UnitState::Inactive,
            wanted: false,
            history: RestartHistory::default(),
            restarts: 0,
            started: Instant::now(),
            generation: 0,
            status: None,
            notify_path: None,
            stop_reason: None,
            listeners: vec![],
            restart_after_stop: false,
            oom_before: None,
        }
    }

    /// Settled for ordering: units ordered after it may start.
    fn settled(&self) -> bool {
        matches!(
            self.state,
            UnitState::Running { .. } | UnitState::Dormant | UnitState::GaveUp { .. } | UnitState::Failed { .. }
        ) || (matches!(self.state, UnitState::Exited { .. } | UnitState::Inactive) && !self.wanted)
            || matches!(self.state, UnitState::Exited { reason: ExitReason::Code { code: 0 } })
    }
}

struct Engine {
    cfg: Config,
    units: BTreeMap<String, Unit>,
    tx: mpsc::UnboundedSender<Msg>,
    events: broadcast::Sender<Event>,
    epoch: Instant,
    shutdown: Option<oneshot::Sender<Result<(), EngineError>>>,
    dirty: bool,
    /// Detached: the engine has ended and left its units running.
    detached: bool,
}

impl Engine {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Cmd(Cmd::Change(change, reply)) => self.change(change, reply),
                Msg::Cmd(Cmd::Status(reply)) => {
                    let _ = reply.send(self.status());
                }
                Msg::Cmd(Cmd::Limits(reply)) => {
                    let _ = reply.send(match &self.cfg.cgroups {
                        Ok(cg) => format!("cgroup v2 limits applied under {}", cg.root().display()),
                        Err(why) => why.to_string(),
                    });
                }
                Msg::Exited { unit, generation, reason } => self.exited(&unit, generation, reason),
                Msg::Notify { unit, note, sender } => self.notified(&unit, note, sender),
                Msg::Timer { unit, generation, kind } => self.timer(&unit, generation, kind),
                Msg::Probed { unit, generation } => self.probed(&unit, generation),
                Msg::Activate { unit } => self.activate(&unit),
                Msg::Reap => {
                    reap::reap_orphans();
                }
                Msg::Flush => self.flush(),
            }
            if self.detached {
                return;
            }
            if self.shutdown.is_some() {
                self.advance_shutdown();
                if self.units.values().all(|u| u.state.pid().is_none()) {
                    self.flush();
                    if let Some(reply) = self.shutdown.take() {
                        let _ = reply.send(Ok(()));
                    }
                    return;
                }
            }
        }
    }

    fn status(&self) -> Vec<UnitStatus> {
        self.units
            .values()
            .map(|u| UnitStatus {
                name: u.spec.name.clone(),
                group: u.spec.group.clone(),
                priority: u.spec.priority,
                state: u.state.clone(),
                status: u.status.clone(),
                restarts: u.restarts,
            })
            .collect()
    }

    fn change(&mut self, change: Change, reply: oneshot::Sender<Result<(), EngineError>>) {
        let result = match change {
            Change::StartAll => {
                for u in self.units.values_mut() {
                    u.wanted = true;
                }
                self.arm_dormant();
                self.schedule();
                Ok(())
            }
            Change::StartSet(names) => match names.iter().find(|n| !self.units.contains_key(n.as_str())) {
                Some(unknown) => Err(EngineError::UnknownUnit(unknown.clone())),
                None => {
                    for n in &names {
                        self.want(n);
                    }
                    self.arm_dormant();
                    self.schedule();
                    Ok(())
                }
            },
            Change::Start(name) => self.with_unit(&name, |e, n| {
                e.want(n);
                e.arm_dormant();
                e.schedule();
            }),
            Change::Add(specs) => self.add(specs),
            Change::Remove(name) => self
                .with_unit(&name, |e, n| {
                    if e.units[n].state.pid().is_none() {
                        e.units.remove(n);
                        if let Ok(cg) = &e.cfg.cgroups {
                            cg.remove_unit(n);
                        }
                        e.schedule();
                    }
                })
                .and_then(|()| match self.units.get(&name) {
                    Some(_) => {
                        Err(EngineError::Invalid { unit: name.clone(), problem: "is running: stop it first".into() })
                    }
                    None => Ok(()),
                }),
            Change::Detach => {
                self.flush();
                self.detached = true;
                match &self.cfg.cgroups {
                    Ok(cg) => cg.release().map_err(|source| EngineError::Io {
                        what: format!("releasing the controllers of {}", cg.root().display()),
                        source,
                    }),
                    Err(_) => Ok(()),
                }
            }
            Change::Stop(name) => self.with_unit(&name, |e, n| e.stop_unit(n, None)),
            Change::Restart(name) => self.with_unit(&name, |e, n| {
                let up = e.units.get(n).is_some_and(|u| u.state.pid().is_some());
                if up {
                    e.units.get_mut(n).expect("checked").restart_after_stop = true;
                    e.stop_unit(n, None);
                } else {
                    let u = e.units.get_mut(n).expect("checked");
                    u.wanted = true;
                    u.state = UnitState::Inactive;
                    e.schedule();
                }
            }),
            Change::Shutdown => {
                for u in self.units.values_mut() {
                    u.wanted = false;
                }
                self.shutdown = Some(reply);
                return;
            }
        };
        let _ = reply.send(result);
    }
}
