//! `aitherctl workflows …` and `aitherctl approvals …`: the workflow definitions, their runs,
//! the transcripts of their steps, and the approval queue, from agentd's typed documents.

use aither_api::workflow::{Approval, ApprovalList, Run, RunList, RunReply, WorkflowList};
use clap::Subcommand;
use serde_json::Value;

use crate::render::table;

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// The workflows: their triggers and steps (and the files refused, with why).
    List,
    /// One workflow in full: its steps, tools, inputs, outputs and budgets.
    Show { name: String },
    /// Turn a workflow on: its triggers fire and it may be run (root or aither-admin).
    Enable { name: String },
    /// Turn a workflow off: listed, but neither triggered nor run (root or aither-admin).
    Disable { name: String },
    /// Start a run by hand.
    Run {
        name: String,
        /// A value for one of the workflow's inputs (`workflows show NAME` lists them:
        /// `question="…"`, `docs=/srv/notes`, `unit=infer-qwen`).
        #[arg(long = "input", value_name = "KEY=VALUE")]
        inputs: Vec<String>,
    },
    /// Every run kept, newest first.
    Runs,
    /// One run: its steps, their outcomes and its proposals.
    Status { run: String },
    /// What a run's steps said and did (their transcripts).
    Logs {
        run: String,
        /// Only this step.
        #[arg(long)]
        step: Option<String>,
    },
    /// A file a run's step wrote (one of its outputs: `status RUN` lists them; root or
    /// aither-admin).
    Artifact { run: String, step: String, name: String },
    /// Cancel a run: its running step is stopped, its pending proposals withdrawn.
    Cancel { run: String },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// The approval queue: pending proposals first, then the decided ones.
    List,
    /// One proposal in full.
    Show { id: String },
    /// Approve a proposal: agentd carries it out (root or aither-admin).
    Approve { id: String },
    /// Deny a proposal (root or aither-admin).
    Deny { id: String },
}

