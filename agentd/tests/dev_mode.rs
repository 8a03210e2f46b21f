//! agentd end to end in development mode, against a private dbus-daemon, driven through
//! aitherctl as an admin would: the plan from a fixture profile, units starting in group
//! order, a crash restarted, the admission limit queueing an agent, an agent run from a
//! manifest, reload, a bad configuration refused with its file and key, and a clean stop.
//! Under real systemd, SELinux and cgroup v2 the same daemon is tested in the VM test bed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Bed;
use serde_json::Value;

/// A core service that takes half a second to send READY=1, then records that it is up.
const SLOW_CORE: &str = r#"
name = "store"
group = "core"
command = ["/usr/bin/python3", "-c", """
import os, socket, time
time.sleep(0.5)
open(os.environ['MARK'], 'a').write('store\\n')
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'READY=1\\nSTATUS=serving', os.environ['NOTIFY_SOCKET'])
time.sleep(1000)
"""]
readiness = "notify"
environment = { MARK = "@MARK@" }
"#;

/// A memory-group service that crashes on its first start, then records that it is up and
/// sends READY=1: agents (the next group) may start only once it is ready.
const CRASH_ONCE: &str = r#"
name = "indexer"
group = "memory"
command = ["/usr/bin/python3", "-c", """
import os, socket, sys, time
mark = os.environ['MARK']
open(mark, 'a').write('indexer\\n')
if open(mark).read().count('indexer') < 2:
    sys.exit(3)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])
time.sleep(1000)
"""]
readiness = "notify"
environment = { MARK = "@MARK@" }
"#;

fn agent(name: &str) -> String {
    format!(
        "name = \"{name}\"\ncommand = [\"/bin/sh\", \"-c\", \"echo {name} >> \\\"$MARK\\\"; echo hello from {name}; exec sleep 1000\"]\n\
         environment = {{ MARK = \"@MARK@\" }}\n"
    )
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
}

