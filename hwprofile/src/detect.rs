//! `detect`: PCI first, vendor libraries second, joined by PCI address.
//!
//! The PCI bus is the ground truth: a GPU on the bus is always in `gpus[]`, whatever the
//! vendor library says. A vendor library refines the figures (exact VRAM, name, UUID) and
//! any disagreement between the two is a warning, never a silent choice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::devices::{self, Arch};
use crate::drivers::{self, GpuIdentity};
use crate::host::{self, HostError};
use crate::pci::{self, PciDevice, CLASS_ACCELERATOR};
use crate::pciids;
use crate::platform;
use crate::profile::{
    AmdDetails, DisplayAdapter, Gpu, PcieLink, Profile, RocmSmiRuntime, Runtimes, Source, Vendor, Warning, WarningKind,
    SCHEMA_VERSION,
};
use crate::render::gib;
use crate::{nvml, rocm};

/// Where models are kept on the appliance; its filesystem's free space is reported.
pub use aither_sys::paths::MODEL_DIR as DEFAULT_MODEL_DIR;

/// Inputs of [`detect`]. Every host path is under `root`.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// The system root (`/`, or a fixture tree).
    pub root: PathBuf,
    /// NVML library to open instead of the default search.
    pub nvml_lib: Option<PathBuf>,
    /// ROCm SMI library to open instead of the default search.
    pub rocm_smi_lib: Option<PathBuf>,
    /// Model directory, as a path on the target system.
    pub model_dir: PathBuf,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            root: PathBuf::from("/"),
            nvml_lib: None,
            rocm_smi_lib: None,
            model_dir: PathBuf::from(DEFAULT_MODEL_DIR),
        }
    }
}

/// Why no profile could be produced.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The CPU or memory could not be read: without them a profile would mislead every
    /// decision made from it.
    #[error("no profile for {root}: {source}")]
    Host { root: PathBuf, source: HostError },
}

/// Profile the machine under `opts.root`.
pub fn detect(opts: &DetectOptions) -> Result<Profile, DetectError> {
    let root = opts.root.as_path();
    let host_err = |source| DetectError::Host { root: root.to_path_buf(), source };
    let cpu = host::cpu(root).map_err(host_err)?;
    let memory = host::memory(root).map_err(host_err)?;
    let mut warnings = Vec::new();

    let devices = match pci::scan(root) {
        Ok((devices, errors)) => {
            warnings.extend(errors.into_iter().map(|e| Warning::new(WarningKind::ReadError, e.to_string())));
            devices
        }
        Err(e) => {
            warnings.push(Warning::new(WarningKind::ReadError, format!("{e}: no GPUs can be seen")));
            Vec::new()
        }
    };

    let (gpu_devices, display_devices): (Vec<&PciDevice>, Vec<&PciDevice>) =
        devices.iter().partition(|d| Vendor::from_pci_id(d.vendor_id).is_some() && display_only(d).is_none());

    let wanted: Vec<(u16, u16)> = devices.iter().map(|d| (d.vendor_id, d.device_id)).collect();
    let names = match (wanted.is_empty(), pciids::find(root)) {
        (false, Some(path)) => pciids::lookup(&path, &wanted),
        _ => pciids::Names::default(),
    };

    let platform = platform::platform(root, host::hypervisor_flag(root));
    let mut runtimes = Runtimes::default();

    let mut gpus: Vec<Gpu> = gpu_devices.iter().map(|d| pci_tier_gpu(d, &names)).collect();

    if gpus.iter().any(|g| g.vendor == Vendor::Nvidia) {
        apply_nvml(root, opts.nvml_lib.as_deref(), &mut gpus, &mut runtimes, &mut warnings);
    }
    if gpus.iter().any(|g| g.vendor == Vendor::Amd) {
        apply_amd(root, opts.rocm_smi_lib.as_deref(), &gpu_devices, &mut gpus, &mut runtimes, &mut warnings);
    }
    for (gpu, dev) in gpus.iter().zip(&gpu_devices) {
        if gpu.driver.is_none() {
            warnings.push(Warning::new(
                WarningKind::NoDriver,
                format!("{} ({}) has no kernel driver bound: figures from the PCI tier", gpu.pci_address, gpu.name),
            ));
        }
        if gpu.vram_bytes.is_none() && !gpu.integrated {
            warnings.push(Warning::new(
                WarningKind::UnknownDevice,
                format!(
                    "{} ({}, {}) is not a known device and no vendor library reported its memory",
                    gpu.pci_address,
                    gpu.name,
                    dev.pci_id()
                ),
            ));
        }
    }

    let drivers = gpus
        .iter()
        .zip(&gpu_devices)
        .map(|(g, d)| {
            drivers::choose(
                GpuIdentity {
                    pci_address: &g.pci_address,
                    vendor: g.vendor,
                    device_id: d.device_id,
                    revision: d.revision,
                    gfx_target: g.amd.as_ref().and_then(|a| a.gfx_target.as_deref()),
                },
                platform.secure_boot,
            )
        })
        .collect();

    let display_adapters = display_devices
        .iter()
        .map(|d| {
            let name = names
                .devices
                .get(&(d.vendor_id, d.device_id))
                .cloned()
                .unwrap_or_else(|| format!("PCI device {}", d.pci_id()));
            let reason = display_only(d).map(str::to_string).unwrap_or_else(|| match d.base_class() {
                CLASS_ACCELERATOR => {
                    format!("accelerator of vendor {:04x}: no compute stack for it on this appliance", d.vendor_id)
                }
                _ => format!("display adapter of vendor {:04x}: not a compute GPU", d.vendor_id),
            });
            DisplayAdapter {
                name,
                pci_address: d.address.clone(),
                pci_id: d.pci_id(),
                driver: d.driver.clone(),
                reason,
            }
        })
        .collect();

    Ok(Profile {
        schema_version: SCHEMA_VERSION,
        gpus,
        display_adapters,
        cpu,
        memory,
        numa_nodes: host::numa_nodes(root),
        disk: platform::disk(root, &opts.model_dir),
        platform,
        runtimes,
        drivers,
        warnings,
    })
}

