//! The pack suites: each case's fixtures laid out, the pack run ([`packs::run`]), and what it
//! left scored by code — the devops proposal and cause, the review's recommendation, the
//! research answer's citation, the content and social artifacts' structure.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aither_api::agentd::{Unit, UnitKind, UnitState};
use aither_api::workflow::Proposal;
use aither_workflow::Workflow;

use crate::cases::{DevopsCase, ResearchSuite, ReviewCase, TopicCase};
use crate::packs::{self, Fixtures, Model, PackRun};
use crate::RunOutcome;

/// The outcome of a pack run, before the suite's own judgement: tokens, seconds, steps.
fn outcome_of(id: &str, seed: u64, run: &PackRun, started: Instant) -> RunOutcome {
    let mut o = RunOutcome::new(id, seed);
    o.tokens = run.tokens();
    o.seconds = started.elapsed().as_secs_f64();
    o.steps = u32::try_from(run.steps.len()).unwrap_or(u32::MAX);
    o.steps_with_outputs = u32::try_from(run.steps.iter().filter(|s| s.complete).count()).unwrap_or(u32::MAX);
    o
}

/// Why the run did not reach its end, or the first step without its outputs.
fn incomplete(run: &PackRun, workflow: &Workflow) -> Option<String> {
    if let Some(why) = &run.stopped {
        return Some(why.clone());
    }
    if run.steps.len() < workflow.steps.len() {
        return Some(format!("ran {} of {} steps", run.steps.len(), workflow.steps.len()));
    }
    run.steps.iter().find(|s| !s.complete).map(|s| format!("step {} did not write all its outputs", s.name))
}

// ------------------------------------------------------------------------ devops

/// The appliance's status as a `status` input shows it: the failed unit, the case's other
/// units, and the usual ones around them.
pub fn devops_status(case: &DevopsCase) -> serde_json::Value {
    let unit = |name: &str, state: UnitState, restarts: u32, detail: Option<&str>| {
        let kind = if name.starts_with("infer-") {
            UnitKind::Worker
        } else if name.ends_with("-agent") || name == "summarizer" {
            UnitKind::Agent
        } else {
            UnitKind::Service
        };
        let group = match kind {
            UnitKind::Worker => "inference",
            UnitKind::Agent => "agents",
            _ => "automation",
        };
        Unit {
            name: name.to_string(),
            kind,
            group: group.into(),
            priority: if kind == UnitKind::Worker { 10 } else { 20 },
            state,
            pid: (state == UnitState::Running).then_some(4242),
            detail: detail.map(str::to_string),
            status: None,
            restarts,
            description: None,
            source: format!("/etc/aither/units.d/{name}.toml"),
            agent: None,
        }
    };
    let state = |s: &str| match s {
        "running" => UnitState::Running,
        "gave-up" => UnitState::GaveUp,
        "backoff" => UnitState::Backoff,
        "dormant" => UnitState::Dormant,
        _ => UnitState::Failed,
    };
    let mut units = vec![
        unit("infer-qwen2.5-7b-instruct", UnitState::Dormant, 0, None),
        unit("infer-nomic-embed-text-v1.5", UnitState::Dormant, 0, None),
    ];
    units.retain(|u| u.name != case.unit && !case.others.iter().any(|o| o.name == u.name));
    for o in &case.others {
        units.push(unit(&o.name, state(&o.state), o.restarts, Some(&o.detail)));
    }
    units.push(unit(&case.unit, state(&case.state), case.restarts, Some(&case.detail)));
    serde_json::json!({
        "preset": "minimal",
        "reason": "one GPU with 12 GiB",
        "agent_slots": 4,
        "agents_running": 0,
        "queued": [],
        "units": units,
    })
}

