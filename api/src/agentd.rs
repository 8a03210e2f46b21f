//! agentd's replies on D-Bus (`org.aitheros.Agentd1`): each method returns one of these as
//! JSON text, and aitherctl (and the Cockpit page, through `docs/schema/`) reads it back
//! into the same type. Top-level replies carry [`SCHEMA_VERSION`].

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::plan::Role;
use crate::preset::Preset;
pub use crate::store::Verification;

/// Version of agentd's reply documents. Bumped on any change of meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// agentd's well-known name on the system bus (the session bus in development mode).
pub const BUS_NAME: &str = "org.aitheros.Agentd1";
/// The object that serves the interface of the same name.
pub const OBJECT_PATH: &str = "/org/aitheros/Agentd1";
/// Members of this group may change things through the API (root may too).
pub const ADMIN_GROUP: &str = "aither-admin";

/// What kind of thing a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// An inference worker (aither-infer), one per model of the plan.
    Worker,
    /// A service from a unit manifest.
    Service,
    /// An agent from an agent manifest.
    Agent,
}

impl UnitKind {
    pub fn name(self) -> &'static str {
        match self {
            UnitKind::Worker => "worker",
            UnitKind::Service => "service",
            UnitKind::Agent => "agent",
        }
    }
}

/// A unit's state as agentd reports it: the engine's states, and the reasons agentd holds a
/// unit back. The one place these names are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UnitState {
    Inactive,
    /// Waiting for the units it depends on.
    Waiting,
    /// Starts on demand (first request, first connection).
    Dormant,
    Starting,
    Running,
    Stopping,
    Exited,
    /// Restarting after a delay.
    Backoff,
    /// Restarted too often in a row: no more attempts.
    GaveUp,
    Failed,
    /// An agent waiting for a slot (the preset's concurrent agent limit).
    Queued,
    /// Cannot start: its model file, its user or its tailored policy is missing.
    Blocked,
    /// A worker whose model file is not a usable model (not restarted).
    Invalid,
}

impl UnitState {
    pub fn name(self) -> &'static str {
        match self {
            UnitState::Inactive => "inactive",
            UnitState::Waiting => "waiting",
            UnitState::Dormant => "dormant",
            UnitState::Starting => "starting",
            UnitState::Running => "running",
            UnitState::Stopping => "stopping",
            UnitState::Exited => "exited",
            UnitState::Backoff => "backoff",
            UnitState::GaveUp => "gave-up",
            UnitState::Failed => "failed",
            UnitState::Queued => "queued",
            UnitState::Blocked => "blocked",
            UnitState::Invalid => "invalid",
        }
    }

    /// A state that needs someone's attention.
    pub fn is_problem(self) -> bool {
        matches!(self, UnitState::Failed | UnitState::GaveUp | UnitState::Invalid)
    }
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An agent's confinement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentDetails {
    pub workspace: PathBuf,
    /// Its MCS level (`s0:cA,cB`).
    pub level: String,
    /// Its SELinux domain (`aither_agent_t` or its tailored one).
    pub domain: String,
    /// `none`, `gateway`, `loopback` or `outbound`.
    pub network: String,
}

/// One unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unit {
    pub name: String,
    pub kind: UnitKind,
    pub group: String,
    pub priority: u32,
    pub state: UnitState,
    pub pid: Option<i32>,
    /// Why it ended, its backoff, why it is blocked, its queue position.
    pub detail: Option<String>,
    /// Its last `STATUS=` line.
    pub status: Option<String>,
    /// Times it was started again: by its restart policy, or asked to (`Restart`).
    pub restarts: u32,
    pub description: Option<String>,
    /// The file or plan entry it came from.
    pub source: String,
    pub agent: Option<AgentDetails>,
}

/// `GetUnit`: one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UnitReply {
    pub schema_version: u32,
    #[serde(flatten)]
    pub unit: Unit,
}

/// `ListUnits`, `ListAgents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UnitList {
    pub schema_version: u32,
    pub units: Vec<Unit>,
}

