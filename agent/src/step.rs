//! One step, start to end: the step read from `step.json`, the conversation with the model
//! (one chat completion per turn, the granted tools offered, each call carried out and its
//! answer given back), the budget kept, and `result.json` left beside the step. Every message
//! goes to `transcript.jsonl` as it happens, so a step cut short still shows what it did.
//!
//! The workspace, as agentd lays it out: `step.json`, `inputs/` (what the step was given),
//! `outputs/` (what it writes); the agent adds `transcript.jsonl` and `result.json`.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use aither_api::workflow::{StepOutcome, StepResult, StepSpec, Tool, SCHEMA_VERSION};
use serde_json::{json, Value};

use crate::fetch::Fetcher;
use crate::gateway::{Endpoint, Gateway, GatewayError};
use crate::tools::{Toolbox, OUTPUTS};
use crate::workspace::Workspace;

pub const STEP_FILE: &str = "step.json";
pub const RESULT_FILE: &str = "result.json";
pub const TRANSCRIPT_FILE: &str = "transcript.jsonl";
/// The most of the model's last answer kept in the result.
const MAX_SUMMARY: usize = 4096;

/// The step cannot even begin (its document is missing or wrong).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{file}: {problem}")]
    Spec { file: String, problem: String },
    #[error("{file}: {problem}")]
    Write { file: String, problem: String },
}

/// Read `step.json` from the workspace at `root`.
pub fn read_spec(root: &Path, workspace: &Workspace) -> Result<StepSpec, StepError> {
    let file = root.join(STEP_FILE).display().to_string();
    let bad = |problem: String| StepError::Spec { file: file.clone(), problem };
    let (data, cut) = workspace.read(STEP_FILE).map_err(|e| bad(e.to_string()))?;
    if cut {
        return Err(bad("too large".into()));
    }
    let spec: StepSpec = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
    if spec.schema_version != SCHEMA_VERSION {
        return Err(bad(format!(
            "schema_version {} is not {SCHEMA_VERSION}, the version this agent reads",
            spec.schema_version
        )));
    }
    Ok(spec)
}

/// Run the step in the workspace at `root`, talking to the model at `endpoint` (the gateway's
/// socket); the result, also written to `result.json`.
pub fn run(root: &Path, endpoint: &Endpoint) -> Result<StepResult, StepError> {
    let started = Instant::now();
    let workspace = Workspace::open(root)
        .map_err(|e| StepError::Spec { file: root.display().to_string(), problem: e.to_string() })?;
    let spec = read_spec(root, &workspace)?;
    let deadline = started + Duration::from_secs(u64::from(spec.budget.seconds));
    let mut transcript = Transcript::open(root);
    let fetcher = spec.tools.contains(&Tool::FetchUrl).then(|| Fetcher::new(Duration::from_secs(30), false));
    let gateway_client = Gateway::new(endpoint.clone());
    let mut tools = Toolbox::new(&spec, &workspace, root, fetcher);
    if let Ok(gw) = &gateway_client {
        tools = tools.with_gateway(gw);
    }
    let mut result = StepResult {
        schema_version: SCHEMA_VERSION,
        run_id: spec.run_id.clone(),
        step: spec.step.clone(),
        outcome: StepOutcome::Completed,
        turns: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        seconds: 0.0,
        summary: String::new(),
        context: aither_sys::selinux::enabled(Path::new("/sys"))
            .then(|| aither_sys::selinux::current_context(Path::new("/proc")).ok())
            .flatten(),
        outputs: Vec::new(),
        proposals: Vec::new(),
        refused: Vec::new(),
    };
    result.outcome = match &gateway_client {
        Ok(gw) => converse(&spec, gw, &mut tools, &mut transcript, deadline, &mut result),
        Err(e) => StepOutcome::Failed { reason: format!("cannot start the gateway client: {e}") },
    };
    result.seconds = started.elapsed().as_secs_f64();
    result.outputs = tools.written.iter().cloned().collect();
    result.proposals = std::mem::take(&mut tools.proposals);
    result.refused = std::mem::take(&mut tools.refused);
    transcript.record(&json!({"event": "end", "result": &result}));
    let text = serde_json::to_vec_pretty(&result)
        .map_err(|e| StepError::Write { file: RESULT_FILE.into(), problem: e.to_string() })?;
    workspace
        .write(RESULT_FILE, &text)
        .map_err(|e| StepError::Write { file: root.join(RESULT_FILE).display().to_string(), problem: e.to_string() })?;
    Ok(result)
}