/// The devops pack on one failed unit: right when its proposals are exactly the right action
/// on that unit (none when a human must act). A stop, or an action on another unit, that is
/// not the right answer counts twice.
pub fn devops(workflow: &Workflow, case: &DevopsCase, model: &Model, seed: u64, dir: &Path) -> RunOutcome {
    let started = Instant::now();
    let fixtures = Fixtures {
        status: Some(devops_status(case)),
        journal: Some((case.unit.clone(), case.journal.trim_start().to_string())),
        run_inputs: [("unit".to_string(), case.unit.clone())].into(),
        ..Fixtures::default()
    };
    let run = packs::run(workflow, &fixtures, model, seed, dir);
    let mut o = outcome_of(&case.id, seed, &run, started);
    let diagnosis =
        run.output("detect", "diagnosis.json").and_then(|d| serde_json::from_slice::<serde_json::Value>(d).ok());
    let named_class = diagnosis.as_ref().and_then(|d| {
        ["class", "cause_class", "category"].iter().find_map(|k| d.get(*k).and_then(|v| v.as_str()).map(str::to_string))
    });
    o.metrics.push(("diagnosis".into(), diagnosis.as_ref().is_some_and(serde_json::Value::is_object)));
    o.metrics.push(("cause".into(), named_class.as_deref() == Some(case.class.as_str())));
    let actions: Vec<(&str, Option<&str>)> = run
        .proposals
        .iter()
        .filter_map(|p| match p {
            Proposal::Start { unit, .. } => Some(("start", Some(unit.as_str()))),
            Proposal::Stop { unit, .. } => Some(("stop", Some(unit.as_str()))),
            Proposal::Restart { unit, .. } => Some(("restart", Some(unit.as_str()))),
            Proposal::Reload { .. } => Some(("reload", None)),
            Proposal::PullModel { .. } | Proposal::Publish { .. } => None,
        })
        .collect();
    let shown: Vec<String> =
        actions.iter().map(|(k, u)| u.map_or_else(|| (*k).to_string(), |u| format!("{k} {u}"))).collect();
    let right = match case.action.as_str() {
        "none" => actions.is_empty(),
        "reload" => actions == [("reload", None)],
        a => actions == [(a, Some(case.unit.as_str()))],
    };
    o.metrics.push(("proposal".into(), right));
    if right {
        o.pass();
    } else {
        let wrong_stop = actions.iter().any(|(k, _)| *k == "stop") && case.action != "stop";
        let other_unit = actions.iter().any(|(_, u)| u.is_some_and(|u| u != case.unit));
        o.doubled = wrong_stop || other_unit;
        let got = if shown.is_empty() { "no proposal".to_string() } else { shown.join(", ") };
        let why = format!("proposed {got}; the right action is {} ({})", case.action, case.class);
        o.why = match (&run.stopped, diagnosis.is_none()) {
            (Some(stop), _) => format!("{why}; {stop}"),
            (None, true) => format!("{why}; no diagnosis.json"),
            (None, false) => why,
        };
    }
    o
}

// ------------------------------------------------------------------------ review

fn git(repo: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Eval", "-c", "user.email=eval@localhost", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo)
        .output()
        .map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The case's repository: its base commit, then the change.
pub fn review_repo(case: &ReviewCase, repo: &Path) -> Result<(), String> {
    let write = |files: &std::collections::BTreeMap<String, String>| -> Result<(), String> {
        for (name, text) in files {
            let p = repo.join(name);
            if text.is_empty() {
                std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            } else {
                std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            }
        }
        Ok(())
    };
    std::fs::create_dir_all(repo).map_err(|e| format!("{}: {e}", repo.display()))?;
    git(repo, &["init", "-q", "-b", "main"])?;
    write(&case.base)?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "Initial version"])?;
    write(&case.head)?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", &case.message])
}

/// The recommendation a `recommendation.md` starts with, if it says one of the three.
pub fn recommendation(text: &str) -> Option<&'static str> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let first = first.trim_start_matches(['#', '*', ' ']).to_lowercase();
    let rest = first.strip_prefix("recommendation:")?.trim().trim_matches(['*', '.', ' ']);
    // The longest first: "merge after changes" before "merge".
    ["merge after changes", "do not merge", "merge"].into_iter().find(|r| rest.starts_with(r))
}

