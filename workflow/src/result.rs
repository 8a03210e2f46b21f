//! A step's `result.json` as agentd takes it: untrusted input. Anything that runs in the step
//! (the runner, but also a command it runs — the code-review pack's `make test` of the change
//! under review — and their children) can write that file, so agentd believes nothing in it
//! that the step was not allowed to do: proposals only from a step granted `propose`, of its
//! kinds and units, at most the runner's own cap; only declared outputs; every string cut to
//! its bound; and agentd's own record of the step's SELinux context, never the file's.

use aither_api::workflow::{Proposal, RefusedCall, StepResult, Tool, MAX_PROPOSALS, MAX_REASON, MAX_SUMMARY};

use crate::Step;

/// The largest `result.json` agentd reads: the runner's own results are a few KiB.
pub const MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;
/// The most refused calls kept of a step.
pub const MAX_REFUSED: usize = 64;
/// The longest a refused call's tool name and reason are kept.
const MAX_TOOL_NAME: usize = 64;
const MAX_REFUSED_REASON: usize = 1024;

/// What a step's result may claim, from agentd's own records.
#[derive(Debug, Clone, Copy)]
pub struct Claims<'a> {
    pub run_id: &'a str,
    /// The step as its workflow defines it (its grants, outputs and kinds of proposal).
    pub step: &'a Step,
    /// The units the run may act on (names or `*` patterns); empty: none.
    pub act_on: &'a [String],
    /// The SELinux context agentd started the step in.
    pub context: Option<&'a str>,
}

/// A step result agentd can keep: `result`, with what was cut from it said in `cut`.
#[derive(Debug, Clone, PartialEq)]
pub struct Vetted {
    pub result: StepResult,
    pub cut: Vec<String>,
}

/// Read `bytes` (a step's `result.json`) as a result of `claims`' step. A result that claims
/// what the step could not have done (a proposal without the grant, more than
/// [`MAX_PROPOSALS`], an undeclared output, another run or step) is refused with the reason; a
/// string longer than its bound is cut.
pub fn vet(bytes: &[u8], claims: &Claims<'_>) -> Result<Vetted, String> {
    if bytes.len() > MAX_RESULT_BYTES {
        return Err(format!(
            "its result.json is {} bytes, more than the {} KiB a step result may be",
            bytes.len(),
            MAX_RESULT_BYTES / 1024
        ));
    }
    let mut r: StepResult =
        serde_json::from_slice(bytes).map_err(|e| format!("its result.json is not a step result: {e}"))?;
    let step = claims.step;
    if r.run_id != claims.run_id {
        return Err(format!("its result.json is for run {:?}", cut_text(&r.run_id, 64).0));
    }
    if r.step != step.name {
        return Err(format!("its result.json is for step {:?}", cut_text(&r.step, 64).0));
    }
    if !r.proposals.is_empty() && !step.tools.contains(&Tool::Propose) {
        return Err(format!(
            "its result.json holds {} proposals, and step {} is not granted propose",
            r.proposals.len(),
            step.name
        ));
    }
    if r.proposals.len() > MAX_PROPOSALS {
        return Err(format!(
            "its result.json holds {} proposals, more than the {MAX_PROPOSALS} a step may make",
            r.proposals.len()
        ));
    }
    for p in &r.proposals {
        let kind = p.kind();
        if !step.proposals.is_empty() && !step.proposals.contains(&kind) {
            return Err(format!("its result.json proposes {}, a kind step {} may not propose", kind.name(), step.name));
        }
        if let Proposal::Start { unit, .. } | Proposal::Stop { unit, .. } | Proposal::Restart { unit, .. } = p {
            if !claims.act_on.iter().any(|p| aither_api::workflow::pattern_matches(p, unit)) {
                let may =
                    if claims.act_on.is_empty() { "no unit".to_string() } else { claims.act_on.join(", ") + " only" };
                return Err(format!(
                    "its result.json proposes to act on {:?}; this run may act on {may}",
                    cut_text(unit, 64).0
                ));
            }
        }
    }
    if let Some(out) = r.outputs.iter().find(|o| !step.outputs.contains(o)) {
        return Err(format!(
            "its result.json names the output {:?}, which step {} does not declare",
            cut_text(out, 64).0,
            step.name
        ));
    }
    let mut cut = Vec::new();
    cut_field(&mut r.summary, MAX_SUMMARY, "summary", &mut cut);
    for (i, p) in r.proposals.iter_mut().enumerate() {
        cut_field(p.reason_mut(), MAX_REASON * 4, &format!("proposal {}'s reason", i + 1), &mut cut);
    }
    if let aither_api::workflow::StepOutcome::Failed { reason } = &mut r.outcome {
        cut_field(reason, MAX_REASON * 4, "the outcome's reason", &mut cut);
    }
    if let aither_api::workflow::StepOutcome::BudgetExhausted { budget } = &mut r.outcome {
        cut_field(budget, 16, "the exhausted budget's name", &mut cut);
    }
    if r.refused.len() > MAX_REFUSED {
        cut.push(format!("{} refused calls (the first {MAX_REFUSED} kept)", r.refused.len()));
        r.refused.truncate(MAX_REFUSED);
    }
    for RefusedCall { tool, reason } in &mut r.refused {
        cut_field(tool, MAX_TOOL_NAME, "a refused call's tool", &mut cut);
        cut_field(reason, MAX_REFUSED_REASON, "a refused call's reason", &mut cut);
    }
    r.context = claims.context.map(str::to_string);
    Ok(Vetted { result: r, cut })
}

/// Cut `s` to at most `max` bytes, on a character boundary, noting it in `cut` as `what`.
fn cut_field(s: &mut String, max: usize, what: &str, cut: &mut Vec<String>) {
    let (kept, was) = cut_text(s, max);
    if was {
        cut.push(format!("{what} ({} bytes, cut to {})", s.len(), kept.len()));
        *s = kept.to_string();
    }
}

fn cut_text(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}
