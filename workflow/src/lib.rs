//! # aither-workflow: workflow definitions
//!
//! Workflows as data: named steps, each a role (system prompt, model, tools, budget) that an
//! agent plays, with inputs handed over from earlier steps or gathered by agentd, and the
//! triggers that start a run.
//!
//! Shipped workflows are `/usr/share/aither/workflows/NAME.toml`; the admin's are
//! `/etc/aither/workflows.d/NAME.toml` (a file of the same name replaces the shipped one).
//! Only the admin's files may auto-approve a kind of proposal: nothing is approved without a
//! human by default. Every problem names the file, the line where TOML knows it, and the key;
//! a bad file is refused alone, the others load.
//!
//! The definitions are pure data: agentd runs them (its workflow engine), and the eval
//! (`aither-eval`) runs the same steps against fixtures, so both see the same step specs
//! ([`Workflow::step_spec`]). The five packs are carried here too ([`BUILT_IN_PACKS`]).
//!
//! ```toml
//! [workflow]
//! description = "Find why a unit failed and propose the fix"
//!
//! [trigger]
//! manual = true
//! units = ["infer-*"]          # a matching unit entering failed or gave-up
//! calendar = "daily 03:30"     # UTC; also "hourly", "weekly mon 03:30", "every 6h"
//!
//! [[step]]
//! name = "diagnose"
//! model = "chat"
//! system_prompt = "You are the appliance's diagnostician."
//! instructions = "Read the journal and say what failed."
//! tools = ["read_file", "list_files"]
//! outputs = ["diagnosis.md"]
//! inputs = [{ collect = "journal", unit = "trigger" }]
//! budget = { steps = 8, tokens = 4000, seconds = 300 }
//! ```

mod commands;
mod enabled;
mod inputs;
mod packs;
pub mod result;
mod schedule;
mod triggers;

use commands::check_command;
pub use commands::{fill_command, fill_text, placeholders};
use inputs::{input_of, run_inputs};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aither_api::plan::Role;
pub use aither_api::workflow::{InputKind, ProposalKind, RunInput, StepBudget, Tool};
pub use enabled::{Enabled, ENABLED_FILE};
pub use packs::{BUILT_IN as BUILT_IN_PACKS, BUILT_IN_DIR};
pub use schedule::Schedule;
use serde::Deserialize;
pub use triggers::Triggers;

/// Where the shipped workflows are, under the root.
pub const SHIPPED_DIR: &str = "usr/share/aither/workflows";
/// Where the admin's workflows are, under the root.
pub const ADMIN_DIR: &str = "etc/aither/workflows.d";

/// A step agent's network: the gateway only (the default), none, or outbound too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    None,
    #[default]
    Gateway,
    Outbound,
}

/// Where a step input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A declared output of an earlier step.
    Output { step: String, file: String },
    /// agentd's status document.
    Status,
    /// The journal of a unit (`None`: the unit whose failure triggered the run).
    Journal { unit: Option<String> },
    /// The files of a directory: a fixed one, or the one a run input names.
    Directory { path: DirectoryOf },
    /// The run's proposals so far and what became of them; the step waits until each is
    /// decided.
    Approvals,
}

impl Input {
    /// The file (or directory) the input becomes under the step's `inputs/`.
    pub fn file_name(&self, trigger_unit: Option<&str>) -> String {
        match self {
            Input::Output { file, .. } => file.clone(),
            Input::Status => "status.json".into(),
            Input::Approvals => "approvals.json".into(),
            Input::Journal { unit } => format!("journal-{}.txt", unit.as_deref().or(trigger_unit).unwrap_or("unit")),
            Input::Directory { path: DirectoryOf::RunInput(name) } => name.clone(),
            Input::Directory { path: DirectoryOf::Path(path) } => {
                path.file_name().map_or_else(|| "directory".into(), |n| n.to_string_lossy().into_owned())
            }
        }
    }
}

