//! Workflow runs end to end in development mode: agentd runs each step as an `aither-agent`
//! unit talking to a scripted stand-in for the gateway. A failing unit triggers a run; the
//! diagnosis is handed to the next step; its proposal waits for approval and, approved,
//! restarts the unit; a denied proposal changes nothing; a cancelled run stops its step; a
//! run goes on after agentd is killed in the middle of a step. Under SELinux enforcing the
//! same engine is tested in the VM test bed.

mod common;

use std::path::Path;
use std::time::Duration;

use aither_test_support::scripted::{ScriptedModel, Turn};
use common::{Bed, FLAKY};
use serde_json::{json, Value};

const HEAL: &str = r#"
[workflow]
description = "Diagnose a failed unit and propose the fix"

[trigger]
manual = true
units = ["flaky"]

[[step]]
name = "diagnose"
model = "chat"
system_prompt = "You are the diagnostician."
instructions = "Read the unit's journal and write diagnosis.md."
tools = ["read_file", "write_file"]
inputs = [{ collect = "journal", unit = "trigger" }, { collect = "status" }]
outputs = ["diagnosis.md"]
budget = { steps = 6, tokens = 1000, seconds = 120 }

[[step]]
name = "propose"
model = "chat"
system_prompt = "You are the operator."
instructions = "Read the diagnosis and propose one action."
tools = ["read_file", "propose"]
inputs = [{ from = "diagnose", file = "diagnosis.md" }]
budget = { steps = 6, tokens = 1000, seconds = 120 }
"#;

/// One step that proposes stopping a unit, run by hand.
const TIDY: &str = r#"
[workflow]
description = "Propose stopping a unit"

[inputs.unit]
kind = "name"
description = "the unit to stop"

[[step]]
name = "decide"
model = "chat"
system_prompt = "You are the operator."
instructions = "Propose stopping the unit you are given."
tools = ["propose"]
budget = { steps = 4, tokens = 1000, seconds = 120 }
"#;

fn configure(bed: &Bed, socket: &Path) {
    configure_with(bed, socket, "");
}

/// With `extra` lines in the `[workflows]` table.
fn configure_with(bed: &Bed, socket: &Path, extra: &str) {
    bed.configure_workflows(socket, extra);
    bed.write("etc/aither/units.d/flaky.toml", FLAKY);
    bed.write("etc/aither/workflows.d/heal.toml", HEAL);
    bed.write("etc/aither/workflows.d/tidy.toml", TIDY);
}

