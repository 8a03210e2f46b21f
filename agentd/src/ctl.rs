//! `aitherctl`: the command line for the appliance.
//!
//! Everything but `policy` talks to agentd over D-Bus (`org.aitheros.Agentd1`; the system
//! bus, or the session bus with `--session` for a development agentd). `--json` prints the
//! API's own documents; without it, tables for people.
//!
//! Exit status: 0 done, 1 refused or failed (the message says why), 4 not allowed (only root
//! and members of `aither-admin` may change things), 69 agentd is not running.

use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use serde_json::Value;

use aither_hwprofile::fetch::Source;

use crate::bus::AgentdProxy;
use crate::tailored_policy::{self, SystemResolver};

use aither_sys::paths::{GATEWAY_KEY, POLICY_DIR};

/// Exit statuses.
pub const EXIT_DENIED: i32 = 4;
pub const EXIT_NOT_RUNNING: i32 = 69;

#[derive(Debug, Parser)]
#[command(name = "aitherctl", version, about = "Control the AitherOS appliance")]
pub struct Cli {
    /// Talk to a development agentd (`agentd --dev`) on the session bus.
    #[arg(long, global = true)]
    pub session: bool,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The preset, a one-line summary and every unit.
    Status,
    /// Every unit: inference workers, services and agents.
    Units,
    /// The agents, with their MCS level, domain and workspace.
    Agents,
    /// One unit in full.
    Show { name: String },
    /// Start a unit (an agent waits for a slot when all are taken).
    Start { name: String },
    /// Stop a unit (a queued agent leaves the queue).
    Stop { name: String },
    /// Restart a unit.
    Restart { name: String },
    /// Run an agent from a manifest file (kept until reboot).
    Run { manifest: PathBuf },
    /// A unit's output.
    Logs {
        name: String,
        /// Keep printing new output.
        #[arg(short, long)]
        follow: bool,
        /// Lines of history to print.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// The hardware profile agentd planned with.
    Profile,
    /// The preset in use (`show`), or pin another one (`set NAME`).
    Preset {
        #[command(subcommand)]
        action: Option<PresetCommand>,
    },
    /// The plan: models, groups, memory tiers, agent slots, threads.
    Plan,
    /// Read the configuration and manifests again and apply the difference.
    Reload,
    /// The OpenAI-compatible gateway: where it listens, its key, how to use it.
    Gateway {
        /// Create the gateway key (/etc/aither/gateway.key, 0640 root:aither-admin) when it
        /// is missing, as first boot does (for machines installed before it did); an existing
        /// usable key is kept.
        #[arg(long)]
        create_key: bool,
    },
    /// The plan's model files: list, pull, remove.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Tailored SELinux policies for agents.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// The plan's models: file, size, whether it is there, the worker's state.
    List,
    /// Download model files into the model directory, checked and resumable. NAMEs are
    /// models of the plan or of the catalog; none: every missing model of the plan.
    Pull {
        names: Vec<String>,
        /// The quantization to fetch for a catalog model (its first file otherwise).
        #[arg(long)]
        quant: Option<String>,
        /// Copy from this directory (a USB stick) instead of downloading.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
    /// Stop a model's worker and delete its file.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum PresetCommand {
    Show,
    /// Pin a preset in /etc/aither/appliance.toml and reload.
    Set {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the CIL module an agent manifest would get.
    Show {
        manifest: PathBuf,
        /// Loaded policy to resolve port labels from.
        #[arg(long, default_value = "/sys/fs/selinux/policy")]
        policy: PathBuf,
    },
    /// Generate and install an agent's module with semodule.
    Install {
        manifest: PathBuf,
        #[arg(long, default_value = "/sys/fs/selinux/policy")]
        policy: PathBuf,
        #[arg(long, default_value = POLICY_DIR)]
        dir: PathBuf,
        #[arg(long, default_value = "semodule")]
        semodule: PathBuf,
    },
    /// Remove an agent's module.
    Remove {
        /// The agent's name.
        agent: String,
        #[arg(long, default_value = POLICY_DIR)]
        dir: PathBuf,
        #[arg(long, default_value = "semodule")]
        semodule: PathBuf,
    },
}

/// The tailored module for a manifest, or `None` (and a message) when it needs none.
fn tailored(
    manifest: &std::path::Path,
    policy: PathBuf,
) -> Result<Option<(tailored_policy::TailoredPolicy, tailored_policy::Permissions)>> {
    let (name, perms) = tailored_policy::read_manifest(manifest)?;
    if !tailored_policy::needs_module(&perms) {
        println!(";; agent {name:?} asks for nothing beyond its workspace: it runs as aither_agent_t");
        return Ok(None);
    }
    let p = tailored_policy::generate(&name, &perms, &SystemResolver { policy })
        .with_context(|| format!("{}", manifest.display()))?;
    Ok(Some((p, perms)))
}

/// `aitherctl gateway`: the listeners, the key and the commands that use them.
fn gateway_text(g: &Value) -> String {
    let key = g["api_key_file"].as_str();
    let mut out = String::new();
    let mut url = None;
    for l in g["listen"].as_array().map_or(&[][..], Vec::as_slice) {
        if let Some(a) = l["tcp"].as_str() {
            let needs =
                if l["key_required"] == true { "clients send the key" } else { "no key (allow_tcp_without_key)" };
            out.push_str(&format!("listening: http://{a}/v1 ({needs})\n"));
            url.get_or_insert(format!("http://{a}/v1"));
        } else if let Some(p) = l["unix"].as_str() {
            let group = l["group"].as_str().map_or("the owner only".to_string(), |g| format!("group {g}, mode 0660"));
            out.push_str(&format!("listening: unix:{p} ({group}; agents with network = \"gateway\")\n"));
        }
    }
    if let Some(k) = key {
        out.push_str(&format!("key:       {k} (readable by root and aither-admin)\n"));
    }
    if let (Some(url), Some(k)) = (url, key) {
        out.push_str(&format!(
            "use:       curl -H \"Authorization: Bearer $(cat {k})\" {url}/models\n           \
             OPENAI_BASE_URL={url} OPENAI_API_KEY=$(cat {k}) your-openai-client\n"
        ));
    }
    out
}

/// Run the command line; returns the exit status.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Policy(p) => policy(p),
        Command::Gateway { create_key: true } => create_gateway_key(),
        command => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(remote(command, cli.session, cli.json))
        }
    }
}

