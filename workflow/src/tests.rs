use super::*;

const GOOD: &str = r#"
[workflow]
description = "Find why a unit failed and propose the fix"

[trigger]
units = ["infer-*"]
calendar = "weekly mon 03:30"

[[step]]
name = "diagnose"
model = "chat"
system_prompt = "You are the appliance's diagnostician."
instructions = "Read the journal and say what failed."
tools = ["read_file", "list_files", "run_command"]
commands = [["/usr/bin/systemctl", "status"]]
outputs = ["diagnosis.md"]
inputs = [{ collect = "journal", unit = "trigger" }, { collect = "status" }]
budget = { steps = 8, tokens = 4000 }

[[step]]
name = "fix"
model = "code"
system_prompt = "You propose the smallest fix."
instructions = "Propose one action."
tools = ["propose"]
inputs = [{ from = "diagnose", file = "diagnosis.md" }]
"#;

fn parse_str(text: &str) -> Result<Workflow, WorkflowError> {
    parse(Path::new("/usr/share/aither/workflows/heal.toml"), text, Origin::Shipped)
}

#[test]
fn a_good_workflow_reads_with_its_defaults() {
    let w = parse_str(GOOD).expect("valid");
    assert_eq!(w.name, "heal");
    assert!(w.triggers.manual, "manual by default");
    assert_eq!(w.triggers.calendar, Some(Schedule::Weekly(210)));
    assert_eq!(w.steps[0].budget, StepBudget { steps: 8, tokens: 4000, seconds: 600, turn_tokens: 2048 });
    assert_eq!(w.steps[0].inputs, vec![Input::Journal { unit: None }, Input::Status]);
    assert_eq!(w.steps[1].inputs, vec![Input::Output { step: "diagnose".into(), file: "diagnosis.md".into() }]);
    assert_eq!(w.steps[1].network, Network::Gateway);
    assert!(w.auto_approve.is_empty());
}

fn problem(text: &str) -> String {
    parse_str(text).expect_err("refused").to_string()
}

#[test]
fn each_mistake_is_named_with_its_file_and_key_or_line() {
    let cases = [
        (GOOD.replace("budget = {", "colour = \"red\"\nbudget = {"), "line 18: unknown field `colour`"),
        (GOOD.replace("\"propose\"]", "\"propose\", \"format_disk\"]"), "unknown variant `format_disk`"),
        (
            GOOD.replace("name = \"fix\"", "name = \"diagnose\""),
            "step[1].name: \"diagnose\" is used by an earlier step",
        ),
        (
            GOOD.replace("file = \"diagnosis.md\"", "file = \"notes.md\""),
            "step[1].inputs[0]: \"diagnose\" declares no output \"notes.md\"",
        ),
        (
            GOOD.replace("from = \"diagnose\"", "from = \"later\""),
            "step[1].inputs[0]: \"later\" is not an earlier step",
        ),
        (
            GOOD.replace("\"diagnosis.md\"]", "\"../etc/passwd\"]"),
            "step[0].outputs[0]: \"../etc/passwd\" is not a plain file name",
        ),
        (GOOD.replace("/usr/bin/systemctl", "systemctl"), "step[0].commands[0]:"),
        (GOOD.replace("units = [\"infer-*\"]", ""), "unit = \"trigger\" needs a unit trigger"),
        (GOOD.replace("weekly mon 03:30", "weekly funday 03:30"), "trigger.calendar: \"funday\""),
        (GOOD.replace("tokens = 4000", "tokens = 0"), "step[0].budget.tokens: must be at least 1"),
        (GOOD.replace("\"propose\"]", "\"fetch_url\"]"), "step[1].tools: fetch_url needs network = \"outbound\""),
        (GOOD.replace(", \"run_command\"", ""), "step[0].commands: commands are for the run_command tool"),
        (
            GOOD.replace("budget = { steps = 8", "fetch_allow = [\"10.0.0.0/8\"]\nbudget = { steps = 8"),
            "step[0].fetch_allow: names what fetch_url may reach, and fetch_url is not granted",
        ),
        (
            GOOD.replace("\"propose\"]", "\"fetch_url\"]\nnetwork = \"outbound\"\nfetch_allow = [\"10.0.0.0/33\"]"),
            "step[1].fetch_allow[0]: \"10.0.0.0/33\": the prefix length must be 0 to 32",
        ),
        (
            GOOD.replace("\"propose\"]", "\"fetch_url\"]\nnetwork = \"outbound\"\nfetch_allow = [\"169.254.169.254\"]"),
            "step[1].fetch_allow[0]: 169.254.169.254 is link-local: no step may reach it",
        ),
        (
            GOOD.replace("\"propose\"]", "\"fetch_url\"]\nnetwork = \"outbound\"\nfetch_allow = [\"fd00:ec2::254\"]"),
            "is a cloud metadata service",
        ),
        (GOOD.replace("model = \"code\"", "model = \"embedding\""), "step[1].model"),
        (
            GOOD.replace("[workflow]\n", "[workflow]\nact_on = [\"infer-*\", \"a b\"]\n"),
            "workflow.act_on[1]: \"a b\" is not a unit name pattern",
        ),
        (
            GOOD.replace("[workflow]\n", "[workflow]\nauto_approve = [\"restart\"]\n"),
            "workflow.auto_approve: only the admin's",
        ),
        (GOOD.replace("{ collect = \"status\" }", "{ collect = \"status\", path = \"/etc\" }"), "takes no `path`"),
        (
            GOOD.replace("{ collect = \"status\" }", "{ collect = \"directory\", path = \"/var/log/(x)\" }"),
            "step[0].inputs[1]:",
        ),
        (GOOD.replace("budget = { steps = 8", "run_first = [3]\nbudget = { steps = 8"), "step[0].run_first[0]: 3"),
        (
            GOOD.replace("budget = { steps = 8", "cite = \"file\"\nbudget = { steps = 8"),
            "step[0].cite: names a one-line rule of one of the step's grammar outputs",
        ),
        (
            GOOD.replace("budget = { steps = 8", "narrow_first = true\nbudget = { steps = 8"),
            "step[0].narrow_first: orders what `narrow` keeps",
        ),
        (
            GOOD.replace("instructions = \"Propose one action.\"", "instructions = \"Propose.\"\ndirect = true"),
            "step[1].direct: a direct step answers its outputs",
        ),
        (
            GOOD.replace("budget = { steps = 8", "narrow = \"class\"\nbudget = { steps = 8"),
            "step[0].narrow: narrows a property",
        ),
        (
            GOOD.replace(
                "budget = { steps = 8",
                concat!(
                    "narrow = \"verdict\"\nsignatures = { merge = [\"ok\"] }\n",
                    "formats = { \"diagnosis.md\" = { grammar = 'root ::= verdict rest' } }\n",
                    "budget = { steps = 8"
                ),
            ),
            "step[0].narrow: narrows a property of a JSON-Schema output, or a grammar's rule",
        ),
        (
            GOOD.replace("budget = { steps = 8", "signatures = { \"\" = [\"x\"] }\nbudget = { steps = 8"),
            "step[0].signatures.: a label (1 to 64 characters)",
        ),
        (
            GOOD.replace(
                "budget = { steps = 8",
                "propose_from = { input = \"d.json\", kind = \"k\", reason = \"r\" }\nbudget = { steps = 8",
            ),
            "step[0].propose_from: the proposal goes through the propose tool",
        ),
    ];
    for (text, expected) in cases {
        let p = problem(&text);
        assert!(p.starts_with("/usr/share/aither/workflows/heal.toml: "), "{p}");
        assert!(p.contains(expected), "expected {expected:?} in {p:?}");
    }
}

