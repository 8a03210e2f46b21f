//! The daemon: loads everything, builds the units, runs them on aither-init, admits agents
//! within the preset's limit, reloads, and stops (or, for a restart, steps aside).
//!
//! One [`Daemon`] is shared by the D-Bus API, the signal handlers and the event loop; its
//! state sits behind one async mutex, and every change is computed in full before any of it
//! is applied, so a bad configuration on reload changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aither_hwprofile::plan::{Plan, PlanOptions};
use aither_hwprofile::presets::Presets;
use aither_hwprofile::profile::Profile;
use aither_init::cgroup::{Cgroups, Unavailable};
use aither_init::{Config, ExitReason, Supervisor, UnitState, UnitStatus};
use anyhow::{Context, Result};
use tokio::sync::Mutex;

use crate::agents::{self, Admission, AdmissionQueue, Agent, CategoryMap};
use crate::config::{self, Listen, Settings};
use crate::services;
use crate::units::{self, Host, Inputs, Kind, Planned, RunAs};
use aither_api::agentd::{self as api, Unit};

/// How agentd was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Configuration root: `/` on the appliance, a tree in tests.
    pub root: PathBuf,
    /// Development mode: an ordinary user, no systemd, SELinux or cgroups, the session bus.
    pub dev: bool,
    /// A profile to use instead of `/run/aither/hwprofile.json` or detection.
    pub profile: Option<PathBuf>,
    /// The runtime directory in dev mode (`$XDG_RUNTIME_DIR/aither`).
    pub dev_runtime_dir: Option<PathBuf>,
}

/// Everything that [`load`] computes from the files; nothing is applied until all is valid.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub profile: Profile,
    pub presets: Presets,
    pub plan: Plan,
    pub units: Vec<Planned>,
    pub mcs: CategoryMap,
    pub host: Host,
    pub agent_limit: usize,
}

/// When the configuration is loaded: at start, development mode makes the gateway key it
/// lacks; a reload never does (an emptied key is refused, not replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Start,
    Reload,
}

/// Read the configuration, the profile, the preset and the manifests, and build the units.
pub fn load(opts: &Options, host: &Host, stage: Stage) -> Result<Loaded> {
    let mut settings = config::load(&opts.root)?;
    if let Some(dir) = &opts.dev_runtime_dir {
        relocate_for_dev(&mut settings, &opts.root, dir);
        let dev_key = opts.root.join("etc/aither/gateway.key");
        let is_dev_key = settings.gateway_api_key_file.as_deref() == Some(dev_key.as_path());
        if stage == Stage::Start
            && is_dev_key
            && aither_http::keys::generate(&dev_key, None).context("cannot make the development gateway key")?
        {
            tracing::info!("development gateway key written to {}", dev_key.display());
        }
    }
    config::read_keys(&mut settings)?;
    let profile = read_profile(opts, &settings)?;
    // The installed data, or the built-in copy (dev mode, a test root).
    let data = opts.root.join("usr/share/aither");
    let (presets, catalog) = aither_hwprofile::cli::load_data(data.join("presets").is_dir().then_some(&*data))?;
    let pinned = aither_hwprofile::cli::pinned_preset(&appliance_file(&opts.root))?;
    let plan = aither_hwprofile::plan::plan(
        &profile,
        &presets,
        &catalog,
        &PlanOptions { preset: pinned, model_dir: Some(settings.model_dir.clone()) },
    )?;
    let services = services::read_dirs(&services::dirs(&opts.root))?;
    let mut agent_list = agents::read_dir(&opts.root.join("etc/aither/agents.d"))?;
    // Agents run from a manifest through the API live in the runtime directory.
    for a in agents::read_dir(&transient_dir(&settings))? {
        if let Some(first) = agent_list.iter().find(|b| b.name == a.name) {
            anyhow::bail!("agent {:?} is defined twice: {} and {}", a.name, first.source.display(), a.source.display());
        }
        agent_list.push(a);
    }
    let mut mcs = CategoryMap::load(&mcs_file(&settings))?;
    let units = units::build(
        &Inputs { settings: &settings, plan: &plan, services: &services, agents: &agent_list, host },
        &mut mcs,
    )?;
    let agent_limit = match settings.agents_max_concurrent {
        0 => plan.agents.max_concurrent,
        n => n,
    };
    Ok(Loaded {
        settings,
        profile,
        presets,
        plan,
        units,
        mcs,
        host: host.clone(),
        agent_limit: usize::try_from(agent_limit).unwrap_or(usize::MAX),
    })
}