/// agentd with a slow core service, a memory service that crashes once and three agents
/// under a limit of `slots`, up and answering.
fn started(bed: &Bed, slots: usize) -> aither_test_support::Guard {
    bed.write(
        "etc/aither/agentd.toml",
        &format!("[agents]\nmax_concurrent = {slots}\n[gateway]\nlisten = [\"unix:/run/aither/gateway.sock\"]\n"),
    );
    bed.write("etc/aither/units.d/store.toml", SLOW_CORE);
    bed.write("etc/aither/units.d/indexer.toml", CRASH_ONCE);
    for a in ["a1", "a2", "a3"] {
        bed.write(&format!("etc/aither/agents.d/{a}.toml"), &agent(a));
    }
    let daemon = bed.agentd();
    let deadline = Instant::now() + Duration::from_secs(20);
    while bed.ctl(&["status"]).status.code() == Some(69) {
        assert!(Instant::now() < deadline, "agentd did not come up:\n{}", bed.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

#[test]
fn aitherctl_without_agentd_says_how_to_start_it() {
    let bed = Bed::new();
    let out = bed.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(69), "not running yet");
    assert!(String::from_utf8_lossy(&out.stderr).contains("agentd is not running"), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("agentd --dev"), "says how to start it: {out:?}");
}

#[test]
fn the_plan_comes_from_the_profile_and_aitherctl_finds_the_development_agentd() {
    let bed = Bed::new();
    let _daemon = started(&bed, 2);
    let plan: Value = serde_json::from_str(&bed.ok(&["--json", "plan"])).expect("plan json");
    assert_eq!(plan["preset"], "standard", "the RTX 4090 fixture gets the standard preset");
    // Without --session, aitherctl finds the development agentd when the system bus has none.
    let out = bed.command(common::aitherctl()).arg("status").output().expect("aitherctl");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("development agentd on the session bus"), "{out:?}");
    assert!(bed.ok(&["preset"]).starts_with("standard: NVIDIA GeForce RTX 4090"));
    let worker = bed.unit("infer-nomic-embed-text-v1.5");
    assert_eq!((worker["kind"].as_str(), worker["state"].as_str()), (Some("worker"), Some("blocked")), "{worker}");
}

#[test]
fn units_start_in_group_order_and_a_crash_is_restarted() {
    let bed = Bed::new();
    let _daemon = started(&bed, 2);
    // The core service is ready before the memory group starts, agents last.
    bed.wait_state("a1", "running", 20);
    bed.wait_state("a2", "running", 20);
    let marks = bed.marks();
    let first = |m: &str| marks.iter().position(|x| x == m).unwrap_or_else(|| panic!("{m} never started: {marks:?}"));
    assert!(first("store") < first("indexer") && first("indexer") < first("a1"), "{marks:?}");
    assert_eq!(bed.unit("store")["status"], "serving", "its STATUS= line");
    let indexer = bed.wait_state("indexer", "running", 20);
    assert_eq!(indexer["restarts"], 1, "{indexer}");
}

#[test]
fn agents_beyond_the_limit_wait_in_the_admission_queue() {
    let bed = Bed::new();
    let _daemon = started(&bed, 2);
    bed.wait_state("a1", "running", 20);
    bed.wait_state("a2", "running", 20);
    // Two agent slots: the third agent waits.
    let a3 = bed.unit("a3");
    assert_eq!(a3["state"], "queued", "{a3}");
    let status: Value = serde_json::from_str(&bed.ok(&["--json", "status"])).expect("status json");
    assert_eq!(status["queued"], serde_json::json!(["a3"]));
    assert!(status["summary"].as_str().is_some_and(|s| s.contains("2/2 agent slots used, 1 queued")), "{status}");
    let agents = bed.ok(&["agents"]);
    assert!(agents.contains("s0:c1,c2") && agents.contains("aither_agent_t"), "{agents}");
    // An agent stopping frees its slot for the queued one.
    assert!(bed.ok(&["stop", "a1"]).contains("a1 is stopping"));
    bed.wait_state("a3", "running", 10);
    assert_eq!(bed.unit("a1")["state"], "inactive");
    // Starting a1 again queues it.
    assert!(bed.ok(&["start", "a1"]).contains("queued at position 1"));
    assert!(bed.ok(&["stop", "a1"]).contains("left the admission queue"));
    let logs = bed.ok(&["logs", "a3"]);
    assert!(logs.contains("hello from a3"), "{logs}");
}

#[test]
fn a_reload_applies_a_good_configuration_and_refuses_a_bad_one_whole() {
    let bed = Bed::new();
    let _daemon = started(&bed, 2);
    // A new service starts and the limit grows.
    bed.write(
        "etc/aither/units.d/late.toml",
        "name = \"late\"\ngroup = \"memory\"\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    );
    bed.write(
        "etc/aither/agentd.toml",
        "[agents]\nmax_concurrent = 3\n[gateway]\nlisten = [\"unix:/run/aither/gateway.sock\"]\n",
    );
    let reloaded = bed.ok(&["reload"]);
    assert!(reloaded.contains("added late"), "{reloaded}");
    bed.wait_state("late", "running", 10);
    bed.wait_state("a3", "running", 20);

    // A bad configuration is refused with its file and key, and changes nothing.
    bed.write("etc/aither/agentd.d/50-typo.toml", "[agents]\nmax_concurent = 9\n");
    let out = bed.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("etc/aither/agentd.d/50-typo.toml") && err.contains("max_concurent"), "{err}");
    std::fs::remove_file(bed.root().join("etc/aither/agentd.d/50-typo.toml")).expect("rm");
    bed.write("etc/aither/agents.d/bad.toml", "name = \"bad\"\ncommand = [\"/bin/true\"]\ngpus = 1\n");
    let out = bed.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("agents.d/bad.toml: gpus: agents never get GPUs"), "{err}");
    std::fs::remove_file(bed.root().join("etc/aither/agents.d/bad.toml")).expect("rm");
    // The development gateway key was made at start; emptied, it refuses the reload.
    let key = bed.root().join("etc/aither/gateway.key");
    let saved = std::fs::read_to_string(&key).expect("the development key exists");
    assert!(saved.starts_with("aither-"), "{saved}");
    std::fs::write(&key, "").expect("empty the key");
    let out = bed.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("gateway.api_key_file") && err.contains("the key file is empty"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).expect("key"), "", "a reload never makes a new key");
    std::fs::write(&key, saved).expect("restore the key");
    assert_eq!(bed.unit("late")["state"], "running", "still running after the refused reloads");
}

