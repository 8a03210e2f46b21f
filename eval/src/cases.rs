//! The suites' cases: TOML files under `eval/suites/`, carried in the binary (the eval runs on
//! an appliance where the source tree is not), parsed and checked once.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::EvalError;

const TOOLS: &str = include_str!("../suites/tools.toml");
const DEVOPS: &str = include_str!("../suites/devops.toml");
const REVIEW: &str = include_str!("../suites/review.toml");
const RESEARCH: &str = include_str!("../suites/research.toml");
const CONTENT: &str = include_str!("../suites/content.toml");

fn parse<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, EvalError> {
    toml::from_str(text).map_err(|e| EvalError::Suite { file: format!("eval/suites/{file}"), problem: e.to_string() })
}

// ------------------------------------------------------------------------ tools

/// The tool-calling suite.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSuite {
    /// Each function's description and JSON Schema of its parameters, by name.
    pub functions: BTreeMap<String, Function>,
    #[serde(rename = "case")]
    pub cases: Vec<ToolCase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    pub description: String,
    pub parameters: Value,
}

/// What a tool case is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    Simple,
    Multiple,
    Parallel,
    Irrelevance,
}

impl ToolKind {
    pub fn name(self) -> &'static str {
        match self {
            ToolKind::Simple => "simple",
            ToolKind::Multiple => "multiple",
            ToolKind::Parallel => "parallel",
            ToolKind::Irrelevance => "irrelevance",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCase {
    pub id: String,
    pub kind: ToolKind,
    /// The functions offered, by name.
    pub functions: Vec<String>,
    pub prompt: String,
    /// The calls expected, in any order; none when no function fits.
    pub expect: Vec<ExpectedCall>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCall {
    pub name: String,
    /// Each argument's accepted values (`"*"` any non-empty string, `"?"` may be absent).
    #[serde(default)]
    pub arguments: BTreeMap<String, Vec<Value>>,
}

pub fn tools() -> Result<ToolSuite, EvalError> {
    let suite: ToolSuite = parse("tools.toml", TOOLS)?;
    let bad = |problem: String| EvalError::Suite { file: "eval/suites/tools.toml".into(), problem };
    for case in &suite.cases {
        for f in &case.functions {
            if !suite.functions.contains_key(f) {
                return Err(bad(format!("case {}: no function {f}", case.id)));
            }
        }
        for call in &case.expect {
            if !case.functions.contains(&call.name) {
                return Err(bad(format!("case {}: expects {}, which it does not offer", case.id, call.name)));
            }
        }
    }
    Ok(suite)
}

// ------------------------------------------------------------------------ devops

/// A failed unit, its evidence and the right answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevopsCase {
    pub id: String,
    pub unit: String,
    pub state: String,
    pub restarts: u32,
    pub detail: String,
    /// The cause class the diagnosis should name.
    pub class: String,
    /// `restart`, `reload`, `stop` or `none`.
    pub action: String,
    pub journal: String,
    /// Other units worth seeing in the status.
    #[serde(default)]
    pub others: Vec<OtherUnit>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtherUnit {
    pub name: String,
    pub state: String,
    pub restarts: u32,
    pub detail: String,
}

/// The actions a devops case may expect.
pub const ACTIONS: [&str; 4] = ["restart", "reload", "stop", "none"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevopsFile {
    case: Vec<DevopsCase>,
}

pub fn devops() -> Result<Vec<DevopsCase>, EvalError> {
    let file: DevopsFile = parse("devops.toml", DEVOPS)?;
    for c in &file.case {
        if !ACTIONS.contains(&c.action.as_str()) {
            return Err(EvalError::Suite {
                file: "eval/suites/devops.toml".into(),
                problem: format!("case {}: action {:?} is not one of {ACTIONS:?}", c.id, c.action),
            });
        }
    }
    Ok(file.case)
}

// ------------------------------------------------------------------------ review

/// A change to review: the files of its base commit, those its own commit writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewCase {
    pub id: String,
    pub message: String,
    /// The recommendations accepted: `merge`, `merge after changes`, `do not merge`.
    pub accept: Vec<String>,
    pub base: BTreeMap<String, String>,
    /// An empty text removes the file.
    pub head: BTreeMap<String, String>,
}

/// The three recommendations.
pub const RECOMMENDATIONS: [&str; 3] = ["merge", "merge after changes", "do not merge"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewFile {
    case: Vec<ReviewCase>,
}

pub fn review() -> Result<Vec<ReviewCase>, EvalError> {
    let file: ReviewFile = parse("review.toml", REVIEW)?;
    for c in &file.case {
        if c.accept.is_empty() || c.accept.iter().any(|a| !RECOMMENDATIONS.contains(&a.as_str())) {
            return Err(EvalError::Suite {
                file: "eval/suites/review.toml".into(),
                problem: format!("case {}: accept must list some of {RECOMMENDATIONS:?}", c.id),
            });
        }
    }
    Ok(file.case)
}

// ------------------------------------------------------------------------ research

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearchSuite {
    /// The folder's documents: file name and text.
    pub docs: BTreeMap<String, String>,
    #[serde(rename = "case")]
    pub cases: Vec<ResearchCase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearchCase {
    pub id: String,
    pub question: String,
    /// The document that holds the answer.
    pub file: String,
}

pub fn research() -> Result<ResearchSuite, EvalError> {
    let suite: ResearchSuite = parse("research.toml", RESEARCH)?;
    for c in &suite.cases {
        if !suite.docs.contains_key(&c.file) {
            return Err(EvalError::Suite {
                file: "eval/suites/research.toml".into(),
                problem: format!("case {}: no document {}", c.id, c.file),
            });
        }
    }
    Ok(suite)
}

// ------------------------------------------------------------------------ content, social

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicCase {
    pub id: String,
    pub topic: String,
    /// The social suite's first post time.
    #[serde(default)]
    pub start: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentFile {
    pub content: Vec<TopicCase>,
    pub social: Vec<TopicCase>,
}

pub fn content() -> Result<ContentFile, EvalError> {
    parse("content.toml", CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suite_parses_and_has_its_cases() {
        let t = tools().expect("tools");
        assert_eq!(t.cases.len(), 100);
        for kind in [ToolKind::Simple, ToolKind::Multiple, ToolKind::Parallel, ToolKind::Irrelevance] {
            assert!(t.cases.iter().filter(|c| c.kind == kind).count() >= 20, "{kind:?}");
        }
        let mut ids: Vec<&str> = t.cases.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 100, "tool case ids are unique");
        assert!(devops().expect("devops").len() >= 20);
        assert!(review().expect("review").len() >= 10);
        let r = research().expect("research");
        assert!(r.cases.len() >= 10);
        let c = content().expect("content");
        assert!(!c.content.is_empty() && !c.social.is_empty());
        for d in devops().expect("devops") {
            assert!(
                d.journal.contains(&d.unit) || d.journal.contains("kernel"),
                "{}: the journal names its unit",
                d.id
            );
        }
    }

    #[test]
    fn a_parallel_case_expects_several_calls_and_irrelevance_none() {
        for c in tools().expect("tools").cases {
            match c.kind {
                ToolKind::Parallel => assert!(c.expect.len() >= 2, "{}", c.id),
                ToolKind::Irrelevance => assert!(c.expect.is_empty(), "{}", c.id),
                ToolKind::Simple | ToolKind::Multiple => assert_eq!(c.expect.len(), 1, "{}", c.id),
            }
            if c.kind == ToolKind::Simple {
                assert_eq!(c.functions.len(), 1, "{}", c.id);
            }
        }
    }
}
