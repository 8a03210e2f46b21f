//! The hardware profile: the document `aither-hwprofile detect` writes.
//!
//! This is a wire format (`/run/aither/hwprofile.json`, read by agentd, firstboot and the
//! plan), so it carries [`SCHEMA_VERSION`] and its shape is stable: fields are only added,
//! and a change in meaning bumps the version. Every figure that can come from more than one
//! place says where it came from ([`Source`]); disagreements between sources end up in
//! [`Profile::warnings`].
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "gpus": [{ "vendor": "nvidia", "name": "NVIDIA GeForce RTX 4090", "name_source": "nvml",
//!              "pci_address": "0000:01:00.0", "pci_id": "10de:2684", "subsystem_id": "1043:889d",
//!              "vram_bytes": 25757220864, "vram_source": "nvml", "driver": "nvidia", ... }],
//!   "display_adapters": [{ "name": "ASPEED Graphics Family", "pci_address": "0000:03:00.0", ... }],
//!   "cpu": { "model": "...", "logical_cores": 32, "physical_cores": 16, "flags": ["avx2", ...] },
//!   "memory": { "total_bytes": ..., "available_bytes": ..., ... },
//!   "drivers": [{ "pci_address": "0000:01:00.0", "stack": "nvidia-open", "reason": "...", ... }],
//!   "warnings": [{ "kind": "nvml-unavailable", "message": "..." }]
//! }
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the profile document. Bumped on any change of meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// What `detect` found on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Profile {
    pub schema_version: u32,
    /// Compute-capable GPUs only (NVIDIA, AMD, Intel), in PCI address order.
    pub gpus: Vec<Gpu>,
    /// Adapters that drive a display but are not usable for compute (virtual VGA, BMC VGA),
    /// and accelerators of vendors this appliance has no stack for.
    pub display_adapters: Vec<DisplayAdapter>,
    pub cpu: Cpu,
    pub memory: Memory,
    pub numa_nodes: Vec<NumaNode>,
    pub disk: Option<Disk>,
    pub platform: Platform,
    /// Vendor management libraries that were loaded, and what they said of the system.
    pub runtimes: Runtimes,
    /// One driver choice per GPU, in the order of `gpus`.
    pub drivers: Vec<DriverChoice>,
    pub warnings: Vec<Warning>,
}

/// Where a figure came from, most exact first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// NVIDIA Management Library, from the loaded driver.
    Nvml,
    /// AMD ROCm SMI library.
    RocmSmi,
    /// Kernel driver files in sysfs (amdgpu `mem_info_vram_total`, KFD topology).
    Sysfs,
    /// The built-in table of known devices, keyed by PCI IDs.
    PciTable,
    /// The system's `pci.ids` database (hwdata).
    PciIds,
    /// Nothing better than the raw PCI IDs.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Nvidia,
    Amd,
    Intel,
}

impl Vendor {
    /// PCI vendor ID.
    pub fn pci_id(self) -> u16 {
        match self {
            Vendor::Nvidia => 0x10de,
            Vendor::Amd => 0x1002,
            Vendor::Intel => 0x8086,
        }
    }

    pub fn from_pci_id(id: u16) -> Option<Vendor> {
        match id {
            0x10de => Some(Vendor::Nvidia),
            0x1002 => Some(Vendor::Amd),
            0x8086 => Some(Vendor::Intel),
            _ => None,
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Intel => "intel",
        })
    }
}

