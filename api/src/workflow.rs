//! The documents between agentd and a workflow step's agent (`aither-agent`): agentd writes
//! the step's [`StepSpec`] into the agent's workspace (`step.json`), the agent leaves its
//! [`StepResult`] beside it (`result.json`). The agent never talks to agentd: everything it
//! needs comes in as files, everything it wants done goes out as [`Proposal`]s.

pub use crate::net::{net_contains, parse_net, METADATA_ADDRESSES};

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the step documents. Bumped on any change of meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// A tool a step's agent may be granted; each is checked again when it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    /// Read a file of the workspace or of the manifest's paths.
    ReadFile,
    /// Write a file in the workspace.
    WriteFile,
    /// List a directory of the workspace or of the manifest's paths.
    ListFiles,
    /// Fetch a URL (outbound network only; size and time bounds).
    FetchUrl,
    /// Run one of the step's commands, inside the agent's confinement.
    RunCommand,
    /// Search the step's documents (an embedding index built through the gateway).
    SearchDocs,
    /// Propose an action from the closed set, for agentd and a human to decide.
    Propose,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::ReadFile => "read_file",
            Tool::WriteFile => "write_file",
            Tool::ListFiles => "list_files",
            Tool::FetchUrl => "fetch_url",
            Tool::RunCommand => "run_command",
            Tool::SearchDocs => "search_docs",
            Tool::Propose => "propose",
        }
    }
}

/// The kinds of action an agent may propose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalKind {
    Start,
    Stop,
    Restart,
    Reload,
    PullModel,
    Publish,
}

impl ProposalKind {
    pub fn name(self) -> &'static str {
        match self {
            ProposalKind::Start => "start",
            ProposalKind::Stop => "stop",
            ProposalKind::Restart => "restart",
            ProposalKind::Reload => "reload",
            ProposalKind::PullModel => "pull_model",
            ProposalKind::Publish => "publish",
        }
    }
}

/// An action an agent proposes; agentd validates it and carries it out once approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proposal {
    Start {
        unit: String,
        reason: String,
    },
    Stop {
        unit: String,
        reason: String,
    },
    Restart {
        unit: String,
        reason: String,
    },
    /// agentd reloads its configuration.
    Reload {
        reason: String,
    },
    /// Download a catalog model.
    PullModel {
        model: String,
        reason: String,
    },
    /// Publish a file of the step's outputs to the configured outbox or webhook.
    Publish {
        file: String,
        reason: String,
    },
}

impl Proposal {
    /// The action in a few words: `restart infer-qwen`, `publish outputs/post.md`.
    pub fn action(&self) -> String {
        match self {
            Proposal::Start { unit, .. } | Proposal::Stop { unit, .. } | Proposal::Restart { unit, .. } => {
                format!("{} {unit}", self.kind().name())
            }
            Proposal::Reload { .. } => "reload".into(),
            Proposal::PullModel { model, .. } => format!("pull {model}"),
            Proposal::Publish { file, .. } => format!("publish outputs/{file}"),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Proposal::Start { reason, .. }
            | Proposal::Stop { reason, .. }
            | Proposal::Restart { reason, .. }
            | Proposal::Reload { reason }
            | Proposal::PullModel { reason, .. }
            | Proposal::Publish { reason, .. } => reason,
        }
    }

    /// The reason, to cut or hide.
    pub fn reason_mut(&mut self) -> &mut String {
        match self {
            Proposal::Start { reason, .. }
            | Proposal::Stop { reason, .. }
            | Proposal::Restart { reason, .. }
            | Proposal::Reload { reason }
            | Proposal::PullModel { reason, .. }
            | Proposal::Publish { reason, .. } => reason,
        }
    }

    pub fn kind(&self) -> ProposalKind {
        match self {
            Proposal::Start { .. } => ProposalKind::Start,
            Proposal::Stop { .. } => ProposalKind::Stop,
            Proposal::Restart { .. } => ProposalKind::Restart,
            Proposal::Reload { .. } => ProposalKind::Reload,
            Proposal::PullModel { .. } => ProposalKind::PullModel,
            Proposal::Publish { .. } => ProposalKind::Publish,
        }
    }
}

/// A step's limits; the agent stops at the first it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct StepBudget {
    /// Model turns.
    pub steps: u32,
    /// Tokens generated over the whole step.
    pub tokens: u32,
    pub seconds: u32,
    /// The most tokens one turn may generate (a long answer is cut there, not the step).
    pub turn_tokens: u32,
}

