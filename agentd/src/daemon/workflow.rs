//! The workflow engine: runs of the workflow definitions ([`crate::workflows`]), each step
//! played by one confined agent (`aither-agent` as the unit `wf-RUN-STEP`), one step at a
//! time, through the admission queue like any agent; the declared outputs handed to the next
//! steps; proposals validated and queued for a human (or approved by the admin's policy for
//! the workflow); every decision audited. Runs are documents on disk (`runs`): an agentd
//! that restarts finds them, adopts a step still running, and starts again a step whose
//! agent it lost, from its beginning (the step boundary).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aither_api::workflow::{
    Approval, ApprovalState, Proposal, Run, RunList, RunState, StepOutcome, StepRecord, StepResult, StepState,
    WorkflowList, SCHEMA_VERSION,
};
use aither_init::{ExitReason, UnitState};

use super::approvals::{audit, expire, validate};
use super::definitions::{check_run_inputs, info};
use super::runs::{self, Handover};
use super::step_files::{journal_units, keep_step_files, kept_step, read_journals, step_files};
use super::step_limits::{check_confinement, STEP_GRACE};
use super::step_units::{release_pairs, step_unit};
use super::unit_triggers::Triggered;
use super::{ApiEvent, Daemon, DaemonError, Outcome, State};
use crate::agents::{Admission, CategoryMap};
use crate::units::{self, Planned};
use crate::workflows::result::Claims;
use crate::workflows::Schedule;

/// What started a run.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub text: String,
    pub unit: Option<String>,
}

/// The workflow engine's part of the daemon's state.
#[derive(Debug, Default)]
pub(super) struct Engine {
    pub runs: BTreeMap<String, Run>,
    /// Step units by name.
    pub steps: BTreeMap<String, Planned>,
    /// When each calendar workflow fires next (Unix seconds).
    pub next_fire: BTreeMap<String, u64>,
    /// When each running step's unit is stopped: its budget's seconds and [`STEP_GRACE`] after
    /// its agent started.
    pub deadlines: BTreeMap<String, Instant>,
    /// The step units stopped at their deadline, until their end is collected.
    pub timed_out: BTreeSet<String>,
    /// The step units stopped for going past their workspace's bound, with why, until their
    /// end is collected.
    pub over_bound: BTreeMap<String, String>,
    /// When each (workflow, unit) pair last started a run on the unit's failure, and how many
    /// times in a row ([`trigger_backoff`]).
    pub triggered: BTreeMap<(String, String), Triggered>,
}

pub(super) fn refused(why: impl Into<String>) -> DaemonError {
    DaemonError::Refused(anyhow::anyhow!(why.into()))
}

impl Daemon {
    fn runs_dir(st: &State) -> PathBuf {
        runs::runs_dir(&st.loaded.settings.state_dir)
    }

    pub async fn workflow_list(&self) -> WorkflowList {
        let st = self.state.lock().await;
        WorkflowList {
            schema_version: SCHEMA_VERSION,
            workflows: st.loaded.workflows.values().map(|w| info(&st.loaded, w)).collect(),
            errors: st.loaded.workflow_errors.clone(),
        }
    }

    pub async fn run_list(&self) -> RunList {
        let st = self.state.lock().await;
        let mut runs: Vec<Run> = st.engine.runs.values().cloned().collect();
        runs.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
        RunList { schema_version: SCHEMA_VERSION, runs }
    }

    pub async fn get_run(&self, id: &str) -> Result<Run, DaemonError> {
        let st = self.state.lock().await;
        st.engine.runs.get(id).cloned().ok_or_else(|| refused(format!("no run {id:?}")))
    }