#[test]
fn the_admin_may_auto_approve_and_replaces_a_shipped_workflow() {
    let root = tempfile::tempdir().expect("tempdir");
    let shipped = root.path().join(SHIPPED_DIR);
    let admin = root.path().join(ADMIN_DIR);
    std::fs::create_dir_all(&shipped).expect("dir");
    std::fs::create_dir_all(&admin).expect("dir");
    std::fs::write(shipped.join("heal.toml"), GOOD).expect("write");
    std::fs::write(shipped.join("Bad Name.toml"), GOOD).expect("write");
    std::fs::write(shipped.join("broken.toml"), "[workflow\n").expect("write");
    let mine = GOOD.replace("[workflow]\n", "[workflow]\nauto_approve = [\"restart\"]\n");
    std::fs::write(admin.join("heal.toml"), mine).expect("write");
    let (found, errors) = load(root.path());
    assert_eq!(found.keys().collect::<Vec<_>>(), ["heal"]);
    assert_eq!(found["heal"].auto_approve, vec![ProposalKind::Restart]);
    assert!(found["heal"].file.starts_with(&admin));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.file.ends_with("broken.toml") && e.problem.starts_with("line 1:")), "{errors:?}");
    assert!(errors.iter().any(|e| e.problem.contains("is not a workflow name")), "{errors:?}");
}

#[test]
fn the_five_packs_are_valid_and_carried_whole() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("workflows/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut built_in: Vec<String> = packs::BUILT_IN.iter().map(|(n, _)| (*n).to_string()).collect();
    built_in.sort();
    assert_eq!(on_disk, built_in, "every pack in workflows/ is carried by agentd");
    let mut named: Vec<String> = aither_api::workflow::PACKS.iter().map(|p| format!("{p}.toml")).collect();
    named.sort();
    assert_eq!(named, built_in, "the packs first boot offers are the ones carried");
    for (name, text) in packs::BUILT_IN {
        let w = parse(&dir.join(name), text, Origin::BuiltIn).unwrap_or_else(|e| panic!("{e}"));
        assert!(w.auto_approve.is_empty(), "{name}: a pack approves nothing by itself");
    }
    let root = tempfile::tempdir().expect("tempdir");
    let (found, errors) = load(root.path());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(found.len(), 5);
    assert!(found["devops"].triggers.units == ["*"] && found["devops"].origin == Origin::BuiltIn);
    assert!(found["devops"].waits_for_approvals(2), "the report waits for the decision");
}