/// The code-review pack on one change: right when the recommendation is one the case accepts.
pub fn review(workflow: &Workflow, case: &ReviewCase, model: &Model, seed: u64, dir: &Path) -> RunOutcome {
    let started = Instant::now();
    let repo = dir.join("repo");
    if let Err(e) = review_repo(case, &repo) {
        let mut o = RunOutcome::new(&case.id, seed);
        o.why = format!("cannot make the repository: {e}");
        return o;
    }
    let fixtures = Fixtures { dirs: [("repo".to_string(), repo)].into(), ..Fixtures::default() };
    let run = packs::run(workflow, &fixtures, model, seed, &dir.join("steps"));
    let mut o = outcome_of(&case.id, seed, &run, started);
    let said = run.output_text("recommend", "recommendation.md");
    match said.as_deref().map(recommendation) {
        Some(Some(r)) if case.accept.iter().any(|a| a == r) => o.pass(),
        Some(Some(r)) => o.why = format!("recommended {r}; accepted: {}", case.accept.join(" or ")),
        Some(None) => {
            let first = said.as_deref().and_then(|t| t.lines().find(|l| !l.trim().is_empty())).unwrap_or("");
            o.why = format!("recommendation.md does not start with a recommendation: {first:?}");
        }
        None => o.why = incomplete(&run, workflow).unwrap_or_else(|| "no recommendation.md".into()),
    }
    o
}

// ------------------------------------------------------------------------ research

/// The document names a text mentions.
fn cited<'a>(text: &str, docs: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
    docs.filter(|d| text.contains(d.as_str())).map(String::as_str).collect()
}

/// The research pack on one question: right when `answer.md` cites the file that holds the
/// answer, and at most one other document.
pub fn research(
    workflow: &Workflow,
    suite: &ResearchSuite,
    docs: &Path,
    case: &crate::cases::ResearchCase,
    model: &Model,
    seed: u64,
    dir: &Path,
) -> RunOutcome {
    let started = Instant::now();
    let fixtures = Fixtures {
        dirs: [("docs".to_string(), docs.to_path_buf())].into(),
        run_inputs: [("question".to_string(), case.question.clone())].into(),
        ..Fixtures::default()
    };
    let run = packs::run(workflow, &fixtures, model, seed, dir);
    let mut o = outcome_of(&case.id, seed, &run, started);
    let sources = run.output_text("gather", "sources.md").unwrap_or_default();
    o.metrics.push(("sources".into(), sources.contains(&case.file)));
    o.metrics.push(("report".into(), run.output("report", "report.md").is_some()));
    match run.output_text("synthesize", "answer.md") {
        None => o.why = incomplete(&run, workflow).unwrap_or_else(|| "no answer.md".into()),
        Some(answer) => {
            let named = cited(&answer, suite.docs.keys());
            if named.contains(&case.file.as_str()) && named.len() <= 2 {
                o.pass();
            } else if named.is_empty() {
                o.why = format!("answer.md cites no document (the answer is in {})", case.file);
            } else {
                o.why = format!("answer.md cites {} (the answer is in {})", named.join(", "), case.file);
            }
        }
    }
    o
}