    /// Start a run of `name`. `manual`: asked for by a person (the workflow must allow it).
    pub async fn run_workflow(
        &self,
        name: &str,
        inputs: BTreeMap<String, String>,
        trigger: Trigger,
        manual: bool,
    ) -> Result<Run, DaemonError> {
        let id = {
            let mut st = self.state.lock().await;
            let w = st.loaded.workflows.get(name).ok_or_else(|| {
                let known: Vec<&str> = st.loaded.workflows.keys().map(String::as_str).collect();
                refused(format!(
                    "no workflow {name:?} (there are: {})",
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ))
            })?;
            if manual && !w.triggers.manual {
                return Err(refused(format!("{name} is not run by hand (its [trigger] has manual = false)")));
            }
            if !st.loaded.switches.is_on(w) {
                return Err(refused(format!("{name} is disabled: `aitherctl workflows enable {name}` turns it on")));
            }
            let inputs = check_run_inputs(w, inputs, &st.loaded.settings.input_dirs, st.loaded.host.dev)
                .map_err(|p| refused(format!("{name}: {p}")))?;
            let trigger_unit = trigger.unit.clone().or_else(|| inputs.get("unit").cloned());
            if let Some(u) = &trigger_unit {
                if !st.by_name.contains_key(u) {
                    return Err(refused(format!("input unit: no unit named {u:?}")));
                }
            }
            let id = runs::issue_id(&Self::runs_dir(&st), &st.engine.runs, name)
                .map_err(|e| refused(format!("cannot give the run an id: {e:#}")))?;
            let run = Run {
                schema_version: SCHEMA_VERSION,
                id: id.clone(),
                workflow: name.to_string(),
                trigger: trigger.text.clone(),
                trigger_unit,
                inputs,
                state: RunState::Running,
                reason: None,
                created: runs::now(),
                ended: None,
                steps: w
                    .steps
                    .iter()
                    .map(|s| StepRecord {
                        name: s.name.clone(),
                        state: StepState::Pending,
                        unit: None,
                        started: None,
                        ended: None,
                        result: None,
                        error: None,
                        attempts: 0,
                    })
                    .collect(),
                approvals: Vec::new(),
            };
            let dir = Self::runs_dir(&st);
            runs::save(&dir, &run).map_err(DaemonError::Host)?;
            tracing::info!("workflow run {id}: started ({})", trigger.text);
            st.engine.runs.insert(id.clone(), run);
            let mut runs_map = std::mem::take(&mut st.engine.runs);
            runs::prune(&dir, &mut runs_map);
            st.engine.runs = runs_map;
            id
        };
        self.advance(&id).await;
        self.get_run(&id).await
    }

    /// Start the run's next pending step, or finish the run.
    pub(super) async fn advance(&self, id: &str) {
        // The units' states, for a `status` input (asked before the state lock is taken).
        let units = self.sup.status().await.unwrap_or_default();
        let confinement = self.confinement();
        // The journals the next step reads, read before the state lock is taken.
        let (wanted, runtime_dir) = {
            let st = self.state.lock().await;
            let next = st.engine.runs.get(id).and_then(|r| {
                let index = r.steps.iter().position(|s| s.state == StepState::Pending)?;
                Some(journal_units(st.loaded.workflows.get(&r.workflow)?, index, r))
            });
            let wanted: Vec<(String, Vec<String>)> = next
                .unwrap_or_default()
                .into_iter()
                .map(|u| {
                    let matches = st.by_name.get(&u).map(super::journal_matches).unwrap_or_default();
                    (u, matches)
                })
                .collect();
            (wanted, st.loaded.host.dev.then(|| st.loaded.settings.runtime_dir.clone()))
        };
        let journals = if wanted.is_empty() {
            BTreeMap::new()
        } else {
            tokio::task::spawn_blocking(move || read_journals(&wanted, runtime_dir.as_deref()))
                .await
                .unwrap_or_default()
        };
        let start = {
            let mut st = self.state.lock().await;
            let Some(run) = st.engine.runs.get(id).cloned() else { return };
            if run.state != RunState::Running || run.steps.iter().any(|s| s.state == StepState::Running) {
                return;
            }
            let pending = run.approvals.iter().any(|a| a.state.undecided());
            let Some(index) = run.steps.iter().position(|s| s.state == StepState::Pending) else {
                let state = if pending { RunState::AwaitingApproval } else { RunState::Completed };
                self.finish(&mut st, id, state, None);
                return;
            };
            // A step that reads the decisions waits for them ([`Daemon::approvals_settled`]
            // goes on).
            let waits = st.loaded.workflows.get(&run.workflow).is_some_and(|w| w.waits_for_approvals(index));
            if pending && waits {
                tracing::info!("workflow run {id}: step {} waits for the proposals' decisions", run.steps[index].name);
                self.finish(&mut st, id, RunState::AwaitingApproval, None);
                return;
            }
            match self.prepare_step(&mut st, &run, index, &units, &journals, confinement) {
                Ok(unit) => Some(unit),
                Err(why) => {
                    let step = run.steps[index].name.clone();
                    if let Some(r) = st.engine.runs.get_mut(id) {
                        r.steps[index].state = StepState::Failed;
                        r.steps[index].error = Some(why.clone());
                        r.steps[index].ended = Some(runs::now());
                    }
                    self.finish(&mut st, id, RunState::Failed, Some(format!("step {step}: {why}")));
                    None
                }
            }
        };
        if let Some(unit) = start {
            self.start_step_unit(id, &unit).await;
        }
    }

