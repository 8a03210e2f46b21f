//! # aither-eval: how often the agents get it right
//!
//! Suites of cases, each a fixture with its expected outcome, run against a model and scored
//! by code, never by another model:
//!
//! - `tools`: 100 tool-calling cases in the manner of the Berkeley Function Calling
//!   Leaderboard — one function, the right one among several, parallel calls, no call when
//!   none fits — one chat completion each, arguments compared by value and type
//!   ([`calling`]);
//! - `devops`: failed units (journal, status) through the devops pack's steps; the proposal
//!   it ends with against the right action, a wrong destructive one counting twice;
//! - `review`: changes with a planted defect or none through the code-review pack; the
//!   recommendation;
//! - `research`: questions over a folder of documents through the research pack; the answer
//!   must cite the file that holds it;
//! - `content`, `social`: the content-pipeline and social-media packs on a topic; the
//!   structure their artifacts must have ([`score`]).
//!
//! The pack suites run the packs as shipped ([`aither_workflow::BUILT_IN_PACKS`]), each step
//! through the agent runner itself against the model ([`packs`]), so what they measure is what
//! a workflow run on the appliance does. Each case runs once per seed; a suite reports its
//! pass rate with a 95 % interval (Wilson), the steps that ended with their declared outputs,
//! tokens and seconds per run, and why each failed run failed ([`aither_api::eval`]).
//!
//! `aitherctl eval` runs them through an appliance's gateway (or any OpenAI-compatible
//! server); `make eval` on the test model, and a quick subset in `make test`.
//!
//! ## Limitations
//!
//! - Proposals are recorded, never carried out: a step reading `approvals.json` sees every
//!   proposal approved and done.
//! - The code-review cases' commands (`make test` of the fixture repositories) run as the
//!   user running the eval, unconfined: the repositories are the eval's own.
//! - Quality of prose (an article, a report) is not scored, only its structure.

pub mod calling;
pub mod cases;
pub mod packs;
pub mod score;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use aither_agent::gateway::{Endpoint, Gateway};
use aither_api::eval::{CaseFailure, EvalReport, SuiteReport, MAX_FAILURES, SCHEMA_VERSION};
use aither_workflow::{Origin, Workflow};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{file}: {problem}")]
    Suite { file: String, problem: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the {pack} pack: {problem}")]
    Pack { pack: String, problem: String },
}

/// A suite of cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Suite {
    Tools,
    Devops,
    Review,
    Research,
    Content,
    Social,
}

impl Suite {
    pub const ALL: [Suite; 6] =
        [Suite::Tools, Suite::Devops, Suite::Review, Suite::Research, Suite::Content, Suite::Social];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Tools => "tools",
            Suite::Devops => "devops",
            Suite::Review => "review",
            Suite::Research => "research",
            Suite::Content => "content",
            Suite::Social => "social",
        }
    }

    /// The pack the suite runs, if it runs one.
    fn pack(self) -> Option<&'static str> {
        match self {
            Suite::Tools => None,
            Suite::Devops => Some("devops"),
            Suite::Review => Some("code-review"),
            Suite::Research => Some("research"),
            Suite::Content => Some("content-pipeline"),
            Suite::Social => Some("social-media"),
        }
    }

    /// Whether a run needs the embedding model (`search_docs`).
    pub fn needs_embeddings(self) -> bool {
        matches!(self, Suite::Research | Suite::Content)
    }
}

impl std::str::FromStr for Suite {
    type Err = String;

    fn from_str(s: &str) -> Result<Suite, String> {
        Suite::ALL.into_iter().find(|x| x.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Suite::ALL.iter().map(|x| x.name()).collect();
            format!("no suite {s:?} (the suites: {})", names.join(", "))
        })
    }
}

/// What to run, against what.
#[derive(Debug, Clone)]
pub struct Options {
    pub endpoint: Endpoint,
    /// The model every request and step asks for.
    pub model: String,
    /// The model `search_docs` embeds with.
    pub embedding_model: String,
    pub suites: Vec<Suite>,
    /// One run per case and seed.
    pub seeds: Vec<u64>,
    /// A fixed subset of each suite (every `QUICK_EVERY`th case): minutes, not an hour.
    pub quick: bool,
    /// Runs at once (the server decodes them together).
    pub jobs: usize,
    /// Where the runs' workspaces go (kept for a look afterwards).
    pub work_dir: PathBuf,
    /// The server's name for the report (`/props` `build_info`), when known.
    pub server: Option<String>,
}

