//! cgroup v2 behaviour of the engine. These need a delegated cgroup v2 subtree, which the
//! build host (cgroup v1, no systemd) does not have: they are ignored here and run in the VM
//! test bed, where run-checks starts this binary with `--ignored` under `Delegate=yes`.

use std::path::Path;
use std::time::Duration;

use aither_init::cgroup::Cgroups;
use aither_init::unit::Limits;
use aither_init::{Config, ExitReason, RestartMode, Supervisor, UnitSpec, UnitState};
mod common;
use common::until;

fn delegated() -> Cgroups {
    let cg = Cgroups::detect(Path::new("/sys/fs/cgroup"), Path::new("/proc/self/cgroup"))
        .expect("a delegated cgroup v2 subtree");
    cg.prepare().expect("prepare the subtree");
    cg
}

fn config(dir: &Path, cg: Cgroups) -> Config {
    Config {
        runtime_dir: dir.to_path_buf(),
        state_file: None,
        subreaper: true,
        adopt: false,
        cgroups: Ok(cg),
        host: Default::default(),
    }
}

#[tokio::test]
#[ignore = "needs a delegated cgroup v2 subtree: runs in the VM test bed (make vm-test)"]
async fn a_unit_over_memory_max_is_oom_killed_alone_and_reported_as_such() {
    let cg = delegated();
    let dir = tempfile::tempdir().expect("tempdir");
    // A shell string that doubles until the limit.
    let mut hog = UnitSpec::new("hog", &["sh", "-c", "x=aaaaaaaa; while :; do x=$x$x; done"]);
    hog.limits = Limits { memory_max: Some(32 << 20), oom_group: true, ..Limits::default() };
    hog.restart = RestartMode::Never;
    let bystander = UnitSpec::new("bystander", &["sleep", "1000"]);
    let (sup, _task) = Supervisor::spawn(config(dir.path(), cg.clone()), vec![bystander, hog]).expect("engine");
    let (mut rx, mut rx_b) = (sup.subscribe(), sup.subscribe());
    sup.start_all().await.expect("start");
    let e = until(&mut rx, "hog", 30, |s| matches!(s, UnitState::Failed { .. })).await;
    assert_eq!(e.state, UnitState::Failed { reason: ExitReason::OomKilled });
    until(&mut rx_b, "bystander", 5, |s| matches!(s, UnitState::Running { .. })).await;
    let status = sup.status().await.expect("status");
    let by = status.iter().find(|s| s.name == "bystander").expect("bystander");
    assert!(matches!(by.state, UnitState::Running { .. }), "the other unit is untouched: {:?}", by.state);
    assert_eq!(cg.oom_kills("bystander"), Some(0));
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
#[ignore = "needs a delegated cgroup v2 subtree: runs in the VM test bed (make vm-test)"]
async fn a_fork_bomb_is_stopped_by_pids_max() {
    let cg = delegated();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bomb = UnitSpec::new("bomb", &["sh", "-c", "while :; do sleep 1000 & done"]);
    bomb.limits = Limits { pids_max: Some(40), ..Limits::default() };
    bomb.restart = RestartMode::Never;
    // It complains on every refused fork; keep that out of the test output.
    bomb.log = aither_init::unit::LogTarget::Null;
    bomb.stop_timeout = Duration::from_millis(500);
    let (sup, _task) = Supervisor::spawn(config(dir.path(), cg.clone()), vec![bomb]).expect("engine");
    let mut rx = sup.subscribe();
    sup.start_all().await.expect("start");
    until(&mut rx, "bomb", 5, |s| matches!(s, UnitState::Running { .. })).await;
    // The bomb reaches the limit (slowly under software emulation): wait for the refusals.
    let unit = cg.unit_dir("bomb");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut events = String::new();
    while tokio::time::Instant::now() < deadline {
        events = std::fs::read_to_string(unit.join("pids.events")).expect("pids.events");
        if !events.contains("max 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!events.contains("max 0"), "forks were refused at the limit: {events}");
    let current: u64 =
        std::fs::read_to_string(unit.join("pids.current")).expect("pids.current").trim().parse().expect("number");
    assert!(current <= 40, "pids.current {current} stays within pids.max");
    // Stopping kills the whole cgroup, bomb and all.
    sup.stop("bomb").await.expect("stop");
    until(&mut rx, "bomb", 10, |s| matches!(s, UnitState::Inactive)).await;
    common::eventually("nothing left in the bomb's cgroup", 10, || cg.procs("bomb").is_empty()).await;
    sup.shutdown().await.expect("shutdown");
}

#[tokio::test]
#[ignore = "needs a delegated cgroup v2 subtree: runs in the VM test bed (make vm-test)"]
async fn stop_kills_processes_that_left_the_process_group() {
    let cg = delegated();
    let dir = tempfile::tempdir().expect("tempdir");
    // A grandchild in its own session, ignoring SIGTERM: only cgroup.kill reaches it.
    let mut unit =
        UnitSpec::new("escaper", &["sh", "-c", "setsid sh -c 'trap \"\" TERM; sleep 1000' & exec sleep 1000"]);
    unit.stop_timeout = Duration::from_millis(500);
    let (sup, _task) = Supervisor::spawn(config(dir.path(), cg.clone()), vec![unit]).expect("engine");
    let mut rx = sup.subscribe();
    sup.start_all().await.expect("start");
    until(&mut rx, "escaper", 5, |s| matches!(s, UnitState::Running { .. })).await;
    common::eventually("the escaper and its grandchild in the unit's cgroup", 10, || cg.procs("escaper").len() >= 2)
        .await;
    sup.stop("escaper").await.expect("stop");
    until(&mut rx, "escaper", 10, |s| matches!(s, UnitState::Inactive)).await;
    common::eventually("the escaped grandchild killed too", 10, || cg.procs("escaper").is_empty()).await;
    sup.shutdown().await.expect("shutdown");
}
