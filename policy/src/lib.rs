//! # aither-policy: tailored SELinux policies, one CIL module per agent
//!
//! Generated from the agent's manifest; installed by `aitherctl policy install`.
//!
//! Every agent runs as `aither_agent_t` unless its manifest asks for more. When it does
//! (`[permissions]`: network, extra paths, ports), agentd generates a module that declares
//! the agent's own type, `aither_agent_<name>_t`, puts it in `aither_agent_domain` (so it
//! has everything `aither_agent_t` has and every `neverallow` of the `aitheros` module
//! applies to it) and grants exactly the manifest's rights, as udica does for containers.
//!
//! Paths and ports are granted on the types the loaded policy already gives them, found
//! through a [`LabelResolver`] (`matchpathcon` and `seinfo` on a real system, a fixed map in
//! tests). The generator refuses, with the manifest field named, what the base policy's
//! neverallows would refuse anyway (home directories, models, agentd's state) and writes to
//! system types, so a bad manifest fails before `semodule` is run.
//!
//! The CIL is built only from validated tokens: type names ([`Ident`]: an SELinux
//! identifier, whether it came from the manifest or from the policy tools), paths
//! ([`SafePath`]: absolute, without control characters, quotes, parentheses, semicolons or
//! `..`), and the generator's own constants. A manifest string can therefore never end a
//! comment, close an expression or start a statement; a property test feeds hostile
//! manifests and checks that every module parses into the allowed statements only.
//!
//! ```toml
//! name = "research"
//! [permissions]
//! network = "outbound"            # none | gateway | loopback | outbound
//! paths = [{ path = "/srv/datasets", access = "read" }, { path = "/srv/out", access = "write" }]
//! ports = [{ port = 5432, access = "connect" }, { port = 9000, protocol = "tcp", access = "bind" }]
//! ```

//!
//! ## Limitations
//!
//! - Paths are granted on the types the loaded policy gives them at generation time; a
//!   later relabelling of those paths is not followed (regenerate the module).
//! - Loopback-only networking is enforced by agentd's network isolation, not by this module.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use aither_sys::command::run;

use serde::Deserialize;

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

/// Finds the types the loaded policy gives to files and ports.
pub trait LabelResolver {
    /// The type of `path` by the policy's file contexts (`matchpathcon`).
    fn file_type(&self, path: &Path) -> Result<String, String>;
    /// The type of a port by the policy's port contexts; `None` when no portcon covers it.
    fn port_type(&self, protocol: Protocol, port: u16) -> Result<Option<String>, String>;
}

/// The resolver for a real system: `matchpathcon -n` and `seinfo --portcon` on the loaded policy.
#[derive(Debug, Clone)]
pub struct SystemResolver {
    pub policy: PathBuf,
}

impl Default for SystemResolver {
    fn default() -> Self {
        SystemResolver { policy: PathBuf::from("/sys/fs/selinux/policy") }
    }
}

fn type_of_context(context: &str) -> Option<String> {
    context.trim().split(':').nth(2).map(str::to_string)
}

impl LabelResolver for SystemResolver {
    fn file_type(&self, path: &Path) -> Result<String, String> {
        let out = run(Command::new("matchpathcon").arg("-n").arg(path)).map_err(|e| e.to_string())?;
        type_of_context(&out).ok_or_else(|| format!("matchpathcon {}: no context", path.display()))
    }

    fn port_type(&self, protocol: Protocol, port: u16) -> Result<Option<String>, String> {
        let text = run(Command::new("seinfo").arg(&self.policy).arg(format!("--portcon={port}")))
            .map_err(|e| e.to_string())?;
        // Lines like "   portcon tcp 8080 system_u:object_r:http_cache_port_t:s0"; the most
        // specific (single port before ranges) wins.
        let mut best: Option<(u32, String)> = None;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 4 || f[0] != "portcon" || f[1] != protocol.name() {
                continue;
            }
            let width = match f[2].split_once('-') {
                Some((lo, hi)) => hi.parse::<u32>().unwrap_or(0).saturating_sub(lo.parse::<u32>().unwrap_or(0)),
                None => 0,
            };
            if let Some(t) = type_of_context(f[3]) {
                if best.as_ref().is_none_or(|(w, _)| width < *w) {
                    best = Some((width, t));
                }
            }
        }
        Ok(best.map(|(_, t)| t))
    }
}

