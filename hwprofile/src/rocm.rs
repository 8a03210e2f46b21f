//! AMD GPUs: ROCm SMI (`librocm_smi64.so`) opened at run time with `libloading`, and the
//! amdgpu driver's sysfs files when ROCm SMI is absent.
//!
//! The library is opened, used and shut down inside one call; every symbol is looked up
//! before use, so an old or partial library is a warning, never a crash.

#![allow(unsafe_code)]

use std::ffi::{c_char, CStr, OsStr, OsString};
use std::fs;
use std::path::Path;

use libloading::{Library, Symbol};

use crate::profile::{Warning, WarningKind};
use crate::sysfs;

pub const DEFAULT_LIBRARY: &str = "librocm_smi64.so.1";
const LIBRARY_DIRS: &[&str] = &["opt/rocm/lib", "usr/lib64", "usr/lib/x86_64-linux-gnu", "usr/lib"];

/// `rsmi_status_t` success.
const RSMI_STATUS_SUCCESS: u32 = 0;
/// `RSMI_MEM_TYPE_VRAM` in `rsmi_memory_type_t`.
const RSMI_MEM_TYPE_VRAM: u32 = 0;

type InitFn = unsafe extern "C" fn(u64) -> u32;
type ShutDownFn = unsafe extern "C" fn() -> u32;
type CountFn = unsafe extern "C" fn(*mut u32) -> u32;
type NameFn = unsafe extern "C" fn(u32, *mut c_char, usize) -> u32;
type U64Fn = unsafe extern "C" fn(u32, *mut u64) -> u32;
type MemFn = unsafe extern "C" fn(u32, u32, *mut u64) -> u32;

/// What ROCm SMI said of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocmGpu {
    pub pci_address: String,
    pub name: Option<String>,
    pub vram_total: Option<u64>,
    pub vram_used: Option<u64>,
    pub gfx_target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocmReport {
    pub library: String,
    pub gpus: Vec<RocmGpu>,
    pub warnings: Vec<Warning>,
}

/// The library to open: the one given, else one inside `root`, else (for `/`) the soname
/// and then ROCm's default prefix.
pub fn library_path(root: &Path, explicit: Option<&Path>) -> Option<OsString> {
    if let Some(p) = explicit {
        return Some(p.as_os_str().to_os_string());
    }
    let found = LIBRARY_DIRS.iter().map(|d| root.join(d).join(DEFAULT_LIBRARY)).find(|p| p.exists());
    match found {
        Some(p) => Some(p.into_os_string()),
        None if root == Path::new("/") => Some(OsString::from(DEFAULT_LIBRARY)),
        None => None,
    }
}

fn unavailable(library: &OsStr, what: impl std::fmt::Display) -> Warning {
    Warning::new(WarningKind::RocmSmiUnavailable, format!("ROCm SMI ({}): {what}", library.to_string_lossy()))
}

