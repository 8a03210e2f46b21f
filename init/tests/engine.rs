//! The supervision engine with real processes: readiness, crash loops, orphans, stop
//! escalation, ordering, socket activation and re-adoption. cgroup behaviour needs a
//! delegated cgroup v2 subtree and is tested in the VM test bed.

use std::path::Path;
use std::time::Duration;

use aither_init::unit::{Listen, Readiness};
use aither_init::{Backoff, Config, ExitReason, RestartMode, Supervisor, UnitSpec, UnitState};
mod common;
use common::until;

fn config(dir: &Path) -> Config {
    Config {
        runtime_dir: dir.to_path_buf(),
        state_file: Some(dir.join("state.json")),
        subreaper: true,
        adopt: false,
        cgroups: Err(aither_init::cgroup::Unavailable::NotDelegated(dir.to_path_buf())),
        host: aither_init::HostPaths::default(),
    }
}

fn sh(name: &str, script: &str) -> UnitSpec {
    UnitSpec::new(name, &["sh", "-c", script])
}

/// An engine with the one unit `unit`, started and running; its events from then on.
async fn running(
    dir: &Path,
    unit: UnitSpec,
) -> (Supervisor, tokio::task::JoinHandle<()>, tokio::sync::broadcast::Receiver<aither_init::Event>) {
    let name = unit.name.clone();
    let (sup, task) = Supervisor::spawn(config(dir), vec![unit]).expect("engine");
    let mut rx = sup.subscribe();
    sup.start_all().await.expect("start");
    until(&mut rx, &name, 5, |s| matches!(s, UnitState::Running { .. })).await;
    (sup, task, rx)
}

const NOTIFY: &str = r#"
import os, socket, time
time.sleep(0.2)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'STATUS=warming up', os.environ['NOTIFY_SOCKET'])
s.sendto(b'READY=1\nSTATUS=serving', os.environ['NOTIFY_SOCKET'])
time.sleep(100)
"#;

#[tokio::test]
async fn notify_readiness_waits_for_ready_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut unit = UnitSpec::new("notifier", &["python3", "-c", NOTIFY]);
    unit.readiness = Readiness::Notify;
    let (sup, _task) = Supervisor::spawn(config(dir.path()), vec![unit]).expect("engine");
    let mut rx = sup.subscribe();
    sup.start_all().await.expect("start");
    let starting = until(&mut rx, "notifier", 5, |s| matches!(s, UnitState::Starting { .. })).await;
    let running = until(&mut rx, "notifier", 10, |s| matches!(s, UnitState::Running { .. })).await;
    assert_eq!(starting.state.pid(), running.state.pid());
    let status = sup.status().await.expect("status");
    assert_eq!(status[0].status.as_deref(), Some("serving"));
    sup.shutdown().await.expect("shutdown");
}

/// Waits for `$GO` to appear, then says its own status.
const WAIT_THEN_STATUS: &str = r#"
import os, socket, time
while not os.path.exists(os.environ['GO']):
    time.sleep(0.02)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'STATUS=own words', os.environ['NOTIFY_SOCKET'])
time.sleep(100)
"#;

/// Another unit of the same user writes to the target's notify socket, then creates `$GO`.
const FORGE: &str = r#"
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'READY=1\nSTATUS=forged', os.environ['TARGET'])
open(os.environ['GO'], 'w').close()
"#;

