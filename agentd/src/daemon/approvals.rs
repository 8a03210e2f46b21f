//! The approval queue: proposals that steps made, validated when they arrive, decided by a
//! person (or by the admin's policy for a workflow), carried out, expired, and audited in the
//! journal and in `audit.jsonl`.

use std::path::Path;
use std::time::Duration;

use aither_api::workflow::{Approval, ApprovalList, ApprovalState, AuditEntry, Proposal, Run, SCHEMA_VERSION};

use super::runs;
use super::workflow::refused;
use super::{Daemon, DaemonError, Outcome, State};
use crate::units::Kind;

impl Daemon {
    pub async fn approval_list(&self) -> ApprovalList {
        let st = self.state.lock().await;
        let mut approvals: Vec<Approval> = st.engine.runs.values().flat_map(|r| r.approvals.clone()).collect();
        approvals.sort_by(|a, b| {
            (a.state != ApprovalState::Pending)
                .cmp(&(b.state != ApprovalState::Pending))
                .then(b.created.cmp(&a.created))
        });
        ApprovalList { schema_version: SCHEMA_VERSION, approvals }
    }

    /// Carry out the pending proposals the workflow's admin policy approves.
    pub(super) async fn run_approved_by_policy(&self, id: &str) {
        let todo: Vec<(String, String)> = {
            let st = self.state.lock().await;
            let Some(run) = st.engine.runs.get(id) else { return };
            let Some(w) = st.loaded.workflows.get(&run.workflow) else { return };
            run.approvals
                .iter()
                .filter(|a| a.state == ApprovalState::Pending && w.auto_approve.contains(&a.proposal.kind()))
                .map(|a| (a.id.clone(), format!("policy ({})", w.file.display())))
                .collect()
        };
        for (approval, who) in todo {
            if let Err(e) = self.decide(&approval, true, &who).await {
                tracing::warn!("{approval}: {e}");
            }
        }
    }

    /// Approve (and carry out) or deny a proposal. `who` is recorded in the audit. An approval
    /// moves the proposal to `in flight` under the lock before anything is done, so it is
    /// carried out once: every other decision on it meanwhile (a second click, another admin,
    /// the policy, a cancel or its expiry) finds it no longer pending.
    pub async fn decide(&self, approval: &str, approve: bool, who: &str) -> Outcome {
        let (run_id, proposal) = {
            let mut st = self.state.lock().await;
            let run_id = approval.rsplit_once('.').map(|(r, _)| r.to_string()).unwrap_or_default();
            let run = st.engine.runs.get_mut(&run_id).ok_or_else(|| refused(format!("no proposal {approval:?}")))?;
            let a = run
                .approvals
                .iter_mut()
                .find(|a| a.id == approval)
                .ok_or_else(|| refused(format!("no proposal {approval:?}")))?;
            if a.state != ApprovalState::Pending {
                return Err(refused(format!("proposal {approval} is already {}", a.state.name())));
            }
            if a.expires <= runs::now() {
                return Err(refused(format!("proposal {approval} has expired")));
            }
            let proposal = a.proposal.clone();
            if !approve {
                let reply = self.settle(&mut st, &run_id, approval, ApprovalState::Denied, "not carried out", who);
                drop(st);
                return self.after_decision(&run_id, reply).await;
            }
            a.state = ApprovalState::InFlight;
            a.decided_by = Some(who.to_string());
            if let Some(r) = st.engine.runs.get(&run_id).cloned() {
                self.save_run(&st, &r);
            }
            (run_id, proposal)
        };
        let (state, outcome) = match self.carry_out(&run_id, &proposal).await {
            Ok(done) => (ApprovalState::Done, done),
            Err(e) => (ApprovalState::Failed, e.to_string()),
        };
        let reply = {
            let mut st = self.state.lock().await;
            self.settle(&mut st, &run_id, approval, state, &outcome, who)
        };
        self.after_decision(&run_id, reply).await
    }

    /// Record a decision's end on an approval that is pending or in flight; the reply, and
    /// whether the run's proposals are all decided now.
    fn settle(
        &self,
        st: &mut State,
        run_id: &str,
        approval: &str,
        state: ApprovalState,
        outcome: &str,
        who: &str,
    ) -> Result<(String, bool), DaemonError> {
        let state_dir = st.loaded.settings.state_dir.clone();
        let Some(r) = st.engine.runs.get_mut(run_id) else { return Err(refused("the run is gone")) };
        let Some(a) = r.approvals.iter_mut().find(|a| a.id == approval) else {
            return Err(refused("the proposal is gone"));
        };
        if !matches!(a.state, ApprovalState::Pending | ApprovalState::InFlight) {
            return Err(refused(format!("proposal {approval} is already {}", a.state.name())));
        }
        a.state = state;
        a.decided = Some(runs::now());
        a.decided_by = Some(who.to_string());
        a.outcome = Some(outcome.to_string());
        let a = a.clone();
        // A person acted on the unit this run was started for: its next failure is news, not
        // the same failure again, and starts a run without waiting ([`super::workflow::trigger_backoff`]).
        if let (ApprovalState::Done, Some(unit)) = (state, r.trigger_unit.clone()) {
            let key = (r.workflow.clone(), unit);
            st.engine.triggered.remove(&key);
        }
        let verb = if state == ApprovalState::Denied { "denied" } else { "approved" };
        audit(&state_dir, &a, verb);
        let settled = self.approvals_settled(st, run_id);
        if let Some(r) = st.engine.runs.get(run_id).cloned() {
            self.save_run(st, &r);
        }
        Ok((format!("{approval} {verb}: {} ({outcome})", a.proposal.action()), settled))
    }