/// In dev mode everything lives under directories the user owns: the runtime directory,
/// and the configuration root for the system's own paths (`/etc/aither/gateway.key` becomes
/// `ROOT/etc/aither/gateway.key`, the model directory `ROOT/var/lib/aither/models`).
fn relocate_for_dev(s: &mut Settings, root: &Path, dir: &Path) {
    let under_root = |p: &mut PathBuf| {
        if p.starts_with("/etc/aither") || p.starts_with("/var/lib/aither") {
            *p = root.join(p.strip_prefix("/").unwrap_or(p));
        }
    };
    if let Some(k) = &mut s.gateway_api_key_file {
        under_root(k);
    }
    if let Some(k) = s.cloud.as_mut().and_then(|c| c.api_key_file.as_mut()) {
        under_root(k);
    }
    under_root(&mut s.model_dir);
    s.runtime_dir = dir.to_path_buf();
    s.state_dir = dir.join("state");
    for l in &mut s.gateway_listen {
        if let Listen::Unix(p) = l {
            *p = dir.join(p.file_name().unwrap_or_default());
        }
    }
    s.log = config::LogTo::Stderr;
}

fn read_profile(opts: &Options, settings: &Settings) -> Result<Profile> {
    let path = opts.profile.clone().unwrap_or_else(|| settings.runtime_dir.join("hwprofile.json"));
    if opts.profile.is_none() && !path.exists() {
        tracing::info!("{} does not exist: detecting the hardware", path.display());
        let detect =
            aither_hwprofile::detect::DetectOptions { model_dir: settings.model_dir.clone(), ..Default::default() };
        return aither_hwprofile::detect::detect(&detect).context("hardware detection failed");
    }
    aither_hwprofile::cli::read_profile(&path)
}

pub fn appliance_file(root: &Path) -> PathBuf {
    root.join("etc/aither/appliance.toml")
}
fn transient_dir(s: &Settings) -> PathBuf {
    s.runtime_dir.join("agents.d")
}
fn mcs_file(s: &Settings) -> PathBuf {
    s.state_dir.join("mcs.json")
}
fn engine_state_file(s: &Settings) -> PathBuf {
    s.runtime_dir.join("units.json")
}

/// The daemon's state.
#[derive(Debug)]
struct State {
    loaded: Loaded,
    by_name: BTreeMap<String, Planned>,
    admission: AdmissionQueue,
    gateway: Arc<crate::gateway::View>,
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
}