/// Why a device is display-only, for the virtual and management adapters that are never
/// compute GPUs whatever their vendor.
fn display_only(d: &PciDevice) -> Option<&'static str> {
    Some(match (d.vendor_id, d.device_id) {
        (0x1234, 0x1111) => "virtual display adapter (QEMU standard VGA)",
        (0x1b36, 0x0100) => "virtual display adapter (QXL)",
        (0x1af4, 0x1050) => "virtual display adapter (virtio-gpu)",
        (0x15ad, 0x0405) => "virtual display adapter (VMware SVGA II)",
        (0x1013, 0x00b8) => "virtual display adapter (Cirrus CLGD 5446)",
        (0x1414, 0x5353) => "virtual display adapter (Hyper-V)",
        (0x80ee, 0xbeef) => "virtual display adapter (VirtualBox)",
        (0x1d0f, 0x1111) => "virtual display adapter (Amazon EC2 VGA)",
        (0x1a03, _) => "BMC display adapter (ASPEED)",
        (0x102b, _) => "BMC display adapter (Matrox G200)",
        (0x19e5, 0x1711) => "BMC display adapter (Huawei iBMC)",
        _ => return None,
    })
}

/// A GPU as the PCI tier knows it: table, then pci.ids, then raw IDs.
fn pci_tier_gpu(d: &PciDevice, names: &pciids::Names) -> Gpu {
    let vendor = Vendor::from_pci_id(d.vendor_id).unwrap_or(Vendor::Nvidia);
    let known = devices::lookup(vendor, d.device_id, d.revision);
    let brand = match vendor {
        Vendor::Nvidia => "NVIDIA",
        Vendor::Amd => "AMD",
        Vendor::Intel => "Intel",
    };
    let (name, name_source) = match (known, names.devices.get(&(d.vendor_id, d.device_id))) {
        (Some(k), _) => (format!("{brand} {}", k.name), Source::PciTable),
        (None, Some(n)) => (format!("{brand} {}", pciids::marketing_name(n)), Source::PciIds),
        (None, None) => (format!("{brand} device {:04x}", d.device_id), Source::Unknown),
    };
    let vram_bytes = known.and_then(|k| k.vram_bytes);
    let architecture = known
        .map(|k| k.arch)
        .or_else(|| (vendor == Vendor::Nvidia).then(|| devices::nvidia_arch_from_id_range(d.device_id)).flatten())
        .map(|a| a.name().to_string());
    let integrated = match known {
        Some(k) => k.integrated,
        // Intel integrated graphics sit on the root bus; discrete cards behind a bridge.
        None => vendor == Vendor::Intel && d.address.starts_with("0000:00:"),
    };
    let amd = (vendor == Vendor::Amd).then(|| AmdDetails {
        gfx_target: known.and_then(|k| match k.arch {
            Arch::Amd(g) => Some(g.to_string()),
            _ => None,
        }),
        gfx_target_source: if known.is_some() { Source::PciTable } else { Source::Unknown },
        vram_used_bytes: None,
    });
    Gpu {
        vendor,
        name,
        name_source,
        pci_address: d.address.clone(),
        pci_id: d.pci_id(),
        subsystem_id: d.subsystem_id(),
        vram_bytes,
        vram_source: if vram_bytes.is_some() { Source::PciTable } else { Source::Unknown },
        vram_free_bytes: None,
        driver: d.driver.clone(),
        architecture,
        integrated,
        numa_node: d.numa_node,
        pcie: (d.current_link_speed.is_some() || d.current_link_width.is_some()).then(|| PcieLink {
            current_speed: d.current_link_speed.clone(),
            current_width: d.current_link_width,
            max_speed: d.max_link_speed.clone(),
            max_width: d.max_link_width,
        }),
        nvidia: None,
        amd,
    }
}