/// `aitherctl gateway --create-key`: locally, without agentd.
fn create_gateway_key() -> Result<i32> {
    let gid = nix::unistd::Group::from_name("aither-admin").ok().flatten().map(|g| g.gid.as_raw());
    let path = std::path::Path::new(GATEWAY_KEY);
    if aither_http::keys::generate(path, gid)? {
        println!(
            "created {GATEWAY_KEY} (readable by root{}); then: systemctl reload agentd",
            if gid.is_some() { " and aither-admin" } else { "" }
        );
    } else {
        println!("{GATEWAY_KEY} is there and usable: kept");
    }
    Ok(0)
}

fn policy(command: PolicyCommand) -> Result<i32> {
    match command {
        PolicyCommand::Show { manifest, policy } => {
            let Some((p, _)) = tailored(&manifest, policy)? else { return Ok(0) };
            print!("{}", p.cil);
            Ok(0)
        }
        PolicyCommand::Install { manifest, policy, dir, semodule } => {
            let Some((p, perms)) = tailored(&manifest, policy)? else { return Ok(0) };
            let path = tailored_policy::install(&p, &dir, &semodule)?;
            println!("installed {} ({}) from {}", p.module, p.domain, path.display());
            for target in tailored_policy::relabel_paths(&perms) {
                if target.exists() {
                    aither_sys::command::run(std::process::Command::new("restorecon").arg("-R").arg(&target))?;
                    println!("relabelled {}", target.display());
                }
            }
            Ok(0)
        }
        PolicyCommand::Remove { agent, dir, semodule } => {
            let module = format!("aither_agent_{}", tailored_policy::type_stem(&agent)?);
            tailored_policy::remove(&module, &dir, &semodule)?;
            println!("removed {module}");
            Ok(0)
        }
    }
}

/// Why a call failed, as aitherctl reports it.
enum CallError {
    NotRunning(String),
    Denied(String),
    Failed(String),
}

