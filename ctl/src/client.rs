//! Talking to agentd: the connection, the proxy, and what a failed call means.

use std::time::Duration;

use aither_api::agentd as api;

/// How long a call may take before aitherctl gives up (a reload waits for nothing slow).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the system bus, or the session bus.
async fn bus(session: bool) -> zbus::Result<zbus::Connection> {
    let builder = if session { zbus::connection::Builder::session()? } else { zbus::connection::Builder::system()? };
    builder.method_timeout(CALL_TIMEOUT).build().await
}

/// agentd's D-Bus interface, as a client sees it (agentd serves it in its `bus` module).
#[zbus::proxy(
    interface = "org.aitheros.Agentd1",
    default_service = "org.aitheros.Agentd1",
    default_path = "/org/aitheros/Agentd1"
)]
pub trait Agentd {
    fn status(&self) -> zbus::Result<String>;
    fn list_units(&self) -> zbus::Result<String>;
    fn list_agents(&self) -> zbus::Result<String>;
    fn get_unit(&self, name: &str) -> zbus::Result<String>;
    fn start(&self, name: &str) -> zbus::Result<String>;
    fn stop(&self, name: &str) -> zbus::Result<String>;
    fn restart(&self, name: &str) -> zbus::Result<String>;
    fn run_agent(&self, manifest: &str) -> zbus::Result<String>;
    fn profile(&self) -> zbus::Result<String>;
    fn preset(&self) -> zbus::Result<String>;
    fn set_preset(&self, name: &str) -> zbus::Result<String>;
    fn plan(&self) -> zbus::Result<String>;
    fn models(&self) -> zbus::Result<String>;
    fn reload(&self) -> zbus::Result<String>;
    fn log_target(&self, name: &str) -> zbus::Result<String>;
    fn workflows(&self) -> zbus::Result<String>;
    fn run_workflow(&self, name: &str, inputs: std::collections::HashMap<String, String>) -> zbus::Result<String>;
    fn enable_workflow(&self, name: &str, on: bool) -> zbus::Result<String>;
    fn runs(&self) -> zbus::Result<String>;
    fn get_run(&self, id: &str) -> zbus::Result<String>;
    fn cancel_run(&self, id: &str) -> zbus::Result<String>;
    fn run_log(&self, id: &str, step: &str) -> zbus::Result<String>;
    fn approvals(&self) -> zbus::Result<String>;
    fn approve(&self, id: &str) -> zbus::Result<String>;
    fn deny(&self, id: &str) -> zbus::Result<String>;
    fn remove_model(&self, name: &str) -> zbus::Result<String>;
    fn inference(&self) -> zbus::Result<String>;
    fn run_artifact(&self, id: &str, step: &str, name: &str) -> zbus::Result<String>;
    fn record_eval(&self, report: &str) -> zbus::Result<String>;
    fn eval_results(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn unit_changed(&self, name: String, state: String, detail: String) -> zbus::Result<()>;
    #[zbus(property)]
    fn summary(&self) -> zbus::Result<String>;
}

/// Why a call failed, as aitherctl reports it.
#[derive(Debug)]
pub enum CallError {
    NotRunning(String),
    Denied(String),
    Failed(String),
}

pub fn classify(e: zbus::Error, session: bool) -> CallError {
    let not_running = |detail: String| {
        let how = if session {
            "start one with `agentd --dev` (or `make run`)"
        } else {
            "start it with `systemctl start agentd`; `journalctl -u agentd` says why it stopped"
        };
        CallError::NotRunning(format!("agentd is not running ({detail}): {how}"))
    };
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            let text = msg.unwrap_or_default();
            match name.as_str() {
                "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
                    not_running("no owner of org.aitheros.Agentd1".into())
                }
                "org.freedesktop.DBus.Error.AccessDenied" => CallError::Denied(text),
                _ => CallError::Failed(text),
            }
        }
        zbus::Error::FDO(e) => match *e {
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                not_running("no owner of org.aitheros.Agentd1".into())
            }
            zbus::fdo::Error::AccessDenied(m) => CallError::Denied(m),
            zbus::fdo::Error::Failed(m) => CallError::Failed(m),
            other => CallError::Failed(other.to_string()),
        },
        zbus::Error::InputOutput(e) if e.kind() == std::io::ErrorKind::TimedOut => CallError::Failed(format!(
            "agentd did not answer within {} s (`journalctl -u agentd` may say why)",
            CALL_TIMEOUT.as_secs()
        )),
        zbus::Error::InputOutput(e) => not_running(format!("cannot reach {e}")),
        zbus::Error::Address(e) => not_running(format!("no bus address: {e}")),
        other => CallError::Failed(other.to_string()),
    }
}

/// Whether agentd owns its name on `conn`'s bus.
async fn agentd_on(conn: &zbus::Connection) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(conn).await else { return false };
    let Ok(name) = zbus::names::BusName::try_from(api::BUS_NAME) else { return false };
    dbus.name_has_owner(name).await.unwrap_or(false)
}

/// The bus agentd answers on: the session bus with `--session`; otherwise the system bus,
/// or, when no agentd answers there, a development agentd on the session bus (said on
/// stderr). Returns the connection and whether it is the session bus.
pub async fn connect(session: bool) -> Result<(zbus::Connection, bool), CallError> {
    let fail = |e: zbus::Error, session: bool| {
        let bus = if session { "session" } else { "system" };
        classify(
            zbus::Error::InputOutput(std::sync::Arc::new(std::io::Error::other(format!("the {bus} bus: {e}")))),
            session,
        )
    };
    if session {
        return bus(true).await.map(|c| (c, true)).map_err(|e| fail(e, true));
    }
    let system = bus(false).await;
    if let Ok(c) = &system {
        if agentd_on(c).await {
            return Ok((c.clone(), false));
        }
    }
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        if let Ok(c) = bus(true).await {
            if agentd_on(&c).await {
                eprintln!(
                    "aitherctl: no agentd on the system bus; talking to the development agentd on the session bus"
                );
                return Ok((c, true));
            }
        }
    }
    system.map(|c| (c, false)).map_err(|e| fail(e, false))
}
