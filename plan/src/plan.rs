//! The plan: a preset applied to this exact machine.
//!
//! `plan(profile, presets, catalog, options)` is a pure function: which models run where
//! and how big, the service groups in boot order, the memory tiers in bytes, the agent
//! limit, the scheduling classes and the inference threads. It is a wire format
//! (`aither-hwprofile plan --format json`, read by agentd), so it carries
//! [`PLAN_SCHEMA_VERSION`].
//!
//! Models are chosen per role, chat first, then embedding, then code: for each role the
//! largest catalog model within the preset's limit is tried with each preferred
//! quantization until one is placed ([`crate::fit::place`]); what it takes is removed from
//! the GPUs' budgets before the next role. No model is ever placed on a GPU beyond that
//! GPU's budget, and without a usable GPU every model runs on the host within the preset's
//! share of RAM.

use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, Model, Role};
use crate::fit::{self, FitParams, GpuBudget, KvType, Shape};
use crate::presets::{self, Preset, Presets, RolePolicy};
use aither_api::profile::Profile;
use aither_gguf as gguf;

pub use aither_api::plan::{
    local_file, AgentsPlan, InferencePlan, MemoryTiers, Plan, PlannedModel, PLAN_SCHEMA_VERSION,
};
const GIB: u64 = 1 << 30;
/// Memory set aside per concurrent agent when capping the preset's agent limit by RAM.
pub const AGENT_RAM: u64 = GIB;

/// Inputs beyond the profile.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// A preset pinned by the admin (`preset` in `/etc/aither/appliance.toml`) or asked for.
    pub preset: Option<String>,
    /// Where model files are, to size them from their GGUF headers.
    pub model_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Preset(#[from] presets::PresetError),
}

/// Apply the preset (pinned or selected) to the machine in `profile`.
pub fn plan(profile: &Profile, presets: &Presets, catalog: &Catalog, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let mut warnings = Vec::new();
    let (name, reason, pinned) = match &opts.preset {
        Some(p) => {
            let (selected, why) = presets::select(profile);
            if let Some(w) = presets::pin_warning(profile, p) {
                warnings.push(w);
            }
            (p.clone(), format!("pinned by the admin (the hardware alone would choose {selected}: {why})"), true)
        }
        None => {
            let (n, why) = presets::select(profile);
            (n.to_string(), why, false)
        }
    };
    let preset = presets.get(&name)?;

    let mut budgets = gpu_budgets(profile, preset);
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mut host_left = (profile.memory.total_bytes as f64 * preset.models.host_ram_fraction) as u64;
    let strict = preset.models.strict;

    let mut models = Vec::new();
    let roles = [
        (Role::Chat, Some(&preset.models.chat)),
        (Role::Embedding, preset.models.embedding.as_ref()),
        (Role::Code, preset.models.code.as_ref()),
    ];
    for (role, policy) in roles {
        let Some(policy) = policy else { continue };
        match choose(role, policy, catalog, &budgets, strict, host_left, opts.model_dir.as_deref(), &mut warnings) {
            Some(m) => {
                for (addr, used) in m.gpus.iter().zip(&m.bytes_per_gpu) {
                    if let Some(b) = budgets.iter_mut().find(|b| &b.pci_address == addr) {
                        b.bytes = b.bytes.saturating_sub(*used);
                    }
                }
                host_left = host_left.saturating_sub(m.host_bytes);
                models.push(m);
            }
            None if role == Role::Chat && preset.inference.cloud_fallback != "off" => {
                warnings.push("no local chat model fits this machine: chat goes to the cloud fallback".into());
            }
            None if policy.pinned => warnings.push(format!("no {} model fits on this machine", role.name())),
            None => warnings.push(format!(
                "no {} model fits beside the pinned models: {} requests go to the chat model",
                role.name(),
                role.name()
            )),
        }
    }

    let mut groups = preset.groups.clone();
    groups.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));

    let model_host: u64 = models.iter().map(|m| m.host_bytes).sum();
    let ram_left = profile.memory.total_bytes.saturating_sub(model_host);
    let share = |bytes: u64, f: f64| -> u64 {
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let v = (bytes as f64 * f) as u64;
        v
    };
    let disk_free = profile.disk.as_ref().map_or(0, |d| d.free_bytes);
    if profile.disk.is_none() {
        warnings.push("the model directory's disk could not be measured: L3 and L4 are 0".into());
    }
    let memory_tiers = MemoryTiers {
        l0_kv_cache_bytes: models.iter().map(|m| m.gpu_kv_bytes).sum(),
        l1_hot_cache_bytes: share(ram_left, preset.memory_tiers.l1_hot_cache_ram),
        l2_vector_index_bytes: share(ram_left, preset.memory_tiers.l2_vector_index_ram),
        l3_store_bytes: share(disk_free, preset.memory_tiers.l3_store_disk),
        l4_archive_bytes: share(disk_free, preset.memory_tiers.l4_archive_disk),
    };
    let ram_for_agents = ram_left.saturating_sub(memory_tiers.l1_hot_cache_bytes + memory_tiers.l2_vector_index_bytes);
    let by_ram = u32::try_from(ram_for_agents / AGENT_RAM).unwrap_or(u32::MAX).max(1);
    let max_concurrent = preset.agents.max_concurrent.min(by_ram);
    if max_concurrent < preset.agents.max_concurrent {
        warnings.push(format!(
            "{} concurrent agents instead of {}: RAM left after models and caches allows {by_ram}",
            max_concurrent, preset.agents.max_concurrent
        ));
    }

    Ok(Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        preset: preset.name.clone(),
        reason,
        pinned,
        models,
        groups,
        memory_tiers,
        agents: AgentsPlan { max_concurrent },
        scheduling: preset.scheduling.clone(),
        inference: inference_plan(preset, profile),
        warnings,
    })
}