/// The turns, until the model stops calling tools or a budget runs out.
fn converse(
    spec: &StepSpec,
    gateway: &Gateway,
    tools: &mut Toolbox,
    transcript: &mut Transcript,
    deadline: Instant,
    result: &mut StepResult,
) -> StepOutcome {
    let definitions = crate::tools::definitions(spec);
    let mut messages = vec![
        json!({"role": "system", "content": spec.system_prompt}),
        json!({"role": "user", "content": briefing(spec)}),
    ];
    for m in &messages {
        transcript.record(&json!({"event": "message", "message": m}));
    }
    let mut reminded = false;
    // After a reminder, the one turn that must write the missing outputs: only write_file,
    // its path one of them, and the call required (a grammar makes the model's call valid).
    let mut forced: Option<Vec<String>> = None;
    loop {
        let exhausted = |budget: &str| StepOutcome::BudgetExhausted { budget: budget.into() };
        if result.turns >= spec.budget.steps {
            return exhausted("steps");
        }
        let tokens_left = u64::from(spec.budget.tokens).saturating_sub(result.completion_tokens);
        if tokens_left == 0 {
            return exhausted("tokens");
        }
        let Some(time_left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return exhausted("seconds");
        };
        // A turn gets its share of the budget; a turn that must write a missing output gets
        // its share of what is left among the files still missing (a file cut in the middle
        // is no output).
        let forced_turn = forced.as_ref().map(Vec::len);
        let mut max_tokens = match forced_turn {
            Some(files) => tokens_left / u64::try_from(files.max(1)).unwrap_or(1),
            None => tokens_left.min(u64::from(spec.budget.turn_tokens.max(1))),
        };
        let paths = forced.take();
        // A conversation grown past the model's context: the turn asks for fewer tokens, down
        // to a floor below which nothing useful fits.
        let reply = loop {
            let mut request = json!({"model": spec.model, "messages": messages, "max_tokens": max_tokens});
            if let Some(seed) = spec.seed {
                request["seed"] = json!(seed.wrapping_add(u64::from(result.turns)));
            }
            if let Some(paths) = &paths {
                // The call's own JSON (its name, the path, quotes, the whitespace a grammar
                // allows) takes tokens of its own, and a character of content may take more than
                // one (an escape): the content is bounded to what surely ends in time.
                let chars = (max_tokens.saturating_sub(FORCED_CALL_TOKENS) / 2).max(1);
                request["tools"] = json!([crate::tools::write_only(paths, chars)]);
                request["tool_choice"] = json!({"type": "function", "function": {"name": "write_file"}});
            } else if !definitions.is_empty() {
                request["tools"] = Value::Array(definitions.clone());
                request["tool_choice"] = json!("auto");
            }
            match gateway.chat(&request, time_left) {
                Err(GatewayError::ContextFull { message }) if max_tokens / 2 >= MIN_TURN_TOKENS => {
                    max_tokens /= 2;
                    transcript.record(&json!({"event": "context_full", "message": message, "max_tokens": max_tokens}));
                }
                Ok(r) => break r,
                Err(GatewayError::Timeout) => return exhausted("seconds"),
                Err(GatewayError::ContextFull { message }) => {
                    return StepOutcome::Failed {
                        reason: format!("the conversation no longer fits the model's context: {message}"),
                    }
                }
                Err(e) => return StepOutcome::Failed { reason: e.to_string() },
            }
        };
        result.turns += 1;
        result.prompt_tokens += reply.prompt_tokens;
        result.completion_tokens += reply.completion_tokens;
        transcript.record(&json!({"event": "message", "turn": result.turns, "message": reply.message,
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}}));
        if !reply.content.trim().is_empty() {
            result.summary = summary(&reply.content);
        }
        messages.push(reply.message.clone());
        if reply.tool_calls.is_empty() {
            // Cut by the step's budget (not just by the turn's share of it): the step is over.
            if reply.finish_reason == "length" && max_tokens == tokens_left {
                return exhausted("tokens");
            }
            let missing: Vec<&String> = spec.outputs.iter().filter(|o| tools.output_missing(o)).collect();
            if missing.is_empty() {
                return StepOutcome::Completed;
            }
            let names = missing.iter().map(|m| format!("{OUTPUTS}{m}")).collect::<Vec<_>>().join(", ");
            if reminded || !spec.tools.contains(&Tool::WriteFile) {
                return StepOutcome::Failed { reason: format!("the step ended without writing {names}") };
            }
            reminded = true;
            forced = Some(missing.iter().map(|m| format!("{OUTPUTS}{m}")).collect());
            let nudge = json!({"role": "user", "content": format!("You have not written {names} yet. Write it with write_file now.")});
            transcript.record(&json!({"event": "message", "message": nudge}));
            messages.push(nudge);
            continue;
        }
        for call in &reply.tool_calls {
            let time = deadline.saturating_duration_since(Instant::now());
            let answer = tools.call(call, time);
            transcript.record(&json!({"event": "tool", "turn": result.turns, "name": call.name,
                "arguments": call.arguments, "answer": answer}));
            messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": answer}));
        }
        // The turns that must write the missing outputs end the step: each writes one (and the
        // next is forced for those still missing), or the step failed to.
        if let Some(before) = forced_turn {
            let missing: Vec<String> =
                spec.outputs.iter().filter(|o| tools.output_missing(o)).map(|m| format!("{OUTPUTS}{m}")).collect();
            if missing.is_empty() {
                return StepOutcome::Completed;
            }
            if missing.len() == before {
                return StepOutcome::Failed {
                    reason: format!("the step ended without writing {}", missing.join(", ")),
                };
            }
            forced = Some(missing);
        }
    }
}

