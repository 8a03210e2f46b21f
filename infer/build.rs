//! Builds ggml's compute backends as loadable modules beside the shared llama.cpp libraries,
//! and gathers both into `<target>/<profile>/ggml/`, where aither-infer finds them.
//!
//! llama-cpp-sys-2 builds llama.cpp and ggml as shared libraries without a CPU backend
//! (`GGML_BACKEND_DL=ON`, `GGML_CPU=OFF`, set in `.cargo/config.toml`). This script configures
//! the same source tree once more with all of ggml's x86-64 CPU variants declared and
//! builds only the ones asked for (`AITHER_GGML_CPU_VARIANTS`): each is a module
//! (`libggml-cpu-<level>.so`) that scores the running CPU; at start ggml loads the best one.
//! The GPU features add the GPU backend's module (`libggml-cuda.so`, `libggml-hip.so`,
//! `libggml-vulkan.so`).
//!
//! Environment:
//! - `AITHER_GGML_CPU_VARIANTS`: `all` (what the RPM ships: every level from SSE4.2 to
//!   Sapphire Rapids' AMX) or names from ggml's list, separated by spaces or commas; default
//!   `sse42 haswell` (x86-64-v2, Rocky 9's floor, and AVX2: what the tests need, in a
//!   fraction of the build time).
//! - `AITHER_LIBDIR`: where the installed libraries live (default `/usr/lib64/aither`); it is
//!   the binary's run path after `$ORIGIN/ggml` and the default place of the modules.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// ggml's x86-64 CPU variants (ggml/src/CMakeLists.txt, `GGML_CPU_ALL_VARIANTS`), lowest first.
const X86_VARIANTS: &[&str] = &[
    "x64",
    "sse42",
    "sandybridge",
    "ivybridge",
    "piledriver",
    "haswell",
    "skylakex",
    "cannonlake",
    "cascadelake",
    "icelake",
    "cooperlake",
    "zen4",
    "alderlake",
    "sapphirerapids",
];
const DEFAULT_VARIANTS: &str = "sse42 haswell";
const DEFAULT_LIBDIR: &str = "/usr/lib64/aither";