/// Query every GPU ROCm SMI monitors. `Err` is the warning when it could not be used at all.
pub fn query(library: &OsStr) -> Result<RocmReport, Warning> {
    // SAFETY: loading a shared library runs its initialisers. librocm_smi64 is AMD's
    // management library (or a test fake with the same ABI); its initialisers have no
    // preconditions on this process.
    let lib =
        unsafe { Library::new(library) }.map_err(|e| unavailable(library, format!("cannot load the library: {e}")))?;
    let symbol_error =
        |name: &str, e: libloading::Error| unavailable(library, format!("library lacks {name} (too old?): {e}"));

    // SAFETY: each type below matches the C prototype in rocm_smi.h:
    //   rsmi_status_t rsmi_init(uint64_t);  rsmi_status_t rsmi_shut_down(void);
    //   rsmi_status_t rsmi_num_monitor_devices(uint32_t *);
    let (init, shut_down, count_fn): (Symbol<InitFn>, Symbol<ShutDownFn>, Symbol<CountFn>) = unsafe {
        (
            lib.get(b"rsmi_init\0").map_err(|e| symbol_error("rsmi_init", e))?,
            lib.get(b"rsmi_shut_down\0").map_err(|e| symbol_error("rsmi_shut_down", e))?,
            lib.get(b"rsmi_num_monitor_devices\0").map_err(|e| symbol_error("rsmi_num_monitor_devices", e))?,
        )
    };
    // SAFETY: the per-device queries, each matching rocm_smi.h; absent ones are None.
    let name_fn: Option<Symbol<NameFn>> = unsafe { lib.get(b"rsmi_dev_name_get\0").ok() };
    // SAFETY: rsmi_status_t rsmi_dev_pci_id_get(uint32_t, uint64_t *bdfid).
    let pci_fn: Option<Symbol<U64Fn>> = unsafe { lib.get(b"rsmi_dev_pci_id_get\0").ok() };
    // SAFETY: rsmi_status_t rsmi_dev_memory_total_get(uint32_t, rsmi_memory_type_t, uint64_t *).
    let total_fn: Option<Symbol<MemFn>> = unsafe { lib.get(b"rsmi_dev_memory_total_get\0").ok() };
    // SAFETY: rsmi_status_t rsmi_dev_memory_usage_get(uint32_t, rsmi_memory_type_t, uint64_t *).
    let used_fn: Option<Symbol<MemFn>> = unsafe { lib.get(b"rsmi_dev_memory_usage_get\0").ok() };
    // SAFETY: rsmi_status_t rsmi_dev_target_graphics_version_get(uint32_t, uint64_t *).
    let gfx_fn: Option<Symbol<U64Fn>> = unsafe { lib.get(b"rsmi_dev_target_graphics_version_get\0").ok() };

    // SAFETY: rsmi_init takes flags by value; 0 is the documented default.
    let status = unsafe { init(0) };
    if status != RSMI_STATUS_SUCCESS {
        return Err(unavailable(library, format!("rsmi_init failed with status {status}")));
    }
    let mut count = 0u32;
    // SAFETY: the out-pointer is a valid, exclusively borrowed u32.
    let status = unsafe { count_fn(&mut count) };
    let mut warnings = Vec::new();
    let mut gpus = Vec::new();
    if status != RSMI_STATUS_SUCCESS {
        warnings.push(Warning::new(
            WarningKind::RocmSmiDeviceError,
            format!("rsmi_num_monitor_devices failed with status {status}"),
        ));
    }
    let Some(pci_fn) = pci_fn else {
        // SAFETY: balanced with the successful rsmi_init above.
        unsafe { shut_down() };
        return Err(unavailable(library, "library lacks rsmi_dev_pci_id_get (too old?)"));
    };
    for index in 0..count {
        let mut bdf = 0u64;
        // SAFETY: valid out-pointer; index < count.
        let status = unsafe { pci_fn(index, &mut bdf) };
        if status != RSMI_STATUS_SUCCESS {
            warnings.push(Warning::new(
                WarningKind::RocmSmiDeviceError,
                format!("ROCm SMI GPU {index}: PCI id query failed with status {status}"),
            ));
            continue;
        }
        let pci_address = bdf_to_address(bdf);
        let mut dev_warn = |what: &str, status: u32| {
            warnings.push(Warning::new(
                WarningKind::RocmSmiDeviceError,
                format!("ROCm SMI {what} of {pci_address}: status {status}"),
            ));
        };
        let name = name_fn.as_ref().and_then(|f| {
            let mut buf = [0 as c_char; 256];
            // SAFETY: the buffer is valid for its length, which is passed; the library
            // writes a NUL-terminated string of at most that length.
            let status = unsafe { f(index, buf.as_mut_ptr(), buf.len()) };
            if status != RSMI_STATUS_SUCCESS {
                dev_warn("name", status);
                return None;
            }
            // Guarantee termination even if the library filled the buffer.
            buf[buf.len() - 1] = 0;
            // SAFETY: buf is NUL-terminated (set above) and lives for this statement.
            let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
            Some(s.to_string_lossy().trim().to_string()).filter(|s| !s.is_empty())
        });
        let mut mem = |f: &Option<Symbol<MemFn>>, what: &str| -> Option<u64> {
            let f = f.as_ref()?;
            let mut v = 0u64;
            // SAFETY: valid out-pointer; memory type is a valid rsmi_memory_type_t.
            let status = unsafe { f(index, RSMI_MEM_TYPE_VRAM, &mut v) };
            if status == RSMI_STATUS_SUCCESS {
                Some(v)
            } else {
                dev_warn(what, status);
                None
            }
        };
        let vram_total = mem(&total_fn, "VRAM total");
        let vram_used = mem(&used_fn, "VRAM usage");
        let gfx_target = gfx_fn.as_ref().and_then(|f| {
            let mut v = 0u64;
            // SAFETY: valid out-pointer.
            let status = unsafe { f(index, &mut v) };
            // The digits of the target as hex: gfx942 is 0x942, gfx90a 0x90a.
            (status == RSMI_STATUS_SUCCESS && v != 0).then(|| format!("gfx{v:x}"))
        });
        gpus.push(RocmGpu { pci_address, name, vram_total, vram_used, gfx_target });
    }
    // SAFETY: balanced with the successful rsmi_init above; no ROCm SMI call follows.
    unsafe { shut_down() };
    Ok(RocmReport { library: library.to_string_lossy().into_owned(), gpus, warnings })
}

