//! The plan document: a preset applied to one machine, as `aither-hwprofile plan --format
//! json` writes it and agentd and aither-infer read it. Computed by `aither-hwprofile`'s
//! `plan` module; only its shape lives here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the plan document. Bumped on any change of meaning.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    pub schema_version: u32,
    pub preset: String,
    pub reason: String,
    /// The preset was pinned by the admin rather than selected.
    pub pinned: bool,
    pub models: Vec<PlannedModel>,
    /// In boot order.
    pub groups: Vec<Group>,
    pub memory_tiers: MemoryTiers,
    pub agents: AgentsPlan,
    pub scheduling: BTreeMap<String, SchedClass>,
    pub inference: InferencePlan,
    pub warnings: Vec<String>,
}

impl Plan {
    /// The bytes of the L1 hot cache (RAM) a model's worker may keep prompts in once they
    /// leave its slots: an equal share for each model that generates; none for embeddings
    /// (nothing to resume) or a model not in the plan.
    pub fn prompt_cache_bytes(&self, model: &str) -> u64 {
        let generating = |m: &&PlannedModel| m.role != Role::Embedding;
        if !self.models.iter().filter(generating).any(|m| m.name == model) {
            return 0;
        }
        let n = self.models.iter().filter(generating).count() as u64;
        self.memory_tiers.l1_hot_cache_bytes / n.max(1)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedModel {
    pub name: String,
    pub role: Role,
    pub quant: String,
    pub context: u32,
    pub kv_cache_type: KvType,
    /// llama.cpp `--gpu-layers`: repeating layers offloaded, plus one for the output layer
    /// when it is offloaded too.
    pub gpu_layers: u32,
    pub gpus: Vec<String>,
    pub bytes_per_gpu: Vec<u64>,
    /// Layers per GPU in `gpus` order (llama.cpp `--tensor-split`).
    pub tensor_split: Vec<u32>,
    pub host_bytes: u64,
    /// KV cache held on the GPUs (this model's share of the L0 tier).
    pub gpu_kv_bytes: u64,
    pub pinned: bool,
    pub url: String,
    pub sha256: Option<String>,
    /// Sized from the file's GGUF header or estimated from the catalog.
    pub sized_from: ShapeSource,
}

/// Memory tiers in bytes. L0 is the KV cache on GPUs; L1 and L2 are in RAM; L3 and L4 on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemoryTiers {
    pub l0_kv_cache_bytes: u64,
    pub l1_hot_cache_bytes: u64,
    pub l2_vector_index_bytes: u64,
    pub l3_store_bytes: u64,
    pub l4_archive_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentsPlan {
    pub max_concurrent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InferencePlan {
    pub threads: u32,
    pub parallel: u32,
    pub keep_alive_seconds: u64,
    pub cloud_fallback: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Chat,
    Code,
    Embedding,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Chat => "chat",
            Role::Code => "code",
            Role::Embedding => "embedding",
        }
    }
}

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KvType {
    F16,
    Q8_0,
    Q4_0,
}

impl KvType {
    /// Bytes per element, blocks included (ggml: q8_0 is 34 bytes per 32, q4_0 18 per 32).
    pub fn bytes_per_32(self) -> u64 {
        match self {
            KvType::F16 => 64,
            KvType::Q8_0 => 34,
            KvType::Q4_0 => 18,
        }
    }

    pub fn parse(s: &str) -> Option<KvType> {
        match s {
            "f16" => Some(KvType::F16),
            "q8_0" => Some(KvType::Q8_0),
            "q4_0" => Some(KvType::Q4_0),
            _ => None,
        }
    }

    /// The name llama.cpp and `parse` use (`--kv-cache-type`).
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }
}

/// Where the shape's figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ShapeSource {
    Gguf,
    Catalog,
}

/// A service group: a set of units started together, in priority order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// Lower starts first.
    pub priority: u32,
    /// Started on first use rather than at boot.
    pub dormant: bool,
    pub description: String,
}

/// CPU and IO weights and niceness of a class of units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedClass {
    pub cpu_weight: u32,
    pub io_weight: u32,
    pub nice: i32,
}

/// The file name a model's URL is stored under in the model directory.
pub fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Where a model whose URL is `url` lives in `model_dir`.
pub fn local_file(model_dir: &Path, url: &str) -> PathBuf {
    model_dir.join(file_name(url))
}
