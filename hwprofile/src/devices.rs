//! The built-in table of known GPUs, keyed by PCI vendor and device ID.
//!
//! This is what the appliance knows before any driver is loaded: the name, architecture,
//! memory size and driver family of a card from its PCI IDs alone. IDs are from the PCI ID
//! repository (pci.ids) and the vendors' published specifications. Where one device ID
//! covers cards with different memory (the RX 7900 XT and XTX share `744c`), the revision
//! tells them apart, or the entry gives no memory size rather than a guess.

use crate::profile::Vendor;

const GIB: u64 = 1 << 30;

/// GPU architecture families, as the driver choice needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    NvKepler,
    NvMaxwell,
    NvPascal,
    NvVolta,
    NvTuring,
    NvAmpere,
    NvAda,
    NvHopper,
    NvBlackwell,
    /// AMD, with its LLVM gfx target.
    Amd(&'static str),
    /// Intel graphics driven by i915 (Gen9–Gen12, Alchemist).
    IntelI915,
    /// Intel graphics driven by xe (Battlemage, Lunar Lake and newer).
    IntelXe,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::NvKepler => "kepler",
            Arch::NvMaxwell => "maxwell",
            Arch::NvPascal => "pascal",
            Arch::NvVolta => "volta",
            Arch::NvTuring => "turing",
            Arch::NvAmpere => "ampere",
            Arch::NvAda => "ada",
            Arch::NvHopper => "hopper",
            Arch::NvBlackwell => "blackwell",
            Arch::Amd(gfx) => gfx,
            Arch::IntelI915 => "intel-gen12",
            Arch::IntelXe => "intel-xe2",
        }
    }
}

/// One entry of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownDevice {
    pub vendor: Vendor,
    pub device_id: u16,
    /// Only this PCI revision, when the device ID alone is ambiguous.
    pub revision: Option<u8>,
    pub name: &'static str,
    pub arch: Arch,
    /// Dedicated memory; `None` for integrated GPUs or when the ID is ambiguous.
    pub vram_bytes: Option<u64>,
    pub integrated: bool,
}

const fn nv(device_id: u16, name: &'static str, arch: Arch, vram_gib: u64) -> KnownDevice {
    KnownDevice {
        vendor: Vendor::Nvidia,
        device_id,
        revision: None,
        name,
        arch,
        vram_bytes: Some(vram_gib * GIB),
        integrated: false,
    }
}

const fn amd(
    device_id: u16,
    revision: Option<u8>,
    name: &'static str,
    gfx: &'static str,
    vram_gib: Option<u64>,
) -> KnownDevice {
    KnownDevice {
        vendor: Vendor::Amd,
        device_id,
        revision,
        name,
        arch: Arch::Amd(gfx),
        vram_bytes: match vram_gib {
            Some(g) => Some(g * GIB),
            None => None,
        },
        integrated: false,
    }
}

const fn intel(device_id: u16, name: &'static str, arch: Arch, vram_gib: Option<u64>) -> KnownDevice {
    KnownDevice {
        vendor: Vendor::Intel,
        device_id,
        revision: None,
        name,
        arch,
        vram_bytes: match vram_gib {
            Some(g) => Some(g * GIB),
            None => None,
        },
        integrated: vram_gib.is_none(),
    }
}

use Arch::*;

