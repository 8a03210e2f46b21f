//! The answers: what the wizard asks and what an answers file says, one schema for both.
//!
//! An answers file is TOML (`schema_version = 1`; unknown keys are refused):
//!
//! ```toml
//! schema_version = 1
//! preset = "auto"                  # auto (selected from the hardware) or a preset name (pinned)
//!
//! [system]
//! hostname = "aither-01"           # a host name or a fully qualified domain name
//! timezone = "Europe/Berlin"       # a zone under /usr/share/zoneinfo
//!
//! [admin]                          # the administrator: sudo (wheel) and aither-admin
//! user = "admin"
//! password = "…"                   # hashed with SHA-512 crypt; never stored in clear
//! # password_hash = "$6$…"         # or a crypt(3) hash, so no clear password is written anywhere
//! ssh_keys = ["ssh-ed25519 AAAA… me@laptop"]
//!
//! [[network]]                      # per interface; interfaces not named stay as they are
//! interface = "eth0"
//! method = "static"                # dhcp | static
//! address = "192.0.2.10/24"
//! gateway = "192.0.2.1"
//! dns = ["192.0.2.53"]
//!
//! [models]
//! fetch = "later"                  # now (during first boot) | later
//! source = "catalog"               # catalog (the URLs in the model catalog) or a directory
//! names = ["qwen2.5-7b-instruct"]  # default: every model of the plan
//!
//! [workflows]                      # the workflow packs to turn on (aitherctl workflows enable|disable later)
//! enable = ["devops", "research"]  # default: the preset's (devops on every preset); [] for none
//!
//! [cloud]                          # the OpenAI-compatible fallback of the gateway
//! endpoint = "https://api.openai.com/v1"
//! model = "gpt-4o-mini"
//! api_key = "sk-…"                 # or api_key_file = "/root/key"
//! ```
//!
//! [`Answers`] is that file as parsed; [`validate`] turns it into [`Settings`], checking every
//! answer against the target machine (its zone files, its accounts, the presets and the
//! catalog) and reporting every problem at once, each with the key it is about.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aither_plan::catalog::Catalog;
use aither_plan::presets::Presets;
use serde::{Deserialize, Serialize};

use crate::accounts::{self, Accounts};

pub const SCHEMA_VERSION: u32 = 1;

/// An answers file, as written. Every field is optional so the wizard can hold a draft.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    pub schema_version: Option<u32>,
    pub preset: Option<String>,
    #[serde(default, skip_serializing_if = "System::is_empty")]
    pub system: System,
    pub admin: Option<Admin>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<Interface>,
    pub models: Option<Models>,
    pub workflows: Option<Workflows>,
    pub cloud: Option<Cloud>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflows {
    pub enable: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    pub hostname: Option<String>,
    pub timezone: Option<String>,
}

impl System {
    fn is_empty(&self) -> bool {
        self.hostname.is_none() && self.timezone.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub user: String,
    pub password: Option<String>,
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub interface: String,
    pub method: String,
    pub address: Option<String>,
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    pub fetch: Option<String>,
    pub source: Option<String>,
    pub names: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    pub endpoint: String,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
}

/// One thing wrong with the answers: the key it is about and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnswersError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{}: {} problem{}:\n  {}", .path.display(), .problems.len(), if .problems.len() == 1 { "" } else { "s" },
        .problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
    /// Answers from a source that is not trusted with secrets, or that fail their pin.
    #[error("{origin}: refused: {reason}")]
    Refused { origin: String, reason: String },
}

/// Parse answers from TOML text; `origin` names the file (or URL) in errors.
pub fn parse(text: &str, origin: &Path) -> Result<Answers, AnswersError> {
    toml::from_str(text)
        .map_err(|e| AnswersError::Syntax { path: origin.to_path_buf(), message: syntax_message(&e, text) })
}

/// Read and parse an answers file.
pub fn read(path: &Path) -> Result<Answers, AnswersError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| AnswersError::Read { path: path.to_path_buf(), source })?;
    parse(&text, path)
}

