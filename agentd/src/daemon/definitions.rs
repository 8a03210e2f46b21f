//! The workflow definitions as the API shows them (which are on, what a run is given, what
//! answers each step's model role here), turning them on and off, and checking what a run is
//! given before it starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aither_api::plan::Role;
use aither_api::workflow::{InputKind, StepInfo, WorkflowInfo};

use super::workflow::refused;
use super::{Daemon, DaemonError, Loaded, Outcome};
use crate::workflows::{Enabled, Origin, Schedule, Workflow};

/// What answers model role `role` on this machine: the plan's model for it (the chat model for
/// `code` when the preset plans none), behind the cloud fallback where the preset puts it
/// first, or the cloud fallback alone.
pub(super) fn served_by(loaded: &Loaded, role: Role) -> String {
    let plan = &loaded.plan;
    let local =
        plan.models.iter().find(|m| m.role == role).map(|m| format!("the local model {}", m.name)).or_else(|| {
            (role == Role::Code)
                .then(|| plan.models.iter().find(|m| m.role == Role::Chat))
                .flatten()
                .map(|m| format!("the local chat model {} (the {} preset plans no code model)", m.name, plan.preset))
        });
    let cloud = loaded.settings.cloud.as_ref().map(|c| c.endpoint.as_str());
    match (local, cloud) {
        (Some(l), Some(c)) if plan.inference.cloud_fallback == "first" => {
            format!("the cloud fallback ({c}) first on the {} preset, then {l}", plan.preset)
        }
        (Some(l), Some(c)) if plan.inference.cloud_fallback == "on-overflow" => {
            format!("{l}, and the cloud fallback ({c}) when it is busy")
        }
        (Some(l), _) => l,
        (None, Some(c)) => {
            format!("the cloud fallback ({c}): the {} preset plans no local {} model", plan.preset, role.name())
        }
        (None, None) => format!(
            "nothing: the {} preset plans no local {} model and no [cloud] fallback is configured",
            plan.preset,
            role.name()
        ),
    }
}

pub(super) fn info(loaded: &Loaded, w: &Workflow) -> WorkflowInfo {
    WorkflowInfo {
        name: w.name.clone(),
        description: w.description.clone(),
        file: w.file.display().to_string(),
        enabled: loaded.switches.is_on(w),
        origin: match w.origin {
            Origin::BuiltIn => "built-in",
            Origin::Shipped => "shipped",
            Origin::Admin => "admin",
        }
        .into(),
        inputs: w.inputs.clone(),
        manual: w.triggers.manual,
        units: w.triggers.units.clone(),
        calendar: w.triggers.calendar.map(Schedule::describe),
        auto_approve: w.auto_approve.clone(),
        steps: w
            .steps
            .iter()
            .map(|s| StepInfo {
                name: s.name.clone(),
                model: s.model.name().to_string(),
                served_by: served_by(loaded, s.model),
                tools: s.tools.clone(),
                inputs: s.inputs.iter().map(|i| format!("inputs/{}", i.file_name(None))).collect(),
                outputs: s.outputs.iter().map(|o| format!("outputs/{o}")).collect(),
                budget: s.budget,
            })
            .collect(),
    }
}

/// The run's inputs checked against what `w` declares, with the declared defaults added: an
/// input not declared, a required one missing and a value not of its kind are refused, each
/// named. `dev`: agentd runs with its user's own rights, so a directory may be anywhere.
pub(super) fn check_run_inputs(
    w: &Workflow,
    mut given: BTreeMap<String, String>,
    input_dirs: &[PathBuf],
    dev: bool,
) -> Result<BTreeMap<String, String>, String> {
    if let Some(k) = given.keys().find(|k| !w.inputs.iter().any(|i| &i.name == *k)) {
        let names: Vec<&str> = w.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "input {k:?}: {} takes no such input (it takes: {})",
            w.name,
            if names.is_empty() { "none".into() } else { names.join(", ") }
        ));
    }
    for i in &w.inputs {
        let Some(value) = given.get(&i.name).cloned().or_else(|| i.default.clone()) else {
            if i.required {
                return Err(format!("input {}: required ({}): give --input {}=…", i.name, i.description, i.name));
            }
            continue;
        };
        i.kind.check(&value).map_err(|p| format!("input {}: {p}", i.name))?;
        if i.kind == InputKind::Directory {
            let real =
                directory_allowed(Path::new(&value), input_dirs, dev).map_err(|p| format!("input {}: {p}", i.name))?;
            given.insert(i.name.clone(), real.display().to_string());
        } else {
            given.insert(i.name.clone(), value);
        }
    }
    Ok(given)
}

