//! A pack's steps run on a case's fixtures, as agentd would run them: each step's workspace
//! staged with its inputs (the earlier steps' outputs, the case's status document, journal,
//! folder, the proposals so far), its `step.json` made by the same
//! [`Workflow::step_spec`](aither_workflow::Workflow::step_spec) agentd uses, and the step run
//! by the agent runner itself ([`aither_agent::step::run`]) against the model. Proposals are
//! recorded, never carried out: a later step that reads `approvals.json` sees each approved
//! and done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aither_agent::gateway::Endpoint;
use aither_api::workflow::{Proposal, StepOutcome, StepResult};
use aither_workflow::{DirectoryOf, Input, Workflow};

/// What a step is given besides the earlier steps' outputs.
#[derive(Debug, Default)]
pub struct Fixtures {
    /// `status.json`.
    pub status: Option<serde_json::Value>,
    /// The failed unit and its journal (`journal-UNIT.txt`).
    pub journal: Option<(String, String)>,
    /// Directories by run input name (`docs`, `repo`, `sources`).
    pub dirs: BTreeMap<String, PathBuf>,
    /// The run's inputs (text and names), as `--input` would give them.
    pub run_inputs: BTreeMap<String, String>,
}

/// One step as it ran.
#[derive(Debug)]
pub struct StepRun {
    pub name: String,
    pub result: StepResult,
    /// Its declared outputs that it wrote, with their bytes.
    pub outputs: BTreeMap<String, Vec<u8>>,
    /// Every declared output was written.
    pub complete: bool,
}

/// A pack's run on one case.
#[derive(Debug, Default)]
pub struct PackRun {
    pub steps: Vec<StepRun>,
    pub proposals: Vec<Proposal>,
    /// Why the run stopped before its last step (a step failed or did not write an output
    /// the next one reads).
    pub stopped: Option<String>,
}

impl PackRun {
    pub fn output(&self, step: &str, file: &str) -> Option<&[u8]> {
        self.steps.iter().find(|s| s.name == step)?.outputs.get(file).map(Vec::as_slice)
    }

    pub fn output_text(&self, step: &str, file: &str) -> Option<String> {
        self.output(step, file).map(|b| String::from_utf8_lossy(b).into_owned())
    }

    pub fn tokens(&self) -> u64 {
        self.steps.iter().map(|s| s.result.completion_tokens).sum()
    }
}

/// The share of the vector index a step may keep (the eval's documents are small).
const INDEX_BYTES: u64 = 64 << 20;

/// How the model is asked.
#[derive(Debug, Clone)]
pub struct Model {
    pub endpoint: Endpoint,
    /// Every step asks this model, whatever role its workflow names.
    pub name: String,
    pub embedding: String,
}

/// Run `workflow`'s steps in order in `dir` (a directory per step), stopping where agentd
/// would: a step that failed or ran out of budget ends the run.
pub fn run(workflow: &Workflow, fixtures: &Fixtures, model: &Model, seed: u64, dir: &Path) -> PackRun {
    let mut run = PackRun::default();
    let run_id = format!("eval-{}", workflow.name);
    let mut inputs = fixtures.run_inputs.clone();
    for declared in &workflow.inputs {
        if let (false, Some(default)) = (inputs.contains_key(&declared.name), &declared.default) {
            inputs.insert(declared.name.clone(), default.clone());
        }
    }
    for (k, v) in &fixtures.dirs {
        inputs.insert(k.clone(), v.display().to_string());
    }
    for (index, step) in workflow.steps.iter().enumerate() {
        let ws = dir.join(&step.name);
        let staged = stage(workflow, index, &run, fixtures, &ws).and_then(|names| {
            let mut spec = workflow.step_spec(index, &run_id, &inputs, names, INDEX_BYTES)?;
            spec.model.clone_from(&model.name);
            spec.embedding_model.clone_from(&model.embedding);
            spec.seed = Some(seed.wrapping_mul(1000).wrapping_add(u64::try_from(index).unwrap_or(0) * 100));
            let text = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
            std::fs::write(ws.join("step.json"), text).map_err(|e| format!("{}: {e}", ws.display()))
        });
        if let Err(e) = staged {
            run.stopped = Some(format!("step {}: {e}", step.name));
            return run;
        }
        let result = match aither_agent::step::run(&ws, &model.endpoint) {
            Ok(r) => r,
            Err(e) => {
                run.stopped = Some(format!("step {}: {e}", step.name));
                return run;
            }
        };
        let mut outputs = BTreeMap::new();
        for out in &step.outputs {
            if let Ok(data) = std::fs::read(ws.join("outputs").join(out)) {
                if !data.is_empty() {
                    outputs.insert(out.clone(), data);
                }
            }
        }
        let complete = outputs.len() == step.outputs.len();
        run.proposals.extend(result.proposals.iter().cloned());
        let outcome = result.outcome.clone();
        run.steps.push(StepRun { name: step.name.clone(), result, outputs, complete });
        match outcome {
            StepOutcome::Completed => {}
            StepOutcome::BudgetExhausted { budget } => {
                run.stopped = Some(format!("step {}: its {budget} budget ran out", step.name));
                return run;
            }
            StepOutcome::Failed { reason } => {
                run.stopped = Some(format!("step {}: {reason}", step.name));
                return run;
            }
        }
    }
    run
}