fn classify(e: zbus::Error, session: bool) -> CallError {
    let not_running = |detail: String| {
        let how = if session {
            "start one with `agentd --dev` (or `make run`)"
        } else {
            "start it with `systemctl start agentd`; `journalctl -u agentd` says why it stopped"
        };
        CallError::NotRunning(format!("agentd is not running ({detail}): {how}"))
    };
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            let text = msg.unwrap_or_default();
            match name.as_str() {
                "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
                    not_running("no owner of org.aitheros.Agentd1".into())
                }
                "org.freedesktop.DBus.Error.AccessDenied" => CallError::Denied(text),
                _ => CallError::Failed(text),
            }
        }
        zbus::Error::FDO(e) => match *e {
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                not_running("no owner of org.aitheros.Agentd1".into())
            }
            zbus::fdo::Error::AccessDenied(m) => CallError::Denied(m),
            zbus::fdo::Error::Failed(m) => CallError::Failed(m),
            other => CallError::Failed(other.to_string()),
        },
        zbus::Error::InputOutput(e) if e.kind() == std::io::ErrorKind::TimedOut => CallError::Failed(format!(
            "agentd did not answer within {} s (`journalctl -u agentd` may say why)",
            crate::bus::CALL_TIMEOUT.as_secs()
        )),
        zbus::Error::InputOutput(e) => not_running(format!("cannot reach {e}")),
        zbus::Error::Address(e) => not_running(format!("no bus address: {e}")),
        other => CallError::Failed(other.to_string()),
    }
}

async fn remote(command: Command, session: bool, as_json: bool) -> Result<i32> {
    match call(command, session, as_json).await {
        Ok(()) => Ok(0),
        Err(CallError::NotRunning(m)) => {
            eprintln!("aitherctl: {m}");
            Ok(EXIT_NOT_RUNNING)
        }
        Err(CallError::Denied(m)) => {
            eprintln!("aitherctl: permission denied: {m}");
            Ok(EXIT_DENIED)
        }
        Err(CallError::Failed(m)) => {
            eprintln!("aitherctl: {m}");
            Ok(1)
        }
    }
}

/// Whether agentd owns its name on `conn`'s bus.
async fn agentd_on(conn: &zbus::Connection) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(conn).await else { return false };
    let Ok(name) = zbus::names::BusName::try_from(crate::bus::BUS_NAME) else { return false };
    dbus.name_has_owner(name).await.unwrap_or(false)
}

/// The bus agentd answers on: the session bus with `--session`; otherwise the system bus,
/// or, when no agentd answers there, a development agentd on the session bus (said on
/// stderr). Returns the connection and whether it is the session bus.
async fn connect(session: bool) -> Result<(zbus::Connection, bool), CallError> {
    let fail = |e: zbus::Error, session: bool| {
        let bus = if session { "session" } else { "system" };
        classify(
            zbus::Error::InputOutput(std::sync::Arc::new(std::io::Error::other(format!("the {bus} bus: {e}")))),
            session,
        )
    };
    if session {
        return crate::bus::connect(true).await.map(|c| (c, true)).map_err(|e| fail(e, true));
    }
    let system = crate::bus::connect(false).await;
    if let Ok(c) = &system {
        if agentd_on(c).await {
            return Ok((c.clone(), false));
        }
    }
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        if let Ok(c) = crate::bus::connect(true).await {
            if agentd_on(&c).await {
                eprintln!(
                    "aitherctl: no agentd on the system bus; talking to the development agentd on the session bus"
                );
                return Ok((c, true));
            }
        }
    }
    system.map(|c| (c, false)).map_err(|e| fail(e, false))
}