/// Types no agent may be given, whatever its manifest says (the base policy forbids them).
pub const FORBIDDEN_TYPES: &[&str] = &[
    "user_home_dir_t",
    "user_home_t",
    "admin_home_t",
    "aither_model_t",
    "aither_var_lib_t",
    "aither_conf_t",
    "aither_runtime_t",
    "shadow_t",
    "security_t",
    "selinux_config_t",
    "default_context_t",
    "file_context_t",
    "policy_config_t",
    "xserver_misc_device_t",
    "dri_device_t",
];

/// System types an agent may read but never write.
pub const READ_ONLY_TYPES: &[&str] = &[
    "root_t",
    "bin_t",
    "sbin_t",
    "lib_t",
    "usr_t",
    "etc_t",
    "boot_t",
    "ld_so_t",
    "shell_exec_t",
    "system_conf_t",
    "lib_t",
    "net_conf_t",
];

/// A generated module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailoredPolicy {
    /// Module name, `aither_agent_<name>`.
    pub module: String,
    /// The agent's type, `aither_agent_<name>_t`.
    pub domain: String,
    pub cil: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("agent name {name:?}: {problem}")]
    Name { name: String, problem: String },
    #[error("{field}: {problem}")]
    Field { field: String, problem: String },
    #[error("{field}: cannot resolve the label: {problem}")]
    Resolve { field: String, problem: String },
    #[error("{what}: {problem}")]
    Semodule { what: String, problem: String },
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

/// An SELinux identifier (a type or attribute name): an ASCII letter, then letters, digits
/// and '_', at most 128 characters. The only kind of name the generator writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    pub fn new(s: &str) -> Option<Ident> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.as_bytes()[0].is_ascii_alphabetic()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        ok.then(|| Ident(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path that may be written into a CIL string or comment: absolute, ASCII (file contexts
/// hold nothing else), no control characters, quotes, parentheses, semicolons, backslashes
/// or `..` components, at most 4096 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath(String);

impl SafePath {
    /// Validate `path`; the error names `field`.
    pub fn new(field: &str, path: &Path) -> Result<SafePath, PolicyError> {
        let bad = |problem: String| PolicyError::Field { field: field.to_string(), problem };
        let Some(text) = path.to_str() else {
            return Err(bad(format!("{} is not valid UTF-8", path.display())));
        };
        if !text.starts_with('/') {
            return Err(bad(format!("{text:?} is not an absolute path")));
        }
        if text.len() > 4096 {
            return Err(bad("the path is longer than 4096 bytes".into()));
        }
        if let Some(c) = text.chars().find(|c| c.is_control() || matches!(c, '"' | '(' | ')' | ';' | '\\')) {
            return Err(bad(format!("{text:?} contains {c:?}, which a policy path may not hold")));
        }
        if let Some(c) = text.chars().find(|c| !c.is_ascii()) {
            return Err(bad(format!("{text:?} contains {c:?}: SELinux file contexts hold ASCII only")));
        }
        if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(bad(format!("{text:?} contains '..'")));
        }
        let trimmed = text.trim_end_matches('/');
        Ok(SafePath(if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() }))
    }

    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl std::fmt::Display for SafePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A type name the policy tools answered, checked before it goes into the module.
fn resolved(field: &str, t: String) -> Result<Ident, PolicyError> {
    Ident::new(&t).ok_or_else(|| PolicyError::Resolve {
        field: field.to_string(),
        problem: format!("the policy answered {t:?}, which is not a type name"),
    })
}

