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

mod labels;
mod manifest;
mod module;
#[cfg(test)]
mod tests;
mod tokens;

pub use labels::{LabelError, LabelResolver, SystemResolver};
pub use manifest::{
    needs_module, read_manifest, Access, Network, PathGrant, Permissions, PortAccess, PortGrant, Protocol,
};
pub use module::{install, relabel_paths, remove};
use tokens::resolved;
pub use tokens::{type_stem, Ident, SafePath};

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
                .map_err(|e| PolicyError::Resolve { field: field.clone(), problem: e.to_string() })?,
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
                resolver
                    .file_type(dir)
                    .map_err(|e| PolicyError::Resolve { field: field.clone(), problem: e.to_string() })?,
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
                rules.insert(format!(
                    "(filecon \"{}(/.*)?\" any ({u} {r} {own} ((s0) (s0))))",
                    regex_escape(&path.to_string())
                ));
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
            .map_err(|e| PolicyError::Resolve { field: field.clone(), problem: e.to_string() })?
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
