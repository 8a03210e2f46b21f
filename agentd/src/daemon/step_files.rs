//! What a workflow step is given and what is kept of it: the files of its workspace
//! (`step.json` and its inputs: earlier steps' outputs, agentd's status, a unit's journal, a
//! directory's files), and, when it ends, its result, transcript and declared outputs.

use std::path::Path;

use aither_api::workflow::{Run, StepSpec, SCHEMA_VERSION};

use super::runs::{self, Staged};
use super::State;
use crate::units;
use crate::workflows::{Input, Workflow};

/// The most files and bytes a `directory` input gives a step.
const DIRECTORY_FILES: usize = 1000;
const DIRECTORY_BYTES: u64 = 64 * 1024 * 1024;
/// The lines of a journal a `journal` input gives a step.
const JOURNAL_LINES: usize = 300;

/// The files of a step's workspace: `step.json` and its inputs.
pub(super) fn step_files(st: &State, run: &Run, w: &Workflow, index: usize) -> Result<Vec<Staged>, String> {
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
                let doc = status_snapshot(st);
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
                for (rel, data) in
                    runs::collect_dir(path, DIRECTORY_FILES, DIRECTORY_BYTES).map_err(|e| format!("{e:#}"))?
                {
                    files.push((format!("inputs/{name}/{rel}"), data));
                }
            }
        }
        names.push(name);
    }
    let mut instructions = step.instructions.clone();
    if !run.inputs.is_empty() {
        instructions.push_str("\n\nGiven for this run:");
        for (k, v) in &run.inputs {
            instructions.push_str(&format!("\n- {k}: {v}"));
        }
    }
    let spec = StepSpec {
        schema_version: SCHEMA_VERSION,
        run_id: run.id.clone(),
        workflow: w.name.clone(),
        step: step.name.clone(),
        model: step.model.name().to_string(),
        system_prompt: step.system_prompt.clone(),
        instructions,
        tools: step.tools.clone(),
        commands: step.commands.clone(),
        inputs: names,
        outputs: step.outputs.clone(),
        budget: step.budget,
        embedding_model: "embedding".into(),
        // The step's share of the vector index's RAM (the L2 tier), among the agents that
        // may run at once.
        index_bytes: st.loaded.plan.memory_tiers.l2_vector_index_bytes
            / u64::try_from(st.admission.limit.max(1)).unwrap_or(1),
    };
    files.insert(0, ("step.json".into(), serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?));
    Ok(files)
}

/// What the appliance looks like, for a `status` input: the units and their states.
fn status_snapshot(st: &State) -> serde_json::Value {
    let units: Vec<serde_json::Value> = st
        .by_name
        .values()
        .filter(|u| !st.engine.steps.contains_key(&u.name))
        .map(|u| serde_json::json!({"name": u.name, "kind": u.kind, "group": u.group, "blocked": u.blocked, "description": u.description}))
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

/// Copy what agentd keeps of a step out of its workspace: `result.json`, the transcript and
/// the declared outputs. The result's bytes, when there is one.
pub(super) fn keep_step_files(ws: &Path, step_dir: &Path, declared: &[String]) -> anyhow::Result<Option<Vec<u8>>> {
    use anyhow::Context as _;
    std::fs::create_dir_all(step_dir.join("outputs"))
        .with_context(|| format!("cannot create {}", step_dir.display()))?;
    for name in ["transcript.jsonl", "result.json"] {
        if let Some(data) = runs::read_regular(ws, name)? {
            aither_sys::atomic::write(&step_dir.join(name), &data)
                .with_context(|| format!("cannot write {}", step_dir.join(name).display()))?;
        }
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
    let out = std::process::Command::new("journalctl")
        .args(["--no-pager", "-o", "short-iso", "-t", unit, "-n", &JOURNAL_LINES.to_string()])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => format!("(journalctl: {}: {})\n", o.status, String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("(journalctl: {e})\n"),
    }
}
