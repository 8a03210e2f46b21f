//! The agent runner end to end against the scripted stand-in for the gateway: the turns, the
//! tools carried out and refused, the proposals, the budgets, and what it leaves behind.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aither_api::workflow::{Proposal, StepBudget, StepOutcome, StepResult, StepSpec, Tool, SCHEMA_VERSION};
use aither_test_support::scripted::{tool_answers, ScriptedModel, Turn, COMPLETION_TOKENS};
use serde_json::{json, Value};

fn spec(tools: Vec<Tool>, outputs: &[&str], budget: StepBudget) -> StepSpec {
    StepSpec {
        schema_version: SCHEMA_VERSION,
        run_id: "run-7".into(),
        workflow: "heal-unit".into(),
        step: "diagnose".into(),
        model: "chat".into(),
        system_prompt: "You are the appliance's diagnostician.".into(),
        instructions: "Read the journal and write the diagnosis.".into(),
        tools,
        commands: vec![vec!["/bin/echo".into(), "tests passed".into()]],
        inputs: vec!["journal.txt".into()],
        outputs: outputs.iter().map(ToString::to_string).collect(),
        budget,
        embedding_model: "embedding".into(),
        index_bytes: 1 << 20,
        ..Default::default()
    }
}

const ROOMY: StepBudget = StepBudget { steps: 10, tokens: 1000, seconds: 60, turn_tokens: 1000 };

/// A workspace laid out as agentd lays it out, with the stand-in's socket beside it.
fn workspace(spec: &StepSpec) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("ws/inputs")).expect("inputs");
    std::fs::write(dir.path().join("ws/inputs/journal.txt"), "infer-qwen: out of memory, killed\n").expect("journal");
    std::fs::write(dir.path().join("ws/step.json"), serde_json::to_vec(spec).expect("spec")).expect("step.json");
    dir
}

fn run_agent(dir: &Path) -> (std::process::Output, Option<StepResult>) {
    let out = Command::new(env!("CARGO_BIN_EXE_aither-agent"))
        .arg("--workspace")
        .arg(dir.join("ws"))
        .arg("--gateway")
        .arg(dir.join("gw.sock"))
        .output()
        .expect("aither-agent runs");
    let result =
        std::fs::read(dir.join("ws/result.json")).ok().map(|r| serde_json::from_slice(&r).expect("result.json parses"));
    (out, result)
}