/// What [`Daemon::start`] and friends did, in words.
pub type Outcome = Result<String, String>;

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
        let specs = loaded.units.iter().map(|u| u.spec.clone()).collect();
        let (sup, _engine) = Supervisor::spawn(config, specs)?;
        let by_name = loaded.units.iter().map(|u| (u.name.clone(), u.clone())).collect();
        let admission = AdmissionQueue::new(loaded.agent_limit);
        let gateway = Arc::new(gateway_view(&loaded, &by_name));
        let daemon = Arc::new(Daemon {
            opts,
            sup,
            state: Mutex::new(State { loaded, by_name, admission, gateway }),
            cgroups: cgroups_text,
            changes: tokio::sync::broadcast::channel(1024).0,
        });
        daemon.boot().await?;
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
        Ok(status.iter().filter_map(|s| st.by_name.get(&s.name).map(|p| report(p, s, &st.admission))).collect())
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
    /// The plan's models: file, whether it is there, and the state of its worker.
    pub async fn models(&self) -> Result<api::Models> {
        let units = self.units().await?;
        let st = self.state.lock().await;
        let dir = &st.loaded.settings.model_dir;
        let models = st
            .loaded
            .plan
            .models
            .iter()
            .map(|m| {
                let path = aither_hwprofile::plan::local_file(dir, &m.url);
                let bytes = std::fs::metadata(&path).ok().filter(std::fs::Metadata::is_file).map(|md| md.len());
                let file = aither_hwprofile::catalog::ModelFile {
                    quant: m.quant.clone(),
                    url: m.url.clone(),
                    bytes: None,
                    sha256: m.sha256.clone(),
                };
                let unit = format!("infer-{}", m.name);
                api::Model {
                    name: m.name.clone(),
                    role: m.role,
                    quant: m.quant.clone(),
                    url: m.url.clone(),
                    sha256: m.sha256.clone(),
                    verification: bytes.map(|_| aither_hwprofile::fetch::verification(dir, &file)),
                    present: bytes.is_some(),
                    bytes,
                    path,
                    pinned: m.pinned,
                    state: units.iter().find(|u| u.name == unit).map(|u| u.state),
                    unit,
                }
            })
            .collect();
        Ok(api::Models { schema_version: api::SCHEMA_VERSION, model_dir: dir.clone(), models })
    }

    /// What the gateway routes by, as of the last load (start or reload).
    pub async fn gateway_view(&self) -> Arc<crate::gateway::View> {
        Arc::clone(&self.state.lock().await.gateway)
    }

    /// Where the gateway listens and how clients authenticate, for `aitherctl gateway`.
    pub async fn gateway_info(&self) -> api::Gateway {
        let st = self.state.lock().await;
        let s = &st.loaded.settings;
        let listen = s
            .gateway_listen
            .iter()
            .map(|l| match l {
                Listen::Tcp(a) => {
                    api::Listener::Tcp { address: a.to_string(), key_required: s.gateway_api_key.is_some() }
                }
                Listen::Unix(p) => api::Listener::Unix { path: p.clone(), group: s.gateway_socket_group.clone() },
            })
            .collect();
        let l = &s.gateway_limits;
        api::Gateway {
            listen,
            api_key_file: s.gateway_api_key_file.clone(),
            allowed_hosts: s.gateway_allowed_hosts.clone(),
            limits: api::ListenerLimits {
                header_timeout_seconds: l.header_timeout.as_secs(),
                body_timeout_seconds: l.body_timeout.as_secs(),
                idle_timeout_seconds: l.idle_timeout.as_secs(),
                max_connections: l.max_connections,
                max_body_bytes: l.max_body_bytes,
            },
        }
    }

    pub async fn agent_limit(&self) -> usize {
        self.state.lock().await.admission.limit
    }

    /// The preset in use, with the reason and its full definition.
    pub async fn preset(&self) -> api::PresetReply {
        let st = self.state.lock().await;
        let plan = &st.loaded.plan;
        api::PresetReply {
            schema_version: api::SCHEMA_VERSION,
            name: plan.preset.clone(),
            reason: plan.reason.clone(),
            pinned: plan.pinned,
            available: aither_hwprofile::presets::NAMES.iter().map(|n| (*n).to_string()).collect(),
            preset: st.loaded.presets.get(&plan.preset).ok().cloned(),
        }
    }

    /// Start a unit; an agent goes through admission.
    pub async fn start_unit(&self, name: &str) -> Outcome {
        let mut st = self.state.lock().await;
        let u = st.by_name.get(name).cloned().ok_or_else(|| format!("no unit or agent named {name:?}"))?;
        if let Some(why) = &u.blocked {
            return Err(format!("{name} cannot start: {why}"));
        }
        if u.kind == Kind::Agent {
            prepare_workspace(&st.loaded, &u).map_err(|e| format!("{e:#}"))?;
            if let Admission::Queued { position } = st.admission.request(name) {
                return Ok(format!(
                    "{name} is queued at position {position}: all {} agent slots are taken",
                    st.admission.limit
                ));
            }
        }
        drop(st);
        self.sup.start(name).await.map_err(|e| e.to_string())?;
        Ok(format!("{name} started"))
    }

    /// Stop a unit; a queued agent leaves the queue.
    pub async fn stop_unit(&self, name: &str) -> Outcome {
        let mut st = self.state.lock().await;
        if !st.by_name.contains_key(name) {
            return Err(format!("no unit or agent named {name:?}"));
        }
        if st.admission.waiting.iter().any(|a| a == name) {
            st.admission.waiting.retain(|a| a != name);
            return Ok(format!("{name} left the admission queue"));
        }
        drop(st);
        self.sup.stop(name).await.map_err(|e| e.to_string())?;
        Ok(format!("{name} is stopping"))
    }

    pub async fn restart_unit(&self, name: &str) -> Outcome {
        let st = self.state.lock().await;
        let u = st.by_name.get(name).ok_or_else(|| format!("no unit or agent named {name:?}"))?;
        if let Some(why) = &u.blocked {
            return Err(format!("{name} cannot start: {why}"));
        }
        let agent_not_admitted = u.kind == Kind::Agent && !st.admission.running.contains(name);
        drop(st);
        if agent_not_admitted {
            return self.start_unit(name).await;
        }
        self.sup.restart(name).await.map_err(|e| e.to_string())?;
        Ok(format!("{name} is restarting"))
    }

    /// Run an agent from a manifest's text: kept in the runtime directory (until reboot or
    /// `aitherctl stop` and reload), started through admission.
    pub async fn run_agent(&self, manifest: &str) -> Outcome {
        let agent: Agent = agents::parse_manifest("(manifest)", manifest).map_err(|e| e.to_string())?;
        let dir = {
            let st = self.state.lock().await;
            if let Some(u) = st.by_name.get(&agent.name) {
                return Err(format!("{:?} is already a unit, from {}", agent.name, u.source));
            }
            transient_dir(&st.loaded.settings)
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{}.toml", agent.name));
        std::fs::write(&path, manifest).map_err(|e| format!("{}: {e}", path.display()))?;
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
            st.loaded.presets.get(name).map_err(|e| e.to_string())?;
        }
        let path = appliance_file(&self.opts.root);
        let mut table = aither_hwprofile::cli::appliance_table(&path).map_err(|e| format!("{e:#}"))?;
        let before = table.insert("preset".into(), toml::Value::String(name.into()));
        let text = toml::to_string(&table).map_err(|e| e.to_string())?;
        aither_sys::atomic::write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
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
        let loaded = load(&self.opts, &host, Stage::Reload).map_err(|e| format!("{e:#}"))?;
        loaded.mcs.save(&mcs_file(&loaded.settings)).map_err(|e| e.to_string())?;
        let mut st = self.state.lock().await;
        let new: BTreeMap<String, Planned> = loaded.units.iter().map(|u| (u.name.clone(), u.clone())).collect();
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
        self.sup.add_all(pending).await.map_err(|e| e.to_string())?;
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
                prepare_workspace(&st.loaded, u).map_err(|e| format!("{e:#}"))?;
            }
        }
        for name in &removed {
            st.admission.release(name);
        }
        drop(st);
        self.sup.start_set(to_start).await.map_err(|e| e.to_string())?;
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

    /// React to an engine event: an agent that is done frees its slot for the next in line.
    pub async fn on_event(&self, unit: &str, state: &UnitState) {
        let _ = self.changes.send(unit.to_string());
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
        for name in &next {
            if let Some(u) = st.by_name.get(name) {
                if let Err(e) = prepare_workspace(&st.loaded, u) {
                    tracing::warn!("{name}: {e:#}");
                }
            }
        }
        drop(st);
        for name in next {
            tracing::info!("{name}: admitted, an agent slot is free");
            if let Err(e) = self.sup.start(&name).await {
                tracing::warn!("{name}: {e}");
            }
        }
    }

    /// Where a unit's output goes: `journal:IDENTIFIER` or `file:PATH`.
    pub async fn log_target(&self, name: &str) -> Result<api::LogTarget, String> {
        let st = self.state.lock().await;
        let u = st.by_name.get(name).ok_or_else(|| format!("no unit or agent named {name:?}"))?;
        Ok(match &u.spec.log {
            aither_init::unit::LogTarget::File { path } => api::LogTarget::File { path: path.clone() },
            aither_init::unit::LogTarget::Journal => api::LogTarget::Journal { identifier: name.to_string() },
            aither_init::unit::LogTarget::Inherit => api::LogTarget::Inherit,
            aither_init::unit::LogTarget::Null => api::LogTarget::Null,
        })
    }
}

