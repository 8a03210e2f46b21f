//! Applying validated answers: everything staged, committed together, then activated.
//!
//! 1. **Stage** ([`crate::stage`]): host name, time zone, the admin's account files and home,
//!    NetworkManager keyfiles, `/etc/aither/appliance.toml` (the pinned preset), the cloud
//!    fallback (`/etc/aither/agentd.d/50-cloud.toml` and its key file), the record of the
//!    answers (secrets redacted) and, last, the marker `/var/lib/aither/configured`.
//!    Any failure here changes nothing.
//! 2. **Commit**: renames, undone on failure; the marker goes last, so a machine where the
//!    commit did not finish is still unconfigured and first boot runs again.
//! 3. **Activate** (only on the running machine): set the host name (systemd-hostnamed), label the new files
//!    (`restorecon`), ask NetworkManager to load and bring up the connections. These leave
//!    the configuration in place if they fail, and say so in the report.
//! 4. **Models** (when asked for now): fetched with progress; one that fails is reported with
//!    the command that fetches it later (`aither-firstboot fetch-models`).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aither_api::profile::Profile;
use aither_models::{self as fetch, Source};
use aither_plan::catalog::Catalog;
use aither_plan::plan::{self, PlanOptions};
use aither_plan::presets::Presets;

use crate::accounts::Accounts;
use crate::answers::{self, Answers, Settings};
use crate::network;
use crate::stage::{Perms, StageError, Transaction};

pub const MARKER: &str = "/var/lib/aither/configured";
pub use aither_sys::paths::{APPLIANCE_FILE as APPLIANCE, GATEWAY_KEY, MODEL_DIR};
pub const CLOUD_CONFIG: &str = "/etc/aither/agentd.d/50-cloud.toml";
pub const CLOUD_KEY: &str = "/etc/aither/cloud.key";
pub const RECORD: &str = "/var/lib/aither/firstboot/answers.toml";

/// The machine being configured.
#[derive(Debug)]
pub struct Env<'a> {
    /// `/`, or a tree being prepared.
    pub root: &'a Path,
    /// `root` is the running machine: set the host name, label files, talk to NetworkManager.
    pub live: bool,
    pub profile: Option<&'a Profile>,
    pub presets: &'a Presets,
    pub catalog: &'a Catalog,
}

impl Env<'_> {
    pub fn target(&self) -> answers::Target<'_> {
        answers::Target { root: self.root, presets: self.presets, catalog: self.catalog }
    }

    pub fn is_configured(&self) -> bool {
        self.root.join(MARKER.trim_start_matches('/')).exists()
    }
}

/// What happens during apply, for a progress display.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step begins.
    Step(String),
    /// Bytes of a long transfer.
    Transfer { what: String, done: u64, total: Option<u64> },
    /// A step finished with this result line.
    Done(String),
    /// Something did not work; the configuration stays.
    Warning(String),
}

