//! agentd's configuration: TOML fragments merged in a documented order, then validated into
//! typed settings.
//!
//! Precedence, lowest first (later files override earlier ones key by key):
//!
//! 1. `/usr/share/aither/agentd.toml` (shipped defaults)
//! 2. `/etc/aither/agentd.toml`
//! 3. `/etc/aither/agentd.d/*.toml`, in lexical order
//! 4. `/run/aither/agentd.d/*.toml`, in lexical order (runtime overrides)
//!
//! Every fragment is parsed with unknown keys rejected, so a typo names its file and key.
//! The merged values are then validated into [`Settings`], whose errors name the file that
//! set the offending value and its key. Nothing is applied until everything is valid.
//!
//! Key files fail closed: a configured key that is missing, unreadable or empty is an error
//! ([`read_keys`]), so agentd does not start and a reload is refused, never an open door.
//! TCP listeners need the gateway key, loopback included, unless the admin opts out for
//! loopback with `allow_tcp_without_key`; a cloud endpoint must be `https://` unless it is
//! on loopback.
//!
//! ```toml
//! [daemon]
//! state_dir = "/var/lib/aither"
//! runtime_dir = "/run/aither"
//! log = "journal"               # journal | stderr
//!
//! [gateway]
//! listen = ["127.0.0.1:8080", "unix:/run/aither/gateway.sock"]
//! api_key_file = "/etc/aither/gateway.key"   # TCP clients send it as a bearer token
//! allow_tcp_without_key = false # true: loopback TCP without a key (anyone on the machine)
//! allowed_hosts = []            # Host names besides localhost, IP addresses, the host name
//! socket_group = "aither-agent" # who may connect to the Unix socket (mode 0660)
//! header_timeout_seconds = 10   # the front door's limits (aither_http::Limits)
//! body_timeout_seconds = 30
//! idle_timeout_seconds = 10
//! max_connections = 512
//! max_body_size = "32M"
//! request_timeout_seconds = 300
//! start_timeout_seconds = 300   # how long a request waits for a dormant worker to load
//! keep_alive_seconds = 0        # idle workers unload after this; 0: the preset's keep-alive
//!
//! [agents]
//! max_concurrent = 0            # 0: the preset's limit
//! memory_max = "2G"             # default per agent
//! pids_max = 512
//!
//! [infer]
//! binary = "/usr/libexec/aither/aither-infer"
//! model_dir = "/var/lib/aither/models"
//!
//! [workflows]
//! runner = "/usr/libexec/aither/aither-agent"
//! approval_hours = 24           # a proposal nobody decides expires
//! outbox = "/var/lib/aither/outbox"   # where approved publish proposals put their file
//! webhook = "https://hooks.example/aither"   # optional: approved publish proposals POST there too
//! webhook_key_file = "/etc/aither/webhook.key"   # optional: sent as Authorization: Bearer
//! input_dirs = ["/var/lib/aither/documents", "/srv"]   # where a run's directory inputs may be
//! allow_unconfined = false      # true: steps that run commands or reach the network run
//!                               # while SELinux is permissive or off (refused by default)
//! workspace_max = "1G"          # a step's workspace: the most bytes (no file larger either)
//! workspace_max_files = 20000   # and the most files and directories
//!
//! [cloud]                       # the gateway's OpenAI-compatible fallback; absent: none
//! endpoint = "https://api.openai.com/v1"
//! model = "gpt-4o-mini"         # optional: the client's model name is passed through
//! api_key_file = "/etc/aither/cloud.key"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aither_http::keys::{self, KeyError, Secret};
use aither_http::Limits;
use serde::Deserialize;