/// A gateway listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Listener {
    /// `HOST:PORT`; clients send the key unless the admin opted out.
    Tcp { address: String, key_required: bool },
    /// A Unix socket, open to its group (`None`: its owner only).
    Unix { path: PathBuf, group: Option<String> },
}

/// The front door's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListenerLimits {
    pub header_timeout_seconds: u64,
    pub body_timeout_seconds: u64,
    pub idle_timeout_seconds: u64,
    pub max_connections: usize,
    pub max_body_bytes: usize,
}

/// Where the gateway listens and how clients get in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Gateway {
    pub listen: Vec<Listener>,
    pub api_key_file: Option<PathBuf>,
    pub allowed_hosts: Vec<String>,
    pub limits: ListenerLimits,
}

/// `Status`: the summary, the preset, the gateway and every unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    pub schema_version: u32,
    pub summary: String,
    pub preset: String,
    pub reason: String,
    pub agent_slots: usize,
    /// Agents waiting for a slot, in order.
    pub queued: Vec<String>,
    /// Whether cgroup limits apply, in words.
    pub cgroups: String,
    /// agentd runs in development mode.
    pub dev: bool,
    /// What confines agents and workflow steps beyond their users and cgroups.
    pub selinux: Confinement,
    pub gateway: Gateway,
    pub units: Vec<Unit>,
}

/// The journalctl matches (ANDed) that select unit `unit`'s lines: written to the stream
/// agentd opened for it (`_TRANSPORT=stdout`, under its identifier) by a process of the user
/// the unit runs as (`uid`). journald takes the transport and `_UID` from the kernel's
/// credentials of each line's writer — present even for a process gone before journald looks
/// at it, when the command and cgroup fields are not — so `logger -t UNIT`, which sets the
/// identifier alone, is not among them, nor what another user writes under the unit's name.
pub fn journal_matches(unit: &str, uid: u32) -> Vec<String> {
    vec!["_TRANSPORT=stdout".to_string(), format!("_UID={uid}"), format!("SYSLOG_IDENTIFIER={unit}")]
}

/// SELinux as agentd finds it (`/sys/fs/selinux/enforce`), read when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Confinement {
    /// Each agent and step in its own domain and category pair.
    Enforcing,
    /// The policy is loaded and only logs: nothing is confined by it. Steps that run commands
    /// or reach the network are refused unless `workflows.allow_unconfined`.
    Permissive,
    /// No SELinux: as permissive.
    Off,
    /// Development mode: nothing is confined, by design.
    Development,
}

impl Confinement {
    /// Whether SELinux confines what runs now.
    pub fn enforced(self) -> bool {
        self == Confinement::Enforcing
    }

    /// In words, for `aitherctl status` and the Cockpit page.
    pub fn describe(self) -> &'static str {
        match self {
            Confinement::Enforcing => "SELinux enforcing: each agent and step in its own domain and category pair",
            Confinement::Permissive => {
                "SELinux PERMISSIVE: nothing is confined by it; workflow steps that run commands or reach the \
                 network are refused unless workflows.allow_unconfined = true"
            }
            Confinement::Off => {
                "SELinux OFF: nothing is confined by it; workflow steps that run commands or reach the network \
                 are refused unless workflows.allow_unconfined = true"
            }
            Confinement::Development => "development mode: nothing is confined (SELinux, users and cgroups are off)",
        }
    }
}

/// One model of the plan and its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Model {
    pub name: String,
    pub role: Role,
    pub quant: String,
    pub url: String,
    pub sha256: Option<String>,
    pub path: PathBuf,
    pub present: bool,
    pub bytes: Option<u64>,
    /// Present files only.
    pub verification: Option<Verification>,
    pub pinned: bool,
    /// Its worker (`infer-NAME`).
    pub unit: String,
    pub state: Option<UnitState>,
}

/// `Models`: the plan's models and where their files go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Models {
    pub schema_version: u32,
    pub model_dir: PathBuf,
    pub models: Vec<Model>,
}

/// `Preset`: the preset in use, why, and its definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PresetReply {
    pub schema_version: u32,
    pub name: String,
    pub reason: String,
    pub pinned: bool,
    pub available: Vec<String>,
    pub preset: Option<Preset>,
}

