//! The profile and the plan as tables, for people (`aither-hwprofile detect|plan`,
//! `aitherctl profile|plan`).

use std::fmt::Write as _;

use crate::gib;
use crate::plan::Plan;
use crate::profile::{Profile, Source};

fn source(s: Source) -> &'static str {
    match s {
        Source::Nvml => "nvml",
        Source::RocmSmi => "rocm-smi",
        Source::Sysfs => "sysfs",
        Source::PciTable => "pci-table",
        Source::PciIds => "pci-ids",
        Source::Unknown => "unknown",
    }
}

/// The profile as a short table.
pub fn profile_table(p: &Profile) -> String {
    let mut out = String::new();
    let cpu = &p.cpu;
    let sockets = if cpu.sockets == 1 { "1 socket".to_string() } else { format!("{} sockets", cpu.sockets) };
    let _ = writeln!(
        out,
        "CPU      {} ({sockets}, {} cores, {} threads)",
        cpu.model, cpu.physical_cores, cpu.logical_cores
    );
    if !cpu.flags.is_empty() {
        let _ = writeln!(out, "         {}", cpu.flags.join(" "));
    }
    let _ = writeln!(
        out,
        "Memory   {} total, {} available{}",
        gib(p.memory.total_bytes),
        gib(p.memory.available_bytes),
        if p.memory.hugepages_total > 0 { format!(", {} hugepages", p.memory.hugepages_total) } else { String::new() }
    );
    if p.numa_nodes.len() > 1 {
        let _ = writeln!(out, "NUMA     {} nodes", p.numa_nodes.len());
    }
    let plat = &p.platform;
    let mut where_ = match plat.virtualization.as_str() {
        "none" => "bare metal".to_string(),
        v => format!("virtual machine ({v})"),
    };
    if let Some(c) = &plat.cloud {
        let _ = write!(where_, " on {c}");
    }
    let sb = match plat.secure_boot {
        Some(true) => ", Secure Boot on",
        Some(false) => ", Secure Boot off",
        None => "",
    };
    let _ = writeln!(out, "Platform {where_}, {}{sb}", plat.firmware.to_uppercase());
    if let Some(d) = &p.disk {
        let _ = writeln!(out, "Disk     {} free of {} at {}", gib(d.free_bytes), gib(d.total_bytes), d.measured_path);
    }
    if p.gpus.is_empty() {
        let _ = writeln!(out, "GPUs     none");
    } else {
        let _ = writeln!(out, "GPUs     {}", p.gpus.len());
        let _ = writeln!(out, "  {:<13} {:<34} {:>10}  {:<9} DRIVER", "PCI", "NAME", "VRAM", "SOURCE");
        for g in &p.gpus {
            let vram = match (g.vram_bytes, g.integrated) {
                (Some(b), _) => gib(b),
                (None, true) => "shared".to_string(),
                (None, false) => "?".to_string(),
            };
            let mut name = g.name.clone();
            if name.len() > 34 {
                name.truncate(33);
                name.push('…');
            }
            let _ = writeln!(
                out,
                "  {:<13} {:<34} {:>10}  {:<9} {}",
                g.pci_address,
                name,
                vram,
                source(g.vram_source),
                g.driver.as_deref().unwrap_or("-")
            );
        }
    }
    for d in &p.display_adapters {
        let _ = writeln!(out, "Display  {} {} ({})", d.pci_address, d.name, d.reason);
    }
    if let Some(n) = &p.runtimes.nvml {
        let _ = writeln!(
            out,
            "NVML     driver {}, CUDA {}",
            n.driver_version.as_deref().unwrap_or("?"),
            n.cuda_version.as_deref().unwrap_or("?")
        );
    }
    for d in &p.drivers {
        let sign = if d.signed_modules_required { " [signed modules required]" } else { "" };
        let stack = serde_json::to_value(d.stack).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let _ = writeln!(out, "Driver   {} {}: {}{sign}", d.pci_address, stack, d.reason);
    }
    for w in &p.warnings {
        let _ = writeln!(out, "Warning  {}", w.message);
    }
    out
}

/// A plan as a person reads it.
pub fn plan_table(p: &Plan) -> String {
    let mut out = String::new();
    let pin = if p.pinned { " (pinned)" } else { "" };
    let _ = writeln!(out, "Preset   {}{pin}: {}", p.preset, p.reason);
    if p.models.is_empty() {
        let _ = writeln!(out, "Models   none local");
    }
    for m in &p.models {
        let place = if m.gpus.is_empty() {
            format!("CPU, {} host", gib(m.host_bytes))
        } else {
            let per: Vec<String> =
                m.gpus.iter().zip(&m.bytes_per_gpu).map(|(g, b)| format!("{g} {}", gib(*b))).collect();
            format!("{} layers on {}; {} host", m.gpu_layers, per.join(", "), gib(m.host_bytes))
        };
        let _ = writeln!(out, "Model    {:<9} {} {} ctx {}: {place}", m.role.name(), m.name, m.quant, m.context);
    }
    let groups: Vec<String> = p
        .groups
        .iter()
        .map(|g| {
            if g.dormant {
                format!("{} ({}, dormant)", g.name, g.priority)
            } else {
                format!("{} ({})", g.name, g.priority)
            }
        })
        .collect();
    let _ = writeln!(out, "Groups   {}", groups.join(" → "));
    let t = &p.memory_tiers;
    let _ = writeln!(
        out,
        "Memory   L0 {} KV on GPU, L1 {} hot cache, L2 {} vector index, L3 {} store, L4 {} archive",
        gib(t.l0_kv_cache_bytes),
        gib(t.l1_hot_cache_bytes),
        gib(t.l2_vector_index_bytes),
        gib(t.l3_store_bytes),
        gib(t.l4_archive_bytes)
    );
    let _ = writeln!(out, "Agents   {} at once", p.agents.max_concurrent);
    let i = &p.inference;
    let _ = writeln!(
        out,
        "Infer    {} threads, {} parallel slots, keep-alive {} s, cloud fallback {}",
        i.threads, i.parallel, i.keep_alive_seconds, i.cloud_fallback
    );
    for w in &p.warnings {
        let _ = writeln!(out, "Warning  {w}");
    }
    out
}