/// [`StepBudget::turn_tokens`] when a workflow sets none.
pub const TURN_TOKENS: u32 = 2048;

/// What a step's agent is given (`step.json` in its workspace). `Default` is for building one
/// in tests with `..Default::default()`; agentd fills every field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub schema_version: u32,
    pub run_id: String,
    pub workflow: String,
    pub step: String,
    /// The model to ask through the gateway (the plan's model of the step's role).
    pub model: String,
    pub system_prompt: String,
    pub instructions: String,
    pub tools: Vec<Tool>,
    /// The commands `run_command` may run: program and fixed leading arguments.
    pub commands: Vec<Vec<String>>,
    /// The input files, relative to the workspace's `inputs/`.
    pub inputs: Vec<String>,
    /// The files the step is expected to leave in the workspace's `outputs/`.
    pub outputs: Vec<String>,
    pub budget: StepBudget,
    /// The model `search_docs` embeds with (the plan's embedding model, or its role).
    #[serde(default = "embedding_role")]
    pub embedding_model: String,
    /// The most bytes of vectors `search_docs` may keep: the step's share of the plan's L2
    /// tier (the vector index's RAM).
    #[serde(default)]
    pub index_bytes: u64,
    /// The sampling seed of the step's first turn (each later turn adds one), for runs that
    /// must repeat: the eval sets it; agentd leaves it out and the server picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Outputs whose content is constrained (a JSON Schema, a grammar), by file name: the
    /// runner asks the model for each as a constrained answer and writes it itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub formats: BTreeMap<String, OutputFormat>,
    /// Commands (of `commands`) the runner runs before the first turn, their output given
    /// to the model with the instructions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_first: Vec<Vec<String>>,
    /// A query the runner searches the documents for (`search_docs`) before the first turn,
    /// the passages given with the instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_first: Option<String>,
    /// A declared output the passages `search_first` found are kept as, written by the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_keep: Option<String>,
    /// The units a proposal may name: the run's unit, else the workflow's `act_on` (names, or
    /// patterns with `*`); empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub act_on: Vec<String>,
    /// Networks (`10.1.0.0/16`, `fd12::/48`, one address) `fetch_url` may reach besides the
    /// public internet: private ranges and this machine's own addresses are refused unless
    /// named here; loopback, link-local and the metadata services never.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fetch_allow: Vec<String>,
    /// The kinds of proposal the step may make; empty: any kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proposals: Vec<ProposalKind>,
    /// The step decides: its one turn must call `propose`, whose kind may then be `none`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decide: bool,
    /// Known signatures: a label and the words (any of them, case aside) that mark it in a
    /// line of an input. The runner names the ones it finds, with their lines, in the briefing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub signatures: BTreeMap<String, Vec<String>>,
    /// The step answers its outputs straight after its evidence, without tool turns (its
    /// `run_first` commands show what it needs; its folders may still be read by a later
    /// step's tools).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
    /// A property of the step's JSON-Schema outputs, or a rule of its grammar outputs that is
    /// a choice of literals, whose values the known signatures found narrow to their labels
    /// (none found: as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narrow: Option<String>,
    /// A rule of the step's grammar outputs made a choice of the document names its inputs
    /// name (`inputs/docs/a.md` → `"a.md"`), so that a citation names a document it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cite: Option<String>,
    /// `narrow` keeps only the first of the labels found, in the order the format lists its
    /// values: the step's order of precedence.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub narrow_first: bool,
    /// The step's proposal is read from a field of one of its JSON inputs (an earlier step's
    /// constrained answer) instead of being asked of the model again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propose_from: Option<ProposeFrom>,
}

/// Where a step's proposal comes from: `input`'s field `kind` (a kind of proposal, or `none`)
/// and its field `reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeFrom {
    pub input: String,
    pub kind: String,
    pub reason: String,
}

/// How an output's content is constrained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputFormat {
    /// A JSON document matching this JSON Schema.
    JsonSchema { schema: serde_json::Value },
    /// Text in this GBNF grammar (llama.cpp's; local models only).
    Grammar { gbnf: String },
}

fn embedding_role() -> String {
    "embedding".into()
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    /// The model answered without asking for more tools.
    Completed,
    /// A budget ran out (`steps`, `tokens` or `seconds`).
    BudgetExhausted { budget: String },
    /// The step could not go on (the gateway refused, a declared output is missing, …).
    Failed { reason: String },
}