/// What apply did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub done: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("nothing was changed: {0}")]
    Stage(#[from] StageError),
    #[error("nothing was changed: {0}")]
    Accounts(#[from] crate::accounts::AccountsError),
    /// The appliance configuration cannot be read or written; the message names the file.
    #[error("nothing was changed: {0}")]
    Config(String),
    #[error("this machine is already configured ({0} exists): nothing was changed")]
    AlreadyConfigured(PathBuf),
}

/// Validate `answers` and apply them.
pub fn validate_and_apply(
    answers: &Answers,
    env: &Env<'_>,
    progress: &mut dyn FnMut(Event),
) -> Result<Report, ValidateOrApply> {
    let settings = answers::validate(answers, &env.target()).map_err(ValidateOrApply::Invalid)?;
    apply(answers, &settings, env, progress).map_err(ValidateOrApply::Apply)
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateOrApply {
    #[error("{} problem{} in the answers, nothing was changed:\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<answers::Problem>),
    #[error(transparent)]
    Apply(ApplyError),
}

/// Apply validated settings (see the module documentation for the order).
pub fn apply(
    answers: &Answers,
    s: &Settings,
    env: &Env<'_>,
    progress: &mut dyn FnMut(Event),
) -> Result<Report, ApplyError> {
    let marker = env.root.join(MARKER.trim_start_matches('/'));
    if marker.exists() {
        return Err(ApplyError::AlreadyConfigured(marker));
    }
    let mut report = Report::default();
    let note = |report: &mut Report, progress: &mut dyn FnMut(Event), line: String| {
        progress(Event::Done(line.clone()));
        report.done.push(line);
    };
    progress(Event::Step("Preparing the configuration".into()));
    let mut tx = Transaction::new(env.root);
    let now = SystemTime::now();
    let mut activated_hostname = None;
    let mut lines = Vec::new();

    if let Some(h) = &s.hostname {
        tx.file("/etc/hostname", format!("{h}\n").as_bytes(), Perms::KeepOr(0o644))?;
        lines.push(format!("host name {h}"));
        activated_hostname = Some(h.clone());
    }
    if let Some(z) = &s.timezone {
        tx.symlink("/etc/localtime", &Path::new("../usr/share/zoneinfo").join(z))?;
        lines.push(format!("time zone {z}"));
    }
    if let Some(admin) = &s.admin {
        stage_admin(&mut tx, env.root, admin, now, &mut lines)?;
    }
    for i in &s.network {
        tx.file(
            &network::keyfile_path(&i.interface),
            network::keyfile(i).as_bytes(),
            Perms::Exact { mode: 0o600, uid: 0, gid: 0 },
        )?;
        lines.push(match &i.method {
            answers::Method::Dhcp => format!("{}: DHCP", i.interface),
            answers::Method::Static { address, prefix, .. } => format!("{}: static {address}/{prefix}", i.interface),
        });
    }
    tx.file(APPLIANCE, appliance_toml(env.root, s, now)?.as_bytes(), Perms::KeepOr(0o644))?;
    lines.push(match &s.preset {
        Some(p) => format!("preset {p} (pinned)"),
        None => "preset chosen from the hardware at every boot".into(),
    });
    let enabled = tx.target(aither_sys::paths::WORKFLOWS_ENABLED);
    if s.workflows.is_some() || !enabled.exists() {
        let packs = s.workflows.clone().unwrap_or_else(|| preset_workflows(env, s.preset.as_deref()));
        let switches = aither_api::workflow::WorkflowSwitches {
            enabled: packs.iter().cloned().collect(),
            disabled: std::collections::BTreeSet::new(),
        };
        let text = format!(
            "# Written by aither-firstboot: the workflow packs turned on.\n\
             # aitherctl workflows enable|disable NAME changes it.\n{}",
            toml::to_string(&switches).unwrap_or_default()
        );
        tx.file(aither_sys::paths::WORKFLOWS_ENABLED, text.as_bytes(), Perms::KeepOr(0o644))?;
        lines.push(if packs.is_empty() {
            "no workflow pack turned on".to_string()
        } else {
            format!("workflow packs on: {}", packs.join(", "))
        });
    }
    if let Some(c) = &s.cloud {
        let mut cfg = format!(
            "# Written by aither-firstboot: the gateway's cloud fallback.\n[cloud]\nendpoint = {:?}\n",
            c.endpoint
        );
        if let Some(m) = &c.model {
            cfg.push_str(&format!("model = {m:?}\n"));
        }
        if let Some(k) = &c.api_key {
            tx.file(CLOUD_KEY, format!("{k}\n").as_bytes(), Perms::Exact { mode: 0o600, uid: 0, gid: 0 })?;
            cfg.push_str(&format!("api_key_file = {CLOUD_KEY:?}\n"));
        }
        tx.file(CLOUD_CONFIG, cfg.as_bytes(), Perms::KeepOr(0o644))?;
        lines.push(format!("cloud fallback {}", c.endpoint));
    }
    if aither_http::keys::read(&tx.target(GATEWAY_KEY)).is_err() {
        // Root and the admins read it (aither-admin); the admin hands it to clients.
        let gid = Accounts::read(env.root).ok().and_then(|a| a.group_id("aither-admin")).unwrap_or(0);
        let key = aither_http::keys::new_key()
            .map_err(|e| ApplyError::Config(format!("{GATEWAY_KEY}: cannot make a key: {e}")))?;
        tx.file(GATEWAY_KEY, format!("{}\n", key.expose()).as_bytes(), Perms::Exact { mode: 0o640, uid: 0, gid })?;
        lines.push(format!("gateway key {GATEWAY_KEY} (readable by root and aither-admin)"));
    }
    let record = format!(
        "# The answers applied by aither-firstboot at {}, secrets redacted.\n{}",
        timestamp(now),
        toml::to_string(&answers::redacted(answers)).unwrap_or_default()
    );
    tx.file(RECORD, record.as_bytes(), Perms::Exact { mode: 0o600, uid: 0, gid: 0 })?;
    tx.file(
        MARKER,
        format!("configured by aither-firstboot at {}\n", timestamp(now)).as_bytes(),
        Perms::KeepOr(0o644),
    )?;

    progress(Event::Step("Writing the configuration".into()));
    let committed = tx.commit()?;
    for l in lines {
        note(&mut report, progress, l);
    }

    if env.live {
        progress(Event::Step("Activating".into()));
        if let Some(h) = activated_hostname {
            if let Err(e) = set_live_hostname(&h) {
                warn(&mut report, progress, format!("host name: in /etc/hostname, live from the next boot ({e})"));
            }
        }
        relabel(&committed.created, &mut report, progress);
        if !s.network.is_empty() {
            match network::reload_and_activate(&s.network) {
                Ok(true) => note(&mut report, progress, "NetworkManager: connections loaded and activated".into()),
                Ok(false) => note(
                    &mut report,
                    progress,
                    "NetworkManager is not running: the connections apply when it starts".into(),
                ),
                Err(e) => warn(&mut report, progress, format!("NetworkManager: {e}")),
            }
        }
    }
    if s.models.fetch_now {
        let wanted = models_to_fetch(env, s.preset.as_deref(), s.models.names.as_deref());
        let source = s.models.source_dir.clone().map(Source::Dir).unwrap_or(Source::Catalog);
        let fetched = fetch_models(env, &wanted, &source, &mut report, progress);
        if env.live && !fetched.is_empty() {
            relabel(&fetched, &mut report, progress);
        }
    }
    Ok(report)
}

fn warn(report: &mut Report, progress: &mut dyn FnMut(Event), line: String) {
    progress(Event::Warning(line.clone()));
    report.warnings.push(line);
}

fn stage_admin(
    tx: &mut Transaction,
    root: &Path,
    admin: &answers::AdminSettings,
    now: SystemTime,
    lines: &mut Vec<String>,
) -> Result<(), ApplyError> {
    let mut acc = Accounts::read(root)?;
    let shell =
        if root.join("bin/bash").exists() || root.join("usr/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" };
    let days = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0);
    let change = acc.add_admin(&admin.user, admin.password_hash.as_deref(), shell, days)?;
    tx.file("/etc/passwd", acc.passwd.as_bytes(), Perms::KeepOr(0o644))?;
    tx.file("/etc/shadow", acc.shadow.as_bytes(), Perms::KeepOr(0o000))?;
    tx.file("/etc/group", acc.group.as_bytes(), Perms::KeepOr(0o644))?;
    if let Some(gs) = &acc.gshadow {
        tx.file("/etc/gshadow", gs.as_bytes(), Perms::KeepOr(0o000))?;
    }
    let u = &change.user;
    let home = root.join(u.home.trim_start_matches('/'));
    let keys: String = admin.ssh_keys.iter().map(|k| format!("{k}\n")).collect();
    if !home.exists() {
        let skel = root.join("etc/skel");
        let (uid, gid) = (u.uid, u.gid);
        tx.new_dir(&u.home, Perms::Exact { mode: 0o700, uid, gid }, |dir| {
            if skel.is_dir() {
                copy_tree(&skel, dir, uid, gid)?;
            }
            if !keys.is_empty() {
                let ssh = dir.join(".ssh");
                std::fs::create_dir_all(&ssh)?;
                std::fs::write(ssh.join("authorized_keys"), &keys)?;
                for (p, mode) in [(ssh.join("authorized_keys"), 0o600), (ssh, 0o700)] {
                    std::os::unix::fs::chown(&p, Some(uid), Some(gid))?;
                    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                }
            }
            Ok(())
        })?;
    } else if !keys.is_empty() {
        let path = format!("{}/.ssh/authorized_keys", u.home);
        let existing = std::fs::read_to_string(tx.target(&path)).unwrap_or_default();
        let mut text = existing.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for k in &admin.ssh_keys {
            if !existing.lines().any(|l| l.trim() == k) {
                text.push_str(k);
                text.push('\n');
            }
        }
        tx.file(&path, text.as_bytes(), Perms::Exact { mode: 0o600, uid: u.uid, gid: u.gid })?;
    }
    let mut how = Vec::new();
    if admin.password_hash.is_some() {
        how.push("password".to_string());
    }
    if !admin.ssh_keys.is_empty() {
        how.push(format!("{} SSH key{}", admin.ssh_keys.len(), if admin.ssh_keys.len() == 1 { "" } else { "s" }));
    }
    lines.push(format!(
        "admin {} ({} uid {}, {}; groups {})",
        u.name,
        if change.created { "created," } else { "updated," },
        u.uid,
        how.join(" and "),
        if change.groups.is_empty() { "none".to_string() } else { change.groups.join(", ") }
    ));
    Ok(())
}

/// Copy `/etc/skel` into a new home, owned by the user.
fn copy_tree(from: &Path, to: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let t = e.file_type()?;
        if t.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst, uid, gid)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
        std::os::unix::fs::lchown(&dst, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// The appliance configuration with the preset pinned (or unpinned for auto); other keys,
/// agentd's, are kept.
fn appliance_toml(root: &Path, s: &Settings, now: SystemTime) -> Result<String, ApplyError> {
    let path = root.join(APPLIANCE.trim_start_matches('/'));
    let mut table = aither_plan::data::appliance_table(&path).map_err(|e| ApplyError::Config(format!("{e:#}")))?;
    table.insert("schema_version".into(), toml::Value::Integer(1));
    match &s.preset {
        Some(p) => table.insert("preset".into(), toml::Value::String(p.clone())),
        None => table.remove("preset"),
    };
    let mut fb = toml::Table::new();
    fb.insert("configured_at".into(), toml::Value::String(timestamp(now)));
    table.insert("firstboot".into(), toml::Value::Table(fb));
    let body = toml::to_string(&table).map_err(|e| ApplyError::Config(format!("{}: {e}", path.display())))?;
    Ok(format!(
        "# The appliance's configuration. preset: a preset name pins it (`aitherctl preset set`);\n# without it the preset is chosen from the hardware at every boot.\n{body}"
    ))
}

/// A model to fetch: its name and the file (URL, checksum) the plan or catalog gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub name: String,
    pub file: aither_plan::catalog::ModelFile,
}

/// The models to fetch: `names` when given (the plan's file for each when it is in the
/// plan, the catalog's first otherwise), else every model of the plan.
/// The packs the preset proposes: the pinned one, or the one the hardware selects (devops
/// alone when the hardware is not known).
pub fn preset_workflows(env: &Env<'_>, preset: Option<&str>) -> Vec<String> {
    let chosen = preset.map(str::to_string).or_else(|| {
        env.profile
            .and_then(|p| plan::plan(p, env.presets, env.catalog, &PlanOptions::default()).ok())
            .map(|p| p.preset)
    });
    chosen
        .and_then(|name| env.presets.get(&name).ok().map(|p| p.workflows.clone()))
        .unwrap_or_else(|| vec!["devops".to_string()])
}

pub fn models_to_fetch(env: &Env<'_>, preset: Option<&str>, names: Option<&[String]>) -> Vec<Wanted> {
    let planned = env
        .profile
        .and_then(|p| {
            let opts = PlanOptions {
                preset: preset.map(str::to_string),
                model_dir: Some(env.root.join(MODEL_DIR.trim_start_matches('/'))),
            };
            plan::plan(p, env.presets, env.catalog, &opts).ok()
        })
        .map(|p| p.models)
        .unwrap_or_default();
    let from_plan = |m: &plan::PlannedModel| Wanted {
        name: m.name.clone(),
        file: aither_plan::catalog::ModelFile {
            bytes: env.catalog.get(&m.name).and_then(|c| c.files.iter().find(|f| f.url == m.url)).and_then(|f| f.bytes),
            ..aither_plan::catalog::ModelFile::of_planned(m)
        },
    };
    match names {
        None => planned.iter().map(from_plan).collect(),
        Some(names) => names
            .iter()
            .filter_map(|n| match planned.iter().find(|m| &m.name == n) {
                Some(m) => Some(from_plan(m)),
                None => env
                    .catalog
                    .get(n)
                    .and_then(|m| fetch::choose_file(m, None))
                    .map(|f| Wanted { name: n.clone(), file: f.clone() }),
            })
            .collect(),
    }
}

/// Fetch `wanted` into the model directory; returns the files written.
pub fn fetch_models(
    env: &Env<'_>,
    wanted: &[Wanted],
    source: &Source,
    report: &mut Report,
    progress: &mut dyn FnMut(Event),
) -> Vec<PathBuf> {
    let dir = env.root.join(MODEL_DIR.trim_start_matches('/'));
    let mut written = Vec::new();
    for w in wanted {
        progress(Event::Step(format!("Fetching {}", w.name)));
        let what = w.name.clone();
        let result = fetch::fetch(&w.file, source, &dir, &fetch::FetchOptions::default(), &mut |done, total| {
            progress(Event::Transfer { what: what.clone(), done, total })
        });
        match result {
            Ok(f) => {
                let line = format!(
                    "model {}: {} ({} MB{})",
                    w.name,
                    if f.present { "already there" } else { "fetched" },
                    f.bytes / 1_000_000,
                    match f.verification {
                        fetch::Verification::Verified => ", SHA-256 verified",
                        fetch::Verification::Recorded => ", no SHA-256 in the catalog: this one recorded",
                        fetch::Verification::Unverified => ", unverified",
                    }
                );
                progress(Event::Done(line.clone()));
                report.done.push(line);
                if !f.present {
                    written.push(f.path);
                }
            }
            Err(e) => warn(
                report,
                progress,
                format!("model {}: {e}; fetch it later with `aither-firstboot fetch-models {}`", w.name, w.name),
            ),
        }
    }
    written
}

/// The running host name, through systemd-hostnamed (first boot itself holds no
/// CAP_SYS_ADMIN and runs with ProtectHostname=).
pub fn set_live_hostname(name: &str) -> Result<(), String> {
    let name = name.to_string();
    crate::bus::on_system_bus(std::time::Duration::from_secs(15), |conn| async move {
        let proxy = crate::bus::proxy(
            &conn,
            "org.freedesktop.hostname1",
            "/org/freedesktop/hostname1",
            "org.freedesktop.hostname1",
        )
        .await?;
        proxy
            .call::<_, _, ()>("SetHostname", &(name.as_str(), false))
            .await
            .map_err(|e| format!("systemd-hostnamed: {e}"))
    })
}

/// Give new files the label their path calls for (the rest kept theirs through staging).
fn relabel(paths: &[PathBuf], report: &mut Report, progress: &mut dyn FnMut(Event)) {
    if paths.is_empty() || !aither_sys::selinux::enabled(Path::new("/sys")) {
        return;
    }
    if let Err(e) = aither_sys::command::run(std::process::Command::new("restorecon").arg("-RF").args(paths)) {
        warn(report, progress, e.to_string());
    }
}

/// `2026-11-25T06:14:03Z`.
pub fn timestamp(t: SystemTime) -> String {
    aither_sys::time::utc_timestamp(t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(1_795_590_000)), "2026-11-25T07:00:00Z");
    }
}