#[test]
fn a_failing_unit_triggers_a_run_whose_approved_proposal_restarts_it() {
    let bed = Bed::new();
    let socket = bed.dir().join("gw.sock");
    configure(&bed, &socket);
    let model = ScriptedModel::start(
        &socket,
        vec![
            // diagnose: its journal and the status inline, the diagnosis its answer
            Turn::text("flaky cannot reach its database."),
            // propose: the diagnosis inline
            Turn::call("propose", json!({"kind": "restart", "unit": "flaky", "reason": "the database is back"})),
            Turn::text("proposed a restart"),
        ],
    );
    let _agentd = bed.agentd();
    bed.wait_up(20);

    // flaky failed at boot: the run it triggered goes through both steps and waits.
    let run = bed.wait_run("heal-1", "awaiting_approval", 60);
    assert_eq!(run["trigger"], "unit flaky failed");
    assert_eq!(run["steps"][0]["state"], "done");
    assert_eq!(run["steps"][0]["result"]["outcome"], "completed");
    assert_eq!(run["steps"][1]["result"]["proposals"][0]["kind"], "restart");
    let requests = model.requests();
    assert_eq!(requests.len(), 3);
    let briefing = |i: usize| requests[i]["messages"][1]["content"].as_str().unwrap_or_default().to_string();
    assert!(briefing(0).contains("flaky: database connection refused"), "{}", briefing(0));
    assert!(
        briefing(1).contains("inputs/diagnosis.md:\n```\nflaky cannot reach its database.\n```"),
        "the diagnosis was handed over: {}",
        briefing(1)
    );
    let state = bed.state_dir();
    assert_eq!(
        std::fs::read_to_string(state.join("workflows/runs/heal-1/diagnose/outputs/diagnosis.md")).expect("kept"),
        "flaky cannot reach its database.\n"
    );
    assert!(!state.join("agents/wf-heal-1-diagnose").exists(), "the workspace is removed");
    assert!(bed.units().iter().all(|u| !u["name"].as_str().unwrap_or("").starts_with("wf-")), "step units are gone");

    // The queue, then the approval: flaky restarts and runs.
    let queue: Value = serde_json::from_str(&bed.ok(&["--json", "approvals", "list"])).expect("json");
    assert_eq!(queue["approvals"][0]["id"], "heal-1.1");
    assert_eq!(queue["approvals"][0]["state"], "pending");
    assert!(bed.ok(&["approvals", "list"]).contains("restart flaky"));
    let done = bed.ok(&["approvals", "approve", "heal-1.1"]);
    assert!(done.starts_with("heal-1.1 approved: restart flaky"), "{done}");
    bed.wait_state("flaky", "running", 10);
    let run = bed.wait_run("heal-1", "completed", 10);
    assert_eq!(run["approvals"][0]["state"], "done");
    assert!(run["approvals"][0]["decided_by"].as_str().unwrap_or("").starts_with("uid "), "{run:#}");
    let again = bed.ctl(&["approvals", "approve", "heal-1.1"]);
    assert_eq!(again.status.code(), Some(1), "decided once");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already done"));

    let audit = std::fs::read_to_string(state.join("workflows/audit.jsonl")).expect("audit");
    let line: aither_api::workflow::AuditEntry =
        serde_json::from_str(audit.lines().last().expect("a line")).expect("a typed entry");
    assert_eq!(
        (line.approval.as_str(), line.decision.as_str(), line.action.as_str()),
        ("heal-1.1", "approved", "restart flaky")
    );
    assert!(line.decided_by.as_deref().is_some_and(|by| by.starts_with("uid ")), "{line:?}");
    let logs = bed.ok(&["workflows", "logs", "heal-1"]);
    assert!(
        logs.contains("== diagnose")
            && logs.contains("assistant: flaky cannot reach its database.")
            && logs.contains("== propose")
            && logs.contains("assistant calls propose"),
        "{logs}"
    );
    assert!(bed.ok(&["workflows", "runs"]).contains("heal-1"));
    assert!(bed.ok(&["workflows", "list"]).contains("diagnose → propose"));

    // A step's output, as kept: by name, and only the outputs it wrote.
    assert_eq!(
        bed.ok(&["workflows", "artifact", "heal-1", "diagnose", "diagnosis.md"]),
        "flaky cannot reach its database.\n"
    );
    let doc: Value =
        serde_json::from_str(&bed.ok(&["--json", "workflows", "artifact", "heal-1", "diagnose", "diagnosis.md"]))
            .expect("json");
    assert_eq!((doc["bytes"].as_u64(), doc["truncated"].as_bool()), (Some(33), Some(false)), "{doc}");
    for (step, name, why) in [
        ("diagnose", "../../../agentd.toml", "wrote no output"),
        ("diagnose", "step.json", "wrote no output"),
        ("propose", "diagnosis.md", "its outputs: none"),
        ("nope", "diagnosis.md", "has no step \"nope\""),
    ] {
        let out = bed.ctl(&["workflows", "artifact", "heal-1", step, name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(1) && err.contains(why), "{step} {name}: {err}");
    }
}

#[test]
fn a_denied_proposal_changes_nothing_and_a_cancelled_run_stops_its_step() {
    let bed = Bed::new();
    let socket = bed.dir().join("gw.sock");
    configure(&bed, &socket);
    bed.write("etc/aither/units.d/flaky.toml", &FLAKY.replace("-lt 2", "-lt 1"));
    let _model = ScriptedModel::start(
        &socket,
        vec![
            Turn::call("propose", json!({"kind": "stop", "unit": "flaky", "reason": "it is not needed"})),
            Turn::text("proposed"),
            // The second run's step: the model never answers in time.
            Turn::Stall(Duration::from_secs(30)),
        ],
    );
    let _agentd = bed.agentd();
    bed.wait_up(20);
    bed.wait_state("flaky", "running", 10);

    let started = bed.ok(&["workflows", "run", "tidy", "--input", "unit=flaky"]);
    assert!(started.starts_with("run tidy-1 started"), "{started}");
    bed.wait_run("tidy-1", "awaiting_approval", 30);
    assert!(bed.ok(&["approvals", "deny", "tidy-1.1"]).starts_with("tidy-1.1 denied: stop flaky"));
    let run = bed.wait_run("tidy-1", "completed", 10);
    assert_eq!(run["approvals"][0]["state"], "denied");
    assert_eq!(bed.unit("flaky")["state"], "running", "denied: not stopped");

    bed.ok(&["workflows", "run", "tidy"]);
    aither_test_support::until("the step to run", 20, || bed.has_unit("wf-tidy-2-decide", Some("running")));
    assert!(bed.ok(&["workflows", "cancel", "tidy-2"]).contains("cancelled"));
    let run = bed.wait_run("tidy-2", "cancelled", 10);
    aither_test_support::until("the step unit to go", 20, || !bed.has_unit("wf-tidy-2-decide", None));
    assert_eq!(run["reason"], "cancelled");
    assert_eq!(bed.run_doc("tidy-2")["steps"][0]["state"], "cancelled");
    assert!(!bed.state_dir().join("agents/wf-tidy-2-decide").exists());

    // Unknown workflows, bad inputs and a second cancel are refused with the reason.
    let bad = bed.ctl(&["workflows", "run", "nothing"]);
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("no workflow \"nothing\" (there are: code-review, content-pipeline, devops, heal,"));
    let bad = bed.ctl(&["workflows", "run", "tidy", "--input", "unit=ghost"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no unit named \"ghost\""));
    assert_eq!(bed.ctl(&["workflows", "cancel", "tidy-2"]).status.code(), Some(1));
}