/// The configuration compiled into agentd: what `/usr/share/aither/agentd.toml` ships.
pub const DEFAULTS: &str = include_str!("../../../systemd/usr/share/aither/agentd.toml");

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    daemon: Option<DaemonFragment>,
    gateway: Option<GatewayFragment>,
    agents: Option<AgentsFragment>,
    infer: Option<InferFragment>,
    cloud: Option<CloudFragment>,
    workflows: Option<WorkflowsFragment>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonFragment {
    state_dir: Option<PathBuf>,
    runtime_dir: Option<PathBuf>,
    log: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFragment {
    listen: Option<Vec<String>>,
    api_key_file: Option<PathBuf>,
    allow_tcp_without_key: Option<bool>,
    allowed_hosts: Option<Vec<String>>,
    socket_group: Option<String>,
    header_timeout_seconds: Option<u64>,
    body_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
    max_connections: Option<usize>,
    max_body_size: Option<String>,
    request_timeout_seconds: Option<u64>,
    start_timeout_seconds: Option<u64>,
    keep_alive_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentsFragment {
    max_concurrent: Option<u32>,
    memory_max: Option<String>,
    pids_max: Option<u64>,
}

/// A step's workspace, by default: 1 GiB (a repository under review and its build) and
/// 20,000 entries.
pub const DEFAULT_WORKSPACE_MAX: u64 = 1 << 30;
pub const DEFAULT_WORKSPACE_MAX_FILES: u64 = 20_000;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InferFragment {
    binary: Option<PathBuf>,
    model_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowsFragment {
    runner: Option<PathBuf>,
    gateway_socket: Option<PathBuf>,
    approval_hours: Option<u64>,
    outbox: Option<PathBuf>,
    webhook: Option<String>,
    webhook_key_file: Option<PathBuf>,
    input_dirs: Option<Vec<PathBuf>>,
    allow_unconfined: Option<bool>,
    workspace_max: Option<String>,
    workspace_max_files: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudFragment {
    endpoint: Option<String>,
    model: Option<String>,
    api_key_file: Option<PathBuf>,
}

/// The cloud fallback: an OpenAI-compatible endpoint the gateway may forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// Base URL, without a trailing slash (`https://api.openai.com/v1`).
    pub endpoint: String,
    pub model: Option<String>,
    pub api_key_file: Option<PathBuf>,
    /// The key from `api_key_file`, once [`read_keys`] has read it.
    pub api_key: Option<Secret>,
}

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    Journal,
    Stderr,
}

/// An address the gateway listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub log: LogTo,
    pub gateway_listen: Vec<Listen>,
    pub gateway_api_key_file: Option<PathBuf>,
    /// The key from `gateway_api_key_file`, once [`read_keys`] has read it.
    pub gateway_api_key: Option<Secret>,
    /// Loopback TCP without a key (an explicit opt-out).
    pub gateway_allow_tcp_without_key: bool,
    pub gateway_allowed_hosts: Vec<String>,
    /// The group of the Unix socket (mode 0660); `None`: agentd's own.
    pub gateway_socket_group: Option<String>,
    /// Timeouts, the connection cap and the body cap of every gateway listener.
    pub gateway_limits: Limits,
    pub gateway_request_timeout_seconds: u64,
    pub gateway_start_timeout_seconds: u64,
    /// 0: the preset's keep-alive.
    pub gateway_keep_alive_seconds: u64,
    /// 0: the preset decides.
    pub agents_max_concurrent: u32,
    pub agent_memory_max: u64,
    pub agent_pids_max: u64,
    pub infer_binary: PathBuf,
    pub model_dir: PathBuf,
    pub cloud: Option<Cloud>,
    /// The agent runner workflow steps run (`aither-agent`).
    pub workflow_runner: PathBuf,
    /// The socket step agents reach the model through; `None`: the gateway's Unix socket.
    pub workflow_gateway_socket: Option<PathBuf>,
    /// How long a proposal waits for a decision before it expires.
    pub approval_hours: u64,
    /// Steps that run commands or reach the network run while SELinux is not enforcing.
    pub allow_unconfined_steps: bool,
    /// The most bytes a step's workspace may hold (and the largest file a step may write).
    pub workspace_max_bytes: u64,
    /// The most files and directories a step's workspace may hold.
    pub workspace_max_files: u64,
    /// Where approved `publish` proposals put their file.
    pub outbox: PathBuf,
    /// Where approved `publish` proposals also POST their file (https, or http on loopback).
    pub webhook: Option<String>,
    pub webhook_key_file: Option<PathBuf>,
    /// The key from `webhook_key_file` (`Authorization: Bearer`), once [`read_keys`] read it.
    pub webhook_key: Option<Secret>,
    /// The directories (and what is under them) a run's `directory` inputs may name.
    pub input_dirs: Vec<PathBuf>,
    /// The files read, in the order applied.
    pub sources: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read { file: String, source: std::io::Error },
    /// A syntax error, an unknown key or a value of the wrong type; the message names the key.
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {key}: {problem}")]
    Invalid { file: String, key: String, problem: String },
    /// A configured key file that cannot be used: the service stays closed.
    #[error("{key}: {source}")]
    Key { key: &'static str, source: KeyError },
}

/// The configuration files under `root` in precedence order, lowest first.
pub fn config_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("usr/share/aither/agentd.toml"), root.join("etc/aither/agentd.toml")];
    for dir in ["etc/aither/agentd.d", "run/aither/agentd.d"] {
        files.extend(toml_files(&root.join(dir)));
    }
    files
}