#[tokio::test]
async fn only_a_units_own_processes_may_notify_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go").display().to_string();
    let mut target = UnitSpec::new("target", &["python3", "-c", WAIT_THEN_STATUS]);
    target.readiness = Readiness::Notify;
    target.ready_timeout = Duration::from_secs(60);
    target.env.push(("GO".into(), go.clone()));
    let mut forger = UnitSpec::new("forger", &["python3", "-c", FORGE]);
    forger.restart = RestartMode::Never;
    forger.env.push(("GO".into(), go));
    forger.env.push(("TARGET".into(), dir.path().join("notify/target").display().to_string()));
    let (sup, _task) = Supervisor::spawn(config(dir.path()), vec![target, forger]).expect("engine");
    let mut rx = sup.subscribe();
    sup.start("target").await.expect("start target");
    until(&mut rx, "target", 5, |s| matches!(s, UnitState::Starting { .. })).await;
    sup.start("forger").await.expect("start forger");
    // The target's own message comes after the forged one on the same socket: once it is
    // in, the forged one has been judged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = sup.status().await.expect("status");
        let t = status.iter().find(|u| u.name == "target").expect("target");
        if t.status.as_deref() == Some("own words") {
            assert!(matches!(t.state, UnitState::Starting { .. }), "READY=1 from another unit was taken: {t:?}");
            break;
        }
        assert_ne!(t.status.as_deref(), Some("forged"), "another unit's STATUS was taken");
        assert!(tokio::time::Instant::now() < deadline, "the target's own status never arrived: {t:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_crash_loop_backs_off_doubling_then_gives_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut unit = sh("crasher", "exit 3");
    unit.backoff = Backoff {
        step: Duration::from_millis(20),
        burst: 5,
        burst_window: Duration::from_secs(60),
        ..Backoff::default()
    };
    let (sup, _task) = Supervisor::spawn(config(dir.path()), vec![unit]).expect("engine");
    let mut rx = sup.subscribe();
    sup.start_all().await.expect("start");
    let mut delays = vec![];
    let gave_up = loop {
        let e =
            until(&mut rx, "crasher", 10, |s| matches!(s, UnitState::Backoff { .. } | UnitState::GaveUp { .. })).await;
        match e.state {
            UnitState::Backoff { delay_ms, reason } => {
                assert_eq!(reason, ExitReason::Code { code: 3 });
                delays.push(delay_ms);
            }
            other => break other,
        }
    };
    // The first restart is immediate (no Backoff state), then 20, 40, 80, 160 ms.
    assert_eq!(delays, vec![20, 40, 80, 160]);
    assert_eq!(gave_up, UnitState::GaveUp { reason: ExitReason::Code { code: 3 } });
    sup.shutdown().await.expect("shutdown");
}

fn zombies_of(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let Some((_, rest)) = stat.rsplit_once(')') else { return false };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.first() == Some(&"Z") && f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
        })
        .count()
}

#[tokio::test]
async fn zero_zombies_after_a_fork_exit_storm_of_orphans() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 300 grandchildren whose parent exits at once: they are reparented to the engine.
    let storm = sh("storm", "for i in $(seq 300); do (sh -c 'sleep 0.2' &); done; exec sleep 100");
    let (sup, _task, _rx) = running(dir.path(), storm).await;
    let me = std::process::id();
    let mut left = usize::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = zombies_of(me);
        let orphans_alive = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path().join("cmdline")).ok())
            .filter(|c| c.contains("sleep 0.2"))
            .count();
        if left == 0 && orphans_alive == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "zombies left with the engine as parent");
    sup.shutdown().await.expect("shutdown");
}

/// The engine reaps every exited child it does not track; a program the daemon runs itself
/// (`aither_sys::command::run`: journalctl, semodule) is tracked, so its status is its own
/// even while orphans keep the reaper busy (untracked, `wait` would find it gone: ECHILD).
#[tokio::test]
async fn programs_the_daemon_runs_keep_their_status_while_the_reaper_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Orphans for some seconds (bounded: a failed test leaves nothing running for long).
    let storm = sh("storm", "for i in $(seq 2000); do (sh -c 'exit 0' &); sleep 0.002; done");
    let (sup, _task, _rx) = running(dir.path(), storm).await;
    let failed = tokio::task::spawn_blocking(|| {
        (0..300)
            .filter_map(|_| aither_sys::command::run(&mut std::process::Command::new("true")).err())
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    })
    .await
    .expect("runs");
    assert!(failed.is_empty(), "{} of 300 runs lost their status: {:?}", failed.len(), failed.first());
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn stop_escalates_from_sigterm_to_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ready only once SIGTERM is ignored, so the stop cannot race the handler.
    let script = "import os, signal, socket, time\n\
                  signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
                  socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n\
                  time.sleep(100)\n";
    let mut stubborn = UnitSpec::new("stubborn", &["python3", "-c", script]);
    stubborn.readiness = Readiness::Notify;
    stubborn.stop_timeout = Duration::from_millis(300);
    let mut polite = sh("polite", "exec sleep 100");
    polite.stop_timeout = Duration::from_secs(30);
    let (sup, _task) = Supervisor::spawn(config(dir.path()), vec![stubborn, polite]).expect("engine");
    let (mut rx, mut rx_polite) = (sup.subscribe(), sup.subscribe());
    sup.start_all().await.expect("start");
    until(&mut rx, "stubborn", 5, |s| matches!(s, UnitState::Running { .. })).await;
    until(&mut rx_polite, "polite", 5, |s| matches!(s, UnitState::Running { .. })).await;
    let t = std::time::Instant::now();
    sup.stop("stubborn").await.expect("stop");
    let e = until(&mut rx, "stubborn", 5, |s| matches!(s, UnitState::Exited { .. })).await;
    assert_eq!(e.state, UnitState::Exited { reason: ExitReason::Signal { signal: 9 } });
    assert!(t.elapsed() >= Duration::from_millis(300), "SIGKILL only after the stop timeout");
    sup.stop("polite").await.expect("stop");
    let e = until(&mut rx_polite, "polite", 5, |s| matches!(s, UnitState::Exited { .. })).await;
    assert_eq!(e.state, UnitState::Exited { reason: ExitReason::Signal { signal: 15 } });
    until(&mut rx_polite, "polite", 5, |s| *s == UnitState::Inactive).await;
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn groups_start_in_priority_order_then_dependencies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = sh("core", "exec sleep 100");
    core.priority = 0;
    let mut db = UnitSpec::new("db", &["python3", "-c", NOTIFY]);
    db.priority = 20;
    db.readiness = Readiness::Notify;
    let mut app = sh("app", "exec sleep 100");
    app.priority = 20;
    app.requires = vec!["db".into()];
    let mut web = sh("web", "exec sleep 100");
    web.priority = 20;
    let mut agents = sh("agents", "exec sleep 100");
    agents.priority = 30;
    let (sup, _task) = Supervisor::spawn(config(dir.path()), vec![agents, app, core, db, web]).expect("engine");
    let mut rx = sup.subscribe();
    sup.start_all().await.expect("start");
    let mut running = vec![];
    while running.len() < 5 {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("in time").expect("event");
        if matches!(e.state, UnitState::Running { .. }) {
            running.push(e.unit);
        }
    }
    let pos = |n: &str| running.iter().position(|u| u == n).expect("started");
    assert_eq!(pos("core"), 0, "{running:?}");
    assert!(pos("db") < pos("app"), "app requires db: {running:?}");
    assert_eq!(pos("agents"), 4, "the last group starts last: {running:?}");
    assert!(pos("web") < pos("app"), "web needs nobody: {running:?}");
    sup.shutdown().await.expect("shutdown");
}