/// A directory a run may copy from: it exists, and (but in dev mode) lies under one of
/// `workflows.input_dirs` once its links are resolved. Its real path.
fn directory_allowed(path: &Path, input_dirs: &[PathBuf], dev: bool) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !real.is_dir() {
        return Err(format!("{} is not a directory", path.display()));
    }
    if dev {
        return Ok(real);
    }
    let under = input_dirs.iter().any(|d| std::fs::canonicalize(d).is_ok_and(|d| real.starts_with(d)));
    if !under {
        let dirs: Vec<String> = input_dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(format!(
            "{} is not under the directories runs may read (workflows.input_dirs: {})",
            real.display(),
            if dirs.is_empty() { "none".into() } else { dirs.join(", ") }
        ));
    }
    Ok(real)
}

impl Daemon {
    /// Turn a workflow on or off (`/etc/aither/workflows-enabled.toml`).
    pub async fn enable_workflow(&self, name: &str, on: bool) -> Outcome {
        let mut st = self.state.lock().await;
        let w = st.loaded.workflows.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = st.loaded.workflows.keys().map(String::as_str).collect();
            refused(format!("no workflow {name:?} (there are: {})", known.join(", ")))
        })?;
        // Read again: what is on disk is what is changed, and a file that does not read is
        // not overwritten.
        let mut switches =
            Enabled::read(&self.opts.root).map_err(|e| refused(format!("{e}: fix or remove it first")))?;
        if switches.is_on(&w) == on {
            st.loaded.switches = switches;
            return Ok(format!("{name} is already {}", if on { "enabled" } else { "disabled" }));
        }
        switches.set(&w, on).map_err(DaemonError::Host)?;
        tracing::info!("workflow {name}: {}", if on { "enabled" } else { "disabled" });
        st.loaded.switches = switches;
        Ok(format!("{name} {}", if on { "enabled" } else { "disabled" }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow() -> Workflow {
        let text = r#"
[workflow]
description = "d"
[inputs.repo]
kind = "directory"
description = "the repository"
required = true
[inputs.base]
kind = "name"
description = "the base"
default = "HEAD~1"
[[step]]
name = "a"
model = "code"
system_prompt = "p"
instructions = "i"
tools = ["run_command"]
commands = [["/usr/bin/git", "diff", "{base}"]]
inputs = [{ collect = "directory", input = "repo" }]
"#;
        crate::workflows::parse(Path::new("/x/review.toml"), text, Origin::Shipped).expect("valid")
    }

    #[test]
    fn run_inputs_are_declared_typed_and_directories_confined() {
        let w = workflow();
        let root = tempfile::tempdir().expect("tempdir");
        let allowed = root.path().join("srv");
        std::fs::create_dir_all(allowed.join("repo")).expect("dir");
        std::os::unix::fs::symlink("/etc", allowed.join("etc-link")).expect("link");
        let given = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
        let repo = allowed.join("repo").display().to_string();
        let ok = check_run_inputs(&w, given(&[("repo", repo.clone())]), std::slice::from_ref(&allowed), false)
            .expect("valid");
        assert_eq!(ok["base"], "HEAD~1", "the default is filled in");
        let refusals = [
            (
                given(&[("repo", repo.clone()), ("colour", "red".into())]),
                "input \"colour\": review takes no such input",
            ),
            (given(&[]), "input repo: required"),
            (
                given(&[("repo", repo.clone()), ("base", "--output=/etc/x".into())]),
                "input base: \"--output=/etc/x\" is not a name",
            ),
            (given(&[("repo", "/etc".into())]), "input repo: /etc is not under the directories runs may read"),
            (given(&[("repo", allowed.join("etc-link").display().to_string())]), "input repo: /etc is not under"),
            (given(&[("repo", "relative".into())]), "is not an absolute path"),
        ];
        for (inputs, expected) in refusals {
            let e = check_run_inputs(&w, inputs, std::slice::from_ref(&allowed), false).expect_err("refused");
            assert!(e.contains(expected), "expected {expected:?} in {e:?}");
        }
        assert!(check_run_inputs(&w, given(&[("repo", "/etc".into())]), &[], true).is_ok(), "dev: the user's rights");
    }

    #[test]
    fn commands_carry_only_declared_name_inputs() {
        let mut values = BTreeMap::new();
        values.insert("base".to_string(), "main".to_string());
        let filled = crate::workflows::fill_command(&["/usr/bin/git".into(), "{base}..HEAD".into()], &values);
        assert_eq!(filled.expect("filled"), ["/usr/bin/git", "main..HEAD"]);
        values.insert("base".to_string(), "-x".to_string());
        assert!(crate::workflows::fill_command(&["/usr/bin/git".into(), "{base}".into()], &values).is_err());
    }
}
