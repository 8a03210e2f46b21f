//! `agentd`'s main: logging, the daemon, the bus, systemd's notify protocol, signals.
//!
//! - `READY=1` once the bus name is taken and the first group (`core`) has settled;
//!   `STATUS=` the one-line summary, kept current; `WATCHDOG=1` at half of `WatchdogSec=`
//!   for as long as the engine answers; `STOPPING=1` when it stops.
//! - SIGTERM / SIGINT: stop every unit gracefully, highest priority number first. When
//!   systemd has a restart of agentd queued, agentd instead steps aside and leaves the units
//!   running for the next agentd to adopt. SIGHUP: reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

use aither_sys::notify::{self as sd, Notifier};

use crate::bus::{self, Api};
use crate::daemon::{self, Daemon, Options};
use crate::gateway::Gateway;

/// Exit status for a configuration error (`EX_CONFIG`, sysexits.h): systemd does not
/// restart-loop it (`RestartPreventExitStatus=78`).
pub const EXIT_CONFIG: i32 = 78;

#[derive(Debug, Parser)]
#[command(name = "agentd", version, about = "The AitherOS appliance daemon")]
pub struct Args {
    /// Development mode: an ordinary user, no systemd, SELinux or cgroups, the session bus,
    /// state under $XDG_RUNTIME_DIR/aither.
    #[arg(long)]
    pub dev: bool,
    /// Configuration root (the appliance's is /).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Hardware profile to use instead of /run/aither/hwprofile.json or detection.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Turn off the controllers of agentd's delegated cgroup CGROUP and exit
    /// (`aither-agentd-prepare.service`, before every start of agentd), so systemd can start
    /// agentd again while the units of a crashed agentd still run there.
    #[arg(long, hide = true, value_name = "CGROUP")]
    pub release_cgroups: Option<PathBuf>,
}

/// `--release-cgroups`: see [`Args::release_cgroups`].
fn release_cgroups(dir: &std::path::Path) -> i32 {
    let cg = match aither_init::cgroup::Cgroups::at(dir.to_path_buf()) {
        Ok(cg) => cg,
        Err(why) => {
            // Not there yet (first start) or not delegated: nothing to release.
            eprintln!("agentd --release-cgroups: {why}");
            return 0;
        }
    };
    match cg.release() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("agentd --release-cgroups: {}: {e}", cg.root().display());
            1
        }
    }
}

fn init_logging(dev: bool) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journal = (!dev && std::env::var_os("JOURNAL_STREAM").is_some())
        .then(|| tracing_journald::layer().ok())
        .flatten()
        .map(|l| l.with_syslog_identifier("agentd".into()));
    if let Some(journal) = journal {
        tracing_subscriber::registry().with(filter).with(journal).init();
    } else {
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        tracing_subscriber::registry().with(filter).with(fmt).init();
    }
}

/// The systemd unit agentd runs in, from its cgroup (`0::/system.slice/agentd.service/...`).
fn own_unit() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
    path.split('/').find(|c| c.ends_with(".service")).map(str::to_string)
}

/// Run agentd; returns the exit status.
pub fn main(args: Args) -> i32 {
    if let Some(dir) = &args.release_cgroups {
        return release_cgroups(dir);
    }
    init_logging(args.dev);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => 0,
        Err(e) => {
            let config_error = e.chain().any(|c| {
                c.is::<crate::config::ConfigError>()
                    || c.is::<crate::agents::AgentError>()
                    || c.is::<crate::services::ServiceError>()
                    || c.is::<crate::units::UnitsError>()
            });
            tracing::error!("{e:#}");
            eprintln!("agentd: {e:#}");
            if config_error {
                EXIT_CONFIG
            } else {
                1
            }
        }
    }
}

/// Descriptors agentd keeps for itself whatever the gateway does: supervision (a pidfd, a
/// notify socket and log streams per unit), D-Bus, the journal, the state file.
const FD_RESERVE_BASE: u64 = 256;
const FD_RESERVE_PER_UNIT: u64 = 8;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("cannot raise the descriptor limit from {soft} to {hard}: {e}");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!("cannot read the descriptor limit: {e}");
            1024
        }
    }
}