const ACTIVATED: &str = r#"
import os, socket
assert int(os.environ['LISTEN_PID']) == os.getpid(), 'LISTEN_PID is not our pid'
assert os.environ['LISTEN_FDS'] == '1'
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    c.sendall(b'hello from %d' % os.getpid())
    c.close()
"#;

#[tokio::test]
async fn a_dormant_unit_starts_on_the_first_connection_with_the_socket_handed_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut unit = UnitSpec::new("lazy", &["python3", "-c", ACTIVATED]);
    unit.listen = vec![Listen::Tcp { addr }];
    let (sup, _task) = Supervisor::spawn(config(dir.path()), vec![unit]).expect("engine");
    let mut rx = sup.subscribe();
    sup.start_all().await.expect("start");
    until(&mut rx, "lazy", 5, |s| *s == UnitState::Dormant).await;
    assert!(sup.status().await.expect("status")[0].state.pid().is_none(), "nothing runs before a connection");
    let reply = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        let mut s = String::new();
        c.read_to_string(&mut s).expect("read");
        s
    })
    .await
    .expect("client");
    let e = until(&mut rx, "lazy", 5, |s| matches!(s, UnitState::Running { .. })).await;
    assert_eq!(reply, format!("hello from {}", e.state.pid().expect("pid")));
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_new_engine_re_adopts_running_units_without_restarting_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let units = vec![sh("keeper", "exec sleep 100")];
    let (sup, task) = Supervisor::spawn(config(dir.path()), units.clone()).expect("engine");
    let mut rx = sup.subscribe();
    sup.start_all().await.expect("start");
    let pid = until(&mut rx, "keeper", 5, |s| matches!(s, UnitState::Running { .. })).await.state.pid().expect("pid");
    // Once the state file records it, drop the engine as a crash would.
    let state = dir.path().join("state.json");
    common::eventually("the state file records keeper", 5, || {
        std::fs::read_to_string(&state).is_ok_and(|t| t.contains(&format!("\"pid\":{pid}")))
    })
    .await;
    task.abort();
    drop(sup);
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "the unit survives its supervisor");

    let mut cfg = config(dir.path());
    cfg.adopt = true;
    let (sup, _task) = Supervisor::spawn(cfg, units).expect("engine");
    let mut rx = sup.subscribe();
    let status = sup.status().await.expect("status");
    assert_eq!(status[0].state, UnitState::Running { pid }, "adopted, same process");
    sup.start_all().await.expect("start is a no-op for adopted units");
    // Commands are handled in order: once status answers, start_all has been handled.
    assert_eq!(sup.status().await.expect("status")[0].state, UnitState::Running { pid });
    assert!(rx.try_recv().is_err(), "starting an adopted unit changed nothing");
    sup.stop("keeper").await.expect("stop");
    let e = until(&mut rx, "keeper", 5, |s| matches!(s, UnitState::Exited { .. })).await;
    assert_eq!(e.state, UnitState::Exited { reason: ExitReason::Signal { signal: 15 } });
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_corrupt_state_file_is_kept_aside_and_running_units_are_found_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let units = vec![sh("corrupt-state-survivor", "exec sleep 100")];
    let (sup, task) = Supervisor::spawn(config(dir.path()), units.clone()).expect("engine");
    let mut rx = sup.subscribe();
    sup.start_all().await.expect("start");
    let pid = until(&mut rx, "corrupt-state-survivor", 5, |s| matches!(s, UnitState::Running { .. }))
        .await
        .state
        .pid()
        .expect("pid");
    sup.detach().await.expect("detach");
    task.await.expect("the engine ends");
    std::fs::write(dir.path().join("state.json"), b"{\"schema_version\": 1, \"units\": [trunc").expect("corrupt");

    let mut cfg = config(dir.path());
    cfg.adopt = true;
    let (sup, _task) = Supervisor::spawn(cfg, units).expect("engine");
    let status = sup.status().await.expect("status");
    assert_eq!(status[0].state, UnitState::Running { pid }, "found again by its session and AITHER_UNIT");
    assert!(dir.path().join("state.json.corrupt").exists(), "the corrupt file is kept for inspection");
    sup.start_all().await.expect("start is a no-op for the found unit");
    assert_eq!(sup.status().await.expect("status")[0].state, UnitState::Running { pid }, "no second copy");
    sup.shutdown().await.expect("shutdown");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    );
}