fn syntax_message(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim_end().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// Answers checked against the target machine: everything [`crate::apply`] needs, valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `None`: the preset is selected from the hardware at every boot (not pinned).
    pub preset: Option<String>,
    pub hostname: Option<String>,
    pub timezone: Option<String>,
    pub admin: Option<AdminSettings>,
    pub network: Vec<InterfaceSettings>,
    pub models: ModelSettings,
    /// The packs to turn on; `None`: the preset's.
    pub workflows: Option<Vec<String>>,
    pub cloud: Option<CloudSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    pub user: String,
    /// A crypt(3) hash; `None` leaves password login locked (SSH keys only).
    pub password_hash: Option<String>,
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceSettings {
    pub interface: String,
    pub method: Method,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Dhcp,
    Static { address: IpAddr, prefix: u8, gateway: Option<IpAddr>, dns: Vec<IpAddr> },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelSettings {
    pub fetch_now: bool,
    /// `None`: the catalog's URLs.
    pub source_dir: Option<PathBuf>,
    /// `None`: every model of the plan.
    pub names: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudSettings {
    pub endpoint: String,
    pub model: Option<String>,
    pub api_key: Option<String>,
}

/// What validation checks the answers against.
#[derive(Debug)]
pub struct Target<'a> {
    /// The machine's root (`/`, or a tree being prepared).
    pub root: &'a Path,
    pub presets: &'a Presets,
    pub catalog: &'a Catalog,
}

/// Check every answer; all problems are reported together.
pub fn validate(a: &Answers, target: &Target<'_>) -> Result<Settings, Vec<Problem>> {
    let mut p = Problems::default();
    match a.schema_version {
        Some(SCHEMA_VERSION) => {}
        Some(v) => {
            p.add("schema_version", format!("{v} is not supported (this aither-firstboot reads {SCHEMA_VERSION})"))
        }
        None => p.add("schema_version", format!("missing: add schema_version = {SCHEMA_VERSION}")),
    }
    let preset = match a.preset.as_deref() {
        None | Some("auto") => None,
        Some(name) => {
            if target.presets.get(name).is_err() {
                let known: Vec<&str> = target.presets.by_name.keys().map(String::as_str).collect();
                p.add("preset", format!("{name:?} is not auto or a preset ({})", known.join(", ")));
            }
            Some(name.to_string())
        }
    };
    let hostname = a.system.hostname.as_deref().map(str::trim).map(str::to_string);
    if let Some(h) = &hostname {
        if let Err(m) = check_hostname(h) {
            p.add("system.hostname", m);
        }
    }
    let timezone = a.system.timezone.as_deref().map(str::trim).map(str::to_string);
    if let Some(z) = &timezone {
        if let Err(m) = check_timezone(target.root, z) {
            p.add("system.timezone", m);
        }
    }
    let admin = a.admin.as_ref().and_then(|ad| admin(ad, target.root, &mut p));
    let network = network(&a.network, &mut p);
    let models = models(a.models.as_ref(), target.catalog, &mut p);
    let cloud = a.cloud.as_ref().and_then(|c| cloud(c, &mut p));
    let workflows = a.workflows.as_ref().map(|w| {
        for (i, name) in w.enable.iter().enumerate() {
            if !aither_api::workflow::PACKS.contains(&name.as_str()) {
                p.add(
                    format!("workflows.enable[{i}]"),
                    format!("{name:?} is not a workflow pack ({})", aither_api::workflow::PACKS.join(", ")),
                );
            }
        }
        let mut names = w.enable.clone();
        names.sort();
        names.dedup();
        names
    });
    if p.0.is_empty() {
        Ok(Settings { preset, hostname, timezone, admin, network, models, workflows, cloud })
    } else {
        Err(p.0)
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { key: key.into(), message: message.into() });
    }
}

/// RFC 1123 host names: labels of letters, digits and hyphens, 63 characters at most each.
pub fn check_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("empty".into());
    }
    if h.len() > 253 {
        return Err(format!("{} characters; a host name has 253 at most", h.len()));
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{h:?}: every dot-separated part must have 1 to 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("{h:?}: only letters, digits, hyphens and dots"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("{h:?}: a part may not begin or end with a hyphen"));
        }
    }
    Ok(())
}

/// A zone is a file under the target's `/usr/share/zoneinfo`.
pub fn check_timezone(root: &Path, zone: &str) -> Result<(), String> {
    let well_formed = !zone.is_empty()
        && !zone.starts_with('/')
        && zone.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && zone.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
    if !well_formed {
        return Err(format!("{zone:?} is not a zone name like Europe/Berlin or UTC"));
    }
    let file = root.join("usr/share/zoneinfo").join(zone);
    if file.is_file() {
        Ok(())
    } else {
        Err(format!("{zone:?}: no such zone ({} does not exist)", file.display()))
    }
}

