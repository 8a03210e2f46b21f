//! What bounds a workflow step beyond its agent's own budget: agentd's deadline for the step's
//! unit (its budget's seconds and a grace, then `timed_out`), its workspace's bound (bytes and
//! entries, counted every tick; no file larger, by `RLIMIT_FSIZE`), and SELinux's mode, without
//! which a step that runs commands or reaches the network is refused.

use std::time::{Duration, Instant};

use super::{Daemon, State};

/// How long past its budget's seconds a step's agent may run before agentd stops it: the runner
/// keeps its own deadline, so only an agent that ignores it (or a step's process that holds it)
/// meets this one.
pub const STEP_GRACE: Duration = Duration::from_secs(10);
/// How often [`Daemon::stop_overdue_steps`] looks.
pub const DEADLINE_TICK: Duration = Duration::from_secs(1);

impl Daemon {
    /// A step's agent started: its deadline is set (once), its budget's seconds and
    /// [`STEP_GRACE`] from now.
    pub(super) fn arm_step_deadline(st: &mut State, unit: &str) {
        if st.engine.deadlines.contains_key(unit) || !st.engine.steps.contains_key(unit) {
            return;
        }
        let Some(seconds) = step_budget_seconds(st, unit) else { return };
        st.engine.deadlines.insert(unit.to_string(), Instant::now() + Duration::from_secs(seconds.into()) + STEP_GRACE);
    }

    /// Stop the step units past their deadline; their end is collected as `timed_out` (the
    /// run fails, the slot and category pair are freed as for any step that ends).
    pub async fn stop_overdue_steps(&self) {
        let now = Instant::now();
        let overdue: Vec<String> = {
            let mut st = self.state.lock().await;
            let due: Vec<String> = st
                .engine
                .deadlines
                .iter()
                .filter(|(u, at)| **at <= now && !st.engine.timed_out.contains(*u))
                .map(|(u, _)| u.clone())
                .collect();
            st.engine.timed_out.extend(due.iter().cloned());
            due
        };
        for unit in overdue {
            tracing::warn!("{unit}: past its budget and grace: stopping it");
            if let Err(e) = self.sup.stop(&unit).await {
                tracing::warn!("{unit}: cannot stop it: {e}");
            }
        }
    }
}

impl Daemon {
    /// Count each running step's workspace (off the lock and the event loop) and stop the
    /// steps past their bound; their end is collected as failed, with why.
    pub async fn bound_workspaces(&self) {
        let (targets, owner, max_bytes, max_entries) = {
            let st = self.state.lock().await;
            let s = &st.loaded.settings;
            let owner = match st.loaded.host.agent_user {
                crate::units::RunAs::User { uid, gid } => Some((uid, gid)),
                _ => None,
            };
            let targets: Vec<(String, std::path::PathBuf)> = st
                .engine
                .deadlines
                .keys()
                .filter(|u| !st.engine.over_bound.contains_key(*u) && !st.engine.timed_out.contains(*u))
                .map(|u| (u.clone(), crate::units::workspace(&s.state_dir, u)))
                .collect();
            (targets, owner, s.workspace_max_bytes, s.workspace_max_files)
        };
        if targets.is_empty() {
            return;
        }
        let over = tokio::task::spawn_blocking(move || {
            targets
                .into_iter()
                .filter_map(|(unit, ws)| match super::runs::measure(&ws, owner, max_bytes, max_entries) {
                    Ok(usage) => usage.over(max_bytes, max_entries).map(|why| (unit, why)),
                    // Gone already (the step ended between the lock and here), or not
                    // measurable for a reason of agentd's own: said, not held against the step.
                    Err(e) => {
                        tracing::debug!("{unit}: cannot measure its workspace: {e:#}");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (unit, why) in over {
            {
                let mut st = self.state.lock().await;
                if !st.engine.steps.contains_key(&unit) {
                    continue;
                }
                st.engine.over_bound.insert(unit.clone(), why.clone());
            }
            tracing::warn!("{unit}: its workspace holds {why}: stopping it");
            if let Err(e) = self.sup.stop(&unit).await {
                tracing::warn!("{unit}: cannot stop it: {e}");
            }
        }
    }
}

/// The seconds of the budget of the step that unit `unit` runs.
fn step_budget_seconds(st: &State, unit: &str) -> Option<u32> {
    st.engine.runs.values().find_map(|r| {
        let i = r.steps.iter().position(|s| s.unit.as_deref() == Some(unit))?;
        st.loaded.workflows.get(&r.workflow)?.steps.get(i).map(|s| s.budget.seconds)
    })
}

/// A step that runs commands or reaches the network runs only where SELinux confines it (or
/// where the admin has said `workflows.allow_unconfined = true`): without it, nothing but the
/// agent user and its cgroup stands between the step's commands and the appliance.
pub(super) fn check_confinement(
    step: &crate::workflows::Step,
    confinement: aither_api::agentd::Confinement,
    allowed: bool,
) -> Result<(), String> {
    use crate::workflows::{Network, Tool};
    use aither_api::agentd::Confinement;
    let what = if step.tools.contains(&Tool::RunCommand) {
        "runs commands"
    } else if step.network == Network::Outbound || step.tools.contains(&Tool::FetchUrl) {
        "reaches the network"
    } else {
        return Ok(());
    };
    let mode = match confinement {
        Confinement::Enforcing | Confinement::Development => return Ok(()),
        _ if allowed => return Ok(()),
        Confinement::Permissive => "permissive",
        Confinement::Off => "off",
    };
    Err(format!(
        "SELinux is {mode} on this host and step {} {what}: nothing would confine it; \
         set workflows.allow_unconfined = true in agentd.toml to run it anyway",
        step.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_that_run_commands_or_reach_out_need_selinux_enforcing() {
        use aither_api::agentd::Confinement;
        let packs: std::collections::BTreeMap<String, crate::workflows::Workflow> =
            crate::workflows::load(std::path::Path::new("/nonexistent")).0;
        let review = &packs["code-review"];
        let test = review.steps.iter().find(|s| s.tools.contains(&crate::workflows::Tool::RunCommand)).expect("test");
        let e = check_confinement(test, Confinement::Permissive, false).expect_err("refused");
        assert!(e.starts_with("SELinux is permissive on this host and step"), "{e}");
        assert!(e.contains("runs commands") && e.contains("workflows.allow_unconfined = true"), "{e}");
        assert!(check_confinement(test, Confinement::Off, false).is_err());
        assert!(check_confinement(test, Confinement::Off, true).is_ok(), "the admin said so");
        assert!(check_confinement(test, Confinement::Enforcing, false).is_ok());
        let plain = packs["content-pipeline"].steps.first().expect("a step");
        assert!(check_confinement(plain, Confinement::Off, false).is_ok(), "nothing to confine beyond the user");
    }
}