#[tokio::test]
async fn units_added_together_may_depend_on_each_other_and_go_in_all_or_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sup, _task) = Supervisor::spawn(config(dir.path()), vec![sh("old", "exec sleep 100")]).expect("engine");
    let mut x = sh("x", "exec sleep 100");
    x.requires = vec!["y".into()];
    let mut y = sh("y", "exec sleep 100");
    y.requires = vec!["old".into()];
    y.after = vec!["old".into()];
    sup.add_all(vec![x, y]).await.expect("x needs y, given after it");
    let names: Vec<String> = sup.status().await.expect("status").into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["old", "x", "y"]);

    let mut bad = sh("needs-ghost", "exec sleep 100");
    bad.requires = vec!["ghost".into()];
    let err = sup.add_all(vec![sh("fine", "exec sleep 100"), bad]).await.expect_err("a missing dependency");
    assert!(matches!(err, aither_init::EngineError::Invalid { ref unit, .. } if unit == "needs-ghost"), "{err}");
    let mut p = sh("p", "exec sleep 100");
    p.requires = vec!["q".into()];
    let mut q = sh("q", "exec sleep 100");
    q.requires = vec!["p".into()];
    assert!(sup.add_all(vec![p, q]).await.is_err(), "a cycle");
    let after: Vec<String> = sup.status().await.expect("status").into_iter().map(|u| u.name).collect();
    assert_eq!(after, ["old", "x", "y"], "a refused set changes nothing");
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn restart_policies_and_spawn_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut once = sh("once", "exit 0");
    once.restart = RestartMode::OnFailure;
    let mut missing = UnitSpec::new("missing", &["/nonexistent/program"]);
    missing.restart = RestartMode::Never;
    // A status that says "do not restart me" (a worker's invalid model) overrides Always.
    let mut invalid = sh("invalid", "exit 65");
    invalid.restart = RestartMode::Always;
    invalid.restart_prevent_exit_status = vec![65, 66];
    let (sup, _task) = Supervisor::spawn(config(dir.path()), vec![once, missing, invalid]).expect("engine");
    let (mut rx, mut rx_missing, mut rx_invalid) = (sup.subscribe(), sup.subscribe(), sup.subscribe());
    sup.start_all().await.expect("start");
    let e = until(&mut rx_invalid, "invalid", 5, |s| matches!(s, UnitState::Failed { .. })).await;
    assert_eq!(e.state, UnitState::Failed { reason: ExitReason::Code { code: 65 } });
    let e = until(&mut rx, "once", 5, |s| matches!(s, UnitState::Exited { .. })).await;
    assert_eq!(e.state, UnitState::Exited { reason: ExitReason::Code { code: 0 } });
    let e = until(&mut rx_missing, "missing", 5, |s| matches!(s, UnitState::Failed { .. })).await;
    assert!(matches!(e.state, UnitState::Failed { reason: ExitReason::SpawnFailed { .. } }), "{:?}", e.state);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = sup.status().await.expect("status");
    assert_eq!(status.iter().map(|s| s.restarts).sum::<u32>(), 0, "none is restarted");
    assert!(sup.start("nope").await.is_err());
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_restart_asked_for_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sup, _task, mut rx) = running(dir.path(), sh("svc", "exec sleep 30")).await;
    sup.restart("svc").await.expect("restart");
    until(&mut rx, "svc", 5, |s| matches!(s, UnitState::Running { .. })).await;
    let status = sup.status().await.expect("status");
    assert_eq!(status.iter().find(|s| s.name == "svc").map(|s| s.restarts), Some(1));
    sup.shutdown().await.expect("shutdown");
}

