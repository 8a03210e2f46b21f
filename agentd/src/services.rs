//! Unit manifests: the services agentd runs beside the agents and the inference workers
//! (`/usr/share/aither/units.d/*.toml`, then `/etc/aither/units.d/*.toml`; a file in `/etc`
//! replaces the one of the same name in `/usr/share`).
//!
//! ```toml
//! name = "vector-store"
//! description = "Vector index for agent memory"
//! group = "memory"                    # a group of the preset: start order and dormancy
//! command = ["/usr/libexec/aither/vector-store", "--socket", "/run/aither/vector.sock"]
//! environment = { RUST_LOG = "info" }
//! readiness = "notify"                # exec | notify | tcp:HOST:PORT | http:HOST:PORT/PATH
//! ready_timeout_seconds = 90
//! restart = "on-failure"              # always | on-failure | never
//! requires = []                       # units that must be ready first
//! after = []                          # units to start first when they start too
//! class = "high"                      # the preset's scheduling class
//! stop_timeout_seconds = 10
//! selinux_type = "aither_agent_t"     # optional: the domain it runs in (default: by policy)
//!
//! [resources]
//! memory_max = "1G"
//! pids_max = 256
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aither_init::unit::Readiness;
use aither_init::RestartMode;
use serde::Deserialize;

use crate::agents::Class;

/// A validated unit manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub description: Option<String>,
    pub group: String,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub readiness: Readiness,
    pub ready_timeout: Duration,
    pub restart: RestartMode,
    pub requires: Vec<String>,
    pub after: Vec<String>,
    pub class: Class,
    pub stop_timeout: Duration,
    pub selinux_type: Option<String>,
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    pub source: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    group: String,
    command: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default = "exec")]
    readiness: String,
    #[serde(default = "ninety")]
    ready_timeout_seconds: u64,
    #[serde(default = "on_failure")]
    restart: String,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    class: Class,
    #[serde(default = "ten")]
    stop_timeout_seconds: u64,
    #[serde(default)]
    selinux_type: Option<String>,
    #[serde(default)]
    resources: Resources,
}

fn exec() -> String {
    "exec".into()
}
fn on_failure() -> String {
    "on-failure".into()
}
fn ninety() -> u64 {
    90
}
fn ten() -> u64 {
    10
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resources {
    memory_max: Option<String>,
    pids_max: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{file}: {problem}")]
    Manifest { file: String, problem: String },
    #[error("{file}: {key}: {problem}")]
    Field { file: String, key: String, problem: String },
}

/// Validate a manifest's text; `file` names it in errors.
pub fn parse_manifest(file: &str, text: &str) -> Result<Service, ServiceError> {
    let field =
        |key: &str, problem: String| ServiceError::Field { file: file.to_string(), key: key.to_string(), problem };
    let m: ManifestFile = toml::from_str(text)
        .map_err(|e| ServiceError::Manifest { file: file.into(), problem: e.message().to_string() })?;
    if m.name.is_empty()
        || !m.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || m.name.starts_with('.')
    {
        return Err(field("name", format!("{:?}: use letters, digits, '-', '_' and '.'", m.name)));
    }
    if m.command.first().is_none_or(|c| !c.starts_with('/')) {
        return Err(field("command", "must start with the absolute path of the program".into()));
    }
    let readiness = parse_readiness(&m.readiness).map_err(|p| field("readiness", p))?;
    let restart = match m.restart.as_str() {
        "always" => RestartMode::Always,
        "on-failure" => RestartMode::OnFailure,
        "never" => RestartMode::Never,
        other => return Err(field("restart", format!("{other:?} is not always, on-failure or never"))),
    };
    let memory_max = crate::config::resource_limits(m.resources.memory_max.as_deref(), m.resources.pids_max)
        .map_err(|(key, problem)| field(key, problem))?;
    if let Some(t) = &m.selinux_type {
        if !t.ends_with("_t") || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(field("selinux_type", format!("{t:?} is not an SELinux type name")));
        }
    }
    if m.ready_timeout_seconds == 0 {
        return Err(field("ready_timeout_seconds", "must be at least 1".into()));
    }
    Ok(Service {
        name: m.name,
        description: m.description,
        group: m.group,
        command: m.command,
        environment: m.environment,
        readiness,
        ready_timeout: Duration::from_secs(m.ready_timeout_seconds),
        restart,
        requires: m.requires,
        after: m.after,
        class: m.class,
        stop_timeout: Duration::from_secs(m.stop_timeout_seconds),
        selinux_type: m.selinux_type,
        memory_max,
        pids_max: m.resources.pids_max,
        source: PathBuf::from(file),
    })
}