/// Lay out the research suite's folder of documents.
pub fn research_docs(suite: &ResearchSuite, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in &suite.docs {
        std::fs::write(dir.join(name), text.trim_start()).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

// ------------------------------------------------------------------------ content, social

/// An article: a title line, then at least `words` words.
fn article_problem(name: &str, text: Option<String>, words: usize) -> Option<String> {
    let Some(text) = text else { return Some(format!("no {name}")) };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let title = lines.next().unwrap_or("");
    let titled = title.starts_with('#') || (title.len() <= 120 && !title.ends_with('.'));
    let count: usize = lines.map(|l| l.split_whitespace().count()).sum();
    if !titled {
        Some(format!("{name} has no title line (it starts {:?})", title.chars().take(60).collect::<String>()))
    } else if count < words {
        Some(format!("{name} has {count} words after its title, fewer than {words}"))
    } else {
        None
    }
}

/// The content pipeline on one topic: right when its brief, draft, article and edits are
/// there with the structure asked for, and the publish step proposed the article or said
/// why not.
pub fn content(workflow: &Workflow, case: &TopicCase, model: &Model, seed: u64, dir: &Path) -> RunOutcome {
    let started = Instant::now();
    let fixtures = Fixtures { run_inputs: [("topic".to_string(), case.topic.clone())].into(), ..Fixtures::default() };
    let run = packs::run(workflow, &fixtures, model, seed, dir);
    let mut o = outcome_of(&case.id, seed, &run, started);
    let problem = incomplete(&run, workflow)
        .or_else(|| run.output("research", "brief.md").is_none().then(|| "no brief.md".to_string()))
        .or_else(|| article_problem("draft.md", run.output_text("write", "draft.md"), 150))
        .or_else(|| article_problem("article.md", run.output_text("edit", "article.md"), 150))
        .or_else(|| run.output("edit", "edits.md").is_none().then(|| "no edits.md".to_string()));
    let published =
        run.proposals.iter().any(|p| matches!(p, Proposal::Publish { file, .. } if file.ends_with("article.md")));
    o.metrics.push(("published".into(), published));
    match problem {
        None => o.pass(),
        Some(p) => o.why = p,
    }
    o
}

/// A posts file's numbered posts.
fn posts(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        let numbered = t.split_once(['.', ')', ':']).is_some_and(|(n, _)| {
            let n = n.trim_start_matches(['#', '*', ' ']).trim_start_matches("Post").trim();
            !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
        });
        if numbered {
            out.push(t.to_string());
        } else if let (Some(last), false) = (out.last_mut(), t.is_empty()) {
            last.push(' ');
            last.push_str(t);
        }
    }
    out
}

/// Unix seconds of an ISO 8601 UTC time (`2027-01-11T09:00:00Z`, seconds optional).
fn iso_seconds(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z').trim_end_matches("+00:00");
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.split('.').next().and_then(|x| x.parse::<i64>().ok()));
    let (h, min) = (t.next()??, t.next()??);
    let sec = t.next().flatten().unwrap_or(0);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + h * 3600 + min * 60 + sec)
}

/// What is wrong with a schedule: five posts in time order, four hours apart or more.
fn schedule_problem(text: &str) -> Option<String> {
    let doc: serde_json::Value = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => return Some(format!("schedule.json is not JSON: {e}")),
    };
    let Some(items) = doc.as_array() else { return Some("schedule.json is not an array".into()) };
    if items.len() != 5 {
        return Some(format!("schedule.json has {} entries, not 5", items.len()));
    }
    let mut last: Option<i64> = None;
    for (i, item) in items.iter().enumerate() {
        let at = item.get("publish_at").and_then(|v| v.as_str()).and_then(iso_seconds);
        let text = item.get("text").and_then(|v| v.as_str()).unwrap_or("");
        let Some(at) = at else { return Some(format!("entry {} has no ISO 8601 publish_at", i + 1)) };
        if text.trim().is_empty() || text.chars().count() > 280 {
            return Some(format!("entry {}'s text is empty or longer than 280 characters", i + 1));
        }
        if let Some(before) = last {
            if at < before + 4 * 3600 {
                return Some(format!("entry {} is less than four hours after the one before", i + 1));
            }
        }
        last = Some(at);
    }
    None
}

