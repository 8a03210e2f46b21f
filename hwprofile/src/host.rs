//! CPU, memory and NUMA from procfs and sysfs.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::profile::{Cpu, Memory, NumaNode};
use crate::sysfs;

/// The CPU features llama.cpp's kernels are chosen by, in the order reported.
pub const SIMD_FLAGS: &[&str] = &[
    "sse4_2",
    "avx",
    "f16c",
    "fma",
    "avx2",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
];

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no {field} line")]
    Missing { path: PathBuf, field: &'static str },
}

/// The CPU from `<root>/proc/cpuinfo`.
pub fn cpu(root: &Path) -> Result<Cpu, HostError> {
    let path = root.join("proc/cpuinfo");
    let text = fs::read_to_string(&path).map_err(|source| HostError::Read { path: path.clone(), source })?;
    parse_cpuinfo(&text).ok_or(HostError::Missing { path, field: "processor" })
}

fn parse_cpuinfo(text: &str) -> Option<Cpu> {
    let mut logical = 0u32;
    let mut cores = BTreeSet::new();
    let mut sockets = BTreeSet::new();
    let mut model = None;
    let mut vendor = None;
    let mut flags = None;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        if sysfs::field(block, "processor").is_none() {
            continue;
        }
        logical += 1;
        let physical_id = sysfs::field(block, "physical id").unwrap_or("0");
        sockets.insert(physical_id.to_string());
        if let Some(core) = sysfs::field(block, "core id") {
            cores.insert((physical_id.to_string(), core.to_string()));
        }
        if model.is_none() {
            model = sysfs::field(block, "model name").map(str::to_string);
            vendor = sysfs::field(block, "vendor_id").map(str::to_string);
            // x86 says "flags", arm64 says "Features".
            flags = sysfs::field(block, "flags").or_else(|| sysfs::field(block, "Features")).map(str::to_string);
        }
    }
    if logical == 0 {
        return None;
    }
    let present: BTreeSet<&str> = flags.as_deref().unwrap_or("").split_ascii_whitespace().collect();
    let physical = if cores.is_empty() { logical } else { u32::try_from(cores.len()).unwrap_or(logical) };
    Some(Cpu {
        model: model.unwrap_or_else(|| "unknown".to_string()),
        vendor: vendor.unwrap_or_else(|| "unknown".to_string()),
        sockets: u32::try_from(sockets.len()).unwrap_or(1).max(1),
        physical_cores: physical,
        logical_cores: logical,
        flags: SIMD_FLAGS.iter().filter(|f| present.contains(*f)).map(|f| (*f).to_string()).collect(),
    })
}

/// Memory from `<root>/proc/meminfo`.
pub fn memory(root: &Path) -> Result<Memory, HostError> {
    let path = root.join("proc/meminfo");
    let text = fs::read_to_string(&path).map_err(|source| HostError::Read { path: path.clone(), source })?;
    let total =
        sysfs::kib_field(&text, "MemTotal").ok_or(HostError::Missing { path: path.clone(), field: "MemTotal" })?;
    let count = |key| sysfs::field(&text, key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(Memory {
        total_bytes: total,
        // Kernels before 3.14 have no MemAvailable; MemFree is the honest lower bound then.
        available_bytes: sysfs::kib_field(&text, "MemAvailable")
            .or_else(|| sysfs::kib_field(&text, "MemFree"))
            .unwrap_or(0),
        swap_total_bytes: sysfs::kib_field(&text, "SwapTotal").unwrap_or(0),
        hugepages_total: count("HugePages_Total"),
        hugepages_free: count("HugePages_Free"),
        hugepage_size_bytes: sysfs::kib_field(&text, "Hugepagesize").unwrap_or(0),
    })
}

/// NUMA nodes from `<root>/sys/devices/system/node/node*`; empty when the kernel has no
/// NUMA support compiled in.
pub fn numa_nodes(root: &Path) -> Vec<NumaNode> {
    let dir = root.join("sys/devices/system/node");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut nodes: Vec<NumaNode> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("node")?.parse::<u32>().ok()?;
            let path = e.path();
            let meminfo = fs::read_to_string(path.join("meminfo")).unwrap_or_default();
            // "Node 0 MemTotal:       65842468 kB"
            let memory_bytes = meminfo.lines().find_map(|l| {
                let (_, rest) = l.split_once("MemTotal:")?;
                rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok().map(|k| k * 1024)
            });
            Some(NumaNode { id, cpus: sysfs::read_trimmed(&path.join("cpulist")).unwrap_or_default(), memory_bytes })
        })
        .collect();
    nodes.sort_by_key(|n| n.id);
    nodes
}

/// Whether the CPU says it runs under a hypervisor (the `hypervisor` cpuinfo flag).
pub fn hypervisor_flag(root: &Path) -> bool {
    fs::read_to_string(root.join("proc/cpuinfo"))
        .ok()
        .and_then(|t| sysfs::field(&t, "flags").map(|f| f.split_ascii_whitespace().any(|x| x == "hypervisor")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_cores_count_unique_socket_and_core_pairs() {
        let block = |p: u32, phys: u32, core: u32| {
            format!(
                "processor\t: {p}\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU\nphysical id\t: {phys}\ncore id\t\t: {core}\nflags\t\t: fpu sse4_2 avx avx2 fma hypervisor\n\n"
            )
        };
        // 2 sockets x 2 cores x 2 threads
        let mut text = String::new();
        let mut p = 0;
        for thread in 0..2 {
            for phys in 0..2 {
                for core in 0..2 {
                    let _ = thread;
                    text.push_str(&block(p, phys, core));
                    p += 1;
                }
            }
        }
        let cpu = parse_cpuinfo(&text).expect("parses");
        assert_eq!((cpu.logical_cores, cpu.physical_cores, cpu.sockets), (8, 4, 2));
        assert_eq!(cpu.flags, vec!["sse4_2", "avx", "fma", "avx2"]);
    }

    #[test]
    fn cpuinfo_without_core_ids_counts_logical_cores() {
        let cpu = parse_cpuinfo("processor : 0\nFeatures : fp asimd\n\nprocessor : 1\nFeatures : fp asimd\n")
            .expect("parses");
        assert_eq!((cpu.logical_cores, cpu.physical_cores), (2, 2));
        assert_eq!(cpu.model, "unknown");
    }
}
