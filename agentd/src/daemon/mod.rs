//! The daemon: loads everything, builds the units, runs them on aither-init, admits agents
//! within the preset's limit, reloads, and stops (or, for a restart, steps aside).
//!
//! One [`Daemon`] is shared by the D-Bus API, the signal handlers and the event loop; its
//! state sits behind one async mutex, and every change is computed in full before any of it
//! is applied, so a bad configuration on reload changes nothing.
//!
//! - `load`: the configuration, the profile, the plan and the manifests, into [`Loaded`].
//! - `report`: what the API says of units, models, the gateway and the preset.
//! - `host`: what agentd prepares on the host (workspaces, the workers' directory) and the
//!   gateway's routing view.

mod approvals;
mod definitions;
mod evals;
mod host;
mod load;
mod models;
mod report;
mod runs;
mod step_files;
mod step_limits;
mod step_units;
mod unit_triggers;
mod workflow;

pub use load::{appliance_file, load, Loaded, Options, Stage};
pub use report::{api_state, invalid_model, reason_text};
pub use step_limits::DEADLINE_TICK as STEP_DEADLINE_TICK;
pub use workflow::{Trigger, TICK as WORKFLOW_TICK};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aither_api::profile::Profile;
use aither_init::cgroup::{Cgroups, Unavailable};
use aither_init::{Config, ExitReason, Supervisor, UnitState};
use aither_plan::plan::Plan;
use anyhow::{Context, Result};
use tokio::sync::Mutex;

use crate::agents::{self, Admission, AdmissionQueue, Agent};
use crate::config::Settings;
use crate::units::{Kind, Planned};
use aither_api::agentd::{self as api, Unit};
use host::{gateway_view, prepare_worker_dir, prepare_workspace};
use load::{engine_state_file, host_facts, mcs_file, transient_dir};

/// The daemon's state.
#[derive(Debug)]
struct State {
    loaded: Loaded,
    by_name: BTreeMap<String, Planned>,
    admission: AdmissionQueue,
    gateway: Arc<crate::gateway::View>,
    engine: workflow::Engine,
}

/// The running daemon.
#[derive(Debug)]
pub struct Daemon {
    pub opts: Options,
    pub sup: Supervisor,
    state: Mutex<State>,
    pub cgroups: String,
    /// Unit names as their state changes, for the gateway.
    changes: tokio::sync::broadcast::Sender<String>,
    /// Runs, proposals and pulls as they change, for the D-Bus signals.
    pub api_events: tokio::sync::broadcast::Sender<ApiEvent>,
    /// The models being pulled (`PullModel`).
    pulls: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The workers' figures over the last minutes (`Inference`).
    pub inference: std::sync::Mutex<crate::inference::History>,
    /// The engine's events from its first (a unit failing at boot, an adopted step ending
    /// before the event loop runs): taken once by the event loop.
    first_events: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<aither_init::Event>>>,
}

/// A run, a proposal or a model pull changed: what the D-Bus signals say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiEvent {
    Run {
        id: String,
        state: String,
    },
    Approval {
        id: String,
        state: String,
        action: String,
    },
    /// A model download: bytes so far and in all (0: unknown), `pulling`, `done` or `failed`.
    Pull {
        model: String,
        done: u64,
        total: u64,
        state: String,
        message: String,
    },
}

/// What [`Daemon::start`] and friends did, in words.
pub type Outcome = Result<String, DaemonError>;