    /// Stage the workspace of step `index` and add its unit; the unit's name.
    fn prepare_step(
        &self,
        st: &mut State,
        run: &Run,
        index: usize,
        units: &[aither_init::UnitStatus],
        journals: &BTreeMap<String, String>,
        confinement: aither_api::agentd::Confinement,
    ) -> Result<String, String> {
        let w = st
            .loaded
            .workflows
            .get(&run.workflow)
            .cloned()
            .ok_or_else(|| format!("the workflow {} is no longer defined", run.workflow))?;
        let step = w.steps.get(index).ok_or_else(|| "the workflow changed: the step is gone".to_string())?;
        check_confinement(step, confinement, st.loaded.settings.allow_unconfined_steps)?;
        let unit = runs::step_unit(&run.id, &step.name);
        let pair = st.loaded.mcs.pair_for(&unit).ok_or_else(|| "every MCS category pair is taken".to_string())?;
        crate::agents::CategoryMap::save(&st.loaded.mcs, &super::load::mcs_file(&st.loaded.settings))
            .map_err(|e| e.to_string())?;
        let workspace = units::workspace(&st.loaded.settings.state_dir, &unit);
        let files = step_files(st, run, &w, index, units, journals)?;
        let handover = Handover {
            owner: match st.loaded.host.agent_user {
                units::RunAs::User { uid, gid } => Some((uid, gid)),
                _ => None,
            },
            context: st
                .loaded
                .host
                .selinux
                .then(|| format!("system_u:object_r:aither_agent_workspace_t:{}", CategoryMap::level(pair))),
        };
        runs::stage(&workspace, &files, &handover).map_err(|e| format!("{e:#}"))?;
        let planned = step_unit(&st.loaded, run, &w, index, &unit, pair);
        if let Some(why) = &planned.blocked {
            return Err(why.clone());
        }
        st.by_name.insert(unit.clone(), planned.clone());
        st.engine.steps.insert(unit.clone(), planned);
        if let Some(r) = st.engine.runs.get_mut(&run.id) {
            let s = &mut r.steps[index];
            s.state = StepState::Running;
            s.unit = Some(unit.clone());
            s.started = Some(runs::now());
            s.attempts += 1;
            let r = r.clone();
            self.save_run(st, &r);
        }
        Ok(unit)
    }