#[test]
fn a_run_goes_on_after_agentd_is_killed_in_the_middle_of_a_step() {
    let bed = Bed::new();
    let socket = bed.dir().join("gw.sock");
    configure(&bed, &socket);
    bed.write("etc/aither/units.d/flaky.toml", &FLAKY.replace("-lt 2", "-lt 1"));
    let _model = ScriptedModel::start(
        &socket,
        vec![
            Turn::Stall(Duration::from_secs(4)),
            Turn::call("propose", json!({"kind": "reload", "reason": "configuration changed"})),
            Turn::text("done"),
        ],
    );
    let mut agentd = bed.agentd();
    bed.wait_up(20);
    bed.ok(&["workflows", "run", "tidy"]);
    aither_test_support::until("the step to run", 20, || bed.has_unit("wf-tidy-1-decide", Some("running")));
    // Once the engine has recorded it (its state file is written within 50 ms of a change),
    // agentd dies; the step's agent goes on talking to the model.
    let state_file = bed.dir().join("xdg/aither/units.json");
    aither_test_support::until("the step in the state file", 20, || {
        std::fs::read_to_string(&state_file).unwrap_or_default().contains("wf-tidy-1-decide")
    });
    agentd.0.kill().expect("kill -9");
    let _ = agentd.0.wait();
    let _again = bed.agentd();
    bed.wait_up(20);
    let run = bed.wait_run("tidy-1", "awaiting_approval", 30);
    assert_eq!(run["steps"][0]["attempts"], 1, "adopted, not started again: {run:#}");
    assert_eq!(run["approvals"][0]["proposal"]["kind"], "reload");
}

/// One step that writes a post and proposes publishing it.
const POST: &str = r#"
[workflow]
description = "Write a post and publish it"

[[step]]
name = "write"
model = "chat"
system_prompt = "You are the writer."
instructions = "Write post.md and propose publishing it."
tools = ["write_file", "propose"]
outputs = ["post.md"]
budget = { steps = 4, tokens = 1000, seconds = 120 }
"#;

