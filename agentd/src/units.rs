//! The units agentd runs, built from the model plan, the unit manifests and the agent
//! manifests: a pure function of its inputs, so the same inputs always give the same units.
//!
//! | kind    | from                         | group                  | runs as                              |
//! |---------|------------------------------|------------------------|--------------------------------------|
//! | worker  | each model of the plan       | `inference`            | `aither_infer_t:s0`, user `aither`   |
//! | service | `units.d/*.toml`             | the manifest's         | policy transition, user `aither`     |
//! | agent   | `/etc/aither/agents.d/*.toml`| `agents`               | `aither_agent_t:s0:cA,cB`, `aither-agent` |
//!
//! A unit's group gives its priority and whether it starts at boot (`dormant = false`) or on
//! demand. Pinned models start with their group; the others are dormant until asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aither_init::unit::{Limits, LogTarget, Readiness, Rlimit, RlimitResource};
use aither_init::{RestartMode, UnitSpec};
use aither_plan::plan::{local_file, Plan, PlannedModel};
use serde::Serialize;

use crate::agents::{Agent, CategoryMap, Class};
use crate::config::Settings;
use crate::services::Service;
use aither_policy as tailored_policy;

pub use aither_api::agentd::{AgentDetails, UnitKind as Kind};

/// A unit with what agentd knows about it beyond the engine's specification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    #[serde(skip)]
    pub spec: UnitSpec,
    pub name: String,
    pub kind: Kind,
    pub group: String,
    pub description: Option<String>,
    /// The file or plan entry it came from.
    pub source: String,
    /// Started on demand rather than at boot.
    pub dormant: bool,
    /// Why it cannot start now (a missing model file, a missing tailored policy).
    pub blocked: Option<String>,
    /// Agents: the SELinux context, workspace and MCS level.
    pub agent: Option<AgentDetails>,
}

/// The host facts the units depend on.
#[derive(Debug, Clone)]
pub struct Host {
    /// Development mode: no user switch, no SELinux, logs to files.
    pub dev: bool,
    /// SELinux is enabled: units get exec contexts.
    pub selinux: bool,
    /// Who services and workers run as (user `aither`), and agents (`aither-agent`).
    pub service_user: RunAs,
    pub agent_user: RunAs,
    /// Where installed tailored policy modules are kept (`aitherctl policy install`).
    pub policy_dir: PathBuf,
}

/// The user a kind of unit runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// agentd's own user: development mode, or agentd not running as root.
    Own,
    User {
        uid: u32,
        gid: u32,
    },
    /// The user should exist and does not: those units do not start (they would run as
    /// root otherwise).
    Missing {
        name: String,
    },
}

