//! The tools a step's model may call, as OpenAI function definitions (only the granted ones
//! are offered) and as the agent carries them out: every call is checked again against the
//! step's grant, its arguments read strictly, and what the model gets back is bounded. A call
//! outside the grant is refused and recorded; a call that fails (a missing file) is told to
//! the model as an error, so it can correct itself.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use aither_api::workflow::{Proposal, ProposalKind, RefusedCall, StepSpec, Tool, MAX_REASON};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::fetch::Fetcher;
use crate::gateway::ToolCall;
use crate::workspace::{EntryKind, Workspace};

/// The most bytes of a file, a page or a command's output one call returns to the model.
pub const CHUNK: usize = 16 * 1024;
pub use aither_api::workflow::MAX_PROPOSALS;
/// The longest a command may run, whatever the step's budget has left.
pub const MAX_COMMAND_TIME: Duration = Duration::from_secs(600);
/// Where `write_file` writes.
pub const OUTPUTS: &str = "outputs/";

/// The tools granted to a step, as the request's `tools`.
pub fn definitions(spec: &StepSpec) -> Vec<Value> {
    let granted: BTreeSet<Tool> = spec.tools.iter().copied().collect();
    granted.into_iter().filter_map(|t| definition(t, spec)).collect()
}

fn definition(tool: Tool, spec: &StepSpec) -> Option<Value> {
    let string = |d: &str| json!({"type": "string", "description": d});
    let (description, properties, required): (&str, Value, Vec<&str>) = match tool {
        Tool::ReadFile => (
            "Read a text file of your workspace, such as inputs/NAME or outputs/NAME. Returns at most 16384 bytes from offset.",
            json!({"path": string("the file, relative to the workspace"), "offset": {"type": "integer", "minimum": 0}}),
            vec!["path"],
        ),
        Tool::WriteFile => (
            "Write a whole file under outputs/ in your workspace (created or replaced).",
            json!({"path": string("outputs/NAME"), "content": string("the whole file")}),
            vec!["path", "content"],
        ),
        Tool::ListFiles => (
            "List a directory of your workspace (\".\" for the top, inputs, outputs).",
            json!({"path": string("the directory, relative to the workspace")}),
            vec!["path"],
        ),
        Tool::RunCommand => {
            let names: Vec<String> = spec.commands.iter().map(|c| c.join(" ")).collect();
            (
                "Run one of the listed commands in your workspace and get its exit status and output.",
                json!({"command": {"type": "string", "enum": names}}),
                vec!["command"],
            )
        }
        Tool::FetchUrl => (
            "Fetch a web page or document over http or https; returns its text.",
            json!({"url": string("an http:// or https:// URL")}),
            vec!["url"],
        ),
        Tool::Propose => {
            let mut kinds: Vec<&str> = if spec.proposals.is_empty() {
                vec!["start", "stop", "restart", "reload", "pull_model", "publish"]
            } else {
                spec.proposals.iter().map(|k| k.name()).collect()
            };
            if spec.decide {
                kinds.push("none");
            }
            let unit = if spec.act_on.is_empty() {
                string("the unit, for start, stop and restart")
            } else {
                json!({"type": "string", "description": "the unit, for start, stop and restart", "enum": spec.act_on})
            };
            let mut properties = json!({"kind": {"type": "string", "enum": kinds}, "unit": unit});
            let needs = |k: &str| kinds.contains(&k);
            if needs("pull_model") {
                properties["model"] = string("the catalog model, for pull_model");
            }
            if needs("publish") {
                properties["file"] = string("for publish: outputs/NAME, or inputs/NAME handed over from an earlier step");
            }
            // Bounded: a small model that starts repeating itself would fill the turn.
            properties["reason"] = json!({"type": "string", "description": "why, in a sentence or two", "maxLength": 400});
            // A run that may act on its own unit only names it in every proposal.
            let required = if spec.act_on.is_empty() { vec!["kind", "reason"] } else { vec!["kind", "unit", "reason"] };
            (
                "Propose an action for a human to approve after this step: start, stop or restart a unit, reload the appliance's configuration, pull a model, or publish one of your outputs.",
                properties,
                required,
            )
        }
        Tool::SearchDocs => (
            "Search your input documents (inputs/) by meaning; returns the passages nearest the query, with their file and lines.",
            json!({"query": string("what to look for, in a sentence")}),
            vec!["query"],
        ),
    };
    Some(json!({
        "type": "function",
        "function": {
            "name": tool.name(),
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required, "additionalProperties": false},
        }
    }))
}

