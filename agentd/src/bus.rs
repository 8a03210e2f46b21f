//! The D-Bus API `org.aitheros.Agentd1` at `/org/aitheros/Agentd1`, on the system bus (the
//! session bus in dev mode).
//!
//! Reading is open to everyone; changing things (start, stop, restart, run an agent, set the
//! preset, reload) is for root, the daemon's own user, and members of `aither-admin`. The
//! caller is identified by the bus daemon's record of its connection's uid
//! (`GetConnectionUnixUser`), never by a PID, which can be recycled.
//!
//! Every method answers with a typed document of `aither_api::agentd`, as JSON text (the
//! same document `aitherctl --json` prints; its schema is in `docs/schema/`); a refusal is a
//! D-Bus error whose message says why.
//!
//! | member | kind | reply |
//! |---|---|---|
//! | `Status() → s` | method | `Status`: summary, preset, gateway, units, admission queue, cgroup limits |
//! | `ListUnits() → s`, `ListAgents() → s` | methods | `UnitList` |
//! | `GetUnit(s name) → s` | method | `UnitReply` |
//! | `Start(s)`, `Stop(s)`, `Restart(s) → s` | methods | `Done`: what was done, in words |
//! | `RunAgent(s manifest_toml) → s` | method | `Done` |
//! | `Profile()`, `Plan() → s` | methods | `Profile`, `Plan` (`aither_api::{profile, plan}`) |
//! | `Preset() → s` | method | `PresetReply` |
//! | `Models() → s` | method | `Models`: the plan's models, their files and workers |
//! | `SetPreset(s name) → s`, `Reload() → s` | methods | `Done` |
//! | `LogTarget(s name) → s` | method | `LogTargetReply` |
//! | `Workflows() → s` | method | `WorkflowList`: the definitions and the files refused |
//! | `RunWorkflow(s name, a{ss} inputs) → s` | method | `RunReply`: the run started |
//! | `EnableWorkflow(s name, b on) → s` | method | `Done`: turned on or off (admins) |
//! | `Runs() → s`, `GetRun(s id) → s` | methods | `RunList`, `RunReply` |
//! | `CancelRun(s id) → s` | method | `Done` |
//! | `RunLog(s id, s step) → s` | method | the step's transcript (JSON lines; admins only) |
//! | `Approvals() → s` | method | `ApprovalList`: pending first |
//! | `Approve(s id)`, `Deny(s id) → s` | methods | `Done`: what was carried out, or why not |
//! | `UnitChanged(s name, s state, s detail)` | signal | every state change (`UnitState` names) |
//! | `RunChanged(s id, s state)` | signal | a run changed (`RunState` names) |
//! | `ApprovalChanged(s id, s state, s action)` | signal | a proposal was queued or decided |
//! | `PullModel(s name) → s` | method | `Done`: the download started (admins); `PullChanged` follows it |
//! | `PullChanged(s model, t done, t total, s state, s message)` | signal | a pull's bytes (total 0: unknown), `pulling`/`done`/`failed` |
//! | `RemoveModel(s name) → s` | method | `Done`: its worker stopped, its file removed (admins) |
//! | `Inference() → s` | method | `Inference`: each worker's tokens/s, queue and KV use over the last minutes |
//! | `RunArtifact(s id, s step, s name) → s` | method | `Artifact`: a file a step wrote (admins only) |
//! | `Summary` (s), `Version` (s) | properties | |

use std::sync::Arc;

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::Connection;

use aither_api::agentd as api;

use crate::daemon::{Daemon, Outcome};

pub use aither_api::agentd::{ADMIN_GROUP, BUS_NAME, OBJECT_PATH};

/// The served object.
#[derive(Debug)]
pub struct Api {
    pub daemon: Arc<Daemon>,
}