pub use aither_sys::paths::toml_files;

/// Load the configuration under `root` (`/` on the appliance). The shipped defaults are
/// compiled in and used when `/usr/share/aither/agentd.toml` is absent (dev mode).
pub fn load(root: &Path) -> Result<Settings, ConfigError> {
    let mut sources = Vec::new();
    for (i, path) in config_files(root).into_iter().enumerate() {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((path.display().to_string(), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if i == 0 {
                    sources.push(("(built-in defaults)".to_string(), DEFAULTS.to_string()));
                }
            }
            Err(source) => return Err(ConfigError::Read { file: path.display().to_string(), source }),
        }
    }
    from_sources(&sources)
}

/// A value and the file that set it.
struct Set<T> {
    value: T,
    file: String,
}

fn set<T>(slot: &mut Option<Set<T>>, value: Option<T>, file: &str) {
    if let Some(value) = value {
        *slot = Some(Set { value, file: file.to_string() });
    }
}

/// Merge and validate fragments given as (file name, contents), lowest precedence first.
pub fn from_sources(sources: &[(String, String)]) -> Result<Settings, ConfigError> {
    let mut state_dir = None;
    let mut runtime_dir = None;
    let mut log = None;
    let mut listen = None;
    let mut api_key_file = None;
    let mut without_key = None;
    let mut allowed_hosts = None;
    let mut socket_group = None;
    let mut header_timeout = None;
    let mut body_timeout = None;
    let mut idle_timeout = None;
    let mut max_connections = None;
    let mut max_body = None;
    let mut timeout = None;
    let mut start_timeout = None;
    let mut keep_alive = None;
    let mut max_concurrent = None;
    let mut memory_max = None;
    let mut pids_max = None;
    let mut infer_binary = None;
    let mut model_dir = None;
    let mut cloud_endpoint = None;
    let mut cloud_model = None;
    let mut cloud_key = None;
    let mut runner = None;
    let mut step_socket = None;
    let mut approval_hours = None;
    let mut allow_unconfined = None;
    let mut workspace_max = None;
    let mut workspace_max_files = None;
    let mut outbox = None;
    let mut webhook = None;
    let mut webhook_key = None;
    let mut input_dirs = None;
    for (file, text) in sources {
        let f: Fragment =
            toml::from_str(text).map_err(|e| ConfigError::Parse { file: file.clone(), message: one_line(&e) })?;
        let d = f.daemon.unwrap_or_default();
        set(&mut state_dir, d.state_dir, file);
        set(&mut runtime_dir, d.runtime_dir, file);
        set(&mut log, d.log, file);
        let g = f.gateway.unwrap_or_default();
        set(&mut listen, g.listen, file);
        set(&mut api_key_file, g.api_key_file, file);
        set(&mut without_key, g.allow_tcp_without_key, file);
        set(&mut allowed_hosts, g.allowed_hosts, file);
        set(&mut socket_group, g.socket_group, file);
        set(&mut header_timeout, g.header_timeout_seconds, file);
        set(&mut body_timeout, g.body_timeout_seconds, file);
        set(&mut idle_timeout, g.idle_timeout_seconds, file);
        set(&mut max_connections, g.max_connections, file);
        set(&mut max_body, g.max_body_size, file);
        set(&mut timeout, g.request_timeout_seconds, file);
        set(&mut start_timeout, g.start_timeout_seconds, file);
        set(&mut keep_alive, g.keep_alive_seconds, file);
        let a = f.agents.unwrap_or_default();
        set(&mut max_concurrent, a.max_concurrent, file);
        set(&mut memory_max, a.memory_max, file);
        set(&mut pids_max, a.pids_max, file);
        let i = f.infer.unwrap_or_default();
        set(&mut infer_binary, i.binary, file);
        set(&mut model_dir, i.model_dir, file);
        let c = f.cloud.unwrap_or_default();
        set(&mut cloud_endpoint, c.endpoint, file);
        set(&mut cloud_model, c.model, file);
        set(&mut cloud_key, c.api_key_file, file);
        let w = f.workflows.unwrap_or_default();
        set(&mut runner, w.runner, file);
        set(&mut step_socket, w.gateway_socket, file);
        set(&mut approval_hours, w.approval_hours, file);
        set(&mut allow_unconfined, w.allow_unconfined, file);
        set(&mut workspace_max, w.workspace_max, file);
        set(&mut workspace_max_files, w.workspace_max_files, file);
        set(&mut outbox, w.outbox, file);
        set(&mut webhook, w.webhook, file);
        set(&mut webhook_key, w.webhook_key_file, file);
        set(&mut input_dirs, w.input_dirs, file);
    }
    let missing = |key: &str| ConfigError::Invalid {
        file: "(merged configuration)".into(),
        key: key.into(),
        problem: "not set".into(),
    };
    let invalid = |s_file: &str, key: &str, problem: String| ConfigError::Invalid {
        file: s_file.to_string(),
        key: key.to_string(),
        problem,
    };
    let absolute = |v: Option<Set<PathBuf>>, key: &str| -> Result<PathBuf, ConfigError> {
        let s = v.ok_or_else(|| missing(key))?;
        if s.value.is_absolute() {
            Ok(s.value)
        } else {
            Err(invalid(&s.file, key, format!("{} is not an absolute path", s.value.display())))
        }
    };

    let log = {
        let s = log.ok_or_else(|| missing("daemon.log"))?;
        match s.value.as_str() {
            "journal" => LogTo::Journal,
            "stderr" => LogTo::Stderr,
            other => return Err(invalid(&s.file, "daemon.log", format!("{other:?} is not journal or stderr"))),
        }
    };
    let listen_set = listen.ok_or_else(|| missing("gateway.listen"))?;
    let mut gateway_listen = Vec::new();
    for (n, l) in listen_set.value.iter().enumerate() {
        let key = format!("gateway.listen[{n}]");
        let parsed = if let Some(p) = l.strip_prefix("unix:") {
            let p = PathBuf::from(p);
            if !p.is_absolute() {
                return Err(invalid(&listen_set.file, &key, format!("{l:?}: the socket path must be absolute")));
            }
            Listen::Unix(p)
        } else {
            Listen::Tcp(
                l.parse()
                    .map_err(|_| invalid(&listen_set.file, &key, format!("{l:?} is not HOST:PORT or unix:PATH")))?,
            )
        };
        gateway_listen.push(parsed);
    }
    let without_key = without_key.unwrap_or(Set { value: false, file: "(default)".into() });
    if let Some(k) = api_key_file.as_ref().filter(|k| !k.value.is_absolute()) {
        return Err(invalid(&k.file, "gateway.api_key_file", format!("{} is not an absolute path", k.value.display())));
    }
    let api_key_file = api_key_file.map(|s| s.value);
    if let Some(Listen::Tcp(addr)) =
        gateway_listen.iter().find(|l| matches!(l, Listen::Tcp(a) if !a.ip().is_loopback()))
    {
        if api_key_file.is_none() {
            return Err(invalid(
                &listen_set.file,
                "gateway.listen",
                format!(
                    "{addr} is not loopback: set gateway.api_key_file, listening beyond loopback requires an API key"
                ),
            ));
        }
    }
    if let Some(Listen::Tcp(addr)) = gateway_listen.iter().find(|l| matches!(l, Listen::Tcp(_))) {
        if api_key_file.is_none() && !without_key.value {
            return Err(invalid(
                &listen_set.file,
                "gateway.api_key_file",
                format!(
                    "the gateway listens on {addr} and TCP clients need a key: set gateway.api_key_file (first boot \
                     writes /etc/aither/gateway.key), or set gateway.allow_tcp_without_key = true to let anyone on \
                     this machine in"
                ),
            ));
        }
    }
    let mut gateway_allowed_hosts = Vec::new();
    if let Some(h) = allowed_hosts {
        for (n, name) in h.value.iter().enumerate() {
            if !valid_host_name(name) {
                return Err(invalid(
                    &h.file,
                    &format!("gateway.allowed_hosts[{n}]"),
                    format!("{name:?} is not a host name (letters, digits, '-' and '.')"),
                ));
            }
            gateway_allowed_hosts.push(name.to_ascii_lowercase());
        }
    }
    let gateway_socket_group = match socket_group {
        Some(g) if g.value.is_empty() => None,
        Some(g) if !valid_user_name(&g.value) => {
            return Err(invalid(&g.file, "gateway.socket_group", format!("{:?} is not a group name", g.value)))
        }
        other => other.map(|g| g.value),
    };
    let d = Limits::default();
    let secs = |v: Option<Set<u64>>, d: std::time::Duration| v.map_or(d, |s| std::time::Duration::from_secs(s.value));
    // The file that set each limit, to name in an error about it.
    let file_of = |s: &Option<Set<u64>>| s.as_ref().map_or_else(|| "(defaults)".to_string(), |s| s.file.clone());
    let limit_files = [
        ("header_timeout_seconds", file_of(&header_timeout)),
        ("body_timeout_seconds", file_of(&body_timeout)),
        ("idle_timeout_seconds", file_of(&idle_timeout)),
        ("max_connections", max_connections.as_ref().map_or_else(|| "(defaults)".to_string(), |s| s.file.clone())),
    ];
    let max_body_bytes = match &max_body {
        None => d.max_body_bytes,
        Some(b) => parse_size(&b.value).and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
            invalid(&b.file, "gateway.max_body_size", format!("{:?} is not a size like 512K or 32M", b.value))
        })?,
    };
    let gateway_limits = Limits {
        header_timeout: secs(header_timeout, d.header_timeout),
        body_timeout: secs(body_timeout, d.body_timeout),
        idle_timeout: secs(idle_timeout, d.idle_timeout),
        max_connections: max_connections.map_or(d.max_connections, |s| s.value),
        max_body_bytes,
    };
    gateway_limits.validate().map_err(|e| {
        let file = limit_files.iter().find(|(k, _)| *k == e.key).map_or("(defaults)", |(_, f)| f.as_str());
        invalid(file, &format!("gateway.{}", e.key), e.problem)
    })?;
    let memory = memory_max.ok_or_else(|| missing("agents.memory_max"))?;
    let agent_memory_max = parse_size(&memory.value).ok_or_else(|| {
        invalid(&memory.file, "agents.memory_max", format!("{:?} is not a size like 512M or 2G", memory.value))
    })?;
    let workspace_max_bytes = match &workspace_max {
        None => DEFAULT_WORKSPACE_MAX,
        Some(w) => parse_size(&w.value).filter(|b| *b >= 1 << 20).ok_or_else(|| {
            invalid(
                &w.file,
                "workflows.workspace_max",
                format!("{:?} is not a size of 1M or more, like 512M or 2G", w.value),
            )
        })?,
    };
    let workspace_max_files = match &workspace_max_files {
        None => DEFAULT_WORKSPACE_MAX_FILES,
        Some(n) if n.value >= 16 => n.value,
        Some(n) => return Err(invalid(&n.file, "workflows.workspace_max_files", "must be at least 16".into())),
    };
    let pids = pids_max.ok_or_else(|| missing("agents.pids_max"))?;
    if pids.value == 0 {
        return Err(invalid(&pids.file, "agents.pids_max", "must be at least 1".into()));
    }
    let timeout = timeout.ok_or_else(|| missing("gateway.request_timeout_seconds"))?;
    if timeout.value == 0 {
        return Err(invalid(&timeout.file, "gateway.request_timeout_seconds", "must be at least 1".into()));
    }
    let start_timeout = start_timeout.ok_or_else(|| missing("gateway.start_timeout_seconds"))?;
    if start_timeout.value == 0 {
        return Err(invalid(&start_timeout.file, "gateway.start_timeout_seconds", "must be at least 1".into()));
    }
    let cloud = match cloud_endpoint {
        None => {
            if let Some(s) = cloud_model.as_ref().map(|s| &s.file).or(cloud_key.as_ref().map(|s| &s.file)) {
                return Err(invalid(s, "cloud.endpoint", "missing: the cloud fallback needs an endpoint".into()));
            }
            None
        }
        Some(e) => {
            let endpoint = e.value.trim_end_matches('/').to_string();
            let (https, host) = match (endpoint.strip_prefix("https://"), endpoint.strip_prefix("http://")) {
                (Some(rest), _) => (true, rest),
                (None, Some(rest)) => (false, rest),
                (None, None) => (false, ""),
            };
            let authority = host.split('/').next().unwrap_or("");
            if authority.is_empty() || authority.contains('@') {
                return Err(invalid(
                    &e.file,
                    "cloud.endpoint",
                    format!("{:?} is not an https:// URL (user names in URLs are not accepted)", e.value),
                ));
            }
            if !https && !is_loopback_authority(authority) {
                return Err(invalid(
                    &e.file,
                    "cloud.endpoint",
                    format!(
                        "{:?}: the key and every prompt would cross the network in clear text; use https:// \
                         (http:// is accepted only for loopback)",
                        e.value
                    ),
                ));
            }
            if let Some(k) = cloud_key.as_ref().filter(|k| !k.value.is_absolute()) {
                return Err(invalid(
                    &k.file,
                    "cloud.api_key_file",
                    format!("{} is not an absolute path", k.value.display()),
                ));
            }
            Some(Cloud {
                endpoint,
                model: cloud_model.map(|m| m.value),
                api_key_file: cloud_key.map(|k| k.value),
                api_key: None,
            })
        }
    };
    let approval_hours = approval_hours.ok_or_else(|| missing("workflows.approval_hours"))?;
    if !(1..=24 * 30).contains(&approval_hours.value) {
        return Err(invalid(
            &approval_hours.file,
            "workflows.approval_hours",
            format!("{} is not 1..720 (hours)", approval_hours.value),
        ));
    }
    let workflow_gateway_socket = match step_socket {
        Some(s) if !s.value.is_absolute() => {
            return Err(invalid(
                &s.file,
                "workflows.gateway_socket",
                format!("{} is not an absolute path", s.value.display()),
            ))
        }
        other => other.map(|s| s.value),
    };
    let webhook = match webhook {
        None => {
            if let Some(k) = &webhook_key {
                return Err(invalid(&k.file, "workflows.webhook", "missing: webhook_key_file is for a webhook".into()));
            }
            None
        }
        Some(w) => {
            let url = w.value.trim().to_string();
            let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
                (Some(r), _) => (true, r),
                (None, Some(r)) => (false, r),
                (None, None) => (false, ""),
            };
            let authority = rest.split('/').next().unwrap_or("");
            if authority.is_empty() || authority.contains('@') || url.chars().any(|c| c.is_control() || c == ' ') {
                return Err(invalid(&w.file, "workflows.webhook", format!("{:?} is not an https:// URL", w.value)));
            }
            if !https && !is_loopback_authority(authority) {
                return Err(invalid(
                    &w.file,
                    "workflows.webhook",
                    format!("{:?}: published files would cross the network in clear text; use https:// (http:// only for loopback)", w.value),
                ));
            }
            Some(url)
        }
    };
    let input_dirs = match input_dirs {
        None => Vec::new(),
        Some(d) => {
            for (i, p) in d.value.iter().enumerate() {
                aither_policy::SafePath::new("path", p).map_err(|e| {
                    invalid(&d.file, &format!("workflows.input_dirs[{i}]"), format!("{e} (an absolute, plain path)"))
                })?;
            }
            d.value
        }
    };
    Ok(Settings {
        input_dirs,
        webhook,
        webhook_key_file: webhook_key.map(|k| k.value),
        webhook_key: None,
        workflow_runner: absolute(runner, "workflows.runner")?,
        workflow_gateway_socket,
        approval_hours: approval_hours.value,
        allow_unconfined_steps: allow_unconfined.is_some_and(|s| s.value),
        workspace_max_bytes,
        workspace_max_files,
        outbox: absolute(outbox, "workflows.outbox")?,
        state_dir: absolute(state_dir, "daemon.state_dir")?,
        runtime_dir: absolute(runtime_dir, "daemon.runtime_dir")?,
        log,
        gateway_listen,
        gateway_api_key_file: api_key_file,
        gateway_api_key: None,
        gateway_allow_tcp_without_key: without_key.value,
        gateway_allowed_hosts,
        gateway_socket_group,
        gateway_limits,
        gateway_request_timeout_seconds: timeout.value,
        gateway_start_timeout_seconds: start_timeout.value,
        gateway_keep_alive_seconds: keep_alive.map_or(0, |s| s.value),
        agents_max_concurrent: max_concurrent.map_or(0, |s| s.value),
        agent_memory_max,
        agent_pids_max: pids.value,
        infer_binary: absolute(infer_binary, "infer.binary")?,
        model_dir: absolute(model_dir, "infer.model_dir")?,
        cloud,
        sources: sources.iter().map(|(f, _)| f.clone()).collect(),
    })
}

