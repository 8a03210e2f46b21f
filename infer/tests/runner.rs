//! A workflow step's runner (`aither-agent`) against the real aither-infer on a real model
//! (SmolLM2-135M-Instruct), through its Unix socket as through the gateway's: the granted
//! tools reach the model through its own chat template (the generic JSON form), the request
//! with its tools, `tool_choice` and `max_tokens` is accepted, tokens are counted against the
//! budget, the declared output is asked for as a JSON answer constrained by its schema on the
//! model's real 49,152-token vocabulary, and the step ends with a typed result. The shape of
//! each conversation is tested against a scripted model in `agent/tests/step.rs`; how often
//! the answers are right, by the eval (`make eval`).

mod common;

use std::time::Duration;

use aither_api::workflow::{OutputFormat, StepBudget, StepOutcome, StepResult, StepSpec, Tool, SCHEMA_VERSION};

/// aither-infer on `model`, one thread, serving on `sock`, once it has loaded the model;
/// stopped when the guard goes.
fn serve(model: &std::path::Path, sock: &std::path::Path, extra: &[&str]) -> aither_test_support::Guard {
    let worker = std::process::Command::new(env!("CARGO_BIN_EXE_aither-infer"))
        .arg("--model")
        .arg(model)
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .args(["--threads", "1"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn aither-infer");
    let worker = aither_test_support::Guard(worker);
    aither_test_support::until("the worker's model", 120, || {
        sock.exists() && common::unix_request(sock, "GET", "/health", "").0 == 200
    });
    worker
}

#[test]
fn a_step_runs_to_a_typed_result_against_the_real_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("smollm2.sock");
    let model = aither_test_support::test_model("smollm2-135m-instruct-q4_1.gguf");
    let worker = serve(&model, &sock, &["--ctx", "4096", "--parallel", "1"]);

    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("inputs")).expect("inputs");
    std::fs::write(ws.join("inputs/journal.txt"), "infer-qwen: Killed process 4242 (aither-infer): out of memory\n")
        .expect("journal");
    let budget = StepBudget { steps: 6, tokens: 2000, seconds: 120, turn_tokens: 256 };
    let schema = serde_json::json!({"type": "object", "additionalProperties": false, "required": ["cause", "fix"],
        "properties": {"cause": {"type": "string", "maxLength": 120}, "fix": {"enum": ["restart", "stop", "none"]}}});
    let spec = StepSpec {
        schema_version: SCHEMA_VERSION,
        run_id: "tiny-1".into(),
        workflow: "tiny".into(),
        step: "diagnose".into(),
        model: "chat".into(),
        system_prompt: "You are the diagnostician.".into(),
        instructions: "Read the journal, propose one action if one helps, and write outputs/diagnosis.json.".into(),
        tools: vec![Tool::ReadFile, Tool::Propose],
        commands: vec![],
        inputs: vec!["journal.txt".into()],
        outputs: vec!["diagnosis.json".into()],
        budget,
        embedding_model: "embedding".into(),
        index_bytes: 0,
        seed: Some(7),
        formats: [("diagnosis.json".to_string(), OutputFormat::JsonSchema { schema })].into(),
        ..Default::default()
    };
    std::fs::write(ws.join("step.json"), serde_json::to_vec(&spec).expect("spec")).expect("step.json");
    let out = std::process::Command::new(aither_test_support::bin("aither-agent"))
        .arg("--workspace")
        .arg(&ws)
        .arg("--gateway")
        .arg(&sock)
        .output()
        .expect("aither-agent");
    drop(worker);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim());
    let result: StepResult =
        serde_json::from_slice(&std::fs::read(ws.join("result.json")).expect("result.json")).expect("typed");
    assert_eq!(
        result.outcome,
        StepOutcome::Completed,
        "{}",
        std::fs::read_to_string(ws.join("transcript.jsonl")).unwrap_or_default()
    );
    assert!(result.turns >= 1 && result.turns <= budget.steps, "{result:?}");
    assert!(result.prompt_tokens > 0 && result.completion_tokens > 0, "{result:?}");
    // max_tokens is what the budget has left: the whole step never generates more.
    assert!(result.completion_tokens <= u64::from(budget.tokens), "{result:?}");
    assert!(result.seconds < Duration::from_secs(120).as_secs_f64());
    // The declared output is the model's answer, constrained by its schema: it always parses.
    assert_eq!(result.outputs, ["diagnosis.json"], "{result:?}");
    let diagnosis: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.join("outputs/diagnosis.json")).expect("diagnosis")).expect("JSON");
    assert!(["restart", "stop", "none"].contains(&diagnosis["fix"].as_str().unwrap_or("")), "{diagnosis}");
    assert!(diagnosis["cause"].as_str().is_some_and(|c| c.chars().count() <= 120), "{diagnosis}");
    let transcript = std::fs::read_to_string(ws.join("transcript.jsonl")).expect("transcript");
    assert!(transcript.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{transcript}");
}

/// `search_docs`'s index through the real embedding worker (all-MiniLM-L6-v2, real weights):
/// the passage that answers the question comes first though it shares few of its words.
#[test]
fn search_docs_ranks_by_meaning_with_the_real_embedding_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("embed.sock");
    let worker = serve(&common::embedding_model(), &sock, &["--ctx", "512"]);
    let ws_dir = dir.path().join("ws");
    std::fs::create_dir_all(ws_dir.join("inputs/docs")).expect("docs");
    for (name, text) in [
        ("backup.md", "The nightly backup copies the database to the storage server at three in the morning."),
        ("gpu.md", "When the graphics card runs out of memory, the inference process is terminated by the kernel."),
        ("holidays.md", "The office is closed on public holidays and during the last week of December."),
    ] {
        std::fs::write(ws_dir.join("inputs/docs").join(name), text).expect("doc");
    }
    let ws = aither_agent::workspace::Workspace::open(&ws_dir).expect("workspace");
    let gateway =
        aither_agent::gateway::Gateway::new(aither_agent::gateway::Endpoint::Unix(sock.clone())).expect("client");
    let index = aither_agent::search::Index::build(&ws, &gateway, "embedding", 1 << 20, Duration::from_secs(60))
        .expect("index");
    let query = gateway
        .embed("embedding", &["why did the model worker crash on the GPU?".to_string()], Duration::from_secs(30))
        .expect("query");
    let best: Vec<&str> = index.nearest(&query[0], 3).iter().map(|(_, p)| p.file.as_str()).collect();
    drop(worker);
    assert_eq!(index.len(), 3);
    assert_eq!(best[0], "inputs/docs/gpu.md", "{best:?}");
}