/// What a step's calls did, for its result.
#[derive(Debug)]
pub struct Toolbox<'a> {
    spec: &'a StepSpec,
    workspace: &'a Workspace,
    root: &'a Path,
    fetcher: Option<Fetcher>,
    /// The gateway, for `search_docs`'s embeddings, and the index once built.
    gateway: Option<&'a crate::gateway::Gateway>,
    index: Option<crate::search::Index>,
    pub proposals: Vec<Proposal>,
    pub refused: Vec<RefusedCall>,
    /// Files written, relative to `outputs/`.
    pub written: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    path: String,
    #[serde(default)]
    offset: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathArgs {
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandArgs {
    command: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlArgs {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeArgs {
    /// A kind of proposal, or `none` (a step that decides may propose nothing).
    kind: String,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    file: Option<String>,
    reason: String,
}

/// Why a call was not carried out.
enum Denied {
    /// Outside the grant: recorded in the result.
    Refused(String),
    /// It could not be done: the model is told.
    Error(String),
}

impl<'a> Toolbox<'a> {
    /// `root` is the workspace's directory (commands run there); `fetcher` only for a step
    /// granted `fetch_url`.
    pub fn new(spec: &'a StepSpec, workspace: &'a Workspace, root: &'a Path, fetcher: Option<Fetcher>) -> Toolbox<'a> {
        Toolbox {
            spec,
            workspace,
            root,
            fetcher,
            gateway: None,
            index: None,
            proposals: Vec::new(),
            refused: Vec::new(),
            written: BTreeSet::new(),
        }
    }

    /// The gateway `search_docs` embeds through.
    pub fn with_gateway(mut self, gateway: &'a crate::gateway::Gateway) -> Toolbox<'a> {
        self.gateway = Some(gateway);
        self
    }

    /// Carry out `call` with at most `time` left; what the model is told.
    pub fn call(&mut self, call: &ToolCall, time: Duration) -> String {
        let granted = |t: Tool| self.spec.tools.contains(&t);
        let outcome = match call.name.as_str() {
            "read_file" if granted(Tool::ReadFile) => args(&call.arguments).and_then(|a| self.read(&a)),
            "write_file" if granted(Tool::WriteFile) => args(&call.arguments).and_then(|a| self.write(&a)),
            "list_files" if granted(Tool::ListFiles) => args(&call.arguments).and_then(|a| self.list(&a)),
            "run_command" if granted(Tool::RunCommand) => args(&call.arguments).and_then(|a| self.run(&a, time)),
            "fetch_url" if granted(Tool::FetchUrl) => args(&call.arguments).and_then(|a| self.fetch(&a)),
            "propose" if granted(Tool::Propose) => args(&call.arguments).and_then(|a| self.propose(a)),
            "search_docs" if granted(Tool::SearchDocs) => args(&call.arguments).and_then(|a| self.search(&a, time)),
            other => Err(Denied::Refused(format!("{other} is not a tool this step was granted"))),
        };
        match outcome {
            Ok(text) => text,
            Err(Denied::Error(e)) => format!("error: {e}"),
            Err(Denied::Refused(reason)) => {
                if self.refused.len() < 100 {
                    self.refused
                        .push(RefusedCall { tool: call.name.chars().take(64).collect(), reason: reason.clone() });
                }
                format!("refused: {reason}")
            }
        }
    }

    /// The step's declared output `name` is not (yet) a file of `outputs/`.
    pub fn output_missing(&self, name: &str) -> bool {
        self.workspace.read(&format!("{OUTPUTS}{name}")).is_err()
    }

    /// Write declared output `name` (the runner's, from the model's answer).
    pub fn write_output(&mut self, name: &str, data: &[u8]) -> Result<(), crate::workspace::FileError> {
        self.workspace.write(&format!("{OUTPUTS}{name}"), data)?;
        self.written.insert(name.to_string());
        Ok(())
    }

    /// A workspace file's text, whole (none when it is missing, binary, or longer than a
    /// read reaches).
    pub fn read_text(&self, path: &str) -> Option<String> {
        let (data, more) = self.workspace.read(path).ok()?;
        (!more && !data.contains(&0)).then(|| String::from_utf8_lossy(&data).into_owned())
    }

    /// A folder's entries, one a line (at most `max`), if `path` is a folder.
    pub fn listing(&self, path: &str, max: usize) -> Option<String> {
        let (entries, more) = self.workspace.list(path).ok()?;
        let mut text = String::new();
        for e in entries.iter().take(max) {
            match e.kind {
                EntryKind::Directory => text.push_str(&format!("  {}/\n", e.name)),
                EntryKind::File => text.push_str(&format!("  {} ({} bytes)\n", e.name, e.size)),
                EntryKind::Link | EntryKind::Other => {}
            }
        }
        if more || entries.len() > max {
            text.push_str("  [more entries: list_files shows them]\n");
        }
        if entries.is_empty() {
            text.push_str("  (empty)\n");
        }
        Some(text)
    }

    /// The files of `inputs/` and `outputs/`, for an error that names what is there.
    fn files(&self) -> String {
        let mut names = Vec::new();
        for dir in ["inputs", "outputs"] {
            if let Ok((entries, _)) = self.workspace.list(dir) {
                for e in entries.iter().take(20) {
                    let slash = if e.kind == EntryKind::Directory { "/" } else { "" };
                    names.push(format!("{dir}/{}{slash}", e.name));
                }
            }
        }
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    fn read(&self, a: &ReadArgs) -> Result<String, Denied> {
        let (data, more, note) = match self.workspace.read(&a.path) {
            Ok((data, more)) => (data, more, String::new()),
            // A name given without its folder: the input of that name, said so.
            Err(crate::workspace::FileError::Io { .. })
                if self.workspace.read(&format!("inputs/{}", a.path)).is_ok() =>
            {
                let path = format!("inputs/{}", a.path);
                let (data, more) = self.workspace.read(&path).map_err(file_error)?;
                (data, more, format!("[{path}: paths are relative to your workspace]\n"))
            }
            Err(e @ crate::workspace::FileError::Io { .. }) => {
                return Err(Denied::Error(format!("{e}. The files there are: {}", self.files())));
            }
            Err(e) => return Err(file_error(e)),
        };
        if data.contains(&0) {
            return Err(Denied::Error(format!("{} is a binary file ({} bytes)", a.path, data.len())));
        }
        let start = a.offset.min(data.len());
        let end = (start + CHUNK).min(data.len());
        let mut text = note;
        text.push_str(&String::from_utf8_lossy(&data[start..end]));
        if end < data.len() {
            text.push_str(&format!("\n[{} more bytes: read again with offset {end}]", data.len() - end));
        } else if more {
            text.push_str("\n[the file goes on past what a read can reach]");
        }
        Ok(text)
    }

    fn write(&mut self, a: &WriteArgs) -> Result<String, Denied> {
        let Some(name) = a.path.strip_prefix(OUTPUTS).filter(|n| !n.is_empty()) else {
            let outputs: Vec<String> = self.spec.outputs.iter().map(|o| format!("{OUTPUTS}{o}")).collect();
            return Err(Denied::Refused(format!(
                "{:?}: write_file writes under outputs/ only (your outputs: {})",
                a.path,
                if outputs.is_empty() { "none".to_string() } else { outputs.join(", ") }
            )));
        };
        if self.spec.formats.contains_key(name) {
            return Err(Denied::Error(format!(
                "{}: this output has a set format; it is written from your answer when you stop calling tools",
                a.path
            )));
        }
        self.workspace.write(&a.path, a.content.as_bytes()).map_err(file_error)?;
        self.written.insert(name.to_string());
        Ok(format!("wrote {} bytes to {}", a.content.len(), a.path))
    }

    fn list(&self, a: &PathArgs) -> Result<String, Denied> {
        let path = a.path.as_deref().unwrap_or(".");
        let (entries, more) = self.workspace.list(path).map_err(file_error)?;
        let mut text = String::new();
        for e in &entries {
            match e.kind {
                EntryKind::Directory => text.push_str(&format!("{}/\n", e.name)),
                EntryKind::File => text.push_str(&format!("{} ({} bytes)\n", e.name, e.size)),
                EntryKind::Link => text.push_str(&format!("{} (a link, not followed)\n", e.name)),
                EntryKind::Other => text.push_str(&format!("{} (not a file)\n", e.name)),
            }
        }
        if entries.is_empty() {
            text.push_str("(empty)\n");
        }
        if more {
            text.push_str("[more entries not shown]\n");
        }
        Ok(text)
    }

    fn run(&self, a: &CommandArgs, time: Duration) -> Result<String, Denied> {
        let Some(argv) = self.spec.commands.iter().find(|c| c.join(" ") == a.command) else {
            return Err(Denied::Refused(format!("{:?} is not one of the step's commands", a.command)));
        };
        let ran = crate::command::run(argv, self.root, time.min(MAX_COMMAND_TIME))
            .map_err(|e| Denied::Error(format!("{}: {e}", a.command)))?;
        Ok(cut(ran.report()))
    }

    fn fetch(&self, a: &UrlArgs) -> Result<String, Denied> {
        let fetcher =
            self.fetcher.as_ref().ok_or_else(|| Denied::Refused("this step has no outbound network".into()))?;
        match fetcher.get(&a.url) {
            Ok(page) => {
                let note = if page.cut { " (cut)" } else { "" };
                Ok(cut(format!("HTTP {} {}{note}\n{}", page.status, page.content_type, page.text)))
            }
            Err(e) if e.to_string().contains("refused: ") => Err(Denied::Refused(e.to_string())),
            Err(e @ crate::fetch::FetchError::Scheme { .. }) => Err(Denied::Refused(e.to_string())),
            Err(e) => Err(Denied::Error(e.to_string())),
        }
    }

    fn search(&mut self, a: &SearchArgs, time: Duration) -> Result<String, Denied> {
        let gateway = self.gateway.ok_or_else(|| Denied::Error("no gateway to embed with".into()))?;
        if a.query.trim().is_empty() {
            return Err(Denied::Error("query: say what to look for".into()));
        }
        if self.spec.index_bytes == 0 {
            return Err(Denied::Error("the plan leaves no memory for a vector index (its L2 tier is empty)".into()));
        }
        if self.index.is_none() {
            let index = crate::search::Index::build(
                self.workspace,
                gateway,
                &self.spec.embedding_model,
                self.spec.index_bytes,
                time,
            )
            .map_err(Denied::Error)?;
            self.index = Some(index);
        }
        let index = self.index.as_ref().ok_or_else(|| Denied::Error("no index".into()))?;
        if index.is_empty() {
            return Ok("no documents to search: inputs/ holds no text".into());
        }
        let query = gateway
            .embed(&self.spec.embedding_model, std::slice::from_ref(&a.query), time)
            .map_err(|e| Denied::Error(format!("the embedding model: {e}")))?;
        let hits = index.nearest(&query[0], crate::search::TOP);
        let mut text = format!("{} of {} passages", hits.len(), index.len());
        if index.left_out > 0 {
            text.push_str(&format!(" ({} more left out: the index is full)", index.left_out));
        }
        text.push_str(":\n");
        for (i, (score, p)) in hits.iter().enumerate() {
            let excerpt: String = p.text.chars().take(CHUNK / crate::search::TOP / 2).collect();
            text.push_str(&format!(
                "[{}] {} lines {}-{} (score {score:.2})\n{excerpt}\n",
                i + 1,
                p.file,
                p.first_line,
                p.last_line
            ));
        }
        Ok(cut(text))
    }

    fn propose(&mut self, a: ProposeArgs) -> Result<String, Denied> {
        if a.kind == "none" && self.spec.decide {
            return Ok("nothing proposed: a human acts first.".into());
        }
        let kind: ProposalKind = serde_json::from_value(Value::String(a.kind.clone()))
            .map_err(|_| Denied::Error(format!("kind: {:?} is not a kind of proposal", a.kind)))?;
        if !self.spec.proposals.is_empty() && !self.spec.proposals.contains(&kind) {
            let allowed: Vec<&str> = self.spec.proposals.iter().map(|k| k.name()).collect();
            return Err(Denied::Refused(format!(
                "this step may propose {} only, not {}",
                allowed.join(", "),
                kind.name()
            )));
        }
        if self.proposals.len() >= MAX_PROPOSALS {
            return Err(Denied::Refused(format!("a step makes at most {MAX_PROPOSALS} proposals")));
        }
        let reason = a.reason.trim().to_string();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(Denied::Error(format!("reason: say why in 1 to {MAX_REASON} characters")));
        }
        let unit = || {
            let u = a.unit.clone().unwrap_or_default();
            if !name_ok(&u, "@") {
                Err(Denied::Error(format!("unit: {u:?} is not a unit name")))
            } else if self.spec.act_on.is_empty() {
                Err(Denied::Refused("unit: this run may act on no unit (it was given none)".into()))
            } else if !self.spec.act_on.iter().any(|p| aither_api::workflow::pattern_matches(p, &u)) {
                Err(Denied::Refused(format!(
                    "unit: this run may act on {} only, not {u:?}",
                    self.spec.act_on.join(", ")
                )))
            } else {
                Ok(u)
            }
        };
        let proposal = match kind {
            ProposalKind::Start => Proposal::Start { unit: unit()?, reason },
            ProposalKind::Stop => Proposal::Stop { unit: unit()?, reason },
            ProposalKind::Restart => Proposal::Restart { unit: unit()?, reason },
            ProposalKind::Reload => Proposal::Reload { reason },
            ProposalKind::PullModel => {
                let m = a.model.unwrap_or_default();
                if !name_ok(&m, "") {
                    return Err(Denied::Error(format!("model: {m:?} is not a model name")));
                }
                Proposal::PullModel { model: m, reason }
            }
            ProposalKind::Publish => {
                let f = a.file.unwrap_or_default();
                // This step's output, or an earlier step's handed over (agentd checks that a
                // step of the run wrote it).
                let name = f.strip_prefix("inputs/").or_else(|| f.strip_prefix(OUTPUTS)).unwrap_or(&f).to_string();
                let own = format!("{OUTPUTS}{name}");
                let handed_over = self.spec.inputs.contains(&name) && !f.starts_with(OUTPUTS);
                let path = if handed_over && (f.starts_with("inputs/") || self.workspace.read(&own).is_err()) {
                    format!("inputs/{name}")
                } else {
                    own
                };
                self.workspace.read(&path).map_err(|e| {
                    Denied::Error(format!(
                        "file: only a file of outputs/, or one an earlier step handed over in inputs/, can be published: {e}"
                    ))
                })?;
                Proposal::Publish { file: name, reason }
            }
        };
        let what = proposal.action();
        self.proposals.push(proposal);
        Ok(format!(
            "proposed: {what}. It is decided after this step ends, by a human unless the admin's policy approves it."
        ))
    }
}

/// A unit or model name: 1 to 128 of letters, digits, `.`, `_`, `-`, `:` and `extra`.
fn name_ok(s: &str, extra: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c) || extra.contains(c))
        && !s.starts_with(['.', '-'])
}

/// A path that leaves the workspace is outside the grant (refused and recorded); a missing
/// file is an error the model may correct.
fn file_error(e: crate::workspace::FileError) -> Denied {
    match e {
        crate::workspace::FileError::BadPath { .. } => Denied::Refused(e.to_string()),
        other => Denied::Error(other.to_string()),
    }
}

fn args<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Denied> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| Denied::Error(format!("the arguments: {e}")))
}

/// At most [`CHUNK`] bytes of `text`, cut on a character boundary, saying so.
fn cut(mut text: String) -> String {
    if text.len() > CHUNK {
        let mut end = CHUNK;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n[cut]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aither_api::workflow::{StepBudget, SCHEMA_VERSION};

    fn spec(tools: Vec<Tool>) -> StepSpec {
        StepSpec {
            schema_version: SCHEMA_VERSION,
            run_id: "r1".into(),
            workflow: "w".into(),
            step: "s".into(),
            model: "chat".into(),
            system_prompt: String::new(),
            instructions: String::new(),
            tools,
            commands: vec![vec!["/bin/echo".into(), "ok".into()]],
            inputs: vec![],
            outputs: vec![],
            budget: StepBudget { steps: 4, tokens: 100, seconds: 60, turn_tokens: 100 },
            embedding_model: "embedding".into(),
            index_bytes: 0,
            ..Default::default()
        }
    }

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall { id: "c".into(), name: name.into(), arguments: arguments.into() }
    }

    #[test]
    fn only_granted_tools_are_offered_and_carried_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::open(dir.path()).expect("ws");
        let s = spec(vec![Tool::ReadFile, Tool::WriteFile, Tool::RunCommand]);
        let names: Vec<String> =
            definitions(&s).iter().map(|d| d["function"]["name"].as_str().expect("name").to_string()).collect();
        assert_eq!(names, ["read_file", "write_file", "run_command"]);
        assert_eq!(
            definitions(&s)[2]["function"]["parameters"]["properties"]["command"]["enum"],
            json!(["/bin/echo ok"])
        );
        let mut tb = Toolbox::new(&s, &ws, dir.path(), None);
        let t = Duration::from_secs(10);
        assert_eq!(
            tb.call(&call("write_file", r#"{"path":"outputs/a.md","content":"hi"}"#), t),
            "wrote 2 bytes to outputs/a.md"
        );
        assert_eq!(tb.call(&call("read_file", r#"{"path":"outputs/a.md"}"#), t), "hi");
        assert!(tb.call(&call("run_command", r#"{"command":"/bin/echo ok"}"#), t).contains("--- stdout ---\nok"));
        assert!(tb.call(&call("read_file", r#"{"path":"missing"}"#), t).starts_with("error: "));
        assert!(tb.call(&call("read_file", r#"{"path":"a","mode":"x"}"#), t).starts_with("error: the arguments"));
        for (name, args) in [
            ("write_file", r#"{"path":"step.json","content":"{}"}"#),
            ("run_command", r#"{"command":"/bin/sh -c id"}"#),
            ("propose", r#"{"kind":"reload","reason":"x"}"#),
            ("fetch_url", r#"{"url":"http://example.com"}"#),
            ("search_docs", r#"{"query":"x"}"#),
            ("shell", "{}"),
        ] {
            assert!(tb.call(&call(name, args), t).starts_with("refused: "), "{name}");
        }
        assert_eq!(tb.refused.len(), 6);
        assert_eq!(tb.written, BTreeSet::from(["a.md".to_string()]));
        assert!(!dir.path().join("step.json").exists());
    }

    #[test]
    fn long_files_are_read_in_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("inputs")).expect("mkdir");
        std::fs::write(dir.path().join("inputs/log"), "x".repeat(CHUNK + 10)).expect("write");
        std::fs::write(dir.path().join("inputs/bin"), b"\x7fELF\0\0").expect("write");
        let ws = Workspace::open(dir.path()).expect("ws");
        let s = spec(vec![Tool::ReadFile, Tool::ListFiles]);
        let mut tb = Toolbox::new(&s, &ws, dir.path(), None);
        let t = Duration::from_secs(1);
        let first = tb.call(&call("read_file", r#"{"path":"inputs/log"}"#), t);
        assert!(first.ends_with(&format!("[10 more bytes: read again with offset {CHUNK}]")), "{}", &first[CHUNK..]);
        assert_eq!(
            tb.call(&call("read_file", &format!(r#"{{"path":"inputs/log","offset":{CHUNK}}}"#)), t),
            "x".repeat(10)
        );
        assert!(tb.call(&call("read_file", r#"{"path":"inputs/bin"}"#), t).contains("binary"));
        assert_eq!(
            tb.call(&call("list_files", r#"{"path":"inputs"}"#), t),
            format!("bin (6 bytes)\nlog ({} bytes)\n", CHUNK + 10)
        );
    }

    #[test]
    fn proposals_are_checked_before_they_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::open(dir.path()).expect("ws");
        ws.write("outputs/post.md", b"# Post").expect("write");
        std::fs::create_dir_all(dir.path().join("inputs")).expect("inputs");
        std::fs::write(dir.path().join("inputs/article.md"), "# Handed over").expect("input");
        std::fs::write(dir.path().join("inputs/notes.md"), "# Not an input of the step").expect("input");
        let mut s = spec(vec![Tool::Propose]);
        s.inputs = vec!["article.md".into()];
        let t = Duration::from_secs(1);
        // A run given no unit acts on none; its workflow's act_on names which it may.
        let mut tb = Toolbox::new(&s, &ws, dir.path(), None);
        let none = tb.call(&call("propose", r#"{"kind":"restart","unit":"infer-qwen","reason":"r"}"#), t);
        assert!(none.contains("this run may act on no unit"), "{none}");
        s.act_on = vec!["infer-*".into()];
        let mut tb = Toolbox::new(&s, &ws, dir.path(), None);
        let other = tb.call(&call("propose", r#"{"kind":"restart","unit":"sshd","reason":"r"}"#), t);
        assert!(other.contains("this run may act on infer-* only, not \"sshd\""), "{other}");
        let ok =
            tb.call(&call("propose", r#"{"kind":"restart","unit":"infer-qwen","reason":"it ran out of memory"}"#), t);
        assert!(ok.starts_with("proposed: restart infer-qwen."), "{ok}");
        assert!(tb
            .call(&call("propose", r#"{"kind":"publish","file":"outputs/post.md","reason":"ready"}"#), t)
            .starts_with("proposed"));
        let handed = tb.call(&call("propose", r#"{"kind":"publish","file":"inputs/article.md","reason":"edited"}"#), t);
        assert!(handed.starts_with("proposed: publish outputs/article.md"), "an earlier step's output: {handed}");
        for bad in [
            r#"{"kind":"publish","file":"inputs/notes.md","reason":"r"}"#,
            r#"{"kind":"restart","unit":"x; reboot","reason":"r"}"#,
            r#"{"kind":"restart","reason":"r"}"#,
            r#"{"kind":"publish","file":"../step.json","reason":"r"}"#,
            r#"{"kind":"publish","file":"missing.md","reason":"r"}"#,
            r#"{"kind":"pull_model","model":"a/b","reason":"r"}"#,
            r#"{"kind":"reboot","reason":"r"}"#,
            r#"{"kind":"reload","reason":"  "}"#,
        ] {
            assert!(tb.call(&call("propose", bad), t).starts_with("error: "), "{bad}");
        }
        assert_eq!(
            tb.proposals,
            vec![
                Proposal::Restart { unit: "infer-qwen".into(), reason: "it ran out of memory".into() },
                Proposal::Publish { file: "post.md".into(), reason: "ready".into() },
                Proposal::Publish { file: "article.md".into(), reason: "edited".into() },
            ]
        );
    }
}
