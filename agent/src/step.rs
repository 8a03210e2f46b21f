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

use aither_api::workflow::{OutputFormat, StepOutcome, StepResult, StepSpec, Tool, MAX_SUMMARY, SCHEMA_VERSION};
use serde_json::{json, Value};

use crate::fetch::Fetcher;
use crate::gateway::{Endpoint, Gateway, GatewayError, Reply};
use crate::tools::{Toolbox, OUTPUTS};
use crate::workspace::Workspace;

pub const STEP_FILE: &str = "step.json";
pub const RESULT_FILE: &str = "result.json";
pub const TRANSCRIPT_FILE: &str = "transcript.jsonl";

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
    let fetcher =
        spec.tools.contains(&Tool::FetchUrl).then(|| Fetcher::new(Duration::from_secs(30), &spec.fetch_allow, false));
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

/// How the step's turns are asked: a low temperature, so a small model keeps to the
/// evidence and the formats rather than wandering.
pub const TEMPERATURE: f64 = 0.2;

/// The frequency penalty of an output asked for as free text (none on a formatted one, whose
/// braces and quotes repeat by design).
pub const TEXT_FREQUENCY_PENALTY: f64 = 0.5;

/// The conversation: the briefing with the evidence given inline; then, unless the step only
/// reads and writes its workspace and all it needs is in the briefing (a *direct* step), the
/// tool turns until the model stops calling tools (a call repeated or errors in a row end
/// them early); then each declared output still missing, asked for as the model's whole
/// answer (constrained by its format, if it has one) and written by the runner.
fn converse(
    spec: &StepSpec,
    gateway: &Gateway,
    tools: &mut Toolbox,
    transcript: &mut Transcript,
    deadline: Instant,
    result: &mut StepResult,
) -> StepOutcome {
    let time = |deadline: Instant| deadline.saturating_duration_since(Instant::now());
    let evidence = crate::evidence::gather(spec, tools, time(deadline));
    for (name, arguments, answer) in &evidence.calls {
        transcript.record(&json!({"event": "tool", "turn": 0, "name": name, "arguments": arguments, "answer": answer}));
    }
    let mut messages = vec![
        json!({"role": "system", "content": spec.system_prompt}),
        json!({"role": "user", "content": briefing(spec, &evidence)}),
    ];
    for m in &messages {
        transcript.record(&json!({"event": "message", "message": m}));
    }
    let mut turns = Turns { spec, gateway, transcript, deadline, result };
    // Everything it declares was written while its evidence was gathered (search_keep), and it
    // has nothing to propose: the step is done.
    let done = !spec.outputs.is_empty() && spec.outputs.iter().all(|o| !tools.output_missing(o));
    if done && !spec.decide && spec.propose_from.is_none() {
        turns.result.summary = format!("kept {}", spec.outputs.join(", "));
        return StepOutcome::Completed;
    }
    let acted = if let Some(from) = &spec.propose_from {
        propose_from(&mut turns, tools, from);
        Ok(())
    } else if spec.decide {
        decision(&mut turns, tools, &mut messages)
    } else if !evidence.direct {
        tool_turns(&mut turns, tools, &mut messages)
    } else {
        Ok(())
    };
    if let Err(outcome) = acted {
        return outcome;
    }
    // The declared outputs the model has not written, each its whole answer.
    for out in &spec.outputs {
        if !tools.output_missing(out) {
            continue;
        }
        let format = spec.formats.get(out);
        let path = format!("{OUTPUTS}{out}");
        let mut ask = match format {
            Some(OutputFormat::JsonSchema { .. }) => {
                format!("Now write {path}. Answer with the JSON document only.")
            }
            _ => format!("Now write {path}. Answer with the file's whole content only, no tool call."),
        };
        if !evidence.signatures.is_empty() {
            ask = format!("The known signature found: {}.\n{ask}", evidence.signatures.join(", "));
        }
        let nudge = json!({"role": "user", "content": ask});
        turns.transcript.record(&json!({"event": "message", "message": nudge}));
        messages.push(nudge);
        // The signatures found narrow the answer's property or rule, when the step says which
        // (to the first of them in the format's own order, when it says so).
        let labels = match (format, &spec.narrow) {
            (Some(f), Some(name)) if spec.narrow_first => first_in_order(f, name, &evidence.signatures),
            _ => evidence.signatures.clone(),
        };
        let labels = &labels;
        let format = format.map(|f| match (f, &spec.narrow) {
            (OutputFormat::JsonSchema { schema }, Some(property)) => {
                OutputFormat::JsonSchema { schema: narrowed(schema, property, labels) }
            }
            (OutputFormat::Grammar { gbnf }, Some(rule)) => {
                OutputFormat::Grammar { gbnf: narrowed_grammar(gbnf, rule, labels) }
            }
            (f, None) => f.clone(),
        });
        // A citation names one of the documents the step was given.
        let format = match (format, &spec.cite) {
            (Some(OutputFormat::Grammar { gbnf }), Some(rule)) => {
                Some(OutputFormat::Grammar { gbnf: chosen_from(&gbnf, rule, &evidence.documents) })
            }
            (format, _) => format,
        };
        let reply = match turns.ask(&messages, |request| match &format {
            Some(OutputFormat::JsonSchema { schema }) => {
                request["response_format"] =
                    json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}});
            }
            // Free text, and a grammar's free parts: a small model that starts repeating
            // itself does not stop.
            Some(OutputFormat::Grammar { gbnf }) => {
                request["grammar"] = json!(gbnf);
                request["frequency_penalty"] = json!(TEXT_FREQUENCY_PENALTY);
            }
            None => request["frequency_penalty"] = json!(TEXT_FREQUENCY_PENALTY),
        }) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        messages.push(reply.message.clone());
        let content = unfence(&reply.content);
        if content.trim().is_empty() {
            return StepOutcome::Failed { reason: format!("the model gave no content for {path}") };
        }
        if let Err(e) = tools.write_output(out, content.as_bytes()) {
            return StepOutcome::Failed { reason: format!("{path}: {e}") };
        }
        turns.transcript.record(&json!({"event": "output", "file": path, "bytes": content.len()}));
    }
    StepOutcome::Completed
}