/// Stop a unit that left the configuration and remove it once it is down.
async fn retire(sup: Supervisor, name: String) {
    let mut rx = sup.subscribe();
    let up = sup.status().await.ok().and_then(|s| s.into_iter().find(|u| u.name == name));
    if up.as_ref().is_some_and(|u| u.state.pid().is_some()) {
        let _ = sup.stop(&name).await;
        let _ = tokio::time::timeout(Duration::from_secs(300), async {
            while let Ok(e) = rx.recv().await {
                if e.unit == name && e.state.pid().is_none() && !matches!(e.state, UnitState::Exited { .. }) {
                    break;
                }
            }
        })
        .await;
    }
    if let Err(e) = sup.remove(&name).await {
        tracing::warn!("{name}: not removed: {e}");
    }
}

/// The engine's state as the API names it.
pub fn api_state(s: &UnitState) -> api::UnitState {
    match s {
        UnitState::Inactive => api::UnitState::Inactive,
        UnitState::Waiting => api::UnitState::Waiting,
        UnitState::Dormant => api::UnitState::Dormant,
        UnitState::Starting { .. } => api::UnitState::Starting,
        UnitState::Running { .. } => api::UnitState::Running,
        UnitState::Stopping { .. } => api::UnitState::Stopping,
        UnitState::Exited { .. } => api::UnitState::Exited,
        UnitState::Backoff { .. } => api::UnitState::Backoff,
        UnitState::GaveUp { .. } => api::UnitState::GaveUp,
        UnitState::Failed { .. } => api::UnitState::Failed,
    }
}