/// A tool call the agent refused (not granted, or outside what the grant allows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefusedCall {
    pub tool: String,
    pub reason: String,
}

/// The most proposals one step may make.
pub const MAX_PROPOSALS: usize = 8;
/// The most bytes of the model's last answer a result keeps as its summary.
pub const MAX_SUMMARY: usize = 4096;
/// The most characters of a proposal's reason.
pub const MAX_REASON: usize = 2000;

/// What a step's agent leaves (`result.json` in its workspace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepResult {
    pub schema_version: u32,
    pub run_id: String,
    pub step: String,
    #[serde(flatten)]
    pub outcome: StepOutcome,
    /// Model turns taken.
    pub turns: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub seconds: f64,
    /// The model's last answer (its summary of the step), at most [`MAX_SUMMARY`] bytes.
    pub summary: String,
    /// The SELinux context the agent ran in (`None` when SELinux is off).
    pub context: Option<String>,
    /// The output files written, relative to `outputs/`.
    pub outputs: Vec<String>,
    pub proposals: Vec<Proposal>,
    pub refused: Vec<RefusedCall>,
}

/// A run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// A step is running or waiting for an agent slot.
    Running,
    /// Every step is done; proposals wait for a human.
    AwaitingApproval,
    /// Every step completed and every proposal was decided.
    Completed,
    /// A step did not complete (its outcome says why); the steps after it did not run.
    Failed,
    Cancelled,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::AwaitingApproval => "awaiting-approval",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// Nothing more will happen to the run.
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Completed | RunState::Failed | RunState::Cancelled)
    }
}

/// A step's state within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    /// Its agent is started (or waits in the admission queue).
    Running,
    /// Its agent ended and left a result (the result's outcome says how it went).
    Done,
    /// Its agent could not run or left no result.
    Failed,
    /// Its agent ran past its budget's seconds and a grace, and agentd stopped it.
    TimedOut,
    Cancelled,
}

impl StepState {
    pub fn name(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::TimedOut => "timed_out",
            StepState::Cancelled => "cancelled",
        }
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepRecord {
    pub name: String,
    pub state: StepState,
    /// The agent unit that plays it (`wf-RUN-STEP`), once started.
    pub unit: Option<String>,
    /// Unix seconds.
    pub started: Option<u64>,
    pub ended: Option<u64>,
    /// What the agent left.
    pub result: Option<StepResult>,
    /// Why the step failed without a result.
    pub error: Option<String>,
    /// Times it was started again after agentd restarted in the middle of it.
    pub attempts: u32,
}

/// A proposal's place in the approval queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for a human.
    Pending,
    /// Approved, and being carried out now: no other decision is taken on it.
    InFlight,
    /// Approved and carried out (`outcome` says how it went).
    Done,
    /// Approved but carrying it out failed (`outcome` says why).
    Failed,
    Denied,
    /// Nobody decided before it expired.
    Expired,
    /// Its run was cancelled before anyone decided.
    Withdrawn,
}

impl ApprovalState {
    /// Not decided yet: pending, or approved and still being carried out.
    pub fn undecided(self) -> bool {
        matches!(self, ApprovalState::Pending | ApprovalState::InFlight)
    }

    pub fn name(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::InFlight => "in flight",
            ApprovalState::Done => "done",
            ApprovalState::Failed => "failed",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Withdrawn => "withdrawn",
        }
    }
}

/// A proposal, as agentd keeps it from the step that made it to its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Approval {
    /// `RUN.N`.
    pub id: String,
    pub run_id: String,
    pub workflow: String,
    pub step: String,
    pub proposal: Proposal,
    pub state: ApprovalState,
    /// Unix seconds.
    pub created: u64,
    pub expires: u64,
    /// `uid 1000 (alice)`, or `policy` when the workflow's admin policy approves the kind.
    pub decided_by: Option<String>,
    pub decided: Option<u64>,
    /// What carrying it out did, or why it failed.
    pub outcome: Option<String>,
    /// What a `publish` would send, for whoever decides: the file's first KiB and its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
}

/// The content of a file a proposal would publish, as shown where it is decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Preview {
    /// The file's size.
    pub bytes: u64,
    /// Its first [`PREVIEW_BYTES`] (as text; invalid UTF-8 replaced).
    pub head: String,
    /// `head` is not the whole file.
    pub cut: bool,
}