fn admin(a: &Admin, root: &Path, p: &mut Problems) -> Option<AdminSettings> {
    let before = p.0.len();
    if let Err(m) = accounts::check_user_name(&a.user) {
        p.add("admin.user", m);
    } else {
        match Accounts::read(root) {
            Ok(acc) => {
                if let Some(u) = acc.user(&a.user) {
                    if u.uid < acc.uid_min {
                        p.add(
                            "admin.user",
                            format!("{:?} is a system account (uid {}); choose another name", a.user, u.uid),
                        );
                    }
                }
            }
            Err(e) => p.add("admin.user", format!("cannot read the accounts of the target: {e}")),
        }
    }
    let password_hash = match (&a.password, &a.password_hash) {
        (Some(_), Some(_)) => {
            p.add("admin.password", "give password or password_hash, not both");
            None
        }
        (Some(pw), None) => match accounts::check_password(pw) {
            Ok(()) => match accounts::hash_password(pw) {
                Ok(h) => Some(h),
                Err(e) => {
                    p.add("admin.password", format!("cannot hash it: {e}"));
                    None
                }
            },
            Err(m) => {
                p.add("admin.password", m);
                None
            }
        },
        (None, Some(h)) => {
            if let Err(m) = accounts::check_password_hash(h) {
                p.add("admin.password_hash", m);
            }
            Some(h.clone())
        }
        (None, None) => None,
    };
    let mut keys = Vec::new();
    for (i, k) in a.ssh_keys.iter().enumerate() {
        match accounts::check_ssh_key(k) {
            Ok(k) => keys.push(k),
            Err(m) => p.add(format!("admin.ssh_keys[{i}]"), m),
        }
    }
    if password_hash.is_none() && a.ssh_keys.is_empty() && p.0.len() == before {
        p.add("admin", "give a password, a password_hash or ssh_keys: otherwise nobody can log in as the admin");
    }
    (p.0.len() == before).then(|| AdminSettings { user: a.user.clone(), password_hash, ssh_keys: keys })
}

fn network(ifaces: &[Interface], p: &mut Problems) -> Vec<InterfaceSettings> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, n) in ifaces.iter().enumerate() {
        let key = |f: &str| format!("network[{i}].{f}");
        let name = n.interface.trim();
        if name.is_empty() || name.len() > 15 || name.contains(['/', ':']) || name.contains(char::is_whitespace) {
            p.add(
                key("interface"),
                format!("{name:?} is not an interface name (1 to 15 characters, no / : or spaces)"),
            );
            continue;
        }
        if !seen.insert(name.to_string()) {
            p.add(key("interface"), format!("{name} is configured twice"));
            continue;
        }
        let method = match n.method.as_str() {
            "dhcp" => {
                for (f, set) in
                    [("address", n.address.is_some()), ("gateway", n.gateway.is_some()), ("dns", !n.dns.is_empty())]
                {
                    if set {
                        p.add(key(f), "only for method = \"static\"");
                    }
                }
                Method::Dhcp
            }
            "static" => {
                let Some(addr) = n.address.as_deref() else {
                    p.add(key("address"), "required for method = \"static\" (like 192.0.2.10/24)");
                    continue;
                };
                let (address, prefix) = match parse_cidr(addr) {
                    Ok(a) => a,
                    Err(m) => {
                        p.add(key("address"), m);
                        continue;
                    }
                };
                let gateway = match n.gateway.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
                    None => None,
                    Some(g) => match g.parse::<IpAddr>() {
                        Ok(g) if g.is_ipv4() == address.is_ipv4() => Some(g),
                        Ok(_) => {
                            p.add(key("gateway"), format!("{g} is not of the address's family"));
                            None
                        }
                        Err(_) => {
                            p.add(key("gateway"), format!("{g:?} is not an IP address"));
                            None
                        }
                    },
                };
                let mut dns = Vec::new();
                for (j, d) in n.dns.iter().enumerate() {
                    match d.trim().parse::<IpAddr>() {
                        Ok(ip) => dns.push(ip),
                        Err(_) => p.add(format!("network[{i}].dns[{j}]"), format!("{d:?} is not an IP address")),
                    }
                }
                Method::Static { address, prefix, gateway, dns }
            }
            other => {
                p.add(key("method"), format!("{other:?} is not dhcp or static"));
                continue;
            }
        };
        out.push(InterfaceSettings { interface: name.to_string(), method });
    }
    out
}