/// An exit reason in words.
pub fn reason_text(r: &ExitReason) -> String {
    match r {
        ExitReason::Code { code } => format!("exited with status {code}"),
        ExitReason::Signal { signal } => format!(
            "killed by {}",
            nix::sys::signal::Signal::try_from(*signal).map_or_else(|_| format!("signal {signal}"), |s| s.to_string())
        ),
        ExitReason::OomKilled => "killed by the OOM killer (memory limit)".into(),
        ExitReason::ReadyTimeout => "did not become ready in time".into(),
        ExitReason::SpawnFailed { error } => format!("could not start: {error}"),
        ExitReason::Unknown => "ended (adopted; exit status unknown)".into(),
        ExitReason::DependencyFailed { unit } => format!("{unit}, which it requires, failed"),
    }
}

/// A worker that ended because its model file is not a usable model (it is not restarted).
pub fn invalid_model(r: &ExitReason) -> bool {
    matches!(r, ExitReason::Code { code } if *code == units::WORKER_BAD_MODEL || *code == units::WORKER_NO_MODEL)
}

fn report(p: &Planned, s: &UnitStatus, admission: &AdmissionQueue) -> Unit {
    let mut state = api_state(&s.state);
    if let (Kind::Worker, UnitState::Failed { reason }) = (p.kind, &s.state) {
        if invalid_model(reason) {
            return Unit {
                state: api::UnitState::Invalid,
                detail: Some(format!(
                    "the model file is not usable ({}); it is not restarted: see `aitherctl logs {}`, then replace the file",
                    reason_text(reason),
                    p.name
                )),
                ..report_base(p, s)
            };
        }
    }
    let mut detail = match &s.state {
        UnitState::Exited { reason } | UnitState::GaveUp { reason } | UnitState::Failed { reason } => {
            Some(reason_text(reason))
        }
        UnitState::Backoff { delay_ms, reason } => {
            Some(format!("{}; restarting in {delay_ms} ms", reason_text(reason)))
        }
        _ => None,
    };
    if matches!(s.state, UnitState::Inactive) {
        if let Some(pos) = admission.waiting.iter().position(|a| a == &p.name) {
            state = api::UnitState::Queued;
            detail = Some(format!("position {} in the admission queue", pos + 1));
        } else if let Some(why) = &p.blocked {
            state = api::UnitState::Blocked;
            detail = Some(why.clone());
        } else if p.dormant {
            state = api::UnitState::Dormant;
            detail = Some("starts on demand".into());
        }
    }
    Unit { state, detail, ..report_base(p, s) }
}

