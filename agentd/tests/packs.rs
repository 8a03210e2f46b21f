//! The five workflow packs agentd ships, each end to end in development mode against a
//! scripted stand-in for the model: the steps run as `aither-agent` units, their artifacts are
//! handed on and kept, their proposals wait for a human, and what comes after a decision sees
//! it. The same packs run on the real aither-infer (tiny model) in `infer/tests/packs.rs` and,
//! under SELinux enforcing, in the VM test bed.

mod common;

use std::path::Path;
use std::process::Command;

use aither_test_support::scripted::{ScriptedModel, Turn};
use common::{Bed, FLAKY};
use serde_json::{json, Value};

/// A bed whose steps talk to a scripted model at its `gw.sock`, with `packs` enabled the way
/// first boot enables them.
fn bed_with(packs: &[&str]) -> (Bed, std::path::PathBuf) {
    let bed = Bed::new();
    let socket = bed.dir().join("gw.sock");
    bed.configure_workflows(&socket, "");
    let list: Vec<String> = packs.iter().map(|p| format!("{p:?}")).collect();
    bed.write("etc/aither/workflows-enabled.toml", &format!("enabled = [{}]\n", list.join(", ")));
    (bed, socket)
}

fn kept(bed: &Bed, run: &str, step: &str, file: &str) -> String {
    let path = bed.state_dir().join(format!("workflows/runs/{run}/{step}/outputs/{file}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The briefing a request carried (the step's first user message).
fn briefing(request: &Value) -> String {
    request["messages"][1]["content"].as_str().unwrap_or_default().to_string()
}

#[test]
fn devops_diagnoses_a_failed_unit_restarts_it_after_approval_and_reports() {
    let (bed, socket) = bed_with(&["devops"]);
    bed.write("etc/aither/units.d/flaky.toml", FLAKY);
    let diagnosis = json!({"unit": "flaky", "state": "failed", "evidence": ["flaky: database connection refused"],
        "class": "connection_refused", "fix": "restart", "cause": "its database refused the connection",
        "why": "the database is back"});
    let model = ScriptedModel::start(
        &socket,
        vec![
            // detect: its journal and the status in its briefing, the diagnosis its answer;
            // fix proposes the diagnosis's fix without asking the model again
            Turn::text(&diagnosis.to_string()),
            // report, once the proposal is decided
            Turn::text("# flaky\nRestarted after approval; running."),
        ],
    );
    let _agentd = bed.agentd();
    bed.wait_up(20);

    // flaky failed at boot: the pack's run goes through detect and fix, and the report
    // waits for the decision.
    let run = bed.wait_run("devops-1", "awaiting_approval", 60);
    assert_eq!(run["trigger"], "unit flaky failed");
    assert_eq!(run["steps"][1]["result"]["proposals"][0]["kind"], "restart");
    assert_eq!(run["steps"][2]["state"], "pending", "{run:#}");
    let requests = model.requests();
    assert_eq!(requests.len(), 1, "detect only, so far: the fix is the diagnosis's");
    let detect = briefing(&requests[0]);
    assert!(detect.contains("flaky: database connection refused"), "the journal, inline: {detect}");
    assert!(detect.contains("Known signatures found in the inputs:\n- connection_refused:"), "{detect}");
    assert_eq!(requests[0]["response_format"]["type"], "json_schema", "the diagnosis is constrained");
    let ask =
        requests[0]["messages"].as_array().and_then(|m| m.last()).map(|m| m["content"].clone()).unwrap_or_default();
    assert_eq!(ask, "The known signature found: connection_refused.\nNow write outputs/diagnosis.json. Answer with the JSON document only.");
    assert_eq!(run["steps"][1]["result"]["proposals"][0]["unit"], "flaky");
    assert_eq!(run["steps"][1]["result"]["proposals"][0]["reason"], "the database is back", "the diagnosis's why");
    let kept_diagnosis: Value =
        serde_json::from_str(&kept(&bed, "devops-1", "detect", "diagnosis.json")).expect("json");
    assert_eq!(kept_diagnosis["fix"], "restart");

    assert!(bed.ok(&["approvals", "approve", "devops-1.1"]).starts_with("devops-1.1 approved: restart flaky"));
    bed.wait_state("flaky", "running", 10);
    let run = bed.wait_run("devops-1", "completed", 30);
    assert_eq!(run["steps"][2]["result"]["outcome"], "completed");
    let report = briefing(&model.requests()[1]);
    assert!(report.contains("\"action\":\"restart flaky\"") && report.contains("\"state\":\"done\""), "{report}");
    assert!(kept(&bed, "devops-1", "report", "report.md").contains("Restarted after approval"));
}

#[test]
fn research_answers_from_a_folder_with_citations_once_enabled() {
    let (bed, socket) = bed_with(&[]);
    let docs = bed.dir().join("docs");
    std::fs::create_dir_all(&docs).expect("docs");
    std::fs::write(
        docs.join("gpu-incident.txt"),
        "The model worker crashed on the GPU: the context grew to 32k tokens and the GPU ran out of memory.\n",
    )
    .expect("doc");
    std::fs::write(docs.join("kitchen.txt"), "Bread rises overnight in a cool kitchen; bake it at 230 degrees.\n")
        .expect("doc");
    std::fs::write(docs.join("garden.txt"), "Tomatoes want sun, water at the root and a stake by June.\n")
        .expect("doc");
    let model = ScriptedModel::start(
        &socket,
        vec![
            // gather: the passages found for the question are its sources (no model turn)
            // synthesize
            Turn::text("It ran out of GPU memory at 32k tokens [gpu-incident.txt]."),
            // report
            Turn::text(
                "# Why the worker crashed\nOut of GPU memory [gpu-incident.txt].\n\n## Sources\n- gpu-incident.txt",
            ),
        ],
    );
    let _agentd = bed.agentd();
    bed.wait_up(20);
    let docs_input = format!("docs={}", docs.display());
    let question = "question=Why did the model worker crash?";

    let off = bed.ctl(&["workflows", "run", "research", "--input", question, "--input", &docs_input]);
    assert!(stderr(&off).contains("research is disabled: `aitherctl workflows enable research`"), "{}", stderr(&off));
    assert!(bed.ok(&["workflows", "list"]).lines().any(|l| l.starts_with("research") && l.contains(" off ")));
    assert_eq!(bed.ok(&["workflows", "enable", "research"]).trim(), "research enabled");
    let show = bed.ok(&["workflows", "show", "research"]);
    assert!(show.contains("enabled:  yes") && show.contains("input:    docs (directory, required)"), "{show}");
    assert!(show.contains("model:    chat: the local model"), "{show}");

    let missing = bed.ctl(&["workflows", "run", "research", "--input", question]);
    assert!(stderr(&missing).contains("research: input docs: required"), "{}", stderr(&missing));
    let unknown = bed.ctl(&[
        "workflows",
        "run",
        "research",
        "--input",
        question,
        "--input",
        &docs_input,
        "--input",
        "colour=red",
    ]);
    assert!(stderr(&unknown).contains("input \"colour\": research takes no such input (it takes: docs, question)"));

    bed.ok(&["workflows", "run", "research", "--input", question, "--input", &docs_input]);
    let run = bed.wait_run("research-1", "completed", 60);
    assert_eq!(run["inputs"]["question"], "Why did the model worker crash?");
    let requests = model.requests();
    let found = briefing(&requests[0]);
    assert!(found.contains("[1] inputs/docs/gpu-incident.txt"), "the incident ranks first in the sources: {found}");
    let sources = kept(&bed, "research-1", "gather", "sources.md");
    assert!(sources.contains(" of 3 passages:\n[1] inputs/docs/gpu-incident.txt"), "{sources}");
    // The answer's citations: a choice of the documents the sources name, best first.
    let cite = requests.iter().find_map(|r| r["grammar"].as_str()).unwrap_or_default();
    assert!(cite.contains("file ::= \"gpu-incident.txt\""), "{cite}");
    assert!(
        requests[0]["messages"].to_string().contains("question: Why did the model worker crash?"),
        "the question reaches the step"
    );
    assert!(kept(&bed, "research-1", "report", "report.md").contains("[gpu-incident.txt]"));
    assert_eq!(bed.ok(&["workflows", "disable", "research"]).trim(), "research disabled");
    let saved = std::fs::read_to_string(bed.root().join("etc/aither/workflows-enabled.toml")).expect("switches");
    assert!(!saved.contains("research"), "{saved}");
}

#[test]
fn the_content_pipeline_publishes_its_edited_article_after_approval() {
    let (bed, socket) = bed_with(&["content-pipeline"]);
    let article = "# Local models\nThey keep your data at home.";
    let _model = ScriptedModel::start(
        &socket,
        vec![
            // research: no sources given, the folder is empty (the search says so)
            Turn::text("briefed"),
            Turn::text("Angle: privacy. Check: latency figures."),
            // write
            Turn::text("# Local models\nThey keep your data at home, really."),
            // edit: the article, then the edits
            Turn::text(article),
            Turn::text("Cut 'really'."),
            // publish
            // publish: it decides, one call
            Turn::call(
                "propose",
                json!({"kind": "publish", "file": "inputs/article.md", "reason": "edited and supported"}),
            ),
        ],
    );
    let _agentd = bed.agentd();
    bed.wait_up(20);
    bed.ok(&["workflows", "run", "content-pipeline", "--input", "topic=Why run models locally, for small offices"]);
    let run = bed.wait_run("content-pipeline-1", "awaiting_approval", 60);
    let steps: Vec<&str> = run["steps"].as_array().expect("steps").iter().filter_map(|s| s["state"].as_str()).collect();
    assert_eq!(steps, ["done", "done", "done", "done"]);
    let done = bed.ok(&["approvals", "approve", "content-pipeline-1.1"]);
    assert!(done.starts_with("content-pipeline-1.1 approved: publish outputs/article.md"), "{done}");
    let outbox = bed.root().join("var/lib/aither/outbox/content-pipeline-1-article.md");
    assert_eq!(std::fs::read_to_string(outbox).expect("published"), format!("{article}\n"));
    bed.wait_run("content-pipeline-1", "completed", 10);
    assert_eq!(kept(&bed, "content-pipeline-1", "edit", "edits.md"), "Cut 'really'.\n");
}

#[test]
fn the_social_media_manager_posts_its_schedule_after_approval_and_analyses_it() {
    let (bed, socket) = bed_with(&["social-media"]);
    let schedule = json!([{"publish_at": "2026-12-03T09:00:00Z", "text": "Your models, your machine."}]).to_string();
    let model = ScriptedModel::start(
        &socket,
        vec![
            Turn::text("1. Your models, your machine."),
            Turn::text(&schedule),
            // post: it decides, one call
            Turn::call("propose", json!({"kind": "publish", "file": "schedule.json", "reason": "one post, in order"})),
            // analyse, after the decision
            Turn::text("One post went out at 09:00."),
        ],
    );
    let _agentd = bed.agentd();
    bed.wait_up(20);
    bed.ok(&["workflows", "run", "social-media", "--input", "topic=local AI, plain voice"]);
    let run = bed.wait_run("social-media-1", "awaiting_approval", 60);
    assert_eq!(run["steps"][3]["state"], "pending", "analyse waits for the decision");
    bed.ok(&["approvals", "approve", "social-media-1.1"]);
    bed.wait_run("social-media-1", "completed", 30);
    let outbox = bed.root().join("var/lib/aither/outbox/social-media-1-schedule.json");
    assert_eq!(std::fs::read_to_string(outbox).expect("posted"), format!("{schedule}\n"));
    let requests = model.requests();
    assert_eq!(requests[1]["response_format"]["type"], "json_schema", "the schedule is constrained");
    let analyse = briefing(&requests[3]);
    assert!(analyse.contains("\"state\":\"done\"") && analyse.contains("outbox"), "the decision, inline: {analyse}");
    assert_eq!(kept(&bed, "social-media-1", "analyse", "analysis.md"), "One post went out at 09:00.\n");
}

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("/usr/bin/git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A repository whose last commit breaks its test.
pub fn broken_repo(dir: &Path) {
    std::fs::create_dir_all(dir).expect("repo");
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("add.sh"), "echo $(($1 + $2))\n").expect("write");
    std::fs::write(
        dir.join("test.sh"),
        "got=$(sh add.sh 2 2)\n[ \"$got\" = 4 ] || { echo \"FAIL: add 2 2 gave $got\"; exit 1; }\necho ok\n",
    )
    .expect("write");
    std::fs::write(dir.join("Makefile"), "test:\n\tsh test.sh\n").expect("write");
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "Add numbers"]);
    std::fs::write(dir.join("add.sh"), "echo $(($1 - $2))\n").expect("write");
    git(dir, &["commit", "-q", "-am", "Simplify add"]);
}

#[test]
fn code_review_runs_the_tests_of_a_change_and_recommends_against_a_broken_one() {
    let (bed, socket) = bed_with(&["code-review"]);
    let repo = bed.dir().join("repo");
    broken_repo(&repo);
    let model = ScriptedModel::start(
        &socket,
        vec![
            // review: the change's log, stat and diff in its briefing, answered at once (direct)
            Turn::text("add.sh:1 blocker: + became -."),
            // test: make test's output in its briefing
            Turn::text("tested"),
            Turn::text("tests_failed\n\nmake test: exit 2; FAIL: add 2 2 gave 0"),
            // recommend
            Turn::text("Recommendation: do not merge\nThe test fails: add 2 2 gave 0."),
        ],
    );
    let _agentd = bed.agentd();
    bed.wait_up(20);
    let repo_input = format!("repo={}", repo.display());
    let injected =
        bed.ctl(&["workflows", "run", "code-review", "--input", &repo_input, "--input", "base=--output=/tmp/x"]);
    assert!(stderr(&injected).contains("input base: \"--output=/tmp/x\" is not a name"), "{}", stderr(&injected));

    bed.ok(&["workflows", "run", "code-review", "--input", &repo_input]);
    let run = bed.wait_run("code-review-1", "completed", 90);
    assert_eq!(run["inputs"]["base"], "HEAD~1", "the declared default");
    let requests = model.requests();
    let review = briefing(&requests[0]);
    assert!(review.contains("add.sh | 2 +-") && review.contains("-echo $(($1 + $2))"), "{review}");
    assert!(requests[0].get("tools").is_none(), "a direct step is offered no tools");
    let tests = briefing(&requests[1]);
    assert!(tests.contains("exit status 2") && tests.contains("FAIL: add 2 2 gave 0"), "{tests}");
    // The first line of tests.md cut to the signature found in make's output.
    let status = requests[2]["grammar"].as_str().unwrap_or("");
    assert!(status.contains("status ::= \"tests_failed\"\n"), "{status}");
    // The verdict: the change's diff run first, and the first verdict found in precedence.
    assert!(requests[3].get("tools").is_none(), "the recommendation is answered at once");
    assert!(briefing(&requests[3]).contains("-echo $(($1 + $2))"), "{}", briefing(&requests[3]));
    let verdict = requests[3]["grammar"].as_str().unwrap_or("");
    assert!(verdict.contains("verdict ::= \"do not merge\"\n"), "{verdict}");
    assert!(kept(&bed, "code-review-1", "recommend", "recommendation.md").starts_with("Recommendation: do not merge"));
    // The repository itself was only read.
    let status =
        Command::new("/usr/bin/git").arg("-C").arg(&repo).args(["status", "--porcelain"]).output().expect("git");
    assert!(status.stdout.is_empty(), "{}", String::from_utf8_lossy(&status.stdout));
}

/// Every pack once through the real aither-infer on a real model: SmolLM2-135M-Instruct (its
/// own ChatML template, tool calls in the generic JSON form) on one thread, the steps' socket
/// pointed at the worker's, the packs as shipped (copied to the admin's directory so that they
/// are on). Every request is accepted, every step leaves a typed result, every declared output
/// of a completed step is kept and handed on. How often the packs are *right* on this model is
/// the eval's to say (`make eval`).
#[test]
fn every_pack_runs_through_the_real_worker_on_a_real_model() {
    let (bed, socket) = bed_with(&[]);
    bed.write("etc/aither/units.d/flaky.toml", FLAKY);
    for (name, text) in agentd::workflows::BUILT_IN_PACKS {
        bed.write(&format!("etc/aither/workflows.d/{name}"), text);
    }
    let docs = bed.dir().join("docs");
    std::fs::create_dir_all(&docs).expect("docs");
    std::fs::write(docs.join("gpu.txt"), "The worker ran out of GPU memory at 32k tokens.\n").expect("doc");
    let repo = bed.dir().join("repo");
    broken_repo(&repo);
    let worker = Command::new(aither_test_support::bin("aither-infer"))
        .arg("--model")
        .arg(aither_test_support::test_model("smollm2-135m-instruct-q4_1.gguf"))
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        // Two slots of 4,096 tokens, the context the cpu-only preset gives a request.
        .args(["--threads", "1", "--ctx", "8192", "--parallel", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("aither-infer");
    let _worker = aither_test_support::Guard(worker);
    aither_test_support::until("the worker's socket", 120, || socket.exists());
    let _agentd = bed.agentd();
    bed.wait_up(20);
    let docs_input = format!("docs={}", docs.display());
    let sources_input = format!("sources={}", docs.display());
    let repo_input = format!("repo={}", repo.display());
    let topic = "topic=Running models locally";
    for args in [
        vec!["research", "--input", "question=Why did the worker crash?", "--input", &docs_input],
        vec!["content-pipeline", "--input", topic, "--input", &sources_input],
        vec!["social-media", "--input", topic],
        vec!["code-review", "--input", &repo_input],
    ] {
        let mut all = vec!["workflows", "run"];
        all.extend(args);
        bed.ok(&all);
    }
    // flaky failed at boot: devops-1 started by itself.
    let mut report = String::new();
    for run in ["devops-1", "research-1", "content-pipeline-1", "social-media-1", "code-review-1"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let doc = loop {
            let doc = bed.run_doc(run);
            if ["completed", "failed", "awaiting_approval"].contains(&doc["state"].as_str().unwrap_or("")) {
                break doc;
            }
            assert!(std::time::Instant::now() < deadline, "{run} did not end: {doc:#}");
            std::thread::sleep(std::time::Duration::from_millis(250));
        };
        for step in doc["steps"].as_array().expect("steps") {
            let r = &step["result"];
            let outcome = r["outcome"].as_str().unwrap_or("no result");
            report.push_str(&format!(
                "{run} {}: {outcome}, {} turns, {} tokens, {:.1} s\n",
                step["name"].as_str().unwrap_or(""),
                r["turns"],
                r["completion_tokens"],
                r["seconds"].as_f64().unwrap_or(0.0)
            ));
            if step["state"] == "cancelled" || step["state"] == "pending" {
                continue; // after a step whose budget ran out, or waiting for a decision
            }
            assert_eq!(step["state"], "done", "{run}: every step that ran left a typed result: {doc:#}");
            // A small model may still give an empty answer for an output (the step then fails
            // for it); the worker must never refuse a request.
            let reason = r["outcome"]["reason"].as_str().or(r["reason"].as_str()).unwrap_or("");
            assert!(
                outcome == "completed"
                    || outcome == "budget_exhausted"
                    || (outcome == "failed" && reason.starts_with("the model gave no content")),
                "{run}: the worker accepted every request: {doc:#}\n{}",
                bed.log()
            );
            // A step that asked the model (not one whose output is its evidence, or whose
            // proposal is an earlier answer's) generated.
            if r["turns"].as_u64().unwrap_or(0) > 0 {
                assert!(r["completion_tokens"].as_u64().unwrap_or(0) > 0, "{run}: the model generated: {doc:#}");
            }
            if outcome == "completed" {
                // Every declared output was written (asked for as the model's answer) and kept.
                for out in r["outputs"].as_array().expect("outputs") {
                    let path = bed.state_dir().join(format!(
                        "workflows/runs/{run}/{}/outputs/{}",
                        step["name"].as_str().unwrap_or(""),
                        out.as_str().unwrap_or("")
                    ));
                    assert!(path.is_file(), "{}", path.display());
                }
            }
        }
        let first = &doc["steps"][0];
        assert_eq!(first["state"], "done", "{run}: {doc:#}");
    }
    eprint!("{report}");
}
