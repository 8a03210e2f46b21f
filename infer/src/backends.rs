//! What llama.cpp runs on in this worker: its devices (CPU, GPUs) and the CPU features of
//! the ggml build in use, for `/props`, `/metrics` and the log.

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

/// The devices, and llama.cpp's own line of the CPU features it was built to use
/// (`CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | …`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backends {
    pub devices: Vec<Device>,
    pub system_info: String,
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
    Backends { devices, system_info: system_info() }
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
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