#[test]
fn a_step_reads_writes_proposes_and_its_refused_calls_are_recorded() {
    let mut s = spec(
        vec![Tool::ListFiles, Tool::ReadFile, Tool::WriteFile, Tool::RunCommand, Tool::Propose],
        &["diagnosis.md"],
        ROOMY,
    );
    s.act_on = vec!["infer-qwen".into()];
    let dir = workspace(&s);
    let model = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![
            Turn::call("list_files", json!({"path": "inputs"})),
            Turn::call("read_file", json!({"path": "inputs/journal.txt"})),
            Turn::Tools(vec![
                (
                    "write_file".into(),
                    json!({"path": "outputs/diagnosis.md", "content": "The worker ran out of memory."}),
                ),
                ("run_command".into(), json!({"command": "/bin/echo tests passed"})),
            ]),
            Turn::Tools(vec![
                ("fetch_url".into(), json!({"url": "http://169.254.169.254/latest/meta-data"})),
                ("write_file".into(), json!({"path": "step.json", "content": "{}"})),
                (
                    "propose".into(),
                    json!({"kind": "restart", "unit": "infer-qwen", "reason": "it was killed for memory"}),
                ),
            ]),
            Turn::text("The worker ran out of memory; I proposed restarting it."),
        ],
    );
    let (out, result) = run_agent(dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = result.expect("result.json");
    assert_eq!(r.outcome, StepOutcome::Completed);
    assert_eq!((r.run_id.as_str(), r.step.as_str(), r.turns), ("run-7", "diagnose", 5));
    assert_eq!(r.completion_tokens, 5 * COMPLETION_TOKENS);
    assert_eq!(r.summary, "The worker ran out of memory; I proposed restarting it.");
    assert_eq!(r.outputs, ["diagnosis.md"]);
    assert_eq!(
        r.proposals,
        [Proposal::Restart { unit: "infer-qwen".into(), reason: "it was killed for memory".into() }]
    );
    let refused: Vec<&str> = r.refused.iter().map(|c| c.tool.as_str()).collect();
    assert_eq!(refused, ["fetch_url", "write_file"], "{:?}", r.refused);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ws/outputs/diagnosis.md")).expect("output"),
        "The worker ran out of memory."
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run-7 diagnose"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What the model saw: the granted tools only, the briefing, each call's answer.
    let requests = model.requests();
    assert_eq!(requests.len(), 5);
    let offered: Vec<&str> =
        requests[0]["tools"].as_array().expect("tools").iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert_eq!(offered, ["read_file", "write_file", "list_files", "run_command", "propose"]);
    assert_eq!(requests[0]["model"], "chat");
    let briefing = requests[0]["messages"][1]["content"].as_str().expect("briefing");
    assert!(briefing.contains("inputs/journal.txt") && briefing.contains("outputs/diagnosis.md"), "{briefing}");
    let tool_answers = |i: usize| tool_answers(&requests[i]);
    assert_eq!(tool_answers(1), ["journal.txt (34 bytes)\n"]);
    assert_eq!(tool_answers(2)[1], "infer-qwen: out of memory, killed\n");
    assert!(
        tool_answers(3)[3].contains("exit status 0") && tool_answers(3)[3].contains("tests passed"),
        "{:?}",
        tool_answers(3)
    );
    let last = tool_answers(4);
    assert!(
        last[4].starts_with("refused: this step has no outbound") || last[4].starts_with("refused: fetch_url"),
        "{last:?}"
    );
    assert!(last[5].starts_with("refused:") && last[6].starts_with("proposed: restart infer-qwen"), "{last:?}");
    // The assistant's tool calls went back into the history with their ids.
    assert_eq!(requests[1]["messages"][2]["tool_calls"][0]["id"], "call_1_0");
    assert_eq!(requests[1]["messages"][3]["tool_call_id"], "call_1_0");

    let transcript = std::fs::read_to_string(dir.path().join("ws/transcript.jsonl")).expect("transcript");
    let events: Vec<Value> = transcript.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(events.iter().filter(|e| e["event"] == "tool").count(), 7);
    assert_eq!(events.last().expect("end")["event"], "end");
}

