//! What agentd prepares on the host: the workers' socket directory, each agent's workspace
//! (owner, mode, MCS label); and the gateway's routing view, built at each load.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Loaded;
use crate::units::{self, Planned, RunAs};

/// What the gateway routes by: the plan's models and their workers, the VRAM budget, the
/// cloud fallback with its key, the gateway's key and timeouts. Built when the configuration
/// is loaded (start and reload), so the key files are read then and not per request.
pub(super) fn gateway_view(l: &Loaded, by_name: &BTreeMap<String, Planned>) -> crate::gateway::View {
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
        .map(|p| aither_plan::plan::gpu_budgets(&l.profile, p))
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
pub(super) fn prepare_worker_dir(loaded: &Loaded) -> Result<()> {
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
pub(super) fn prepare_workspace(loaded: &Loaded, u: &Planned) -> Result<()> {
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