/// Which directory a `directory` input copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryOf {
    Path(PathBuf),
    /// The run input of this name (of kind `directory`).
    RunInput(String),
}

/// Where a workflow was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// One of the packs agentd carries (a system without `/usr/share/aither/workflows`).
    BuiltIn,
    /// `/usr/share/aither/workflows`: off until enabled.
    Shipped,
    /// `/etc/aither/workflows.d`: on until disabled.
    Admin,
}

/// One step: a role an agent plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub model: Role,
    pub system_prompt: String,
    pub instructions: String,
    pub tools: Vec<Tool>,
    /// The commands `run_command` may run: absolute program paths, each with fixed leading
    /// arguments.
    pub commands: Vec<Vec<String>>,
    pub network: Network,
    /// Networks `fetch_url` may reach besides the public internet.
    pub fetch_allow: Vec<String>,
    pub inputs: Vec<Input>,
    pub outputs: Vec<String>,
    pub budget: StepBudget,
    /// Outputs whose content is constrained, by file name (the runner writes them from the
    /// model's constrained answers).
    pub formats: BTreeMap<String, aither_api::workflow::OutputFormat>,
    /// Indices into `commands`: run before the first turn, their output given inline.
    pub run_first: Vec<usize>,
    /// A query (with `{NAME}`s of run inputs) searched before the first turn.
    pub search_first: Option<String>,
    /// The output the passages found first are kept as.
    pub search_keep: Option<String>,
    /// The kinds of proposal the step may make (empty: any).
    pub proposals: Vec<ProposalKind>,
    /// The step's one turn must call `propose`, `none` among its kinds.
    pub decide: bool,
    /// It answers its outputs straight after its evidence, without tool turns.
    pub direct: bool,
    /// Known signatures found in its inputs and named in its briefing: label → words.
    pub signatures: BTreeMap<String, Vec<String>>,
    /// The property of its JSON outputs the signatures found narrow.
    pub narrow: Option<String>,
    /// `narrow` keeps the first label found in the format's order.
    pub narrow_first: bool,
    /// The grammar rule made a choice of the document names its inputs name.
    pub cite: Option<String>,
    /// Its proposal, read from a field of one of its JSON inputs.
    pub propose_from: Option<aither_api::workflow::ProposeFrom>,
}

/// A workflow, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    /// The file it was read from.
    pub file: PathBuf,
    pub origin: Origin,
    pub triggers: Triggers,
    /// What a run is given (`--input NAME=VALUE`).
    pub inputs: Vec<RunInput>,
    pub steps: Vec<Step>,
    /// Kinds of proposal approved without asking (admin files only).
    pub auto_approve: Vec<ProposalKind>,
    /// The units a run given none (no `unit` input, no triggering unit) may propose to act on:
    /// names, or patterns with `*`.
    pub act_on: Vec<String>,
}

impl Workflow {
    /// A step waits for the decisions on the run's proposals before it starts.
    pub fn waits_for_approvals(&self, step: usize) -> bool {
        self.steps.get(step).is_some_and(|s| s.inputs.contains(&Input::Approvals))
    }

