//! A preset's definition, as the TOML files in `/usr/share/aither/presets` hold it and
//! agentd's `Preset()` reply shows it. Choosing and applying one is `aither-hwprofile`'s.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::plan::{Group, SchedClass};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    pub description: String,
    pub models: ModelPolicy,
    pub groups: Vec<Group>,
    pub memory_tiers: TierPolicy,
    pub agents: AgentPolicy,
    pub scheduling: BTreeMap<String, SchedClass>,
    pub inference: InferencePolicy,
    /// The workflow packs first boot proposes to enable (`aither_api::workflow::PACKS`).
    #[serde(default)]
    pub workflows: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPolicy {
    /// Share of each GPU's memory models may take.
    pub vram_budget_fraction: f64,
    /// Refuse a model that does not fit on the GPUs rather than spill layers to the CPU.
    pub strict: bool,
    /// Share of RAM models may take when they run on the host (no usable GPU).
    #[serde(default = "default_host_ram_fraction")]
    pub host_ram_fraction: f64,
    pub chat: RolePolicy,
    #[serde(default)]
    pub code: Option<RolePolicy>,
    #[serde(default)]
    pub embedding: Option<RolePolicy>,
}

fn default_host_ram_fraction() -> f64 {
    0.25
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolePolicy {
    /// Context length to size for (capped by the model's trained context).
    pub context: u32,
    /// Quantizations in order of preference.
    pub quants: Vec<String>,
    pub kv_cache_type: String,
    /// Largest model (parameters) this preset runs in this role.
    #[serde(default)]
    pub max_params: Option<u64>,
    /// Pinned models are loaded at start and never evicted.
    pub pinned: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierPolicy {
    pub l1_hot_cache_ram: f64,
    pub l2_vector_index_ram: f64,
    pub l3_store_disk: f64,
    pub l4_archive_disk: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPolicy {
    pub max_concurrent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InferencePolicy {
    /// Physical cores kept free for agentd, agents and the OS.
    pub reserve_cores: u32,
    pub max_threads: u32,
    pub parallel: u32,
    /// Idle time before an unpinned model is unloaded; 0 keeps models loaded.
    pub keep_alive_seconds: u64,
    /// `off`, `on-overflow` (when no local model serves the request) or `first`.
    pub cloud_fallback: String,
}
