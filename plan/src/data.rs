//! Loading what the plan is made from: the presets and the catalog (a data directory, or
//! the built-in copies), the appliance configuration's pinned preset, a saved profile.

use std::path::Path;

use anyhow::{Context, Result};

use crate::catalog::Catalog;
use crate::presets::Presets;
use aither_api::profile::Profile;

/// A profile written by `detect --format json`.
pub fn read_profile(path: &Path) -> Result<Profile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a hardware profile", path.display()))
}

/// The presets and the catalog from a data directory (`presets/`, `catalog/`), or the built-in ones.
pub fn load(dir: Option<&Path>) -> Result<(Presets, Catalog)> {
    Ok(match dir {
        Some(d) => (
            Presets::load_dir(&d.join("presets")).context("cannot load presets")?,
            Catalog::load_dir(&d.join("catalog")).context("cannot load the model catalog")?,
        ),
        None => (Presets::builtin().context("built-in presets")?, Catalog::builtin().context("built-in catalog")?),
    })
}

/// The appliance configuration (`/etc/aither/appliance.toml`) as a table; empty when the
/// file does not exist. First boot writes it, agentd pins presets in it.
pub fn appliance_table(path: &Path) -> Result<toml::Table> {
    match std::fs::read_to_string(path) {
        Ok(t) => toml::from_str(&t).with_context(|| format!("{}: not valid TOML", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The `preset` key of the appliance configuration, when the file exists. Other keys belong
/// to agentd and first boot and are checked there.
pub fn pinned_preset(path: &Path) -> Result<Option<String>> {
    match appliance_table(path)?.get("preset") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => {
            anyhow::bail!("{}: key preset: expected a preset name, found {}", path.display(), other.type_str())
        }
    }
}