async fn call(command: Command, session: bool, as_json: bool) -> Result<(), CallError> {
    let (conn, session) = connect(session).await?;
    let err = |e: zbus::Error| classify(e, session);
    let agentd = AgentdProxy::new(&conn).await.map_err(err)?;
    let parse = |text: String| -> Result<Value, CallError> {
        serde_json::from_str(&text)
            .map_err(|e| CallError::Failed(format!("agentd sent a document that is not JSON: {e}")))
    };
    let say = |text: String| {
        if as_json {
            println!("{}", serde_json::json!({ "result": text }));
        } else {
            println!("{text}");
        }
    };
    match command {
        Command::Status => {
            let v = parse(agentd.status().await.map_err(err)?)?;
            if as_json {
                print_json(&v);
            } else {
                println!("{}", v["summary"].as_str().unwrap_or_default());
                println!(
                    "preset:   {} ({})",
                    v["preset"].as_str().unwrap_or_default(),
                    v["reason"].as_str().unwrap_or_default()
                );
                println!("limits:   {}", v["cgroups"].as_str().unwrap_or_default());
                println!();
                print!("{}", units_table(v["units"].as_array().map_or(&[][..], Vec::as_slice)));
            }
        }
        Command::Gateway { .. } => {
            let v = parse(agentd.status().await.map_err(err)?)?;
            if as_json {
                print_json(&v["gateway"]);
            } else {
                print!("{}", gateway_text(&v["gateway"]));
            }
        }
        Command::Units | Command::Agents => {
            let text =
                if matches!(command, Command::Units) { agentd.list_units().await } else { agentd.list_agents().await };
            let v = parse(text.map_err(err)?)?;
            if as_json {
                print_json(&v);
            } else if matches!(command, Command::Agents) {
                print!("{}", agents_table(v.as_array().map_or(&[][..], Vec::as_slice)));
            } else {
                print!("{}", units_table(v.as_array().map_or(&[][..], Vec::as_slice)));
            }
        }
        Command::Show { name } => print_json(&parse(agentd.get_unit(&name).await.map_err(err)?)?),
        Command::Start { name } => say(agentd.start(&name).await.map_err(err)?),
        Command::Stop { name } => say(agentd.stop(&name).await.map_err(err)?),
        Command::Restart { name } => say(agentd.restart(&name).await.map_err(err)?),
        Command::Run { manifest } => {
            let text = std::fs::read_to_string(&manifest)
                .map_err(|e| CallError::Failed(format!("{}: {e}", manifest.display())))?;
            say(agentd.run_agent(&text).await.map_err(|e| match classify(e, session) {
                CallError::Failed(m) => CallError::Failed(m.replace("(manifest)", &manifest.display().to_string())),
                other => other,
            })?)
        }
        Command::Logs { name, follow, lines } => {
            let target = agentd.log_target(&name).await.map_err(err)?;
            show_logs(&target, follow, lines)?;
        }
        Command::Profile => {
            let v = parse(agentd.profile().await.map_err(err)?)?;
            if as_json {
                print_json(&v);
            } else {
                match serde_json::from_value::<aither_hwprofile::profile::Profile>(v) {
                    Ok(p) => print!("{}", aither_hwprofile::render::profile_table(&p)),
                    Err(e) => return Err(CallError::Failed(format!("not a profile: {e}"))),
                }
            }
        }
        Command::Preset { action: None | Some(PresetCommand::Show) } => {
            let v = parse(agentd.preset().await.map_err(err)?)?;
            if as_json {
                print_json(&v);
            } else {
                let pinned = if v["pinned"].as_bool() == Some(true) { " (pinned)" } else { "" };
                println!(
                    "{}{pinned}: {}",
                    v["name"].as_str().unwrap_or_default(),
                    v["reason"].as_str().unwrap_or_default()
                );
                println!("{}", v["preset"]["description"].as_str().unwrap_or_default());
                let names: Vec<&str> =
                    v["available"].as_array().map_or(vec![], |a| a.iter().filter_map(Value::as_str).collect());
                println!("available: {}", names.join(", "));
            }
        }
        Command::Preset { action: Some(PresetCommand::Set { name }) } => {
            say(agentd.set_preset(&name).await.map_err(err)?)
        }
        Command::Plan => {
            let v = parse(agentd.plan().await.map_err(err)?)?;
            if as_json {
                print_json(&v);
            } else {
                match serde_json::from_value::<aither_hwprofile::plan::Plan>(v) {
                    Ok(p) => print!("{}", aither_hwprofile::render::plan_table(&p)),
                    Err(e) => return Err(CallError::Failed(format!("not a plan: {e}"))),
                }
            }
        }
        Command::Reload => say(agentd.reload().await.map_err(err)?),
        Command::Models(m) => {
            let doc = parse(agentd.models().await.map_err(err)?)?;
            let dir = PathBuf::from(doc["model_dir"].as_str().unwrap_or_default());
            match m {
                ModelsCommand::List if as_json => print_json(&doc),
                ModelsCommand::List => print!("{}", crate::models::table(&doc)),
                ModelsCommand::Pull { names, quant, from } => {
                    let catalog = crate::models::catalog().map_err(|e| CallError::Failed(format!("{e:#}")))?;
                    let wanted =
                        crate::models::resolve(&doc, &catalog, &names, quant.as_deref()).map_err(CallError::Failed)?;
                    if wanted.is_empty() {
                        say("every model of the plan is already there".into());
                        return Ok(());
                    }
                    let source = from.map_or(Source::Catalog, Source::Dir);
                    let fetched =
                        tokio::task::spawn_blocking(move || crate::models::pull(&wanted, &dir, &source, as_json))
                            .await
                            .map_err(|e| CallError::Failed(e.to_string()))?
                            .map_err(CallError::Failed)?;
                    let reloaded = agentd.reload().await.map_err(err)?;
                    let paths: Vec<String> = fetched.iter().map(|f| f.path.display().to_string()).collect();
                    say(format!("pulled {}; {reloaded}", paths.join(", ")));
                }
                ModelsCommand::Remove { name } => {
                    let (path, unit) = crate::models::planned_path(&doc, &name).map_err(CallError::Failed)?;
                    let units = parse(agentd.list_units().await.map_err(err)?)?;
                    let up = units
                        .as_array()
                        .is_some_and(|us| us.iter().any(|u| u["name"] == unit.as_str() && u["pid"].is_number()));
                    if up {
                        agentd.stop(&unit).await.map_err(err)?;
                    }
                    std::fs::remove_file(&path).map_err(|e| CallError::Failed(format!("{}: {e}", path.display())))?;
                    let reloaded = agentd.reload().await.map_err(err)?;
                    say(format!("removed {}; {reloaded}", path.display()));
                }
            }
        }
        Command::Policy(_) => unreachable!("handled locally"),
    }
    Ok(())
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|h| (*h).to_string()).collect(), &mut out);
    for r in rows {
        line(r, &mut out);
    }
    out
}

