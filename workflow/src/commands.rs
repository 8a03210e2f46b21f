//! A step's commands: checked against the run inputs they name, and filled from them.

use super::*;

/// An absolute program (validated as a safe path) and plain arguments; `{NAME}` in an
/// argument is the run input NAME, which must be of kind `name` (a token that cannot
/// become an option or a second argument).
pub(crate) fn check_command(command: &[String], run_inputs: &[RunInput]) -> Result<(), String> {
    let Some(program) = command.first() else { return Err("an empty command".into()) };
    aither_policy::SafePath::new("program", Path::new(program)).map_err(|e| e.to_string())?;
    for arg in &command[1..] {
        if arg.is_empty() || arg.len() > 256 || arg.chars().any(char::is_control) {
            return Err(format!("argument {arg:?}: empty, over 256 bytes or with control characters"));
        }
        for name in placeholders(arg) {
            match run_inputs.iter().find(|i| i.name == name) {
                Some(i) if i.kind == InputKind::Name => {}
                Some(_) => return Err(format!("argument {arg:?}: the run input {name:?} is not of kind \"name\"")),
                None => return Err(format!("argument {arg:?}: no run input {name:?} is declared")),
            }
        }
    }
    Ok(())
}

/// The `{NAME}`s in a command argument.
pub fn placeholders(arg: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else { break };
        out.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    out
}

/// A command with its `{NAME}`s replaced by the run's values (each validated as a `name`).
pub fn fill_command(command: &[String], values: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    command
        .iter()
        .map(|arg| {
            let mut out = arg.clone();
            for name in placeholders(arg) {
                let v = values.get(name).ok_or_else(|| format!("the command {arg:?} needs the run input {name}"))?;
                InputKind::Name.check(v).map_err(|p| format!("input {name}: {p}"))?;
                out = out.replace(&format!("{{{name}}}"), v);
            }
            Ok(out)
        })
        .collect()
}

/// A text with its `{NAME}`s replaced by the run's values (a missing one left as it is).
pub fn fill_text(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for name in placeholders(text) {
        if let Some(v) = values.get(name) {
            out = out.replace(&format!("{{{name}}}"), v);
        }
    }
    out
}