fn main() {
    for var in ["AITHER_GGML_CPU_VARIANTS", "AITHER_LIBDIR", "DEP_LLAMA_GGML_CMAKE_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    if let Err(e) = run() {
        eprintln!("aither-infer build: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();

    let libdir = env::var("AITHER_LIBDIR").unwrap_or_else(|_| DEFAULT_LIBDIR.to_string());
    if !libdir.starts_with('/') || libdir.contains(':') || libdir.chars().any(char::is_control) {
        return Err(format!("AITHER_LIBDIR={libdir:?}: must be an absolute path without ':'"));
    }
    println!("cargo:rustc-env=AITHER_LIBDIR={libdir}");
    // DT_RPATH (not RUNPATH): it also applies to the libraries' own dependencies (libllama
    // needs libggml). `$ORIGIN/ggml` serves the build tree; a confined worker (a secure exec,
    // where the loader ignores `$ORIGIN`) finds the installed libraries by the absolute path.
    println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags,-rpath,$ORIGIN/ggml:{libdir}");

    // llama-cpp-sys-2's install prefix: …/out/lib/cmake → …/out.
    let cmake_dir = env::var("DEP_LLAMA_GGML_CMAKE_DIR")
        .map_err(|_| "llama-cpp-sys-2 did not say where it installed ggml (DEP_LLAMA_GGML_CMAKE_DIR)".to_string())?;
    let sys_out = Path::new(&cmake_dir)
        .ancestors()
        .nth(2)
        .ok_or_else(|| format!("unexpected ggml CMake directory {cmake_dir}"))?
        .to_path_buf();
    let source = llama_source(&sys_out)?;

    let dest = profile_dir(&out_dir)?.join("ggml");
    fs::create_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;

    // The shared libraries: llama, ggml, ggml-base (installed), llama-common (build tree).
    for dir in [sys_out.join("lib"), sys_out.join("lib64"), sys_out.join("build").join("common")] {
        copy_libraries(&dir, &dest, |name| name.starts_with("lib") && name.contains(".so"))?;
    }

    resolve_sys_links(&dest)?;

    let mut targets = Vec::new();
    if arch == "x86_64" {
        targets.extend(cpu_variants()?.into_iter().map(|v| format!("ggml-cpu-{v}")));
    } else {
        // Other architectures: ggml's one CPU backend for the build's target (not shipped).
        targets.push("ggml-cpu".to_string());
    }
    // The whole llama.cpp tree is configured (the crate leaves out what ggml needs to be
    // configured on its own), but only the modules are built.
    let mut defines = vec![
        ("LLAMA_BUILD_COMMON", "OFF"),
        ("LLAMA_BUILD_TESTS", "OFF"),
        ("LLAMA_BUILD_TOOLS", "OFF"),
        ("LLAMA_BUILD_EXAMPLES", "OFF"),
        ("LLAMA_BUILD_SERVER", "OFF"),
        ("LLAMA_BUILD_APP", "OFF"),
        ("LLAMA_OPENSSL", "OFF"),
        ("LLAMA_CURL", "OFF"),
        ("BUILD_SHARED_LIBS", "ON"),
        // The modules find libggml-base in the process that loads them, not in this tree.
        ("CMAKE_SKIP_BUILD_RPATH", "ON"),
        ("GGML_BACKEND_DL", "ON"),
        ("GGML_NATIVE", "OFF"),
        ("GGML_OPENMP", "ON"),
        ("GGML_BUILD_TESTS", "OFF"),
        ("GGML_BUILD_EXAMPLES", "OFF"),
    ];
    if arch == "x86_64" {
        defines.push(("GGML_CPU_ALL_VARIANTS", "ON"));
    }
    for (feature, define, target) in
        [("CUDA", "GGML_CUDA", "ggml-cuda"), ("ROCM", "GGML_HIP", "ggml-hip"), ("VULKAN", "GGML_VULKAN", "ggml-vulkan")]
    {
        if env::var_os(format!("CARGO_FEATURE_{feature}")).is_some() {
            defines.push((define, "ON"));
            targets.push(target.to_string());
        }
    }

    let build = out_dir.join("ggml-modules");
    // A cache from another source tree (a llama-cpp-sys-2 update) cannot be reused.
    if cache_source(&build).is_ok_and(|old| old != source) {
        let _ = fs::remove_dir_all(&build);
    }
    let build_type = if env::var("PROFILE").as_deref() == Ok("release") { "Release" } else { "RelWithDebInfo" };
    let mut configure = Command::new(cmake());
    configure.arg("-S").arg(&source).arg("-B").arg(&build).arg(format!("-DCMAKE_BUILD_TYPE={build_type}"));
    for (k, v) in &defines {
        configure.arg(format!("-D{k}={v}"));
    }
    // As llama-cpp-sys-2 does: CMAKE_* settings from the environment (.cargo/config.toml).
    for (k, v) in env::vars().filter(|(k, _)| k.starts_with("CMAKE_") && k != "CMAKE_BUILD_TYPE") {
        println!("cargo:rerun-if-env-changed={k}");
        configure.arg(format!("-D{k}={v}"));
    }
    run_command(configure.arg("-Wno-dev"), "configure ggml's backend modules")?;

    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "2".to_string());
    let mut compile = Command::new(cmake());
    compile.arg("--build").arg(&build).arg("--parallel").arg(&jobs).arg("--target").args(&targets);
    run_command(&mut compile, "build ggml's backend modules")?;

    let wanted: Vec<String> = targets.iter().map(|t| format!("lib{t}.so")).collect();
    copy_libraries(&build.join("bin"), &dest, |name| wanted.iter().any(|w| w == name))?;
    for w in &wanted {
        if !dest.join(w).is_file() {
            return Err(format!("the build made no {w} in {}", build.join("bin").display()));
        }
    }
    // Modules of an earlier build with other variants or features go: the directory is what
    // `make install` ships.
    for entry in fs::read_dir(&dest).map_err(|e| format!("{}: {e}", dest.display()))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let module = name.starts_with("libggml-") && name.ends_with(".so") && name != "libggml-base.so";
        if module && !wanted.contains(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// The variants asked for, validated against ggml's list (they become CMake target names).
fn cpu_variants() -> Result<Vec<&'static str>, String> {
    let asked = env::var("AITHER_GGML_CPU_VARIANTS").unwrap_or_else(|_| DEFAULT_VARIANTS.to_string());
    if asked.trim() == "all" {
        return Ok(X86_VARIANTS.to_vec());
    }
    let mut out = Vec::new();
    for name in asked.split([' ', ',']).filter(|s| !s.is_empty()) {
        let known = X86_VARIANTS.iter().find(|v| **v == name).ok_or_else(|| {
            format!("AITHER_GGML_CPU_VARIANTS: unknown variant {name:?} (known: all, {})", X86_VARIANTS.join(", "))
        })?;
        if !out.contains(known) {
            out.push(*known);
        }
    }
    if out.is_empty() {
        return Err("AITHER_GGML_CPU_VARIANTS names no variant".to_string());
    }
    Ok(out)
}

/// The llama.cpp tree llama-cpp-sys-2 built, from its CMake cache.
fn llama_source(sys_out: &Path) -> Result<PathBuf, String> {
    let dir = cache_source(&sys_out.join("build"))?;
    if !dir.join("ggml").join("CMakeLists.txt").is_file() {
        return Err(format!("{}: no ggml source tree there", dir.display()));
    }
    Ok(dir)
}

/// The source tree of a CMake build directory.
fn cache_source(build: &Path) -> Result<PathBuf, String> {
    let cache = build.join("CMakeCache.txt");
    let text = fs::read_to_string(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("CMAKE_HOME_DIRECTORY:INTERNAL="))
        .ok_or_else(|| format!("{}: no CMAKE_HOME_DIRECTORY", cache.display()))?;
    Ok(PathBuf::from(dir))
}

/// `<target>/<profile>` from `<target>/<profile>/build/<pkg>-<hash>/out`.
fn profile_dir(out_dir: &Path) -> Result<PathBuf, String> {
    out_dir.ancestors().nth(3).map(Path::to_path_buf).ok_or_else(|| format!("unexpected OUT_DIR {}", out_dir.display()))
}

/// llama-cpp-sys-2 links `libllama.so` and the like into `<profile>/` and `<profile>/deps/`
/// but not the versioned files they point to, and a second build of it in the same profile
/// (other features) fails on the dangling links it finds there. Give them their targets.
fn resolve_sys_links(libs: &Path) -> Result<(), String> {
    let Some(profile) = libs.parent() else { return Ok(()) };
    let entries = fs::read_dir(libs).map_err(|e| format!("{}: {e}", libs.display()))?;
    let versioned: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".so.")))
        .collect();
    for dir in [profile.to_path_buf(), profile.join("deps"), profile.join("examples")] {
        if !dir.is_dir() {
            continue;
        }
        for from in &versioned {
            let to = dir.join(from.file_name().unwrap_or_default());
            if fs::symlink_metadata(&to).is_ok() {
                continue;
            }
            let done = match fs::read_link(from) {
                Ok(link) => std::os::unix::fs::symlink(link, &to),
                Err(_) => fs::hard_link(from, &to).or_else(|_| fs::copy(from, &to).map(|_| ())),
            };
            done.map_err(|e| format!("{}: {e}", to.display()))?;
        }
    }
    Ok(())
}

fn cmake() -> String {
    env::var("CMAKE").unwrap_or_else(|_| "cmake".to_string())
}

/// Copy the matching files of `from` (symbolic links as links) into `to`.
fn copy_libraries(from: &Path, to: &Path, keep: impl Fn(&str) -> bool) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(from) else { return Ok(()) };
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !keep(name) {
            continue;
        }
        let target = to.join(name);
        let _ = fs::remove_file(&target);
        let kind = entry.file_type().map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if kind.is_symlink() {
            let link = fs::read_link(entry.path()).map_err(|e| format!("{}: {e}", entry.path().display()))?;
            std::os::unix::fs::symlink(&link, &target).map_err(|e| format!("{}: {e}", target.display()))?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)
                .map_err(|e| format!("{} → {}: {e}", entry.path().display(), target.display()))?;
        }
    }
    Ok(())
}

fn run_command(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: {cmd:?} failed ({status})"))
    }
}