/// `exec`, `notify`, `tcp:HOST:PORT`, `http:HOST:PORT/PATH`.
fn parse_readiness(s: &str) -> Result<Readiness, String> {
    let addr = |a: &str| a.parse::<SocketAddr>().map_err(|_| format!("{a:?} is not HOST:PORT"));
    match s {
        "exec" => Ok(Readiness::Exec),
        "notify" => Ok(Readiness::Notify),
        _ => {
            if let Some(a) = s.strip_prefix("tcp:") {
                Ok(Readiness::Tcp { addr: addr(a)? })
            } else if let Some(rest) = s.strip_prefix("http:") {
                let (a, path) = rest.split_once('/').ok_or_else(|| format!("{s:?}: expected http:HOST:PORT/PATH"))?;
                Ok(Readiness::Http { addr: addr(a)?, path: format!("/{path}") })
            } else {
                Err(format!("{s:?} is not exec, notify, tcp:HOST:PORT or http:HOST:PORT/PATH"))
            }
        }
    }
}

/// The manifests in `dirs`, lowest precedence first: a file name in a later directory
/// replaces the same file name in an earlier one. Names must be unique.
pub fn read_dirs(dirs: &[PathBuf]) -> Result<Vec<Service>, ServiceError> {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ServiceError::Manifest { file: dir.display().to_string(), problem: e.to_string() }),
        };
        for p in entries.filter_map(Result::ok).map(|e| e.path()) {
            if p.extension().is_some_and(|e| e == "toml") {
                if let Some(n) = p.file_name() {
                    files.insert(n.to_string_lossy().into_owned(), p);
                }
            }
        }
    }
    let mut by_name: BTreeMap<String, Service> = BTreeMap::new();
    for path in files.into_values() {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ServiceError::Manifest { file: file.clone(), problem: e.to_string() })?;
        let s = parse_manifest(&file, &text)?;
        if let Some(first) = by_name.get(&s.name) {
            return Err(ServiceError::Field {
                file,
                key: "name".into(),
                problem: format!("{:?} is already defined in {}", s.name, first.source.display()),
            });
        }
        by_name.insert(s.name.clone(), s);
    }
    Ok(by_name.into_values().collect())
}

/// The unit manifest directories under `root`, lowest precedence first.
pub fn dirs(root: &Path) -> Vec<PathBuf> {
    vec![root.join("usr/share/aither/units.d"), root.join("etc/aither/units.d")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let s = parse_manifest("example.toml", include_str!("../../docs/examples/units.d/vector-store.toml"))
            .expect("valid");
        assert_eq!(s.readiness, Readiness::Notify);
        assert_eq!(s.memory_max, Some(1 << 30));
    }

    #[test]
    fn readiness_forms() {
        assert_eq!(parse_readiness("exec"), Ok(Readiness::Exec));
        assert_eq!(
            parse_readiness("http:127.0.0.1:9000/health"),
            Ok(Readiness::Http { addr: "127.0.0.1:9000".parse().expect("addr"), path: "/health".into() })
        );
        assert!(parse_readiness("tcp:localhost").is_err());
        assert!(parse_readiness("socket").is_err());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let base = "name = \"x\"\ngroup = \"core\"\ncommand = [\"/bin/true\"]\n";
        let err = parse_manifest("u.toml", &format!("{base}restart = \"sometimes\"\n")).expect_err("restart");
        assert_eq!(err.to_string(), "u.toml: restart: \"sometimes\" is not always, on-failure or never");
        let err = parse_manifest("u.toml", &format!("{base}colour = 1\n")).expect_err("unknown key");
        assert!(err.to_string().starts_with("u.toml: ") && err.to_string().contains("colour"), "{err}");
        let err = parse_manifest("u.toml", "name = \"x\"\ngroup = \"core\"\ncommand = [\"true\"]\n").expect_err("rel");
        assert!(err.to_string().contains("command"), "{err}");
    }

    #[test]
    fn etc_replaces_usr_share_by_file_name() {
        let root = tempfile::tempdir().expect("tempdir");
        for (p, cmd) in [("usr/share/aither/units.d/a.toml", "/usr/bin/a"), ("etc/aither/units.d/a.toml", "/opt/a")] {
            let path = root.path().join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, format!("name = \"a\"\ngroup = \"core\"\ncommand = [\"{cmd}\"]\n")).expect("write");
        }
        let s = read_dirs(&dirs(root.path())).expect("valid");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].command, vec!["/opt/a"]);
    }
}