fn units_table(units: &[Value]) -> String {
    let rows = units
        .iter()
        .map(|u| {
            vec![
                text(&u["name"]),
                text(&u["kind"]),
                format!("{} ({})", text(&u["group"]), text(&u["priority"])),
                text(&u["state"]),
                text(&u["pid"]),
                text(&u["restarts"]),
                u["detail"].as_str().or(u["status"].as_str()).unwrap_or("").to_string(),
            ]
        })
        .collect();
    table(&["NAME", "KIND", "GROUP", "STATE", "PID", "RESTARTS", "DETAIL"], rows)
}

fn agents_table(units: &[Value]) -> String {
    let rows = units
        .iter()
        .map(|u| {
            vec![
                text(&u["name"]),
                text(&u["state"]),
                text(&u["pid"]),
                text(&u["agent"]["level"]),
                text(&u["agent"]["domain"]),
                text(&u["agent"]["network"]),
                text(&u["agent"]["workspace"]),
            ]
        })
        .collect();
    table(&["NAME", "STATE", "PID", "LEVEL", "DOMAIN", "NETWORK", "WORKSPACE"], rows)
}

/// Print a unit's output from the journal or its log file.
fn show_logs(target: &str, follow: bool, lines: usize) -> Result<(), CallError> {
    if let Some(id) = target.strip_prefix("journal:") {
        let mut cmd = std::process::Command::new("journalctl");
        cmd.args(["--no-pager", "-o", "short-iso", "-t", id, "-n", &lines.to_string()]);
        if follow {
            cmd.arg("-f");
        }
        let status = cmd.status().map_err(|e| CallError::Failed(format!("journalctl: {e}")))?;
        return if status.success() { Ok(()) } else { Err(CallError::Failed(format!("journalctl: {status}"))) };
    }
    let Some(path) = target.strip_prefix("file:") else {
        return Err(CallError::Failed(format!("its output is not kept ({target})")));
    };
    let failed = |e: std::io::Error| CallError::Failed(format!("{path}: {e}"));
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => {
            return Err(CallError::Failed(format!("{path}: no output yet")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => loop {
            std::thread::sleep(Duration::from_millis(200));
            if let Ok(f) = std::fs::File::open(path) {
                break f;
            }
        },
        Err(e) => return Err(failed(e)),
    };
    let mut all = String::new();
    file.read_to_string(&mut all).map_err(failed)?;
    let tail: Vec<&str> = all.lines().collect();
    let mut out = std::io::stdout().lock();
    for l in &tail[tail.len().saturating_sub(lines)..] {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
    drop(out);
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let pos = file.stream_position().map_err(failed)?;
        let len = file.metadata().map_err(failed)?.len();
        if len < pos {
            file.rewind().map_err(failed)?; // truncated
        }
        let mut more = String::new();
        file.read_to_string(&mut more).map_err(failed)?;
        if !more.is_empty() {
            print!("{more}");
            let _ = std::io::stdout().flush();
        }
    }
}
