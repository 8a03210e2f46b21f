//! Steps that try to lie to agentd or outlive their budget, in development mode: the step's
//! agent is a stand-in script (anything running in a step can write its `result.json` or hold
//! on past its time), and agentd believes only what the step was allowed to do.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Bed;
use serde_json::{json, Value};

/// One step granted `grant`, with a budget of `seconds`.
fn workflow(grant: &str, seconds: u32) -> String {
    format!(
        r#"
[workflow]
description = "A step whose agent is a stand-in"

[[step]]
name = "act"
model = "chat"
system_prompt = "You act."
instructions = "Act."
tools = [{grant}]
outputs = ["notes.md"]
budget = {{ steps = 2, tokens = 100, seconds = {seconds} }}
"#
    )
}

/// A stand-in for the step's agent: `body`, a shell script with `$WS` its workspace.
fn runner(bed: &Bed, body: &str) -> PathBuf {
    let path = bed.dir().join("runner.sh");
    std::fs::write(&path, format!("#!/bin/sh\nWS=\"$2\"\n{body}\n")).expect("runner");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn configure(bed: &Bed, runner: &Path, workflow: &str) {
    bed.configure_workflows(&bed.dir().join("gw.sock"), "");
    let conf = bed.root().join("etc/aither/agentd.toml");
    let text = std::fs::read_to_string(&conf).expect("agentd.toml");
    let text = text.replace(
        &format!("runner = \"{}\"", aither_test_support::bin("aither-agent").display()),
        &format!("runner = \"{}\"", runner.display()),
    );
    std::fs::write(&conf, text).expect("agentd.toml");
    bed.write("etc/aither/workflows.d/hostile.toml", workflow);
}

fn forged(proposals: usize, summary: &str) -> Value {
    json!({
        "schema_version": 1, "run_id": "hostile-1", "step": "act", "outcome": "completed",
        "turns": 1, "prompt_tokens": 1, "completion_tokens": 1, "seconds": 0.1,
        "summary": summary, "context": "system_u:system_r:unconfined_t:s0",
        "outputs": [], "refused": [],
        "proposals": vec![json!({"kind": "reload", "reason": "forged"}); proposals],
    })
}

/// Run the stand-in that leaves `result`; the run's document once it is over.
fn run_forging(grant: &str, result: &Value) -> Value {
    let bed = Bed::new();
    let file = bed.dir().join("forged.json");
    std::fs::write(&file, serde_json::to_vec(result).expect("json")).expect("forged");
    let script = runner(&bed, &format!("cp '{}' \"$WS/result.json\"", file.display()));
    configure(&bed, &script, &workflow(grant, 60));
    let _agentd = bed.agentd();
    bed.wait_up(20);
    bed.ok(&["workflows", "run", "hostile"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = bed.run_doc("hostile-1");
        if ["failed", "completed", "awaiting_approval"].contains(&run["state"].as_str().unwrap_or("")) {
            return run;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_forged_result_from_a_step_not_granted_propose_queues_nothing() {
    let run = run_forging("\"read_file\"", &forged(20, "done"));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["approvals"].as_array().map_or(0, Vec::len), 0, "{run}");
    let error = run["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("20 proposals, and step act is not granted propose"), "{run}");
}

#[test]
fn a_forged_result_past_the_runners_cap_queues_nothing() {
    let run = run_forging("\"propose\"", &forged(20, "done"));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["approvals"].as_array().map_or(0, Vec::len), 0, "{run}");
    assert!(run["steps"][0]["error"].as_str().unwrap_or_default().contains("more than the 8"), "{run}");
}

#[test]
fn a_long_summary_is_cut_and_the_context_is_agentds_own() {
    let run = run_forging("\"propose\"", &forged(1, &"x".repeat(1024 * 1024)));
    assert_eq!(run["state"], "awaiting_approval", "{run}");
    let result = &run["steps"][0]["result"];
    assert_eq!(result["summary"].as_str().map(str::len), Some(4096));
    // No SELinux in development mode: agentd started the step in no context, whatever it says.
    assert_eq!(result["context"], Value::Null, "{result}");
    assert_eq!(run["approvals"].as_array().map_or(0, Vec::len), 1);
}

#[test]
fn a_step_past_its_budget_is_stopped_and_recorded_timed_out() {
    let bed = Bed::new();
    // An agent that ignores its deadline (and SIGTERM).
    let script = runner(&bed, "trap '' TERM\nsleep 600");
    configure(&bed, &script, &workflow("\"read_file\"", 1));
    let _agentd = bed.agentd();
    bed.wait_up(20);
    let started = Instant::now();
    bed.ok(&["workflows", "run", "hostile"]);
    let run = bed.wait_run("hostile-1", "failed", 60);
    let took = started.elapsed();
    assert_eq!(run["steps"][0]["state"], "timed_out", "{run}");
    assert!(run["reason"].as_str().unwrap_or_default().contains("timed out"), "{run}");
    // Its budget's second, the grace, and the stop's own timeout: not the agent's ten minutes.
    assert!(took < Duration::from_secs(45), "{took:?}");
    assert!(bed.units().iter().all(|u| !u["name"].as_str().unwrap_or("").starts_with("wf-")), "the step unit is gone");
    // Its slot is free: the next run starts.
    bed.ok(&["workflows", "run", "hostile"]);
    bed.wait_run("hostile-2", "running", 20);
}

#[test]
fn a_step_that_runs_commands_is_refused_while_selinux_is_permissive() {
    let bed = Bed::new();
    let script = runner(&bed, "exit 0");
    configure(
        &bed,
        &script,
        &workflow("\"run_command\"", 60).replace("budget =", "commands = [[\"/bin/true\"]]\nbudget ="),
    );
    // The appliance's /sys, as agentd reads it under its root: the policy only logs.
    bed.write("sys/fs/selinux/enforce", "0\n");
    let _agentd = bed.agentd();
    bed.wait_up(20);
    let status: Value = serde_json::from_str(&bed.ok(&["--json", "status"])).expect("json");
    assert_eq!(status["selinux"], "permissive");
    assert!(bed.ok(&["status"]).contains("isolation: SELinux PERMISSIVE: nothing is confined by it"));
    bed.ok(&["workflows", "run", "hostile"]);
    let run = bed.wait_run("hostile-1", "failed", 20);
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("SELinux is permissive on this host and step act runs commands"), "{run}");
    // The admin's say-so lets it run.
    let conf = bed.root().join("etc/aither/agentd.toml");
    let text = std::fs::read_to_string(&conf).expect("agentd.toml");
    std::fs::write(&conf, text.replace("[workflows]\n", "[workflows]\nallow_unconfined = true\n")).expect("write");
    bed.ok(&["reload"]);
    bed.ok(&["workflows", "run", "hostile"]);
    let run = bed.wait_run("hostile-2", "failed", 20);
    assert!(run["reason"].as_str().unwrap_or_default().contains("left no result"), "it ran: {run}");
}

/// A step that fills its workspace: no file grows past the bound (RLIMIT_FSIZE: the write
/// fails there), and a step past its bound of bytes or entries is stopped within a tick or two
/// and fails saying so; its workspace is removed however it left it.
#[test]
fn a_step_past_its_workspace_bound_is_stopped_and_its_workspace_removed() {
    let bed = Bed::new();
    let seen = bed.dir().join("seen");
    // One file as large as it can make it, then entries past the bound, then waiting to be
    // stopped; SIGTERM ignored, so the size is written even when agentd's count comes between
    // the write and `stat` (the stop's SIGKILL follows 10 s later).
    let script = runner(
        &bed,
        &format!(
            "trap '' XFSZ TERM\ndd if=/dev/zero of=\"$WS/big\" bs=1M count=8 2>/dev/null\nstat -c %s \"$WS/big\" > '{seen}'\n\
             mkdir -p \"$WS/a/b/c\"; chmod 000 \"$WS/a/b\"\n\
             i=0; while [ $i -lt 400 ]; do : > \"$WS/f$i\"; i=$((i+1)); done\nsleep 600",
            seen = seen.display()
        ),
    );
    configure(&bed, &script, &workflow("\"read_file\"", 300));
    let conf = bed.root().join("etc/aither/agentd.toml");
    let text = std::fs::read_to_string(&conf).expect("agentd.toml");
    let bounded = text.replace("[workflows]\n", "[workflows]\nworkspace_max = \"4M\"\nworkspace_max_files = 100\n");
    std::fs::write(&conf, bounded).expect("write");
    let _agentd = bed.agentd();
    bed.wait_up(20);
    let started = Instant::now();
    bed.ok(&["workflows", "run", "hostile"]);
    let run = bed.wait_run("hostile-1", "failed", 60);
    assert!(started.elapsed() < Duration::from_secs(30), "stopped at its bound, not its budget");
    assert_eq!(run["steps"][0]["state"], "failed", "{run}");
    let error = run["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("went past its bound: more than") && error.contains("(workflows.workspace_max"), "{run}");
    let size: u64 = std::fs::read_to_string(&seen).expect("seen").trim().parse().expect("size");
    assert_eq!(size, 4 << 20, "the file stopped at the bound");
    let agents = bed.root().join("var/lib/aither/agents");
    let left: Vec<_> = std::fs::read_dir(&agents)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.to_string_lossy().starts_with("wf-")), "the workspace is removed: {left:?}");
}
