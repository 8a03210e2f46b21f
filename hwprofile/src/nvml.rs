//! NVIDIA GPUs through NVML (`libnvidia-ml.so.1`), loaded at run time by `nvml-wrapper`.
//!
//! NVML is initialised once per process ([`NVML`]): the first caller's library path wins and
//! later callers share the handle. Every failure, whole-library or per-query, is returned as
//! a [`Warning`] and the GPU keeps its PCI-tier figures; nothing here panics on a missing
//! symbol, an old library or a lost GPU, because `nvml-wrapper` resolves every symbol lazily
//! and reports a missing one as an error.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::OnceLock;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

use crate::pci::normalize_bus_id;
use crate::profile::{NvidiaDetails, NvmlRuntime, Warning, WarningKind};

/// The library name the dynamic loader resolves on a real system.
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";
/// Where distributions install it, for looking inside a root other than `/`.
const LIBRARY_DIRS: &[&str] = &["usr/lib64", "usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "usr/lib"];

/// The process-wide NVML handle and the library it was opened from.
static NVML: OnceLock<(OsString, Result<Nvml, String>)> = OnceLock::new();

/// What NVML said of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlGpu {
    /// Normalised PCI address, the key joining it to the PCI record.
    pub pci_address: String,
    pub name: Option<String>,
    pub memory_total: Option<u64>,
    pub memory_free: Option<u64>,
    pub details: NvidiaDetails,
}

/// All NVML reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlReport {
    pub runtime: NvmlRuntime,
    pub gpus: Vec<NvmlGpu>,
    pub warnings: Vec<Warning>,
}

/// The library to open: the one given, else one inside `root`, else (for `/`) the soname.
pub fn library_path(root: &Path, explicit: Option<&Path>) -> Option<OsString> {
    if let Some(p) = explicit {
        return Some(p.as_os_str().to_os_string());
    }
    if root == Path::new("/") {
        return Some(OsString::from(DEFAULT_LIBRARY));
    }
    LIBRARY_DIRS.iter().map(|d| root.join(d).join(DEFAULT_LIBRARY)).find(|p| p.exists()).map(|p| p.into_os_string())
}

/// Query every GPU NVML knows. `Err` carries the warning when NVML could not be used at all.
pub fn query(library: &OsStr) -> Result<NvmlReport, Warning> {
    let (opened, nvml) = NVML.get_or_init(|| {
        let result = Nvml::builder().lib_path(library).init().map_err(|e| describe(&e));
        (library.to_os_string(), result)
    });
    let nvml = nvml
        .as_ref()
        .map_err(|e| Warning::new(WarningKind::NvmlUnavailable, format!("NVML ({}): {e}", opened.to_string_lossy())))?;
    if opened != library {
        return Err(Warning::new(
            WarningKind::NvmlUnavailable,
            format!(
                "NVML was already opened from {} in this process; {} not used",
                opened.to_string_lossy(),
                library.to_string_lossy()
            ),
        ));
    }

    let mut warnings = Vec::new();
    // Every per-query failure becomes a warning naming the query and the GPU.
    let mut warn = |what: &str, detail: &str| {
        warnings.push(Warning::new(WarningKind::NvmlDeviceError, format!("NVML {what}: {detail}")));
    };
    let runtime = NvmlRuntime {
        library: opened.to_string_lossy().into_owned(),
        driver_version: nvml.sys_driver_version().map_err(|e| warn("driver version", &describe(&e))).ok(),
        cuda_version: nvml
            .sys_cuda_driver_version()
            .map(|v| {
                format!("{}.{}", nvml_wrapper::cuda_driver_version_major(v), nvml_wrapper::cuda_driver_version_minor(v))
            })
            .map_err(|e| warn("CUDA version", &describe(&e)))
            .ok(),
    };
    let count = nvml
        .device_count()
        .map_err(|e| Warning::new(WarningKind::NvmlUnavailable, format!("NVML device count: {}", describe(&e))))?;

    let mut gpus = Vec::new();
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                warn(&format!("GPU {index}"), &describe(&e));
                continue;
            }
        };
        // Without its bus id a GPU cannot be joined to its PCI record, so it is not used.
        let pci_address = match device.pci_info() {
            Ok(info) => match normalize_bus_id(&info.bus_id) {
                Some(a) => a,
                None => {
                    warn(&format!("GPU {index}"), &format!("unreadable PCI bus id {:?}", info.bus_id));
                    continue;
                }
            },
            Err(e) => {
                warn(&format!("GPU {index} PCI info"), &describe(&e));
                continue;
            }
        };
        let at = |what: &str| format!("{what} of {pci_address}");
        let memory = device.memory_info().map_err(|e| warn(&at("memory"), &describe(&e))).ok();
        let nvlink_peers = nvlink_peers(&device);
        gpus.push(NvmlGpu {
            name: device.name().map_err(|e| warn(&at("name"), &describe(&e))).ok(),
            memory_total: memory.as_ref().map(|m| m.total),
            memory_free: memory.as_ref().map(|m| m.free),
            details: NvidiaDetails {
                uuid: device.uuid().map_err(|e| warn(&at("UUID"), &describe(&e))).ok(),
                compute_capability: device
                    .cuda_compute_capability()
                    .map(|c| format!("{}.{}", c.major, c.minor))
                    .map_err(|e| warn(&at("compute capability"), &describe(&e)))
                    .ok(),
                power_limit_watts: optional(device.power_management_limit()).map(|mw| mw / 1000),
                mig_mode: optional(device.mig_mode())
                    .map(|m| if m.current == 1 { "enabled" } else { "disabled" }.to_string()),
                persistence_mode: optional(device.is_in_persistent_mode()),
                nvlink_peers,
            },
            pci_address,
        });
    }
    Ok(NvmlReport { runtime, gpus, warnings })
}

/// A query that a GPU may legitimately not support (MIG on a GeForce card): not supported is
/// an absent value, not a warning.
fn optional<T>(r: Result<T, NvmlError>) -> Option<T> {
    r.ok()
}

/// PCI addresses of the peers of the device's active NVLinks.
fn nvlink_peers(device: &nvml_wrapper::Device<'_>) -> Vec<String> {
    let mut peers = Vec::new();
    for link in 0..NVLINK_MAX_LINKS {
        let wrapper = device.link_wrapper_for(link);
        match wrapper.is_active() {
            Ok(true) => {}
            // Past the last link or no NVLink at all: stop asking.
            Ok(false) => continue,
            Err(_) => break,
        }
        if let Some(addr) = wrapper.remote_pci_info().ok().and_then(|p| normalize_bus_id(&p.bus_id)) {
            if !peers.contains(&addr) {
                peers.push(addr);
            }
        }
    }
    peers.sort();
    peers
}

/// `NVML_NVLINK_MAX_LINKS` in nvml.h.
const NVLINK_MAX_LINKS: u32 = 18;

fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(inner) => format!("cannot load the library: {inner}"),
        NvmlError::FailedToLoadSymbol(inner) => {
            format!("library lacks a symbol (too old?): {inner}")
        }
        NvmlError::DriverNotLoaded => "the NVIDIA kernel driver is not loaded".to_string(),
        NvmlError::GpuLost => "the GPU has fallen off the bus or is otherwise inaccessible".to_string(),
        other => other.to_string(),
    }
}
