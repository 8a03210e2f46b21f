//! The five hardware presets: data in `plan/presets/*.toml` (installed to
//! `/usr/share/aither/presets`), chosen by code ([`select`]).
//!
//! A preset fixes, for a class of machine: how models are chosen for the memory budget, the
//! service groups with their boot priority and dormancy, the memory tiers L1–L4 as shares of
//! the machine (L0, the KV cache on the GPU, comes from the model plan), the concurrent
//! agent limit and scheduling classes, and inference threads and parallel slots.
//!
//! ## Selection rules ([`select`])
//!
//! A GPU is *usable* when it is discrete, has a driver stack, and has at least
//! [`MIN_USABLE_VRAM`]. RAM thresholds allow for what the kernel keeps (a 16 GB machine shows
//! about 15.3 GiB).
//!
//! 1. No usable GPU (none, only an iGPU, too small, no driver) → `cpu-only`.
//! 2. Two or more usable GPUs of at least 40 GiB each (A100/H100 class) and 112 GiB RAM →
//!    `server`; with less RAM → `workstation` (if 56 GiB RAM) and the reason says RAM held it back.
//! 3. Two or more usable GPUs and 56 GiB RAM → `workstation`; with less RAM → the
//!    single-GPU rule below, applied to the largest GPU, and the reason says so.
//! 4. One usable GPU of 20 GiB or more and 28 GiB RAM → `standard`; a large GPU with less
//!    RAM → `minimal`.
//! 5. One usable GPU under 20 GiB (12 and 16 GB cards) → `minimal`.
//!
//! Inside a preset the model choice scales with the budget: the largest catalog model that
//! fits is taken, so a 48 GB card in `standard` gets larger models than a 24 GB one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use aither_api::plan::{Group, SchedClass};
pub use aither_api::preset::{AgentPolicy, InferencePolicy, ModelPolicy, Preset, RolePolicy, TierPolicy};

use aither_api::profile::Stack;
use aither_api::profile::{Gpu, Profile};

const GIB: u64 = 1 << 30;
/// Smallest GPU memory worth placing a model on.
pub const MIN_USABLE_VRAM: u64 = 6 * GIB;
/// GPU memory from which a card counts as datacenter class (A100 40 GB and up).
pub const DATACENTER_VRAM: u64 = 38 * GIB;
/// GPU memory from which a single card counts as the `standard` class (24 GB cards report
/// about 23.6 GiB; 20 GB cards such as the RX 7900 XT count too).
pub const STANDARD_VRAM: u64 = 19 * GIB;
const RAM_16GB: u64 = 14 * GIB;
const RAM_32GB: u64 = 28 * GIB;
const RAM_64GB: u64 = 56 * GIB;
const RAM_128GB: u64 = 112 * GIB;

/// The presets compiled into the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("minimal", include_str!("../presets/minimal.toml")),
    ("standard", include_str!("../presets/standard.toml")),
    ("workstation", include_str!("../presets/workstation.toml")),
    ("server", include_str!("../presets/server.toml")),
    ("cpu-only", include_str!("../presets/cpu-only.toml")),
];

/// The names of the presets, smallest to largest, then `cpu-only`.
pub const NAMES: &[&str] = &["minimal", "standard", "workstation", "server", "cpu-only"];

#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("cannot read preset {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("preset {file}: {source}")]
    Parse { file: String, source: toml::de::Error },
    #[error("preset {file}: {field}: {problem}")]
    Invalid { file: String, field: String, problem: String },
    #[error("no preset named {name:?} (known: {known})")]
    Unknown { name: String, known: String },
}

/// A set of presets by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Presets {
    pub by_name: BTreeMap<String, Preset>,
}

impl Presets {
    pub fn builtin() -> Result<Presets, PresetError> {
        Presets::from_sources(BUILTIN.iter().map(|(n, t)| (format!("{n}.toml"), (*t).to_string())))
    }

    /// Every `*.toml` in `dir`; each file must define one of the five presets.
    pub fn load_dir(dir: &Path) -> Result<Presets, PresetError> {
        let sources =
            crate::datafiles::toml_sources(dir).map_err(|(path, source)| PresetError::Read { path, source })?;
        Presets::from_sources(sources)
    }