    /// Add a step's unit to the engine and start it through admission.
    async fn start_step_unit(&self, id: &str, unit: &str) {
        let spec = {
            let st = self.state.lock().await;
            st.engine.steps.get(unit).map(|p| p.spec.clone())
        };
        let Some(spec) = spec else { return };
        if let Err(e) = self.sup.add(spec).await {
            self.step_failed_to_start(id, unit, &e.to_string()).await;
            return;
        }
        let queued = {
            let mut st = self.state.lock().await;
            matches!(st.admission.request(unit), Admission::Queued { .. })
        };
        if queued {
            tracing::info!("{unit}: waiting for an agent slot");
            return;
        }
        if let Err(e) = self.sup.start(unit).await {
            self.step_failed_to_start(id, unit, &e.to_string()).await;
        }
    }

    async fn step_failed_to_start(&self, id: &str, unit: &str, why: &str) {
        tracing::warn!("{unit}: cannot start: {why}");
        let mut st = self.state.lock().await;
        if let Some(r) = st.engine.runs.get_mut(id) {
            if let Some(s) = r.steps.iter_mut().find(|s| s.unit.as_deref() == Some(unit)) {
                s.state = StepState::Failed;
                s.error = Some(format!("its agent could not start: {why}"));
                s.ended = Some(runs::now());
            }
        }
        let step = unit.to_string();
        self.finish(&mut st, id, RunState::Failed, Some(format!("{step}: its agent could not start: {why}")));
        drop(st);
        self.drop_step_unit(unit).await;
    }

    /// A step's unit ended (its `Exited` event): take its workspace back, keep its result and
    /// outputs, queue its proposals, free its slot. Its run, for the caller to go on with
    /// (the proposals its policy approves, then the next step).
    pub(super) async fn step_ended(&self, unit: &str, reason: &ExitReason) -> Option<String> {
        let id = {
            let mut st = self.state.lock().await;
            let id = st
                .engine
                .runs
                .values()
                .find(|r| r.steps.iter().any(|s| s.unit.as_deref() == Some(unit) && s.state == StepState::Running))
                .map(|r| r.id.clone())?;
            self.collect_step(&mut st, &id, unit, Some(reason));
            id
        };
        self.drop_step_unit(unit).await;
        Some(id)
    }