/// What every turn shares: the step, the model, the record, the budget.
struct Turns<'a, 'b> {
    spec: &'a StepSpec,
    gateway: &'a Gateway,
    transcript: &'b mut Transcript,
    deadline: Instant,
    result: &'b mut StepResult,
}

impl Turns<'_, '_> {
    /// One turn within the budget: the request `shape` makes from the messages, asked with
    /// the turn's share of the tokens left (fewer when the conversation nears the model's
    /// context); the reply, recorded and counted.
    fn ask(&mut self, messages: &[Value], shape: impl Fn(&mut Value)) -> Result<Reply, StepOutcome> {
        let exhausted = |budget: &str| StepOutcome::BudgetExhausted { budget: budget.into() };
        if self.result.turns >= self.spec.budget.steps {
            return Err(exhausted("steps"));
        }
        let tokens_left = u64::from(self.spec.budget.tokens).saturating_sub(self.result.completion_tokens);
        if tokens_left == 0 {
            return Err(exhausted("tokens"));
        }
        let Some(time_left) = self.deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return Err(exhausted("seconds"));
        };
        let mut max_tokens = tokens_left.min(u64::from(self.spec.budget.turn_tokens.max(1)));
        let reply = loop {
            let mut request = json!({"model": self.spec.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": TEMPERATURE});
            if let Some(seed) = self.spec.seed {
                request["seed"] = json!(seed.wrapping_add(u64::from(self.result.turns)));
            }
            shape(&mut request);
            match self.gateway.chat(&request, time_left) {
                Err(GatewayError::ContextFull { message }) if max_tokens / 2 >= MIN_TURN_TOKENS => {
                    max_tokens /= 2;
                    self.transcript
                        .record(&json!({"event": "context_full", "message": message, "max_tokens": max_tokens}));
                }
                Ok(r) => break r,
                Err(GatewayError::Timeout) => return Err(exhausted("seconds")),
                Err(GatewayError::ContextFull { message }) => {
                    return Err(StepOutcome::Failed {
                        reason: format!("the conversation no longer fits the model's context: {message}"),
                    })
                }
                Err(e) => return Err(StepOutcome::Failed { reason: e.to_string() }),
            }
        };
        self.result.turns += 1;
        self.result.prompt_tokens += reply.prompt_tokens;
        self.result.completion_tokens += reply.completion_tokens;
        self.transcript.record(&json!({"event": "message", "turn": self.result.turns, "message": reply.message,
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}}));
        if !reply.content.trim().is_empty() {
            self.result.summary = summary(&reply.content);
        }
        // Cut by the step's whole budget (not just by the turn's share): the step is over.
        if reply.finish_reason == "length" && max_tokens == tokens_left {
            return Err(exhausted("tokens"));
        }
        Ok(reply)
    }
}

