//! What a workflow step is given and what is kept of it: the files of its workspace
//! (`step.json` and its inputs: earlier steps' outputs, agentd's status, a unit's journal, a
//! directory's files), and, when it ends, its result, transcript and declared outputs.

use std::path::Path;
use std::process::Command;

use aither_api::workflow::Run;
use aither_init::UnitStatus;
use aither_sys::command;

use super::runs::{self, Staged};
use super::workflow::refused;
use super::{Daemon, DaemonError, State};
use crate::units;
use crate::workflows::{DirectoryOf, Input, Workflow};

/// The most files and bytes a `directory` input gives a step.
const DIRECTORY_FILES: usize = 1000;
const DIRECTORY_BYTES: u64 = 64 * 1024 * 1024;
/// The lines of a journal a `journal` input gives a step.
const JOURNAL_LINES: usize = 300;

/// The files of a step's workspace: `step.json` and its inputs. `units`: the engine's units
/// now, for a `status` input.
pub(super) fn step_files(
    st: &State,
    run: &Run,
    w: &Workflow,
    index: usize,
    units: &[UnitStatus],
) -> Result<Vec<Staged>, String> {
    let step = &w.steps[index];
    let mut files: Vec<Staged> = Vec::new();
    let mut names = Vec::new();
    let run_dir = runs::runs_dir(&st.loaded.settings.state_dir).join(&run.id);
    for input in &step.inputs {
        let name = input.file_name(run.trigger_unit.as_deref());
        match input {
            Input::Output { step: from, file } => {
                let data = runs::read_regular(&run_dir.join(from).join("outputs"), file)
                    .map_err(|e| format!("{e:#}"))?
                    .ok_or_else(|| format!("its input {file} from step {from} is missing: {from} did not write it"))?;
                files.push((format!("inputs/{name}"), data));
            }
            Input::Status => {
                let doc = status_snapshot(st, units);
                files.push((format!("inputs/{name}"), serde_json::to_vec_pretty(&doc).unwrap_or_default()));
            }
            Input::Journal { unit } => {
                let unit = unit.clone().or_else(|| run.trigger_unit.clone()).ok_or_else(|| {
                    "its journal input names the triggering unit, and this run has none (give --input unit=NAME)"
                        .to_string()
                })?;
                files.push((format!("inputs/{name}"), journal(st, &unit).into_bytes()));
            }
            Input::Directory { path } => {
                let dir = match path {
                    DirectoryOf::Path(p) => Some(p.clone()),
                    // An optional input not given: the step finds the directory empty.
                    DirectoryOf::RunInput(input) => run.inputs.get(input).map(std::path::PathBuf::from),
                };
                let found = match dir {
                    Some(d) => runs::collect_dir(&d, DIRECTORY_FILES, DIRECTORY_BYTES).map_err(|e| format!("{e:#}"))?,
                    None => Vec::new(),
                };
                if found.is_empty() {
                    files.push((format!("inputs/{name}/"), Vec::new()));
                }
                for (rel, data) in found {
                    files.push((format!("inputs/{name}/{rel}"), data));
                }
            }
            Input::Approvals => {
                let decided: Vec<serde_json::Value> = run
                    .approvals
                    .iter()
                    .map(|a| {
                        serde_json::json!({"id": a.id, "step": a.step, "proposal": a.proposal, "action": a.proposal.action(),
                            "state": a.state.name(), "decided_by": a.decided_by, "outcome": a.outcome})
                    })
                    .collect();
                let doc = serde_json::json!({ "run": run.id, "proposals": decided });
                files.push((format!("inputs/{name}"), serde_json::to_vec_pretty(&doc).unwrap_or_default()));
            }
        }
        names.push(name);
    }
    // The step's share of the vector index's RAM (the L2 tier), among the agents that may run
    // at once.
    let index_bytes =
        st.loaded.plan.memory_tiers.l2_vector_index_bytes / u64::try_from(st.admission.limit.max(1)).unwrap_or(1);
    let mut spec = w.step_spec(index, &run.id, &run.inputs, names, index_bytes)?;
    spec.act_on = crate::workflows::act_on(run);
    files.insert(0, ("step.json".into(), serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?));
    Ok(files)
}

/// What the appliance looks like, for a `status` input: the units as `aitherctl status` shows
/// them (state, restarts, detail), the workflow steps left out.
fn status_snapshot(st: &State, engine: &[UnitStatus]) -> serde_json::Value {
    let units: Vec<serde_json::Value> = engine
        .iter()
        .filter(|s| !st.engine.steps.contains_key(&s.name))
        .filter_map(|s| st.by_name.get(&s.name).map(|p| super::report::report(p, s, &st.admission)))
        .filter_map(|u| serde_json::to_value(u).ok())
        .collect();
    serde_json::json!({
        "preset": st.loaded.plan.preset,
        "reason": st.loaded.plan.reason,
        "agent_slots": st.admission.limit,
        "agents_running": st.admission.running.len(),
        "queued": st.admission.waiting,
        "units": units,
    })
}