/// The post workflow run until its publish proposal of `content` waits for a decision; the
/// stand-in model and agentd, to keep.
fn post_waiting(bed: &Bed, socket: &Path, content: &str) -> (ScriptedModel, common::Guard) {
    bed.write("etc/aither/units.d/flaky.toml", &FLAKY.replace("-lt 2", "-lt 1"));
    bed.write("etc/aither/workflows.d/post.toml", POST);
    let model = ScriptedModel::start(
        socket,
        vec![
            Turn::call("write_file", json!({"path": "outputs/post.md", "content": content})),
            Turn::call("propose", json!({"kind": "publish", "file": "outputs/post.md", "reason": "it is ready"})),
            Turn::text("written and proposed"),
        ],
    );
    let agentd = bed.agentd();
    bed.wait_up(20);
    bed.ok(&["workflows", "run", "post"]);
    bed.wait_run("post-1", "awaiting_approval", 30);
    (model, agentd)
}

#[test]
fn an_approved_publish_lands_in_the_outbox_and_is_posted_to_the_webhook() {
    let bed = Bed::new();
    let socket = bed.dir().join("gw.sock");
    let (port, hook) = aither_test_support::http::serve(vec![
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    ]);
    bed.write("etc/aither/webhook.key", "hook-secret\n");
    let key = bed.root().join("etc/aither/webhook.key");
    configure_with(
        &bed,
        &socket,
        &format!("webhook = \"http://127.0.0.1:{port}/hook\"\nwebhook_key_file = \"{}\"\n", key.display()),
    );
    let (_model, _agentd) = post_waiting(&bed, &socket, "# Hello from the appliance");
    // Whoever decides sees what would be sent.
    let shown = bed.ok(&["approvals", "show", "post-1.1"]);
    assert!(shown.contains("content:  (26 bytes)\n  | # Hello from the appliance\n"), "{shown}");
    let done = bed.ok(&["approvals", "approve", "post-1.1"]);
    assert!(done.contains(&format!("and http://127.0.0.1:{port}/hook (HTTP 204)")), "{done}");
    let outbox = bed.root().join("var/lib/aither/outbox/post-1-post.md");
    assert_eq!(std::fs::read_to_string(&outbox).expect("outbox"), "# Hello from the appliance");
    let seen = hook.join().expect("webhook");
    assert_eq!(seen[0].request_line, "POST /hook HTTP/1.1");
    assert!(
        seen[0].headers.iter().any(|h| h.eq_ignore_ascii_case("authorization: Bearer hook-secret")),
        "{:?}",
        seen[0].headers
    );
    bed.wait_run("post-1", "completed", 10);
}

/// A webhook that counts the requests it gets and answers each after `delay`.
fn counting_webhook(delay: Duration) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead as _, Write as _};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                std::thread::sleep(delay);
                let mut s = s;
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            });
        }
    });
    (port, count)
}

#[test]
fn a_proposal_approved_twice_at_once_is_carried_out_once() {
    let bed = Bed::new();
    let socket = bed.dir().join("gw.sock");
    let (port, posts) = counting_webhook(Duration::from_secs(1));
    configure_with(&bed, &socket, &format!("webhook = \"http://127.0.0.1:{port}/hook\"\n"));
    let (_model, _agentd) = post_waiting(&bed, &socket, "# Once");
    // Two admins (or a double click) approve at once, and a deny lands meanwhile.
    let approve = || {
        bed.command(common::aitherctl())
            .args(["--session", "approvals", "approve", "post-1.1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
    };
    let (a, b) = (approve().expect("spawn"), approve().expect("spawn"));
    std::thread::sleep(Duration::from_millis(300));
    let deny = bed.ctl(&["approvals", "deny", "post-1.1"]);
    let outs = [a.wait_with_output().expect("a"), b.wait_with_output().expect("b")];
    let ok: Vec<&std::process::Output> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(ok.len(), 1, "exactly one approval carries it out: {outs:?}");
    let other = outs.iter().find(|o| !o.status.success()).expect("the other");
    assert!(String::from_utf8_lossy(&other.stderr).contains("proposal post-1.1 is already"), "{other:?}");
    assert!(!deny.status.success(), "the deny is refused while it is carried out: {deny:?}");
    assert!(String::from_utf8_lossy(&deny.stderr).contains("already in flight"), "{deny:?}");
    let run = bed.wait_run("post-1", "completed", 10);
    assert_eq!(run["approvals"][0]["state"], "done", "{run}");
    assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 1, "one POST");
}