/// `192.0.2.10/24` or `2001:db8::10/64`.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let s = s.trim();
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(format!("{s:?}: give the prefix length too, like 192.0.2.10/24"));
    };
    let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(n) if (1..=max).contains(&n) => Ok((addr, n)),
        _ => Err(format!("{prefix:?} is not a prefix length from 1 to {max}")),
    }
}

fn models(m: Option<&Models>, catalog: &Catalog, p: &mut Problems) -> ModelSettings {
    let Some(m) = m else { return ModelSettings::default() };
    let fetch_now = match m.fetch.as_deref() {
        None | Some("later") => false,
        Some("now") => true,
        Some(other) => {
            p.add("models.fetch", format!("{other:?} is not now or later"));
            false
        }
    };
    let source_dir = match m.source.as_deref().map(str::trim) {
        None | Some("catalog") | Some("") => None,
        Some(dir) => {
            let d = PathBuf::from(dir);
            if !d.is_absolute() {
                p.add("models.source", format!("{dir:?} is not catalog or an absolute directory"));
            } else if !d.is_dir() {
                p.add("models.source", format!("{dir} is not a directory (is the USB stick mounted?)"));
            }
            Some(d)
        }
    };
    if let Some(names) = &m.names {
        for (i, n) in names.iter().enumerate() {
            if catalog.get(n).is_none() {
                p.add(format!("models.names[{i}]"), format!("{n:?} is not in the model catalog"));
            }
        }
    }
    ModelSettings { fetch_now, source_dir, names: m.names.clone() }
}

fn cloud(c: &Cloud, p: &mut Problems) -> Option<CloudSettings> {
    let before = p.0.len();
    let endpoint = c.endpoint.trim().trim_end_matches('/').to_string();
    if let Err(m) = check_endpoint(&endpoint) {
        p.add("cloud.endpoint", m);
    }
    if c.model.as_deref().is_some_and(|m| m.trim().is_empty() || m.contains(char::is_whitespace)) {
        p.add("cloud.model", "a model name has no spaces; leave it out to pass the client's model through");
    }
    let api_key = match (&c.api_key, &c.api_key_file) {
        (Some(_), Some(_)) => {
            p.add("cloud.api_key", "give api_key or api_key_file, not both");
            None
        }
        (Some(k), None) => Some(k.trim().to_string()),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(k) => Some(k.trim().to_string()),
            Err(e) => {
                p.add("cloud.api_key_file", format!("cannot read {}: {e}", f.display()));
                None
            }
        },
        (None, None) => None,
    };
    if api_key.as_deref().is_some_and(|k| k.is_empty() || k.contains(char::is_whitespace)) {
        p.add("cloud.api_key", "empty or contains spaces");
    }
    let model = c.model.as_deref().map(str::trim).map(str::to_string);
    (p.0.len() == before).then_some(CloudSettings { endpoint, model, api_key })
}