/// Lay out step `index`'s workspace; the names of its inputs.
fn stage(
    workflow: &Workflow,
    index: usize,
    run: &PackRun,
    fixtures: &Fixtures,
    ws: &Path,
) -> Result<Vec<String>, String> {
    let step = &workflow.steps[index];
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let inputs_dir = ws.join("inputs");
    std::fs::create_dir_all(&inputs_dir).map_err(|e| io(&inputs_dir, e))?;
    std::fs::create_dir_all(ws.join("outputs")).map_err(|e| io(ws, e))?;
    let trigger = fixtures.journal.as_ref().map(|(unit, _)| unit.as_str());
    let mut names = Vec::new();
    for input in &step.inputs {
        let name = input.file_name(trigger);
        let dest = inputs_dir.join(&name);
        let write = |data: &[u8]| std::fs::write(&dest, data).map_err(|e| io(&dest, e));
        match input {
            Input::Output { step: from, file } => {
                let data = run
                    .output(from, file)
                    .ok_or_else(|| format!("its input {file} from step {from} is missing: {from} did not write it"))?;
                write(data)?;
            }
            Input::Status => {
                let doc = fixtures.status.clone().unwrap_or_else(|| serde_json::json!({"units": []}));
                write(&serde_json::to_vec_pretty(&doc).unwrap_or_default())?;
            }
            Input::Journal { .. } => {
                let text = fixtures.journal.as_ref().map_or("(no journal)\n", |(_, text)| text.as_str());
                write(text.as_bytes())?;
            }
            Input::Directory { path: DirectoryOf::RunInput(input) } => match fixtures.dirs.get(input) {
                Some(src) => copy_tree(src, &dest)?,
                None => std::fs::create_dir_all(&dest).map_err(|e| io(&dest, e))?,
            },
            Input::Directory { path: DirectoryOf::Path(p) } => copy_tree(p, &dest)?,
            Input::Approvals => {
                let decided: Vec<serde_json::Value> = run
                    .proposals
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        serde_json::json!({"id": format!("eval-{}.{}", workflow.name, i + 1), "proposal": p,
                            "action": p.action(), "state": "done", "decided_by": "uid 0 (root)",
                            "outcome": format!("{}: carried out", p.action())})
                    })
                    .collect();
                let doc = serde_json::json!({"run": format!("eval-{}", workflow.name), "proposals": decided});
                write(&serde_json::to_vec_pretty(&doc).unwrap_or_default())?;
            }
        }
        names.push(name);
    }
    Ok(names)
}

/// Copy the regular files and directories of `src` into `dest` (links are left out).
fn copy_tree(src: &Path, dest: &Path) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(dest).map_err(|e| io(dest, e))?;
    for entry in std::fs::read_dir(src).map_err(|e| io(src, e))? {
        let entry = entry.map_err(|e| io(src, e))?;
        let kind = entry.file_type().map_err(|e| io(&entry.path(), e))?;
        let to = dest.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to).map_err(|e| io(&to, e))?;
        }
    }
    Ok(())
}