/// The fewest tokens a turn asks for when the conversation nears the model's context.
const MIN_TURN_TOKENS: u64 = 32;

/// The tokens a forced `write_file` call's own JSON may take around its content.
const FORCED_CALL_TOKENS: u64 = 128;

/// The first user message: the step's instructions and what it has to work with.
fn briefing(spec: &StepSpec) -> String {
    let mut text = spec.instructions.trim().to_string();
    text.push_str("\n\n");
    if spec.inputs.is_empty() {
        text.push_str("You were given no input files.\n");
    } else {
        let list: Vec<String> = spec.inputs.iter().map(|i| format!("inputs/{i}")).collect();
        text.push_str(&format!("Your input files: {}.\n", list.join(", ")));
    }
    if !spec.outputs.is_empty() {
        let list: Vec<String> = spec.outputs.iter().map(|o| format!("{OUTPUTS}{o}")).collect();
        text.push_str(&format!("Write these files with write_file: {}.\n", list.join(", ")));
    }
    if spec.tools.contains(&Tool::RunCommand) && !spec.commands.is_empty() {
        let list: Vec<String> = spec.commands.iter().map(|c| c.join(" ")).collect();
        text.push_str(&format!("Commands you may run with run_command: {}.\n", list.join("; ")));
    }
    text.push_str("When you are done, answer with a short summary and no tool call.");
    text
}

fn summary(content: &str) -> String {
    let mut s = content.trim().to_string();
    if s.len() > MAX_SUMMARY {
        let mut end = MAX_SUMMARY;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// `transcript.jsonl`: one JSON object per line, appended as things happen. Writing it is
/// best effort: a transcript that cannot be written never stops the step.
#[derive(Debug)]
struct Transcript {
    file: Option<std::fs::File>,
}

impl Transcript {
    fn open(root: &Path) -> Transcript {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().try_into().unwrap_or(0))
            .open(root.join(TRANSCRIPT_FILE));
        if let Err(e) = &file {
            eprintln!("aither-agent: {}: {e}; going on without a transcript", root.join(TRANSCRIPT_FILE).display());
        }
        Transcript { file: file.ok() }
    }

    fn record(&mut self, event: &Value) {
        if let Some(f) = &mut self.file {
            let mut line = event.to_string();
            line.push('\n');
            if f.write_all(line.as_bytes()).is_err() {
                self.file = None;
            }
        }
    }
}