/// `KEY=VALUE` pairs.
pub fn inputs(pairs: &[String]) -> Result<std::collections::HashMap<String, String>, String> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("--input {p:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// `2026-12-02 12:40Z`.
fn when(t: Option<u64>) -> String {
    let Some(t) = t else { return "-".into() };
    let full = aither_sys::time::utc_timestamp(t);
    format!("{} {}Z", &full[..10], &full[11..16])
}

pub fn list(doc: &WorkflowList) -> String {
    let rows = doc
        .workflows
        .iter()
        .map(|w| {
            let mut triggers = Vec::new();
            if w.manual {
                triggers.push("manual".to_string());
            }
            if !w.units.is_empty() {
                triggers.push(format!("units {}", w.units.join(",")));
            }
            if let Some(c) = &w.calendar {
                triggers.push(c.clone());
            }
            let steps: Vec<&str> = w.steps.iter().map(|s| s.name.as_str()).collect();
            vec![
                w.name.clone(),
                if w.enabled { "on" } else { "off" }.to_string(),
                triggers.join("; "),
                steps.join(" → "),
                w.description.clone(),
            ]
        })
        .collect();
    let mut out = table(&["NAME", "ENABLED", "TRIGGERS", "STEPS", "DESCRIPTION"], rows);
    for e in &doc.errors {
        out.push_str(&format!("refused: {e}\n"));
    }
    out
}

pub fn show(doc: &WorkflowList, name: &str) -> Result<String, String> {
    let w = doc.workflows.iter().find(|w| w.name == name).ok_or_else(|| format!("no workflow {name:?}"))?;
    let mut out = format!(
        "{}: {}\nfile:     {} ({})\nenabled:  {}\n",
        w.name,
        w.description,
        w.file,
        w.origin,
        if w.enabled { "yes".to_string() } else { format!("no (aitherctl workflows enable {})", w.name) }
    );
    for i in &w.inputs {
        let mut flags = vec![i.kind.name().to_string()];
        if i.required {
            flags.push("required".into());
        }
        if let Some(d) = &i.default {
            flags.push(format!("default {d}"));
        }
        out.push_str(&format!("input:    {} ({}): {}\n", i.name, flags.join(", "), i.description));
    }
    let mut served: Vec<String> = w.steps.iter().map(|s| format!("{}: {}", s.model, s.served_by)).collect();
    served.dedup();
    for s in served {
        out.push_str(&format!("model:    {s}\n"));
    }
    if !w.auto_approve.is_empty() {
        let kinds: Vec<&str> = w.auto_approve.iter().map(|k| k.name()).collect();
        out.push_str(&format!("approved without asking: {}\n", kinds.join(", ")));
    }
    out.push('\n');
    let rows = w
        .steps
        .iter()
        .map(|s| {
            let tools: Vec<&str> = s.tools.iter().map(|t| t.name()).collect();
            vec![
                s.name.clone(),
                s.model.clone(),
                tools.join(","),
                s.inputs.join(","),
                s.outputs.join(","),
                format!("{} turns, {} tokens, {} s", s.budget.steps, s.budget.tokens, s.budget.seconds),
            ]
        })
        .collect();
    out.push_str(&table(&["STEP", "MODEL", "TOOLS", "INPUTS", "OUTPUTS", "BUDGET"], rows));
    Ok(out)
}

pub fn runs(doc: &RunList) -> String {
    let rows = doc
        .runs
        .iter()
        .map(|r| {
            let done = r.steps.iter().filter(|s| s.ended.is_some()).count();
            let pending =
                r.approvals.iter().filter(|a| a.state == aither_api::workflow::ApprovalState::Pending).count();
            vec![
                r.id.clone(),
                r.state.name().to_string(),
                format!("{done}/{}", r.steps.len()),
                pending.to_string(),
                when(Some(r.created)),
                r.trigger.clone(),
            ]
        })
        .collect();
    table(&["RUN", "STATE", "STEPS", "PENDING", "STARTED", "TRIGGER"], rows)
}

pub fn status(reply: &RunReply) -> String {
    let r: &Run = &reply.run;
    let mut out = format!(
        "{} ({}): {}\ntrigger:  {}\nstarted:  {}\n",
        r.id,
        r.workflow,
        r.state.name(),
        r.trigger,
        when(Some(r.created))
    );
    if let Some(e) = r.ended {
        out.push_str(&format!("ended:    {}\n", when(Some(e))));
    }
    if let Some(why) = &r.reason {
        out.push_str(&format!("reason:   {why}\n"));
    }
    out.push('\n');
    let rows = r
        .steps
        .iter()
        .map(|s| {
            let (outcome, cost, outputs) = match &s.result {
                Some(res) => (
                    serde_json::to_value(&res.outcome)
                        .ok()
                        .and_then(|v| v.get("outcome").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or_default(),
                    format!("{}, {} tokens, {:.1} s", turns(res.turns.into()), res.completion_tokens, res.seconds),
                    res.outputs.join(","),
                ),
                None => (s.error.clone().unwrap_or_default(), "-".into(), String::new()),
            };
            vec![s.name.clone(), s.state.name().to_string(), outcome, cost, outputs]
        })
        .collect();
    out.push_str(&table(&["STEP", "STATE", "OUTCOME", "COST", "OUTPUTS"], rows));
    if !r.approvals.is_empty() {
        out.push('\n');
        out.push_str(&approvals(&r.approvals));
    }
    out
}

pub fn approvals(list: &[Approval]) -> String {
    let rows = list
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.state.name().to_string(),
                a.proposal.action(),
                a.step.clone(),
                a.decided_by.clone().unwrap_or_else(|| format!("expires {}", when(Some(a.expires)))),
                a.proposal.reason().to_string(),
            ]
        })
        .collect();
    table(&["PROPOSAL", "STATE", "ACTION", "STEP", "DECIDED BY", "REASON"], rows)
}

