//! Presets and the plan: selection over every fixture machine and the cases between
//! presets, the admin pin, the plan's invariants, and catalog coverage.

use std::path::{Path, PathBuf};

use aither_hwprofile::detect::{detect, DetectOptions};
use aither_hwprofile::drivers::{self, GpuIdentity};
use aither_hwprofile::profile::{Gpu, Profile, Source, Vendor};
use aither_plan::catalog::{self, Catalog, Role};
use aither_plan::fit::{self, FitParams, GpuBudget, KvType, Shape};
use aither_plan::plan::{plan, Plan, PlanOptions};
use aither_plan::presets::{self, Presets};

const GIB: u64 = 1 << 30;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hw").join(name)
}

/// The fixture's profile at the PCI tier (no vendor library under a fixture root).
fn profile(name: &str) -> Profile {
    detect(&DetectOptions { root: fixture(name), ..DetectOptions::default() }).expect("fixture profiles")
}

fn plan_for(p: &Profile, preset: Option<&str>) -> Plan {
    let presets = Presets::builtin().expect("presets");
    let catalog = Catalog::builtin().expect("catalog");
    plan(p, &presets, &catalog, &PlanOptions { preset: preset.map(str::to_string), model_dir: None }).expect("plans")
}

/// A discrete GPU as a vendor library would report it.
fn gpu(addr: &str, name: &str, device_id: u16, vram_gib: u64) -> Gpu {
    Gpu {
        vendor: Vendor::Nvidia,
        name: name.into(),
        name_source: Source::Nvml,
        pci_address: addr.into(),
        pci_id: format!("10de:{device_id:04x}"),
        subsystem_id: "10de:0000".into(),
        vram_bytes: Some(vram_gib * GIB),
        vram_source: Source::Nvml,
        vram_free_bytes: None,
        driver: Some("nvidia".into()),
        architecture: None,
        integrated: false,
        numa_node: None,
        pcie: None,
        nvidia: None,
        amd: None,
    }
}

/// A machine from the kvm fixture (CPU, memory, platform) with these GPUs and RAM.
fn machine(gpus: Vec<Gpu>, ram_gib: u64) -> Profile {
    let mut p = profile("kvm-cpu-only");
    p.memory.total_bytes = ram_gib * GIB;
    p.memory.available_bytes = ram_gib * GIB * 9 / 10;
    p.cpu.physical_cores = 16;
    p.drivers = gpus
        .iter()
        .map(|g| {
            let device_id = u16::from_str_radix(&g.pci_id[5..], 16).expect("hex id");
            drivers::choose(
                GpuIdentity {
                    pci_address: &g.pci_address,
                    vendor: g.vendor,
                    device_id,
                    revision: 0xa1,
                    gfx_target: None,
                },
                None,
            )
        })
        .collect();
    p.gpus = gpus;
    p
}

#[test]
fn every_fixture_gets_the_expected_preset_and_says_why() {
    let cases = [
        ("laptop-rtx4060", "minimal", "under the 24 GB class"),
        ("desktop-rtx3060", "minimal", "12.0 GiB GPU"),
        ("desktop-rtx4090", "standard", "RTX 4090"),
        ("workstation-2x3090-nvlink", "workstation", "2x NVIDIA GeForce RTX 3090"),
        ("server-8xh100", "server", "8 datacenter-class"),
        ("desktop-rx7900xtx", "standard", "RX 7900 XTX"),
        ("server-8xmi300x", "server", "8x AMD Instinct MI300X"),
        ("kvm-cpu-only", "cpu-only", "no GPU on the PCI bus"),
        ("aws-g5", "standard", "A10G"),
    ];
    for (machine, want, because) in cases {
        let (got, reason) = presets::select(&profile(machine));
        assert_eq!(got, want, "{machine}: {reason}");
        assert!(reason.contains(because), "{machine}: reason {reason:?} should mention {because:?}");
    }
}

