//! A workflow's run inputs and its steps' inputs, read from their documents and checked.

use super::*;

/// The run inputs a workflow declares; `unit` is implied by unit triggers (the unit that
/// failed, or the one named by hand).
pub(crate) fn run_inputs(
    docs: BTreeMap<String, RunInputDoc>,
    unit_triggers: bool,
) -> Result<Vec<RunInput>, (String, String)> {
    let mut out = Vec::new();
    for (name, d) in docs {
        let key = format!("inputs.{name}");
        if !is_input_name(&name) {
            return Err((key, "an input name is a lowercase letter, then up to 31 letters, digits or '_'".into()));
        }
        if name == "unit" && unit_triggers {
            return Err((key, "`unit` is the triggering unit's name: a unit trigger declares it".into()));
        }
        if d.description.trim().is_empty() {
            return Err((format!("{key}.description"), "must not be empty".into()));
        }
        if let Some(v) = &d.default {
            if d.required {
                return Err((format!("{key}.default"), "a required input has no default".into()));
            }
            d.kind.check(v).map_err(|p| (format!("{key}.default"), p))?;
        }
        out.push(RunInput { name, kind: d.kind, description: d.description, required: d.required, default: d.default });
    }
    if unit_triggers {
        out.push(RunInput {
            name: "unit".into(),
            kind: InputKind::Name,
            description: "the unit to look at (given by the trigger when a unit fails)".into(),
            required: false,
            default: None,
        });
    }
    Ok(out)
}

pub(crate) fn input_of(doc: &InputDoc, earlier: &[Step], run_inputs: &[RunInput]) -> Result<Input, String> {
    let only = |allowed: &[&str]| -> Result<(), String> {
        let given = [
            ("file", doc.file.is_some()),
            ("unit", doc.unit.is_some()),
            ("path", doc.path.is_some()),
            ("input", doc.input.is_some()),
        ];
        match given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            Some((k, _)) => Err(match &doc.collect {
                Some(kind) => format!("collect = {kind:?} takes no `{k}`"),
                None => format!("`from` takes `file` only, not `{k}`"),
            }),
            None => Ok(()),
        }
    };
    match (&doc.from, &doc.collect) {
        (Some(step), None) => {
            only(&["file"])?;
            let Some(prev) = earlier.iter().find(|s| &s.name == step) else {
                return Err(format!("{step:?} is not an earlier step"));
            };
            let Some(file) = &doc.file else { return Err(format!("which output of {step:?}: `file` is missing")) };
            if !prev.outputs.contains(file) {
                return Err(format!("{step:?} declares no output {file:?} (it has: {})", prev.outputs.join(", ")));
            }
            Ok(Input::Output { step: step.clone(), file: file.clone() })
        }
        (None, Some(kind)) => match kind.as_str() {
            "status" => only(&[]).map(|()| Input::Status),
            "approvals" => only(&[]).map(|()| Input::Approvals),
            "journal" => {
                only(&["unit"])?;
                let unit_triggered = run_inputs.iter().any(|i| i.name == "unit");
                match doc.unit.as_deref() {
                    None => Err("collect = \"journal\" needs `unit` (a unit name, or \"trigger\")".into()),
                    Some("trigger") if !unit_triggered => {
                        Err("unit = \"trigger\" needs a unit trigger (trigger.units)".into())
                    }
                    Some("trigger") => Ok(Input::Journal { unit: None }),
                    Some(u) if u.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)) => {
                        Ok(Input::Journal { unit: Some(u.to_string()) })
                    }
                    Some(u) => Err(format!("{u:?} is not a unit name")),
                }
            }
            "directory" => {
                only(&["path", "input"])?;
                match (&doc.path, &doc.input) {
                    (Some(path), None) => {
                        aither_policy::SafePath::new("path", path).map_err(|e| e.to_string())?;
                        Ok(Input::Directory { path: DirectoryOf::Path(path.clone()) })
                    }
                    (None, Some(name)) => match run_inputs.iter().find(|i| &i.name == name) {
                        Some(i) if i.kind == InputKind::Directory => {
                            Ok(Input::Directory { path: DirectoryOf::RunInput(name.clone()) })
                        }
                        Some(_) => Err(format!("the run input {name:?} is not of kind \"directory\"")),
                        None => Err(format!("no run input {name:?} is declared ([inputs.{name}])")),
                    },
                    _ => Err("collect = \"directory\" needs `path` or `input` (a run input), one of them".into()),
                }
            }
            other => Err(format!("collect = {other:?}: one of status, journal, directory, approvals")),
        },
        (Some(_), Some(_)) => Err("either `from` (an earlier step) or `collect`, not both".into()),
        (None, None) => {
            Err("`from` (an earlier step's output) or `collect` (status, journal, directory, approvals)".into())
        }
    }
}