fn failed(e: impl std::fmt::Display) -> zbus::fdo::Error {
    zbus::fdo::Error::Failed(e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> zbus::fdo::Result<String> {
    serde_json::to_string_pretty(v).map_err(failed)
}

fn outcome(o: Outcome) -> zbus::fdo::Result<String> {
    json(&api::Done::new(o.map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?))
}

/// Whether `uid` may change things: root, the daemon's own user, or a member of
/// [`ADMIN_GROUP`].
pub fn may_change(uid: u32) -> bool {
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    let Ok(Some(admin)) = nix::unistd::Group::from_name(ADMIN_GROUP) else { return false };
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else { return false };
    if user.gid == admin.gid {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(user.name.clone()) else { return false };
    nix::unistd::getgrouplist(&name, user.gid).is_ok_and(|groups| groups.contains(&admin.gid))
}

async fn authorize(conn: &Connection, hdr: &Header<'_>, action: &str) -> zbus::fdo::Result<u32> {
    let sender = hdr.sender().ok_or_else(|| zbus::fdo::Error::AccessDenied("the caller has no bus name".into()))?;
    let dbus = zbus::fdo::DBusProxy::new(conn).await.map_err(failed)?;
    let uid = dbus.get_connection_unix_user(sender.clone().into()).await.map_err(failed)?;
    if may_change(uid) {
        Ok(uid)
    } else {
        tracing::warn!("uid {uid} ({sender}) may not {action}");
        Err(zbus::fdo::Error::AccessDenied(format!(
            "uid {uid} may not {action}: only root and members of {ADMIN_GROUP} may change agentd"
        )))
    }
}

#[zbus::interface(name = "org.aitheros.Agentd1")]
impl Api {
    async fn status(&self) -> zbus::fdo::Result<String> {
        let d = &self.daemon;
        let units = d.units().await.map_err(failed)?;
        let plan = d.plan().await;
        let queued = units.iter().filter(|u| u.state == api::UnitState::Queued).map(|u| u.name.clone()).collect();
        json(&api::Status {
            schema_version: api::SCHEMA_VERSION,
            summary: d.summary().await,
            preset: plan.preset,
            reason: plan.reason,
            agent_slots: d.agent_limit().await,
            queued,
            cgroups: d.cgroups.clone(),
            dev: d.opts.dev,
            gateway: d.gateway_info().await,
            units,
        })
    }

    async fn list_units(&self) -> zbus::fdo::Result<String> {
        let units = self.daemon.units().await.map_err(failed)?;
        json(&api::UnitList { schema_version: api::SCHEMA_VERSION, units })
    }

    async fn list_agents(&self) -> zbus::fdo::Result<String> {
        let units = self.daemon.units().await.map_err(failed)?;
        let units = units.into_iter().filter(|u| u.kind == api::UnitKind::Agent).collect();
        json(&api::UnitList { schema_version: api::SCHEMA_VERSION, units })
    }

    async fn get_unit(&self, name: String) -> zbus::fdo::Result<String> {
        let units = self.daemon.units().await.map_err(failed)?;
        let unit =
            units.into_iter().find(|u| u.name == name).ok_or_else(|| failed(format!("no unit named {name:?}")))?;
        json(&api::UnitReply { schema_version: api::SCHEMA_VERSION, unit })
    }

    async fn start(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("start {name}")).await?;
        outcome(self.daemon.start_unit(&name).await)
    }

    async fn stop(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("stop {name}")).await?;
        outcome(self.daemon.stop_unit(&name).await)
    }

    async fn restart(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("restart {name}")).await?;
        outcome(self.daemon.restart_unit(&name).await)
    }

    async fn run_agent(
        &self,
        manifest: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, "run an agent").await?;
        outcome(self.daemon.run_agent(&manifest).await)
    }

    async fn profile(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.profile().await)
    }

    async fn preset(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.preset().await)
    }

    async fn set_preset(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, "set the preset").await?;
        outcome(self.daemon.set_preset(&name).await)
    }

    async fn plan(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.plan().await)
    }

    async fn models(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.models().await.map_err(failed)?)
    }

    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, "reload").await?;
        outcome(self.daemon.reload().await)
    }

    async fn log_target(&self, name: String) -> zbus::fdo::Result<String> {
        let target = self.daemon.log_target(&name).await.map_err(failed)?;
        json(&api::LogTargetReply { schema_version: api::SCHEMA_VERSION, target })
    }

    async fn workflows(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.workflow_list().await)
    }

    async fn run_workflow(
        &self,
        name: String,
        inputs: std::collections::HashMap<String, String>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let uid = authorize(conn, &hdr, &format!("run the workflow {name}")).await?;
        let trigger = crate::daemon::Trigger { text: format!("manual ({})", who(uid)), unit: None };
        let run = self.daemon.run_workflow(&name, inputs.into_iter().collect(), trigger, true).await.map_err(failed)?;
        json(&aither_api::workflow::RunReply { schema_version: aither_api::workflow::SCHEMA_VERSION, run })
    }

    async fn enable_workflow(
        &self,
        name: String,
        on: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let what = format!("{} the workflow {name}", if on { "enable" } else { "disable" });
        authorize(conn, &hdr, &what).await?;
        outcome(self.daemon.enable_workflow(&name, on).await)
    }

    async fn runs(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.run_list().await)
    }

    async fn get_run(&self, id: String) -> zbus::fdo::Result<String> {
        let run = self.daemon.get_run(&id).await.map_err(failed)?;
        json(&aither_api::workflow::RunReply { schema_version: aither_api::workflow::SCHEMA_VERSION, run })
    }

    async fn cancel_run(
        &self,
        id: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("cancel the run {id}")).await?;
        outcome(self.daemon.cancel_run(&id).await)
    }

    async fn run_log(
        &self,
        id: String,
        step: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("read the transcript of {id}")).await?;
        self.daemon.run_log(&id, &step).await.map_err(failed)
    }

    async fn approvals(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.approval_list().await)
    }

    async fn approve(
        &self,
        id: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let uid = authorize(conn, &hdr, &format!("approve {id}")).await?;
        outcome(self.daemon.decide(&id, true, &who(uid)).await)
    }

    async fn deny(
        &self,
        id: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let uid = authorize(conn, &hdr, &format!("deny {id}")).await?;
        outcome(self.daemon.decide(&id, false, &who(uid)).await)
    }

    async fn pull_model(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("pull the model {name}")).await?;
        outcome(self.daemon.start_pull(&name).await)
    }

    async fn remove_model(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("remove the model {name}")).await?;
        outcome(self.daemon.remove_model(&name).await)
    }

    async fn inference(&self) -> zbus::fdo::Result<String> {
        let history = self.daemon.inference.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        json(&history.document(aither_sys::time::unix_now()))
    }

    async fn run_artifact(
        &self,
        id: String,
        step: String,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("read {name} of {id}")).await?;
        json(&self.daemon.run_artifact(&id, &step, &name).await.map_err(failed)?)
    }

    #[zbus(signal)]
    pub async fn pull_changed(
        emitter: &SignalEmitter<'_>,
        model: &str,
        done: u64,
        total: u64,
        state: &str,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn run_changed(emitter: &SignalEmitter<'_>, id: &str, state: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn approval_changed(emitter: &SignalEmitter<'_>, id: &str, state: &str, action: &str)
        -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn unit_changed(emitter: &SignalEmitter<'_>, name: &str, state: &str, detail: &str) -> zbus::Result<()>;

    #[zbus(property)]
    async fn summary(&self) -> String {
        self.daemon.summary().await
    }

    #[zbus(property)]
    async fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }
}