/// An `http://` or `https://` base URL with a host.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// The answers with every secret replaced, as kept in the record of what was applied.
pub fn redacted(a: &Answers) -> Answers {
    let mut a = a.clone();
    if let Some(ad) = &mut a.admin {
        if ad.password.is_some() {
            ad.password = Some("(redacted)".into());
        }
    }
    if let Some(c) = &mut a.cloud {
        if c.api_key.is_some() {
            c.api_key = Some("(redacted)".into());
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/share/zoneinfo/Europe")).expect("zoneinfo");
        std::fs::write(r.join("usr/share/zoneinfo/Europe/Berlin"), "TZif").expect("zone");
        std::fs::write(r.join("usr/share/zoneinfo/UTC"), "TZif").expect("zone");
        std::fs::create_dir_all(r.join("etc")).expect("etc");
        std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\n")
            .expect("passwd");
        std::fs::write(r.join("etc/group"), "root:x:0:\nwheel:x:10:\n").expect("group");
        t
    }

    fn check(text: &str, root: &Path) -> Result<Settings, Vec<Problem>> {
        let presets = Presets::builtin().expect("presets");
        let catalog = Catalog::builtin().expect("catalog");
        let a = parse(text, Path::new("answers.toml")).expect("parses");
        validate(&a, &Target { root, presets: &presets, catalog: &catalog })
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn a_complete_answers_file_validates_into_settings() {
        let t = target_root();
        let s = check(
            r#"schema_version = 1
preset = "standard"
[system]
hostname = "aither-01.lab.example"
timezone = "Europe/Berlin"
[admin]
user = "ops"
password = "correct horse battery"
ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQ3cjPzZ9xWVH2Hj3vX1n+Pw0d6ulOVmmEGNbAMlKPC ops@laptop"]
[[network]]
interface = "eth0"
method = "static"
address = "192.0.2.10/24"
gateway = "192.0.2.1"
dns = ["192.0.2.53"]
[models]
fetch = "later"
names = ["all-minilm-l6-v2"]
[cloud]
endpoint = "https://api.example.com/v1/"
api_key = "sk-test"
"#,
            t.path(),
        )
        .expect("valid");
        assert_eq!(s.preset.as_deref(), Some("standard"));
        assert_eq!(s.hostname.as_deref(), Some("aither-01.lab.example"));
        let admin = s.admin.expect("admin");
        assert!(admin.password_hash.as_deref().is_some_and(|h| h.starts_with("$6$")));
        assert_eq!(admin.ssh_keys.len(), 1);
        assert!(matches!(s.network[0].method, Method::Static { prefix: 24, gateway: Some(_), .. }));
        assert_eq!(s.cloud.expect("cloud").endpoint, "https://api.example.com/v1");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let t = target_root();
        let problems = check(
            r#"schema_version = 1
preset = "gigantic"
[system]
hostname = "-bad-"
timezone = "Mars/Olympus"
[admin]
user = "bin"
password = "short"
ssh_keys = ["ssh-rsa not-base64!"]
[[network]]
interface = "eth0"
method = "static"
address = "192.0.2.10"
[[network]]
interface = "eth1"
method = "bootp"
[models]
fetch = "soon"
names = ["no-such-model"]
[workflows]
enable = ["devops", "crypto-miner"]
[cloud]
endpoint = "ftp://example.com"
"#,
            t.path(),
        )
        .expect_err("invalid");
        assert_eq!(
            keys(&problems),
            [
                "preset",
                "system.hostname",
                "system.timezone",
                "admin.user",
                "admin.password",
                "admin.ssh_keys[0]",
                "network[0].address",
                "network[1].method",
                "models.fetch",
                "models.names[0]",
                "cloud.endpoint",
                "workflows.enable[1]"
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_syntax_name_the_file_and_line() {
        let err = parse("schema_version = 1\n[system]\nhostnam = \"x\"\n", Path::new("/etc/aither/answers.toml"))
            .expect_err("unknown key");
        let msg = err.to_string();
        assert!(matches!(err, AnswersError::Syntax { .. }));
        assert!(msg.starts_with("/etc/aither/answers.toml: line 3:"), "{msg}");
        assert!(msg.contains("hostnam"), "{msg}");
    }

    #[test]
    fn an_admin_needs_a_way_to_log_in() {
        let t = target_root();
        let problems = check("schema_version = 1\n[admin]\nuser = \"ops\"\n", t.path()).expect_err("no login");
        assert_eq!(keys(&problems), ["admin"]);
    }

    #[test]
    fn schema_version_is_required() {
        let t = target_root();
        let problems = check("preset = \"auto\"\n", t.path()).expect_err("no version");
        assert_eq!(keys(&problems), ["schema_version"]);
    }

    #[test]
    fn dhcp_takes_no_addresses() {
        let t = target_root();
        let problems = check(
            "schema_version = 1\n[[network]]\ninterface = \"eth0\"\nmethod = \"dhcp\"\naddress = \"10.0.0.2/8\"\n",
            t.path(),
        )
        .expect_err("dhcp with address");
        assert_eq!(keys(&problems), ["network[0].address"]);
    }

    #[test]
    fn redaction_hides_the_password_and_the_key() {
        let a = parse(
            "schema_version = 1\n[admin]\nuser = \"ops\"\npassword = \"hunter22hunter\"\n[cloud]\nendpoint = \"https://x\"\napi_key = \"sk-1\"\n",
            Path::new("a.toml"),
        )
        .expect("parses");
        let text = toml::to_string(&redacted(&a)).expect("serializes");
        assert!(!text.contains("hunter22hunter") && !text.contains("sk-1"), "{text}");
    }
}