    /// What step `index` of run `run_id` is given in its `step.json`: its role, the run's
    /// inputs in its instructions, its commands with their `{NAME}`s filled in, `inputs` (the
    /// names of the files and directories staged under `inputs/`) and its share of the vector
    /// index's memory.
    pub fn step_spec(
        &self,
        index: usize,
        run_id: &str,
        run_inputs: &BTreeMap<String, String>,
        inputs: Vec<String>,
        index_bytes: u64,
    ) -> Result<aither_api::workflow::StepSpec, String> {
        let step = self.steps.get(index).ok_or_else(|| format!("{} has no step {index}", self.name))?;
        let mut instructions = step.instructions.clone();
        if !run_inputs.is_empty() {
            instructions.push_str("\n\nGiven for this run:");
            for (k, v) in run_inputs {
                instructions.push_str(&format!("\n- {k}: {v}"));
            }
        }
        Ok(aither_api::workflow::StepSpec {
            schema_version: aither_api::workflow::SCHEMA_VERSION,
            run_id: run_id.to_string(),
            workflow: self.name.clone(),
            step: step.name.clone(),
            model: step.model.name().to_string(),
            system_prompt: step.system_prompt.clone(),
            instructions,
            tools: step.tools.clone(),
            commands: step.commands.iter().map(|c| fill_command(c, run_inputs)).collect::<Result<_, _>>()?,
            inputs,
            outputs: step.outputs.clone(),
            budget: step.budget,
            embedding_model: "embedding".into(),
            index_bytes,
            seed: None,
            formats: step.formats.clone(),
            run_first: step
                .run_first
                .iter()
                .filter_map(|&i| step.commands.get(i))
                .map(|c| fill_command(c, run_inputs))
                .collect::<Result<_, _>>()?,
            search_first: step.search_first.as_ref().map(|q| fill_text(q, run_inputs)),
            search_keep: step.search_keep.clone(),
            act_on: run_inputs.get("unit").map_or_else(|| self.act_on.clone(), |u| vec![u.clone()]),
            fetch_allow: step.fetch_allow.clone(),
            proposals: step.proposals.clone(),
            decide: step.decide,
            direct: step.direct,
            signatures: step.signatures.clone(),
            narrow: step.narrow.clone(),
            narrow_first: step.narrow_first,
            cite: step.cite.clone(),
            propose_from: step.propose_from.clone(),
        })
    }
}

/// The units a run's proposals may act on: its `unit` input, else the unit whose failure
/// started it, else the workflow's `act_on` (none when it declares none): the model's reason
/// never widens it.
pub fn act_on(w: &Workflow, run: &aither_api::workflow::Run) -> Vec<String> {
    match run.inputs.get("unit").or(run.trigger_unit.as_ref()) {
        Some(u) => vec![u.clone()],
        None => w.act_on.clone(),
    }
}

