//! Agents: their manifests, their MCS category pairs, and the admission queue.
//!
//! An agent manifest (`/etc/aither/agents.d/<name>.toml`) says what to run, with what
//! resources and permissions:
//!
//! ```toml
//! name = "research"
//! description = "Reads papers, writes summaries"
//! command = ["/usr/bin/python3", "-m", "research_agent"]
//! environment = { OPENAI_BASE_URL = "unix:/run/aither/gateway.sock" }
//! class = "normal"                  # critical | high | normal | low: the preset's scheduling class
//!
//! [resources]
//! memory_max = "1G"                 # default: agentd's agents.memory_max
//! pids_max = 256                    # default: agentd's agents.pids_max
//! cpu_weight = 100                  # default: the class's weight
//!
//! [permissions]                     # see tailored_policy: network, paths, ports
//! network = "gateway"
//! ```
//!
//! Agents never get GPUs: only inference workers do, and a manifest that asks is refused.
//! Each agent gets a unique MCS category pair, kept across restarts in
//! `/var/lib/aither/mcs.json`, and its workspace `/var/lib/aither/agents/<name>` labelled
//! with it. Agents beyond the concurrent limit wait in a first-come admission queue.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use aither_policy::{self as tailored_policy, Permissions};

/// A validated agent manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub description: Option<String>,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub class: Class,
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    pub cpu_weight: Option<u32>,
    pub permissions: Permissions,
    /// The file it came from.
    pub source: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Critical,
    High,
    #[default]
    Normal,
    Low,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Critical => "critical",
            Class::High => "high",
            Class::Normal => "normal",
            Class::Low => "low",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    command: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    class: Class,
    #[serde(default)]
    resources: Resources,
    #[serde(default)]
    permissions: Permissions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resources {
    memory_max: Option<String>,
    pids_max: Option<u64>,
    cpu_weight: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{file}: {problem}")]
    Manifest { file: String, problem: String },
    #[error("{file}: {key}: {problem}")]
    Field { file: String, key: String, problem: String },
    #[error("agent {name:?} is defined twice: {first} and {second}")]
    Duplicate { name: String, first: String, second: String },
    #[error("{path}: {problem}")]
    State { path: String, problem: String },
}

/// Keys that ask for devices; refused with a clear reason rather than "unknown key".
const DEVICE_KEYS: &[&str] = &["gpus", "gpu", "devices", "device"];

/// Read and validate one manifest.
pub fn read_manifest(path: &Path) -> Result<Agent, AgentError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| AgentError::Manifest { file: file.clone(), problem: e.to_string() })?;
    parse_manifest(&file, &text).map(|mut a| {
        a.source = path.to_path_buf();
        a
    })
}

/// Validate a manifest's text; `file` names it in errors.
pub fn parse_manifest(file: &str, text: &str) -> Result<Agent, AgentError> {
    let field =
        |key: &str, problem: String| AgentError::Field { file: file.to_string(), key: key.to_string(), problem };
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| AgentError::Manifest { file: file.into(), problem: e.message().to_string() })?;
    for key in DEVICE_KEYS {
        let direct = table.contains_key(*key);
        let nested = ["resources", "permissions"]
            .iter()
            .any(|s| table.get(*s).and_then(toml::Value::as_table).is_some_and(|t| t.contains_key(*key)));
        if direct || nested {
            return Err(field(
                key,
                "agents never get GPUs or devices: only inference workers do; use the gateway".into(),
            ));
        }
    }
    let m: ManifestFile = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| AgentError::Manifest { file: file.into(), problem: e.message().to_string() })?;
    tailored_policy::type_stem(&m.name).map_err(|e| field("name", e.to_string()))?;
    // Paths reach the generated SELinux policy: only safe ones are accepted at all.
    for (i, grant) in m.permissions.paths.iter().enumerate() {
        let key = format!("permissions.paths[{i}]");
        tailored_policy::SafePath::new(&key, &grant.path).map_err(|e| match e {
            tailored_policy::PolicyError::Field { problem, .. } => field(&key, problem),
            other => field(&key, other.to_string()),
        })?;
    }
    if m.command.is_empty() || m.command[0].is_empty() {
        return Err(field("command", "must name the program to run".into()));
    }
    if !m.command[0].starts_with('/') {
        return Err(field("command", format!("{:?} must be an absolute path", m.command[0])));
    }
    for key in m.environment.keys() {
        if key.is_empty() || key.contains('=') || key.starts_with("NOTIFY_SOCKET") || key.starts_with("LISTEN_") {
            return Err(field(&format!("environment.{key}"), "not a variable an agent may set".into()));
        }
    }
    let memory_max = crate::config::resource_limits(m.resources.memory_max.as_deref(), m.resources.pids_max)
        .map_err(|(key, problem)| field(key, problem))?;
    if let Some(w) = m.resources.cpu_weight {
        if !(1..=10_000).contains(&w) {
            return Err(field("resources.cpu_weight", format!("{w} is not 1..10000")));
        }
    }
    Ok(Agent {
        name: m.name,
        description: m.description,
        command: m.command,
        environment: m.environment,
        class: m.class,
        memory_max,
        pids_max: m.resources.pids_max,
        cpu_weight: m.resources.cpu_weight,
        permissions: m.permissions,
        source: PathBuf::from(file),
    })
}