/// In a quick eval, every how many cases of a suite one runs.
pub const QUICK_EVERY: usize = 5;

/// One run of one case: passed or why not, and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub case: String,
    pub seed: u64,
    pub passed: bool,
    /// A failure that counts twice.
    pub doubled: bool,
    pub why: String,
    pub tokens: u64,
    pub seconds: f64,
    pub steps: u32,
    pub steps_with_outputs: u32,
    /// Suite-specific yes/no figures (`cause`, `simple`, …).
    pub metrics: Vec<(String, bool)>,
}

impl RunOutcome {
    pub fn new(case: &str, seed: u64) -> RunOutcome {
        RunOutcome {
            case: case.to_string(),
            seed,
            passed: false,
            doubled: false,
            why: String::new(),
            tokens: 0,
            seconds: 0.0,
            steps: 0,
            steps_with_outputs: 0,
            metrics: Vec::new(),
        }
    }

    pub fn pass(&mut self) {
        self.passed = true;
        self.why.clear();
    }
}

/// Progress, as runs end.
#[derive(Debug)]
pub struct Progress<'a> {
    pub suite: Suite,
    pub done: usize,
    pub total: usize,
    pub last: &'a RunOutcome,
}

fn pack(name: &str) -> Result<Workflow, EvalError> {
    let (file, text) = aither_workflow::BUILT_IN_PACKS
        .iter()
        .find(|(f, _)| f.trim_end_matches(".toml") == name)
        .ok_or_else(|| EvalError::Pack { pack: name.into(), problem: "not one of the packs".into() })?;
    aither_workflow::parse(&std::path::Path::new(aither_workflow::BUILT_IN_DIR).join(file), text, Origin::BuiltIn)
        .map_err(|e| EvalError::Pack { pack: name.into(), problem: e.to_string() })
}

/// The cases of a quick eval: every [`QUICK_EVERY`]th, at least one.
fn pick<T>(cases: Vec<T>, quick: bool) -> Vec<T> {
    if !quick {
        return cases;
    }
    cases.into_iter().enumerate().filter(|(i, _)| i % QUICK_EVERY == 0).map(|(_, c)| c).collect()
}

type Job<'a> = Box<dyn FnOnce(&Gateway) -> RunOutcome + Send + 'a>;

/// Run the suites; the report.
pub fn run(opts: &Options, progress: &(dyn Fn(&Progress) + Sync)) -> Result<EvalReport, EvalError> {
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let model = packs::Model {
        endpoint: opts.endpoint.clone(),
        name: opts.model.clone(),
        embedding: opts.embedding_model.clone(),
    };
    let io = |path: &std::path::Path, source| EvalError::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(&opts.work_dir).map_err(|e| io(&opts.work_dir, e))?;
    let mut suites = Vec::new();
    for &suite in &opts.suites {
        let dir = opts.work_dir.join(suite.name());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let workflow = suite.pack().map(pack).transpose()?;
        let wf = workflow.as_ref();
        let run_dir = |case: &str, seed: u64| dir.join(format!("{case}-{seed}"));
        let tools_suite;
        let research_suite;
        let docs = dir.join("docs");
        let mut jobs: Vec<Job> = Vec::new();
        match suite {
            Suite::Tools => {
                tools_suite = cases::tools()?;
                let s = &tools_suite;
                for case in pick(s.cases.iter().collect(), opts.quick) {
                    for &seed in &opts.seeds {
                        let m = &opts.model;
                        jobs.push(Box::new(move |gw| calling::run(s, case, gw, m, seed)));
                    }
                }
            }
            Suite::Devops => {
                for case in pick(cases::devops()?, opts.quick) {
                    for &seed in &opts.seeds {
                        let (case, model, d) = (case.clone(), &model, run_dir(&case.id, seed));
                        jobs.push(Box::new(move |_| score::devops(wf.expect("a pack"), &case, model, seed, &d)));
                    }
                }
            }
            Suite::Review => {
                for case in pick(cases::review()?, opts.quick) {
                    for &seed in &opts.seeds {
                        let (case, model, d) = (case.clone(), &model, run_dir(&case.id, seed));
                        jobs.push(Box::new(move |_| score::review(wf.expect("a pack"), &case, model, seed, &d)));
                    }
                }
            }
            Suite::Research => {
                research_suite = cases::research()?;
                score::research_docs(&research_suite, &docs)
                    .map_err(|problem| EvalError::Suite { file: "eval/suites/research.toml".into(), problem })?;
                let (s, docs) = (&research_suite, &docs);
                for case in pick(s.cases.iter().collect(), opts.quick) {
                    for &seed in &opts.seeds {
                        let (model, d) = (&model, run_dir(&case.id, seed));
                        jobs.push(Box::new(move |_| {
                            score::research(wf.expect("a pack"), s, docs, case, model, seed, &d)
                        }));
                    }
                }
            }
            Suite::Content | Suite::Social => {
                let file = cases::content()?;
                let topics = if suite == Suite::Content { file.content } else { file.social };
                for case in pick(topics, opts.quick) {
                    for &seed in &opts.seeds {
                        let (case, model, d) = (case.clone(), &model, run_dir(&case.id, seed));
                        jobs.push(Box::new(move |_| {
                            if suite == Suite::Content {
                                score::content(wf.expect("a pack"), &case, model, seed, &d)
                            } else {
                                score::social(wf.expect("a pack"), &case, model, seed, &d)
                            }
                        }));
                    }
                }
            }
        }
        let outcomes = run_jobs(jobs, opts, suite, progress)?;
        suites.push(summarize(suite, &outcomes));
    }
    Ok(EvalReport {
        schema_version: SCHEMA_VERSION,
        model: opts.model.clone(),
        endpoint: opts.endpoint.to_string(),
        server: opts.server.clone(),
        started: started_unix,
        seconds: started.elapsed().as_secs_f64(),
        seeds: opts.seeds.clone(),
        quick: opts.quick,
        suites,
    })
}