impl RunAs {
    /// Set the unit's user; the reason it cannot start when the user is missing.
    fn apply(&self, spec: &mut UnitSpec) -> Option<String> {
        match self {
            RunAs::Own => None,
            RunAs::User { uid, gid } => {
                (spec.uid, spec.gid) = (Some(*uid), Some(*gid));
                None
            }
            RunAs::Missing { name } => Some(format!(
                "its user {name} does not exist (sysusers.d/aitheros.conf creates it: run `systemd-sysusers`); \
                 it is not started as root instead"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnitsError {
    #[error("{file}: {key}: {problem}")]
    Field { file: String, key: String, problem: String },
    #[error("{0}")]
    Mcs(String),
}

/// The inputs of [`build`].
#[derive(Debug)]
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    pub plan: &'a Plan,
    pub services: &'a [Service],
    pub agents: &'a [Agent],
    pub host: &'a Host,
}

/// The group agents run in, and the one workers run in.
pub const AGENTS_GROUP: &str = "agents";
pub const INFERENCE_GROUP: &str = "inference";

/// Build every unit. `mcs` gains a pair for each new agent (the caller saves it).
pub fn build(inputs: &Inputs, mcs: &mut CategoryMap) -> Result<Vec<Planned>, UnitsError> {
    let groups: BTreeMap<&str, (u32, bool)> =
        inputs.plan.groups.iter().map(|g| (g.name.as_str(), (g.priority, g.dormant))).collect();
    let group_of = |name: &str, default_priority: u32| groups.get(name).copied().unwrap_or((default_priority, false));
    let mut out = Vec::new();
    for m in &inputs.plan.models {
        out.push(worker(inputs, m, group_of(INFERENCE_GROUP, 10)));
    }
    for s in inputs.services {
        let file = s.source.display().to_string();
        let Some(&(priority, dormant)) = groups.get(s.group.as_str()) else {
            let known: Vec<&str> = groups.keys().copied().collect();
            return Err(UnitsError::Field {
                file,
                key: "group".into(),
                problem: format!(
                    "{:?} is not a group of the {} preset ({})",
                    s.group,
                    inputs.plan.preset,
                    known.join(", ")
                ),
            });
        };
        out.push(service(inputs, s, priority, dormant));
    }
    let (agent_priority, agents_dormant) = group_of(AGENTS_GROUP, 30);
    for a in inputs.agents {
        let pair = mcs.pair_for(&a.name).ok_or_else(|| UnitsError::Mcs("every MCS category pair is taken".into()))?;
        out.push(agent(inputs, a, pair, agent_priority, agents_dormant));
    }
    // One namespace: a service or agent may not take a worker's or another's name.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for u in &out {
        if let Some(first) = seen.insert(u.name.clone(), u.source.clone()) {
            return Err(UnitsError::Field {
                file: u.source.clone(),
                key: "name".into(),
                problem: format!("{:?} is already the name of a unit from {first}", u.name),
            });
        }
    }
    let names: BTreeSet<String> = seen.into_keys().collect();
    for u in &out {
        if let Some(dep) = u.spec.requires.iter().chain(&u.spec.after).find(|d| !names.contains(*d)) {
            let key = if u.spec.requires.contains(dep) { "requires" } else { "after" };
            return Err(UnitsError::Field {
                file: u.source.clone(),
                key: key.into(),
                problem: format!("{dep:?} is not a unit"),
            });
        }
    }
    Ok(out)
}

fn log_target(inputs: &Inputs, name: &str) -> LogTarget {
    if inputs.host.dev {
        LogTarget::File { path: log_file(&inputs.settings.runtime_dir, name) }
    } else {
        LogTarget::Journal
    }
}

/// Where a unit's output goes in development mode.
pub fn log_file(runtime_dir: &Path, unit: &str) -> PathBuf {
    runtime_dir.join("logs").join(format!("{unit}.log"))
}

fn class_limits(plan: &Plan, class: Class) -> (Option<u32>, Option<u32>) {
    plan.scheduling.get(class.name()).map_or((None, None), |c| (Some(c.cpu_weight), Some(c.io_weight)))
}

/// aither-infer's exit status for a model file that is not a usable model.
pub const WORKER_BAD_MODEL: i32 = 65;
/// aither-infer's exit status for a model file that is missing or unreadable.
pub const WORKER_NO_MODEL: i32 = 66;

/// The socket a model's worker serves on.
pub fn worker_socket(runtime_dir: &Path, model: &str) -> PathBuf {
    runtime_dir.join("infer").join(format!("{model}.sock"))
}

fn worker(inputs: &Inputs, m: &PlannedModel, (priority, group_dormant): (u32, bool)) -> Planned {
    let s = inputs.settings;
    let file = local_file(&s.model_dir, &m.url);
    let name = format!("infer-{}", m.name);
    let mut argv = vec![
        s.infer_binary.display().to_string(),
        "--model".into(),
        file.display().to_string(),
        "--listen".into(),
        format!("unix:{}", worker_socket(&s.runtime_dir, &m.name).display()),
        "--threads".into(),
        inputs.plan.inference.threads.to_string(),
        "--ctx".into(),
        m.context.to_string(),
        "--parallel".into(),
        inputs.plan.inference.parallel.to_string(),
        "--gpu-layers".into(),
        m.gpu_layers.to_string(),
        "--kv-cache-type".into(),
        m.kv_cache_type.name().into(),
        "--alias".into(),
        m.name.clone(),
    ];
    let cache_mib = inputs.plan.prompt_cache_bytes(&m.name) >> 20;
    if cache_mib > 0 {
        argv.extend(["--cache-ram".into(), cache_mib.to_string()]);
    }
    if m.tensor_split.len() > 1 {
        let split: Vec<String> = m.tensor_split.iter().map(u32::to_string).collect();
        argv.extend(["--tensor-split".into(), split.join(",")]);
    }
    let mut spec = UnitSpec::new(&name, &[]);
    spec.argv = argv;
    spec.group = INFERENCE_GROUP.into();
    spec.priority = priority;
    spec.readiness = Readiness::Notify;
    // Loading a large model from disk takes minutes.
    spec.ready_timeout = Duration::from_secs(600);
    spec.restart = RestartMode::OnFailure;
    // aither-infer exits 65 for an invalid model file and 66 for a missing one: restarting
    // would only fail again (the gateway and `aitherctl units` say why instead).
    spec.restart_prevent_exit_status = vec![WORKER_BAD_MODEL, WORKER_NO_MODEL];
    spec.stop_timeout = Duration::from_secs(30);
    spec.log = log_target(inputs, &name);
    let no_user = inputs.host.service_user.apply(&mut spec);
    if inputs.host.selinux {
        spec.selinux_context = Some("system_u:system_r:aither_infer_t:s0".into());
    }
    let (cpu_weight, io_weight) = class_limits(inputs.plan, Class::High);
    // Model memory is sized by the plan; the cgroup limit only stops a runaway.
    spec.limits = Limits { cpu_weight, io_weight, ..Limits::default() };
    let blocked = no_user.or_else(|| {
        (!file.is_file()).then(|| {
            format!("model file {} is missing: download {} into {}", file.display(), m.url, s.model_dir.display())
        })
    });
    Planned {
        spec,
        name,
        kind: Kind::Worker,
        group: INFERENCE_GROUP.into(),
        description: Some(format!("{} {} ({} role)", m.name, m.quant, m.role.name())),
        source: format!("the {} plan", inputs.plan.preset),
        dormant: group_dormant || !m.pinned,
        blocked,
        agent: None,
    }
}

fn service(inputs: &Inputs, s: &Service, priority: u32, dormant: bool) -> Planned {
    let mut spec = UnitSpec::new(&s.name, &[]);
    spec.argv = s.command.clone();
    spec.group = s.group.clone();
    spec.priority = priority;
    spec.env = s.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    spec.readiness = s.readiness.clone();
    spec.ready_timeout = s.ready_timeout;
    spec.restart = s.restart;
    spec.requires = s.requires.clone();
    spec.after = s.after.clone();
    spec.stop_timeout = s.stop_timeout;
    spec.log = log_target(inputs, &s.name);
    let blocked = inputs.host.service_user.apply(&mut spec);
    if let (true, Some(t)) = (inputs.host.selinux, &s.selinux_type) {
        spec.selinux_context = Some(format!("system_u:system_r:{t}:s0"));
    }
    let (cpu_weight, io_weight) = class_limits(inputs.plan, s.class);
    spec.limits = Limits { memory_max: s.memory_max, pids_max: s.pids_max, cpu_weight, io_weight, ..Limits::default() };
    Planned {
        spec,
        name: s.name.clone(),
        kind: Kind::Service,
        group: s.group.clone(),
        description: s.description.clone(),
        source: s.source.display().to_string(),
        dormant,
        blocked,
        agent: None,
    }
}

/// An agent's workspace.
pub fn workspace(state_dir: &Path, agent: &str) -> PathBuf {
    state_dir.join("agents").join(agent)
}

fn agent(inputs: &Inputs, a: &Agent, pair: (u16, u16), priority: u32, dormant: bool) -> Planned {
    let s = inputs.settings;
    let ws = workspace(&s.state_dir, &a.name);
    let level = CategoryMap::level(pair);
    let needs_module = tailored_policy::needs_module(&a.permissions);
    let stem = tailored_policy::type_stem(&a.name).unwrap_or_else(|_| a.name.replace('-', "_"));
    let domain = if needs_module { format!("aither_agent_{stem}_t") } else { "aither_agent_t".to_string() };
    let mut spec = UnitSpec::new(&a.name, &[]);
    spec.argv = a.command.clone();
    spec.group = AGENTS_GROUP.into();
    spec.priority = priority;
    spec.env = a.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    spec.env.extend([
        ("AITHER_AGENT".into(), a.name.clone()),
        ("AITHER_WORKSPACE".into(), ws.display().to_string()),
        ("HOME".into(), ws.display().to_string()),
    ]);
    let network = network_name(a.permissions.network);
    if network != "none" {
        for l in &s.gateway_listen {
            if let crate::config::Listen::Unix(p) = l {
                spec.env.push(("AITHER_GATEWAY".into(), format!("unix:{}", p.display())));
            }
        }
    }
    spec.working_directory = Some(ws.clone());
    spec.restart = RestartMode::OnFailure;
    spec.log = log_target(inputs, &a.name);
    let no_user = inputs.host.agent_user.apply(&mut spec);
    if inputs.host.selinux {
        spec.selinux_context = Some(format!("system_u:system_r:{domain}:{level}"));
    }
    let (class_cpu, io_weight) = class_limits(inputs.plan, a.class);
    spec.limits = Limits {
        memory_max: Some(a.memory_max.unwrap_or(s.agent_memory_max)),
        pids_max: Some(a.pids_max.unwrap_or(s.agent_pids_max)),
        cpu_weight: a.cpu_weight.or(class_cpu),
        io_weight,
        ..Limits::default()
    };
    let module = inputs.host.policy_dir.join(format!("aither_agent_{stem}.cil"));
    let blocked = no_user.or_else(|| {
        (needs_module && inputs.host.selinux && !module.is_file()).then(|| {
            format!(
                "its permissions need a tailored SELinux module: run `aitherctl policy install {}`",
                a.source.display()
            )
        })
    });
    Planned {
        spec,
        name: a.name.clone(),
        kind: Kind::Agent,
        group: AGENTS_GROUP.into(),
        description: a.description.clone(),
        source: a.source.display().to_string(),
        dormant,
        blocked,
        agent: Some(AgentDetails { workspace: ws, level, domain, network: network.into() }),
    }
}

/// The SELinux domain of a workflow step's agent: the runner, with the gateway's socket, and
/// outbound HTTP(S) for steps granted it.
pub const STEP_DOMAIN: &str = "aither_step_t";
pub const STEP_OUTBOUND_DOMAIN: &str = "aither_step_outbound_t";

/// What a workflow step's unit is made of.
#[derive(Debug, Clone)]
pub struct StepUnit<'a> {
    pub name: &'a str,
    pub description: String,
    pub workspace: PathBuf,
    pub pair: (u16, u16),
    /// The socket the runner reaches the model through.
    pub gateway: &'a Path,
    pub outbound: bool,
    /// The run document it belongs to, for `aitherctl units`.
    pub source: String,
}

/// A workflow step's agent: the runner on the step's workspace, confined like any agent (its
/// own category pair, the agent user, the agent limits), run once (never restarted: a step
/// that fails is the run's to report), started only by the workflow engine.
pub fn step(settings: &Settings, plan: &Plan, host: &Host, s: &StepUnit) -> Planned {
    let level = CategoryMap::level(s.pair);
    let domain = if s.outbound { STEP_OUTBOUND_DOMAIN } else { STEP_DOMAIN };
    let mut spec = UnitSpec::new(s.name, &[]);
    spec.argv = vec![
        settings.workflow_runner.display().to_string(),
        "--workspace".into(),
        s.workspace.display().to_string(),
        "--gateway".into(),
        s.gateway.display().to_string(),
    ];
    spec.group = AGENTS_GROUP.into();
    spec.priority = plan.groups.iter().find(|g| g.name == AGENTS_GROUP).map_or(30, |g| g.priority);
    spec.env = vec![("HOME".into(), s.workspace.display().to_string())];
    spec.working_directory = Some(s.workspace.clone());
    spec.restart = RestartMode::Never;
    spec.stop_timeout = Duration::from_secs(10);
    spec.log =
        if host.dev { LogTarget::File { path: log_file(&settings.runtime_dir, s.name) } } else { LogTarget::Journal };
    let no_user = host.agent_user.apply(&mut spec);
    if host.selinux {
        spec.selinux_context = Some(format!("system_u:system_r:{domain}:{level}"));
    }
    let (cpu_weight, io_weight) = class_limits(plan, Class::Normal);
    spec.limits = Limits {
        memory_max: Some(settings.agent_memory_max),
        pids_max: Some(settings.agent_pids_max),
        cpu_weight,
        io_weight,
        ..Limits::default()
    };
    // No file the step writes may be larger than its whole workspace may be (the kernel's
    // bound, at once; agentd's count of the workspace stops the step past the total).
    let max = settings.workspace_max_bytes;
    spec.rlimits.push(Rlimit { resource: RlimitResource::Fsize, soft: max, hard: max });
    Planned {
        spec,
        name: s.name.to_string(),
        kind: Kind::Agent,
        group: AGENTS_GROUP.into(),
        description: Some(s.description.clone()),
        source: s.source.clone(),
        dormant: true,
        blocked: no_user,
        agent: Some(AgentDetails {
            workspace: s.workspace.clone(),
            level,
            domain: domain.into(),
            network: if s.outbound { "outbound" } else { "gateway" }.into(),
        }),
    }
}

fn network_name(n: tailored_policy::Network) -> &'static str {
    match n {
        tailored_policy::Network::None => "none",
        tailored_policy::Network::Gateway => "gateway",
        tailored_policy::Network::Loopback => "loopback",
        tailored_policy::Network::Outbound => "outbound",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::parse_manifest;

    fn plan() -> Plan {
        let profile: aither_api::profile::Profile =
            serde_json::from_str(include_str!("../../tests/fixtures/profiles/profile-1gpu.json"))
                .expect("fixture profile");
        let presets = aither_plan::presets::Presets::builtin().expect("presets");
        let catalog = aither_plan::catalog::Catalog::builtin().expect("catalog");
        aither_plan::plan::plan(&profile, &presets, &catalog, &Default::default()).expect("plan")
    }

    fn host(selinux: bool) -> Host {
        Host {
            dev: false,
            selinux,
            service_user: RunAs::User { uid: 990, gid: 990 },
            agent_user: RunAs::User { uid: 991, gid: 991 },
            policy_dir: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn workers_services_and_agents_come_out_confined_and_sized() {
        let settings = crate::config::from_sources(&[("d".into(), crate::config::DEFAULTS.into())]).expect("cfg");
        let plan = plan();
        let svc =
            crate::services::parse_manifest("v.toml", include_str!("../../docs/examples/units.d/vector-store.toml"))
                .expect("svc");
        let mut research =
            parse_manifest("research.toml", include_str!("../../docs/examples/agents.d/research.toml")).expect("a");
        research.source = PathBuf::from("/etc/aither/agents.d/research.toml");
        let plain = parse_manifest("/etc/aither/agents.d/p.toml", "name = \"plain\"\ncommand = [\"/bin/sleep\"]\n")
            .expect("plain");
        let mut mcs = CategoryMap::default();
        let host = host(true);
        let inputs =
            Inputs { settings: &settings, plan: &plan, services: &[svc], agents: &[research, plain], host: &host };
        let units = build(&inputs, &mut mcs).expect("units");
        let w = units.iter().find(|u| u.kind == Kind::Worker).expect("a worker");
        assert_eq!(w.spec.selinux_context.as_deref(), Some("system_u:system_r:aither_infer_t:s0"));
        assert!(w.spec.argv.windows(2).any(|p| p[0] == "--threads" && p[1] == plan.inference.threads.to_string()));
        // Each generating worker keeps prompts that leave its slots in its share of the L1
        // hot cache; an embedding worker has nothing to resume.
        for u in units.iter().filter(|u| u.kind == Kind::Worker) {
            let model = u.name.trim_start_matches("infer-");
            let role = plan.models.iter().find(|m| m.name == model).expect("planned").role;
            let mib = u.spec.argv.windows(2).find(|p| p[0] == "--cache-ram").map(|p| p[1].clone());
            let share = plan.prompt_cache_bytes(model) >> 20;
            assert_eq!(mib, (role != aither_api::plan::Role::Embedding).then(|| share.to_string()), "{model}");
        }
        assert!(w.blocked.as_deref().is_some_and(|b| b.contains("is missing")), "no model files here");
        let v = units.iter().find(|u| u.name == "vector-store").expect("service");
        assert_eq!((v.spec.priority, v.spec.limits.memory_max), (20, Some(1 << 30)));
        let r = units.iter().find(|u| u.name == "research").expect("agent");
        let p = units.iter().find(|u| u.name == "plain").expect("agent");
        assert_eq!(p.spec.selinux_context.as_deref(), Some("system_u:system_r:aither_agent_t:s0:c1,c3"));
        assert_eq!(r.spec.selinux_context.as_deref(), Some("system_u:system_r:aither_agent_research_t:s0:c1,c2"));
        assert!(r.blocked.as_deref().is_some_and(|b| b.contains("aitherctl policy install")));
        assert_eq!(p.spec.uid, Some(991));
        assert_eq!(p.spec.limits.memory_max, Some(settings.agent_memory_max));
        assert_eq!(p.spec.working_directory, Some(PathBuf::from("/var/lib/aither/agents/plain")));
        assert!(r.spec.env.contains(&("AITHER_GATEWAY".into(), "unix:/run/aither/gateway.sock".into())));
        assert!(!p.spec.env.iter().any(|(k, _)| k == "AITHER_GATEWAY"), "network none: no gateway");
        assert_eq!(mcs.pairs.len(), 2, "a pair per agent");
    }

    #[test]
    fn a_service_in_an_unknown_group_or_with_a_taken_name_is_refused() {
        let settings = crate::config::from_sources(&[("d".into(), crate::config::DEFAULTS.into())]).expect("cfg");
        let plan = plan();
        let text = "name = \"x\"\ngroup = \"nowhere\"\ncommand = [\"/bin/true\"]\n";
        let svc = crate::services::parse_manifest("/etc/aither/units.d/x.toml", text).expect("svc");
        let host = host(false);
        let inputs = Inputs { settings: &settings, plan: &plan, services: &[svc], agents: &[], host: &host };
        let err = build(&inputs, &mut CategoryMap::default()).expect_err("unknown group");
        assert!(err.to_string().starts_with("/etc/aither/units.d/x.toml: group: \"nowhere\" is not a group"), "{err}");

        let svc = crate::services::parse_manifest("/u/a.toml", "name = \"a\"\ngroup = \"core\"\ncommand = [\"/b\"]\n")
            .expect("svc");
        let agent = parse_manifest("/e/a.toml", "name = \"a\"\ncommand = [\"/b\"]\n").expect("agent");
        let inputs = Inputs { settings: &settings, plan: &plan, services: &[svc], agents: &[agent], host: &host };
        let err = build(&inputs, &mut CategoryMap::default()).expect_err("taken");
        assert!(err.to_string().contains("already the name of a unit from /u/a.toml"), "{err}");
    }

    #[test]
    fn units_whose_user_is_missing_are_blocked_never_run_as_root() {
        let settings = crate::config::from_sources(&[("d".into(), crate::config::DEFAULTS.into())]).expect("cfg");
        let plan = plan();
        let svc = crate::services::parse_manifest("/u/s.toml", "name = \"s\"\ngroup = \"core\"\ncommand = [\"/b\"]\n")
            .expect("svc");
        let agent = parse_manifest("/e/a.toml", "name = \"a\"\ncommand = [\"/b\"]\n").expect("agent");
        let host = Host {
            service_user: RunAs::Missing { name: "aither".into() },
            agent_user: RunAs::Missing { name: "aither-agent".into() },
            ..host(false)
        };
        let inputs = Inputs { settings: &settings, plan: &plan, services: &[svc], agents: &[agent], host: &host };
        let units = build(&inputs, &mut CategoryMap::default()).expect("units");
        for u in &units {
            assert_eq!((u.spec.uid, u.spec.gid), (None, None), "{}", u.name);
            assert!(u.blocked.as_deref().is_some_and(|b| b.contains("does not exist")), "{}: {:?}", u.name, u.blocked);
        }
        let a = units.iter().find(|u| u.name == "a").expect("agent");
        assert!(a.blocked.as_deref().is_some_and(|b| b.contains("aither-agent")), "{:?}", a.blocked);
    }
}