/// `uid 1000 (alice)`: who decided, for the audit.
fn who(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// How long a call may take before the caller gives up (a reload waits for nothing slow).
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connect to the system bus, or the session bus in dev mode (before anything is started,
/// so a missing bus fails early and leaves nothing behind).
pub async fn connect(session: bool) -> zbus::Result<Connection> {
    let builder = if session { zbus::connection::Builder::session()? } else { zbus::connection::Builder::system()? };
    builder.method_timeout(CALL_TIMEOUT).build().await
}

/// Serve the API and take the well-known name.
pub async fn serve(conn: &Connection, daemon: Arc<Daemon>) -> zbus::Result<()> {
    conn.object_server().at(OBJECT_PATH, Api { daemon }).await?;
    conn.request_name(BUS_NAME).await
}

/// systemd's manager, to tell a restart from a stop when SIGTERM comes.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Systemd {
    #[allow(clippy::type_complexity)]
    fn list_jobs(
        &self,
    ) -> zbus::Result<
        Vec<(u32, String, String, String, zbus::zvariant::OwnedObjectPath, zbus::zvariant::OwnedObjectPath)>,
    >;
}

/// Whether systemd has a restart of `unit` queued: then SIGTERM means "step aside and let the
/// next agentd adopt the units", not "stop everything".
pub async fn restart_pending(unit: &str) -> bool {
    let Ok(conn) = Connection::system().await else { return false };
    let Ok(proxy) = SystemdProxy::new(&conn).await else { return false };
    match proxy.list_jobs().await {
        Ok(jobs) => jobs.iter().any(|(_, u, kind, ..)| u == unit && kind.contains("restart")),
        Err(e) => {
            tracing::warn!("cannot list systemd's jobs: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_daemons_own_user_may_change_others_not() {
        assert!(may_change(0));
        assert!(may_change(nix::unistd::geteuid().as_raw()));
        // A uid with no passwd entry is in no group.
        assert!(!may_change(4_000_000_000));
    }
}