/// How many times a call may be made again with the same arguments, and how many tool
/// errors in a row, before the tool turns end and the outputs are asked for.
const REPEATS: usize = 2;
const ERRORS_IN_A_ROW: usize = 3;

/// The tool turns: until the model answers without a call, repeats itself, or keeps erring.
fn tool_turns(turns: &mut Turns, tools: &mut Toolbox, messages: &mut Vec<Value>) -> Result<(), StepOutcome> {
    let definitions = crate::tools::definitions(turns.spec);
    let mut seen: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
    let mut repeats = 0;
    let mut errors = 0;
    loop {
        // The turns the outputs still to write will need are kept for them.
        let owed = turns.spec.outputs.iter().filter(|o| tools.output_missing(o)).count();
        if owed > 0
            && u64::from(turns.result.turns) + u64::try_from(owed).unwrap_or(u64::MAX)
                >= u64::from(turns.spec.budget.steps)
        {
            turns.transcript.record(&json!({"event": "tool_turns_ended", "left_for_outputs": owed}));
            return Ok(());
        }
        let reply = turns.ask(messages, |request| {
            if !definitions.is_empty() {
                request["tools"] = Value::Array(definitions.clone());
                request["tool_choice"] = json!("auto");
                // One call a turn: a small model that may answer with several repeats itself.
                request["parallel_tool_calls"] = json!(false);
            }
        })?;
        messages.push(reply.message.clone());
        if reply.tool_calls.is_empty() {
            return Ok(());
        }
        let mut stop = false;
        for call in &reply.tool_calls {
            let key = (call.name.clone(), canonical(&call.arguments));
            let answer = if let Some(turn) = seen.get(&key) {
                repeats += 1;
                stop |= repeats >= REPEATS;
                format!(
                    "You already called {} with these arguments (turn {turn}); the answer is the same. \
                     Do not call it again: use what you have and write your outputs.",
                    call.name
                )
            } else {
                seen.insert(key, turns.result.turns as usize);
                let time = turns.deadline.saturating_duration_since(Instant::now());
                tools.call(call, time)
            };
            if answer.starts_with("error: ") || answer.starts_with("refused: ") {
                errors += 1;
                stop |= errors >= ERRORS_IN_A_ROW;
            } else {
                errors = 0;
            }
            turns.transcript.record(&json!({"event": "tool", "turn": turns.result.turns, "name": call.name,
                "arguments": call.arguments, "answer": answer}));
            messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": answer}));
        }
        if stop {
            turns
                .transcript
                .record(&json!({"event": "tool_turns_ended", "repeats": repeats, "errors_in_a_row": errors}));
            return Ok(());
        }
    }
}

