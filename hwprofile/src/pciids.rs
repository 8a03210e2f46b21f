//! Device names from the PCI ID database (`pci.ids`, packaged as hwdata).
//!
//! The file is about 1.4 MB; only the vendors asked about are parsed, and reading stops at
//! the device-class section that follows the vendor list.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Where distributions install pci.ids, relative to the root: Rocky/Fedora, Debian, others.
const CANDIDATES: &[&str] = &["usr/share/hwdata/pci.ids", "usr/share/misc/pci.ids", "usr/share/pci.ids"];

/// The pci.ids file under `root`, if there is one.
pub fn find(root: &Path) -> Option<PathBuf> {
    CANDIDATES.iter().map(|c| root.join(c)).find(|p| p.is_file())
}

/// Vendor and device names for the devices asked about.
#[derive(Debug, Default)]
pub struct Names {
    pub vendors: HashMap<u16, String>,
    pub devices: HashMap<(u16, u16), String>,
}

/// Look up names for `wanted` (vendor, device) pairs in the pci.ids file at `path`.
/// An unreadable file yields no names: names are a convenience, never a reason to fail.
pub fn lookup(path: &Path, wanted: &[(u16, u16)]) -> Names {
    let mut names = Names::default();
    let Ok(file) = File::open(path) else {
        return names;
    };
    let vendors: HashSet<u16> = wanted.iter().map(|(v, _)| *v).collect();
    let devices: HashSet<(u16, u16)> = wanted.iter().copied().collect();
    let mut current: Option<u16> = None;
    let mut buf = Vec::with_capacity(256);
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("C ") {
            break; // the class list; no vendors after it
        }
        if let Some(rest) = line.strip_prefix('\t') {
            if rest.starts_with('\t') {
                continue; // subsystem line
            }
            let Some(vendor) = current else { continue };
            if let Some((id, name)) = split_id(rest) {
                if devices.contains(&(vendor, id)) {
                    names.devices.insert((vendor, id), name.to_string());
                }
            }
        } else {
            current = split_id(line).and_then(|(id, name)| {
                vendors.contains(&id).then(|| {
                    names.vendors.insert(id, name.to_string());
                    id
                })
            });
            if current.is_none() && names.vendors.len() == vendors.len() && names.devices.len() == devices.len() {
                break; // everything found
            }
        }
    }
    names
}

fn split_id(s: &str) -> Option<(u16, &str)> {
    let (id, name) = s.split_once("  ")?;
    Some((u16::from_str_radix(id.trim(), 16).ok()?, name.trim()))
}

/// A marketing name from a pci.ids device name: `AD102 [GeForce RTX 4090]` gives
/// `GeForce RTX 4090`; a name without brackets is returned as it is.
pub fn marketing_name(name: &str) -> &str {
    match (name.find('['), name.rfind(']')) {
        (Some(open), Some(close)) if close > open => &name[open + 1..close],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# pci.ids sample\n\
10de  NVIDIA Corporation\n\
\t2684  AD102 [GeForce RTX 4090]\n\
\t\t1043 889d  ROG Strix RTX 4090\n\
\t2330  GH100 [H100 SXM5 80GB]\n\
1a03  ASPEED Technology, Inc.\n\
\t2000  ASPEED Graphics Family\n\
C 03  Display controller\n\
\t00  VGA compatible controller\n";

    #[test]
    fn names_come_from_the_vendor_section_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pci.ids");
        std::fs::write(&path, SAMPLE).expect("write");
        let names = lookup(&path, &[(0x10de, 0x2684), (0x1a03, 0x2000), (0x10de, 0xffff)]);
        assert_eq!(names.devices.get(&(0x10de, 0x2684)).map(String::as_str), Some("AD102 [GeForce RTX 4090]"));
        assert_eq!(names.devices.get(&(0x1a03, 0x2000)).map(String::as_str), Some("ASPEED Graphics Family"));
        assert_eq!(names.vendors.get(&0x10de).map(String::as_str), Some("NVIDIA Corporation"));
        assert!(!names.devices.contains_key(&(0x10de, 0xffff)));
        assert_eq!(marketing_name("AD102 [GeForce RTX 4090]"), "GeForce RTX 4090");
        assert_eq!(marketing_name("ASPEED Graphics Family"), "ASPEED Graphics Family");
    }

    #[test]
    fn a_missing_file_gives_no_names() {
        let names = lookup(Path::new("/nonexistent/pci.ids"), &[(0x10de, 0x2684)]);
        assert!(names.devices.is_empty());
    }
}