/// The gateway's connection cap per listener within the descriptors left after the reserve
/// (a proxied connection holds two: the client's and the worker's).
fn connection_cap(configured: usize, listeners: usize, units: usize) -> usize {
    let limit = raise_nofile();
    let reserve = FD_RESERVE_BASE + FD_RESERVE_PER_UNIT * u64::try_from(units).unwrap_or(u64::MAX / 16);
    let per_listener = 2 * u64::try_from(listeners.max(1)).unwrap_or(1);
    let fits = usize::try_from(limit.saturating_sub(reserve) / per_listener).unwrap_or(usize::MAX).max(1);
    if configured > fits {
        tracing::warn!(
            "gateway.max_connections {configured} lowered to {fits} per listener: the descriptor limit is {limit} \
             and {reserve} are kept for supervising {units} units (raise LimitNOFILE= to allow more)"
        );
        fits
    } else {
        configured
    }
}

/// The group the gateway's Unix socket is handed to; `None` in development mode.
fn socket_group(settings: &crate::config::Settings, dev: bool) -> Result<Option<u32>> {
    let Some(name) = settings.gateway_socket_group.as_deref().filter(|_| !dev) else { return Ok(None) };
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(Some(g.gid.as_raw())),
        Ok(None) => Err(crate::config::ConfigError::Invalid {
            file: "(merged configuration)".into(),
            key: "gateway.socket_group".into(),
            problem: format!("the group {name:?} does not exist (sysusers.d/aitheros.conf creates aither-agent)"),
        }
        .into()),
        Err(e) => anyhow::bail!("gateway.socket_group: cannot look up {name:?}: {e}"),
    }
}

fn dev_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("aither"),
        None => std::env::temp_dir().join(format!("aither-{}", nix::unistd::getuid())),
    }
}

async fn serve(args: Args) -> Result<()> {
    let notifier = Notifier::from_env();
    let opts = Options {
        root: args.root,
        dev: args.dev,
        profile: args.profile,
        dev_runtime_dir: args.dev.then(dev_runtime_dir),
    };
    let dev = opts.dev;
    let bus_name =
        if dev { "the session bus (is DBUS_SESSION_BUS_ADDRESS set? `make run` starts one)" } else { "the system bus" };
    let conn = bus::connect(dev).await.with_context(|| format!("cannot connect to {bus_name}"))?;
    let daemon = Daemon::start(opts).await?;
    if let Err(e) = bus::serve(&conn, daemon.clone()).await {
        daemon.sup.shutdown().await?;
        return Err(e).with_context(|| format!("cannot serve {} on {bus_name}", bus::BUS_NAME));
    }
    let settings = daemon.settings().await;
    tracing::info!(
        "agentd {} ({} mode): configuration from {}; {}",
        env!("CARGO_PKG_VERSION"),
        if dev { "development" } else { "system" },
        settings.sources.join(", "),
        daemon.cgroups
    );
    tokio::spawn(forward_events(daemon.clone(), conn.clone()));
    tokio::spawn(forward_api_events(daemon.clone(), conn.clone()));
    tokio::spawn(crate::inference::sample_forever(daemon.clone()));
    {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(daemon::WORKFLOW_TICK);
            loop {
                tick.tick().await;
                daemon.workflow_tick().await;
            }
        });
    }
    {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(daemon::STEP_DEADLINE_TICK);
            loop {
                tick.tick().await;
                daemon.stop_overdue_steps().await;
                daemon.bound_workspaces().await;
            }
        });
    }
    let gateway = Gateway::new(daemon.clone());
    let mut settings = settings;
    let units = daemon.units().await.map(|u| u.len()).unwrap_or(0);
    settings.gateway_limits.max_connections =
        connection_cap(settings.gateway_limits.max_connections, settings.gateway_listen.len(), units);
    let listening = match socket_group(&settings, dev) {
        Ok(gid) => gateway.listen(&settings, gid).await,
        Err(e) => Err(e),
    };
    if let Err(e) = listening {
        daemon.sup.shutdown().await?;
        return Err(e);
    }

    // Ready once the core group has settled (bounded: a broken core unit is reported, not waited on).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !daemon.core_settled().await && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = daemon.summary().await;
    notifier.notify(&format!("READY=1\nSTATUS={summary}"));
    tracing::info!("ready: {summary}");
    if dev {
        tracing::info!("talk to it with: aitherctl --session status");
    }
    if let Some(interval) = sd::watchdog_interval() {
        tokio::spawn(watchdog(daemon.clone(), conn.clone(), interval));
    }

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match daemon.reload().await {
                Ok(changes) => tracing::info!("SIGHUP: {changes}"),
                Err(e) => tracing::error!("SIGHUP: reload refused: {e}"),
            },
        }
    }
    gateway.close();
    let restart = match own_unit() {
        Some(unit) if notifier.enabled() => bus::restart_pending(&unit).await,
        _ => false,
    };
    if restart {
        notifier.notify("STOPPING=1\nSTATUS=restarting: units left running for the next agentd");
        tracing::info!("systemd is restarting agentd: leaving the units running for the next agentd to adopt");
        daemon.sup.detach().await?;
    } else {
        notifier.notify("STOPPING=1\nSTATUS=stopping every unit");
        tracing::info!("stopping every unit");
        daemon.sup.shutdown().await?;
        tracing::info!("every unit stopped");
    }
    Ok(())
}