/// Every manifest in `dir`, in name order; names must be unique.
pub fn read_dir(dir: &Path) -> Result<Vec<Agent>, AgentError> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(e) => {
            e.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(AgentError::Manifest { file: dir.display().to_string(), problem: e.to_string() }),
    };
    paths.sort();
    let mut by_name: BTreeMap<String, Agent> = BTreeMap::new();
    for p in paths {
        let a = read_manifest(&p)?;
        if let Some(first) = by_name.get(&a.name) {
            return Err(AgentError::Duplicate {
                name: a.name,
                first: first.source.display().to_string(),
                second: p.display().to_string(),
            });
        }
        by_name.insert(a.name.clone(), a);
    }
    Ok(by_name.into_values().collect())
}

/// MCS category pairs, one per agent, persisted so an agent keeps its pair across restarts
/// (its workspace is labelled with it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryMap {
    pub schema_version: u32,
    pub pairs: BTreeMap<String, (u16, u16)>,
}

/// Categories c0..c1023 exist; c0 is left to the system.
const CATEGORIES: u16 = 1024;

impl CategoryMap {
    pub fn load(path: &Path) -> Result<CategoryMap, AgentError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::State { path: path.display().to_string(), problem: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(CategoryMap { schema_version: 1, pairs: BTreeMap::new() })
            }
            Err(e) => Err(AgentError::State { path: path.display().to_string(), problem: e.to_string() }),
        }
    }

    /// The agent's pair, allocating the first free one when it has none.
    pub fn pair_for(&mut self, agent: &str) -> Option<(u16, u16)> {
        if let Some(p) = self.pairs.get(agent) {
            return Some(*p);
        }
        let used: BTreeSet<(u16, u16)> = self.pairs.values().copied().collect();
        let pair =
            (1..CATEGORIES).flat_map(|a| (a + 1..CATEGORIES).map(move |b| (a, b))).find(|p| !used.contains(p))?;
        self.pairs.insert(agent.to_string(), pair);
        Some(pair)
    }

    /// The MCS level `s0:cA,cB`.
    pub fn level(pair: (u16, u16)) -> String {
        format!("s0:c{},c{}", pair.0, pair.1)
    }

    /// Write atomically.
    pub fn save(&self, path: &Path) -> Result<(), AgentError> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        aither_sys::atomic::write(path, text.as_bytes())
            .map_err(|e| AgentError::State { path: path.display().to_string(), problem: e.to_string() })
    }
}

/// What admission decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Waiting; 1 is next.
    Queued {
        position: usize,
    },
}

/// The concurrent agent limit: agents beyond it wait, first come first served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionQueue {
    pub limit: usize,
    pub running: BTreeSet<String>,
    pub waiting: VecDeque<String>,
}

impl AdmissionQueue {
    pub fn new(limit: usize) -> AdmissionQueue {
        AdmissionQueue { limit: limit.max(1), ..AdmissionQueue::default() }
    }

    /// An agent asks to run.
    pub fn request(&mut self, agent: &str) -> Admission {
        if self.running.contains(agent) {
            return Admission::Admitted;
        }
        if let Some(i) = self.waiting.iter().position(|a| a == agent) {
            return Admission::Queued { position: i + 1 };
        }
        if self.running.len() < self.limit {
            self.running.insert(agent.to_string());
            Admission::Admitted
        } else {
            self.waiting.push_back(agent.to_string());
            Admission::Queued { position: self.waiting.len() }
        }
    }

