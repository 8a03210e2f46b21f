//! # aitherctl: the command line for the appliance
//!
//! Everything but `policy` and `gateway --create-key` talks to agentd over D-Bus
//! (`org.aitheros.Agentd1`; the system bus, or the session bus for a development agentd,
//! found by itself when none answers on the system bus). Every reply is read into the typed
//! document of `aither_api::agentd` that agentd wrote; `--json` prints that document, and
//! without it aitherctl prints tables for people. This crate depends on the documents, not
//! on the daemon.
//!
//! - [`client`]: the connection, the proxy, and what a failed call means.
//! - [`render`]: tables and texts for people.
//! - [`models`]: `aitherctl models` (resolve, pull with progress, remove).
//! - [`logs`]: a unit's output from the journal or its file.
//! - [`workflows`]: workflows, their runs and transcripts, the approval queue.
//! - [`eval`]: how often the agents get it right on this appliance's models.
//! - [`local`]: what runs without agentd: tailored SELinux policies, the gateway key.
//!
//! Exit status: 0 done, 1 refused or failed (the message says why), 4 not allowed (only root
//! and members of `aither-admin` may change things), 69 agentd is not running.
//!
//! ## Limitations
//!
//! - `models pull` links the catalog and the downloader of `aither-hwprofile` (and so that
//!   crate's vendor-library loaders) until the model store has a crate of its own.

pub mod client;
pub mod eval;
pub mod local;
pub mod logs;
pub mod models;
pub mod render;
pub mod workflows;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;

use aither_api::agentd as api;
use aither_models::Source;
use aither_sys::paths::POLICY_DIR;

use client::{classify, AgentdProxy, CallError};

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
    /// What the inference workers did over the last minutes: tokens per second, queue,
    /// slots and KV cache use, sampled by agentd from each worker's metrics.
    Inference,
    /// Workflows: list, show, enable, disable, run, runs, status, logs, cancel.
    #[command(subcommand)]
    Workflows(workflows::WorkflowsCommand),
    /// The approval queue of workflow proposals: list, show, approve, deny.
    #[command(subcommand)]
    Approvals(workflows::ApprovalsCommand),
    /// Tailored SELinux policies for agents.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// How often the agents get it right on this appliance's models: tool calling and the
    /// workflow packs on cases with known answers, scored by code.
    Eval(eval::EvalArgs),
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
    /// Stop a model's worker and delete its file (agentd does it: root or aither-admin).
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

/// Run the command line; returns the exit status.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Policy(p) => local::policy(p),
        Command::Gateway { create_key: true } => local::create_gateway_key(),
        Command::Eval(args) => eval_command(&args, cli.session, cli.json),
        command => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(remote(command, cli.session, cli.json))
        }
    }
}

async fn remote(command: Command, session: bool, as_json: bool) -> Result<i32> {
    match call(command, session, as_json).await {
        Ok(()) => Ok(0),
        Err(e) => remote_error(e),
    }
}

/// Read a reply into its document type.
fn parse<T: serde::de::DeserializeOwned>(text: String) -> Result<T, CallError> {
    serde_json::from_str(&text).map_err(|e| {
        CallError::Failed(format!(
            "agentd sent a document this aitherctl does not understand ({e}); are both the same version?"
        ))
    })
}

fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// What was done: the document with `--json`, its words otherwise.
fn say(done: &api::Done, as_json: bool) {
    show(done, as_json, |d| format!("{}\n", d.message));
}

/// A document as JSON with `--json`, else as `text` gives it.
fn show<T: Serialize>(doc: &T, as_json: bool, text: impl FnOnce(&T) -> String) {
    if as_json {
        print_json(doc);
    } else {
        print!("{}", text(doc));
    }
}