/// ROCm SMI's BDF id: domain in bits 63..32, bus 15..8, device 7..3, function 2..0.
fn bdf_to_address(bdf: u64) -> String {
    format!("{:04x}:{:02x}:{:02x}.{:x}", (bdf >> 32) & 0xffff_ffff, (bdf >> 8) & 0xff, (bdf >> 3) & 0x1f, bdf & 0x7)
}

/// What the amdgpu driver says in sysfs: VRAM from the device directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmdgpuSysfs {
    pub vram_total: Option<u64>,
    pub vram_used: Option<u64>,
}

pub fn amdgpu_sysfs(device_dir: &Path) -> AmdgpuSysfs {
    let read = |name: &str| sysfs::read_trimmed(&device_dir.join(name)).ok().and_then(|s| s.parse::<u64>().ok());
    AmdgpuSysfs { vram_total: read("mem_info_vram_total"), vram_used: read("mem_info_vram_used") }
}

/// gfx targets by PCI address from the KFD topology
/// (`<root>/sys/class/kfd/kfd/topology/nodes/*/properties`). `gfx_target_version` is
/// major·10000 + minor·100 + stepping, minor and stepping printed as hex digits in the
/// target name: 90010 is gfx90a, 110000 gfx1100, 90402 gfx942.
pub fn kfd_gfx_targets(root: &Path) -> Vec<(String, String)> {
    let dir = root.join("sys/class/kfd/kfd/topology/nodes");
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(props) = fs::read_to_string(entry.path().join("properties")) else {
            continue;
        };
        let num = |k: &str| sysfs::field(&props, k).and_then(|v| v.parse::<u64>().ok());
        let Some(version) = num("gfx_target_version").filter(|v| *v != 0) else {
            continue;
        }; // CPU node
        let Some(location) = num("location_id") else {
            continue;
        };
        let domain = num("domain").unwrap_or(0);
        let address = format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            domain,
            (location >> 8) & 0xff,
            (location >> 3) & 0x1f,
            location & 0x7
        );
        let (major, minor, stepping) = (version / 10000, (version / 100) % 100, version % 100);
        out.push((address, format!("gfx{major}{minor:x}{stepping:x}")));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_ids_become_sysfs_addresses() {
        assert_eq!(bdf_to_address(0x03 << 8), "0000:03:00.0");
        assert_eq!(bdf_to_address((0x0001 << 32) | (0xc1 << 8) | (0x02 << 3) | 1), "0001:c1:02.1");
    }

    #[test]
    fn kfd_versions_become_gfx_names() {
        let root = tempfile::tempdir().expect("tempdir");
        let nodes = root.path().join("sys/class/kfd/kfd/topology/nodes");
        for (n, version, location) in [(0u32, 0u64, 0u64), (1, 90010, 0x0300), (2, 110000, 0x0c00), (3, 90402, 0x1b00)]
        {
            let d = nodes.join(n.to_string());
            fs::create_dir_all(&d).expect("mkdir");
            fs::write(
                d.join("properties"),
                format!("cpu_cores_count 0\ngfx_target_version {version}\nlocation_id {location}\ndomain 0\n"),
            )
            .expect("write");
        }
        let got = kfd_gfx_targets(root.path());
        let want: Vec<(String, String)> =
            [("0000:03:00.0", "gfx90a"), ("0000:0c:00.0", "gfx1100"), ("0000:1b:00.0", "gfx942")]
                .iter()
                .map(|(a, g)| ((*a).to_string(), (*g).to_string()))
                .collect();
        assert_eq!(got, want);
    }
}
