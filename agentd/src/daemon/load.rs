//! Loading: the configuration, the profile, the preset, the plan and the manifests, into
//! [`Loaded`]; nothing is applied until all of it is valid.

use std::path::{Path, PathBuf};

use aither_api::profile::Profile;
use aither_plan::plan::{Plan, PlanOptions};
use aither_plan::presets::Presets;
use anyhow::{Context, Result};

use crate::agents::{self, CategoryMap};
use crate::config::{self, Listen, Settings};
use crate::services;
use crate::units::{self, Host, Inputs, Planned, RunAs};

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
    /// The workflow definitions, and the files refused (each naming file and key).
    pub workflows: std::collections::BTreeMap<String, crate::workflows::Workflow>,
    pub workflow_errors: Vec<String>,
    /// Which workflows are on.
    pub switches: crate::workflows::Enabled,
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
    let (presets, catalog) = aither_plan::data::load(data.join("presets").is_dir().then_some(&*data))?;
    let pinned = aither_plan::data::pinned_preset(&appliance_file(&opts.root))?;
    let plan = aither_plan::plan::plan(
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
    let (workflows, mut errors) = crate::workflows::load(&opts.root);
    let switches = crate::workflows::Enabled::read(&opts.root).unwrap_or_else(|e| {
        errors.push(e);
        crate::workflows::Enabled {
            file: opts.root.join(crate::workflows::ENABLED_FILE),
            switches: aither_api::workflow::WorkflowSwitches::default(),
        }
    });
    for e in &errors {
        tracing::warn!("workflow refused: {e}");
    }
    let on: Vec<&str> = workflows.values().filter(|w| switches.is_on(w)).map(|w| w.name.as_str()).collect();
    let gateway_agents: Vec<&str> = agent_list
        .iter()
        .filter(|a| a.permissions.network == aither_policy::Network::Gateway)
        .map(|a| a.name.as_str())
        .collect();
    check_agents_socket(&settings, &on, &gateway_agents)?;
    Ok(Loaded {
        workflows,
        workflow_errors: errors.iter().map(ToString::to_string).collect(),
        switches,
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

/// Workflow steps and gateway-only agents reach the model through the gateway's Unix socket:
/// a `gateway.listen` without one (and no `workflows.gateway_socket`) would fail every one of
/// them at its first turn, so it is refused while any is enabled.
fn check_agents_socket(settings: &Settings, workflows: &[&str], agents: &[&str]) -> Result<()> {
    let socket = settings.workflow_gateway_socket.is_some()
        || settings.gateway_listen.iter().any(|l| matches!(l, config::Listen::Unix(_)));
    if socket || (workflows.is_empty() && agents.is_empty()) {
        return Ok(());
    }
    let mut users = Vec::new();
    if !workflows.is_empty() {
        users.push(format!("the enabled workflows ({})", workflows.join(", ")));
    }
    if !agents.is_empty() {
        users.push(format!("the agents with network = \"gateway\" ({})", agents.join(", ")));
    }
    anyhow::bail!(
        "gateway.listen: no unix:PATH socket is listed, and {} reach the model only through it: add \
         \"unix:{}\" to gateway.listen (or set workflows.gateway_socket), or disable them",
        users.join(" and "),
        aither_sys::paths::GATEWAY_SOCKET
    )
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
    under_root(&mut s.outbox);
    if let Some(k) = &mut s.webhook_key_file {
        under_root(k);
    }
    // The runner and the worker built beside this agentd, when the installed ones are not
    // there.
    for (path, name) in [(&mut s.workflow_runner, "aither-agent"), (&mut s.infer_binary, "aither-infer")] {
        if !path.exists() {
            let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join(name)));
            if let Some(b) = beside.filter(|b| b.exists()) {
                *path = b;
            }
        }
    }
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
    aither_plan::data::read_profile(&path)
}

pub fn appliance_file(root: &Path) -> PathBuf {
    root.join("etc/aither/appliance.toml")
}
pub(super) fn transient_dir(s: &Settings) -> PathBuf {
    s.runtime_dir.join("agents.d")
}
pub(super) fn mcs_file(s: &Settings) -> PathBuf {
    s.state_dir.join("mcs.json")
}
pub(super) fn engine_state_file(s: &Settings) -> PathBuf {
    s.runtime_dir.join("units.json")
}

/// Host facts: SELinux, the users units run as.
pub(super) fn host_facts(opts: &Options) -> Host {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_mode_moves_every_system_path_under_the_root_and_the_runtime_dir() {
        let mut s = config::from_sources(&[("agentd.toml".into(), config::DEFAULTS.into())]).expect("defaults");
        assert!(s.model_dir.starts_with("/var/lib/aither"), "{}", s.model_dir.display());
        relocate_for_dev(&mut s, Path::new("/home/me/dev"), Path::new("/tmp/run-me"));
        assert_eq!(s.model_dir, Path::new("/home/me/dev/var/lib/aither/models"));
        assert_eq!(s.gateway_api_key_file.as_deref(), Some(Path::new("/home/me/dev/etc/aither/gateway.key")));
        assert_eq!(s.runtime_dir, Path::new("/tmp/run-me"));
        assert_eq!(s.state_dir, Path::new("/tmp/run-me/state"));
        for l in &s.gateway_listen {
            if let Listen::Unix(p) = l {
                assert!(p.starts_with("/tmp/run-me"), "{}", p.display());
            }
        }
        assert!(matches!(s.log, config::LogTo::Stderr));
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;

    #[test]
    fn a_gateway_without_the_agents_socket_is_refused_while_something_needs_it() {
        let mut s = config::load(Path::new("/nonexistent-root")).expect("the defaults");
        assert!(check_agents_socket(&s, &["devops"], &[]).is_ok(), "the default listens on the socket");
        s.gateway_listen.retain(|l| !matches!(l, config::Listen::Unix(_)));
        assert!(check_agents_socket(&s, &[], &[]).is_ok(), "nothing needs it");
        let e = check_agents_socket(&s, &["devops"], &["helper"]).expect_err("refused").to_string();
        assert!(e.starts_with("gateway.listen: no unix:PATH socket is listed"), "{e}");
        assert!(e.contains("enabled workflows (devops)") && e.contains("(helper)"), "{e}");
        s.workflow_gateway_socket = Some("/run/other.sock".into());
        assert!(check_agents_socket(&s, &["devops"], &[]).is_ok());
    }
}