/// Memory sizes from two sources that differ by more than this fraction are a conflict.
/// Vendor libraries report usable memory, a few percent under the nominal size.
const VRAM_TOLERANCE: f64 = 0.10;

fn vram_conflict(nominal: u64, measured: u64) -> bool {
    #[allow(clippy::cast_precision_loss)] // byte counts well inside f64's exact range
    let (n, m) = (nominal as f64, measured as f64);
    n > 0.0 && ((n - m).abs() / n) > VRAM_TOLERANCE
}

/// The compute capability majors an architecture from the table implies.
fn cc_majors(arch: &str) -> &'static [&'static str] {
    match arch {
        "kepler" => &["3"],
        "maxwell" => &["5"],
        "pascal" => &["6"],
        "volta" | "turing" => &["7"],
        "ampere" | "ada" => &["8"],
        "hopper" => &["9"],
        "blackwell" => &["10", "12"],
        _ => &[],
    }
}

fn apply_nvml(
    root: &Path,
    explicit: Option<&Path>,
    gpus: &mut [Gpu],
    runtimes: &mut Runtimes,
    warnings: &mut Vec<Warning>,
) {
    let pci_count = gpus.iter().filter(|g| g.vendor == Vendor::Nvidia).count();
    let Some(library) = nvml::library_path(root, explicit) else {
        warnings.push(Warning::new(
            WarningKind::NvmlUnavailable,
            format!(
                "{pci_count} NVIDIA GPU(s) on the PCI bus but no NVML library under {}: figures from the PCI tier",
                root.display()
            ),
        ));
        return;
    };
    let report = match nvml::query(&library) {
        Ok(r) => r,
        Err(mut w) => {
            w.message.push_str(&format!("; {pci_count} NVIDIA GPU(s) stay at the PCI tier"));
            warnings.push(w);
            return;
        }
    };
    warnings.extend(report.warnings);
    runtimes.nvml = Some(report.runtime);
    let mut by_address: BTreeMap<&str, &nvml::NvmlGpu> =
        report.gpus.iter().map(|g| (g.pci_address.as_str(), g)).collect();
    for gpu in gpus.iter_mut().filter(|g| g.vendor == Vendor::Nvidia) {
        let Some(n) = by_address.remove(gpu.pci_address.as_str()) else {
            warnings.push(Warning::new(
                WarningKind::GpuCountMismatch,
                format!("{} ({}) is on the PCI bus but NVML does not report it (lost, excluded, or driver mismatch): PCI tier figures", gpu.pci_address, gpu.name),
            ));
            continue;
        };
        if let Some(name) = &n.name {
            gpu.name.clone_from(name);
            gpu.name_source = Source::Nvml;
        }
        if let Some(total) = n.memory_total {
            if let Some(nominal) = gpu.vram_bytes.filter(|_| gpu.vram_source == Source::PciTable) {
                if vram_conflict(nominal, total) {
                    warnings.push(Warning::new(
                        WarningKind::VramConflict,
                        format!(
                            "{}: the PCI table says {} for {}, NVML reports {}; using NVML",
                            gpu.pci_address,
                            gib(nominal),
                            gpu.pci_id,
                            gib(total)
                        ),
                    ));
                }
            }
            gpu.vram_bytes = Some(total);
            gpu.vram_source = Source::Nvml;
            gpu.vram_free_bytes = n.memory_free;
        }
        if let (Some(arch), Some(cc)) = (gpu.architecture.as_deref(), n.details.compute_capability.as_deref()) {
            let majors = cc_majors(arch);
            let major = cc.split('.').next().unwrap_or("");
            if !majors.is_empty() && !majors.contains(&major) {
                warnings.push(Warning::new(
                    WarningKind::IdentityConflict,
                    format!(
                        "{}: PCI ID {} is {arch}, but NVML reports compute capability {cc}",
                        gpu.pci_address, gpu.pci_id
                    ),
                ));
            }
        }
        gpu.nvidia = Some(n.details.clone());
    }
    for (address, _) in by_address {
        warnings.push(Warning::new(
            WarningKind::GpuCountMismatch,
            format!("NVML reports a GPU at {address} that is not on the PCI bus under {}", root.display()),
        ));
    }
}