    /// Read what the step's agent left and record it in the run.
    fn collect_step(&self, st: &mut State, id: &str, unit: &str, reason: Option<&ExitReason>) {
        let settings = st.loaded.settings.clone();
        let ws = units::workspace(&settings.state_dir, unit);
        let Some(run) = st.engine.runs.get(id).cloned() else { return };
        let Some(index) = run.steps.iter().position(|s| s.unit.as_deref() == Some(unit)) else { return };
        let step_dir = runs::runs_dir(&settings.state_dir).join(id).join(&run.steps[index].name);
        let timed_out = st.engine.timed_out.remove(unit);
        let over_bound = st.engine.over_bound.remove(unit);
        st.engine.deadlines.remove(unit);
        // The step as its workflow defines it now: what its result may claim.
        let step_def = st.loaded.workflows.get(&run.workflow).and_then(|w| w.steps.get(index)).cloned();
        let declared = step_def.as_ref().map(|d| d.outputs.clone()).unwrap_or_default();
        let taken = runs::reclaim(&ws).and_then(|()| keep_step_files(&ws, &step_dir, &declared));
        let result: Result<StepResult, String> = match (taken, &step_def) {
            (_, None) => {
                Err(format!("the workflow {} no longer defines this step: its result is not read", run.workflow))
            }
            (_, Some(_)) if over_bound.is_some() => Err(format!(
                "stopped: its workspace went past its bound: {}",
                over_bound.as_deref().unwrap_or_default()
            )),
            (_, Some(def)) if timed_out => Err(format!(
                "timed out: its agent ran past its budget's {} s and a grace of {} s, and was stopped",
                def.budget.seconds,
                STEP_GRACE.as_secs()
            )),
            (Err(e), _) => Err(format!("its workspace could not be taken back: {e:#}")),
            (Ok(None), _) => Err(match reason {
                Some(r) => format!("its agent left no result ({})", super::reason_text(r)),
                None => "its agent left no result".into(),
            }),
            (Ok(Some(bytes)), Some(def)) => {
                // agentd's own record of the step's context, never what its result claims.
                let context = st.engine.steps.get(unit).and_then(|p| p.spec.selinux_context.clone());
                let act_on = st
                    .loaded
                    .workflows
                    .get(&run.workflow)
                    .map(|w| crate::workflows::act_on(w, &run))
                    .unwrap_or_default();
                let claims = Claims { run_id: id, step: def, act_on: &act_on, context: context.as_deref() };
                crate::workflows::result::vet(&bytes, &claims).map(|v| {
                    if !v.cut.is_empty() {
                        tracing::warn!("workflow run {id}: step {}'s result was cut: {}", def.name, v.cut.join("; "));
                    }
                    v.result
                })
            }
        };
        if let Ok(r) = &result {
            let path = step_dir.join("result.json");
            let bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
            if let Err(e) = aither_sys::atomic::write(&path, &bytes) {
                tracing::warn!("cannot write {}: {e}", path.display());
            }
        }
        let now = runs::now();
        let cancelled = run.state == RunState::Cancelled;
        let expires = now + settings.approval_hours * 3600;
        let Some(r) = st.engine.runs.get_mut(id) else { return };
        let s = &mut r.steps[index];
        s.ended = Some(now);
        let mut failure = None;
        match result {
            Ok(result) => {
                s.state = if cancelled { StepState::Cancelled } else { StepState::Done };
                match &result.outcome {
                    StepOutcome::Completed => {}
                    StepOutcome::BudgetExhausted { budget } => {
                        failure = Some(format!("step {} ran out of its {budget} budget", s.name))
                    }
                    StepOutcome::Failed { reason } => failure = Some(format!("step {}: {reason}", s.name)),
                }
                let step = s.name.clone();
                let proposals = if cancelled { Vec::new() } else { result.proposals.clone() };
                s.result = Some(result);
                for p in proposals {
                    let n = r.approvals.len() + 1;
                    r.approvals.push(Approval {
                        id: format!("{id}.{n}"),
                        run_id: id.to_string(),
                        workflow: r.workflow.clone(),
                        step: step.clone(),
                        proposal: p,
                        state: ApprovalState::Pending,
                        created: now,
                        expires,
                        decided_by: None,
                        decided: None,
                        outcome: None,
                        preview: None,
                    });
                }
            }
            Err(why) => {
                s.state = match (cancelled, timed_out) {
                    (true, _) => StepState::Cancelled,
                    (false, true) => StepState::TimedOut,
                    (false, false) => StepState::Failed,
                };
                failure = Some(format!("step {}: {why}", s.name));
                s.error = Some(why);
            }
        }
        tracing::info!("workflow run {id}: step {} is {}", r.steps[index].name, r.steps[index].state.name());
        // This step's proposals that agentd cannot carry out are refused now, not put before
        // a human.
        let step_name = r.steps[index].name.clone();
        let pending: Vec<usize> = r
            .approvals
            .iter()
            .enumerate()
            .filter(|(_, a)| a.state == ApprovalState::Pending && a.step == step_name)
            .map(|(i, _)| i)
            .collect();
        // What a publish would send, shown where it is decided.
        let runs_dir = runs::runs_dir(&settings.state_dir).join(id);
        for &i in &pending {
            if let Proposal::Publish { file, .. } = &r.approvals[i].proposal {
                let data = super::approvals::publishing_step(r, file)
                    .and_then(|step| runs::read_regular(&runs_dir.join(step).join("outputs"), file).ok().flatten());
                r.approvals[i].preview = data.as_deref().map(aither_api::workflow::Preview::of);
            }
        }
        let run_copy = r.clone();
        for i in pending {
            if let Err(why) = validate(st, &run_copy, &run_copy.approvals[i].proposal) {
                if let Some(a) = st.engine.runs.get_mut(id).map(|r| &mut r.approvals[i]) {
                    a.state = ApprovalState::Failed;
                    a.decided = Some(now);
                    a.decided_by = Some("agentd".into());
                    a.outcome = Some(format!("refused: {why}"));
                    let a = a.clone();
                    audit(&settings.state_dir, &a, "refused");
                }
            }
        }
        if let Some(why) = failure.filter(|_| !cancelled) {
            self.finish(st, id, RunState::Failed, Some(why));
        } else if let Some(r) = st.engine.runs.get(id).cloned() {
            self.save_run(st, &r);
        }
    }