#[test]
fn the_cases_between_presets_have_explicit_answers() {
    // A 16 GB card: minimal, whose model choice scales to the bigger budget.
    let (p, why) = presets::select(&machine(vec![gpu("0000:01:00.0", "RTX 4060 Ti 16GB", 0x2805, 16)], 32));
    assert_eq!(p, "minimal", "{why}");
    // Three GPUs of different sizes and enough RAM: workstation.
    let three = vec![
        gpu("0000:01:00.0", "RTX 4090", 0x2684, 24),
        gpu("0000:02:00.0", "RTX 3060", 0x2504, 12),
        gpu("0000:03:00.0", "RTX 4060", 0x2882, 8),
    ];
    let (p, why) = presets::select(&machine(three.clone(), 64));
    assert_eq!(p, "workstation", "{why}");
    // The same GPUs with 32 GB: sized for the largest GPU, and the reason says RAM held it back.
    let (p, why) = presets::select(&machine(three, 32));
    assert_eq!(p, "standard", "{why}");
    assert!(why.contains("under the 64 GB"), "{why}");
    // A large GPU with little RAM: minimal.
    let (p, why) = presets::select(&machine(vec![gpu("0000:01:00.0", "RTX 4090", 0x2684, 24)], 16));
    assert_eq!(p, "minimal", "{why}");
    assert!(why.contains("only"), "{why}");
    // Two datacenter GPUs but 64 GB RAM: workstation, not server.
    let (p, why) = presets::select(&machine(
        vec![gpu("0000:01:00.0", "A100", 0x20b5, 80), gpu("0000:02:00.0", "A100", 0x20b5, 80)],
        64,
    ));
    assert_eq!(p, "workstation", "{why}");
    // An iGPU only: cpu-only.
    let mut igpu = gpu("0000:00:02.0", "Intel Iris Xe", 0xa7a0, 0);
    igpu.vendor = Vendor::Intel;
    igpu.integrated = true;
    igpu.vram_bytes = None;
    let (p, why) = presets::select(&machine(vec![igpu], 32));
    assert_eq!(p, "cpu-only", "{why}");
    assert!(why.contains("integrated"), "{why}");
    // A Kepler card has no driver: cpu-only, and the reason names it.
    let (p, why) = presets::select(&machine(vec![gpu("0000:01:00.0", "Tesla K80", 0x102d, 12)], 32));
    assert_eq!(p, "cpu-only", "{why}");
    assert!(why.contains("no supported driver"), "{why}");
}

#[test]
fn a_larger_card_in_the_same_preset_gets_a_larger_model() {
    let small = plan_for(&machine(vec![gpu("0000:01:00.0", "RTX 4090", 0x2684, 24)], 64), None);
    let large = plan_for(&machine(vec![gpu("0000:01:00.0", "RTX 6000 Ada", 0x26b1, 48)], 64), None);
    assert_eq!((small.preset.as_str(), large.preset.as_str()), ("standard", "standard"));
    let catalog = Catalog::builtin().expect("catalog");
    let params = |p: &Plan| {
        let chat = p.models.iter().find(|m| m.role == Role::Chat).expect("a chat model");
        catalog.get(&chat.name).expect("in catalog").params
    };
    assert!(params(&large) > params(&small), "48 GB: {:?}, 24 GB: {:?}", large.models[0].name, small.models[0].name);
}

#[test]
fn the_admin_pin_wins_and_warns_when_the_hardware_cannot_carry_it() {
    let p = plan_for(&profile("desktop-rtx4090"), Some("workstation"));
    assert_eq!(p.preset, "workstation");
    assert!(p.pinned);
    assert!(p.reason.contains("standard"), "the reason says what the hardware alone would choose: {}", p.reason);
    assert!(p.warnings.iter().any(|w| w.contains("pinned") && w.contains("two GPUs")), "{:?}", p.warnings);

    let p = plan_for(&profile("server-8xh100"), Some("cpu-only"));
    assert_eq!(p.preset, "cpu-only");
    assert!(p.models.iter().all(|m| m.gpu_layers == 0 && m.gpus.is_empty()), "cpu-only places nothing on a GPU");
    assert!(!p.warnings.iter().any(|w| w.contains("pinned")), "cpu-only is always carried");
}

