//! GPU driver choice: a pure function of a GPU's PCI identity and the Secure Boot state.
//!
//! | GPU | stack |
//! |---|---|
//! | NVIDIA Turing and newer | `nvidia-open` (the open kernel modules, NVIDIA's default since R560) |
//! | NVIDIA Maxwell, Pascal, Volta | `nvidia-legacy` (the proprietary modules; the 580 branch is the last for them) |
//! | NVIDIA Kepler and older | `none` (last supported by the end-of-life 470 branch) |
//! | AMD with a gfx target ROCm supports | `amdgpu-rocm` (in-tree amdgpu plus ROCm userspace) |
//! | other AMD | `amdgpu` (in-tree, graphics and Vulkan only) |
//! | Intel up to Alchemist / Meteor Lake | `i915` |
//! | Intel Battlemage, Lunar Lake and newer | `xe` |
//!
//! Out-of-tree modules (both NVIDIA stacks) must be signed when Secure Boot is on; in-tree
//! drivers are signed by the distribution.

use crate::devices::{self, Arch};
use crate::profile::Vendor;
pub use crate::profile::{DriverChoice, Stack};

/// gfx targets supported by ROCm 6.x/7.x on Linux (the ROCm compatibility matrix).
pub const ROCM_GFX_TARGETS: &[&str] =
    &["gfx908", "gfx90a", "gfx942", "gfx950", "gfx1030", "gfx1100", "gfx1101", "gfx1200", "gfx1201"];

/// What the choice is made from: the PCI identity, and the gfx target when a source knows it
/// for a device the table lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuIdentity<'a> {
    pub pci_address: &'a str,
    pub vendor: Vendor,
    pub device_id: u16,
    pub revision: u8,
    pub gfx_target: Option<&'a str>,
}