/// One compute-capable GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Gpu {
    pub vendor: Vendor,
    pub name: String,
    pub name_source: Source,
    /// Full PCI address, `domain:bus:device.function`, lowercase (`0000:01:00.0`).
    pub pci_address: String,
    /// `vendor:device`, lowercase hex (`10de:2684`).
    pub pci_id: String,
    /// `subsystem_vendor:subsystem_device`, lowercase hex.
    pub subsystem_id: String,
    /// Dedicated memory; `null` when no source knows it (an unknown card before its driver
    /// loads). Integrated GPUs have none and report `null`.
    pub vram_bytes: Option<u64>,
    pub vram_source: Source,
    /// Free dedicated memory, from the vendor library or the driver, when known.
    pub vram_free_bytes: Option<u64>,
    /// The kernel driver bound to the device, if any (`nvidia`, `nouveau`, `amdgpu`, `i915`).
    pub driver: Option<String>,
    /// Architecture or chip family (`ada`, `hopper`, `gfx1100`, ...), when known.
    pub architecture: Option<String>,
    /// A GPU that shares system memory (an iGPU or APU).
    pub integrated: bool,
    pub numa_node: Option<u32>,
    pub pcie: Option<PcieLink>,
    /// NVIDIA details from NVML; `null` when NVML did not answer for this GPU.
    pub nvidia: Option<NvidiaDetails>,
    /// AMD details from ROCm SMI or sysfs.
    pub amd: Option<AmdDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PcieLink {
    /// Current link speed as the kernel prints it (`16.0 GT/s PCIe`).
    pub current_speed: Option<String>,
    pub current_width: Option<u32>,
    pub max_speed: Option<String>,
    pub max_width: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NvidiaDetails {
    pub uuid: Option<String>,
    /// CUDA compute capability, `major.minor` (`8.9`).
    pub compute_capability: Option<String>,
    pub power_limit_watts: Option<u32>,
    /// MIG mode: `enabled`, `disabled`, or `null` when the GPU has no MIG.
    pub mig_mode: Option<String>,
    pub persistence_mode: Option<bool>,
    /// PCI addresses of the GPUs at the far end of active NVLinks, deduplicated.
    pub nvlink_peers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AmdDetails {
    /// LLVM target (`gfx1100`, `gfx90a`, `gfx942`).
    pub gfx_target: Option<String>,
    pub gfx_target_source: Source,
    pub vram_used_bytes: Option<u64>,
}

/// A display adapter that is not a compute GPU, or an accelerator without a stack here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DisplayAdapter {
    pub name: String,
    pub pci_address: String,
    pub pci_id: String,
    pub driver: Option<String>,
    /// Why it is not in `gpus[]`.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Cpu {
    pub model: String,
    pub vendor: String,
    pub sockets: u32,
    pub physical_cores: u32,
    pub logical_cores: u32,
    /// The SIMD features llama.cpp's kernels use, as `/proc/cpuinfo` names them, in a fixed
    /// order: sse4_2, avx, f16c, fma, avx2, avx_vnni, avx512f, avx512bw, avx512vl,
    /// avx512_vnni, avx512_bf16, avx512_fp16, amx_tile, amx_int8, amx_bf16.
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub hugepages_total: u64,
    pub hugepages_free: u64,
    pub hugepage_size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NumaNode {
    pub id: u32,
    /// CPU list as the kernel prints it (`0-55,112-167`).
    pub cpus: String,
    pub memory_bytes: Option<u64>,
}

/// Space where models are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Disk {
    /// The model directory asked about.
    pub path: String,
    /// The existing directory that was measured (the model directory or its nearest parent).
    pub measured_path: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Platform {
    /// `none` on bare metal, else the hypervisor (`kvm`, `vmware`, `hyperv`, `xen`,
    /// `virtualbox`, `unknown` when only the CPU's hypervisor flag says so).
    pub virtualization: String,
    /// `aws`, `gcp` or `azure` when the DMI data says so.
    pub cloud: Option<String>,
    /// DMI system vendor and product, as read.
    pub system_vendor: Option<String>,
    pub product_name: Option<String>,
    /// `uefi` or `bios`.
    pub firmware: String,
    /// `null` when the firmware is BIOS or the variable cannot be read.
    pub secure_boot: Option<bool>,
}

/// Vendor management libraries and what they report of the whole system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Runtimes {
    pub nvml: Option<NvmlRuntime>,
    pub rocm_smi: Option<RocmSmiRuntime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NvmlRuntime {
    pub library: String,
    pub driver_version: Option<String>,
    /// CUDA driver API version, `major.minor` (`12.4`).
    pub cuda_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RocmSmiRuntime {
    pub library: String,
}

/// Something the profile could not establish, or sources that disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WarningKind {
    /// NVML could not be loaded or initialised; NVIDIA GPUs stay at the PCI tier.
    NvmlUnavailable,
    /// NVML answered, but not for this GPU or not this query.
    NvmlDeviceError,
    /// ROCm SMI could not be loaded or initialised; AMD GPUs fall back to sysfs.
    RocmSmiUnavailable,
    RocmSmiDeviceError,
    /// The PCI bus and a vendor library disagree on how many GPUs there are.
    GpuCountMismatch,
    /// Two sources disagree on a GPU's memory size.
    VramConflict,
    /// A vendor library's description of a GPU contradicts its PCI ID (an H100 by ID that
    /// reports an Ampere compute capability).
    IdentityConflict,
    /// A GPU whose PCI ID is in no table, so its memory size is unknown until its driver loads.
    UnknownDevice,
    /// A GPU with no kernel driver bound.
    NoDriver,
    /// A file that should be there could not be read.
    ReadError,
}

impl Warning {
    pub fn new(kind: WarningKind, message: impl Into<String>) -> Warning {
        Warning { kind, message: message.into() }
    }
}

/// The driver stack chosen for a GPU (see `aither-hwprofile`'s `drivers` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    NvidiaOpen,
    NvidiaLegacy,
    AmdgpuRocm,
    Amdgpu,
    I915,
    Xe,
    None,
}

impl Stack {
    /// Whether the stack's kernel modules are built outside the distribution kernel and so
    /// must be signed by a key the firmware trusts when Secure Boot is on.
    pub fn out_of_tree(self) -> bool {
        matches!(self, Stack::NvidiaOpen | Stack::NvidiaLegacy)
    }
}

/// The driver choice for one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DriverChoice {
    pub pci_address: String,
    pub stack: Stack,
    pub reason: String,
    /// Secure Boot is enabled (`null`: unknown, e.g. BIOS boot or unreadable variable).
    pub secure_boot: Option<bool>,
    /// The stack's modules must be signed with an enrolled key (or MOK) to load.
    pub signed_modules_required: bool,
}