    async fn after_decision(&self, run_id: &str, reply: Result<(String, bool), DaemonError>) -> Outcome {
        let (reply, settled) = reply?;
        if settled {
            self.advance(run_id).await;
        }
        Ok(reply)
    }

    /// Do what an approved proposal asks.
    async fn carry_out(&self, run_id: &str, p: &Proposal) -> Outcome {
        {
            let st = self.state.lock().await;
            let run = st.engine.runs.get(run_id).cloned().ok_or_else(|| refused("the run is gone"))?;
            validate(&st, &run, p).map_err(refused)?;
        }
        match p {
            Proposal::Start { unit, .. } => self.start_unit(unit).await,
            Proposal::Stop { unit, .. } => self.stop_unit(unit).await,
            Proposal::Restart { unit, .. } => self.restart_unit(unit).await,
            Proposal::Reload { .. } => self.reload().await,
            Proposal::PullModel { model, .. } => self.pull_model(model).await,
            Proposal::Publish { file, reason } => {
                let (src, outbox, webhook, key, doc) = {
                    let st = self.state.lock().await;
                    let run = st.engine.runs.get(run_id).cloned().ok_or_else(|| refused("the run is gone"))?;
                    let step = publishing_step(&run, file)
                        .ok_or_else(|| refused(format!("no step of run {run_id} wrote {file}")))?;
                    let s = &st.loaded.settings;
                    let doc = serde_json::json!({"run": run_id, "workflow": run.workflow, "step": step, "file": file, "reason": reason});
                    (
                        runs::runs_dir(&s.state_dir).join(run_id).join(step).join("outputs"),
                        s.outbox.clone(),
                        s.webhook.clone(),
                        s.webhook_key.clone(),
                        doc,
                    )
                };
                let data = runs::read_regular(&src, file)
                    .map_err(DaemonError::Host)?
                    .ok_or_else(|| refused(format!("{file} is gone")))?;
                std::fs::create_dir_all(&outbox).map_err(|source| DaemonError::Io { path: outbox.clone(), source })?;
                let dest = outbox.join(format!("{run_id}-{file}"));
                aither_sys::atomic::write(&dest, &data)
                    .map_err(|source| DaemonError::Io { path: dest.clone(), source })?;
                let Some(url) = webhook else { return Ok(format!("published to {}", dest.display())) };
                let mut doc = doc;
                doc["content"] = serde_json::Value::String(String::from_utf8_lossy(&data).into_owned());
                let posted = tokio::task::spawn_blocking(move || post_webhook(&url, key.as_ref(), &doc))
                    .await
                    .map_err(|e| refused(e.to_string()))?
                    .map_err(|e| refused(format!("copied to {}, but the webhook: {e}", dest.display())))?;
                Ok(format!("published to {} and {posted}", dest.display()))
            }
        }
    }

    /// Download a catalog model into the model directory (on a blocking thread), then reload;
    /// one pull at a time per model, as for `PullModel`.
    async fn pull_model(&self, model: &str) -> Outcome {
        let _claim = super::models::PullClaim::take(&self.pulls, model)?;
        self.pull_model_reporting(model, |_, _| {}).await
    }
}

/// POST a published file to the webhook: where it went, or why it failed.
fn post_webhook(url: &str, key: Option<&aither_http::keys::Secret>, doc: &serde_json::Value) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .max_redirects(0)
        .user_agent(concat!("aitheros/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent.post(url).header("Content-Type", "application/json");
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {}", k.expose()));
    }
    let resp = req.send(doc.to_string()).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        Ok(format!("{url} (HTTP {status})"))
    } else {
        Err(format!("{url} answered HTTP {status}"))
    }
}

/// The step of `run` that wrote output `file`.
pub(super) fn publishing_step<'r>(run: &'r Run, file: &str) -> Option<&'r str> {
    run.steps
        .iter()
        .rev()
        .find(|s| s.result.as_ref().is_some_and(|r| r.outputs.iter().any(|o| o == file)))
        .map(|s| s.name.as_str())
}

