//! What aitherctl does without agentd: tailored SELinux policies for agent manifests (they
//! need `semodule`, not the daemon), and the gateway key.

use std::path::PathBuf;

use anyhow::{Context, Result};

use aither_policy::{self as tailored_policy, SystemResolver};
use aither_sys::paths::GATEWAY_KEY;

use crate::PolicyCommand;

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

/// `aitherctl gateway --create-key`: locally, without agentd.
pub fn create_gateway_key() -> Result<i32> {
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

pub fn policy(command: PolicyCommand) -> Result<i32> {
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