#[test]
fn each_budget_stops_the_step() {
    // Turns.
    let s = spec(vec![Tool::ListFiles], &[], StepBudget { steps: 2, tokens: 1000, seconds: 60, turn_tokens: 1000 });
    let dir = workspace(&s);
    let loop_turn = || Turn::call("list_files", json!({"path": "."}));
    let _m = ScriptedModel::start(&dir.path().join("gw.sock"), vec![loop_turn(), loop_turn(), loop_turn()]);
    let (_, r) = run_agent(dir.path());
    let r = r.expect("result");
    assert_eq!((r.outcome, r.turns), (StepOutcome::BudgetExhausted { budget: "steps".into() }, 2));

    // Generated tokens: the second request may ask only for what is left.
    let s = spec(vec![Tool::ListFiles], &[], StepBudget { steps: 10, tokens: 15, seconds: 60, turn_tokens: 1000 });
    let dir = workspace(&s);
    let m = ScriptedModel::start(&dir.path().join("gw.sock"), vec![loop_turn(), loop_turn(), loop_turn()]);
    let (_, r) = run_agent(dir.path());
    assert_eq!(r.expect("result").outcome, StepOutcome::BudgetExhausted { budget: "tokens".into() });
    let asked: Vec<u64> = m.requests().iter().filter_map(|q| q["max_tokens"].as_u64()).collect();
    assert_eq!(asked, [15, 5]);

    // Wall time: a model that does not answer in time.
    let s = spec(vec![Tool::ListFiles], &[], StepBudget { steps: 10, tokens: 1000, seconds: 1, turn_tokens: 1000 });
    let dir = workspace(&s);
    let _m = ScriptedModel::start(&dir.path().join("gw.sock"), vec![Turn::Stall(Duration::from_secs(3)), loop_turn()]);
    let started = std::time::Instant::now();
    let (out, r) = run_agent(dir.path());
    assert!(out.status.success());
    assert_eq!(r.expect("result").outcome, StepOutcome::BudgetExhausted { budget: "seconds".into() });
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[test]
fn outputs_not_written_are_asked_for_as_the_whole_answer() {
    // A direct step (everything it reads is in its briefing, it may only read and write):
    // no tool turns, each output asked for at once and written from the answer.
    let s = spec(vec![Tool::ReadFile, Tool::WriteFile], &["report.md", "notes.md"], ROOMY);
    let dir = workspace(&s);
    let m = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![Turn::text("```markdown\n# Report\nThe worker ran out of memory.\n```"), Turn::text("notes")],
    );
    let (_, r) = run_agent(dir.path());
    let r = r.expect("result");
    assert_eq!((r.outcome, r.turns), (StepOutcome::Completed, 2));
    assert_eq!(r.outputs, ["notes.md", "report.md"]);
    let read = |f: &str| std::fs::read_to_string(dir.path().join("ws/outputs").join(f)).expect("output");
    assert_eq!(read("report.md"), "# Report\nThe worker ran out of memory.\n", "the fence is taken off");
    assert_eq!(read("notes.md"), "notes\n");
    let requests = m.requests();
    let briefing = requests[0]["messages"][1]["content"].as_str().expect("briefing");
    assert!(briefing.contains("inputs/journal.txt:\n```\ninfer-qwen: out of memory, killed\n```"), "{briefing}");
    assert!(requests[0].get("tools").is_none(), "a direct step is offered no tools");
    let ask = |i: usize| requests[i]["messages"].as_array().expect("messages").last().expect("last")["content"].clone();
    assert_eq!(ask(0), "Now write outputs/report.md. Answer with the file's whole content only, no tool call.");
    assert_eq!(ask(1), "Now write outputs/notes.md. Answer with the file's whole content only, no tool call.");

    // A step with tools to act with: its tool turns first, then what it did not write.
    let s = spec(vec![Tool::WriteFile, Tool::RunCommand], &["report.md"], ROOMY);
    let dir = workspace(&s);
    let m = ScriptedModel::start(&dir.path().join("gw.sock"), vec![Turn::text("done"), Turn::text("# Report")]);
    let (_, r) = run_agent(dir.path());
    assert_eq!(r.expect("result").outcome, StepOutcome::Completed);
    assert!(m.requests()[0].get("tools").is_some() && m.requests()[1].get("tools").is_none());

    // An output with a format: asked for constrained by it, and write_file may not write it.
    let mut s = spec(vec![Tool::WriteFile, Tool::RunCommand], &["d.json"], ROOMY);
    let schema = json!({"type": "object", "properties": {"fix": {"enum": ["restart", "none"]}}, "required": ["fix"]});
    s.formats.insert("d.json".into(), aither_api::workflow::OutputFormat::JsonSchema { schema: schema.clone() });
    let dir = workspace(&s);
    let m = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![
            Turn::call("write_file", json!({"path": "outputs/d.json", "content": "{}"})),
            Turn::text("done"),
            Turn::text("{\"fix\": \"none\"}"),
        ],
    );
    let (_, r) = run_agent(dir.path());
    assert_eq!(r.expect("result").outcome, StepOutcome::Completed);
    let requests = m.requests();
    assert!(tool_answers(&requests[1])[0].contains("written from your answer"), "{:?}", tool_answers(&requests[1]));
    assert_eq!(requests[2]["response_format"]["json_schema"]["schema"], schema);
    assert_eq!(std::fs::read_to_string(dir.path().join("ws/outputs/d.json")).expect("d.json"), "{\"fix\": \"none\"}\n");

    // An empty answer is no output.
    let s = spec(vec![Tool::WriteFile], &["report.md"], ROOMY);
    let dir = workspace(&s);
    let _m = ScriptedModel::start(&dir.path().join("gw.sock"), vec![Turn::text("  ")]);
    let (_, r) = run_agent(dir.path());
    assert_eq!(
        r.expect("result").outcome,
        StepOutcome::Failed { reason: "the model gave no content for outputs/report.md".into() }
    );
}

