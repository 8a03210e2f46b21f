//! The `[permissions]` of an agent manifest: what an agent may do beyond its workspace.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::PolicyError;

/// What an agent may do beyond its workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub paths: Vec<PathGrant>,
    #[serde(default)]
    pub ports: Vec<PortGrant>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No sockets beyond Unix sockets in its workspace.
    #[default]
    None,
    /// The OpenAI-compatible gateway socket only.
    Gateway,
    /// TCP to and from the ports listed in `ports` (loopback-only is enforced by agentd's
    /// network isolation; SELinux grants the ports).
    Loopback,
    /// TCP connections to any port, and name resolution.
    Outbound,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathGrant {
    pub path: PathBuf,
    pub access: Access,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortGrant {
    pub port: u32,
    #[serde(default)]
    pub protocol: Protocol,
    pub access: PortAccess,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortAccess {
    Connect,
    Bind,
}

/// The agent's name and permissions from a manifest file. Only `name` and `[permissions]`
/// are read here; the rest of the manifest belongs to agentd's planner.
pub fn read_manifest(path: &Path) -> Result<(String, Permissions), PolicyError> {
    let field = |problem: String| PolicyError::Field { field: path.display().to_string(), problem };
    let text = std::fs::read_to_string(path).map_err(|e| field(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| field(e.to_string()))?;
    let name = match table.get("name") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => return Err(field("key name: expected a string".into())),
        None => return Err(field("key name is missing".into())),
    };
    let permissions = match table.get("permissions") {
        None => Permissions::default(),
        Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| field(format!("[permissions]: {e}")))?,
    };
    Ok((name, permissions))
}

/// Whether a manifest needs a tailored module at all.
pub fn needs_module(p: &Permissions) -> bool {
    p.network != Network::None || !p.paths.is_empty() || !p.ports.is_empty()
}
