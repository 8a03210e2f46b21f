//! Installing and removing a generated module with semodule.

use std::path::{Path, PathBuf};
use std::process::Command;

use aither_sys::command::run;

use crate::manifest::{Access, Permissions};
use crate::{PolicyError, TailoredPolicy};

/// The paths whose label a module changes (write grants), to relabel after installing it.
pub fn relabel_paths(perms: &Permissions) -> Vec<PathBuf> {
    perms.paths.iter().filter(|g| g.access == Access::Write).map(|g| g.path.clone()).collect()
}

/// Write the module to `dir/<module>.cil` (atomically) and install it with `semodule`.
pub fn install(policy: &TailoredPolicy, dir: &Path, semodule: &Path) -> Result<PathBuf, PolicyError> {
    let path = dir.join(format!("{}.cil", policy.module));
    let io = |e: std::io::Error| PolicyError::Semodule { what: path.display().to_string(), problem: e.to_string() };
    std::fs::create_dir_all(dir).map_err(io)?;
    aither_sys::atomic::write(&path, policy.cil.as_bytes()).map_err(io)?;
    run_semodule(semodule, &[std::ffi::OsStr::new("-i"), path.as_os_str()], &format!("installing {}", policy.module))?;
    Ok(path)
}

/// Remove an agent's module with `semodule -r`, and its file from `dir`.
pub fn remove(module: &str, dir: &Path, semodule: &Path) -> Result<(), PolicyError> {
    run_semodule(semodule, &[std::ffi::OsStr::new("-r"), std::ffi::OsStr::new(module)], &format!("removing {module}"))?;
    let _ = std::fs::remove_file(dir.join(format!("{module}.cil")));
    Ok(())
}

fn run_semodule(semodule: &Path, args: &[&std::ffi::OsStr], what: &str) -> Result<(), PolicyError> {
    run(Command::new(semodule).args(args))
        .map(|_| ())
        .map_err(|e| PolicyError::Semodule { what: what.to_string(), problem: e.to_string() })
}
