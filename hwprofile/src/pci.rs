//! PCI devices from sysfs (`<root>/sys/bus/pci/devices/*`): the ground truth that is there
//! before any GPU driver is loaded.
//!
//! Only display controllers (class `0x03xxxx`) and processing accelerators (`0x12xxxx`) are
//! returned; everything else on the bus is of no interest to the profile.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::sysfs;

/// PCI base class of display controllers.
pub const CLASS_DISPLAY: u8 = 0x03;
/// PCI base class of processing accelerators.
pub const CLASS_ACCELERATOR: u8 = 0x12;

/// One display controller or accelerator as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// `0000:01:00.0`, as the directory is named.
    pub address: String,
    /// The 24-bit class code (`0x030000`).
    pub class: u32,
    pub vendor_id: u16,
    pub device_id: u16,
    pub subsystem_vendor_id: u16,
    pub subsystem_device_id: u16,
    pub revision: u8,
    /// Basename of the `driver` link, if a driver is bound.
    pub driver: Option<String>,
    /// `None` when the kernel says `-1` (no NUMA affinity) or the file is absent.
    pub numa_node: Option<u32>,
    pub current_link_speed: Option<String>,
    pub current_link_width: Option<u32>,
    pub max_link_speed: Option<String>,
    pub max_link_width: Option<u32>,
    /// The device's sysfs directory, for driver files (`mem_info_vram_total`).
    pub sysfs_path: PathBuf,
}

impl PciDevice {
    pub fn base_class(&self) -> u8 {
        // The class code is 24 bits: base class, subclass, programming interface.
        ((self.class >> 16) & 0xff) as u8
    }

    pub fn pci_id(&self) -> String {
        format!("{:04x}:{:04x}", self.vendor_id, self.device_id)
    }

    pub fn subsystem_id(&self) -> String {
        format!("{:04x}:{:04x}", self.subsystem_vendor_id, self.subsystem_device_id)
    }
}

/// Why a PCI device could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    #[error("cannot list PCI devices in {path}: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: expected a hexadecimal number, found {found:?}")]
    Parse { path: PathBuf, found: String },
}

/// The directory that lists PCI devices under `root`.
pub fn devices_dir(root: &Path) -> PathBuf {
    root.join("sys/bus/pci/devices")
}

/// Display controllers and accelerators under `root`, sorted by address.
///
/// A device whose identity files cannot be read is returned as an error in the second list
/// rather than aborting the scan: one bad device must not hide the others.
pub fn scan(root: &Path) -> Result<(Vec<PciDevice>, Vec<PciError>), PciError> {
    let dir = devices_dir(root);
    let entries = fs::read_dir(&dir).map_err(|source| PciError::List { path: dir.clone(), source })?;
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PciError::List { path: dir.clone(), source })?;
        let path = entry.path();
        let class = match read_hex(&path.join("class")) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let base = ((class >> 16) & 0xff) as u8;
        if base != CLASS_DISPLAY && base != CLASS_ACCELERATOR {
            continue;
        }
        match read_device(&path, class) {
            Ok(d) => devices.push(d),
            Err(e) => errors.push(e),
        }
    }
    devices.sort_by(|a, b| a.address.cmp(&b.address));
    Ok((devices, errors))
}

fn read_device(path: &Path, class: u32) -> Result<PciDevice, PciError> {
    let address = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let id16 = |name: &str| -> Result<u16, PciError> {
        let p = path.join(name);
        let v = read_hex(&p)?;
        u16::try_from(v).map_err(|_| PciError::Parse { path: p, found: format!("{v:#x}") })
    };
    let revision = {
        let p = path.join("revision");
        // Old kernels lack the file; revision 0 then matches only revision-free table entries.
        match read_hex(&p) {
            Ok(v) => u8::try_from(v).map_err(|_| PciError::Parse { path: p, found: format!("{v:#x}") })?,
            Err(PciError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        }
    };
    Ok(PciDevice {
        address: address.to_ascii_lowercase(),
        class,
        vendor_id: id16("vendor")?,
        device_id: id16("device")?,
        subsystem_vendor_id: id16("subsystem_vendor").unwrap_or(0),
        subsystem_device_id: id16("subsystem_device").unwrap_or(0),
        revision,
        driver: fs::read_link(path.join("driver"))
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned())),
        numa_node: sysfs::read_trimmed(&path.join("numa_node"))
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|n| u32::try_from(n).ok()),
        current_link_speed: sysfs::read_trimmed(&path.join("current_link_speed")).ok().filter(|s| !is_unknown(s)),
        current_link_width: sysfs::read_trimmed(&path.join("current_link_width")).ok().and_then(|s| s.parse().ok()),
        max_link_speed: sysfs::read_trimmed(&path.join("max_link_speed")).ok().filter(|s| !is_unknown(s)),
        max_link_width: sysfs::read_trimmed(&path.join("max_link_width")).ok().and_then(|s| s.parse().ok()),
        sysfs_path: path.to_path_buf(),
    })
}

fn is_unknown(s: &str) -> bool {
    s.is_empty() || s.starts_with("Unknown")
}

fn read_hex(path: &Path) -> Result<u32, PciError> {
    let s = sysfs::read_trimmed(path).map_err(|source| PciError::Read { path: path.to_path_buf(), source })?;
    let digits = s.strip_prefix("0x").unwrap_or(&s);
    u32::from_str_radix(digits, 16).map_err(|_| PciError::Parse { path: path.to_path_buf(), found: s.clone() })
}

/// Normalise a PCI bus id as vendor libraries print it (`00000000:3B:00.0`) to the sysfs form
/// (`0000:3b:00.0`). `None` when it is not a bus id.
pub fn normalize_bus_id(bus_id: &str) -> Option<String> {
    let (domain, rest) = bus_id.trim().split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let domain = u32::from_str_radix(domain, 16).ok()?;
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let device = u8::from_str_radix(device, 16).ok()?;
    let function = u8::from_str_radix(function, 16).ok()?;
    Some(format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_from_nvml_match_sysfs_names() {
        assert_eq!(normalize_bus_id("00000000:3B:00.0").as_deref(), Some("0000:3b:00.0"));
        assert_eq!(normalize_bus_id("0000:c1:00.1").as_deref(), Some("0000:c1:00.1"));
        assert_eq!(normalize_bus_id("garbage"), None);
        assert_eq!(normalize_bus_id("0000:zz:00.0"), None);
    }

    #[test]
    fn scan_of_a_missing_tree_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = scan(dir.path()).expect_err("no sys tree");
        assert!(matches!(err, PciError::List { ref path, .. } if path.ends_with("sys/bus/pci/devices")));
    }
}