#[test]
fn a_repeated_call_or_errors_in_a_row_end_the_tool_turns() {
    let s = spec(vec![Tool::ReadFile, Tool::RunCommand, Tool::WriteFile], &["report.md"], ROOMY);
    let dir = workspace(&s);
    let again = || Turn::call("read_file", json!({"path": "inputs/journal.txt"}));
    let m = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![again(), again(), again(), Turn::text("# Report"), again()],
    );
    let (_, r) = run_agent(dir.path());
    let r = r.expect("result");
    assert_eq!((r.outcome, r.turns), (StepOutcome::Completed, 4), "three calls, two of them repeats, then the output");
    let requests = m.requests();
    assert!(
        tool_answers(&requests[2])[1].starts_with("You already called read_file"),
        "{:?}",
        tool_answers(&requests[2])
    );

    // A name without its folder is read from inputs/, said so; a missing one lists what is there.
    let dir = workspace(&s);
    let m = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![
            Turn::call("read_file", json!({"path": "journal.txt"})),
            Turn::call("read_file", json!({"path": "nope.txt"})),
            Turn::call("read_file", json!({"path": "nope2.txt"})),
            Turn::call("read_file", json!({"path": "nope3.txt"})),
            Turn::text("# Report"),
        ],
    );
    let (_, r) = run_agent(dir.path());
    assert_eq!(r.expect("result").turns, 5, "three errors in a row end the tool turns");
    let requests = m.requests();
    assert!(tool_answers(&requests[1])[0].starts_with("[inputs/journal.txt: paths are relative"));
    let missing = &tool_answers(&requests[2])[1];
    assert!(missing.starts_with("error: ") && missing.contains("The files there are: inputs/journal.txt"), "{missing}");
}