    fn from_sources(sources: impl IntoIterator<Item = (String, String)>) -> Result<Presets, PresetError> {
        let mut by_name = BTreeMap::new();
        for (file, text) in sources {
            let preset: Preset =
                toml::from_str(&text).map_err(|source| PresetError::Parse { file: file.clone(), source })?;
            validate(&preset).map_err(|(field, problem)| PresetError::Invalid {
                file: file.clone(),
                field,
                problem,
            })?;
            by_name.insert(preset.name.clone(), preset);
        }
        for name in NAMES {
            if !by_name.contains_key(*name) {
                return Err(PresetError::Invalid {
                    file: "(all presets)".into(),
                    field: "name".into(),
                    problem: format!("preset {name:?} is missing"),
                });
            }
        }
        Ok(Presets { by_name })
    }

    pub fn get(&self, name: &str) -> Result<&Preset, PresetError> {
        self.by_name.get(name).ok_or_else(|| PresetError::Unknown { name: name.to_string(), known: NAMES.join(", ") })
    }
}

fn validate(p: &Preset) -> Result<(), (String, String)> {
    let bad = |field: &str, problem: String| Err((field.to_string(), problem));
    if !NAMES.contains(&p.name.as_str()) {
        return bad("name", format!("{:?} is not one of {}", p.name, NAMES.join(", ")));
    }
    let fraction = |field: &str, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            bad(field, format!("{v} is not between 0 and 1"))
        }
    };
    for (i, w) in p.workflows.iter().enumerate() {
        if !aither_api::workflow::PACKS.contains(&w.as_str()) {
            return bad(
                &format!("workflows[{i}]"),
                format!("{w:?} is not a workflow pack ({})", aither_api::workflow::PACKS.join(", ")),
            );
        }
    }
    fraction("models.vram_budget_fraction", p.models.vram_budget_fraction)?;
    fraction("models.host_ram_fraction", p.models.host_ram_fraction)?;
    fraction("memory_tiers.l1_hot_cache_ram", p.memory_tiers.l1_hot_cache_ram)?;
    fraction("memory_tiers.l2_vector_index_ram", p.memory_tiers.l2_vector_index_ram)?;
    fraction("memory_tiers.l3_store_disk", p.memory_tiers.l3_store_disk)?;
    fraction("memory_tiers.l4_archive_disk", p.memory_tiers.l4_archive_disk)?;
    if p.memory_tiers.l1_hot_cache_ram + p.memory_tiers.l2_vector_index_ram > 0.5 {
        return bad("memory_tiers", "L1 and L2 together may take at most half the RAM".into());
    }
    if p.memory_tiers.l3_store_disk + p.memory_tiers.l4_archive_disk > 0.8 {
        return bad("memory_tiers", "L3 and L4 together may take at most 80 % of the disk".into());
    }
    let roles = [
        ("models.chat", Some(&p.models.chat)),
        ("models.code", p.models.code.as_ref()),
        ("models.embedding", p.models.embedding.as_ref()),
    ];
    for (field, role) in roles {
        let Some(r) = role else { continue };
        if r.context < 256 {
            return bad(&format!("{field}.context"), format!("{} is too small (256 at least)", r.context));
        }
        if r.quants.is_empty() {
            return bad(&format!("{field}.quants"), "empty".into());
        }
        if crate::fit::KvType::parse(&r.kv_cache_type).is_none() {
            return bad(&format!("{field}.kv_cache_type"), format!("{:?} is not f16, q8_0 or q4_0", r.kv_cache_type));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for g in &p.groups {
        if !names.insert(&g.name) {
            return bad("groups", format!("group {:?} is defined twice", g.name));
        }
    }
    if p.agents.max_concurrent == 0 {
        return bad("agents.max_concurrent", "must be at least 1".into());
    }
    for class in ["critical", "high", "normal", "low"] {
        match p.scheduling.get(class) {
            None => return bad("scheduling", format!("class {class:?} is missing")),
            Some(c) if !(1..=10_000).contains(&c.cpu_weight) || !(1..=10_000).contains(&c.io_weight) => {
                return bad(&format!("scheduling.{class}"), "cpu_weight and io_weight are 1..10000 (cgroup v2)".into())
            }
            Some(c) if !(-20..=19).contains(&c.nice) => {
                return bad(&format!("scheduling.{class}.nice"), format!("{} is not in -20..19", c.nice))
            }
            Some(_) => {}
        }
    }
    if p.inference.parallel == 0 || p.inference.max_threads == 0 {
        return bad("inference", "parallel and max_threads must be at least 1".into());
    }
    if !["off", "on-overflow", "first"].contains(&p.inference.cloud_fallback.as_str()) {
        return bad(
            "inference.cloud_fallback",
            format!("{:?} is not off, on-overflow or first", p.inference.cloud_fallback),
        );
    }
    Ok(())
}

/// Why a GPU is not usable for models, or `None` when it is.
pub fn unusable_because(g: &Gpu, stack: Option<Stack>) -> Option<String> {
    if g.integrated {
        return Some(format!("{} is an integrated GPU sharing system memory", g.name));
    }
    if stack == Some(Stack::None) {
        return Some(format!("{} has no supported driver", g.name));
    }
    match g.vram_bytes {
        None => Some(format!("{}'s memory size is unknown", g.name)),
        Some(v) if v < MIN_USABLE_VRAM => {
            Some(format!("{} has {}, under the {} minimum", g.name, gib(v), gib(MIN_USABLE_VRAM)))
        }
        Some(_) => None,
    }
}

/// The GPUs of `profile` that models can use, with their memory.
pub fn usable_gpus(profile: &Profile) -> Vec<&Gpu> {
    profile
        .gpus
        .iter()
        .filter(|g| {
            let stack = profile.drivers.iter().find(|d| d.pci_address == g.pci_address).map(|d| d.stack);
            unusable_because(g, stack).is_none()
        })
        .collect()
}

fn gib(bytes: u64) -> String {
    aither_api::gib(bytes)
}

/// The preset for this machine and why. A pure function of the profile.
pub fn select(profile: &Profile) -> (&'static str, String) {
    let usable = usable_gpus(profile);
    let ram = profile.memory.total_bytes;
    if usable.is_empty() {
        let why = if profile.gpus.is_empty() {
            "no GPU on the PCI bus".to_string()
        } else {
            profile
                .gpus
                .iter()
                .filter_map(|g| {
                    unusable_because(
                        g,
                        profile.drivers.iter().find(|d| d.pci_address == g.pci_address).map(|d| d.stack),
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        return ("cpu-only", format!("no usable GPU ({why}): a small model on the CPU with a cloud fallback"));
    }
    let n = usable.len();
    let largest = usable.iter().filter_map(|g| g.vram_bytes).max().unwrap_or(0);
    let datacenter = usable.iter().filter(|g| g.vram_bytes.unwrap_or(0) >= DATACENTER_VRAM).count();
    let gpus_text = describe_gpus(&usable);
    if n >= 2 && datacenter >= 2 {
        if ram >= RAM_128GB {
            return ("server", format!("{gpus_text}, {} datacenter-class, and {} RAM", datacenter, gib(ram)));
        }
        if ram >= RAM_64GB {
            return ("workstation", format!("{gpus_text} would make a server, but {} RAM is under 128 GB", gib(ram)));
        }
    }
    if n >= 2 {
        if ram >= RAM_64GB {
            return ("workstation", format!("{gpus_text} and {} RAM", gib(ram)));
        }
        let (name, why) = single_gpu(largest, ram);
        return (
            name,
            format!(
                "{gpus_text}, but {} RAM is under the 64 GB a workstation needs: sized for the largest GPU; {why}",
                gib(ram)
            ),
        );
    }
    let (name, why) = single_gpu(largest, ram);
    (name, format!("{gpus_text}; {why}"))
}

fn single_gpu(vram: u64, ram: u64) -> (&'static str, String) {
    if vram >= STANDARD_VRAM {
        if ram >= RAM_32GB {
            ("standard", format!("a {} GPU and {} RAM", gib(vram), gib(ram)))
        } else {
            (
                "minimal",
                format!("a large GPU ({}) but only {} RAM, under the 32 GB standard needs", gib(vram), gib(ram)),
            )
        }
    } else {
        let note = if ram < RAM_16GB { format!(" (only {} RAM)", gib(ram)) } else { String::new() };
        ("minimal", format!("a {} GPU, under the 24 GB class{note}", gib(vram)))
    }
}

fn describe_gpus(gpus: &[&Gpu]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for g in gpus {
        *counts.entry(g.name.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(name, c)| if c == 1 { name.to_string() } else { format!("{c}x {name}") })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Whether the hardware can carry a preset an admin pinned; `Some(warning)` when not.
pub fn pin_warning(profile: &Profile, pinned: &str) -> Option<String> {
    let usable = usable_gpus(profile);
    let ram = profile.memory.total_bytes;
    let largest = usable.iter().filter_map(|g| g.vram_bytes).max().unwrap_or(0);
    let problem = match pinned {
        "cpu-only" => None,
        _ if usable.is_empty() => Some("there is no usable GPU".to_string()),
        "server" if usable.len() < 2 => {
            Some(format!("it expects several datacenter GPUs and there is {}", usable.len()))
        }
        "server" if ram < RAM_128GB => Some(format!("it expects 128 GB of RAM and there is {}", gib(ram))),
        "workstation" if usable.len() < 2 => Some("it expects two GPUs and there is one".to_string()),
        "workstation" if ram < RAM_64GB => Some(format!("it expects 64 GB of RAM and there is {}", gib(ram))),
        "standard" if largest < STANDARD_VRAM => {
            Some(format!("it expects a 24 GB GPU and the largest has {}", gib(largest)))
        }
        "standard" if ram < RAM_32GB => Some(format!("it expects 32 GB of RAM and there is {}", gib(ram))),
        "minimal" if ram < RAM_16GB => Some(format!("it expects 16 GB of RAM and there is {}", gib(ram))),
        _ => None,
    };
    problem.map(|p| format!("preset {pinned:?} is pinned by the admin, but {p}: models that do not fit are not placed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_presets_are_valid_and_complete() {
        let p = Presets::builtin().expect("valid");
        assert_eq!(p.by_name.len(), 5);
        for name in NAMES {
            let preset = p.get(name).expect("present");
            assert!(
                preset.groups.iter().any(|g| g.name == "core" && g.priority == 0 && !g.dormant),
                "{name}: core group first"
            );
        }
        let cpu = p.get("cpu-only").expect("cpu-only");
        let order: Vec<&str> = {
            let mut g: Vec<&Group> = cpu.groups.iter().collect();
            g.sort_by_key(|g| g.priority);
            g.iter().map(|g| g.name.as_str()).collect()
        };
        assert_eq!(
            &order[..3],
            ["core", "automation", "orchestration"],
            "automation and orchestration first on cpu-only"
        );
    }

    #[test]
    fn a_bad_preset_names_the_file_and_field() {
        let text = BUILTIN[0].1.replace("vram_budget_fraction = 0.90", "vram_budget_fraction = 1.5");
        let mut sources: Vec<(String, String)> =
            BUILTIN[1..].iter().map(|(n, t)| (format!("{n}.toml"), (*t).to_string())).collect();
        sources.push(("minimal.toml".into(), text));
        let err = Presets::from_sources(sources).expect_err("1.5 is not a fraction");
        assert!(
            matches!(err, PresetError::Invalid { ref file, ref field, .. } if file == "minimal.toml" && field == "models.vram_budget_fraction"),
            "{err}"
        );
        let text = format!("{}\nsurprise = 1\n", BUILTIN[0].1);
        let err = Presets::from_sources([("minimal.toml".to_string(), text)]).expect_err("unknown key");
        assert!(matches!(err, PresetError::Parse { .. }), "{err}");
    }
}