/// Why agentd refused a change or could not make it; the message is what the caller sees.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("no unit or agent named {0:?}")]
    UnknownUnit(String),
    #[error("{name} cannot start: {why}")]
    Blocked { name: String, why: String },
    #[error("{name:?} is already a unit, from {source_file}")]
    Taken { name: String, source_file: String },
    /// The configuration, the profile or a manifest was refused (the running one is kept).
    #[error("{0:#}")]
    Refused(anyhow::Error),
    /// Preparing something on the host failed (a workspace, a file).
    #[error("{0:#}")]
    Host(anyhow::Error),
    #[error(transparent)]
    Engine(#[from] aither_init::EngineError),
    #[error(transparent)]
    Manifest(#[from] crate::agents::AgentError),
    #[error(transparent)]
    Preset(#[from] aither_plan::presets::PresetError),
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

impl Daemon {
    /// Load everything, start the engine (adopting what an earlier agentd left running) and
    /// start the boot units. Returns once they are asked to start.
    pub async fn start(opts: Options) -> Result<Arc<Daemon>> {
        let host = host_facts(&opts);
        let loaded = load(&opts, &host, Stage::Start)?;
        loaded.mcs.save(&mcs_file(&loaded.settings))?;
        let cgroups = if opts.dev {
            Err(Unavailable::Disabled("development mode".into()))
        } else {
            Cgroups::detect(Path::new("/sys/fs/cgroup"), Path::new("/proc/self/cgroup")).and_then(|cg| {
                cg.prepare().map_err(|e| Unavailable::Unreadable { path: cg.root().into(), problem: e.to_string() })?;
                Ok(cg)
            })
        };
        if let Err(why) = &cgroups {
            tracing::warn!("{why}");
        }
        let cgroups_text = match &cgroups {
            Ok(cg) => format!("cgroup v2 limits applied under {}", cg.root().display()),
            Err(why) => why.to_string(),
        };
        std::fs::create_dir_all(&loaded.settings.runtime_dir)
            .with_context(|| format!("cannot create {}", loaded.settings.runtime_dir.display()))?;
        prepare_worker_dir(&loaded)?;
        let config = Config {
            runtime_dir: loaded.settings.runtime_dir.clone(),
            state_file: Some(engine_state_file(&loaded.settings)),
            subreaper: true,
            adopt: true,
            cgroups,
            host: aither_init::HostPaths::default(),
        };
        // Workflow runs, and the step agents still running from before a restart (adopted).
        let mut loaded = loaded;
        let runs = runs::load_all(&runs::runs_dir(&loaded.settings.state_dir));
        let mut mcs = loaded.mcs.clone();
        let steps = step_units::units_to_adopt(&loaded, &runs, &mut mcs);
        loaded.mcs = mcs;
        let specs = loaded.units.iter().chain(&steps).map(|u| u.spec.clone()).collect();
        let (sup, _engine) = Supervisor::spawn(config, specs)?;
        let first_events = std::sync::Mutex::new(Some(sup.subscribe()));
        let mut by_name: BTreeMap<String, Planned> = loaded.units.iter().map(|u| (u.name.clone(), u.clone())).collect();
        by_name.extend(steps.iter().map(|u| (u.name.clone(), u.clone())));
        let admission = AdmissionQueue::new(loaded.agent_limit);
        let gateway = Arc::new(gateway_view(&loaded, &by_name));
        let engine = workflow::Engine {
            runs,
            steps: steps.into_iter().map(|u| (u.name.clone(), u)).collect(),
            next_fire: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            timed_out: std::collections::BTreeSet::new(),
            over_bound: BTreeMap::new(),
            triggered: BTreeMap::new(),
        };
        let daemon = Arc::new(Daemon {
            opts,
            sup,
            state: Mutex::new(State { loaded, by_name, admission, gateway, engine }),
            cgroups: cgroups_text,
            changes: tokio::sync::broadcast::channel(1024).0,
            api_events: tokio::sync::broadcast::channel(256).0,
            pulls: std::sync::Mutex::default(),
            inference: std::sync::Mutex::default(),
            first_events,
        });
        daemon.boot().await?;
        daemon.resume_runs().await;
        Ok(daemon)
    }

    /// Ask the boot units to start: not dormant, not blocked, agents within the limit
    /// (those already running, adopted from an earlier agentd, first).
    async fn boot(&self) -> Result<()> {
        let status = self.sup.status().await?;
        let mut st = self.state.lock().await;
        let running: Vec<String> = status.iter().filter(|u| u.state.is_up()).map(|u| u.name.clone()).collect();
        for name in &running {
            if st.by_name.get(name).is_some_and(|u| u.kind == Kind::Agent) {
                st.admission.running.insert(name.clone());
            }
        }
        let mut set = Vec::new();
        let units: Vec<Planned> = st.by_name.values().cloned().collect();
        for u in units {
            if u.dormant || running.contains(&u.name) {
                continue;
            }
            if let Some(why) = &u.blocked {
                tracing::warn!("{}: not started: {why}", u.name);
                continue;
            }
            if u.kind == Kind::Agent {
                prepare_workspace(&st.loaded, &u)?;
                if let Admission::Queued { position } = st.admission.request(&u.name) {
                    tracing::info!("{}: waiting for an agent slot (position {position})", u.name);
                    continue;
                }
            }
            set.push(u.name.clone());
        }
        drop(st);
        self.sup.start_set(set).await?;
        Ok(())
    }

    /// The engine's events, from its start for the first caller (the event loop).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<aither_init::Event> {
        let first = self.first_events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        first.unwrap_or_else(|| self.sup.subscribe())
    }

    /// Whether every boot unit of the first group (`core`) has settled: what `READY=1` waits for.
    pub async fn core_settled(&self) -> bool {
        let Ok(status) = self.sup.status().await else { return false };
        let st = self.state.lock().await;
        let Some(first) = st.loaded.plan.groups.first() else { return true };
        status.iter().filter(|u| u.group == first.name).all(|u| {
            let planned = st.by_name.get(&u.name);
            planned.is_some_and(|p| p.dormant || p.blocked.is_some())
                || !matches!(u.state, UnitState::Waiting | UnitState::Starting { .. })
        })
    }

    /// Every unit with its state.
    pub async fn units(&self) -> Result<Vec<Unit>> {
        let status = self.sup.status().await?;
        let st = self.state.lock().await;
        Ok(status.iter().filter_map(|s| st.by_name.get(&s.name).map(|p| report::report(p, s, &st.admission))).collect())
    }

    /// The one-line summary systemd shows as the unit's status.
    pub async fn summary(&self) -> String {
        let Ok(units) = self.units().await else { return "the engine has stopped".into() };
        let st = self.state.lock().await;
        let up = units.iter().filter(|u| u.state == api::UnitState::Running).count();
        let wanted = units
            .iter()
            .filter(|u| {
                !matches!(u.state, api::UnitState::Dormant | api::UnitState::Blocked | api::UnitState::Inactive)
            })
            .count();
        let agents = units.iter().filter(|u| u.kind == Kind::Agent && u.state == api::UnitState::Running).count();
        let queued = st.admission.waiting.len();
        let failed = units.iter().filter(|u| u.state.is_problem()).count();
        let mut s = format!(
            "{} preset: {up}/{wanted} units running, {agents}/{} agent slots used",
            st.loaded.plan.preset, st.admission.limit
        );
        if queued > 0 {
            s.push_str(&format!(", {queued} queued"));
        }
        if failed > 0 {
            s.push_str(&format!(", {failed} failed"));
        }
        s
    }

    pub async fn settings(&self) -> Settings {
        self.state.lock().await.loaded.settings.clone()
    }
    pub async fn profile(&self) -> Profile {
        self.state.lock().await.loaded.profile.clone()
    }
    pub async fn plan(&self) -> Plan {
        self.state.lock().await.loaded.plan.clone()
    }
    /// What the gateway routes by, as of the last load (start or reload).
    pub async fn gateway_view(&self) -> Arc<crate::gateway::View> {
        Arc::clone(&self.state.lock().await.gateway)
    }

    pub async fn agent_limit(&self) -> usize {
        self.state.lock().await.admission.limit
    }

    /// Start a unit; an agent goes through admission.
    pub async fn start_unit(&self, name: &str) -> Outcome {
        let mut st = self.state.lock().await;
        let u = st.by_name.get(name).cloned().ok_or_else(|| DaemonError::UnknownUnit(name.to_string()))?;
        if let Some(why) = &u.blocked {
            return Err(DaemonError::Blocked { name: name.to_string(), why: why.clone() });
        }
        if u.kind == Kind::Agent {
            prepare_workspace(&st.loaded, &u).map_err(DaemonError::Host)?;
            if let Admission::Queued { position } = st.admission.request(name) {
                return Ok(format!(
                    "{name} is queued at position {position}: all {} agent slots are taken",
                    st.admission.limit
                ));
            }
        }
        drop(st);
        self.sup.start(name).await?;
        Ok(format!("{name} started"))
    }

    /// Stop a unit; a queued agent leaves the queue.
    pub async fn stop_unit(&self, name: &str) -> Outcome {
        let mut st = self.state.lock().await;
        if !st.by_name.contains_key(name) {
            return Err(DaemonError::UnknownUnit(name.to_string()));
        }
        if st.admission.waiting.iter().any(|a| a == name) {
            st.admission.waiting.retain(|a| a != name);
            return Ok(format!("{name} left the admission queue"));
        }
        drop(st);
        self.sup.stop(name).await?;
        Ok(format!("{name} is stopping"))
    }

    pub async fn restart_unit(&self, name: &str) -> Outcome {
        let st = self.state.lock().await;
        let u = st.by_name.get(name).ok_or_else(|| DaemonError::UnknownUnit(name.to_string()))?;
        if let Some(why) = &u.blocked {
            return Err(DaemonError::Blocked { name: name.to_string(), why: why.clone() });
        }
        let agent_not_admitted = u.kind == Kind::Agent && !st.admission.running.contains(name);
        drop(st);
        if agent_not_admitted {
            return self.start_unit(name).await;
        }
        self.sup.restart(name).await?;
        Ok(format!("{name} is restarting"))
    }

    /// Run an agent from a manifest's text: kept in the runtime directory (until reboot or
    /// `aitherctl stop` and reload), started through admission.
    pub async fn run_agent(&self, manifest: &str) -> Outcome {
        let agent: Agent = agents::parse_manifest("(manifest)", manifest)?;
        let dir = {
            let st = self.state.lock().await;
            if let Some(u) = st.by_name.get(&agent.name) {
                return Err(DaemonError::Taken { name: agent.name.clone(), source_file: u.source.clone() });
            }
            transient_dir(&st.loaded.settings)
        };
        std::fs::create_dir_all(&dir).map_err(|source| DaemonError::Io { path: dir.clone(), source })?;
        let path = dir.join(format!("{}.toml", agent.name));
        std::fs::write(&path, manifest).map_err(|source| DaemonError::Io { path: path.clone(), source })?;
        if let Err(e) = self.reload().await {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        self.start_unit(&agent.name).await
    }

    /// Pin a preset in the appliance configuration and reload.
    pub async fn set_preset(&self, name: &str) -> Outcome {
        {
            let st = self.state.lock().await;
            st.loaded.presets.get(name)?;
        }
        let path = appliance_file(&self.opts.root);
        let mut table = aither_plan::data::appliance_table(&path).map_err(DaemonError::Refused)?;
        let before = table.insert("preset".into(), toml::Value::String(name.into()));
        let text = toml::to_string(&table).map_err(|e| DaemonError::Host(e.into()))?;
        aither_sys::atomic::write(&path, text.as_bytes())
            .map_err(|source| DaemonError::Io { path: path.clone(), source })?;
        match self.reload().await {
            Ok(changes) => Ok(format!("preset {name} pinned in {}; {changes}", path.display())),
            Err(e) => {
                // Put the file back as it was: a pin that does not load is not kept.
                match before {
                    Some(b) => table.insert("preset".into(), b),
                    None => table.remove("preset"),
                };
                let _ = aither_sys::atomic::write(&path, toml::to_string(&table).unwrap_or_default().as_bytes());
                Err(e)
            }
        }
    }

    /// Load everything again and apply the difference: new units are added (and started
    /// when they would start at boot), removed ones stopped and removed, changed ones take
    /// their new definition at their next start. A bad file changes nothing.
    pub async fn reload(&self) -> Outcome {
        let host = self.state.lock().await.loaded.host.clone();
        let loaded = load(&self.opts, &host, Stage::Reload).map_err(DaemonError::Refused)?;
        loaded.mcs.save(&mcs_file(&loaded.settings))?;
        let mut st = self.state.lock().await;
        let mut new: BTreeMap<String, Planned> = loaded.units.iter().map(|u| (u.name.clone(), u.clone())).collect();
        // Workflow steps are the engine's, not the configuration's: they stay.
        new.extend(st.engine.steps.iter().map(|(n, u)| (n.clone(), u.clone())));
        let (mut added, mut removed, mut changed) = (vec![], vec![], vec![]);
        for (name, u) in &new {
            match st.by_name.get(name) {
                None => added.push(name.clone()),
                Some(old) if old.spec != u.spec => changed.push(name.clone()),
                Some(_) => {}
            }
        }
        for name in st.by_name.keys() {
            if !new.contains_key(name) {
                removed.push(name.clone());
            }
        }
        // All together: the engine takes them in dependency order, or none of them.
        let pending: Vec<aither_init::UnitSpec> =
            added.iter().chain(&changed).filter_map(|n| new.get(n)).map(|u| u.spec.clone()).collect();
        self.sup.add_all(pending).await?;
        st.admission.limit = loaded.agent_limit.max(1);
        st.gateway = Arc::new(gateway_view(&loaded, &new));
        st.by_name = new;
        st.loaded = loaded;
        let mut to_start = Vec::new();
        for name in &added {
            let u = &st.by_name[name];
            if u.dormant || u.blocked.is_some() {
                continue;
            }
            if u.kind == Kind::Agent {
                if let Admission::Queued { .. } = st.admission.request(name) {
                    continue;
                }
            }
            to_start.push(name.clone());
        }
        // A larger limit admits waiting agents.
        let admitted = st.admission.release("");
        to_start.extend(admitted);
        for name in &to_start {
            if let Some(u) = st.by_name.get(name).filter(|u| u.kind == Kind::Agent) {
                prepare_workspace(&st.loaded, u).map_err(DaemonError::Host)?;
            }
        }
        for name in &removed {
            st.admission.release(name);
        }
        drop(st);
        self.sup.start_set(to_start).await?;
        for name in &removed {
            tokio::spawn(retire(self.sup.clone(), name.clone()));
        }
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        Ok(format!(
            "reloaded: added {}; removed {}; changed {} (applies at their next start)",
            list(&added),
            list(&removed),
            list(&changed)
        ))
    }

    /// SELinux as it is now: under the configuration root's `sys/` (`/sys` on the appliance;
    /// a test root's own file in development mode, which otherwise confines nothing).
    pub fn confinement(&self) -> api::Confinement {
        let sys = self.opts.root.join("sys");
        let file = sys.join("fs/selinux/enforce");
        if self.opts.dev && !file.exists() {
            return api::Confinement::Development;
        }
        match aither_sys::selinux::enforcing(&sys) {
            Some(true) => api::Confinement::Enforcing,
            Some(false) => api::Confinement::Permissive,
            None => api::Confinement::Off,
        }
    }

    /// React to an engine event: an agent that is done frees its slot for the next in line.
    /// What may take long (a run a failure starts, a step's end with its policy-approved
    /// actions: a pull, a webhook, a restart) runs as a task of its own, never in the event
    /// loop, which would miss events while it waits.
    pub async fn on_event(self: &Arc<Self>, unit: &str, state: &UnitState) {
        let _ = self.changes.send(unit.to_string());
        if matches!(state, UnitState::Starting { .. } | UnitState::Running { .. }) {
            Self::arm_step_deadline(&mut *self.state.lock().await, unit);
        }
        if let Some(reason) = workflow::ends_step(state) {
            if self.state.lock().await.engine.steps.contains_key(unit) {
                // Collected now (the step's record is final before the next event), carried on
                // in the background.
                if let Some(id) = self.step_ended(unit, reason).await {
                    let d = Arc::clone(self);
                    tokio::spawn(async move {
                        d.run_approved_by_policy(&id).await;
                        d.advance(&id).await;
                    });
                }
                return;
            }
        }
        if matches!(state, UnitState::Failed { .. } | UnitState::GaveUp { .. }) {
            let (d, unit) = (Arc::clone(self), unit.to_string());
            tokio::spawn(async move { d.unit_failed(&unit).await });
        }
        let done = matches!(
            state,
            UnitState::Inactive
                | UnitState::Failed { .. }
                | UnitState::GaveUp { .. }
                | UnitState::Exited { reason: ExitReason::Code { code: 0 } }
        );
        if !done {
            return;
        }
        let mut st = self.state.lock().await;
        if !st.admission.running.contains(unit) {
            return;
        }
        let next = st.admission.release(unit);
        drop(st);
        self.admit(next).await;
    }

    /// Start agents the admission queue let in (their workspaces made right first).
    async fn admit(&self, next: Vec<String>) {
        if next.is_empty() {
            return;
        }
        {
            let st = self.state.lock().await;
            for name in &next {
                if let Some(u) = st.by_name.get(name) {
                    if let Err(e) = prepare_workspace(&st.loaded, u) {
                        tracing::warn!("{name}: {e:#}");
                    }
                }
            }
        }
        for name in next {
            tracing::info!("{name}: admitted, an agent slot is free");
            if let Err(e) = self.sup.start(&name).await {
                tracing::warn!("{name}: {e}");
            }
        }
    }

    /// Where a unit's output goes: `journal:IDENTIFIER` or `file:PATH`.
    pub async fn log_target(&self, name: &str) -> Result<api::LogTarget, DaemonError> {
        let st = self.state.lock().await;
        let u = st.by_name.get(name).ok_or_else(|| DaemonError::UnknownUnit(name.to_string()))?;
        Ok(match &u.spec.log {
            aither_init::unit::LogTarget::File { path } => api::LogTarget::File { path: path.clone() },
            aither_init::unit::LogTarget::Journal => {
                api::LogTarget::Journal { identifier: name.to_string(), matches: journal_matches(u) }
            }
            aither_init::unit::LogTarget::Inherit => api::LogTarget::Inherit,
            aither_init::unit::LogTarget::Null => api::LogTarget::Null,
        })
    }
}

/// Stop a unit that left the configuration and remove it once it is down.
async fn retire(sup: Supervisor, name: String) {
    stop_and_wait(&sup, &name, Duration::from_secs(300)).await;
    if let Err(e) = sup.remove(&name).await {
        tracing::warn!("{name}: not removed: {e}");
    }
}

/// Stop `name` when it has a process and wait, at most `within`, until it has none: whether
/// it is down.
async fn stop_and_wait(sup: &Supervisor, name: &str, within: Duration) -> bool {
    let mut rx = sup.subscribe();
    let up = sup.status().await.ok().and_then(|s| s.into_iter().find(|u| u.name == name));
    if up.as_ref().is_none_or(|u| u.state.pid().is_none()) {
        return true;
    }
    let _ = sup.stop(name).await;
    tokio::time::timeout(within, async {
        while let Ok(e) = rx.recv().await {
            if e.unit == name && e.state.pid().is_none() && !matches!(e.state, UnitState::Exited { .. }) {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// The gateway's view of the daemon: only what it needs.
impl crate::gateway::Backend for Daemon {
    async fn view(&self) -> Arc<crate::gateway::View> {
        self.gateway_view().await
    }

    async fn workers(&self) -> Result<BTreeMap<String, crate::gateway::Worker>, crate::gateway::BackendError> {
        use crate::gateway::Worker;
        let status = self.sup.status().await.map_err(crate::gateway::BackendError::new)?;
        let st = self.state.lock().await;
        Ok(status
            .into_iter()
            .filter(|u| st.by_name.get(&u.name).is_some_and(|p| p.kind == Kind::Worker))
            .map(|u| {
                let w = match &u.state {
                    UnitState::Running { .. } => Worker::Running,
                    UnitState::Starting { .. } => Worker::Starting,
                    UnitState::Stopping { .. } => Worker::Stopping,
                    UnitState::Failed { reason } if invalid_model(reason) => Worker::Invalid,
                    UnitState::Failed { reason } | UnitState::GaveUp { reason } => Worker::Failed(reason_text(reason)),
                    UnitState::Waiting | UnitState::Exited { .. } | UnitState::Backoff { .. } => Worker::Pending,
                    UnitState::Inactive | UnitState::Dormant => Worker::Down,
                };
                (u.name, w)
            })
            .collect())
    }

    async fn start(&self, unit: &str) -> Result<(), crate::gateway::BackendError> {
        self.start_unit(unit).await.map(|_| ()).map_err(crate::gateway::BackendError::new)
    }

    async fn stop(&self, unit: &str) -> Result<(), crate::gateway::BackendError> {
        self.stop_unit(unit).await.map(|_| ()).map_err(crate::gateway::BackendError::new)
    }

    fn changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

/// The journal matches of unit `u`'s lines ([`api::journal_matches`]): the user it runs as,
/// agentd's own where it names none.
pub(crate) fn journal_matches(u: &Planned) -> Vec<String> {
    api::journal_matches(&u.name, u.spec.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()))
}