/// The jobs, `opts.jobs` at a time, each thread with its own client.
fn run_jobs(
    jobs: Vec<Job>,
    opts: &Options,
    suite: Suite,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Vec<RunOutcome>, EvalError> {
    let total = jobs.len();
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let done = Mutex::new(Vec::with_capacity(total));
    let threads = opts.jobs.clamp(1, total.max(1));
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for _ in 0..threads {
            handles.push(scope.spawn(|| -> Result<(), EvalError> {
                let gateway = Gateway::new(opts.endpoint.clone())
                    .map_err(|source| EvalError::Io { path: "the eval's client".into(), source })?;
                loop {
                    let Some(job) = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front() else {
                        return Ok(());
                    };
                    let outcome = job(&gateway);
                    let mut d = done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    d.push(outcome);
                    progress(&Progress { suite, done: d.len(), total, last: d.last().expect("just pushed") });
                }
            }));
        }
        for h in handles {
            match h.join() {
                Ok(r) => r?,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(())
    })?;
    let mut outcomes = done.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    outcomes.sort_by(|a, b| a.case.cmp(&b.case).then(a.seed.cmp(&b.seed)));
    Ok(outcomes)
}

/// A suite's figures from its runs.
pub fn summarize(suite: Suite, outcomes: &[RunOutcome]) -> SuiteReport {
    let count =
        |f: &dyn Fn(&RunOutcome) -> bool| u32::try_from(outcomes.iter().filter(|o| f(o)).count()).unwrap_or(u32::MAX);
    let runs = u32::try_from(outcomes.len()).unwrap_or(u32::MAX);
    let passed = count(&|o| o.passed);
    let doubled = count(&|o| !o.passed && o.doubled);
    let denominator = runs + doubled;
    let (low, high) = aither_api::eval::wilson(passed, denominator);
    let mut cases: Vec<&str> = outcomes.iter().map(|o| o.case.as_str()).collect();
    cases.sort_unstable();
    cases.dedup();
    let mut metrics = std::collections::BTreeMap::new();
    let mut names: Vec<&str> = outcomes.iter().flat_map(|o| o.metrics.iter().map(|(k, _)| k.as_str())).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let with: Vec<bool> =
            outcomes.iter().flat_map(|o| o.metrics.iter().filter(|(k, _)| k == name).map(|(_, v)| *v)).collect();
        #[allow(clippy::cast_precision_loss)] // counts of runs
        metrics.insert(name.to_string(), with.iter().filter(|v| **v).count() as f64 / with.len().max(1) as f64);
    }
    #[allow(clippy::cast_precision_loss)] // counts of runs and tokens
    let per_run = |total: f64| if outcomes.is_empty() { 0.0 } else { total / outcomes.len() as f64 };
    #[allow(clippy::cast_precision_loss)]
    let tokens = outcomes.iter().map(|o| o.tokens as f64).sum::<f64>();
    SuiteReport {
        suite: suite.name().into(),
        cases: u32::try_from(cases.len()).unwrap_or(u32::MAX),
        runs,
        passed,
        doubled,
        pass_rate: if denominator == 0 { 0.0 } else { f64::from(passed) / f64::from(denominator) },
        low,
        high,
        steps: outcomes.iter().map(|o| o.steps).sum(),
        steps_with_outputs: outcomes.iter().map(|o| o.steps_with_outputs).sum(),
        tokens_per_run: per_run(tokens),
        seconds_per_run: per_run(outcomes.iter().map(|o| o.seconds).sum()),
        metrics,
        failures: outcomes
            .iter()
            .filter(|o| !o.passed)
            .take(MAX_FAILURES)
            .map(|o| CaseFailure { case: o.case.clone(), seed: o.seed, why: o.why.clone() })
            .collect(),
    }
}