/// Step `step` of run `id`, and the directory where what is kept of it goes.
pub(super) fn kept_step<'a>(
    st: &'a State,
    id: &str,
    step: &str,
) -> Result<(&'a aither_api::workflow::StepRecord, std::path::PathBuf), DaemonError> {
    let run = st.engine.runs.get(id).ok_or_else(|| refused(format!("no run {id:?}")))?;
    let s = run.steps.iter().find(|s| s.name == step).ok_or_else(|| {
        let names: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
        refused(format!("run {id} has no step {step:?} (its steps: {})", names.join(", ")))
    })?;
    Ok((s, runs::runs_dir(&st.loaded.settings.state_dir).join(id).join(step)))
}

impl Daemon {
    /// `RunArtifact`: one of the outputs step `step` of run `id` wrote, as kept when it ended.
    pub async fn run_artifact(
        &self,
        id: &str,
        step: &str,
        name: &str,
    ) -> Result<aither_api::agentd::Artifact, DaemonError> {
        let dir = {
            let st = self.state.lock().await;
            let (s, kept) = kept_step(&st, id, step)?;
            let outputs = s.result.as_ref().map(|r| r.outputs.as_slice()).unwrap_or_default();
            if !outputs.iter().any(|o| o == name) {
                let listed = if outputs.is_empty() { "none".to_string() } else { outputs.join(", ") };
                return Err(refused(format!(
                    "step {step} of run {id} wrote no output {name:?} (its outputs: {listed})"
                )));
            }
            kept.join("outputs")
        };
        let data = runs::read_regular(&dir, name).map_err(DaemonError::Host)?.ok_or_else(|| {
            refused(format!("{name} of step {step} of run {id} was not kept ({} has no such file)", dir.display()))
        })?;
        let bytes = data.len() as u64;
        let limit = aither_api::agentd::ARTIFACT_TEXT_BYTES;
        let text = String::from_utf8_lossy(&data[..data.len().min(limit)]).into_owned();
        Ok(aither_api::agentd::Artifact {
            schema_version: aither_api::agentd::SCHEMA_VERSION,
            run: id.to_string(),
            step: step.to_string(),
            name: name.to_string(),
            bytes,
            text,
            truncated: data.len() > limit,
        })
    }
}

/// Copy what agentd keeps of a step out of its workspace: the transcript and
/// the declared outputs. The result's bytes, when there is one.
pub(super) fn keep_step_files(ws: &Path, step_dir: &Path, declared: &[String]) -> anyhow::Result<Option<Vec<u8>>> {
    use anyhow::Context as _;
    std::fs::create_dir_all(step_dir.join("outputs"))
        .with_context(|| format!("cannot create {}", step_dir.display()))?;
    let name = "transcript.jsonl";
    if let Some(data) = runs::read_regular(ws, name)? {
        aither_sys::atomic::write(&step_dir.join(name), &data)
            .with_context(|| format!("cannot write {}", step_dir.join(name).display()))?;
    }
    for out in declared {
        if let Some(data) = runs::read_regular(&ws.join("outputs"), out)? {
            let dest = step_dir.join("outputs").join(out);
            aither_sys::atomic::write(&dest, &data).with_context(|| format!("cannot write {}", dest.display()))?;
        }
    }
    runs::read_regular(ws, "result.json")
}

/// The last lines a unit logged: its log file in development mode, else the journal.
fn journal(st: &State, unit: &str) -> String {
    if st.loaded.host.dev {
        let path = units::log_file(&st.loaded.settings.runtime_dir, unit);
        return match std::fs::read(&path) {
            Ok(b) => {
                let text = String::from_utf8_lossy(&b);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(JOURNAL_LINES)..].join("\n") + "\n"
            }
            Err(e) => format!("(no log: {}: {e})\n", path.display()),
        };
    }
    // journald reads a unit's output stream in its own time: a unit that printed why it failed
    // and exited may not have those lines in the journal yet when the run it set off starts.
    // `journalctl --sync` returns once journald has written everything queued before the call.
    if let Err(e) = command::run(Command::new("journalctl").arg("--sync")) {
        tracing::warn!("the {unit} journal input may lack the unit's last lines: {e}");
    }
    let lines = JOURNAL_LINES.to_string();
    command::run(Command::new("journalctl").args(["--no-pager", "-o", "short-iso", "-t", unit, "-n", &lines]))
        .unwrap_or_else(|e| format!("({e})\n"))
}