/// Check an agent name and turn it into the part used in type names.
pub fn type_stem(name: &str) -> Result<String, PolicyError> {
    let bad = |problem: &str| PolicyError::Name { name: name.to_string(), problem: problem.to_string() };
    if name.is_empty() || name.len() > 32 {
        return Err(bad("must be 1 to 32 characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return Err(bad("may hold only a-z, 0-9, '-' and '_'"));
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return Err(bad("must start with a letter"));
    }
    Ok(name.replace('-', "_"))
}

const DIR_READ: &str = "getattr open read search ioctl lock";
const DIR_WRITE: &str =
    "getattr open read search ioctl lock add_name remove_name write create rmdir reparent setattr rename";
const FILE_READ: &str = "getattr open read ioctl lock map";
const FILE_WRITE: &str = "getattr open read ioctl lock map create write append unlink rename setattr link";
const TCP_CLIENT: &str = "create connect getattr setattr getopt setopt read write shutdown";
const TCP_SERVER: &str = "create bind listen accept getattr setattr getopt setopt read write shutdown";
const UDP: &str = "create connect bind getattr setattr getopt setopt read write";

/// Generate the tailored module for agent `name` with `perms`.
pub fn generate(name: &str, perms: &Permissions, resolver: &dyn LabelResolver) -> Result<TailoredPolicy, PolicyError> {
    let stem = type_stem(name)?;
    let ident = |s: String| {
        Ident::new(&s).ok_or_else(|| PolicyError::Name { name: name.into(), problem: "not a valid type stem".into() })
    };
    let domain = ident(format!("aither_agent_{stem}_t"))?;
    let module = format!("aither_agent_{stem}");
    let agentd = Ident("agentd_t".into());
    let this = Ident("self".into());
    // (comment, rule) pairs, rules deduplicated and sorted within each section.
    let mut sections: Vec<(String, BTreeSet<String>)> = Vec::new();
    let allow = |from: &Ident, to: &Ident, class: &str, perms: &str| format!("(allow {from} {to} ({class} ({perms})))");
    let known = |t: &str| Ident(t.to_string());

    match perms.network {
        Network::None => {
            if !perms.ports.is_empty() {
                return Err(PolicyError::Field {
                    field: "permissions.ports".into(),
                    problem: "ports need network = \"loopback\" or \"outbound\"".into(),
                });
            }
        }
        Network::Gateway => {
            let rules = [
                allow(&domain, &known("aither_runtime_t"), "dir", "getattr search"),
                allow(&domain, &known("aither_gateway_sock_t"), "sock_file", "getattr write"),
                allow(&domain, &agentd, "unix_stream_socket", "connectto"),
            ];
            sections.push(("network = \"gateway\": the gateway's Unix socket".into(), rules.into_iter().collect()));
        }
        Network::Loopback => {
            sections.push((
                "network = \"loopback\": TCP sockets; the ports are granted below".into(),
                [allow(&domain, &this, "tcp_socket", TCP_CLIENT)].into_iter().collect(),
            ));
        }
        Network::Outbound => {
            let rules = [
                allow(&domain, &this, "tcp_socket", TCP_CLIENT),
                allow(&domain, &this, "udp_socket", UDP),
                allow(&domain, &known("port_type"), "tcp_socket", "name_connect"),
                allow(&domain, &known("net_conf_t"), "file", "getattr open read"),
            ];
            sections
                .push(("network = \"outbound\": TCP to any port, name resolution".into(), rules.into_iter().collect()));
        }
    }

    for (i, grant) in perms.paths.iter().enumerate() {
        let field = format!("permissions.paths[{i}]");
        let path = SafePath::new(&field, &grant.path)?;
        let t = resolved(
            &field,
            resolver
                .file_type(path.as_path())
                .map_err(|problem| PolicyError::Resolve { field: field.clone(), problem })?,
        )?;
        if FORBIDDEN_TYPES.contains(&t.as_str()) {
            return Err(PolicyError::Field {
                field,
                problem: format!("{path} is labelled {t}, which no agent may be given"),
            });
        }
        if grant.access == Access::Write && READ_ONLY_TYPES.contains(&t.as_str()) {
            return Err(PolicyError::Field {
                field,
                problem: format!("{path} is labelled {t}, a system type agents may read but not write"),
            });
        }
        let mut rules = BTreeSet::new();
        // Traverse every ancestor.
        let mut ancestor = path.as_path().parent();
        while let Some(dir) = ancestor {
            let at = resolved(
                &field,
                resolver.file_type(dir).map_err(|problem| PolicyError::Resolve { field: field.clone(), problem })?,
            )?;
            if FORBIDDEN_TYPES.contains(&at.as_str()) {
                return Err(PolicyError::Field {
                    field,
                    problem: format!("{path} lies under {} ({at}), which no agent may enter", dir.display()),
                });
            }
            rules.insert(allow(&domain, &at, "dir", "getattr search"));
            ancestor = dir.parent();
        }
        match grant.access {
            // Read: the path keeps its label; the agent may read that type.
            Access::Read => {
                rules.insert(allow(&domain, &t, "dir", DIR_READ));
                rules.insert(allow(&domain, &t, "file", FILE_READ));
                rules.insert(allow(&domain, &t, "lnk_file", "getattr read"));
                sections.push((format!("path {path} (read), labelled {t}"), rules));
            }
            // Write: the path gets a type of its own, so the agent can write exactly this
            // tree and nothing else that shares its old label. `relabel_paths` lists what to
            // restorecon after installing.
            Access::Write => {
                let own = ident(format!("aither_agent_{stem}_rw{i}_t"))?;
                let (u, r) = ("system_u", "object_r");
                rules.insert(format!("(type {own})"));
                rules.insert(format!("(roletype {r} {own})"));
                for attribute in ["file_type", "non_security_file_type", "non_auth_file_type"] {
                    rules.insert(format!("(typeattributeset {attribute} ({own}))"));
                }
                rules.insert(format!("(filecon \"{}(/.*)?\" any ({u} {r} {own} ((s0) (s0))))", regex_escape(&path.0)));
                rules.insert(allow(&domain, &own, "dir", DIR_WRITE));
                rules.insert(allow(&domain, &own, "file", FILE_WRITE));
                rules.insert(allow(&domain, &own, "lnk_file", "getattr read create unlink rename"));
                rules.insert(allow(&agentd, &own, "dir", "getattr search relabelto relabelfrom"));
                rules.insert(allow(&agentd, &own, "file", "getattr relabelto relabelfrom"));
                sections.push((format!("path {path} (read and write), relabelled from {t} to {own}"), rules));
            }
        }
    }

    for (i, grant) in perms.ports.iter().enumerate() {
        let field = format!("permissions.ports[{i}]");
        let port = u16::try_from(grant.port).ok().filter(|p| *p > 0).ok_or_else(|| PolicyError::Field {
            field: field.clone(),
            problem: format!("port {} is not 1..65535", grant.port),
        })?;
        if grant.access == PortAccess::Bind && port < 1024 {
            return Err(PolicyError::Field {
                field,
                problem: format!("port {port} is privileged; agents bind 1024 and up"),
            });
        }
        let t = match resolver
            .port_type(grant.protocol, port)
            .map_err(|problem| PolicyError::Resolve { field: field.clone(), problem })?
        {
            Some(t) => resolved(&field, t)?,
            None => known("unreserved_port_t"),
        };
        let proto = grant.protocol.name();
        let socket = format!("{proto}_socket");
        let node = known("node_type");
        let mut rules = BTreeSet::new();
        match (grant.access, grant.protocol) {
            (PortAccess::Connect, Protocol::Tcp) => {
                rules.insert(allow(&domain, &this, &socket, TCP_CLIENT));
                rules.insert(allow(&domain, &t, &socket, "name_connect"));
            }
            (PortAccess::Connect, Protocol::Udp) => {
                rules.insert(allow(&domain, &this, &socket, UDP));
            }
            (PortAccess::Bind, Protocol::Tcp) => {
                rules.insert(allow(&domain, &this, &socket, TCP_SERVER));
                rules.insert(allow(&domain, &t, &socket, "name_bind"));
                rules.insert(allow(&domain, &node, &socket, "node_bind"));
            }
            (PortAccess::Bind, Protocol::Udp) => {
                rules.insert(allow(&domain, &this, &socket, UDP));
                rules.insert(allow(&domain, &t, &socket, "name_bind"));
                rules.insert(allow(&domain, &node, &socket, "node_bind"));
            }
        }
        let verb = match grant.access {
            PortAccess::Connect => "connect to",
            PortAccess::Bind => "bind",
        };
        sections.push((format!("{verb} {proto} port {port}, labelled {t}"), rules));
    }

    let mut cil = String::new();
    let _ = writeln!(cil, ";; AitherOS tailored policy for agent {name:?}.");
    let _ =
        writeln!(cil, ";; Generated by agentd from the agent's manifest; regenerated when it changes, do not edit.");
    let _ = writeln!(cil, ";; {domain} is an agent domain like aither_agent_t, plus exactly these rights.");
    let _ = writeln!(cil, "(type {domain})");
    let _ = writeln!(cil, "(roletype system_r {domain})");
    for attribute in ["aither_agent_domain", "aither_domain", "domain", "mcs_constrained_type"] {
        let _ = writeln!(cil, "(typeattributeset {attribute} ({domain}))");
    }
    for (comment, rules) in sections {
        let _ = writeln!(cil, "\n;; {comment}");
        for r in rules {
            let _ = writeln!(cil, "{r}");
        }
    }
    Ok(TailoredPolicy { module, domain: domain.0, cil })
}

/// Escape a literal path for a file-context regular expression.
fn regex_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if ".^$*+?()[]{}|\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Fixed(BTreeMap<&'static str, &'static str>);

    impl LabelResolver for Fixed {
        fn file_type(&self, path: &Path) -> Result<String, String> {
            // Longest matching prefix, as file contexts behave for these simple cases.
            let p = path.to_string_lossy();
            self.0
                .iter()
                .filter(|(k, _)| p == **k || p.starts_with(&format!("{}/", k.trim_end_matches('/'))) || **k == "/")
                .max_by_key(|(k, _)| k.len())
                .map(|(_, t)| (*t).to_string())
                .ok_or_else(|| format!("no context for {p}"))
        }
        fn port_type(&self, _: Protocol, port: u16) -> Result<Option<String>, String> {
            Ok(match port {
                5432 => Some("postgresql_port_t".into()),
                _ => None,
            })
        }
    }

    fn labels() -> Fixed {
        Fixed(BTreeMap::from([
            ("/", "root_t"),
            ("/srv", "var_t"),
            ("/home", "home_root_t"),
            ("/home/alice", "user_home_dir_t"),
            ("/etc", "etc_t"),
        ]))
    }

    fn perms(text: &str) -> Permissions {
        toml::from_str(text).expect("permissions parse")
    }

    #[test]
    fn a_manifest_without_permissions_needs_no_module() {
        assert!(!needs_module(&Permissions::default()));
        assert!(needs_module(&perms("network = \"gateway\"")));
    }

    #[test]
    fn names_become_type_stems_or_are_refused() {
        assert_eq!(type_stem("web-research").as_deref(), Ok("web_research"));
        assert!(matches!(type_stem("Bad Name"), Err(PolicyError::Name { .. })));
        assert!(matches!(type_stem("9lives"), Err(PolicyError::Name { .. })));
        assert!(matches!(type_stem(""), Err(PolicyError::Name { .. })));
    }

    #[test]
    fn home_directories_and_system_writes_are_refused_naming_the_field() {
        let p = perms("paths = [{ path = \"/srv/data\", access = \"read\" }, { path = \"/home/alice/notes\", access = \"read\" }]");
        let err = generate("a", &p, &labels()).expect_err("home is forbidden");
        assert!(matches!(err, PolicyError::Field { ref field, .. } if field == "permissions.paths[1]"), "{err}");
        let p = perms("paths = [{ path = \"/etc/hosts\", access = \"write\" }]");
        let err = generate("a", &p, &labels()).expect_err("etc_t is read-only");
        assert!(err.to_string().contains("etc_t"), "{err}");
        let p = perms("paths = [{ path = \"relative\", access = \"read\" }]");
        assert!(matches!(generate("a", &p, &labels()), Err(PolicyError::Field { .. })));
    }

    #[test]
    fn ports_are_checked() {
        let p = perms("network = \"loopback\"\nports = [{ port = 80, access = \"bind\" }]");
        assert!(generate("a", &p, &labels()).expect_err("privileged").to_string().contains("privileged"));
        let p = perms("ports = [{ port = 5432, access = \"connect\" }]");
        assert!(generate("a", &p, &labels()).expect_err("network none").to_string().contains("network"));
        let p = perms("network = \"outbound\"\nports = [{ port = 70000, access = \"connect\" }]");
        assert!(matches!(generate("a", &p, &labels()), Err(PolicyError::Field { .. })));
    }

    #[test]
    fn unknown_manifest_keys_are_rejected() {
        assert!(toml::from_str::<Permissions>("netwrok = \"outbound\"").is_err());
        assert!(toml::from_str::<Permissions>("network = \"everything\"").is_err());
    }

    #[test]
    fn install_writes_the_file_and_calls_semodule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let fake = dir.path().join("semodule");
        std::fs::write(&fake, format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display())).expect("write");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let policy = generate("a", &perms("network = \"gateway\""), &labels()).expect("generates");
        let path = install(&policy, &dir.path().join("cil"), &fake).expect("installs");
        assert_eq!(std::fs::read_to_string(&path).expect("cil"), policy.cil);
        remove(&policy.module, &dir.path().join("cil"), &fake).expect("removes");
        let calls = std::fs::read_to_string(&log).expect("log");
        assert_eq!(calls, format!("-i {}\n-r aither_agent_a\n", path.display()));
        assert!(!path.exists());
    }

    #[test]
    fn manifest_strings_that_could_break_out_of_the_module_are_refused() {
        for (path, what) in [
            ("/srv/x\n(typepermissive aither_agent_a_t)", "a newline"),
            ("/srv/x\r;; y", "a carriage return"),
            ("/srv/\"quoted\"", "a quote"),
            ("/srv/a)(allow", "a parenthesis"),
            ("/srv/a;b", "a semicolon"),
            ("/srv/a\\b", "a backslash"),
            ("/srv/../etc", "a parent directory"),
            ("/srv/\u{0}x", "a NUL"),
            ("/srv/caf\u{e9}", "a non-ASCII letter"),
        ] {
            let p = Permissions {
                paths: vec![PathGrant { path: PathBuf::from(path), access: Access::Read }],
                ..Permissions::default()
            };
            let err = generate("a", &p, &labels()).expect_err(what);
            assert!(
                matches!(err, PolicyError::Field { ref field, .. } if field == "permissions.paths[0]"),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn a_type_the_policy_tools_answer_is_checked_too() {
        struct Lying;
        impl LabelResolver for Lying {
            fn file_type(&self, _: &Path) -> Result<String, String> {
                Ok("var_t) (typepermissive aither_agent_t".into())
            }
            fn port_type(&self, _: Protocol, _: u16) -> Result<Option<String>, String> {
                Ok(Some("x y".into()))
            }
        }
        let p = perms("paths = [{ path = \"/srv/data\", access = \"read\" }]");
        assert!(matches!(generate("a", &p, &Lying), Err(PolicyError::Resolve { .. })));
        let p = perms("network = \"outbound\"\nports = [{ port = 5432, access = \"connect\" }]");
        assert!(matches!(generate("a", &p, &Lying), Err(PolicyError::Resolve { .. })));
    }

    /// A reader for the CIL the generator writes: comments, lists, quoted strings, atoms.
    #[derive(Debug, Clone, PartialEq)]
    enum Sexp {
        Atom(String),
        Str(String),
        List(Vec<Sexp>),
    }

    fn parse_line(line: &str) -> Result<Sexp, String> {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let sexp = parse_at(&chars, &mut i)?;
        if i != chars.len() {
            return Err(format!("text after the statement: {line:?}"));
        }
        Ok(sexp)
    }

    fn parse_at(c: &[char], i: &mut usize) -> Result<Sexp, String> {
        match c.get(*i) {
            Some('(') => {
                *i += 1;
                let mut items = Vec::new();
                loop {
                    match c.get(*i) {
                        Some(')') => {
                            *i += 1;
                            return Ok(Sexp::List(items));
                        }
                        Some(' ') => *i += 1,
                        Some(_) => items.push(parse_at(c, i)?),
                        None => return Err("unclosed list".into()),
                    }
                }
            }
            Some('"') => {
                *i += 1;
                let start = *i;
                while c.get(*i).is_some_and(|ch| *ch != '"') {
                    *i += 1;
                }
                if c.get(*i).is_none() {
                    return Err("unclosed string".into());
                }
                let s: String = c[start..*i].iter().collect();
                *i += 1;
                Ok(Sexp::Str(s))
            }
            Some(_) => {
                let start = *i;
                while c.get(*i).is_some_and(|ch| !matches!(ch, '(' | ')' | ' ' | '"' | ';')) {
                    *i += 1;
                }
                if start == *i {
                    return Err(format!("unexpected {:?}", c[*i]));
                }
                Ok(Sexp::Atom(c[start..*i].iter().collect()))
            }
            None => Err("unexpected end".into()),
        }
    }

    fn atom(s: &Sexp) -> Option<&str> {
        match s {
            Sexp::Atom(a) => Some(a),
            _ => None,
        }
    }

    fn ident_ok(s: &Sexp) -> bool {
        atom(s).is_some_and(|a| Ident::new(a).is_some())
    }

    /// Every line is blank, a comment, or one statement of an allowed kind about the
    /// agent's own types; returns the problem otherwise.
    fn only_allowed_statements(cil: &str, stem: &str) -> Result<(), String> {
        let own = |s: &Sexp| {
            atom(s).is_some_and(|a| a.starts_with(&format!("aither_agent_{stem}_")) && Ident::new(a).is_some())
        };
        for line in cil.lines() {
            if line.is_empty() || line.starts_with(";;") {
                continue;
            }
            let Sexp::List(items) = parse_line(line)? else { return Err(format!("not a statement: {line:?}")) };
            let head = items.first().and_then(atom).unwrap_or("");
            let ok = match (head, items.as_slice()) {
                ("type", [_, t]) => own(t),
                ("roletype", [_, r, t]) => matches!(atom(r), Some("system_r" | "object_r")) && own(t),
                ("typeattributeset", [_, a, Sexp::List(members)]) => {
                    ident_ok(a) && atom(a) != Some("permissive") && members.iter().all(own)
                }
                ("allow", [_, from, to, Sexp::List(class_perms)]) => {
                    (own(from) || atom(from) == Some("agentd_t"))
                        && ident_ok(to)
                        && matches!(class_perms.as_slice(), [class, Sexp::List(perms)]
                            if ident_ok(class) && perms.iter().all(ident_ok))
                }
                ("filecon", [_, Sexp::Str(re), kind, Sexp::List(ctx)]) => {
                    !re.contains('\n')
                        && atom(kind) == Some("any")
                        && matches!(ctx.as_slice(), [u, r, t, Sexp::List(_)]
                            if atom(u) == Some("system_u") && atom(r) == Some("object_r") && own(t))
                }
                _ => false,
            };
            if !ok {
                return Err(format!("statement not allowed: {line:?}"));
            }
        }
        Ok(())
    }

    #[test]
    fn the_reader_finds_an_injected_statement() {
        let cil = ";; ok\n(type aither_agent_a_t)\n(typepermissive aither_agent_a_t)\n";
        assert!(only_allowed_statements(cil, "a").is_err());
        assert!(only_allowed_statements("(allow aither_agent_a_t x (file (read))) (type y)\n", "a").is_err());
        assert!(only_allowed_statements("(allow aither_agent_a_t x (file (read)))\n", "a").is_ok());
    }

    mod hostile {
        use super::*;
        use proptest::prelude::*;

        /// Strings built from the characters that matter to CIL and file contexts.
        fn hostile_text() -> impl Strategy<Value = String> {
            prop_oneof![
                // Absolute paths with the characters that matter to CIL and file contexts.
                "/[/a-z0-9 ._*+?^$|\\[\\]{}()\";\\\\\n\r\t-]{0,24}",
                "[/a-z0-9 ._*+?^$|\\[\\]{}()\";\\\\\n\r\t-]{0,24}",
                "/[a-z]{1,8}(/[a-z .]{1,8}){0,3}",
                any::<String>(),
            ]
        }

        fn grant() -> impl Strategy<Value = PathGrant> {
            (hostile_text(), any::<bool>()).prop_map(|(p, w)| PathGrant {
                path: PathBuf::from(p),
                access: if w { Access::Write } else { Access::Read },
            })
        }

        fn port() -> impl Strategy<Value = PortGrant> {
            (0u32..70_000, any::<bool>(), any::<bool>()).prop_map(|(port, udp, bind)| PortGrant {
                port,
                protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
                access: if bind { PortAccess::Bind } else { PortAccess::Connect },
            })
        }

        /// A resolver that answers from the fixed labels, or with a hostile string.
        struct Answers(Option<String>);
        impl LabelResolver for Answers {
            fn file_type(&self, path: &Path) -> Result<String, String> {
                match &self.0 {
                    Some(t) => Ok(t.clone()),
                    None => labels().file_type(path),
                }
            }
            fn port_type(&self, p: Protocol, port: u16) -> Result<Option<String>, String> {
                match &self.0 {
                    Some(t) => Ok(Some(t.clone())),
                    None => labels().port_type(p, port),
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

            #[test]
            fn hostile_manifests_are_refused_or_yield_only_allowed_statements(
                network in 0usize..4,
                paths in proptest::collection::vec(grant(), 0..4),
                ports in proptest::collection::vec(port(), 0..3),
                answer in proptest::option::of(hostile_text()),
                name in "[a-z][a-z0-9_-]{0,12}",
            ) {
                let network = [Network::None, Network::Gateway, Network::Loopback, Network::Outbound][network];
                let p = Permissions { network, paths, ports };
                if let Ok(policy) = generate(&name, &p, &Answers(answer)) {
                    let stem = type_stem(&name).expect("a generated module has a valid name");
                    prop_assert_eq!(only_allowed_statements(&policy.cil, &stem), Ok(()), "{}", policy.cil);
                }
            }
        }
    }
}