/// The report as a table, one suite a line.
pub fn table(report: &EvalReport) -> String {
    let mut out = format!(
        "model {} at {}{}, {} seed(s){}, {:.0} s\n",
        report.model,
        report.endpoint,
        report.server.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(),
        report.seeds.len(),
        if report.quick { ", quick subset" } else { "" },
        report.seconds
    );
    out.push_str(&format!(
        "{:<9} {:>5} {:>5} {:>7}  {:<13} {:>10} {:>9} {:>8}\n",
        "SUITE", "CASES", "RUNS", "PASS", "95% INTERVAL", "OUTPUTS", "TOKENS", "SECONDS"
    ));
    for s in &report.suites {
        let outputs = if s.steps == 0 {
            "-".to_string()
        } else {
            #[allow(clippy::cast_precision_loss)]
            let share = 100.0 * f64::from(s.steps_with_outputs) / f64::from(s.steps);
            format!("{share:.0} %")
        };
        out.push_str(&format!(
            "{:<9} {:>5} {:>5} {:>6.0} %  {:>4.0}–{:<3.0} %   {:>10} {:>9.0} {:>8.1}\n",
            s.suite,
            s.cases,
            s.runs,
            100.0 * s.pass_rate,
            100.0 * s.low,
            100.0 * s.high,
            outputs,
            s.tokens_per_run,
            s.seconds_per_run
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suite_counts_doubled_failures_in_its_rate() {
        let mut a = RunOutcome::new("a", 1);
        a.pass();
        a.metrics.push(("cause".into(), true));
        let mut b = RunOutcome::new("b", 1);
        b.doubled = true;
        b.why = "stopped the wrong unit".into();
        b.metrics.push(("cause".into(), false));
        let mut c = RunOutcome::new("c", 1);
        c.steps = 3;
        c.steps_with_outputs = 2;
        let r = summarize(Suite::Devops, &[a, b, c]);
        assert_eq!((r.runs, r.passed, r.doubled, r.cases), (3, 1, 1, 3));
        assert!((r.pass_rate - 0.25).abs() < 1e-9, "1 of 3 runs plus one counted twice");
        assert_eq!(r.metrics.get("cause"), Some(&0.5));
        assert_eq!((r.steps, r.steps_with_outputs), (3, 2));
        assert_eq!(r.failures.len(), 2);
        assert!(table(&EvalReport {
            schema_version: SCHEMA_VERSION,
            model: "m".into(),
            endpoint: "unix:/x".into(),
            server: None,
            started: 0,
            seconds: 1.0,
            seeds: vec![1],
            quick: false,
            suites: vec![r],
        })
        .contains("devops"));
    }

    #[test]
    fn every_pack_suite_finds_its_pack_and_a_quick_eval_takes_a_fifth() {
        for s in Suite::ALL {
            if let Some(p) = s.pack() {
                pack(p).expect("the pack parses");
            }
        }
        assert_eq!(pick((0..100).collect(), true).len(), 20);
        assert_eq!(pick((0..3).collect::<Vec<i32>>(), true), vec![0]);
        assert_eq!("devops".parse::<Suite>(), Ok(Suite::Devops));
        assert!("nope".parse::<Suite>().is_err());
    }
}