/// How much of a file a [`Preview`] shows.
pub const PREVIEW_BYTES: usize = 1024;

impl Preview {
    pub fn of(data: &[u8]) -> Preview {
        let mut end = data.len().min(PREVIEW_BYTES);
        // Not in the middle of a character the cut split.
        if let Err(e) = std::str::from_utf8(&data[..end]) {
            if e.error_len().is_none() {
                end = e.valid_up_to();
            }
        }
        Preview {
            bytes: data.len() as u64,
            head: String::from_utf8_lossy(&data[..end]).into_owned(),
            cut: end < data.len(),
        }
    }
}

/// One line of the audit file (`/var/lib/aither/workflows/audit.jsonl`): a proposal's
/// decision, who made it and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEntry {
    pub schema_version: u32,
    /// Unix seconds.
    pub time: u64,
    /// The proposal's id (`RUN.N`).
    pub approval: String,
    pub run: String,
    pub workflow: String,
    pub step: String,
    /// The action in words (`restart infer-qwen`).
    pub action: String,
    pub proposal: Proposal,
    /// `approved`, `denied`, `expired`, `withdrawn` or `refused` (by agentd's validation).
    pub decision: String,
    /// `uid 1000 (alice)`, `policy (FILE)`, `expiry`, `agentd`.
    pub decided_by: Option<String>,
    /// What carrying it out did, or why it failed.
    pub outcome: Option<String>,
}

/// A workflow run (`/var/lib/aither/workflows/runs/RUN/run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Run {
    pub schema_version: u32,
    /// `WORKFLOW-N`.
    pub id: String,
    pub workflow: String,
    /// What started it: `manual (uid 1000)`, `unit infer-qwen failed`, `calendar daily 03:30`.
    pub trigger: String,
    /// The unit whose failure started it, for `journal` inputs of the trigger.
    pub trigger_unit: Option<String>,
    /// Values given with `aitherctl workflows run NAME --input KEY=VALUE`.
    pub inputs: std::collections::BTreeMap<String, String>,
    pub state: RunState,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Unix seconds.
    pub created: u64,
    pub ended: Option<u64>,
    pub steps: Vec<StepRecord>,
    pub approvals: Vec<Approval>,
}

/// `Runs()`: every run kept, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunList {
    pub schema_version: u32,
    pub runs: Vec<Run>,
}

/// `GetRun(id)`, `RunWorkflow(…)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunReply {
    pub schema_version: u32,
    pub run: Run,
}

/// `Approvals()`: the pending ones first, then the decided ones, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalList {
    pub schema_version: u32,
    pub approvals: Vec<Approval>,
}

/// What a run input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Words for the steps' instructions (at most 4096 characters).
    Text,
    /// An absolute path of a directory whose files the steps get (under `workflows.input_dirs`).
    Directory,
    /// A token a command may carry (`{NAME}`): letters, digits and `._/@^~+-`, not starting
    /// with `-`, at most 128 characters (a git ref, a unit name).
    Name,
}

impl InputKind {
    /// Whether `value` is a value of this kind; why not.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            InputKind::Text => {
                if value.chars().count() > 4096 || value.chars().any(|c| c.is_control() && c != '\n') {
                    return Err("text of at most 4096 characters, without control characters".into());
                }
            }
            InputKind::Directory => {
                if !value.starts_with('/') || value.len() > 1024 || value.chars().any(char::is_control) {
                    return Err(format!("{value:?} is not an absolute path"));
                }
            }
            InputKind::Name => {
                let ok = !value.is_empty()
                    && value.len() <= 128
                    && !value.starts_with('-')
                    && !value.contains("..")
                    && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/@^~+-".contains(&b));
                if !ok {
                    return Err(format!(
                        "{value:?} is not a name (letters, digits and ._/@^~+-, not starting with '-', no '..', at most 128)"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn name(self) -> &'static str {
        match self {
            InputKind::Text => "text",
            InputKind::Directory => "directory",
            InputKind::Name => "name",
        }
    }
}

/// The workflow packs AitherOS ships (`/usr/share/aither/workflows/NAME.toml`).
pub const PACKS: [&str; 5] = ["devops", "research", "content-pipeline", "social-media", "code-review"];

/// `/etc/aither/workflows-enabled.toml`: the shipped workflows turned on (they are off
/// until then) and the admin's turned off (they are on until then).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSwitches {
    #[serde(default)]
    pub enabled: std::collections::BTreeSet<String>,
    #[serde(default)]
    pub disabled: std::collections::BTreeSet<String>,
}

/// A run input a workflow declares (`[inputs.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunInput {
    pub name: String,
    pub kind: InputKind,
    pub description: String,
    pub required: bool,
    pub default: Option<String>,
}

