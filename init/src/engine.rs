//! The supervisor: one task owns every unit's state; everything that happens reaches it as a
//! message (a command, a process exit from a pidfd watcher, a notification, a timer, a
//! connection on a dormant unit's socket) and every state change goes out as an [`Event`].
//!
//! Idle, the engine sleeps in the reactor: no timer is armed unless a unit is starting,
//! stopping, backing off, or the state file has unwritten changes.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::backoff::{Decision, RestartHistory, RestartMode};
use crate::notify;
use crate::reap;
use crate::spawn::{self, SpawnRequest};
use crate::state::{Event, ExitReason, UnitState};
use crate::unit::{Listen, LogTarget, Readiness, UnitSpec};

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
    pub restarts: u32,
}

enum Cmd {
    StartAll,
    StartSet(Vec<String>),
    Start(String),
    Add(Vec<UnitSpec>),
    Remove(String),
    Detach,
    Stop(String),
    Restart(String),
    Status,
    Limits,
    Shutdown,
}

enum Reply {
    Done(Result<(), EngineError>),
    Status(Vec<UnitStatus>),
    Text(String),
}

enum TimerKind {
    Restart,
    ReadyTimeout,
    Kill,
}

enum Msg {
    Cmd(Cmd, oneshot::Sender<Reply>),
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

    async fn call(&self, cmd: Cmd) -> Result<Reply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Cmd(cmd, tx)).map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    async fn done(&self, cmd: Cmd) -> Result<(), EngineError> {
        match self.call(cmd).await? {
            Reply::Done(r) => r,
            Reply::Status(_) | Reply::Text(_) => Ok(()),
        }
    }

    /// Start every unit: groups in priority order, then dependencies; dormant units hold
    /// their sockets.
    pub async fn start_all(&self) -> Result<(), EngineError> {
        self.done(Cmd::StartAll).await
    }
    /// Start these units together: all are wanted before any is scheduled, so group order
    /// holds among them.
    pub async fn start_set(&self, units: Vec<String>) -> Result<(), EngineError> {
        self.done(Cmd::StartSet(units)).await
    }
    pub async fn start(&self, unit: &str) -> Result<(), EngineError> {
        self.done(Cmd::Start(unit.into())).await
    }
    /// Add a unit, or replace the specification of one that is not up (a running unit keeps
    /// its process; the new specification applies from its next start).
    pub async fn add(&self, spec: UnitSpec) -> Result<(), EngineError> {
        self.done(Cmd::Add(vec![spec])).await
    }
    /// Add or replace several units at once, all or nothing: their dependencies may be on
    /// each other or on units already there, in any order; when one is invalid (or they
    /// make a dependency cycle) none is added and the engine is as it was.
    pub async fn add_all(&self, specs: Vec<UnitSpec>) -> Result<(), EngineError> {
        self.done(Cmd::Add(specs)).await
    }
    /// Remove a unit that is not up (stop it first).
    pub async fn remove(&self, unit: &str) -> Result<(), EngineError> {
        self.done(Cmd::Remove(unit.into())).await
    }
    /// End the engine and leave every unit running, recorded in the state file for the next
    /// engine to adopt (`systemctl restart agentd`).
    pub async fn detach(&self) -> Result<(), EngineError> {
        self.done(Cmd::Detach).await
    }
    pub async fn stop(&self, unit: &str) -> Result<(), EngineError> {
        self.done(Cmd::Stop(unit.into())).await
    }
    pub async fn restart(&self, unit: &str) -> Result<(), EngineError> {
        self.done(Cmd::Restart(unit.into())).await
    }
    pub async fn status(&self) -> Result<Vec<UnitStatus>, EngineError> {
        match self.call(Cmd::Status).await? {
            Reply::Status(s) => Ok(s),
            Reply::Done(r) => r.map(|()| vec![]),
            Reply::Text(_) => Ok(vec![]),
        }
    }
    /// Whether cgroup limits are applied, and if not why.
    pub async fn limits(&self) -> Result<String, EngineError> {
        match self.call(Cmd::Limits).await? {
            Reply::Text(t) => Ok(t),
            _ => Ok(String::new()),
        }
    }

    /// Stop every unit, highest priority number first, and end the engine.
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        self.done(Cmd::Shutdown).await
    }
}