/// The table. Keep it sorted by vendor, then architecture, for review.
pub static KNOWN_DEVICES: &[KnownDevice] = &[
    // NVIDIA Kepler: last supported by the 470 branch.
    nv(0x102d, "Tesla K80", NvKepler, 12),
    // NVIDIA Maxwell
    nv(0x17c8, "GeForce GTX 980 Ti", NvMaxwell, 6),
    nv(0x13f2, "Tesla M60", NvMaxwell, 8),
    // NVIDIA Pascal
    nv(0x1b80, "GeForce GTX 1080", NvPascal, 8),
    nv(0x1b06, "GeForce GTX 1080 Ti", NvPascal, 11),
    nv(0x1b81, "GeForce GTX 1070", NvPascal, 8),
    nv(0x1c03, "GeForce GTX 1060 6GB", NvPascal, 6),
    nv(0x1c82, "GeForce GTX 1050 Ti", NvPascal, 4),
    nv(0x1c81, "GeForce GTX 1050", NvPascal, 2),
    nv(0x15f8, "Tesla P100 PCIe 16GB", NvPascal, 16),
    nv(0x1b38, "Tesla P40", NvPascal, 24),
    // NVIDIA Volta
    nv(0x1db4, "Tesla V100 PCIe 16GB", NvVolta, 16),
    nv(0x1db1, "Tesla V100 SXM2 16GB", NvVolta, 16),
    nv(0x1db5, "Tesla V100 SXM2 32GB", NvVolta, 32),
    nv(0x1db6, "Tesla V100 PCIe 32GB", NvVolta, 32),
    // NVIDIA Turing
    nv(0x1eb8, "Tesla T4", NvTuring, 16),
    nv(0x1e07, "GeForce RTX 2080 Ti Rev. A", NvTuring, 11),
    nv(0x1e04, "GeForce RTX 2080 Ti", NvTuring, 11),
    nv(0x1f08, "GeForce RTX 2060 Rev. A", NvTuring, 6),
    // NVIDIA Ampere
    nv(0x2503, "GeForce RTX 3060", NvAmpere, 12),
    nv(0x2504, "GeForce RTX 3060 Lite Hash Rate", NvAmpere, 12),
    nv(0x2487, "GeForce RTX 3060", NvAmpere, 12),
    nv(0x2484, "GeForce RTX 3070", NvAmpere, 8),
    nv(0x2206, "GeForce RTX 3080", NvAmpere, 10),
    nv(0x2204, "GeForce RTX 3090", NvAmpere, 24),
    nv(0x2203, "GeForce RTX 3090 Ti", NvAmpere, 24),
    nv(0x2230, "RTX A6000", NvAmpere, 48),
    nv(0x2236, "A10", NvAmpere, 24),
    nv(0x2237, "A10G", NvAmpere, 24),
    nv(0x25b6, "A16", NvAmpere, 16),
    nv(0x20f1, "A100 PCIe 40GB", NvAmpere, 40),
    nv(0x20b0, "A100 SXM4 40GB", NvAmpere, 40),
    nv(0x20b5, "A100 PCIe 80GB", NvAmpere, 80),
    nv(0x20b2, "A100 SXM4 80GB", NvAmpere, 80),
    nv(0x20b7, "A30", NvAmpere, 24),
    // NVIDIA Ada Lovelace
    nv(0x2882, "GeForce RTX 4060", NvAda, 8),
    nv(0x28e0, "GeForce RTX 4060 Max-Q / Mobile", NvAda, 8),
    nv(0x2803, "GeForce RTX 4060 Ti", NvAda, 8),
    nv(0x2805, "GeForce RTX 4060 Ti 16GB", NvAda, 16),
    nv(0x2786, "GeForce RTX 4070", NvAda, 12),
    nv(0x2783, "GeForce RTX 4070 SUPER", NvAda, 12),
    nv(0x2782, "GeForce RTX 4070 Ti", NvAda, 12),
    nv(0x2704, "GeForce RTX 4080", NvAda, 16),
    nv(0x2684, "GeForce RTX 4090", NvAda, 24),
    nv(0x27b8, "L4", NvAda, 24),
    nv(0x26b5, "L40", NvAda, 48),
    nv(0x26b9, "L40S", NvAda, 48),
    nv(0x26b1, "RTX 6000 Ada Generation", NvAda, 48),
    // NVIDIA Hopper
    nv(0x2330, "H100 SXM5 80GB", NvHopper, 80),
    nv(0x2331, "H100 PCIe", NvHopper, 80),
    nv(0x2321, "H100 NVL", NvHopper, 94),
    nv(0x2335, "H200 SXM 141GB", NvHopper, 141),
    // NVIDIA Blackwell
    nv(0x2b85, "GeForce RTX 5090", NvBlackwell, 32),
    nv(0x2c02, "GeForce RTX 5080", NvBlackwell, 16),
    nv(0x2901, "B200", NvBlackwell, 180),
    // AMD CDNA (Instinct)
    amd(0x738c, None, "Instinct MI100", "gfx908", Some(32)),
    amd(0x740f, None, "Instinct MI210", "gfx90a", Some(64)),
    // MI250 and MI250X: one PCI function per GCD, each with 64 GB.
    amd(0x7408, None, "Instinct MI250X", "gfx90a", Some(64)),
    amd(0x740c, None, "Instinct MI250X / MI250", "gfx90a", Some(64)),
    amd(0x74a1, None, "Instinct MI300X", "gfx942", Some(192)),
    amd(0x74a5, None, "Instinct MI325X", "gfx942", Some(256)),
    // AMD RDNA
    amd(0x73bf, None, "Radeon RX 6800 / 6800 XT / 6900 XT", "gfx1030", Some(16)),
    amd(0x744c, Some(0xc8), "Radeon RX 7900 XTX", "gfx1100", Some(24)),
    amd(0x744c, Some(0xcc), "Radeon RX 7900 XT", "gfx1100", Some(20)),
    amd(0x744c, None, "Radeon RX 7900 XT / 7900 XTX", "gfx1100", None),
    amd(0x7448, None, "Radeon PRO W7900", "gfx1100", Some(48)),
    amd(0x747e, None, "Radeon RX 7800 XT / 7700 XT", "gfx1101", None),
    amd(0x7480, None, "Radeon RX 7600", "gfx1102", Some(8)),
    amd(0x7550, None, "Radeon RX 9070 / 9070 XT", "gfx1201", Some(16)),
    // Intel discrete
    intel(0x56a0, "Arc A770", IntelI915, Some(16)),
    intel(0x56a1, "Arc A750", IntelI915, Some(8)),
    intel(0x0bd5, "Data Center GPU Max 1550", IntelI915, Some(128)),
    intel(0xe20b, "Arc B580", IntelXe, Some(12)),
    // Intel integrated
    intel(0x9a49, "TigerLake-LP GT2 [Iris Xe Graphics]", IntelI915, None),
    intel(0x46a6, "Alder Lake-P GT2 [Iris Xe Graphics]", IntelI915, None),
    intel(0xa7a0, "Raptor Lake-P [Iris Xe Graphics]", IntelI915, None),
    intel(0xa780, "Raptor Lake-S GT1 [UHD Graphics 770]", IntelI915, None),
    intel(0x7d55, "Meteor Lake-P [Intel Arc Graphics]", IntelI915, None),
    intel(0x64a0, "Lunar Lake [Intel Arc Graphics 130V / 140V]", IntelXe, None),
];

