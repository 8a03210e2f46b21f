//! The eval's report: how often the agents get it right on one model (`aitherctl eval`,
//! `make eval`), suite by suite, scored by code against each case's expected outcome. Written
//! to `target/eval/report.json` by `make eval`, kept by agentd per model for the Cockpit page
//! (`RecordEval`, `EvalResults`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

/// The most failures a suite lists (the rest are counted only).
pub const MAX_FAILURES: usize = 50;

/// One eval of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalReport {
    pub schema_version: u32,
    /// The model asked (a name of the plan, a role, or what the server calls it).
    pub model: String,
    /// Where it was asked (`unix:/run/aither/gateway.sock`, `http://127.0.0.1:8080`); never a key.
    pub endpoint: String,
    /// The server, as it names itself (`/props` `build_info`), when it says.
    #[serde(default)]
    pub server: Option<String>,
    /// Unix time the eval began, seconds.
    pub started: u64,
    pub seconds: f64,
    /// The seeds each case ran with (one run per case and seed).
    pub seeds: Vec<u64>,
    /// A fixed subset of each suite's cases (`--quick`), not all of them.
    pub quick: bool,
    pub suites: Vec<SuiteReport>,
}

/// One suite's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuiteReport {
    /// `tools`, `devops`, `review`, `research`, `content`, `social`.
    pub suite: String,
    pub cases: u32,
    /// Cases × seeds.
    pub runs: u32,
    pub passed: u32,
    /// Failures that count twice (a wrong destructive proposal): added to `runs` in the rate.
    pub doubled: u32,
    /// `passed / (runs + doubled)`.
    pub pass_rate: f64,
    /// The 95 % Wilson score interval of the pass rate.
    pub low: f64,
    pub high: f64,
    /// Workflow steps run (the pack suites; 0 for `tools`), and how many ended with every
    /// output they declare.
    pub steps: u32,
    pub steps_with_outputs: u32,
    /// Completion tokens per run, and wall seconds per run.
    pub tokens_per_run: f64,
    pub seconds_per_run: f64,
    /// What else the suite measures, by name (each a fraction of runs): `cause` (devops: the
    /// diagnosis names the right cause class), `simple`, `parallel`, … (tools: by kind).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Failed runs, each with why (at most [`MAX_FAILURES`]).
    #[serde(default)]
    pub failures: Vec<CaseFailure>,
}

/// A run that did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseFailure {
    pub case: String,
    pub seed: u64,
    pub why: String,
}

/// The latest eval of each model, as agentd keeps them (`EvalResults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalResults {
    pub schema_version: u32,
    pub reports: Vec<EvalReport>,
}

/// The 95 % Wilson score interval of `passed` out of `n`: (low, high); (0, 1) when `n` is 0.
pub fn wilson(passed: u32, n: u32) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let n = f64::from(n);
    let p = (f64::from(passed) / n).min(1.0);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wilson_interval_matches_its_textbook_values() {
        // 8 of 10: (0.490, 0.943), as published tables give it.
        let (low, high) = wilson(8, 10);
        assert!((low - 0.4902).abs() < 1e-3 && (high - 0.9433).abs() < 1e-3, "{low} {high}");
        let (low, high) = wilson(0, 20);
        assert!(low == 0.0 && (high - 0.1611).abs() < 1e-3, "{high}");
        let (low, high) = wilson(20, 20);
        assert!((low - 0.8389).abs() < 1e-3 && (high - 1.0).abs() < 1e-9, "{low}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }
}