    /// Remove a step's unit from the engine and its workspace from disk.
    async fn drop_step_unit(&self, unit: &str) {
        let (ws, next) = {
            let mut st = self.state.lock().await;
            st.engine.steps.remove(unit);
            st.by_name.remove(unit);
            let next = st.admission.release(unit);
            // The step's category pair stays reserved until its run is over: the steps of a
            // run never share a pair ([`Daemon::finish`] frees them).
            (units::workspace(&st.loaded.settings.state_dir, unit), next)
        };
        self.admit(next).await;
        if let Err(e) = self.sup.remove(unit).await {
            tracing::debug!("{unit}: {e}");
        }
        if ws.symlink_metadata().is_ok() {
            if let Err(e) = runs::remove(&ws) {
                tracing::warn!("{unit}: the workspace stays: {e:#}");
            }
        }
    }

    /// Set a run's final (or awaiting) state and save it.
    pub(super) fn finish(&self, st: &mut State, id: &str, state: RunState, reason: Option<String>) {
        let Some(r) = st.engine.runs.get_mut(id) else { return };
        r.state = state;
        if reason.is_some() {
            r.reason = reason;
        }
        if state.is_final() {
            r.ended = Some(runs::now());
            for s in &mut r.steps {
                if s.state == StepState::Pending {
                    s.state = StepState::Cancelled;
                }
            }
        }
        let r = r.clone();
        if state.is_final() {
            // Its steps' category pairs are free again (their workspaces are gone), but for a
            // step still being stopped.
            release_pairs(&mut st.loaded.mcs, &r);
            let _ = st.loaded.mcs.save(&super::load::mcs_file(&st.loaded.settings));
        }
        match &r.reason {
            Some(why) => tracing::info!("workflow run {id}: {}: {why}", state.name()),
            None => tracing::info!("workflow run {id}: {}", state.name()),
        }
        self.save_run(st, &r);
    }

    /// A run waiting on its proposals whose last one was just decided goes on: it is marked
    /// running again, and the caller advances it (its next step, or its end). Whether it did.
    pub(super) fn approvals_settled(&self, st: &mut State, id: &str) -> bool {
        let Some(r) = st.engine.runs.get_mut(id) else { return false };
        if r.state != RunState::AwaitingApproval || r.approvals.iter().any(|a| a.state.undecided()) {
            return false;
        }
        r.state = RunState::Running;
        true
    }

    pub(super) fn save_run(&self, st: &State, run: &Run) {
        if let Err(e) = runs::save(&Self::runs_dir(st), run) {
            tracing::error!("workflow run {}: not saved: {e:#}", run.id);
        }
        let _ = self.api_events.send(ApiEvent::Run { id: run.id.clone(), state: run.state.name().into() });
        // New proposals, and the ones decided just now.
        let now = runs::now();
        for a in run.approvals.iter().filter(|a| a.decided.is_none_or(|d| d + 1 >= now)) {
            let _ = self.api_events.send(ApiEvent::Approval {
                id: a.id.clone(),
                state: a.state.name().into(),
                action: a.proposal.action(),
            });
        }
    }

