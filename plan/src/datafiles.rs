//! Reading a directory of TOML data files (presets, catalog) in a stable order.

use std::io;
use std::path::{Path, PathBuf};

/// Every `*.toml` in `dir` as (path for messages, contents), in lexical order. An error
/// carries the path that could not be read.
pub fn toml_sources(dir: &Path) -> Result<Vec<(String, String)>, (PathBuf, io::Error)> {
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| match std::fs::read_to_string(&p) {
            Ok(text) => Ok((p.display().to_string(), text)),
            Err(e) => Err((p, e)),
        })
        .collect()
}