pub fn approval(doc: &ApprovalList, id: &str) -> Result<String, String> {
    let a = doc.approvals.iter().find(|a| a.id == id).ok_or_else(|| format!("no proposal {id:?}"))?;
    let mut out = format!(
        "{}: {} ({})\nrun:      {} ({}), step {}\nreason:   {}\nproposed: {}\nexpires:  {}\n",
        a.id,
        a.proposal.action(),
        a.state.name(),
        a.run_id,
        a.workflow,
        a.step,
        a.proposal.reason(),
        when(Some(a.created)),
        when(Some(a.expires))
    );
    if let Some(by) = &a.decided_by {
        out.push_str(&format!("decided:  {} by {by}\n", when(a.decided)));
    }
    if let Some(o) = &a.outcome {
        out.push_str(&format!("outcome:  {o}\n"));
    }
    if let Some(p) = &a.preview {
        let shown = if p.cut {
            format!("its first {} bytes of {}", p.head.len(), p.bytes)
        } else {
            format!("{} bytes", p.bytes)
        };
        out.push_str(&format!("content:  ({shown})\n"));
        for line in p.head.lines() {
            out.push_str(&format!("  | {line}\n"));
        }
    }
    Ok(out)
}

/// A transcript (`transcript.jsonl`) for people: each message and tool call on its lines.
pub fn transcript(step: &str, jsonl: &str) -> String {
    let cut = |s: &str, n: usize| {
        let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if one.chars().count() > n {
            format!("{}…", one.chars().take(n).collect::<String>())
        } else {
            one
        }
    };
    let mut out = format!("== {step}\n");
    for line in jsonl.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else { continue };
        let turn = e.get("turn").and_then(Value::as_u64).map(|t| format!("[{t}] ")).unwrap_or_default();
        match e.get("event").and_then(Value::as_str) {
            Some("message") => {
                let m = &e["message"];
                let role = m["role"].as_str().unwrap_or("?");
                if let Some(text) = m["content"].as_str().filter(|t| !t.trim().is_empty()) {
                    out.push_str(&format!("{turn}{role}: {}\n", cut(text, 400)));
                }
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "{turn}{role} calls {}({})\n",
                        call["function"]["name"].as_str().unwrap_or("?"),
                        cut(call["function"]["arguments"].as_str().unwrap_or(""), 200)
                    ));
                }
            }
            Some("tool") => {
                out.push_str(&format!(
                    "{turn}  → {}: {}\n",
                    e["name"].as_str().unwrap_or("?"),
                    cut(e["answer"].as_str().unwrap_or(""), 200)
                ));
            }
            Some("end") => {
                let r = &e["result"];
                out.push_str(&format!(
                    "end: {} after {}, {} tokens\n",
                    r["outcome"].as_str().unwrap_or("?"),
                    turns(r["turns"].as_u64().unwrap_or(0)),
                    r["completion_tokens"]
                ));
            }
            _ => {}
        }
    }
    out
}

/// "1 turn", "3 turns".
fn turns(n: u64) -> String {
    if n == 1 {
        "1 turn".into()
    } else {
        format!("{n} turns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_and_inputs_are_pairs() {
        assert_eq!(when(Some(0)), "1970-01-01 00:00Z");
        assert_eq!(when(Some(1_796_215_200)), "2026-12-02 12:40Z");
        assert_eq!(inputs(&["unit=infer-qwen".into()]).expect("pairs")["unit"], "infer-qwen");
        assert!(inputs(&["unit".into()]).is_err());
    }

    #[test]
    fn a_transcript_reads_as_lines() {
        let jsonl = r#"{"event":"message","message":{"role":"user","content":"Read the journal."}}
{"event":"message","turn":1,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c","function":{"name":"read_file","arguments":"{\"path\":\"inputs/j.txt\"}"}}]}}
{"event":"tool","turn":1,"name":"read_file","arguments":"{}","answer":"out of memory"}
{"event":"end","result":{"outcome":"completed","turns":2,"completion_tokens":20}}"#;
        assert_eq!(
            transcript("diagnose", jsonl),
            "== diagnose\nuser: Read the journal.\n[1] assistant calls read_file({\"path\":\"inputs/j.txt\"})\n[1]   → read_file: out of memory\nend: completed after 2 turns, 20 tokens\n"
        );
    }
}