/// A workflow file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct WorkflowError {
    pub file: String,
    /// `line N: …` or `key: …`.
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    workflow: HeaderDoc,
    #[serde(default)]
    trigger: Option<TriggerDoc>,
    #[serde(default)]
    inputs: BTreeMap<String, RunInputDoc>,
    step: Vec<StepDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunInputDoc {
    kind: InputKind,
    description: String,
    #[serde(default)]
    required: bool,
    default: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderDoc {
    description: String,
    #[serde(default)]
    auto_approve: Vec<ProposalKind>,
    #[serde(default)]
    act_on: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerDoc {
    #[serde(default = "yes")]
    manual: bool,
    #[serde(default)]
    units: Vec<String>,
    calendar: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDoc {
    name: String,
    model: Role,
    system_prompt: String,
    instructions: String,
    #[serde(default)]
    tools: Vec<Tool>,
    #[serde(default)]
    commands: Vec<Vec<String>>,
    #[serde(default)]
    network: Network,
    #[serde(default)]
    fetch_allow: Vec<String>,
    #[serde(default)]
    inputs: Vec<InputDoc>,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    budget: BudgetDoc,
    #[serde(default)]
    formats: BTreeMap<String, FormatDoc>,
    #[serde(default)]
    run_first: Vec<usize>,
    search_first: Option<String>,
    search_keep: Option<String>,
    #[serde(default)]
    proposals: Vec<ProposalKind>,
    #[serde(default)]
    decide: bool,
    #[serde(default)]
    direct: bool,
    #[serde(default)]
    signatures: BTreeMap<String, Vec<String>>,
    narrow: Option<String>,
    #[serde(default)]
    narrow_first: bool,
    cite: Option<String>,
    propose_from: Option<aither_api::workflow::ProposeFrom>,
}

/// An output's format: a JSON Schema (as JSON text) or a GBNF grammar.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatDoc {
    json_schema: Option<String>,
    grammar: Option<String>,
}

/// The largest schema or grammar a format may be.
const MAX_FORMAT_BYTES: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputDoc {
    from: Option<String>,
    file: Option<String>,
    collect: Option<String>,
    unit: Option<String>,
    path: Option<PathBuf>,
    input: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BudgetDoc {
    steps: Option<u32>,
    tokens: Option<u32>,
    seconds: Option<u32>,
    turn_tokens: Option<u32>,
}

/// Read every workflow under `root`: the shipped ones (the packs agentd carries where the
/// system has no shipped directory: dev mode, a test root), then the admin's (replacing a
/// shipped one of the same name). Bad files are returned as errors; the others load.
pub fn load(root: &Path) -> (BTreeMap<String, Workflow>, Vec<WorkflowError>) {
    let mut found = BTreeMap::new();
    let mut errors = Vec::new();
    let mut add = |parsed: Result<Workflow, WorkflowError>| match parsed {
        Ok(w) => {
            found.insert(w.name.clone(), w);
        }
        Err(e) => errors.push(e),
    };
    let shipped = root.join(SHIPPED_DIR);
    if !shipped.is_dir() {
        for (name, text) in packs::BUILT_IN {
            add(parse(&Path::new(packs::BUILT_IN_DIR).join(name), text, Origin::BuiltIn));
        }
    }
    for (dir, origin) in [(shipped, Origin::Shipped), (root.join(ADMIN_DIR), Origin::Admin)] {
        for file in aither_sys::paths::toml_files(&dir) {
            add(std::fs::read_to_string(&file)
                .map_err(|e| WorkflowError { file: file.display().to_string(), problem: e.to_string() })
                .and_then(|text| parse(&file, &text, origin)));
        }
    }
    (found, errors)
}

/// Parse and validate one workflow file read from `origin`.
pub fn parse(file: &Path, text: &str, origin: Origin) -> Result<Workflow, WorkflowError> {
    let admin = origin == Origin::Admin;
    let fail = |problem: String| WorkflowError { file: file.display().to_string(), problem };
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if !is_name(stem) {
        return Err(fail(format!(
            "the file name {stem:?} is not a workflow name (a lowercase letter, then up to 31 letters, digits or '-')"
        )));
    }
    let doc: FileDoc = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| format!("line {}: ", line_of(text, s.start))).unwrap_or_default();
        fail(format!("{at}{}", e.message()))
    })?;
    let bad = |key: String, problem: String| fail(format!("{key}: {problem}"));

    if doc.workflow.description.trim().is_empty() {
        return Err(bad("workflow.description".into(), "must not be empty".into()));
    }
    if !admin && !doc.workflow.auto_approve.is_empty() {
        return Err(bad(
            "workflow.auto_approve".into(),
            format!("only the admin's workflows ({}) may approve proposals without a human", ADMIN_DIR),
        ));
    }
    for (i, pattern) in doc.workflow.act_on.iter().enumerate() {
        if pattern.is_empty() || !pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@*".contains(&b)) {
            return Err(bad(format!("workflow.act_on[{i}]"), format!("{pattern:?} is not a unit name pattern")));
        }
    }
    let trigger = doc.trigger.unwrap_or(TriggerDoc { manual: true, units: Vec::new(), calendar: None });
    for (i, pattern) in trigger.units.iter().enumerate() {
        if pattern.is_empty() || !pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@*".contains(&b)) {
            return Err(bad(format!("trigger.units[{i}]"), format!("{pattern:?} is not a unit name pattern")));
        }
    }
    let calendar = match &trigger.calendar {
        Some(c) => Some(Schedule::parse(c).map_err(|p| bad("trigger.calendar".into(), p))?),
        None => None,
    };
    if !trigger.manual && trigger.units.is_empty() && calendar.is_none() {
        return Err(bad(
            "trigger".into(),
            "nothing starts this workflow (manual = false, no units, no calendar)".into(),
        ));
    }

    let inputs = run_inputs(doc.inputs, !trigger.units.is_empty()).map_err(|(k, p)| bad(k, p))?;

    if doc.step.is_empty() {
        return Err(bad("step".into(), "a workflow needs at least one [[step]]".into()));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(doc.step.len());
    for (i, s) in doc.step.into_iter().enumerate() {
        let key = |k: &str| format!("step[{i}].{k}");
        if !is_name(&s.name) {
            return Err(bad(
                key("name"),
                format!("{:?} is not a step name (a lowercase letter, then up to 31 letters, digits or '-')", s.name),
            ));
        }
        if steps.iter().any(|p| p.name == s.name) {
            return Err(bad(key("name"), format!("{:?} is used by an earlier step", s.name)));
        }
        if s.model == Role::Embedding {
            return Err(bad(key("model"), "a step converses: chat or code, not embedding".into()));
        }
        for (k, v) in [("system_prompt", &s.system_prompt), ("instructions", &s.instructions)] {
            if v.trim().is_empty() {
                return Err(bad(key(k), "must not be empty".into()));
            }
        }
        let mut tools = s.tools.clone();
        tools.sort();
        if tools.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad(key("tools"), "a tool is listed twice".into()));
        }
        if tools.contains(&Tool::FetchUrl) && s.network != Network::Outbound {
            return Err(bad(key("tools"), "fetch_url needs network = \"outbound\"".into()));
        }
        if s.network == Network::None {
            return Err(bad(
                key("network"),
                "a step talks to the model through the gateway: \"gateway\" or \"outbound\"".into(),
            ));
        }
        if !s.fetch_allow.is_empty() && !tools.contains(&Tool::FetchUrl) {
            return Err(bad(key("fetch_allow"), "names what fetch_url may reach, and fetch_url is not granted".into()));
        }
        for (n, net) in s.fetch_allow.iter().enumerate() {
            let k = format!("{}[{n}]", key("fetch_allow"));
            let parsed = aither_api::workflow::parse_net(net).map_err(|p| bad(k.clone(), p))?;
            if let Some(why) = never_fetched(parsed.0) {
                return Err(bad(k, format!("{net} is {why}: no step may reach it")));
            }
        }
        match (tools.contains(&Tool::RunCommand), s.commands.is_empty()) {
            (true, true) => return Err(bad(key("commands"), "run_command needs the commands it may run".into())),
            (false, false) => {
                return Err(bad(key("commands"), "commands are for the run_command tool, not granted".into()))
            }
            _ => {}
        }
        for (c, command) in s.commands.iter().enumerate() {
            check_command(command, &inputs).map_err(|p| bad(format!("{}[{c}]", key("commands")), p))?;
        }
        for (o, out) in s.outputs.iter().enumerate() {
            if !is_file_name(out) {
                return Err(bad(format!("{}[{o}]", key("outputs")), format!("{out:?} is not a plain file name")));
            }
        }
        let mut formats = BTreeMap::new();
        for (name, f) in &s.formats {
            let k = format!("{}.{name}", key("formats"));
            if !s.outputs.contains(name) {
                return Err(bad(k, format!("{name:?} is not one of the step's outputs")));
            }
            let format = match (&f.json_schema, &f.grammar) {
                (Some(text), None) if text.len() <= MAX_FORMAT_BYTES => {
                    let schema: serde_json::Value = serde_json::from_str(text)
                        .map_err(|e| bad(format!("{k}.json_schema"), format!("not JSON: {e}")))?;
                    if !schema.is_object() {
                        return Err(bad(format!("{k}.json_schema"), "a JSON Schema is an object".into()));
                    }
                    aither_api::workflow::OutputFormat::JsonSchema { schema }
                }
                (None, Some(gbnf)) if gbnf.len() <= MAX_FORMAT_BYTES => {
                    if !gbnf
                        .lines()
                        .any(|l| l.trim_start().starts_with("root ::=") || l.trim_start().starts_with("root::="))
                    {
                        return Err(bad(format!("{k}.grammar"), "a GBNF grammar defines root".into()));
                    }
                    aither_api::workflow::OutputFormat::Grammar { gbnf: gbnf.clone() }
                }
                (Some(_), Some(_)) | (None, None) => {
                    return Err(bad(k, "give json_schema or grammar, one of them".into()));
                }
                _ => return Err(bad(k, format!("larger than {MAX_FORMAT_BYTES} bytes"))),
            };
            formats.insert(name.clone(), format);
        }
        for (n, &i) in s.run_first.iter().enumerate() {
            if i >= s.commands.len() {
                return Err(bad(
                    format!("{}[{n}]", key("run_first")),
                    format!("{i} is not the index of one of the step's {} commands", s.commands.len()),
                ));
            }
        }
        if let Some(k) = &s.search_keep {
            if s.search_first.is_none() || !s.outputs.contains(k) || s.formats.contains_key(k) {
                return Err(bad(
                    key("search_keep"),
                    "keeps search_first's passages as one of the step's unformatted outputs".into(),
                ));
            }
        }
        if let Some(q) = &s.search_first {
            if !tools.contains(&Tool::SearchDocs) {
                return Err(bad(key("search_first"), "needs the search_docs tool".into()));
            }
            for name in placeholders(q) {
                if !inputs.iter().any(|i| i.name == name) {
                    return Err(bad(key("search_first"), format!("{{{name}}} is not one of the workflow's inputs")));
                }
            }
        }
        if !s.proposals.is_empty() && !tools.contains(&Tool::Propose) {
            return Err(bad(key("proposals"), "the kinds of proposal are for the propose tool, not granted".into()));
        }
        if s.direct && (s.outputs.is_empty() || s.decide) {
            return Err(bad(key("direct"), "a direct step answers its outputs; it has none, or it decides".into()));
        }
        if s.decide && !tools.contains(&Tool::Propose) {
            return Err(bad(key("decide"), "a step that decides needs the propose tool".into()));
        }
        for (label, words) in &s.signatures {
            let k = format!("{}.{label}", key("signatures"));
            if label.is_empty()
                || label.len() > 64
                || words.is_empty()
                || words.iter().any(|w| w.trim().is_empty() || w.len() > 200)
            {
                return Err(bad(
                    k,
                    "a label (1 to 64 characters) and a list of words (1 to 200 characters each)".into(),
                ));
            }
        }
        if let Some(n) = &s.narrow {
            let narrows = |f: &aither_api::workflow::OutputFormat| match f {
                aither_api::workflow::OutputFormat::JsonSchema { .. } => true,
                aither_api::workflow::OutputFormat::Grammar { gbnf } => {
                    gbnf.lines().any(|l| aither_api::workflow::literal_choice(l, n).is_some())
                }
            };
            if s.signatures.is_empty() || !formats.values().any(narrows) || n.is_empty() || n.len() > 64 {
                return Err(bad(
                    key("narrow"),
                    "narrows a property of a JSON-Schema output, or a grammar's rule that is a choice of \
                     quoted literals, by the step's signatures"
                        .into(),
                ));
            }
        }
        if let Some(rule) = &s.cite {
            let has_rule = formats.values().any(|f| match f {
                aither_api::workflow::OutputFormat::Grammar { gbnf } => {
                    gbnf.lines().any(|l| aither_api::workflow::rule_body(l, rule).is_some())
                }
                aither_api::workflow::OutputFormat::JsonSchema { .. } => false,
            });
            if !has_rule || rule.is_empty() || rule.len() > 64 {
                return Err(bad(key("cite"), "names a one-line rule of one of the step's grammar outputs".into()));
            }
        }
        if s.narrow_first && s.narrow.is_none() {
            return Err(bad(key("narrow_first"), "orders what `narrow` keeps; the step has no narrow".into()));
        }
        if let Some(p) = &s.propose_from {
            if !tools.contains(&Tool::Propose) {
                return Err(bad(key("propose_from"), "the proposal goes through the propose tool, not granted".into()));
            }
            let named = s.inputs.iter().any(|i| i.file.as_deref() == Some(p.input.as_str()));
            if !named || [&p.kind, &p.reason].iter().any(|f| f.is_empty() || f.len() > 64) {
                return Err(bad(
                    key("propose_from"),
                    format!(
                        "input must name a file the step is handed ({:?} is not), kind and reason its fields",
                        p.input
                    ),
                ));
            }
        }
        let mut step_inputs = Vec::with_capacity(s.inputs.len());
        for (n, input) in s.inputs.iter().enumerate() {
            let k = format!("{}[{n}]", key("inputs"));
            step_inputs.push(input_of(input, &steps, &inputs).map_err(|p| bad(k, p))?);
        }
        let budget = StepBudget {
            steps: bounded(s.budget.steps, 10, 200).map_err(|p| bad(key("budget.steps"), p))?,
            tokens: bounded(s.budget.tokens, 8_000, 1_000_000).map_err(|p| bad(key("budget.tokens"), p))?,
            seconds: bounded(s.budget.seconds, 600, 86_400).map_err(|p| bad(key("budget.seconds"), p))?,
            turn_tokens: bounded(s.budget.turn_tokens, aither_api::workflow::TURN_TOKENS, 32_768)
                .map_err(|p| bad(key("budget.turn_tokens"), p))?,
        };
        steps.push(Step {
            name: s.name,
            model: s.model,
            system_prompt: s.system_prompt,
            instructions: s.instructions,
            tools: s.tools,
            commands: s.commands,
            network: s.network,
            fetch_allow: s.fetch_allow,
            inputs: step_inputs,
            outputs: s.outputs,
            budget,
            formats,
            run_first: s.run_first,
            search_first: s.search_first,
            search_keep: s.search_keep,
            proposals: s.proposals,
            decide: s.decide,
            direct: s.direct,
            signatures: s.signatures,
            narrow: s.narrow,
            narrow_first: s.narrow_first,
            cite: s.cite,
            propose_from: s.propose_from,
        });
    }
    Ok(Workflow {
        name: stem.to_string(),
        description: doc.workflow.description,
        file: file.to_path_buf(),
        origin,
        triggers: Triggers { manual: trigger.manual, units: trigger.units, calendar },
        inputs,
        steps,
        auto_approve: doc.workflow.auto_approve,
        act_on: doc.workflow.act_on,
    })
}

/// Why `ip` is never fetched, whatever a workflow allows: loopback, link-local (where the
/// cloud's metadata service lives) or a metadata address elsewhere.
fn never_fetched(ip: std::net::IpAddr) -> Option<&'static str> {
    match ip {
        std::net::IpAddr::V4(v4) if v4.is_loopback() || v4.is_unspecified() => Some("this machine"),
        std::net::IpAddr::V6(v6) if v6.is_loopback() || v6.is_unspecified() => Some("this machine"),
        std::net::IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        ip if aither_api::workflow::METADATA_ADDRESSES.iter().any(|m| m.parse() == Ok(ip)) => {
            Some("a cloud metadata service")
        }
        _ => None,
    }
}

fn is_input_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

fn bounded(v: Option<u32>, default: u32, max: u32) -> Result<u32, String> {
    match v {
        None => Ok(default),
        Some(0) => Err("must be at least 1".into()),
        Some(n) if n > max => Err(format!("{n} is above the limit of {max}")),
        Some(n) => Ok(n),
    }
}

/// A workflow or step name: a lowercase letter, then up to 31 lowercase letters, digits or '-'.
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A file name an output may have: no directory, not hidden, ASCII letters, digits, `._-`.
fn is_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests;