/// The social-media pack on one topic: right when posts.md has five numbered posts of at most
/// 280 characters, schedule.json is sound, its publishing was proposed, and the analysis is
/// written.
pub fn social(workflow: &Workflow, case: &TopicCase, model: &Model, seed: u64, dir: &Path) -> RunOutcome {
    let started = Instant::now();
    let mut inputs: std::collections::BTreeMap<String, String> = [("topic".to_string(), case.topic.clone())].into();
    if let Some(start) = &case.start {
        inputs.insert("start".into(), start.clone());
    }
    let fixtures = Fixtures { run_inputs: inputs, ..Fixtures::default() };
    let run = packs::run(workflow, &fixtures, model, seed, dir);
    let mut o = outcome_of(&case.id, seed, &run, started);
    let found = run.output_text("generate", "posts.md").map(|t| posts(&t));
    let problem = incomplete(&run, workflow)
        .or_else(|| match &found {
            None => Some("no posts.md".into()),
            Some(p) if p.len() != 5 => Some(format!("posts.md has {} numbered posts, not 5", p.len())),
            Some(p) => {
                p.iter().position(|t| t.chars().count() > 290).map(|i| format!("post {} is over 280 characters", i + 1))
            }
        })
        .or_else(|| match run.output_text("schedule", "schedule.json") {
            None => Some("no schedule.json".into()),
            Some(t) => schedule_problem(&t),
        })
        .or_else(|| {
            (!run
                .proposals
                .iter()
                .any(|p| matches!(p, Proposal::Publish { file, .. } if file.ends_with("schedule.json"))))
            .then(|| "the schedule's publishing was not proposed".to_string())
        });
    match problem {
        None => o.pass(),
        Some(p) => o.why = p,
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recommendation_is_read_from_the_first_line() {
        assert_eq!(recommendation("Recommendation: do not merge\nThe test fails."), Some("do not merge"));
        assert_eq!(recommendation("\n# Recommendation: Merge after changes.\n"), Some("merge after changes"));
        assert_eq!(recommendation("**Recommendation: merge**"), Some("merge"));
        assert_eq!(recommendation("I think we should merge."), None);
        assert_eq!(recommendation(""), None);
    }

    #[test]
    fn posts_are_the_numbered_paragraphs() {
        let text = "1. First post #one\n\n2) Second\ncontinued\n3: Third\n4. Fourth\n5. Fifth\n";
        let p = posts(text);
        assert_eq!(p.len(), 5);
        assert_eq!(p[1], "2) Second continued");
        assert!(posts("Just some text\nwithout numbers").is_empty());
    }

    #[test]
    fn a_schedule_needs_five_posts_in_order_four_hours_apart() {
        let entry = |at: &str| serde_json::json!({"publish_at": at, "text": "hello"});
        let good: Vec<_> = [
            "2027-01-11T09:00:00Z",
            "2027-01-11T14:00:00Z",
            "2027-01-12T09:00Z",
            "2027-01-13T09:00:00Z",
            "2027-01-14T09:00:00+00:00",
        ]
        .iter()
        .map(|t| entry(t))
        .collect();
        assert_eq!(schedule_problem(&serde_json::to_string(&good).expect("json")), None);
        let mut close = good.clone();
        close[1] = entry("2027-01-11T10:00:00Z");
        assert!(schedule_problem(&serde_json::to_string(&close).expect("json"))
            .expect("too close")
            .contains("four hours"));
        assert!(schedule_problem(&serde_json::to_string(&good[..4]).expect("json")).is_some());
        assert!(schedule_problem("not json").is_some());
        assert_eq!(iso_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(iso_seconds("2000-03-01T00:00:00Z"), Some(951_868_800));
    }

    #[test]
    fn an_article_needs_a_title_and_words() {
        let body = "word ".repeat(200);
        assert_eq!(article_problem("a", Some(format!("# Title\n\n{body}")), 150), None);
        assert!(article_problem("a", Some(body.clone()), 150).is_some());
        assert!(article_problem("a", Some("# T\n\nshort".into()), 150).is_some());
        assert!(article_problem("a", None, 150).is_some());
    }

    #[test]
    fn the_review_repository_has_the_base_and_the_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let case = &crate::cases::review().expect("review")[0];
        review_repo(case, &dir.path().join("r")).expect("repo");
        let log =
            Command::new("git").arg("-C").arg(dir.path().join("r")).args(["log", "--oneline"]).output().expect("git");
        assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 2);
    }

    #[test]
    fn the_devops_status_shows_the_failed_unit_and_its_neighbours() {
        let case = &crate::cases::devops().expect("devops")[0];
        let s = devops_status(case);
        let units = s["units"].as_array().expect("units");
        assert!(units.iter().any(|u| u["name"] == case.unit.as_str() && u["state"] == "failed"));
        assert!(units.iter().any(|u| u["name"] == "postgres" && u["state"] == "running"));
    }
}
