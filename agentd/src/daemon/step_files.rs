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
/// How long journalctl may take to give them.
const JOURNAL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The files of a step's workspace: `step.json` and its inputs. `units`: the engine's units
/// now, for a `status` input.
pub(super) fn step_files(
    st: &State,
    run: &Run,
    w: &Workflow,
    index: usize,
    units: &[UnitStatus],
    journals: &std::collections::BTreeMap<String, String>,
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
                // Read before the state lock was taken ([`journal_units`], [`read_journals`]).
                let text = journals.get(&unit).cloned().unwrap_or_else(|| format!("(no journal of {unit} was read)\n"));
                files.push((format!("inputs/{name}"), text.into_bytes()));
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
                    let data =
                        if is_git_config(&rel) { safe_git_config(&String::from_utf8_lossy(&data)) } else { data };
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
    spec.act_on = crate::workflows::act_on(w, run);
    files.insert(0, ("step.json".into(), serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?));
    Ok(files)
}

/// Whether `rel`, a path in a directory input, is a git repository's own configuration.
fn is_git_config(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    matches!(parts.as_slice(), [.., ".git", "config" | "config.worktree"])
}

/// A repository's configuration as a step gets it: only the keys that say how the repository
/// is stored (`core.repositoryformatversion`, `core.bare`, `extensions.*`). Everything else
/// is dropped: a repository under review must not name the programs git runs on it
/// (`core.fsmonitor`, `gpg.program` with `log.showSignature`, filter and textconv drivers,
/// `core.sshCommand`, includes) — the step's commands run git on it.
fn safe_git_config(text: &str) -> Vec<u8> {
    let mut section = String::new();
    let mut kept: Vec<(String, String, String)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[') {
            // `[core]`, `[extensions]`; a subsection (`[remote "origin"]`) is never kept.
            let name = header.split(']').next().unwrap_or_default().trim();
            section = if name.contains(['"', ' ', '.']) { String::new() } else { name.to_ascii_lowercase() };
            continue;
        }
        let Some((key, value)) = t.split_once('=') else { continue };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        let keep = match section.as_str() {
            "core" => key == "repositoryformatversion" || key == "bare",
            "extensions" => true,
            _ => false,
        };
        let plain =
            |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if keep && plain(&key) && plain(value) {
            kept.push((section.clone(), key, value.to_string()));
        }
    }
    let mut out = String::new();
    for s in ["core", "extensions"] {
        let lines: Vec<String> = kept.iter().filter(|k| k.0 == s).map(|k| format!("\t{} = {}\n", k.1, k.2)).collect();
        if !lines.is_empty() {
            out.push_str(&format!("[{s}]\n"));
            out.extend(lines);
        }
    }
    out.into_bytes()
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

/// The units whose journals step `index` of `run` reads.
pub(super) fn journal_units(w: &Workflow, index: usize, run: &Run) -> Vec<String> {
    let Some(step) = w.steps.get(index) else { return Vec::new() };
    step.inputs
        .iter()
        .filter_map(|i| match i {
            Input::Journal { unit } => unit.clone().or_else(|| run.trigger_unit.clone()),
            _ => None,
        })
        .collect()
}

/// The journals of `units` (each with its journal matches, [`super::journal_matches`]), by
/// unit: journalctl runs here, never under the state lock (`runtime_dir`: where development
/// mode's log files are, `None` on the appliance).
pub(super) fn read_journals(
    units: &[(String, Vec<String>)],
    runtime_dir: Option<&Path>,
) -> std::collections::BTreeMap<String, String> {
    units.iter().map(|(u, selected_by)| (u.clone(), journal(runtime_dir, u, selected_by))).collect()
}

/// The last lines a unit logged: its log file in development mode, else the journal's lines
/// that `selected_by` selects.
fn journal(runtime_dir: Option<&Path>, unit: &str, selected_by: &[String]) -> String {
    if let Some(runtime_dir) = runtime_dir {
        let path = units::log_file(runtime_dir, unit);
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
    if let Err(e) = command::run_for(Command::new("journalctl").arg("--sync"), JOURNAL_LIMIT) {
        tracing::warn!("the {unit} journal input may lack the unit's last lines: {e}");
    }
    let lines = JOURNAL_LINES.to_string();
    command::run_for(
        Command::new("journalctl").args(["--no-pager", "-o", "short-iso", "-n", &lines]).args(selected_by),
        JOURNAL_LIMIT,
    )
    .unwrap_or_else(|e| format!("({e})\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_keeps_only_how_it_is_stored_of_its_configuration() {
        assert!(is_git_config("repo/.git/config") && is_git_config(".git/config.worktree"));
        assert!(!is_git_config("repo/config") && !is_git_config("repo/.git/configs"));
        let hostile = "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = sh -c 'touch /tmp/x'\n\
                       [log]\n\tshowSignature = true\n[gpg]\n\tprogram = /tmp/evil\n\
                       [extensions]\n\tobjectformat = sha256\n[include]\n\tpath = /etc/evil\n\
                       [filter \"x\"]\n\tclean = /tmp/evil\n[core \"x\"]\n\tbare = true\n";
        assert_eq!(
            String::from_utf8(safe_git_config(hostile)).expect("text"),
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n[extensions]\n\tobjectformat = sha256\n"
        );
    }

    /// git on a repository whose configuration names programs, once agentd has handed it
    /// over: the programs never run, and git still reads the repository.
    #[test]
    fn git_runs_none_of_a_handed_over_repositorys_programs() {
        let git = |dir: &Path, args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_NAME", "a")
                .env("GIT_AUTHOR_EMAIL", "a@b")
                .env("GIT_COMMITTER_NAME", "a")
                .env("GIT_COMMITTER_EMAIL", "a@b")
                .output()
                .expect("git");
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).expect("repo");
        git(&repo, &["init", "-q"]);
        std::fs::write(repo.join("a.txt"), "one\n").expect("a");
        git(&repo, &["add", "a.txt"]);
        git(&repo, &["commit", "-qm", "first"]);
        let marker = dir.path().join("ran");
        let evil = dir.path().join("evil.sh");
        std::fs::write(&evil, format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display())).expect("evil");
        std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let config = repo.join(".git/config");
        let mut text = std::fs::read_to_string(&config).expect("config");
        text.push_str(&format!("[log]\n\tshowSignature = true\n[gpg]\n\tprogram = {}\n", evil.display()));
        text.push_str(&format!("[core]\n\tfsmonitor = {}\n", evil.display()));
        std::fs::write(&config, text).expect("config");
        // As it is, git runs the repository's programs.
        let _ = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["status", "--short"])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output();
        assert!(marker.exists(), "the hostile configuration is live before it is handed over");
        std::fs::remove_file(&marker).expect("rm");
        // Handed over as a step's input: the same files, its configuration made safe.
        let staged = dir.path().join("staged");
        for (rel, data) in runs::collect_dir(&repo, 1000, 1 << 26).expect("collect") {
            let data = if is_git_config(&rel) { safe_git_config(&String::from_utf8_lossy(&data)) } else { data };
            let p = staged.join(&rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, data).expect("write");
        }
        assert!(git(&staged, &["log", "--oneline"]).contains("first"));
        git(&staged, &["status", "--short"]);
        assert!(!marker.exists(), "no program of the repository ran");
    }
}