fn report_base(p: &Planned, s: &UnitStatus) -> Unit {
    Unit {
        name: p.name.clone(),
        kind: p.kind,
        group: p.group.clone(),
        priority: s.priority,
        state: api_state(&s.state),
        pid: s.state.pid(),
        detail: None,
        status: s.status.clone(),
        restarts: s.restarts,
        description: p.description.clone(),
        source: p.source.clone(),
        agent: p.agent.clone(),
    }
}

/// Host facts: SELinux, the users units run as.
fn host_facts(opts: &Options) -> Host {
    let root = nix::unistd::geteuid().is_root();
    let user = |name: &str| -> RunAs {
        if opts.dev || !root {
            return RunAs::Own;
        }
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => RunAs::User { uid: u.uid.as_raw(), gid: u.gid.as_raw() },
            Ok(None) => {
                tracing::error!("user {name} does not exist (sysusers.d/aitheros.conf): its units will not start");
                RunAs::Missing { name: name.to_string() }
            }
            Err(e) => {
                tracing::error!("cannot look up the user {name}: {e}: its units will not start");
                RunAs::Missing { name: name.to_string() }
            }
        }
    };
    Host {
        dev: opts.dev,
        selinux: !opts.dev && aither_sys::selinux::enabled(Path::new("/sys")),
        service_user: user("aither"),
        agent_user: user("aither-agent"),
        policy_dir: PathBuf::from(aither_sys::paths::POLICY_DIR),
    }
}

/// What the gateway routes by: the plan's models and their workers, the VRAM budget, the
/// cloud fallback with its key, the gateway's key and timeouts. Built when the configuration
/// is loaded (start and reload), so the key files are read then and not per request.
fn gateway_view(l: &Loaded, by_name: &BTreeMap<String, Planned>) -> crate::gateway::View {
    use crate::gateway::{residency::Footprint, ModelRoute, View};
    let s = &l.settings;
    let models = l
        .plan
        .models
        .iter()
        .map(|m| {
            let unit = format!("infer-{}", m.name);
            ModelRoute {
                name: m.name.clone(),
                role: m.role.name().to_string(),
                socket: units::worker_socket(&s.runtime_dir, &m.name),
                footprint: Footprint {
                    name: m.name.clone(),
                    vram: m.gpus.iter().cloned().zip(m.bytes_per_gpu.iter().copied()).collect(),
                    pinned: m.pinned,
                },
                blocked: by_name.get(&unit).and_then(|u| u.blocked.clone()),
                unit,
            }
        })
        .collect();
    let budgets = l
        .presets
        .get(&l.plan.preset)
        .map(|p| aither_hwprofile::plan::gpu_budgets(&l.profile, p))
        .unwrap_or_default()
        .into_iter()
        .map(|b| (b.pci_address, b.bytes))
        .collect();
    let cloud = s.cloud.as_ref().map(|c| {
        crate::gateway::upstream::CloudTarget::new(
            c.endpoint.clone(),
            c.model.clone(),
            c.api_key.clone(),
            Duration::from_secs(s.gateway_request_timeout_seconds),
        )
    });
    let keep_alive = match s.gateway_keep_alive_seconds {
        0 => l.plan.inference.keep_alive_seconds,
        n => n,
    };
    View {
        preset: l.plan.preset.clone(),
        models,
        budgets,
        cloud,
        api_key: s.gateway_api_key.clone(),
        keep_alive: Duration::from_secs(keep_alive.max(1)),
        start_timeout: Duration::from_secs(s.gateway_start_timeout_seconds),
    }
}