/// Read the configured key files into `s`: one that is missing, unreadable or empty is an
/// error, and the caller does not start (or keeps its running configuration).
pub fn read_keys(s: &mut Settings) -> Result<(), ConfigError> {
    if let Some(path) = &s.gateway_api_key_file {
        s.gateway_api_key =
            Some(keys::read(path).map_err(|source| ConfigError::Key { key: "gateway.api_key_file", source })?);
    }
    if let Some(path) = &s.webhook_key_file {
        s.webhook_key =
            Some(keys::read(path).map_err(|source| ConfigError::Key { key: "workflows.webhook_key_file", source })?);
    }
    if let Some(c) = &mut s.cloud {
        if let Some(path) = &c.api_key_file {
            c.api_key =
                Some(keys::read(path).map_err(|source| ConfigError::Key { key: "cloud.api_key_file", source })?);
        }
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A DNS name: labels of letters, digits and '-', separated by dots.
fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        })
}

/// A user or group name as useradd accepts it.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with('-')
}

/// TOML errors span several lines with a source excerpt; keep the first, which names the key.
fn one_line(e: &toml::de::Error) -> String {
    let msg = e.message().to_string();
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

/// The `[resources]` limits agent and unit manifests share: `memory_max` parsed to bytes and
/// `pids_max` checked; an error is (key, problem).
pub fn resource_limits(memory_max: Option<&str>, pids_max: Option<u64>) -> Result<Option<u64>, (&'static str, String)> {
    if pids_max == Some(0) {
        return Err(("resources.pids_max", "must be at least 1".into()));
    }
    memory_max
        .map(|s| parse_size(s).ok_or_else(|| ("resources.memory_max", format!("{s:?} is not a size like 512M"))))
        .transpose()
}

/// `512M`, `2G`, `1.5G`, `1048576` (bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return None,
    };
    let n: f64 = number.trim().parse().ok()?;
    if !(n.is_finite() && n > 0.0) {
        return None;
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((n * mult as f64) as u64)
}

/// Keys and values of the merged configuration, for `aitherctl` and the API.
pub fn describe(s: &Settings) -> BTreeMap<&'static str, String> {
    let listen: Vec<String> = s
        .gateway_listen
        .iter()
        .map(|l| match l {
            Listen::Tcp(a) => a.to_string(),
            Listen::Unix(p) => format!("unix:{}", p.display()),
        })
        .collect();
    BTreeMap::from([
        ("daemon.state_dir", s.state_dir.display().to_string()),
        ("daemon.runtime_dir", s.runtime_dir.display().to_string()),
        ("gateway.listen", listen.join(", ")),
        ("agents.max_concurrent", s.agents_max_concurrent.to_string()),
        ("agents.memory_max", s.agent_memory_max.to_string()),
        ("agents.pids_max", s.agent_pids_max.to_string()),
        ("infer.model_dir", s.model_dir.display().to_string()),
        ("workflows.approval_hours", s.approval_hours.to_string()),
        ("workflows.workspace_max", s.workspace_max_bytes.to_string()),
        ("workflows.workspace_max_files", s.workspace_max_files.to_string()),
        ("workflows.outbox", s.outbox.display().to_string()),
    ])
}

#[cfg(test)]
mod tests;