/// Engine events: admission, the D-Bus signal, systemd's STATUS line.
async fn forward_events(daemon: Arc<Daemon>, conn: zbus::Connection) {
    let status_due = Arc::new(tokio::sync::Notify::new());
    if Notifier::from_env().enabled() {
        tokio::spawn(status_line(daemon.clone(), status_due.clone()));
    }
    let mut rx = daemon.events();
    let emitter = zbus::object_server::SignalEmitter::new(&conn, bus::OBJECT_PATH).ok();
    loop {
        let e = match rx.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("{n} unit events were missed");
                continue;
            }
            Err(_) => return,
        };
        daemon.on_event(&e.unit, &e.state).await;
        let detail = match &e.state {
            aither_init::UnitState::Exited { reason }
            | aither_init::UnitState::Failed { reason }
            | aither_init::UnitState::GaveUp { reason }
            | aither_init::UnitState::Backoff { reason, .. } => daemon::reason_text(reason),
            s => s.pid().map(|p| format!("pid {p}")).unwrap_or_default(),
        };
        let state = daemon::api_state(&e.state).name();
        match &e.state {
            aither_init::UnitState::Failed { .. } | aither_init::UnitState::GaveUp { .. } => {
                tracing::warn!("{}: {state}: {detail}", e.unit);
            }
            _ => tracing::info!("{}: {state} {detail}", e.unit),
        }
        if let Some(emitter) = &emitter {
            let _ = Api::unit_changed(emitter, &e.unit, state, &detail).await;
        }
        status_due.notify_one();
    }
}

/// Runs, proposals and model pulls as D-Bus signals.
async fn forward_api_events(daemon: Arc<Daemon>, conn: zbus::Connection) {
    let mut rx = daemon.api_events.subscribe();
    let Ok(emitter) = zbus::object_server::SignalEmitter::new(&conn, bus::OBJECT_PATH) else { return };
    loop {
        match rx.recv().await {
            Ok(daemon::ApiEvent::Run { id, state }) => {
                let _ = Api::run_changed(&emitter, &id, &state).await;
            }
            Ok(daemon::ApiEvent::Approval { id, state, action }) => {
                let _ = Api::approval_changed(&emitter, &id, &state, &action).await;
            }
            Ok(daemon::ApiEvent::Pull { model, done, total, state, message }) => {
                let _ = Api::pull_changed(&emitter, &model, done, total, &state, &message).await;
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}

/// systemd's `STATUS=` line, rebuilt once per burst of events rather than for each one (a
/// thousand units starting would otherwise ask the engine for every unit's state a thousand
/// times).
async fn status_line(daemon: Arc<Daemon>, due: Arc<tokio::sync::Notify>) {
    let notifier = Notifier::from_env();
    loop {
        due.notified().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        notifier.notify(&format!("STATUS={}", daemon.summary().await));
    }
}

/// Keep-alives while the engine answers; a hung engine stops them and systemd restarts agentd.
async fn watchdog(daemon: Arc<Daemon>, conn: zbus::Connection, interval: Duration) {
    let notifier = Notifier::from_env();
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        match tokio::time::timeout(interval / 4, alive(&daemon, &conn)).await {
            Ok(Ok(())) => {
                notifier.notify("WATCHDOG=1");
            }
            Ok(Err(what)) => tracing::error!("{what}: no watchdog keep-alive"),
            Err(_) => tracing::error!(
                "the engine, the daemon's state or its D-Bus side did not answer within {:?}: no watchdog keep-alive",
                interval / 4
            ),
        }
    }
}

/// Whether every part that answers callers answers: the engine, the daemon's state lock, and
/// the D-Bus side (a ping through the bus to agentd's own name, answered by its object server).
async fn alive(daemon: &Daemon, conn: &zbus::Connection) -> Result<(), String> {
    daemon.sup.status().await.map_err(|e| format!("the engine: {e}"))?;
    daemon.agent_limit().await;
    conn.call_method(Some(bus::BUS_NAME), bus::OBJECT_PATH, Some("org.freedesktop.DBus.Peer"), "Ping", &())
        .await
        .map_err(|e| format!("the D-Bus side: {e}"))?;
    Ok(())
}