/// `Inference`: what the inference workers did over the last minutes, sampled by agentd from
/// each running worker's `/metrics` every `interval_seconds`, kept for `window_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Inference {
    pub schema_version: u32,
    /// Unix time of the answer, seconds: the right edge of the charts.
    pub now: u64,
    pub interval_seconds: u64,
    pub window_seconds: u64,
    /// The workers with samples in the window (a worker that did not run has none).
    pub workers: Vec<WorkerSamples>,
}

/// One worker's samples, oldest first. A gap longer than the interval: it was not running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerSamples {
    pub model: String,
    /// Its unit (`infer-NAME`).
    pub unit: String,
    pub samples: Vec<InferenceSample>,
}

/// A worker's figures at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InferenceSample {
    /// Unix time, seconds.
    pub time: u64,
    /// Tokens generated per second since the previous sample, all streams together (`None`
    /// for a worker's first sample, and after it restarted).
    pub generated_per_second: Option<f64>,
    /// Prompt tokens decoded per second since the previous sample.
    pub prompt_per_second: Option<f64>,
    /// Requests waiting for a free slot.
    pub queue: u64,
    pub slots_busy: u64,
    pub slots_total: u64,
    /// KV cache cells (tokens) in use, cached prefixes included, and in all.
    pub kv_cells_used: u64,
    pub kv_cells_total: u64,
}

/// `RunArtifact`: a file a workflow step wrote (one of its declared outputs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    pub schema_version: u32,
    pub run: String,
    pub step: String,
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its text (invalid UTF-8 replaced): its first [`ARTIFACT_TEXT_BYTES`] at most.
    pub text: String,
    /// The file is longer than the text.
    pub truncated: bool,
}

/// The most of an artifact `RunArtifact` returns.
pub const ARTIFACT_TEXT_BYTES: usize = 1024 * 1024;

/// Where a unit's output goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LogTarget {
    /// The journal, under this identifier; `matches` select its lines by what journald records
    /// itself ([`journal_matches`]), never by the identifier alone, which anyone can set.
    Journal { identifier: String, matches: Vec<String> },
    /// A file (development mode).
    File { path: PathBuf },
    /// agentd's own output.
    Inherit,
    /// Nowhere.
    Null,
}

/// `LogTarget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogTargetReply {
    pub schema_version: u32,
    pub target: LogTarget,
}

/// What a change (`Start`, `Stop`, `Restart`, `RunAgent`, `SetPreset`, `Reload`) did, in
/// words. A refusal is a D-Bus error instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Done {
    pub schema_version: u32,
    pub message: String,
}

impl Done {
    pub fn new(message: impl Into<String>) -> Done {
        Done { schema_version: SCHEMA_VERSION, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_are_the_serialized_names() {
        for s in [
            UnitState::Inactive,
            UnitState::Waiting,
            UnitState::Dormant,
            UnitState::Starting,
            UnitState::Running,
            UnitState::Stopping,
            UnitState::Exited,
            UnitState::Backoff,
            UnitState::GaveUp,
            UnitState::Failed,
            UnitState::Queued,
            UnitState::Blocked,
            UnitState::Invalid,
        ] {
            assert_eq!(serde_json::to_value(s).expect("json"), serde_json::Value::String(s.name().into()));
        }
    }

    #[test]
    fn a_unit_reply_keeps_the_unit_fields_at_the_top() {
        let u = Unit {
            name: "a".into(),
            kind: UnitKind::Agent,
            group: "agents".into(),
            priority: 50,
            state: UnitState::Running,
            pid: Some(7),
            detail: None,
            status: None,
            restarts: 0,
            description: None,
            source: "a.toml".into(),
            agent: None,
        };
        let v = serde_json::to_value(UnitReply { schema_version: SCHEMA_VERSION, unit: u.clone() }).expect("json");
        assert_eq!((v["schema_version"].as_u64(), v["pid"].as_i64()), (Some(1), Some(7)));
        let back: UnitReply = serde_json::from_value(v).expect("round trip");
        assert_eq!(back.unit, u);
    }
}