/// The table entry for a device: the exact revision first, then the revision-free entry.
pub fn lookup(vendor: Vendor, device_id: u16, revision: u8) -> Option<&'static KnownDevice> {
    let mut fallback = None;
    for d in KNOWN_DEVICES.iter().filter(|d| d.vendor == vendor && d.device_id == device_id) {
        match d.revision {
            Some(r) if r == revision => return Some(d),
            Some(_) => {}
            None => fallback = fallback.or(Some(d)),
        }
    }
    fallback
}

/// The architecture of an NVIDIA device that is not in the table, from the ranges NVIDIA
/// has assigned device IDs in. Good enough to choose a driver branch, which is all it is
/// used for; the result says it was inferred.
pub fn nvidia_arch_from_id_range(device_id: u16) -> Option<Arch> {
    Some(match device_id {
        // Arms are tried in order: the narrow Volta and Pascal datacenter ranges sit inside
        // wider ones and must come first.
        0x1d81 | 0x1db0..=0x1dbf => NvVolta,
        0x15f0..=0x15ff | 0x1b00..=0x1d7f => NvPascal,
        0x0fc0..=0x12ff => NvKepler,
        0x1340..=0x17ff => NvMaxwell,
        0x1e00..=0x1fff | 0x2180..=0x21ff => NvTuring,
        0x2200..=0x22ff | 0x2400..=0x25ff | 0x20b0..=0x20ff => NvAmpere,
        0x2300..=0x233f => NvHopper,
        0x2600..=0x28ff => NvAda,
        0x2900..=0x29ff | 0x2b00..=0x2fff => NvBlackwell,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_tells_the_7900_xt_from_the_xtx() {
        let xtx = lookup(Vendor::Amd, 0x744c, 0xc8).map(|d| d.name);
        let xt = lookup(Vendor::Amd, 0x744c, 0xcc).map(|d| d.name);
        let other = lookup(Vendor::Amd, 0x744c, 0x00);
        assert_eq!(xtx, Some("Radeon RX 7900 XTX"));
        assert_eq!(xt, Some("Radeon RX 7900 XT"));
        assert_eq!(other.and_then(|d| d.vram_bytes), None, "ambiguous revision gives no size");
    }

    #[test]
    fn h100_is_never_taken_for_an_a100() {
        let h100 = lookup(Vendor::Nvidia, 0x2330, 0xa1).map(|d| (d.name, d.arch));
        assert_eq!(h100, Some(("H100 SXM5 80GB", NvHopper)));
        let l4 = lookup(Vendor::Nvidia, 0x27b8, 0xa1).map(|d| (d.name, d.vram_bytes));
        assert_eq!(l4, Some(("L4", Some(24 * GIB))));
    }

    #[test]
    fn every_table_entry_agrees_with_the_nvidia_id_ranges() {
        for d in KNOWN_DEVICES.iter().filter(|d| d.vendor == Vendor::Nvidia) {
            assert_eq!(nvidia_arch_from_id_range(d.device_id), Some(d.arch), "{} {:04x}", d.name, d.device_id);
        }
    }

    #[test]
    fn no_two_entries_share_an_id_and_revision() {
        for (i, a) in KNOWN_DEVICES.iter().enumerate() {
            for b in &KNOWN_DEVICES[i + 1..] {
                assert!(
                    !(a.vendor == b.vendor && a.device_id == b.device_id && a.revision == b.revision),
                    "duplicate {:04x}",
                    a.device_id
                );
            }
        }
    }
}