/// `schema` with `property` narrowed to the `labels` of the known signatures found: the
/// branches of a top-level `anyOf` whose `property` is one of them, or an `enum` of the
/// object's cut to them. When none would be left (or nothing was found), `schema` as it is.
pub fn narrowed(schema: &Value, property: &str, labels: &[String]) -> Value {
    let allowed = |v: &Value| v.as_str().is_some_and(|s| labels.iter().any(|l| l == s));
    if labels.is_empty() {
        return schema.clone();
    }
    let mut out = schema.clone();
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let kept: Vec<Value> = branches
            .iter()
            .filter(|b| {
                let p = &b["properties"][property];
                allowed(&p["const"]) || p["enum"].as_array().is_some_and(|e| e.iter().any(allowed))
            })
            .cloned()
            .collect();
        if !kept.is_empty() {
            out["anyOf"] = Value::Array(kept);
        }
    } else if let Some(values) = schema["properties"][property]["enum"].as_array() {
        let kept: Vec<Value> = values.iter().filter(|v| allowed(v)).cloned().collect();
        if !kept.is_empty() {
            out["properties"][property]["enum"] = Value::Array(kept);
        }
    }
    out
}

/// Of the `labels` found, the one the format lists first among the values of its property
/// or rule `name` (the step's order of precedence); all of them when it lists none.
pub fn first_in_order(format: &OutputFormat, name: &str, labels: &[String]) -> Vec<String> {
    let values: Vec<String> = match format {
        OutputFormat::Grammar { gbnf } => gbnf
            .lines()
            .filter_map(|l| aither_api::workflow::literal_choice(l, name))
            .flatten()
            .map(|(text, _)| text)
            .collect(),
        OutputFormat::JsonSchema { schema } => {
            let of = |p: &Value| -> Vec<Value> {
                p.get("const").cloned().into_iter().chain(p["enum"].as_array().cloned().unwrap_or_default()).collect()
            };
            let listed = match schema.get("anyOf").and_then(Value::as_array) {
                Some(branches) => branches.iter().flat_map(|b| of(&b["properties"][name])).collect(),
                None => of(&schema["properties"][name]),
            };
            listed.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
    };
    values.into_iter().find(|v| labels.contains(v)).map_or_else(|| labels.to_vec(), |v| vec![v])
}

/// `gbnf` with its one-line `rule` made the choice of `names` (plain names only: letters,
/// digits, `._-`), in their order. No names: `gbnf` as it is.
pub fn chosen_from(gbnf: &str, rule: &str, names: &[String]) -> String {
    let plain =
        |n: &&String| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let choice: Vec<String> = names.iter().filter(plain).map(|n| format!("\"{n}\"")).collect();
    if choice.is_empty() {
        return gbnf.to_string();
    }
    let mut done = false;
    let lines: Vec<String> = gbnf
        .lines()
        .map(|line| {
            if aither_api::workflow::rule_body(line, rule).is_some() && !done {
                done = true;
                format!("{rule} ::= {}", choice.join(" | "))
            } else {
                line.to_string()
            }
        })
        .collect();
    lines.join("\n")
}

/// `gbnf` with its `rule`, when that is a choice of quoted literals (`verdict ::= "a" | "b"`),
/// cut to the literals that are `labels` of the known signatures found. When none would be
/// left (or nothing was found, or the rule is not such a choice), `gbnf` as it is.
pub fn narrowed_grammar(gbnf: &str, rule: &str, labels: &[String]) -> String {
    let mut out = Vec::new();
    let mut changed = false;
    for line in gbnf.lines() {
        let kept = aither_api::workflow::literal_choice(line, rule).map(|literals| {
            literals.into_iter().filter(|(text, _)| labels.iter().any(|l| l == text)).map(|(_, quoted)| quoted)
        });
        match kept.map(Iterator::collect::<Vec<_>>) {
            Some(kept) if !kept.is_empty() && !changed => {
                out.push(format!("{rule} ::= {}", kept.join(" | ")));
                changed = true;
            }
            _ => out.push(line.to_string()),
        }
    }
    if changed {
        out.join("\n")
    } else {
        gbnf.to_string()
    }
}

/// A step whose proposal is a field of an earlier step's constrained answer: made from it,
/// through the same checks as a call of the model's, without asking the model again.
fn propose_from(turns: &mut Turns, tools: &mut Toolbox, from: &aither_api::workflow::ProposeFrom) {
    let path = format!("inputs/{}", from.input);
    let doc = tools.read_text(&path).and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let field = |name: &str| doc.as_ref().and_then(|d| d.get(name)).and_then(Value::as_str).map(str::to_string);
    let answer = match (field(&from.kind), field(&from.reason)) {
        (Some(kind), _) if kind == "none" => format!("nothing proposed: {path} says none"),
        (Some(kind), reason) => {
            let mut args = json!({"kind": kind, "reason": reason.unwrap_or_else(|| format!("as {path} says"))});
            if let Some(unit) = turns.spec.act_on.first() {
                args["unit"] = json!(unit);
            }
            let call = crate::gateway::ToolCall {
                id: "propose_from".into(),
                name: "propose".into(),
                arguments: args.to_string(),
            };
            let time = turns.deadline.saturating_duration_since(Instant::now());
            tools.call(&call, time)
        }
        (None, _) => format!("error: {path} has no field {:?} to propose from", from.kind),
    };
    turns.transcript.record(&json!({"event": "tool", "turn": 0, "name": "propose", "from": path, "answer": answer}));
    turns.result.summary = summary(&answer);
}

/// A step that decides: one turn that must call `propose` (its kind may be `none`), carried
/// out; a small model chooses among a few kinds far better than between calling and not.
fn decision(turns: &mut Turns, tools: &mut Toolbox, messages: &mut Vec<Value>) -> Result<(), StepOutcome> {
    let propose: Vec<Value> =
        crate::tools::definitions(turns.spec).into_iter().filter(|d| d["function"]["name"] == "propose").collect();
    let reply = turns.ask(messages, |request| {
        request["tools"] = Value::Array(propose.clone());
        request["tool_choice"] = json!({"type": "function", "function": {"name": "propose"}});
        request["parallel_tool_calls"] = json!(false);
    })?;
    messages.push(reply.message.clone());
    for call in &reply.tool_calls {
        let time = turns.deadline.saturating_duration_since(Instant::now());
        let answer = tools.call(call, time);
        turns.transcript.record(&json!({"event": "tool", "turn": turns.result.turns, "name": call.name,
            "arguments": call.arguments, "answer": answer}));
        messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": answer}));
    }
    Ok(())
}

/// A call's arguments as canonical JSON (key order and spacing aside), to tell a repeat.
fn canonical(arguments: &str) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let ordered: std::collections::BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::to_value(ordered).unwrap_or(Value::Null)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::from_str::<Value>(arguments).map_or_else(|_| arguments.trim().to_string(), |v| sorted(&v).to_string())
}