#[test]
fn a_conversation_past_the_context_asks_for_fewer_tokens_then_gives_up() {
    let s = spec(vec![Tool::ListFiles], &[], ROOMY);
    let dir = workspace(&s);
    let m = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![Turn::ContextFull, Turn::ContextFull, Turn::text("done")],
    );
    let (_, r) = run_agent(dir.path());
    let r = r.expect("result");
    assert_eq!((r.outcome, r.turns), (StepOutcome::Completed, 1), "the refused asks are not turns");
    let asked: Vec<u64> = m.requests().iter().filter_map(|q| q["max_tokens"].as_u64()).collect();
    assert_eq!(asked, [1000, 500, 250]);

    let dir = workspace(&s);
    let _m = ScriptedModel::start(&dir.path().join("gw.sock"), vec![Turn::ContextFull; 8]);
    let (_, r) = run_agent(dir.path());
    match r.expect("result").outcome {
        StepOutcome::Failed { reason } => {
            assert!(reason.starts_with("the conversation no longer fits the model's context"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_gateway_refusal_or_no_gateway_fails_the_step_with_the_reason() {
    let s = spec(vec![], &[], ROOMY);
    let dir = workspace(&s);
    let _m = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![Turn::Error(404, "model 'chat' is not in the plan".into())],
    );
    let (_, r) = run_agent(dir.path());
    assert_eq!(
        r.expect("result").outcome,
        StepOutcome::Failed { reason: "the gateway answered 404: model 'chat' is not in the plan".into() }
    );

    // 503 (a model still loading) is asked again, within the step's time.
    let dir = workspace(&s);
    let _m = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![Turn::Error(503, "the model is still loading".into()), Turn::text("done")],
    );
    let (_, r) = run_agent(dir.path());
    let r = r.expect("result");
    assert_eq!((r.outcome, r.turns), (StepOutcome::Completed, 1));

    let dir = workspace(&s);
    let (out, r) = run_agent(dir.path());
    assert!(out.status.success());
    let StepOutcome::Failed { reason } = r.expect("result").outcome else { panic!("not failed") };
    assert!(reason.starts_with("cannot reach the gateway at ") && reason.contains("gw.sock"), "{reason}");
}

#[test]
fn a_bad_step_document_is_an_error_naming_the_file() {
    let s = spec(vec![], &[], ROOMY);
    let dir = workspace(&s);
    std::fs::write(dir.path().join("ws/step.json"), r#"{"schema_version": 1, "run_id": "r", "extra": true}"#)
        .expect("write");
    let (out, r) = run_agent(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ws/step.json: unknown field `extra`"), "{err}");
    assert!(r.is_none(), "no result for a step that never began");

    let mut future = serde_json::to_value(&s).expect("spec");
    future["schema_version"] = json!(2);
    std::fs::write(dir.path().join("ws/step.json"), future.to_string()).expect("write");
    let (out, _) = run_agent(dir.path());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schema_version 2 is not 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn search_docs_finds_the_passage_by_meaning_within_the_index_bound() {
    let mut s = spec(vec![Tool::SearchDocs], &[], ROOMY);
    let dir = workspace(&s);
    std::fs::create_dir_all(dir.path().join("ws/inputs/docs")).expect("docs");
    std::fs::write(
        dir.path().join("ws/inputs/docs/backup.md"),
        "# Backups\nThe backup runs nightly and writes to the storage server.\n",
    )
    .expect("doc");
    std::fs::write(
        dir.path().join("ws/inputs/docs/gpu.md"),
        "# Workers\nA worker killed for lack of VRAM restarts with fewer GPU layers.\n",
    )
    .expect("doc");
    let search = || Turn::call("search_docs", json!({"query": "why was the worker killed: VRAM"}));
    let m = ScriptedModel::start(&dir.path().join("gw.sock"), vec![search(), Turn::text("found")]);
    let (_, r) = run_agent(dir.path());
    assert_eq!(r.expect("result").outcome, StepOutcome::Completed);
    let answer = &tool_answers(&m.requests()[1])[0];
    // The backup passage scores below half the best: left out.
    assert!(answer.starts_with("1 of 3 passages:\n[1] inputs/docs/gpu.md lines 1-2"), "{answer}");

    // An index bound of one vector: the rest is left out, and the answer says so.
    s.index_bytes = 64 * 4;
    let dir2 = workspace(&s);
    std::fs::create_dir_all(dir2.path().join("ws/inputs/docs")).expect("docs");
    std::fs::write(dir2.path().join("ws/inputs/docs/gpu.md"), "VRAM\n").expect("doc");
    let m = ScriptedModel::start(&dir2.path().join("gw.sock"), vec![search(), Turn::text("found")]);
    run_agent(dir2.path());
    let answer = &tool_answers(&m.requests()[1])[0];
    assert!(answer.starts_with("1 of 1 passages (1 more left out: the index is full)"), "{answer}");
}

#[test]
fn a_deciding_step_must_call_propose_and_may_propose_none() {
    let mut s = spec(vec![Tool::Propose], &[], ROOMY);
    s.decide = true;
    s.act_on = vec!["flaky".into()];
    s.proposals = vec![
        aither_api::workflow::ProposalKind::Restart,
        aither_api::workflow::ProposalKind::Stop,
        aither_api::workflow::ProposalKind::Reload,
    ];
    let dir = workspace(&s);
    let m = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![Turn::call("propose", json!({"kind": "none", "unit": "flaky", "reason": "a human must fix the file"}))],
    );
    let (_, r) = run_agent(dir.path());
    let r = r.expect("result");
    assert_eq!((r.outcome, r.turns, r.proposals.len()), (StepOutcome::Completed, 1, 0), "none: nothing proposed");
    let request = &m.requests()[0];
    assert_eq!(request["tool_choice"], json!({"type": "function", "function": {"name": "propose"}}));
    let params = &request["tools"][0]["function"]["parameters"];
    assert_eq!(params["properties"]["kind"]["enum"], json!(["restart", "stop", "reload", "none"]));
    assert_eq!(params["properties"]["unit"]["enum"], json!(["flaky"]));
    assert_eq!(params["required"], json!(["kind", "unit", "reason"]));

    // A kind the step may not propose, or another unit, is refused and recorded.
    let dir = workspace(&s);
    let _m = ScriptedModel::start(
        &dir.path().join("gw.sock"),
        vec![Turn::Tools(vec![
            ("propose".into(), json!({"kind": "publish", "file": "outputs/x", "reason": "r"})),
            ("propose".into(), json!({"kind": "stop", "unit": "sshd", "reason": "r"})),
            ("propose".into(), json!({"kind": "restart", "unit": "flaky", "reason": "its database is back"})),
        ])],
    );
    let (_, r) = run_agent(dir.path());
    let r = r.expect("result");
    assert_eq!(r.proposals, [Proposal::Restart { unit: "flaky".into(), reason: "its database is back".into() }]);
    let refused: Vec<&str> = r.refused.iter().map(|c| c.reason.as_str()).collect();
    assert!(
        refused[0].contains("may propose restart, stop, reload only") && refused[1].contains("flaky only"),
        "{refused:?}"
    );
}

#[test]
fn known_signatures_found_in_the_inputs_are_named_in_the_briefing() {
    let mut s = spec(vec![Tool::ReadFile], &["d.md"], ROOMY);
    s.signatures.insert("out_of_memory".into(), vec!["OUT OF MEMORY".into(), "oom-kill".into()]);
    s.signatures.insert("no_space_left".into(), vec!["No space left".into()]);
    let dir = workspace(&s);
    let m = ScriptedModel::start(&dir.path().join("gw.sock"), vec![Turn::text("the worker ran out of memory")]);
    let (_, r) = run_agent(dir.path());
    assert_eq!(r.expect("result").outcome, StepOutcome::Completed);
    let briefing = m.requests()[0]["messages"][1]["content"].as_str().unwrap_or_default().to_string();
    assert!(
        briefing.contains(
            "Known signatures found in the inputs:\n- out_of_memory: inputs/journal.txt line 1: infer-qwen: out of memory, killed"
        ),
        "{briefing}"
    );
    assert!(!briefing.contains("no_space_left"), "{briefing}");
}

#[test]
fn a_proposal_read_from_an_earlier_answer_needs_no_turn() {
    let mut s = spec(vec![Tool::Propose], &[], ROOMY);
    s.inputs = vec!["diagnosis.json".into()];
    s.act_on = vec!["flaky".into()];
    s.proposals = vec![aither_api::workflow::ProposalKind::Restart, aither_api::workflow::ProposalKind::Stop];
    s.propose_from = Some(aither_api::workflow::ProposeFrom {
        input: "diagnosis.json".into(),
        kind: "fix".into(),
        reason: "why".into(),
    });
    for (fix, proposals) in [
        ("restart", vec![Proposal::Restart { unit: "flaky".into(), reason: "its database is back".into() }]),
        ("none", vec![]),
        ("reload", vec![]), // not a kind this step may propose: refused
    ] {
        let dir = workspace(&s);
        std::fs::write(
            dir.path().join("ws/inputs/diagnosis.json"),
            json!({"fix": fix, "why": "its database is back"}).to_string(),
        )
        .expect("diagnosis");
        let m = ScriptedModel::start(&dir.path().join("gw.sock"), vec![]);
        let (_, r) = run_agent(dir.path());
        let r = r.expect("result");
        assert_eq!((r.outcome.clone(), r.turns), (StepOutcome::Completed, 0), "{fix}: {r:?}");
        assert_eq!(r.proposals, proposals, "{fix}");
        assert_eq!(r.refused.len(), usize::from(fix == "reload"), "{fix}: {:?}", r.refused);
        assert!(m.requests().is_empty(), "the model was not asked");
    }
}

#[test]
fn the_signatures_found_narrow_a_property_of_a_json_output() {
    use aither_agent::step::narrowed;
    let branch = |c: &str| json!({"type": "object", "properties": {"class": {"const": c}, "fix": {"const": "none"}}});
    let schema = json!({"anyOf": [branch("a"), branch("b"), branch("c")]});
    assert_eq!(narrowed(&schema, "class", &["b".into()]), json!({"anyOf": [branch("b")]}));
    assert_eq!(narrowed(&schema, "class", &["c".into(), "a".into()]), json!({"anyOf": [branch("a"), branch("c")]}));
    assert_eq!(narrowed(&schema, "class", &[]), schema, "nothing found: as it is");
    assert_eq!(narrowed(&schema, "class", &["zzz".into()]), schema, "nothing would be left: as it is");
    let flat = json!({"type": "object", "properties": {"verdict": {"enum": ["merge", "do not merge"]}}});
    assert_eq!(
        narrowed(&flat, "verdict", &["do not merge".into()])["properties"]["verdict"]["enum"],
        json!(["do not merge"])
    );
}

#[test]
fn the_signatures_found_narrow_a_grammar_rule_of_literals() {
    use aither_agent::step::narrowed_grammar;
    let gbnf = "root ::= \"Recommendation: \" verdict \"\\n\" rest\nverdict ::= \"merge after changes\" | \"do not merge\" | \"merge\"\nrest ::= [^\\x00]+";
    let narrowed = narrowed_grammar(gbnf, "verdict", &["merge".into(), "do not merge".into()]);
    assert_eq!(
        narrowed,
        "root ::= \"Recommendation: \" verdict \"\\n\" rest\nverdict ::= \"do not merge\" | \"merge\"\nrest ::= [^\\x00]+"
    );
    assert_eq!(narrowed_grammar(gbnf, "verdict", &[]), gbnf, "nothing found: as it is");
    assert_eq!(narrowed_grammar(gbnf, "verdict", &["zzz".into()]), gbnf, "nothing would be left: as it is");
    assert_eq!(narrowed_grammar(gbnf, "rest", &["merge".into()]), gbnf, "not a choice of literals: as it is");
    assert_eq!(narrowed_grammar(gbnf, "verdic", &["merge".into()]), gbnf, "a rule is named whole");
}

#[test]
fn narrow_first_keeps_the_first_label_found_in_the_formats_order() {
    use aither_agent::step::first_in_order;
    use aither_api::workflow::OutputFormat;
    let found: Vec<String> = vec!["merge".into(), "do not merge".into()];
    let grammar = OutputFormat::Grammar {
        gbnf: "root ::= verdict\nverdict ::= \"do not merge\" | \"merge after changes\" | \"merge\"".into(),
    };
    assert_eq!(first_in_order(&grammar, "verdict", &found), ["do not merge"]);
    let schema = OutputFormat::JsonSchema {
        schema: json!({"anyOf": [{"properties": {"class": {"const": "merge"}}}, {"properties": {"class": {"enum": ["do not merge"]}}}]}),
    };
    assert_eq!(first_in_order(&schema, "class", &found), ["merge"]);
    let flat = OutputFormat::JsonSchema { schema: json!({"properties": {"class": {"enum": ["x", "do not merge"]}}}) };
    assert_eq!(first_in_order(&flat, "class", &found), ["do not merge"]);
    assert_eq!(first_in_order(&flat, "other", &found), found, "nothing listed: all found");
}

#[test]
fn a_cite_rule_chooses_among_the_documents_the_inputs_name() {
    use aither_agent::evidence::document_names;
    use aither_agent::step::chosen_from;
    let mut names = Vec::new();
    document_names(
        "[1] inputs/docs/backup-policy.md lines 1-5\n[2] inputs/docs/On_Call.TXT\nsee backup-policy.md, .hidden.md, run.sh and a.b/c.html.",
        &mut names,
    );
    assert_eq!(names, ["backup-policy.md", "On_Call.TXT", "c.html"]);
    let gbnf = "root ::= line\nline ::= [a-z ]{5,30} \" [\" file \"]\\n\"\nfile ::= [a-z0-9]+ \".md\"";
    assert_eq!(
        chosen_from(gbnf, "file", &names),
        "root ::= line\nline ::= [a-z ]{5,30} \" [\" file \"]\\n\"\nfile ::= \"backup-policy.md\" | \"On_Call.TXT\" | \"c.html\""
    );
    assert_eq!(chosen_from(gbnf, "file", &[]), gbnf, "none named: as it is");
    assert_eq!(chosen_from(gbnf, "fil", &names), gbnf, "a rule is named whole");
    assert_eq!(chosen_from(gbnf, "file", &["a\"b.md".into()]), gbnf, "a name that is not plain is left out");
}