#[test]
fn an_unknown_pinned_preset_is_an_error_naming_it() {
    let presets = Presets::builtin().expect("presets");
    let catalog = Catalog::builtin().expect("catalog");
    let err = plan(
        &profile("kvm-cpu-only"),
        &presets,
        &catalog,
        &PlanOptions { preset: Some("turbo".into()), model_dir: None },
    )
    .expect_err("no such preset");
    assert!(err.to_string().contains("turbo"), "{err}");
}

#[test]
fn no_model_is_placed_beyond_a_gpu_budget_and_cpu_only_never_uses_a_gpu() {
    let presets = Presets::builtin().expect("presets");
    for name in [
        "laptop-rtx4060",
        "desktop-rtx3060",
        "desktop-rtx4090",
        "workstation-2x3090-nvlink",
        "server-8xh100",
        "desktop-rx7900xtx",
        "server-8xmi300x",
        "kvm-cpu-only",
        "aws-g5",
    ] {
        let prof = profile(name);
        let p = plan_for(&prof, None);
        let fraction = presets.get(&p.preset).expect("preset").models.vram_budget_fraction;
        assert!(p.models.iter().any(|m| m.role == Role::Chat), "{name}: a chat model is planned");
        for g in &prof.gpus {
            let used: u64 = p
                .models
                .iter()
                .flat_map(|m| m.gpus.iter().zip(&m.bytes_per_gpu))
                .filter(|(a, _)| **a == g.pci_address)
                .map(|(_, b)| *b)
                .sum();
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let budget = (g.vram_bytes.unwrap_or(0) as f64 * fraction) as u64;
            assert!(used <= budget, "{name}: {} holds {used} bytes, budget {budget}", g.pci_address);
        }
        if p.preset == "cpu-only" {
            assert!(p.models.iter().all(|m| m.gpu_layers == 0));
        }
        let priorities: Vec<u32> = p.groups.iter().map(|g| g.priority).collect();
        let sorted = {
            let mut s = priorities.clone();
            s.sort_unstable();
            s
        };
        assert_eq!(priorities, sorted, "{name}: groups in boot order");
        assert!(
            p.inference.threads >= 1 && p.inference.threads <= prof.cpu.physical_cores,
            "{name}: threads within the cores"
        );
        assert!(p.agents.max_concurrent >= 1);
    }
}

#[test]
fn every_catalog_entry_sizes_and_fits_on_at_least_one_preset_machine() {
    let catalog = Catalog::builtin().expect("catalog");
    let server = profile("server-8xh100");
    let budgets: Vec<GpuBudget> = server
        .gpus
        .iter()
        .map(|g| GpuBudget { pci_address: g.pci_address.clone(), bytes: g.vram_bytes.unwrap_or(0) * 95 / 100 })
        .collect();
    for m in &catalog.models {
        for f in &m.files {
            assert!(catalog::file_bytes(m, f).is_some(), "{} {} sizes", m.name, f.quant);
            let shape = Shape::from_catalog(m, f);
            let ctx = m.context_trained.min(8192);
            let placed = fit::place(&shape, &FitParams::new(ctx, KvType::F16), &budgets, true, u64::MAX);
            assert!(placed.is_ok(), "{} {} fits on the 8xH100 server: {placed:?}", m.name, f.quant);
        }
    }
}

#[test]
fn the_plan_cli_reads_the_pin_from_the_appliance_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("appliance.toml");
    std::fs::write(&config, "preset = \"minimal\"\n[cloud]\nendpoint = \"https://example.invalid\"\n").expect("write");
    let root = fixture("desktop-rtx4090");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aither-hwprofile"))
        .args(["plan", "--format", "json", "--root"])
        .arg(&root)
        .arg("--appliance-config")
        .arg(&config)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p: Plan = serde_json::from_slice(&out.stdout).expect("a plan");
    assert_eq!((p.preset.as_str(), p.pinned, p.schema_version), ("minimal", true, 1));

    std::fs::write(&config, "preset = 3\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aither-hwprofile"))
        .args(["plan", "--root"])
        .arg(&root)
        .arg("--appliance-config")
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("appliance.toml") && err.contains("preset"), "{err}");
}