/// An answer that is one fenced block (```markdown … ```): its inside.
fn unfence(content: &str) -> String {
    let t = content.trim();
    if let Some(rest) = t.strip_prefix("```") {
        if let Some(body) = rest.strip_suffix("```") {
            // The fence's info string (```json) ends at the first line break.
            return body.split_once('\n').map_or(body, |(_, b)| b).trim_end().to_string() + "\n";
        }
    }
    let mut out = content.trim().to_string();
    out.push('\n');
    out
}

/// The fewest tokens a turn asks for when the conversation nears the model's context.
const MIN_TURN_TOKENS: u64 = 32;

/// The first user message: the step's instructions and what it has to work with, the
/// evidence that fits given inline.
fn briefing(spec: &StepSpec, evidence: &crate::evidence::Evidence) -> String {
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
        text.push_str(&format!("Your outputs: {}.\n", list.join(", ")));
    }
    if spec.tools.contains(&Tool::RunCommand) && !spec.commands.is_empty() && !evidence.direct {
        let list: Vec<String> = spec.commands.iter().map(|c| c.join(" ")).collect();
        text.push_str(&format!("Commands you may run with run_command: {}.\n", list.join("; ")));
    }
    if !evidence.text.is_empty() {
        text.push('\n');
        text.push_str(&evidence.text);
    }
    if !evidence.direct {
        text.push_str("\nWhen you have what you need, answer with a short summary and no tool call.");
    }
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