    /// An agent stopped (or left the queue); returns the agents admitted in its place.
    pub fn release(&mut self, agent: &str) -> Vec<String> {
        self.running.remove(agent);
        self.waiting.retain(|a| a != agent);
        let mut admitted = vec![];
        while self.running.len() < self.limit {
            let Some(next) = self.waiting.pop_front() else { break };
            self.running.insert(next.clone());
            admitted.push(next);
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name = \"research\"\ncommand = [\"/usr/bin/research\"]\nclass = \"high\"\n\
        [resources]\nmemory_max = \"1G\"\npids_max = 64\n[permissions]\nnetwork = \"gateway\"\n";

    #[test]
    fn the_documented_example_parses() {
        let a =
            parse_manifest("research.toml", include_str!("../../docs/examples/agents.d/research.toml")).expect("valid");
        assert_eq!(a.permissions.network, tailored_policy::Network::Gateway);
    }

    #[test]
    fn a_manifest_is_validated_into_an_agent() {
        let a = parse_manifest("research.toml", GOOD).expect("valid");
        assert_eq!(
            (a.name.as_str(), a.class, a.memory_max, a.pids_max),
            ("research", Class::High, Some(1 << 30), Some(64))
        );
        assert_eq!(a.permissions.network, tailored_policy::Network::Gateway);
    }

    #[test]
    fn agents_never_get_gpus() {
        for text in
            [format!("{GOOD}gpus = 1\n"), GOOD.replace("[resources]\n", "[resources]\ndevices = [\"/dev/nvidia0\"]\n")]
        {
            let err = parse_manifest("a.toml", &text).expect_err("refused");
            assert!(err.to_string().contains("only inference workers"), "{err}");
        }
    }

    #[test]
    fn bad_manifests_name_the_file_and_key() {
        let cases = [
            (GOOD.replace("/usr/bin/research", "research"), "command"),
            (GOOD.replace("\"1G\"", "\"big\""), "resources.memory_max"),
            (GOOD.replace("name = \"research\"", "name = \"Research!\""), "name"),
            (format!("{GOOD}[environment]\nNOTIFY_SOCKET = \"/x\"\n"), "environment.NOTIFY_SOCKET"),
            (
                GOOD.replace(
                    "[permissions]",
                    "[permissions]\npaths = [{ path = \"/srv/x\\n(typepermissive t)\", access = \"read\" }]",
                ),
                "permissions.paths[0]",
            ),
        ];
        for (text, key) in cases {
            let err = parse_manifest("agents.d/r.toml", &text).expect_err(key);
            assert!(
                matches!(err, AgentError::Field { ref file, key: ref k, .. } if file == "agents.d/r.toml" && k == key),
                "{key}: {err}"
            );
        }
        let err = parse_manifest("r.toml", &format!("{GOOD}colour = \"blue\"\n")).expect_err("unknown key");
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn category_pairs_are_unique_and_kept_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mcs.json");
        let mut m = CategoryMap::load(&path).expect("empty");
        let a = m.pair_for("alpha").expect("pair");
        let b = m.pair_for("beta").expect("pair");
        assert_ne!(a, b);
        assert_eq!(m.pair_for("alpha"), Some(a), "stable");
        m.save(&path).expect("save");
        let mut again = CategoryMap::load(&path).expect("load");
        assert_eq!((again.pair_for("alpha"), again.pair_for("beta")), (Some(a), Some(b)));
        assert_ne!(again.pair_for("gamma"), Some(a));
        assert_eq!(CategoryMap::level((1, 2)), "s0:c1,c2");
    }

    #[test]
    fn agents_beyond_the_limit_wait_in_order() {
        let mut q = AdmissionQueue::new(2);
        assert_eq!(q.request("a"), Admission::Admitted);
        assert_eq!(q.request("b"), Admission::Admitted);
        assert_eq!(q.request("c"), Admission::Queued { position: 1 });
        assert_eq!(q.request("d"), Admission::Queued { position: 2 });
        assert_eq!(q.request("c"), Admission::Queued { position: 1 }, "asking again keeps the place");
        assert_eq!(q.release("a"), vec!["c".to_string()]);
        assert_eq!(q.request("d"), Admission::Queued { position: 1 });
        assert_eq!(q.release("d"), Vec::<String>::new(), "leaving the queue admits nobody");
        assert_eq!(q.release("b"), Vec::<String>::new());
        assert_eq!(q.running.iter().cloned().collect::<Vec<_>>(), vec!["c".to_string()]);
    }
}