/// The directory inference workers put their sockets in (`/run/aither/infer`): theirs
/// (user `aither`), closed to others; agentd reaches it through its supplementary group
/// `aither` (`SupplementaryGroups=` in agentd.service), as it has no CAP_DAC_OVERRIDE.
fn prepare_worker_dir(loaded: &Loaded) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir =
        units::worker_socket(&loaded.settings.runtime_dir, "x").parent().map(Path::to_path_buf).unwrap_or_default();
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let RunAs::User { uid, gid } = loaded.host.service_user else { return Ok(()) };
    let meta = std::fs::metadata(&dir).with_context(|| format!("stat {}", dir.display()))?;
    if (meta.uid(), meta.gid(), meta.mode() & 0o7777) == (uid, gid, 0o750) {
        return Ok(());
    }
    // chmod while agentd still owns it (it has no CAP_FOWNER), then hand it over.
    if meta.uid() == nix::unistd::geteuid().as_raw() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).with_context(|| format!("chown {}", dir.display()))?;
    Ok(())
}

/// An agent's workspace: created, owned by the agent user, private, and labelled with the
/// agent's MCS level so no other agent can touch it.
///
/// agentd has no CAP_FOWNER: it labels and chmods the directory while it owns it, and hands
/// it to the agent user last. A workspace already right is left alone.
fn prepare_workspace(loaded: &Loaded, u: &Planned) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(a) = &u.agent else { return Ok(()) };
    let ws = &a.workspace;
    std::fs::create_dir_all(ws).with_context(|| format!("cannot create the workspace {}", ws.display()))?;
    let context = format!("system_u:object_r:aither_agent_workspace_t:{}", a.level);
    let label_ok = || -> bool {
        if !loaded.host.selinux {
            return true;
        }
        let mut buf = vec![0u8; 256];
        rustix::fs::getxattr(ws, "security.selinux", &mut buf)
            .is_ok_and(|n| buf[..n].strip_suffix(b"\0").unwrap_or(&buf[..n]) == context.as_bytes())
    };
    let meta = std::fs::metadata(ws).with_context(|| format!("stat {}", ws.display()))?;
    let owner = (u.spec.uid.unwrap_or(meta.uid()), u.spec.gid.unwrap_or(meta.gid()));
    if (meta.uid(), meta.gid()) == owner && meta.mode() & 0o7777 == 0o700 && label_ok() {
        return Ok(());
    }
    let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    if meta.uid() != me.0 {
        std::os::unix::fs::chown(ws, Some(me.0), Some(me.1)).with_context(|| format!("chown {}", ws.display()))?;
    }
    if loaded.host.selinux {
        rustix::fs::setxattr(ws, "security.selinux", context.as_bytes(), rustix::fs::XattrFlags::empty())
            .with_context(|| format!("cannot label {} {context}", ws.display()))?;
    }
    std::fs::set_permissions(ws, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", ws.display()))?;
    if owner != me {
        std::os::unix::fs::chown(ws, Some(owner.0), Some(owner.1))
            .with_context(|| format!("chown {}", ws.display()))?;
    }
    Ok(())
}

/// The gateway's view of the daemon: only what it needs.
impl crate::gateway::Backend for Daemon {
    async fn view(&self) -> Arc<crate::gateway::View> {
        self.gateway_view().await
    }

    async fn workers(&self) -> Result<BTreeMap<String, crate::gateway::Worker>, String> {
        use crate::gateway::Worker;
        let status = self.sup.status().await.map_err(|e| e.to_string())?;
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
                    _ => Worker::Down,
                };
                (u.name, w)
            })
            .collect())
    }

    async fn start(&self, unit: &str) -> Result<(), String> {
        self.start_unit(unit).await.map(|_| ())
    }

    async fn stop(&self, unit: &str) -> Result<(), String> {
        self.stop_unit(unit).await.map(|_| ())
    }

    fn changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}