/// Threads: never more than the physical cores left after the reserve, nor the preset's cap.
fn inference_plan(preset: &Preset, profile: &Profile) -> InferencePlan {
    let free = profile.cpu.physical_cores.saturating_sub(preset.inference.reserve_cores).max(1);
    InferencePlan {
        threads: free.min(preset.inference.max_threads),
        parallel: preset.inference.parallel,
        keep_alive_seconds: preset.inference.keep_alive_seconds,
        cloud_fallback: preset.inference.cloud_fallback.clone(),
    }
}

/// The VRAM models may take on each usable GPU under `preset`: the free memory when the
/// vendor library reported it (else the total) times the preset's share; none on `cpu-only`.
/// The plan fits its models into these; the gateway keeps loaded models within them.
pub fn gpu_budgets(profile: &Profile, preset: &presets::Preset) -> Vec<GpuBudget> {
    if preset.name == "cpu-only" {
        return vec![];
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    presets::usable_gpus(profile)
        .iter()
        .map(|g| GpuBudget {
            pci_address: g.pci_address.clone(),
            bytes: (g.vram_free_bytes.unwrap_or(g.vram_bytes.unwrap_or(0)).min(g.vram_bytes.unwrap_or(0)) as f64
                * preset.models.vram_budget_fraction) as u64,
        })
        .filter(|b| b.bytes > 0)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn choose(
    role: Role,
    policy: &RolePolicy,
    catalog: &Catalog,
    budgets: &[GpuBudget],
    strict: bool,
    host_left: u64,
    model_dir: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Option<PlannedModel> {
    let mut candidates: Vec<&Model> = catalog
        .models
        .iter()
        .filter(|m| m.role == role && policy.max_params.is_none_or(|max| m.params <= max))
        .collect();
    candidates.sort_by(|a, b| b.params.cmp(&a.params).then(a.name.cmp(&b.name)));
    let kv = KvType::parse(&policy.kv_cache_type).unwrap_or(KvType::F16);
    for model in candidates {
        for quant in &policy.quants {
            let Some(file) = model.files.iter().find(|f| &f.quant == quant) else { continue };
            let shape = model_dir
                .map(|d| local_file(d, &file.url))
                .filter(|p| p.is_file())
                .and_then(|p| match gguf::read(&p).map_err(|e| e.to_string()).and_then(|g| Shape::from_gguf(&g)) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        warnings.push(format!("{}: {e}; sized from the catalog instead", p.display()));
                        None
                    }
                })
                .unwrap_or_else(|| Shape::from_catalog(model, file));
            let context = policy.context.min(model.context_trained);
            let params = FitParams::new(context, kv);
            let Ok(p) = fit::place(&shape, &params, budgets, strict, host_left) else { continue };
            return Some(PlannedModel {
                name: model.name.clone(),
                role,
                quant: quant.clone(),
                context,
                kv_cache_type: kv,
                gpu_layers: p.gpu_layers + u32::from(p.output_on_gpu),
                gpus: p.gpus,
                bytes_per_gpu: p.bytes_per_gpu,
                tensor_split: p.layers_per_gpu,
                host_bytes: p.host_bytes,
                gpu_kv_bytes: p.gpu_kv_bytes,
                pinned: policy.pinned,
                url: file.url.clone(),
                sha256: file.sha256.clone(),
                sized_from: shape.source,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::ShapeSource;
    use aither_gguf::write::{file as build, string as str_value};

    fn u32v(v: u32) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    /// The kvm fixture's profile (`aither-hwprofile detect` on `tests/fixtures/hw/kvm-cpu-only`),
    /// so the plan is cpu-only and every model sizes on the host.
    fn cpu_profile() -> Profile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/profiles/kvm-cpu-only.json");
        crate::data::read_profile(&path).expect("profile")
    }

    #[test]
    fn a_model_file_on_disk_is_sized_from_its_header_and_a_corrupt_one_from_the_catalog() {
        let catalog = Catalog::builtin().expect("catalog");
        let presets = Presets::builtin().expect("presets");
        let minilm = catalog.get("all-minilm-l6-v2").expect("in catalog");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = local_file(dir.path(), &minilm.files[0].url);
        let bytes = build(
            &[
                ("general.architecture", 8, str_value("bert")),
                ("bert.block_count", 4, u32v(6)),
                ("bert.embedding_length", 4, u32v(384)),
                ("bert.attention.head_count", 4, u32v(12)),
                ("bert.feed_forward_length", 4, u32v(1536)),
                ("bert.context_length", 4, u32v(512)),
            ],
            &[("token_embd.weight", &[384, 64], 1), ("blk.0.attn_q.weight", &[384, 384], 1)],
        );
        std::fs::write(&file, &bytes).expect("write model");
        let opts = PlanOptions { preset: None, model_dir: Some(dir.path().to_path_buf()) };
        let p = plan(&cpu_profile(), &presets, &catalog, &opts).expect("plan");
        let emb = p.models.iter().find(|m| m.role == Role::Embedding).expect("embedding model");
        assert_eq!((emb.name.as_str(), emb.sized_from), ("all-minilm-l6-v2", ShapeSource::Gguf));

        std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate");
        let p = plan(&cpu_profile(), &presets, &catalog, &opts).expect("plan");
        let emb = p.models.iter().find(|m| m.role == Role::Embedding).expect("embedding model");
        assert_eq!(emb.sized_from, ShapeSource::Catalog);
        assert!(
            p.warnings.iter().any(|w| w.contains("truncated") && w.contains("sized from the catalog")),
            "{:?}",
            p.warnings
        );
    }
}