fn apply_amd(
    root: &Path,
    explicit: Option<&Path>,
    devices: &[&PciDevice],
    gpus: &mut [Gpu],
    runtimes: &mut Runtimes,
    warnings: &mut Vec<Warning>,
) {
    let report = match rocm::library_path(root, explicit) {
        Some(library) => match rocm::query(&library) {
            Ok(r) => Some(r),
            Err(w) => {
                warnings.push(w);
                None
            }
        },
        None => None,
    };
    let kfd: BTreeMap<String, String> = rocm::kfd_gfx_targets(root).into_iter().collect();
    let mut from_smi: BTreeMap<String, rocm::RocmGpu> = BTreeMap::new();
    if let Some(r) = report {
        warnings.extend(r.warnings);
        runtimes.rocm_smi = Some(RocmSmiRuntime { library: r.library });
        from_smi = r.gpus.into_iter().map(|g| (g.pci_address.clone(), g)).collect();
    }
    let smi_loaded = runtimes.rocm_smi.is_some();
    for (gpu, dev) in gpus.iter_mut().zip(devices).filter(|(g, _)| g.vendor == Vendor::Amd) {
        let nominal = gpu.vram_bytes.filter(|_| gpu.vram_source == Source::PciTable);
        let amd = gpu.amd.get_or_insert(AmdDetails {
            gfx_target: None,
            gfx_target_source: Source::Unknown,
            vram_used_bytes: None,
        });
        let mut measured = None;
        if let Some(s) = from_smi.remove(&gpu.pci_address) {
            if let Some(name) = s.name {
                gpu.name = name;
                gpu.name_source = Source::RocmSmi;
            }
            if let Some(total) = s.vram_total {
                measured = Some((total, Source::RocmSmi));
            }
            amd.vram_used_bytes = s.vram_used;
            if let Some(gfx) = s.gfx_target {
                amd.gfx_target = Some(gfx);
                amd.gfx_target_source = Source::RocmSmi;
            }
        } else if smi_loaded {
            warnings.push(Warning::new(
                WarningKind::GpuCountMismatch,
                format!("{} ({}) is on the PCI bus but ROCm SMI does not report it", gpu.pci_address, gpu.name),
            ));
        }
        if measured.is_none() {
            let sys = rocm::amdgpu_sysfs(&dev.sysfs_path);
            if let Some(total) = sys.vram_total {
                measured = Some((total, Source::Sysfs));
                amd.vram_used_bytes = sys.vram_used;
            }
        }
        if amd.gfx_target_source != Source::RocmSmi {
            if let Some(gfx) = kfd.get(&gpu.pci_address) {
                amd.gfx_target = Some(gfx.clone());
                amd.gfx_target_source = Source::Sysfs;
            }
        }
        if let Some((total, source)) = measured {
            if let Some(n) = nominal.filter(|n| vram_conflict(*n, total)) {
                warnings.push(Warning::new(
                    WarningKind::VramConflict,
                    format!(
                        "{}: the PCI table says {} for {}, {} reports {}; using the latter",
                        gpu.pci_address,
                        gib(n),
                        gpu.pci_id,
                        source_name(source),
                        gib(total)
                    ),
                ));
            }
            gpu.vram_bytes = Some(total);
            gpu.vram_source = source;
            gpu.vram_free_bytes = amd.vram_used_bytes.map(|u| total.saturating_sub(u));
        }
        if let Some(gfx) = amd.gfx_target.as_deref() {
            gpu.architecture = Some(gfx.to_string());
        }
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Nvml => "NVML",
        Source::RocmSmi => "ROCm SMI",
        Source::Sysfs => "amdgpu sysfs",
        Source::PciTable => "the PCI table",
        Source::PciIds => "pci.ids",
        Source::Unknown => "nothing",
    }
}