async fn call(command: Command, session: bool, as_json: bool) -> Result<(), CallError> {
    let (conn, session) = client::connect(session).await?;
    let err = |e: zbus::Error| classify(e, session);
    let agentd = AgentdProxy::new(&conn).await.map_err(err)?;
    let say = |done: api::Done| say(&done, as_json);
    match command {
        Command::Status => {
            let s: api::Status = parse(agentd.status().await.map_err(err)?)?;
            if as_json {
                print_json(&s);
            } else {
                print!("{}", render::status(&s));
            }
        }
        Command::Gateway { .. } => {
            let s: api::Status = parse(agentd.status().await.map_err(err)?)?;
            if as_json {
                print_json(&s.gateway);
            } else {
                print!("{}", render::gateway(&s.gateway));
            }
        }
        Command::Units | Command::Agents => {
            let agents = matches!(command, Command::Agents);
            let text = if agents { agentd.list_agents().await } else { agentd.list_units().await };
            let list: api::UnitList = parse(text.map_err(err)?)?;
            if as_json {
                print_json(&list);
            } else if agents {
                print!("{}", render::agents(&list.units));
            } else {
                print!("{}", render::units(&list.units));
            }
        }
        Command::Show { name } => {
            let u: api::UnitReply = parse(agentd.get_unit(&name).await.map_err(err)?)?;
            print_json(&u);
        }
        Command::Start { name } => say(parse(agentd.start(&name).await.map_err(err)?)?),
        Command::Stop { name } => say(parse(agentd.stop(&name).await.map_err(err)?)?),
        Command::Restart { name } => say(parse(agentd.restart(&name).await.map_err(err)?)?),
        Command::Run { manifest } => {
            let text = std::fs::read_to_string(&manifest)
                .map_err(|e| CallError::Failed(format!("{}: {e}", manifest.display())))?;
            let done = agentd.run_agent(&text).await.map_err(|e| match classify(e, session) {
                CallError::Failed(m) => CallError::Failed(m.replace("(manifest)", &manifest.display().to_string())),
                other => other,
            })?;
            say(parse(done)?)
        }
        Command::Logs { name, follow, lines } => {
            let reply: api::LogTargetReply = parse(agentd.log_target(&name).await.map_err(err)?)?;
            logs::show(&reply.target, follow, lines)?;
        }
        Command::Profile => {
            let p: aither_api::profile::Profile = parse(agentd.profile().await.map_err(err)?)?;
            if as_json {
                print_json(&p);
            } else {
                print!("{}", aither_api::render::profile_table(&p));
            }
        }
        Command::Preset { action: None | Some(PresetCommand::Show) } => {
            let p: api::PresetReply = parse(agentd.preset().await.map_err(err)?)?;
            if as_json {
                print_json(&p);
            } else {
                print!("{}", render::preset(&p));
            }
        }
        Command::Preset { action: Some(PresetCommand::Set { name }) } => {
            say(parse(agentd.set_preset(&name).await.map_err(err)?)?)
        }
        Command::Plan => {
            let p: aither_api::plan::Plan = parse(agentd.plan().await.map_err(err)?)?;
            if as_json {
                print_json(&p);
            } else {
                print!("{}", aither_api::render::plan_table(&p));
            }
        }
        Command::Reload => say(parse(agentd.reload().await.map_err(err)?)?),
        Command::Models(m) => {
            let doc: api::Models = parse(agentd.models().await.map_err(err)?)?;
            match m {
                ModelsCommand::List if as_json => print_json(&doc),
                ModelsCommand::List => print!("{}", render::models(&doc)),
                ModelsCommand::Pull { names, quant, from } => {
                    let catalog = models::catalog().map_err(|e| CallError::Failed(format!("{e:#}")))?;
                    let wanted =
                        models::resolve(&doc, &catalog, &names, quant.as_deref()).map_err(CallError::Failed)?;
                    if wanted.is_empty() {
                        say(api::Done::new("every model of the plan is already there"));
                        return Ok(());
                    }
                    let source = from.map_or(Source::Catalog, Source::Dir);
                    let dir = doc.model_dir.clone();
                    let fetched = tokio::task::spawn_blocking(move || models::pull(&wanted, &dir, &source, as_json))
                        .await
                        .map_err(|e| CallError::Failed(e.to_string()))?
                        .map_err(CallError::Failed)?;
                    let reloaded: api::Done = parse(agentd.reload().await.map_err(err)?)?;
                    let paths: Vec<String> = fetched.iter().map(|f| f.path.display().to_string()).collect();
                    say(api::Done::new(format!("pulled {}; {}", paths.join(", "), reloaded.message)));
                }
                ModelsCommand::Remove { name } => say(parse(agentd.remove_model(&name).await.map_err(err)?)?),
            }
        }
        Command::Inference => {
            let doc: api::Inference = parse(agentd.inference().await.map_err(err)?)?;
            show(&doc, as_json, render::inference);
        }
        Command::Workflows(w) => workflow_command(&agentd, w, as_json, session).await?,
        Command::Approvals(a) => approvals_command(&agentd, a, as_json, session).await?,
        Command::Policy(_) | Command::Eval(_) => unreachable!("handled apart"),
    }
    Ok(())
}