/// Choose the driver stack for one GPU.
pub fn choose(gpu: GpuIdentity<'_>, secure_boot: Option<bool>) -> DriverChoice {
    let known = devices::lookup(gpu.vendor, gpu.device_id, gpu.revision);
    let (stack, reason) = match gpu.vendor {
        Vendor::Nvidia => {
            let (arch, how) = match known {
                Some(d) => (Some(d.arch), format!("{} is", d.name)),
                None => (
                    devices::nvidia_arch_from_id_range(gpu.device_id),
                    format!("device {:04x} is not in the table; by its ID range it is", gpu.device_id),
                ),
            };
            match arch {
                Some(a @ (Arch::NvTuring | Arch::NvAmpere | Arch::NvAda | Arch::NvHopper | Arch::NvBlackwell)) => {
                    (Stack::NvidiaOpen, format!("{how} {} (Turing or newer): NVIDIA open kernel modules", a.name()))
                }
                Some(a @ (Arch::NvMaxwell | Arch::NvPascal | Arch::NvVolta)) => (
                    Stack::NvidiaLegacy,
                    format!("{how} {}: the open modules need Turing or newer; proprietary 580 branch", a.name()),
                ),
                Some(a @ Arch::NvKepler) => {
                    (Stack::None, format!("{how} {}: last supported by the 470 branch, which is end-of-life", a.name()))
                }
                _ => (
                    Stack::None,
                    format!("NVIDIA device {:04x}: architecture unknown, no driver chosen", gpu.device_id),
                ),
            }
        }
        Vendor::Amd => {
            let (gfx, name) = match known {
                Some(d) => (
                    match d.arch {
                        Arch::Amd(g) => Some(g),
                        _ => None,
                    },
                    d.name.to_string(),
                ),
                None => (gpu.gfx_target, format!("AMD device {:04x}", gpu.device_id)),
            };
            match gfx {
                Some(g) if ROCM_GFX_TARGETS.contains(&g) => {
                    (Stack::AmdgpuRocm, format!("{name} is {g}, which ROCm supports"))
                }
                Some(g) => (Stack::Amdgpu, format!("{name} is {g}, which ROCm does not support: amdgpu (Vulkan) only")),
                None => (Stack::Amdgpu, format!("{name}: gfx target unknown until amdgpu loads; amdgpu (Vulkan) only")),
            }
        }
        Vendor::Intel => match known {
            Some(d) if d.arch == Arch::IntelXe => (Stack::Xe, format!("{} (Xe2 or newer): xe driver", d.name)),
            Some(d) => (Stack::I915, format!("{}: i915 driver", d.name)),
            None => (
                Stack::I915,
                format!("Intel device {:04x} is not in the table: i915, the default for Intel graphics", gpu.device_id),
            ),
        },
    };
    let signed_modules_required = stack.out_of_tree() && secure_boot == Some(true);
    DriverChoice { pci_address: gpu.pci_address.to_string(), stack, reason, secure_boot, signed_modules_required }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(vendor: Vendor, device_id: u16, revision: u8) -> GpuIdentity<'static> {
        GpuIdentity { pci_address: "0000:01:00.0", vendor, device_id, revision, gfx_target: None }
    }

    #[test]
    fn driver_choice_table() {
        use Stack::*;
        use Vendor::*;
        let cases: &[(Vendor, u16, u8, Stack)] = &[
            (Nvidia, 0x2684, 0xa1, NvidiaOpen),   // RTX 4090, Ada
            (Nvidia, 0x2503, 0xa1, NvidiaOpen),   // RTX 3060, Ampere
            (Nvidia, 0x2330, 0xa1, NvidiaOpen),   // H100 SXM, Hopper
            (Nvidia, 0x2b85, 0xa1, NvidiaOpen),   // RTX 5090, Blackwell
            (Nvidia, 0x1eb8, 0xa1, NvidiaOpen),   // T4, Turing
            (Nvidia, 0x1b80, 0xa1, NvidiaLegacy), // GTX 1080, Pascal
            (Nvidia, 0x1db4, 0xa1, NvidiaLegacy), // V100, Volta
            (Nvidia, 0x17c8, 0xa1, NvidiaLegacy), // GTX 980 Ti, Maxwell
            (Nvidia, 0x102d, 0xa1, None),         // K80, Kepler
            (Nvidia, 0x2899, 0xa1, NvidiaOpen),   // unknown ID in the Ada range
            (Nvidia, 0x0a20, 0xa1, None),         // unknown, pre-Kepler range
            (Amd, 0x744c, 0xc8, AmdgpuRocm),      // RX 7900 XTX, gfx1100
            (Amd, 0x74a1, 0x00, AmdgpuRocm),      // MI300X, gfx942
            (Amd, 0x740f, 0x02, AmdgpuRocm),      // MI210, gfx90a
            (Amd, 0x7480, 0xc0, Amdgpu),          // RX 7600, gfx1102
            (Amd, 0x1234, 0x00, Amdgpu),          // unknown AMD
            (Intel, 0x56a0, 0x08, I915),          // Arc A770
            (Intel, 0xa7a0, 0x04, I915),          // Raptor Lake iGPU
            (Intel, 0xe20b, 0x00, Xe),            // Arc B580
        ];
        for &(vendor, device, rev, want) in cases {
            let got = choose(id(vendor, device, rev), Option::None);
            assert_eq!(got.stack, want, "{vendor} {device:04x}: {}", got.reason);
            assert!(!got.reason.is_empty());
        }
    }

    #[test]
    fn an_unknown_amd_card_uses_the_gfx_target_a_source_reported() {
        let gpu = GpuIdentity { gfx_target: Some("gfx1100"), ..id(Vendor::Amd, 0x7470, 0) };
        assert_eq!(choose(gpu, Option::None).stack, Stack::AmdgpuRocm);
    }

    #[test]
    fn secure_boot_requires_signed_modules_only_for_out_of_tree_stacks() {
        let nv = choose(id(Vendor::Nvidia, 0x2684, 0xa1), Some(true));
        assert!(nv.signed_modules_required);
        let amd = choose(id(Vendor::Amd, 0x744c, 0xc8), Some(true));
        assert!(!amd.signed_modules_required);
        let off = choose(id(Vendor::Nvidia, 0x2684, 0xa1), Some(false));
        assert!(!off.signed_modules_required);
    }
}