    /// A step's transcript (`transcript.jsonl`, at most its last 4 MiB): the copy kept
    /// with the run, or the live one of a step still running.
    pub async fn run_log(&self, id: &str, step: &str) -> Result<String, DaemonError> {
        let (kept, live) = {
            let st = self.state.lock().await;
            let (s, kept) = kept_step(&st, id, step)?;
            let live = (s.state == StepState::Running)
                .then(|| s.unit.as_ref().map(|u| units::workspace(&st.loaded.settings.state_dir, u)))
                .flatten();
            (kept, live)
        };
        // A running step's workspace is its agent's: agentd reads it through its label's
        // permissions only where the owner lets it; the kept copy is agentd's own.
        let data = match live.map(|ws| runs::read_regular(&ws, "transcript.jsonl")) {
            Some(Ok(Some(d))) => d,
            _ => runs::read_regular(&kept, "transcript.jsonl").map_err(DaemonError::Host)?.unwrap_or_default(),
        };
        let start = data.len().saturating_sub(4 * 1024 * 1024);
        Ok(String::from_utf8_lossy(&data[start..]).into_owned())
    }

    /// Cancel a run: its running step is stopped, its pending proposals withdrawn.
    pub async fn cancel_run(&self, id: &str) -> Outcome {
        let unit = {
            let mut st = self.state.lock().await;
            let run = st.engine.runs.get(id).cloned().ok_or_else(|| refused(format!("no run {id:?}")))?;
            if run.state.is_final() {
                return Err(refused(format!("run {id} is already {}", run.state.name())));
            }
            let now = runs::now();
            let state_dir = st.loaded.settings.state_dir.clone();
            if let Some(r) = st.engine.runs.get_mut(id) {
                for a in &mut r.approvals {
                    if a.state == ApprovalState::Pending {
                        a.state = ApprovalState::Withdrawn;
                        a.decided = Some(now);
                        a.decided_by = Some("cancelled".into());
                        audit(&state_dir, a, "withdrawn");
                    }
                }
            }
            let unit = run.steps.iter().find(|s| s.state == StepState::Running).and_then(|s| s.unit.clone());
            if let Some(u) = &unit {
                st.admission.waiting.retain(|w| w != u);
            }
            self.finish(&mut st, id, RunState::Cancelled, Some("cancelled".into()));
            unit
        };
        if let Some(u) = unit {
            // Its end comes as an event: the step is recorded cancelled and cleaned up then.
            let up = self
                .sup
                .status()
                .await
                .ok()
                .and_then(|s| s.into_iter().find(|x| x.name == u))
                .is_some_and(|x| x.state.pid().is_some());
            if up {
                self.sup.stop(&u).await?;
            } else {
                let mut st = self.state.lock().await;
                self.collect_step(&mut st, id, &u, None);
                drop(st);
                self.drop_step_unit(&u).await;
            }
        }
        Ok(format!("run {id} cancelled"))
    }

    /// Every 30 s: proposals past their time expire, calendar workflows whose time has come
    /// start (one run at a time per workflow).
    pub async fn workflow_tick(&self) {
        let now = runs::now();
        let mut settled = Vec::new();
        let due: Vec<String> = {
            let mut st = self.state.lock().await;
            let state_dir = st.loaded.settings.state_dir.clone();
            let mut changed = Vec::new();
            for r in st.engine.runs.values_mut() {
                for a in expire(r, now) {
                    audit(&state_dir, &a, "expired");
                    changed.push(r.id.clone());
                }
            }
            for id in changed {
                if !self.approvals_settled(&mut st, &id) {
                    if let Some(r) = st.engine.runs.get(&id).cloned() {
                        self.save_run(&st, &r);
                    }
                } else {
                    settled.push(id);
                }
            }
            let schedules: Vec<(String, Schedule)> = st
                .loaded
                .workflows
                .values()
                .filter(|w| st.loaded.switches.is_on(w))
                .filter_map(|w| w.triggers.calendar.map(|c| (w.name.clone(), c)))
                .collect();
            let mut due = Vec::new();
            for (name, schedule) in schedules {
                let next = *st.engine.next_fire.entry(name.clone()).or_insert_with(|| schedule.next_after(now));
                if now >= next {
                    st.engine.next_fire.insert(name.clone(), schedule.next_after(now));
                    if !st.engine.runs.values().any(|r| r.workflow == name && !r.state.is_final()) {
                        due.push(name);
                    }
                }
            }
            due
        };
        for id in settled {
            self.advance(&id).await;
        }
        for name in due {
            let trigger = Trigger { text: "calendar".into(), unit: None };
            if let Err(e) = self.run_workflow(&name, BTreeMap::new(), trigger, false).await {
                tracing::warn!("workflow {name}: the calendar run did not start: {e}");
            }
        }
    }