/// `aitherctl eval`: against `--endpoint`, or each model of the plan through the gateway,
/// each report kept by agentd. The eval itself runs outside any async runtime (its clients
/// have their own).
fn eval_command(args: &eval::EvalArgs, session: bool, as_json: bool) -> Result<i32> {
    let fail = |m: String| {
        eprintln!("aitherctl: {m}");
        Ok(1)
    };
    let explicit = match eval::explicit_endpoint(args) {
        Ok(e) => e,
        Err(m) => return fail(m),
    };
    if let Some(endpoint) = explicit {
        let model = args.model.clone().unwrap_or_else(|| "chat".into());
        return match eval::evaluate(args, endpoint, &model) {
            Ok(report) => {
                show(&report, as_json, aither_eval::table);
                Ok(0)
            }
            Err(CallError::Failed(m) | CallError::Denied(m) | CallError::NotRunning(m)) => fail(m),
        };
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let found = rt.block_on(async {
        let (conn, session) = client::connect(session).await?;
        let err = |e: zbus::Error| classify(e, session);
        let agentd = AgentdProxy::new(&conn).await.map_err(err)?;
        let status: api::Status = parse(agentd.status().await.map_err(err)?)?;
        let plan: aither_api::plan::Plan = parse(agentd.plan().await.map_err(err)?)?;
        Ok::<_, CallError>((status, plan, session))
    });
    let (status, plan, session) = match found {
        Ok(f) => f,
        Err(e) => return remote_error(e),
    };
    let endpoint = match eval::gateway_endpoint(&status.gateway) {
        Ok(e) => e,
        Err(m) => return fail(m),
    };
    let models: Vec<String> = match &args.model {
        Some(m) => vec![m.clone()],
        None => {
            use aither_api::plan::Role;
            let mut names: Vec<String> = plan
                .models
                .iter()
                .filter(|m| matches!(m.role, Role::Chat | Role::Code))
                .map(|m| m.name.clone())
                .collect();
            names.dedup();
            names
        }
    };
    if models.is_empty() {
        return fail("the plan has no chat or code model to evaluate (name one with --model)".into());
    }
    let mut reports = Vec::new();
    for model in &models {
        match eval::evaluate(args, endpoint.clone(), model) {
            Ok(r) => reports.push(r),
            Err(CallError::Failed(m) | CallError::Denied(m) | CallError::NotRunning(m)) => return fail(m),
        }
    }
    if as_json {
        print_json(&reports);
    } else {
        for r in &reports {
            print!("{}", aither_eval::table(r));
        }
    }
    let recorded = rt.block_on(async {
        let (conn, _) = client::connect(session).await?;
        let err = |e: zbus::Error| classify(e, session);
        let agentd = AgentdProxy::new(&conn).await.map_err(err)?;
        for r in &reports {
            let text = serde_json::to_string(r).map_err(|e| CallError::Failed(e.to_string()))?;
            let _: api::Done = parse(agentd.record_eval(&text).await.map_err(err)?)?;
        }
        Ok::<_, CallError>(())
    });
    match recorded {
        Ok(()) => {
            if !as_json {
                eprintln!("eval: kept by agentd (the Cockpit page shows the latest per model)");
            }
            Ok(0)
        }
        Err(CallError::Denied(m)) => {
            eprintln!("aitherctl: the report was not kept: {m}");
            Ok(0)
        }
        Err(e) => remote_error(e),
    }
}

fn remote_error(e: CallError) -> Result<i32> {
    match e {
        CallError::NotRunning(m) => {
            eprintln!("aitherctl: {m}");
            Ok(EXIT_NOT_RUNNING)
        }
        CallError::Denied(m) => {
            eprintln!("aitherctl: permission denied: {m}");
            Ok(EXIT_DENIED)
        }
        CallError::Failed(m) => {
            eprintln!("aitherctl: {m}");
            Ok(1)
        }
    }
}

async fn workflow_command(
    agentd: &AgentdProxy<'_>,
    command: workflows::WorkflowsCommand,
    as_json: bool,
    session: bool,
) -> Result<(), CallError> {
    use aither_api::workflow::{RunList, RunReply, WorkflowList};
    use workflows::WorkflowsCommand as W;
    let err = |e: zbus::Error| classify(e, session);
    match command {
        W::List | W::Show { .. } => {
            let doc: WorkflowList = parse(agentd.workflows().await.map_err(err)?)?;
            match command {
                W::Show { name } if as_json => {
                    let w = doc.workflows.iter().find(|w| w.name == name);
                    print_json(&w.ok_or_else(|| CallError::Failed(format!("no workflow {name:?}")))?);
                }
                W::Show { name } => print!("{}", workflows::show(&doc, &name).map_err(CallError::Failed)?),
                _ if as_json => print_json(&doc),
                _ => print!("{}", workflows::list(&doc)),
            }
        }
        W::Run { name, inputs } => {
            let inputs = workflows::inputs(&inputs).map_err(CallError::Failed)?;
            let reply: RunReply = parse(agentd.run_workflow(&name, inputs).await.map_err(err)?)?;
            if as_json {
                print_json(&reply);
            } else {
                println!("run {} started: `aitherctl workflows status {}` follows it", reply.run.id, reply.run.id);
            }
        }
        W::Enable { name } => say(&parse(agentd.enable_workflow(&name, true).await.map_err(err)?)?, as_json),
        W::Disable { name } => say(&parse(agentd.enable_workflow(&name, false).await.map_err(err)?)?, as_json),
        W::Runs => show(&parse::<RunList>(agentd.runs().await.map_err(err)?)?, as_json, workflows::runs),
        W::Status { run } => {
            show(&parse::<RunReply>(agentd.get_run(&run).await.map_err(err)?)?, as_json, workflows::status)
        }
        W::Logs { run, step } => {
            let reply: RunReply = parse(agentd.get_run(&run).await.map_err(err)?)?;
            let steps: Vec<String> = match step {
                Some(s) => vec![s],
                None => reply.run.steps.iter().filter(|s| s.started.is_some()).map(|s| s.name.clone()).collect(),
            };
            for s in steps {
                let text = agentd.run_log(&run, &s).await.map_err(err)?;
                if as_json {
                    print!("{text}");
                } else {
                    print!("{}", workflows::transcript(&s, &text));
                }
            }
        }
        W::Artifact { run, step, name } => {
            let a: api::Artifact = parse(agentd.run_artifact(&run, &step, &name).await.map_err(err)?)?;
            show(&a, as_json, |a| {
                let mut text = a.text.clone();
                if a.truncated {
                    text.push_str(&format!("\n(the first {} of {} bytes)\n", a.text.len(), a.bytes));
                }
                text
            });
        }
        W::Cancel { run } => say(&parse(agentd.cancel_run(&run).await.map_err(err)?)?, as_json),
    }
    Ok(())
}

async fn approvals_command(
    agentd: &AgentdProxy<'_>,
    command: workflows::ApprovalsCommand,
    as_json: bool,
    session: bool,
) -> Result<(), CallError> {
    use aither_api::workflow::ApprovalList;
    use workflows::ApprovalsCommand as A;
    let err = |e: zbus::Error| classify(e, session);
    match command {
        A::List => show(&parse::<ApprovalList>(agentd.approvals().await.map_err(err)?)?, as_json, |d| {
            workflows::approvals(&d.approvals)
        }),
        A::Show { id } => {
            let doc: ApprovalList = parse(agentd.approvals().await.map_err(err)?)?;
            if as_json {
                let a = doc.approvals.iter().find(|a| a.id == id);
                print_json(&a.ok_or_else(|| CallError::Failed(format!("no proposal {id:?}")))?);
            } else {
                print!("{}", workflows::approval(&doc, &id).map_err(CallError::Failed)?);
            }
        }
        A::Approve { id } => say(&parse(agentd.approve(&id).await.map_err(err)?)?, as_json),
        A::Deny { id } => say(&parse(agentd.deny(&id).await.map_err(err)?)?, as_json),
    }
    Ok(())
}