#[test]
fn reading_is_for_everyone_and_changing_for_admins() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching to another user needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let bed = Bed::new();
    let _daemon = started(&bed, 2);
    bed.wait_state("store", "running", 20);
    std::fs::set_permissions(bed.dir(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let as_nobody =
        |args: &[&str]| bed.command(common::aitherctl()).arg("--session").args(args).uid(65534).gid(65534).output();
    let read = as_nobody(&["units"]).expect("aitherctl as nobody");
    assert!(read.status.success(), "{read:?}");
    let denied = as_nobody(&["stop", "store"]).expect("aitherctl as nobody");
    assert_eq!(denied.status.code(), Some(4), "{denied:?}");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("uid 65534 may not stop store"), "{denied:?}");
    assert_eq!(bed.unit("store")["state"], "running");
}

#[test]
fn an_agent_runs_from_a_manifest_and_a_bad_manifest_is_named() {
    let bed = Bed::new();
    let _daemon = started(&bed, 4);
    let manifest = bed.dir().join("run-me.toml");
    let adhoc = agent("adhoc").replace("@MARK@", &bed.dir().join("marks").display().to_string());
    std::fs::write(&manifest, adhoc).expect("manifest");
    let out = bed.ok(&["run", manifest.to_str().expect("utf-8")]);
    assert!(out.contains("adhoc started"), "{out}");
    std::fs::write(&manifest, "name = \"Bad Name\"\ncommand = [\"/bin/true\"]\n").expect("manifest");
    let out = bed.ctl(&["run", manifest.to_str().expect("utf-8")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("run-me.toml: name"), "{out:?}");
}

#[test]
fn a_clean_stop_leaves_no_unit_process() {
    let bed = Bed::new();
    let mut daemon = started(&bed, 2);
    bed.wait_state("a1", "running", 20);
    bed.wait_state("a2", "running", 20);
    bed.wait_state("indexer", "running", 20);
    let pids: Vec<i64> = bed.units().iter().filter_map(|u| u["pid"].as_i64()).collect();
    assert!(pids.len() >= 4, "{pids:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.0.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = daemon.0.wait().expect("agentd exits");
    assert!(status.success(), "{status}\n{}", bed.log());
    let left: Vec<i64> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running after agentd stopped: {left:?}");
    assert!(bed.log().contains("every unit stopped"));
}

#[test]
fn a_bad_configuration_at_start_exits_78_naming_the_file_and_key_and_starts_nothing() {
    let bed = Bed::new();
    bed.write("etc/aither/agents.d/a1.toml", &agent("a1"));
    bed.write("etc/aither/agentd.d/20-bad.toml", "[cloud]\nendpoint = \"http://api.example.com/v1\"\n");
    let mut daemon = bed.agentd();
    let status = daemon.0.wait().expect("agentd exits");
    assert_eq!(status.code(), Some(78), "EX_CONFIG, which agentd.service does not restart\n{}", bed.log());
    let log = bed.log();
    assert!(log.contains("etc/aither/agentd.d/20-bad.toml: cloud.endpoint: \"http://api.example.com/v1\""), "{log}");
    assert!(bed.marks().is_empty(), "nothing started: {:?}", bed.marks());
}

#[test]
fn a_configured_key_that_cannot_be_read_stops_agentd_instead_of_opening_the_gateway() {
    let bed = Bed::new();
    bed.write("etc/aither/agents.d/a1.toml", &agent("a1"));
    let missing = bed.root().join("etc/aither/elsewhere.key");
    bed.write(
        "etc/aither/agentd.d/20-key.toml",
        &format!("[gateway]\napi_key_file = {:?}\n", missing.display().to_string()),
    );
    let mut daemon = bed.agentd();
    let status = daemon.0.wait().expect("agentd exits");
    assert_eq!(status.code(), Some(78), "{}", bed.log());
    let log = bed.log();
    assert!(log.contains("gateway.api_key_file") && log.contains("elsewhere.key: cannot read the key"), "{log}");
    assert!(bed.marks().is_empty(), "nothing started: {:?}", bed.marks());
}