    /// After a start: the runs on disk, their running steps adopted or started again.
    pub(super) async fn resume_runs(&self) {
        let (lost, adopted): (Vec<(String, String)>, Vec<String>) = {
            let st = self.state.lock().await;
            let mut lost = Vec::new();
            let mut adopted = Vec::new();
            for r in st.engine.runs.values().filter(|r| r.state == RunState::Running) {
                for s in r.steps.iter().filter(|s| s.state == StepState::Running) {
                    if let Some(u) = &s.unit {
                        if st.engine.steps.contains_key(u) {
                            adopted.push(u.clone());
                        }
                        lost.push((r.id.clone(), u.clone()));
                    }
                }
            }
            (lost, adopted)
        };
        let status = self.sup.status().await.unwrap_or_default();
        for (id, unit) in lost {
            let up = status.iter().find(|s| s.name == unit).is_some_and(|s| s.state.pid().is_some());
            if up && adopted.contains(&unit) {
                tracing::info!("workflow run {id}: {unit} still runs: adopted");
                self.state.lock().await.admission.running.insert(unit);
                continue;
            }
            let ws = {
                let st = self.state.lock().await;
                units::workspace(&st.loaded.settings.state_dir, &unit)
            };
            let finished =
                runs::reclaim(&ws).ok().and_then(|()| runs::read_regular(&ws, "result.json").ok().flatten()).is_some();
            if finished {
                tracing::info!("workflow run {id}: {unit} ended while agentd was away: taking its result");
                let mut st = self.state.lock().await;
                self.collect_step(&mut st, &id, &unit, None);
                drop(st);
                self.drop_step_unit(&unit).await;
                self.run_approved_by_policy(&id).await;
                self.advance(&id).await;
            } else {
                tracing::info!("workflow run {id}: {unit} was lost with agentd: the step starts again");
                kill_leftover(&unit);
                self.drop_step_unit(&unit).await;
                {
                    let mut st = self.state.lock().await;
                    if let Some(r) = st.engine.runs.get_mut(&id) {
                        if let Some(s) = r.steps.iter_mut().find(|s| s.unit.as_deref() == Some(unit.as_str())) {
                            s.state = StepState::Pending;
                        }
                    }
                }
                self.advance(&id).await;
            }
        }
        for r in self.run_list().await.runs.into_iter().filter(|r| r.state == RunState::Running) {
            self.advance(&r.id).await;
        }
    }
}

/// A step's agent that outlived agentd without being recorded (agentd died within the state
/// file's write delay of starting it): found by its session and `AITHER_UNIT`, and killed
/// with its process group before the step starts again. Where agentd may not read the
/// process's environment (another user, no CAP_SYS_PTRACE) it is not found; its cgroup and
/// its budget's deadline still bound it, and its result is never taken.
fn kill_leftover(unit: &str) {
    let uid = rustix::process::geteuid();
    let found = aither_init::recover::scan(Path::new("/proc"), &[unit], (!uid.is_root()).then(|| uid.as_raw()));
    if let Some(f) = found.get(unit) {
        if let Some(pid) = rustix::process::Pid::from_raw(f.pid) {
            tracing::warn!("{unit}: its agent (pid {}) outlived agentd unrecorded: killed", f.pid);
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// How often [`Daemon::workflow_tick`] runs.
pub const TICK: Duration = Duration::from_secs(30);

/// Whether an engine event ends a step's agent.
pub(super) fn ends_step(state: &UnitState) -> Option<&ExitReason> {
    match state {
        UnitState::Exited { reason } => Some(reason),
        _ => None,
    }
}