/// A step of a workflow definition, as `Workflows()` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepInfo {
    pub name: String,
    /// The plan's model role (`chat`, `code`).
    pub model: String,
    /// What answers for that role on this machine: a local model, or the gateway's cloud
    /// fallback where the preset has none, or nothing.
    pub served_by: String,
    pub tools: Vec<Tool>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub budget: StepBudget,
}

/// A workflow definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowInfo {
    pub name: String,
    pub description: String,
    pub file: String,
    /// Whether its triggers fire and it may be run (`aitherctl workflows enable|disable`).
    pub enabled: bool,
    /// `built-in`, `shipped` (both off until enabled) or `admin` (on until disabled).
    pub origin: String,
    /// What a run is given (`--input NAME=VALUE`).
    pub inputs: Vec<RunInput>,
    pub manual: bool,
    /// Unit-name patterns whose failure starts a run.
    pub units: Vec<String>,
    /// The calendar schedule, as written.
    pub calendar: Option<String>,
    pub auto_approve: Vec<ProposalKind>,
    pub steps: Vec<StepInfo>,
}

/// `Workflows()`: the definitions, and the files refused (each naming its file and key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowList {
    pub schema_version: u32,
    pub workflows: Vec<WorkflowInfo>,
    pub errors: Vec<String>,
}

/// What follows `rule ::=` when `line` defines the GBNF rule `rule`.
pub fn rule_body<'a>(line: &'a str, rule: &str) -> Option<&'a str> {
    line.trim().strip_prefix(rule)?.trim_start().strip_prefix("::=")
}

/// The literals of a one-line GBNF rule `rule ::= "a" | "b"`: each as text and as quoted.
pub fn literal_choice(line: &str, rule: &str) -> Option<Vec<(String, String)>> {
    let body = rule_body(line, rule)?;
    body.split('|')
        .map(|alt| {
            let quoted = alt.trim();
            let text = quoted.strip_prefix('"')?.strip_suffix('"')?;
            let plain = text.chars().all(|c| c != '"' && c != '\\' && !c.is_control());
            (plain && !text.is_empty()).then(|| (text.to_string(), quoted.to_string()))
        })
        .collect()
}

/// `*` matches any run of characters.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else { return false };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && pattern_matches(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_preview_is_the_first_kib_cut_between_characters() {
        let p = Preview::of(b"# Hello");
        assert_eq!((p.bytes, p.head.as_str(), p.cut), (7, "# Hello", false));
        let text = format!("{}é and more", "a".repeat(PREVIEW_BYTES - 1));
        let p = Preview::of(text.as_bytes());
        assert_eq!((p.head.len(), p.cut), (PREVIEW_BYTES - 1, true), "the é is not split");
        assert!(!p.head.contains('\u{fffd}'));
    }

    use super::*;

    #[test]
    fn a_result_reads_back_and_proposals_carry_their_kind() {
        let r = StepResult {
            schema_version: SCHEMA_VERSION,
            run_id: "r-1".into(),
            step: "propose".into(),
            outcome: StepOutcome::BudgetExhausted { budget: "tokens".into() },
            turns: 3,
            prompt_tokens: 900,
            completion_tokens: 120,
            seconds: 4.5,
            summary: String::new(),
            context: None,
            outputs: vec![],
            proposals: vec![Proposal::Restart { unit: "infer-qwen".into(), reason: "it ran out of memory".into() }],
            refused: vec![RefusedCall { tool: "fetch_url".into(), reason: "not granted".into() }],
        };
        let text = serde_json::to_string(&r).expect("json");
        assert!(text.contains(r#""outcome":"budget_exhausted","budget":"tokens""#), "{text}");
        assert!(text.contains(r#""kind":"restart","unit":"infer-qwen""#), "{text}");
        let back: StepResult = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, r);
        assert_eq!(back.proposals[0].kind(), ProposalKind::Restart);
        let tools: Vec<Tool> = serde_json::from_str(r#"["read_file","run_command"]"#).expect("tools");
        assert_eq!(tools.iter().map(|t| t.name()).collect::<Vec<_>>(), ["read_file", "run_command"]);
    }
}