#[test]
fn the_documented_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/workflows");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("docs/examples/workflows") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        parse(&path, &text, Origin::Shipped).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    assert!(n >= 1, "no example in {}", dir.display());
}

mod results {
    use super::*;
    use crate::result::{vet, Claims, MAX_RESULT_BYTES};
    use aither_api::workflow::{Proposal, StepOutcome, StepResult, MAX_PROPOSALS, MAX_SUMMARY};

    fn result(step: &str, proposals: Vec<Proposal>) -> StepResult {
        StepResult {
            schema_version: 1,
            run_id: "heal-1".into(),
            step: step.into(),
            outcome: StepOutcome::Completed,
            turns: 1,
            prompt_tokens: 10,
            completion_tokens: 5,
            seconds: 1.0,
            summary: "done".into(),
            context: Some("system_u:system_r:unconfined_t:s0".into()),
            outputs: Vec::new(),
            proposals,
            refused: Vec::new(),
        }
    }

    fn restart(unit: &str) -> Proposal {
        Proposal::Restart { unit: unit.into(), reason: "it failed".into() }
    }

    fn vetted(w: &Workflow, index: usize, r: &StepResult, act_on: &[String]) -> Result<crate::result::Vetted, String> {
        let claims = Claims {
            run_id: "heal-1",
            step: &w.steps[index],
            act_on,
            context: Some("system_u:system_r:aither_step_t:s0:c1,c2"),
        };
        vet(&serde_json::to_vec(r).expect("json"), &claims)
    }

    #[test]
    fn a_step_not_granted_propose_keeps_no_proposal() {
        let w = parse_str(GOOD).expect("valid");
        let e = vetted(&w, 0, &result("diagnose", vec![restart("infer-a")]), &[]).expect_err("forged");
        assert!(e.contains("not granted propose"), "{e}");
    }

    #[test]
    fn more_proposals_than_the_runner_makes_are_refused() {
        let w = parse_str(GOOD).expect("valid");
        let many = vec![restart("infer-a"); 20];
        let e = vetted(&w, 1, &result("fix", many), &[]).expect_err("forged");
        assert!(e.contains(&format!("20 proposals, more than the {MAX_PROPOSALS}")), "{e}");
        let ok = vetted(&w, 1, &result("fix", vec![restart("infer-a"); MAX_PROPOSALS]), &["infer-*".into()])
            .expect("at the cap");
        assert_eq!(ok.result.proposals.len(), MAX_PROPOSALS);
    }

    #[test]
    fn a_long_summary_is_cut_and_the_context_is_agentds() {
        let w = parse_str(GOOD).expect("valid");
        let mut r = result("fix", vec![Proposal::Restart { unit: "infer-a".into(), reason: "é".repeat(5000) }]);
        r.summary = "x".repeat(1024 * 1024);
        let v = vetted(&w, 1, &r, &["infer-a".into()]).expect("kept, cut");
        assert_eq!(v.result.summary.len(), MAX_SUMMARY);
        assert!(v.result.proposals[0].reason().len() <= 8000);
        assert_eq!(v.result.context.as_deref(), Some("system_u:system_r:aither_step_t:s0:c1,c2"));
        assert_eq!(v.cut.len(), 2, "{:?}", v.cut);
    }

    #[test]
    fn undeclared_outputs_other_units_and_other_runs_are_refused() {
        let w = parse_str(GOOD).expect("valid");
        let mut r = result("diagnose", Vec::new());
        r.outputs = vec!["diagnosis.md".into(), "../../etc/passwd".into()];
        let e = vetted(&w, 0, &r, &[]).expect_err("undeclared");
        assert!(e.contains("does not declare"), "{e}");
        let e = vetted(&w, 1, &result("fix", vec![restart("sshd")]), &["infer-a".into()]).expect_err("widened");
        assert!(e.contains("may act on infer-a only"), "{e}");
        let e = vetted(&w, 1, &result("fix", vec![restart("sshd")]), &[]).expect_err("given no unit");
        assert!(e.contains("this run may act on no unit"), "{e}");
        let mut r = result("fix", Vec::new());
        r.run_id = "other-2".into();
        assert!(vetted(&w, 1, &r, &[]).expect_err("another run").contains("for run"));
        assert!(vetted(&w, 1, &result("diagnose", Vec::new()), &[]).expect_err("another step").contains("for step"));
    }

    #[test]
    fn an_oversized_file_is_refused_unread() {
        let w = parse_str(GOOD).expect("valid");
        let claims = Claims { run_id: "heal-1", step: &w.steps[0], act_on: &[], context: None };
        let e = vet(&vec![b' '; MAX_RESULT_BYTES + 1], &claims).expect_err("too big");
        assert!(e.contains("more than the 4096 KiB"), "{e}");
    }
}
