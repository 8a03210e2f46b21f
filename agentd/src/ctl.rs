//! `aitherctl`: the command line for the appliance.
//!
//! Only `aitherctl policy` exists so far; the commands that talk to agentd over D-Bus come
//! with agentd itself.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::tailored_policy::{self, SystemResolver};

/// Where installed tailored modules are kept.
pub const POLICY_DIR: &str = "/var/lib/aither/selinux";

#[derive(Debug, Parser)]
#[command(name = "aitherctl", version, about = "Control the AitherOS appliance")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tailored SELinux policies for agents.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Everything else (status, units, agents, start/stop, logs, profile, preset, plan, reload).
    #[command(external_subcommand)]
    Other(Vec<String>),
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

/// Run the command line; returns the exit status.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Policy(PolicyCommand::Show { manifest, policy }) => {
            let Some((p, _)) = tailored(&manifest, policy)? else { return Ok(0) };
            print!("{}", p.cil);
            Ok(0)
        }
        Command::Policy(PolicyCommand::Install { manifest, policy, dir, semodule }) => {
            let Some((p, perms)) = tailored(&manifest, policy)? else { return Ok(0) };
            let path = tailored_policy::install(&p, &dir, &semodule)?;
            println!("installed {} ({}) from {}", p.module, p.domain, path.display());
            for target in tailored_policy::relabel_paths(&perms) {
                if target.exists() {
                    let status = std::process::Command::new("restorecon")
                        .arg("-R")
                        .arg(&target)
                        .status()
                        .with_context(|| format!("restorecon -R {}", target.display()))?;
                    anyhow::ensure!(status.success(), "restorecon -R {} failed", target.display());
                    println!("relabelled {}", target.display());
                }
            }
            Ok(0)
        }
        Command::Policy(PolicyCommand::Remove { agent, dir, semodule }) => {
            let module = format!("aither_agent_{}", tailored_policy::type_stem(&agent)?);
            tailored_policy::remove(&module, &dir, &semodule)?;
            println!("removed {module}");
            Ok(0)
        }
        Command::Other(args) => {
            let what = args.first().map_or("aitherctl", String::as_str);
            Ok(crate::not_implemented(&format!("aitherctl {what}"), "agentd: the appliance daemon"))
        }
    }
}
