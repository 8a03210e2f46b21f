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
//! Each member's documentation is its doc comment below, which zbus puts into the
//! introspection data; the manual's D-Bus reference is generated from that (`make docs`).

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

/// Whether the caller may change agentd (and so read what runs' models wrote).
async fn caller_is_admin(conn: &Connection, hdr: &Header<'_>) -> bool {
    let Some(sender) = hdr.sender() else { return false };
    let Ok(dbus) = zbus::fdo::DBusProxy::new(conn).await else { return false };
    dbus.get_connection_unix_user(sender.clone().into()).await.is_ok_and(may_change)
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
    /// The appliance at a glance: summary, preset and its reason, agent slots, the admission queue,
    /// cgroup limits, the gateway, every unit. Reply: `Status` (agentd-status.schema.json).
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
            selinux: d.confinement(),
            gateway: d.gateway_info().await,
            units,
        })
    }

    /// Every unit: inference workers, services, agents and workflow steps. Reply: `UnitList`
    /// (agentd-units.schema.json).
    async fn list_units(&self) -> zbus::fdo::Result<String> {
        let units = self.daemon.units().await.map_err(failed)?;
        json(&api::UnitList { schema_version: api::SCHEMA_VERSION, units })
    }

    /// The agents only. Reply: `UnitList` (agentd-units.schema.json).
    async fn list_agents(&self) -> zbus::fdo::Result<String> {
        let units = self.daemon.units().await.map_err(failed)?;
        let units = units.into_iter().filter(|u| u.kind == api::UnitKind::Agent).collect();
        json(&api::UnitList { schema_version: api::SCHEMA_VERSION, units })
    }

    /// One unit in full. Reply: `UnitReply` (agentd-unit.schema.json); an unknown name is an error.
    async fn get_unit(&self, name: String) -> zbus::fdo::Result<String> {
        let units = self.daemon.units().await.map_err(failed)?;
        let unit =
            units.into_iter().find(|u| u.name == name).ok_or_else(|| failed(format!("no unit named {name:?}")))?;
        json(&api::UnitReply { schema_version: api::SCHEMA_VERSION, unit })
    }

    /// Start a unit (admins). Reply: `Done` (agentd-done.schema.json): what was done, in words.
    async fn start(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("start {name}")).await?;
        outcome(self.daemon.start_unit(&name).await)
    }

    /// Stop a unit (admins). Reply: `Done`.
    async fn stop(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("stop {name}")).await?;
        outcome(self.daemon.stop_unit(&name).await)
    }

    /// Restart a unit (admins). Reply: `Done`.
    async fn restart(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("restart {name}")).await?;
        outcome(self.daemon.restart_unit(&name).await)
    }

    /// Run an agent from a manifest given as TOML text, kept until reboot (admins). Reply: `Done`.
    async fn run_agent(
        &self,
        manifest: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, "run an agent").await?;
        outcome(self.daemon.run_agent(&manifest).await)
    }

    /// The hardware profile agentd planned with. Reply: `Profile` (profile.schema.json).
    async fn profile(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.profile().await)
    }

    /// The preset in force, why, and whether it is pinned. Reply: `PresetReply`
    /// (agentd-preset.schema.json).
    async fn preset(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.preset().await)
    }

    /// Pin a preset (`auto` unpins) and plan again (admins). Reply: `Done`.
    async fn set_preset(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, "set the preset").await?;
        outcome(self.daemon.set_preset(&name).await)
    }

    /// The plan: models, their fit, groups, memory tiers, limits. Reply: `Plan` (plan.schema.json).
    async fn plan(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.plan().await)
    }

    /// The plan's models, their files (present, missing, verified) and their workers. Reply:
    /// `Models` (agentd-models.schema.json).
    async fn models(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.models().await.map_err(failed)?)
    }

    /// Read the configuration, manifests and workflows again; a bad file is refused with its name
    /// and key and nothing changes (admins). Reply: `Done`.
    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, "reload").await?;
        outcome(self.daemon.reload().await)
    }

    /// Where a unit's output goes: the journal identifier or the log file. Reply: `LogTargetReply`
    /// (agentd-log-target.schema.json).
    async fn log_target(&self, name: String) -> zbus::fdo::Result<String> {
        let target = self.daemon.log_target(&name).await.map_err(failed)?;
        json(&api::LogTargetReply { schema_version: api::SCHEMA_VERSION, target })
    }

    /// The workflow definitions, whether each is on, and the files refused with why. Reply:
    /// `WorkflowList` (workflows.schema.json).
    async fn workflows(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.workflow_list().await)
    }

    /// Start a run of a workflow with its inputs, each checked against the workflow's declared
    /// inputs (admins). Reply: `RunReply` (workflow-run.schema.json).
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

    /// Turn a workflow on or off, written to /etc/aither/workflows-enabled.toml (admins). Reply:
    /// `Done`.
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

    /// Every run, newest first. Reply: `RunList` (workflow-runs.schema.json). Callers outside
    /// aither-admin see names, states and costs, not what the models wrote or were given.
    async fn runs(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let mut list = self.daemon.run_list().await;
        if !caller_is_admin(conn, &hdr).await {
            list.runs = list.runs.into_iter().map(aither_api::workflow::Run::for_viewers).collect();
        }
        json(&list)
    }

    /// One run: its steps, outcomes, costs and proposals. Reply: `RunReply`
    /// (workflow-run.schema.json); for callers outside aither-admin as `Runs` gives it.
    async fn get_run(
        &self,
        id: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let mut run = self.daemon.get_run(&id).await.map_err(failed)?;
        if !caller_is_admin(conn, &hdr).await {
            run = run.for_viewers();
        }
        json(&aither_api::workflow::RunReply { schema_version: aither_api::workflow::SCHEMA_VERSION, run })
    }

    /// Cancel a run: its running step is stopped, its pending proposals withdrawn (admins). Reply:
    /// `Done`.
    async fn cancel_run(
        &self,
        id: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("cancel the run {id}")).await?;
        outcome(self.daemon.cancel_run(&id).await)
    }

    /// A step's transcript: what the model said and did, as JSON lines (admins).
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

    /// The proposals, pending first. Reply: `ApprovalList` (workflow-approvals.schema.json);
    /// callers outside aither-admin see the actions and states, not the reasons or content.
    async fn approvals(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let mut list = self.daemon.approval_list().await;
        if !caller_is_admin(conn, &hdr).await {
            list.approvals = list.approvals.into_iter().map(aither_api::workflow::Approval::for_viewers).collect();
        }
        json(&list)
    }

    /// Approve a pending proposal: agentd carries it out and audits it (admins). Reply: `Done`:
    /// what was carried out, or why not.
    async fn approve(
        &self,
        id: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let uid = authorize(conn, &hdr, &format!("approve {id}")).await?;
        outcome(self.daemon.decide(&id, true, &who(uid)).await)
    }

    /// Deny a pending proposal, audited (admins). Reply: `Done`.
    async fn deny(
        &self,
        id: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let uid = authorize(conn, &hdr, &format!("deny {id}")).await?;
        outcome(self.daemon.decide(&id, false, &who(uid)).await)
    }

    /// Download a catalog model in the background (admins); `PullChanged` follows it. Reply:
    /// `Done`: the download started.
    async fn pull_model(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("pull the model {name}")).await?;
        outcome(self.daemon.start_pull(&name).await)
    }

    /// Stop a model's worker and remove its file, its partial download and its checksum record
    /// (admins). Reply: `Done`.
    async fn remove_model(
        &self,
        name: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, &format!("remove the model {name}")).await?;
        outcome(self.daemon.remove_model(&name).await)
    }

    /// Each worker's tokens per second, queue, busy slots and KV cache use, sampled every 5 s over
    /// the last ten minutes. Reply: `Inference` (agentd-inference.schema.json).
    async fn inference(&self) -> zbus::fdo::Result<String> {
        let history = self.daemon.inference.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        json(&history.document(aither_sys::time::unix_now()))
    }

    /// A file a step wrote and kept (admins). Reply: `Artifact` (workflow-artifact.schema.json).
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

    /// Keep an eval report (`aitherctl eval`) as its model's latest, for the Cockpit page
    /// (admins). Reply: `Done`.
    async fn record_eval(
        &self,
        report: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(conn, &hdr, "record an eval").await?;
        outcome(self.daemon.record_eval(&report).await)
    }

    /// The latest eval report of each model. Reply: `EvalResults`
    /// (eval-results.schema.json).
    async fn eval_results(&self) -> zbus::fdo::Result<String> {
        json(&self.daemon.eval_results().await)
    }

    /// A pull's progress: bytes done and total (0: unknown), `pulling`, `done` or `failed`, and a
    /// message.
    #[zbus(signal)]
    pub async fn pull_changed(
        emitter: &SignalEmitter<'_>,
        model: &str,
        done: u64,
        total: u64,
        state: &str,
        message: &str,
    ) -> zbus::Result<()>;

    /// A run changed state (`RunState` names).
    #[zbus(signal)]
    pub async fn run_changed(emitter: &SignalEmitter<'_>, id: &str, state: &str) -> zbus::Result<()>;

    /// A proposal was queued or decided: its state and the action.
    #[zbus(signal)]
    pub async fn approval_changed(emitter: &SignalEmitter<'_>, id: &str, state: &str, action: &str)
        -> zbus::Result<()>;

    /// A unit changed state (`UnitState` names), with the detail shown beside it.
    #[zbus(signal)]
    pub async fn unit_changed(emitter: &SignalEmitter<'_>, name: &str, state: &str, detail: &str) -> zbus::Result<()>;

    /// The one-line summary agentd also gives systemd as `STATUS=`.
    #[zbus(property)]
    async fn summary(&self) -> String {
        self.daemon.summary().await
    }

    /// agentd's version.
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