const HTTP_SERVER: &str = r#"
import http.server, sys, time
time.sleep(0.3)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/health' else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"#;

#[tokio::test]
async fn tcp_and_http_probes_gate_readiness_and_output_goes_to_the_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let free = || std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let (p1, p2) = (free(), free());
    let mut http = UnitSpec::new("http", &["python3", "-c", HTTP_SERVER, &p1.to_string()]);
    http.readiness = Readiness::Http { addr: format!("127.0.0.1:{p1}").parse().expect("addr"), path: "/health".into() };
    let mut tcp = UnitSpec::new("tcp", &["python3", "-c", HTTP_SERVER, &p2.to_string()]);
    tcp.readiness = Readiness::Tcp { addr: format!("127.0.0.1:{p2}").parse().expect("addr") };
    let log = dir.path().join("logs/talker.log");
    let mut talker = sh("talker", "echo to stdout; echo to stderr >&2; exec sleep 100");
    talker.log = aither_init::unit::LogTarget::File { path: log.clone() };
    let (sup, _task) = Supervisor::spawn(config(dir.path()), vec![http, tcp, talker]).expect("engine");
    let (mut rx_h, mut rx_t) = (sup.subscribe(), sup.subscribe());
    sup.start_all().await.expect("start");
    let t = std::time::Instant::now();
    until(&mut rx_h, "http", 10, |s| matches!(s, UnitState::Running { .. })).await;
    until(&mut rx_t, "tcp", 10, |s| matches!(s, UnitState::Running { .. })).await;
    assert!(t.elapsed() >= Duration::from_millis(300), "not ready before the server listens");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(std::fs::read_to_string(&log).expect("log file"), "to stdout\nto stderr\n");
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn units_are_added_replaced_and_removed_at_run_time_and_detach_leaves_them_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sup, task) = Supervisor::spawn(config(dir.path()), vec![]).expect("engine");
    let mut rx = sup.subscribe();
    let mut late = sh("late", "exec sleep 100");
    late.priority = 30;
    let mut early = sh("early", "sleep 0.3; exec sleep 100");
    early.priority = 0;
    early.readiness = Readiness::Tcp { addr: "127.0.0.1:1".parse().expect("addr") };
    early.ready_timeout = Duration::from_secs(30);
    sup.add(late.clone()).await.expect("add late");
    sup.add(early.clone()).await.expect("add early");
    let mut bad = sh("bad", "true");
    bad.after = vec!["missing".into()];
    assert!(sup.add(bad).await.is_err(), "a dependency on an unknown unit is refused");
    assert!(sup.start_set(vec!["late".into(), "nope".into()]).await.is_err(), "an unknown unit in the set");
    sup.start_set(vec!["late".into(), "early".into()]).await.expect("start set");
    until(&mut rx, "early", 5, |s| matches!(s, UnitState::Starting { .. })).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late_state = sup.status().await.expect("status").into_iter().find(|u| u.name == "late").expect("late");
    assert_eq!(late_state.state, UnitState::Waiting, "a set keeps group order: late waits for early");
    sup.stop("early").await.expect("stop early");
    let pid = until(&mut rx, "late", 5, |s| matches!(s, UnitState::Running { .. })).await.state.pid().expect("pid");

    assert!(sup.remove("late").await.is_err(), "a running unit is not removed");
    late.env.push(("GREETING".into(), "hi".into()));
    sup.add(late.clone()).await.expect("replace the spec of a running unit");
    sup.remove("early").await.expect("remove the stopped unit");
    assert_eq!(sup.status().await.expect("status").len(), 1);

    sup.detach().await.expect("detach");
    task.await.expect("the engine ends");
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "detach leaves units running");
    let mut cfg = config(dir.path());
    cfg.adopt = true;
    let (sup, _task) = Supervisor::spawn(cfg, vec![late]).expect("engine");
    assert_eq!(sup.status().await.expect("status")[0].state, UnitState::Running { pid }, "adopted");
    sup.shutdown().await.expect("shutdown");
}
