//! What llama.cpp runs on in this worker. ggml's compute backends are loadable modules
//! (infer/build.rs): [`load`] loads the best CPU variant for this CPU and any GPU backend
//! installed beside it, before llama.cpp starts; [`describe`] reports the devices, the
//! modules loaded and the CPU features in use, for `/props`, `/metrics` and the log.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use llama_cpp_2::LlamaBackendDeviceType;
use serde::Serialize;

/// One device llama.cpp can compute on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub name: String,
    pub description: String,
    /// The ggml backend (`CPU`, `CUDA`, `ROCm`, `Vulkan`).
    pub backend: String,
    pub kind: &'static str,
    pub memory_total: usize,
    pub memory_free: usize,
}

/// The devices, the backend modules loaded, and llama.cpp's own line of the CPU features in
/// use (`CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | …`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backends {
    pub devices: Vec<Device>,
    /// The CPU variant ggml chose for this CPU (`sse42`, `haswell`, `skylakex`, …).
    pub cpu_variant: Option<String>,
    /// The module files loaded, full paths.
    pub modules: Vec<String>,
    pub system_info: String,
}

impl Backends {
    /// One line for the worker's status (`aitherctl units`, `systemctl status`): the CPU
    /// variant and each other device, `CPU haswell + CUDA0 (NVIDIA H200)`.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("CPU {}", self.cpu_variant.as_deref().unwrap_or("(no variant)"))];
        parts
            .extend(self.devices.iter().filter(|d| d.kind != "cpu").map(|d| format!("{} ({})", d.name, d.description)));
        parts.join(" + ")
    }
}

/// Where the backend modules are: `--backends-dir`, else `ggml/` beside the executable (a
/// build tree), else the installed library directory (`AITHER_LIBDIR` at build time).
pub fn module_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("ggml")));
    match beside {
        Some(dir) if dir.is_dir() => dir,
        _ => PathBuf::from(env!("AITHER_LIBDIR")),
    }
}

/// Load ggml's backend modules from `dir`: of the CPU variants, the one that scores best on
/// this CPU (never one using instructions it lacks), and each GPU backend present. An error
/// names the directory when no CPU backend could be loaded. Call once, before llama.cpp.
#[allow(unsafe_code)]
pub fn load(dir: &Path) -> Result<(), String> {
    let path = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: the path has a NUL byte", dir.display()))?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; ggml copies it.
    // ggml's registry is process-global and this runs before any other llama.cpp call.
    unsafe { llama_cpp_sys_2::ggml_backend_load_all_from_path(path.as_ptr()) };
    if registered().iter().any(|name| name == "CPU") {
        return Ok(());
    }
    let found: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("libggml-cpu"))
                .collect()
        })
        .unwrap_or_default();
    Err(if found.is_empty() {
        format!("{}: no ggml CPU backend module (libggml-cpu-<level>.so) there", dir.display())
    } else {
        format!(
            "{}: none of the ggml CPU backend modules there runs on this CPU or loads ({}); \
             see `aither-hwprofile detect` for the CPU's instruction sets",
            dir.display(),
            found.join(", ")
        )
    })
}

/// The names of the backends registered with ggml (`CPU`, `CUDA`, …).
#[allow(unsafe_code)]
fn registered() -> Vec<String> {
    // SAFETY: ggml_backend_reg_count/get/name read ggml's registry; indices are below the
    // count, and each name is a NUL-terminated string owned by the backend (copied at once).
    unsafe {
        (0..llama_cpp_sys_2::ggml_backend_reg_count())
            .filter_map(|i| {
                let reg = llama_cpp_sys_2::ggml_backend_reg_get(i);
                let name = llama_cpp_sys_2::ggml_backend_reg_name(reg);
                (!name.is_null()).then(|| std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned())
            })
            .collect()
    }
}

/// The ggml module files mapped into this process (from /proc/self/maps): which variant ggml
/// chose, as the loader sees it.
fn loaded_modules() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for path in maps.lines().filter_map(|l| l.split_whitespace().nth(5)) {
        let name = path.rsplit('/').next().unwrap_or(path);
        // The shared libraries map by their versioned names (libggml-base.so.0.26.0): only
        // the modules end in `.so`.
        if name.starts_with("libggml-") && name.ends_with(".so") && !out.iter().any(|p| p == path) {
            out.push(path.to_string());
        }
    }
    out
}

/// The CPU variant in a module's file name: `libggml-cpu-haswell.so` → `haswell`.
fn cpu_variant(modules: &[String]) -> Option<String> {
    modules.iter().find_map(|p| {
        let name = p.rsplit('/').next()?;
        name.strip_prefix("libggml-cpu-")?.strip_suffix(".so").map(str::to_string)
    })
}

/// Ask llama.cpp (after its backend is initialized).
pub fn describe() -> Backends {
    let devices = llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| Device {
            name: d.name,
            description: d.description,
            backend: d.backend,
            kind: match d.device_type {
                LlamaBackendDeviceType::Cpu => "cpu",
                LlamaBackendDeviceType::Accelerator => "accelerator",
                LlamaBackendDeviceType::Gpu => "gpu",
                LlamaBackendDeviceType::IntegratedGpu => "igpu",
                LlamaBackendDeviceType::Unknown => "unknown",
            },
            memory_total: d.memory_total,
            memory_free: d.memory_free,
        })
        .collect();
    let modules = loaded_modules();
    Backends { devices, cpu_variant: cpu_variant(&modules), modules, system_info: system_info() }
}

#[allow(unsafe_code)]
fn system_info() -> String {
    // SAFETY: llama_print_system_info takes no arguments and returns a pointer to a
    // NUL-terminated string in llama.cpp's own static storage (never null, never freed); it
    // is copied out at once.
    let ptr = unsafe { llama_cpp_sys_2::llama_print_system_info() };
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: `ptr` is a valid NUL-terminated C string (above).
    unsafe { std::ffi::CStr::from_ptr(ptr) }.to_string_lossy().trim().trim_end_matches('|').trim().to_string()
}

/// A Prometheus label value: backslash, quote and newline escaped.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variant_is_read_from_the_module_name() {
        let m = vec!["/usr/lib64/aither/libggml-cuda.so".to_string(), "/x/libggml-cpu-skylakex.so".to_string()];
        assert_eq!(cpu_variant(&m).as_deref(), Some("skylakex"));
        assert_eq!(cpu_variant(&["/x/libggml-cpu.so".to_string()]), None);
    }

    #[test]
    fn the_summary_names_the_variant_and_each_accelerator() {
        let device = |name: &str, kind| Device {
            name: name.into(),
            description: format!("{name} card"),
            backend: "CUDA".into(),
            kind,
            memory_total: 0,
            memory_free: 0,
        };
        let b = Backends {
            devices: vec![device("CPU", "cpu"), device("CUDA0", "gpu")],
            cpu_variant: Some("zen4".into()),
            modules: vec![],
            system_info: String::new(),
        };
        assert_eq!(b.summary(), "CPU zen4 + CUDA0 (CUDA0 card)");
    }

    #[test]
    fn an_empty_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = load(dir.path()).expect_err("no module, no CPU backend");
        assert!(e.contains(&dir.path().display().to_string()) && e.contains("no ggml CPU backend"), "{e}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