/// `names` ordered so that each comes after the dependencies `deps_of` gives it (following
/// dependencies through units outside `names` too); a cycle is an error naming it.
fn dependency_order<'a>(
    names: impl Iterator<Item = &'a str>,
    deps_of: &dyn Fn(&str) -> Vec<String>,
) -> Result<Vec<String>, EngineError> {
    fn visit(
        name: &str,
        deps_of: &dyn Fn(&str) -> Vec<String>,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Result<(), EngineError> {
        if done.iter().any(|d| d == name) {
            return Ok(());
        }
        if let Some(at) = path.iter().position(|p| p == name) {
            let mut cycle = path[at..].to_vec();
            cycle.push(name.to_string());
            return Err(EngineError::Invalid {
                unit: name.to_string(),
                problem: format!("dependency cycle: {}", cycle.join(" -> ")),
            });
        }
        path.push(name.to_string());
        for d in deps_of(name) {
            visit(&d, deps_of, path, done)?;
        }
        path.pop();
        done.push(name.to_string());
        Ok(())
    }
    let wanted: Vec<&str> = names.collect();
    let mut done = Vec::new();
    for n in &wanted {
        visit(n, deps_of, &mut Vec::new(), &mut done)?;
    }
    Ok(done.into_iter().filter(|d| wanted.contains(&d.as_str())).collect())
}

fn validate(spec: &UnitSpec) -> Result<(), EngineError> {
    let bad = |problem: &str| Err(EngineError::Invalid { unit: spec.name.clone(), problem: problem.into() });
    if spec.name.is_empty() || spec.name.contains('/') || spec.name.starts_with('.') {
        return bad("names are non-empty and hold no '/' nor a leading '.'");
    }
    if spec.argv.is_empty() {
        return bad("argv is empty");
    }
    Ok(())
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

/// What the state file records of a running unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    name: String,
    pid: i32,
    /// Field 22 of /proc/<pid>/stat, so a reused PID is not mistaken for the unit.
    start_time: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    schema_version: u32,
    units: Vec<Recorded>,
}

/// Field `n` (1-based, as in proc(5)) of `/proc/<pid>/stat`, for fields after the name.
fn stat_field(pid: i32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// The start time of a process in clock ticks since boot (field 22).
pub fn process_start_time(pid: i32) -> Option<u64> {
    stat_field(pid, 22)
}

struct Engine {
    cfg: Config,
    units: BTreeMap<String, Unit>,
    tx: mpsc::UnboundedSender<Msg>,
    events: broadcast::Sender<Event>,
    epoch: Instant,
    shutdown: Option<oneshot::Sender<Reply>>,
    dirty: bool,
    /// Detached: the engine has ended and left its units running.
    detached: bool,
}

impl Engine {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Cmd(cmd, reply) => self.command(cmd, reply),
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
                        let _ = reply.send(Reply::Done(Ok(())));
                    }
                    return;
                }
            }
        }
    }

    fn command(&mut self, cmd: Cmd, reply: oneshot::Sender<Reply>) {
        let result = match cmd {
            Cmd::StartAll => {
                for u in self.units.values_mut() {
                    u.wanted = true;
                }
                self.arm_dormant();
                self.schedule();
                Ok(())
            }
            Cmd::StartSet(names) => match names.iter().find(|n| !self.units.contains_key(n.as_str())) {
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
            Cmd::Start(name) => self.with_unit(&name, |e, n| {
                e.want(n);
                e.arm_dormant();
                e.schedule();
            }),
            Cmd::Add(specs) => self.add(specs),
            Cmd::Remove(name) => self
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
            Cmd::Detach => {
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
            Cmd::Stop(name) => self.with_unit(&name, |e, n| e.stop_unit(n, None)),
            Cmd::Restart(name) => self.with_unit(&name, |e, n| {
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
            Cmd::Status => {
                let list = self
                    .units
                    .values()
                    .map(|u| UnitStatus {
                        name: u.spec.name.clone(),
                        group: u.spec.group.clone(),
                        priority: u.spec.priority,
                        state: u.state.clone(),
                        status: u.status.clone(),
                        restarts: u.restarts,
                    })
                    .collect();
                let _ = reply.send(Reply::Status(list));
                return;
            }
            Cmd::Limits => {
                let text = match &self.cfg.cgroups {
                    Ok(cg) => format!("cgroup v2 limits applied under {}", cg.root().display()),
                    Err(why) => why.to_string(),
                };
                let _ = reply.send(Reply::Text(text));
                return;
            }
            Cmd::Shutdown => {
                for u in self.units.values_mut() {
                    u.wanted = false;
                }
                self.shutdown = Some(reply);
                return;
            }
        };
        let _ = reply.send(Reply::Done(result));
    }

    fn want(&mut self, name: &str) {
        let Some(u) = self.units.get_mut(name) else { return };
        u.wanted = true;
        if matches!(u.state, UnitState::GaveUp { .. } | UnitState::Failed { .. }) {
            u.history = RestartHistory::default();
            u.state = UnitState::Inactive;
        }
    }

    /// Add or replace `specs` together: every one is checked against the units there and the
    /// others added with it, and nothing changes unless all are valid. They go in in
    /// dependency order, so a unit's dependencies always exist before it does.
    fn add(&mut self, specs: Vec<UnitSpec>) -> Result<(), EngineError> {
        for spec in &specs {
            validate(spec)?;
        }
        let deps_of = |name: &str| -> Vec<String> {
            match specs.iter().find(|s| s.name == name) {
                Some(s) => s.requires.iter().chain(&s.after).cloned().collect(),
                None => self
                    .units
                    .get(name)
                    .map(|u| u.spec.requires.iter().chain(&u.spec.after).cloned().collect())
                    .unwrap_or_default(),
            }
        };
        for spec in &specs {
            let known = |d: &String| self.units.contains_key(d.as_str()) || specs.iter().any(|s| &s.name == d);
            if let Some(dep) = spec.requires.iter().chain(&spec.after).find(|d| !known(d)) {
                return Err(EngineError::Invalid {
                    unit: spec.name.clone(),
                    problem: format!("depends on unknown unit {dep:?}"),
                });
            }
        }
        let order = dependency_order(specs.iter().map(|s| s.name.as_str()), &deps_of)?;
        let mut by_name: BTreeMap<String, UnitSpec> = specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        for name in order {
            let Some(spec) = by_name.remove(&name) else { continue };
            match self.units.get_mut(&spec.name) {
                Some(u) => u.spec = spec,
                None => {
                    self.units.insert(name.clone(), Unit::new(spec));
                    let _ = self.events.send(Event { unit: name, state: UnitState::Inactive, status: None });
                }
            }
        }
        Ok(())
    }

    fn with_unit(&mut self, name: &str, f: impl FnOnce(&mut Engine, &str)) -> Result<(), EngineError> {
        if !self.units.contains_key(name) {
            return Err(EngineError::UnknownUnit(name.to_string()));
        }
        f(self, name);
        Ok(())
    }

    fn set_state(&mut self, name: &str, state: UnitState) {
        let Some(u) = self.units.get_mut(name) else { return };
        if u.state == state {
            return;
        }
        u.state = state.clone();
        let _ = self.events.send(Event { unit: name.to_string(), state, status: u.status.clone() });
        self.mark_dirty();
    }

    /// Start every wanted unit whose turn it is.
    fn schedule(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let mut order: Vec<(u32, String)> =
            self.units.values().map(|u| (u.spec.priority, u.spec.name.clone())).collect();
        order.sort();
        for (priority, name) in order {
            let u = &self.units[&name];
            if !u.wanted || !matches!(u.state, UnitState::Inactive | UnitState::Waiting | UnitState::Exited { .. }) {
                continue;
            }
            if matches!(u.state, UnitState::Exited { .. }) && !u.restart_after_stop {
                continue;
            }
            // A required unit that failed fails this one.
            if let Some(dep) =
                u.spec.requires.iter().find(|d| {
                    matches!(self.units[d.as_str()].state, UnitState::GaveUp { .. } | UnitState::Failed { .. })
                })
            {
                let reason = ExitReason::DependencyFailed { unit: dep.clone() };
                self.set_state(&name, UnitState::Failed { reason });
                continue;
            }
            let requires_ok =
                u.spec.requires.iter().all(|d| matches!(self.units[d.as_str()].state, UnitState::Running { .. }));
            let after_ok = u.spec.after.iter().all(|d| {
                let dep = &self.units[d.as_str()];
                !dep.wanted || dep.settled()
            });
            let earlier_groups_ok =
                self.units.values().filter(|o| o.wanted && o.spec.priority < priority).all(Unit::settled);
            if requires_ok && after_ok && earlier_groups_ok {
                self.launch(&name, false);
            } else if !matches!(u.state, UnitState::Waiting) {
                self.set_state(&name, UnitState::Waiting);
            }
        }
    }

    /// Bind the listening sockets of wanted dormant units and wait for a connection.
    fn arm_dormant(&mut self) {
        let names: Vec<String> = self
            .units
            .values()
            .filter(|u| u.wanted && !u.spec.listen.is_empty() && u.listeners.is_empty() && u.state.pid().is_none())
            .map(|u| u.spec.name.clone())
            .collect();
        for name in names {
            let mut fds = Vec::new();
            let spec = self.units[&name].spec.clone();
            for l in &spec.listen {
                match bind_listener(l) {
                    Ok(fd) => fds.push(fd),
                    Err(e) => {
                        let reason = ExitReason::SpawnFailed { error: format!("cannot listen on {l:?}: {e}") };
                        self.set_state(&name, UnitState::Failed { reason });
                        break;
                    }
                }
            }
            if fds.len() != spec.listen.len() {
                continue;
            }
            for fd in &fds {
                let Ok(watch) = fd.try_clone() else { continue };
                let tx = self.tx.clone();
                let unit = name.clone();
                tokio::spawn(async move {
                    if let Ok(afd) = reap::readable_fd(watch) {
                        if afd.readable().await.is_ok() {
                            let _ = tx.send(Msg::Activate { unit });
                        }
                    }
                });
            }
            self.units.get_mut(&name).expect("exists").listeners = fds;
            self.set_state(&name, UnitState::Dormant);
        }
    }

    fn activate(&mut self, name: &str) {
        let Some(u) = self.units.get(name) else { return };
        if u.wanted && matches!(u.state, UnitState::Dormant) {
            self.launch(name, true);
        }
    }

    fn launch(&mut self, name: &str, with_listeners: bool) {
        let runtime_dir = self.cfg.runtime_dir.clone();
        let tx = self.tx.clone();
        let Some(u) = self.units.get_mut(name) else { return };
        u.generation += 1;
        u.restart_after_stop = false;
        u.stop_reason = None;
        let generation = u.generation;
        let spec = u.spec.clone();
        // The notify socket lives as long as the unit; bound on first start.
        if spec.readiness == Readiness::Notify && u.notify_path.is_none() {
            let owner = spec.uid.map(|uid| (uid, spec.gid.unwrap_or(uid)));
            match notify::bind(&runtime_dir.join("notify"), name, owner) {
                Ok((path, sock)) => {
                    u.notify_path = Some(path);
                    let unit = name.to_string();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        loop {
                            let got =
                                sock.async_io(tokio::io::Interest::READABLE, || notify::recv(&sock, &mut buf)).await;
                            let Ok((n, sender)) = got else { break };
                            let note = notify::parse(&String::from_utf8_lossy(&buf[..n.min(buf.len())]));
                            if tx.send(Msg::Notify { unit: unit.clone(), note, sender }).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(e) => {
                    let reason = ExitReason::SpawnFailed { error: format!("notify socket: {e}") };
                    self.exited(name, generation, reason);
                    return;
                }
            }
        }
        let mut env = spec.env.clone();
        // Names the unit in its processes, for finding them again without a state file.
        env.push((crate::recover::UNIT_ENV.into(), name.to_string()));
        if let Some(p) = &u.notify_path {
            env.push(("NOTIFY_SOCKET".into(), p.display().to_string()));
        }
        let listen_fds: Vec<OwnedFd> = if with_listeners || !u.listeners.is_empty() {
            u.listeners.iter().filter_map(|fd| fd.try_clone().ok()).collect()
        } else {
            vec![]
        };
        let log_context = spec.selinux_context.as_deref().filter(|_| selinux_enabled());
        let log = match open_log(&spec.log, name, log_context) {
            Ok(l) => l,
            Err(e) => {
                let reason = ExitReason::SpawnFailed { error: format!("log target: {e}") };
                self.exited(name, generation, reason);
                return;
            }
        };
        let cgroup = match &self.cfg.cgroups {
            Ok(cg) => match cg.create_unit(name, &spec.limits) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.exited(name, generation, ExitReason::SpawnFailed { error: format!("cgroup: {e}") });
                    return;
                }
            },
            Err(_) => None,
        };
        let oom_before = self.cfg.cgroups.as_ref().ok().and_then(|cg| cg.oom_kills(name));
        let Some(u) = self.units.get_mut(name) else { return };
        u.oom_before = oom_before;
        let req = SpawnRequest {
            argv: &spec.argv,
            env,
            working_directory: spec.working_directory.as_deref(),
            uid: spec.uid,
            gid: spec.gid,
            rlimits: &spec.rlimits,
            no_new_privs: spec.no_new_privs,
            selinux_context: spec.selinux_context.as_deref().filter(|_| selinux_enabled()),
            cgroup_procs: cgroup.as_ref().map(|c| &c.procs),
            stdout: log.as_ref().map(|(o, _)| o),
            stderr: log.as_ref().map(|(_, e)| e),
            listen_fds: &listen_fds,
        };
        let pid = match reap::spawn_tracked(|| spawn::spawn(&req)) {
            Ok(pid) => pid,
            Err(e) => {
                self.exited(name, generation, ExitReason::SpawnFailed { error: e.to_string() });
                return;
            }
        };
        u.started = Instant::now();
        watch_exit(&tx, name, generation, pid, true);
        self.set_state(name, UnitState::Starting { pid });
        match &spec.readiness {
            Readiness::Exec => self.set_state(name, UnitState::Running { pid }),
            Readiness::Notify => {}
            Readiness::Tcp { addr } => probe(tx.clone(), name.to_string(), generation, *addr, None),
            Readiness::Http { addr, path } => {
                probe(tx.clone(), name.to_string(), generation, *addr, Some(path.clone()))
            }
        }
        if spec.readiness != Readiness::Exec {
            self.timer_after(name, generation, spec.ready_timeout, TimerKind::ReadyTimeout);
        }
    }

    fn timer_after(&self, name: &str, generation: u64, after: Duration, kind: TimerKind) {
        let tx = self.tx.clone();
        let unit = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(Msg::Timer { unit, generation, kind });
        });
    }

    fn exited(&mut self, name: &str, generation: u64, reason: ExitReason) {
        let now = self.epoch.elapsed();
        let Some(u) = self.units.get_mut(name) else { return };
        if generation != u.generation {
            return;
        }
        let mut reason = u.stop_reason.take().unwrap_or(reason);
        if let (Ok(cg), Some(before)) = (&self.cfg.cgroups, u.oom_before) {
            if cg.oom_kills(name).is_some_and(|now| now > before) {
                reason = ExitReason::OomKilled;
            }
        }
        // The unit is over when its main process is: whatever it left behind goes too (its
        // whole cgroup, or its process group without one), before any restart.
        if let Some(pid) = u.state.pid() {
            if !self.cfg.cgroups.as_ref().is_ok_and(|cg| cg.kill(name).is_ok()) {
                kill_group(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        let stopping = matches!(u.state, UnitState::Stopping { .. });
        let restart_now = u.restart_after_stop;
        if stopping || !u.wanted || self.shutdown.is_some() {
            if restart_now {
                u.wanted = true;
                self.set_state(name, UnitState::Exited { reason });
                self.launch(name, false);
                return;
            }
            let next = if u.listeners.is_empty() || !u.wanted { UnitState::Inactive } else { UnitState::Dormant };
            self.set_state(name, UnitState::Exited { reason });
            self.set_state(name, next);
            self.schedule();
            return;
        }
        let uptime = u.started.elapsed();
        let prevented =
            matches!(reason, ExitReason::Code { code } if u.spec.restart_prevent_exit_status.contains(&code));
        let mode = if prevented { RestartMode::Never } else { u.spec.restart };
        let decision = u.spec.backoff.decide(mode, reason.failed(), uptime, now, &mut u.history);
        self.set_state(name, UnitState::Exited { reason: reason.clone() });
        match decision {
            Decision::RestartAfter(d) => {
                let u = self.units.get_mut(name).expect("exists");
                u.restarts += 1;
                if d.is_zero() {
                    self.launch(name, false);
                } else {
                    self.set_state(name, UnitState::backoff(d, reason));
                    self.timer_after(name, generation, d, TimerKind::Restart);
                }
            }
            Decision::GiveUp => self.set_state(name, UnitState::GaveUp { reason }),
            Decision::Stay if reason.failed() => self.set_state(name, UnitState::Failed { reason }),
            Decision::Stay => {}
        }
        self.schedule();
    }

    /// Whether `pid` is a process of unit `name` whose main process is `main`: the main
    /// process, a process in its cgroup, or (without cgroups) one of its descendants.
    fn belongs_to(&self, name: &str, main: i32, pid: i32) -> bool {
        if pid == main {
            return true;
        }
        if let Ok(cg) = &self.cfg.cgroups {
            return cg.procs(name).contains(&pid);
        }
        let mut p = pid;
        for _ in 0..64 {
            match parent_of(p).and_then(|pp| i32::try_from(pp).ok()) {
                Some(pp) if pp == main => return true,
                Some(pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    }

    fn notified(&mut self, name: &str, note: notify::Notification, sender: Option<i32>) {
        let Some(main) = self.units.get(name).and_then(|u| u.state.pid()) else { return };
        if !sender.is_some_and(|p| self.belongs_to(name, main, p)) {
            tracing::warn!(
                "{name}: a notification from pid {} was ignored: not a process of this unit",
                sender.map_or_else(|| "unknown".to_string(), |p| p.to_string())
            );
            return;
        }
        let Some(u) = self.units.get_mut(name) else { return };
        if let Some(s) = note.status {
            u.status = Some(s);
            let _ =
                self.events.send(Event { unit: name.to_string(), state: u.state.clone(), status: u.status.clone() });
        }
        if note.ready {
            if let UnitState::Starting { pid } = u.state {
                self.set_state(name, UnitState::Running { pid });
                self.schedule();
            }
        }
    }

    fn probed(&mut self, name: &str, generation: u64) {
        let Some(u) = self.units.get(name) else { return };
        if u.generation == generation {
            if let UnitState::Starting { pid } = u.state {
                self.set_state(name, UnitState::Running { pid });
                self.schedule();
            }
        }
    }

    fn timer(&mut self, name: &str, generation: u64, kind: TimerKind) {
        let Some(u) = self.units.get(name) else { return };
        if u.generation != generation {
            return;
        }
        match kind {
            TimerKind::Restart => {
                if u.wanted && matches!(u.state, UnitState::Backoff { .. }) {
                    self.launch(name, false);
                }
            }
            TimerKind::ReadyTimeout => {
                if matches!(u.state, UnitState::Starting { .. }) {
                    self.stop_unit(name, Some(ExitReason::ReadyTimeout));
                    // A ready timeout is a failure: the unit stays wanted for its restart policy.
                    if let Some(u) = self.units.get_mut(name) {
                        u.wanted = true;
                    }
                }
            }
            TimerKind::Kill => {
                if let UnitState::Stopping { pid } = u.state {
                    // The whole cgroup when there is one: processes that left the group too.
                    let killed = self.cfg.cgroups.as_ref().is_ok_and(|cg| cg.kill(name).is_ok());
                    if !killed {
                        kill_group(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
        }
    }

    /// SIGTERM to the unit's process group, SIGKILL after its stop timeout.
    fn stop_unit(&mut self, name: &str, reason: Option<ExitReason>) {
        let Some(u) = self.units.get_mut(name) else { return };
        u.wanted = reason.is_some();
        u.stop_reason = reason;
        match u.state.clone() {
            UnitState::Starting { pid } | UnitState::Running { pid } => {
                let (generation, timeout) = (u.generation, u.spec.stop_timeout);
                kill_group(pid, nix::sys::signal::Signal::SIGTERM);
                if let Ok(cg) = &self.cfg.cgroups {
                    for p in cg.procs(name) {
                        let _ =
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGTERM);
                    }
                }
                self.set_state(name, UnitState::Stopping { pid });
                self.timer_after(name, generation, timeout, TimerKind::Kill);
            }
            UnitState::Stopping { .. } => {}
            _ => {
                u.listeners.clear();
                self.set_state(name, UnitState::Inactive);
                self.schedule();
            }
        }
    }

    /// Stop the units of the highest priority number that are still up, then the next.
    fn advance_shutdown(&mut self) {
        let up: Vec<(u32, String)> = self
            .units
            .values()
            .filter(|u| u.state.pid().is_some())
            .map(|u| (u.spec.priority, u.spec.name.clone()))
            .collect();
        let Some(top) = up.iter().map(|(p, _)| *p).max() else { return };
        for (p, name) in up {
            if p == top && !matches!(self.units[&name].state, UnitState::Stopping { .. }) {
                self.stop_unit(&name, None);
            }
        }
        for u in self.units.values_mut() {
            u.listeners.clear();
        }
    }

    fn mark_dirty(&mut self) {
        if self.cfg.state_file.is_none() || self.dirty {
            return;
        }
        self.dirty = true;
        let tx = self.tx.clone();
        // Coalesce a burst of changes (1000 units starting) into one write.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(Msg::Flush);
        });
    }

    fn flush(&mut self) {
        self.dirty = false;
        let Some(path) = self.cfg.state_file.clone() else { return };
        let units = self
            .units
            .values()
            .filter_map(|u| {
                let pid = u.state.pid()?;
                Some(Recorded { name: u.spec.name.clone(), pid, start_time: process_start_time(pid)? })
            })
            .collect();
        let file = StateFile { schema_version: 1, units };
        if let Err(e) = aither_sys::atomic::write(&path, &serde_json::to_vec(&file).unwrap_or_default()) {
            tracing::warn!("cannot write the state file {}: {e}", path.display());
        }
    }

    /// Take over units recorded by an earlier engine that are still running.
    fn adopt(&mut self) {
        if !self.cfg.adopt {
            return;
        }
        let Some(path) = self.cfg.state_file.clone() else { return };
        let Ok(text) = std::fs::read(&path) else { return };
        let records = match serde_json::from_slice::<StateFile>(&text) {
            Ok(file) => file.units,
            Err(e) => self.recover(&path, &e),
        };
        for r in records {
            let Some(u) = self.units.get_mut(&r.name) else { continue };
            if process_start_time(r.pid) != Some(r.start_time) {
                continue; // gone, or the PID was reused
            }
            // With cgroups, the process must still be in the unit's cgroup.
            if let Ok(cg) = &self.cfg.cgroups {
                if !cg.procs(&r.name).contains(&r.pid) {
                    continue;
                }
            }
            // Limits were released when the last supervisor detached: apply them again.
            if let Ok(cg) = &self.cfg.cgroups {
                if let Err(e) = cg.create_unit(&r.name, &u.spec.limits) {
                    tracing::warn!("{}: cannot apply its limits again: {e}", r.name);
                }
            }
            u.generation += 1;
            u.wanted = true;
            u.started = Instant::now();
            u.state = UnitState::Running { pid: r.pid };
            let ours = parent_of(r.pid) == Some(std::process::id());
            reap::track(r.pid);
            watch_exit(&self.tx, &r.name, u.generation, r.pid, ours);
            let _ = self.events.send(Event { unit: r.name.clone(), state: u.state.clone(), status: None });
        }
    }
}

impl Engine {
    /// The state file is corrupt: keep it aside for whoever wants to look, and find the
    /// units' processes again (their cgroups, or their session and `AITHER_UNIT`), so the
    /// running units are adopted rather than started a second time.
    fn recover(&self, path: &Path, problem: &serde_json::Error) -> Vec<Recorded> {
        let aside = path.with_extension("json.corrupt");
        let kept = std::fs::rename(path, &aside)
            .map_or_else(|e| format!("it could not be moved aside ({e})"), |()| format!("kept as {}", aside.display()));
        let proc_root = Path::new("/proc");
        let names: Vec<&str> = self.units.keys().map(String::as_str).collect();
        let found: BTreeMap<String, crate::recover::Found> = match &self.cfg.cgroups {
            Ok(cg) => names
                .iter()
                .filter_map(|n| crate::recover::session_leader(proc_root, &cg.procs(n)).map(|f| ((*n).to_string(), f)))
                .collect(),
            Err(_) => {
                let uid = nix::unistd::geteuid();
                crate::recover::scan(proc_root, &names, (!uid.is_root()).then(|| uid.as_raw()))
            }
        };
        tracing::warn!(
            "{}: not a state file ({problem}); {kept}; found {} running unit{} again{}",
            path.display(),
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            if found.is_empty() {
                String::new()
            } else {
                format!(": {}", found.keys().cloned().collect::<Vec<_>>().join(", "))
            }
        );
        found.into_iter().map(|(name, f)| Recorded { name, pid: f.pid, start_time: f.start_time }).collect()
    }
}

fn parent_of(pid: i32) -> Option<u32> {
    stat_field(pid, 4).and_then(|p| u32::try_from(p).ok())
}

fn watch_exit(tx: &mpsc::UnboundedSender<Msg>, name: &str, generation: u64, pid: i32, child: bool) {
    let tx = tx.clone();
    let unit = name.to_string();
    match reap::pidfd(pid) {
        Ok(fd) => {
            tokio::spawn(async move {
                let reason = reap::wait_exit(fd, child).await;
                reap::untrack(pid);
                let _ = tx.send(Msg::Exited { unit, generation, reason });
                let _ = tx.send(Msg::Reap);
            });
        }
        Err(e) => {
            let _ = tx.send(Msg::Exited {
                unit,
                generation,
                reason: ExitReason::SpawnFailed { error: format!("pidfd_open: {e}") },
            });
        }
    }
}

fn kill_group(pid: i32, sig: nix::sys::signal::Signal) {
    // Each unit leads its own session and process group.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
}

fn probe(
    tx: mpsc::UnboundedSender<Msg>,
    unit: String,
    generation: u64,
    addr: std::net::SocketAddr,
    path: Option<String>,
) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(20);
        loop {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
                let ok = match &path {
                    None => true,
                    Some(p) => {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let req = format!("GET {p} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
                        let mut head = [0u8; 12];
                        stream.write_all(req.as_bytes()).await.is_ok()
                            && stream.read_exact(&mut head).await.is_ok()
                            && head.starts_with(b"HTTP/1.")
                            && head[9] == b'2'
                    }
                };
                if ok {
                    let _ = tx.send(Msg::Probed { unit, generation });
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    });
}

fn bind_listener(l: &Listen) -> std::io::Result<OwnedFd> {
    match l {
        Listen::Tcp { addr } => Ok(OwnedFd::from(std::net::TcpListener::bind(addr)?)),
        Listen::Unix { path } => {
            let _ = std::fs::remove_file(path);
            Ok(OwnedFd::from(std::os::unix::net::UnixListener::bind(path)?))
        }
    }
}

/// Whether SELinux is enabled on this kernel.
pub fn selinux_enabled() -> bool {
    aither_sys::selinux::enabled(Path::new("/sys"))
}

/// The unit's stdout and stderr. A journald stream for a unit with an SELinux context is
/// created in that context, so a unit confined to its own MCS categories may write to it.
fn open_log(target: &LogTarget, unit: &str, context: Option<&str>) -> std::io::Result<Option<(OwnedFd, OwnedFd)>> {
    match target {
        LogTarget::Inherit => Ok(None),
        LogTarget::Null => {
            let f = File::options().write(true).open("/dev/null")?;
            Ok(Some((OwnedFd::from(f.try_clone()?), OwnedFd::from(f))))
        }
        LogTarget::File { path } => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = File::options().create(true).append(true).open(path)?;
            Ok(Some((OwnedFd::from(f.try_clone()?), OwnedFd::from(f))))
        }
        LogTarget::Journal => {
            use std::io::Write;
            // The socket creation context is per thread; nothing awaits between set and reset.
            let mut s = aither_sys::selinux::with_socket_context(context, || {
                std::os::unix::net::UnixStream::connect("/run/systemd/journal/stdout")
            })?;
            // The journald stream header: identifier, unit id, priority, level prefix,
            // forward to syslog, kmsg, console.
            write!(s, "{unit}\n\n6\n1\n0\n0\n0\n")?;
            s.shutdown(std::net::Shutdown::Read)?;
            let fd = OwnedFd::from(s);
            Ok(Some((fd.try_clone()?, fd)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph<'a>(edges: &'a [(&'a str, &'a [&'a str])]) -> impl Fn(&str) -> Vec<String> + 'a {
        move |n: &str| {
            edges
                .iter()
                .find(|(m, _)| *m == n)
                .map(|(_, d)| d.iter().map(|s| (*s).to_string()).collect())
                .unwrap_or_default()
        }
    }

    #[test]
    fn dependencies_come_first_whatever_their_count() {
        // x needs y; y needs two units already there: counting dependencies would put x first.
        let deps = graph(&[("x", &["y"]), ("y", &["old1", "old2"])]);
        let order = dependency_order(["x", "y"].into_iter(), &deps).expect("no cycle");
        assert_eq!(order, ["y", "x"]);
    }

    #[test]
    fn a_dependency_cycle_is_an_error_naming_it() {
        let deps = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        let err = dependency_order(["a"].into_iter(), &deps).expect_err("cycle");
        assert!(
            matches!(err, EngineError::Invalid { ref problem, .. } if problem == "dependency cycle: a -> b -> c -> a"),
            "{err}"
        );
    }
}