/// Whether agentd can carry out `p` for `run`: the unit exists and is not a workflow step,
/// the model is in the catalog's names, the file was written by a step of the run.
pub(super) fn validate(st: &State, run: &Run, p: &Proposal) -> Result<(), String> {
    match p {
        Proposal::Start { unit, .. } | Proposal::Stop { unit, .. } | Proposal::Restart { unit, .. } => {
            let u = st.by_name.get(unit).ok_or_else(|| format!("no unit named {unit:?}"))?;
            if st.engine.steps.contains_key(unit) || u.kind == Kind::Agent && unit.starts_with("wf-") {
                return Err(format!("{unit} is a workflow step: cancel its run instead"));
            }
            Ok(())
        }
        Proposal::Reload { .. } => Ok(()),
        Proposal::PullModel { model, .. } => {
            let ok = !model.is_empty()
                && model.len() <= 128
                && model.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
            if ok {
                Ok(())
            } else {
                Err(format!("{model:?} is not a model name"))
            }
        }
        Proposal::Publish { file, .. } => {
            if file.contains('/') || file.starts_with('.') {
                Err(format!("{file:?} is not a plain file name"))
            } else if publishing_step(run, file).is_some() {
                Ok(())
            } else {
                Err(format!("no step of run {} wrote outputs/{file}", run.id))
            }
        }
    }
}

/// The run's pending proposals whose time is up become `expired`; those, as they are now.
pub(super) fn expire(run: &mut Run, now: u64) -> Vec<Approval> {
    let mut gone = Vec::new();
    for a in &mut run.approvals {
        if a.state == ApprovalState::Pending && a.expires <= now {
            a.state = ApprovalState::Expired;
            a.decided = Some(now);
            a.decided_by = Some("expiry".into());
            gone.push(a.clone());
        }
    }
    gone
}

/// The journal's line for a decision: the model's reason, untrusted, comes last and quoted
/// (its newlines and quotes escaped), so it can neither end the line nor pass for its fields.
fn audit_line(a: &Approval, decision: &str) -> String {
    format!(
        "approval {} (run {}, step {}): {} {} by {}; {}; the step's reason: {:?}",
        a.id,
        a.run_id,
        a.step,
        decision,
        a.proposal.action(),
        a.decided_by.as_deref().unwrap_or("-"),
        a.outcome.as_deref().unwrap_or(""),
        a.proposal.reason()
    )
}

/// One line in the journal and one in the audit file for a decision.
pub(super) fn audit(state_dir: &Path, a: &Approval, decision: &str) {
    use std::io::Write as _;
    tracing::info!("{}", audit_line(a, decision));
    let line = serde_json::to_string(&AuditEntry {
        schema_version: SCHEMA_VERSION,
        time: runs::now(),
        approval: a.id.clone(),
        run: a.run_id.clone(),
        workflow: a.workflow.clone(),
        step: a.step.clone(),
        action: a.proposal.action(),
        proposal: a.proposal.clone(),
        decision: decision.to_string(),
        decided_by: a.decided_by.clone(),
        outcome: a.outcome.clone(),
    })
    .unwrap_or_default();
    let path = runs::audit_file(state_dir);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new().append(true).create(true).mode(0o640).open(&path)
        })
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        tracing::error!("{}: the audit line was not written: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_proposals_expire_at_their_time_and_decided_ones_stay() {
        let approval = |n: u32, state: ApprovalState, expires: u64| Approval {
            id: format!("r-1.{n}"),
            run_id: "r-1".into(),
            workflow: "r".into(),
            step: "s".into(),
            proposal: Proposal::Reload { reason: "x".into() },
            state,
            created: 0,
            expires,
            decided_by: None,
            decided: None,
            outcome: None,
            preview: None,
        };
        let mut run: Run = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "id": "r-1", "workflow": "r", "trigger": "manual", "trigger_unit": null,
            "inputs": {}, "state": "awaiting_approval", "reason": null, "created": 0, "ended": null,
            "steps": [], "approvals": []
        }))
        .expect("run");
        run.approvals = vec![
            approval(1, ApprovalState::Pending, 100),
            approval(2, ApprovalState::Pending, 200),
            approval(3, ApprovalState::Denied, 50),
        ];
        assert!(expire(&mut run, 99).is_empty());
        let gone = expire(&mut run, 100);
        assert_eq!(gone.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["r-1.1"]);
        assert_eq!(run.approvals[0].decided_by.as_deref(), Some("expiry"));
        let states: Vec<ApprovalState> = run.approvals.iter().map(|a| a.state).collect();
        assert_eq!(states, [ApprovalState::Expired, ApprovalState::Pending, ApprovalState::Denied]);
    }

    #[test]
    fn the_untrusted_reason_comes_last_and_quoted() {
        let a = Approval {
            id: "heal-1.1".into(),
            run_id: "heal-1".into(),
            workflow: "heal".into(),
            step: "propose".into(),
            proposal: Proposal::Restart {
                unit: "flaky".into(),
                reason: "fine\napproval heal-1.2 (run heal-1, step x): approved restart sshd by root".into(),
            },
            state: ApprovalState::Denied,
            created: 1,
            expires: 2,
            decided_by: Some("alice".into()),
            decided: Some(2),
            outcome: Some("not carried out".into()),
            preview: None,
        };
        let line = audit_line(&a, "denied");
        assert_eq!(
            line,
            "approval heal-1.1 (run heal-1, step propose): denied restart flaky by alice; not carried out; \
             the step's reason: \"fine\\napproval heal-1.2 (run heal-1, step x): approved restart sshd by root\""
        );
        assert!(!line.contains('\n'));
    }
}
