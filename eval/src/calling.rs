//! The tool-calling suite: one chat completion per case with its functions offered
//! (`tool_choice: auto`, the case's seed, the temperature the appliance's agents use), and the calls that come back compared with the
//! expected ones by value and type, in the manner of the Berkeley Function Calling
//! Leaderboard's AST check: the same number of calls, each to the right function, every
//! argument given one of the accepted values, nothing given that was not asked for.

use std::time::{Duration, Instant};

use aither_agent::gateway::{Gateway, ToolCall};
use serde_json::{json, Map, Value};

use crate::cases::{ExpectedCall, ToolCase, ToolSuite};
use crate::RunOutcome;

/// The most a case's answer may generate.
const MAX_TOKENS: u64 = 384;
/// How long one case may take.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Ask the model and score its answer.
pub fn run(suite: &ToolSuite, case: &ToolCase, gateway: &Gateway, model: &str, seed: u64) -> RunOutcome {
    let started = Instant::now();
    let tools: Vec<Value> = case
        .functions
        .iter()
        .filter_map(|name| suite.functions.get(name).map(|f| (name, f)))
        .map(|(name, f)| {
            json!({"type": "function", "function": {"name": name, "description": f.description, "parameters": f.parameters}})
        })
        .collect();
    let request = json!({
        "model": model,
        "messages": [{"role": "user", "content": case.prompt}],
        "tools": tools,
        "tool_choice": "auto",
        "max_tokens": MAX_TOKENS,
        "seed": seed,
        "temperature": aither_agent::step::TEMPERATURE,
    });
    let mut outcome = RunOutcome::new(&case.id, seed);
    outcome.metrics.push((case.kind.name().to_string(), false));
    match gateway.chat(&request, TIMEOUT) {
        Err(e) => outcome.why = format!("the server: {e}"),
        Ok(reply) => {
            outcome.tokens = reply.completion_tokens;
            // What the server made of the answer, apart from whether it is right: a call where
            // one was asked for, and every call to an offered function with an object for
            // arguments.
            if !case.expect.is_empty() {
                outcome.metrics.push(("calls_made".into(), !reply.tool_calls.is_empty()));
            }
            let valid = reply.tool_calls.iter().all(|c| {
                case.functions.contains(&c.name)
                    && matches!(serde_json::from_str::<Value>(&c.arguments), Ok(Value::Object(_)))
            });
            outcome.metrics.push(("arguments_valid".into(), valid));
            match score(&case.expect, &reply.tool_calls) {
                Ok(()) => outcome.pass(),
                Err(why) => outcome.why = why,
            }
        }
    }
    if outcome.passed {
        outcome.metrics[0].1 = true;
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome
}

/// Whether `got` is the expected set of calls; why not.
pub fn score(expect: &[ExpectedCall], got: &[ToolCall]) -> Result<(), String> {
    if expect.is_empty() {
        return match got.first() {
            None => Ok(()),
            Some(c) => Err(format!("called {} although no function fits", c.name)),
        };
    }
    if got.is_empty() {
        return Err("made no call".into());
    }
    if got.len() != expect.len() {
        let names: Vec<&str> = got.iter().map(|c| c.name.as_str()).collect();
        return Err(format!("made {} call(s) ({}), expected {}", got.len(), names.join(", "), expect.len()));
    }
    let mut parsed = Vec::new();
    for c in got {
        match serde_json::from_str::<Value>(&c.arguments) {
            Ok(Value::Object(map)) => parsed.push((c.name.as_str(), map)),
            Ok(other) => return Err(format!("{}'s arguments are not an object: {other}", c.name)),
            Err(e) => return Err(format!("{}'s arguments are not JSON ({e}): {}", c.name, c.arguments)),
        }
    }
    // Any order: try each pairing (a case has at most a few calls).
    let mut used = vec![false; parsed.len()];
    let mut first_problem = None;
    if pair(expect, &parsed, &mut used, &mut first_problem) {
        Ok(())
    } else {
        Err(first_problem.unwrap_or_else(|| "the calls do not match".into()))
    }
}

fn pair(
    expect: &[ExpectedCall],
    got: &[(&str, Map<String, Value>)],
    used: &mut [bool],
    problem: &mut Option<String>,
) -> bool {
    let Some((first, rest)) = expect.split_first() else { return true };
    for i in 0..got.len() {
        if used[i] {
            continue;
        }
        match matches(first, got[i].0, &got[i].1) {
            Ok(()) => {
                used[i] = true;
                if pair(rest, got, used, problem) {
                    return true;
                }
                used[i] = false;
            }
            Err(why) => {
                problem.get_or_insert(why);
            }
        }
    }
    false
}

/// One call against one expected call.
fn matches(expect: &ExpectedCall, name: &str, args: &Map<String, Value>) -> Result<(), String> {
    if name != expect.name {
        return Err(format!("called {name}, expected {}", expect.name));
    }
    for (k, v) in args {
        let Some(accepted) = expect.arguments.get(k) else {
            return Err(format!("{name}: argument {k} = {v} was not asked for"));
        };
        if !accepted.iter().any(|a| value_matches(a, v)) {
            return Err(format!("{name}: {k} = {v}, expected one of {}", show(accepted)));
        }
    }
    for (k, accepted) in &expect.arguments {
        if !args.contains_key(k) && !accepted.iter().any(|a| a.as_str() == Some("?")) {
            return Err(format!("{name}: argument {k} is missing (expected one of {})", show(accepted)));
        }
    }
    Ok(())
}

fn show(accepted: &[Value]) -> String {
    let shown: Vec<String> = accepted.iter().filter(|a| a.as_str() != Some("?")).map(Value::to_string).collect();
    shown.join(", ")
}

/// A value against one accepted value: strings trimmed and case-blind (a final full stop
/// ignored), numbers by value (an integer where a float is expected is fine; a number as a
/// string is not), `"*"` any non-empty string.
fn value_matches(accepted: &Value, got: &Value) -> bool {
    match (accepted, got) {
        (Value::String(a), Value::String(g)) if a == "*" => !g.trim().is_empty(),
        (Value::String(a), Value::String(g)) => normalize(a) == normalize(g),
        (Value::Number(a), Value::Number(g)) => match (a.as_f64(), g.as_f64()) {
            (Some(a), Some(g)) => (a - g).abs() <= 1e-9 * a.abs().max(1.0),
            _ => false,
        },
        (Value::Bool(a), Value::Bool(g)) => a == g,
        _ => false,
    }
}

fn normalize(s: &str) -> String {
    let s = s.trim().trim_end_matches('.').trim();
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn call(name: &str, args: &str) -> ToolCall {
        ToolCall { id: "c".into(), name: name.into(), arguments: args.into() }
    }

    fn expected(name: &str, args: &[(&str, Vec<Value>)]) -> ExpectedCall {
        ExpectedCall {
            name: name.into(),
            arguments: args.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn arguments_compare_by_value_and_type() {
        let e = [expected(
            "convert_currency",
            &[("amount", vec![json!(100)]), ("from", vec![json!("USD")]), ("to", vec![json!("EUR")])],
        )];
        assert_eq!(score(&e, &[call("convert_currency", r#"{"amount": 100.0, "from": "usd", "to": "EUR."}"#)]), Ok(()));
        let wrong_type = score(&e, &[call("convert_currency", r#"{"amount": "100", "from": "USD", "to": "EUR"}"#)]);
        assert!(wrong_type.expect_err("a string is not a number").contains("amount"));
        let extra = score(&e, &[call("convert_currency", r#"{"amount": 100, "from": "USD", "to": "EUR", "fee": 1}"#)]);
        assert!(extra.expect_err("fee was not asked for").contains("fee"));
        let missing = score(&e, &[call("convert_currency", r#"{"amount": 100, "from": "USD"}"#)]);
        assert!(missing.expect_err("to is missing").contains("to is missing"));
    }

    #[test]
    fn optional_arguments_and_wildcards() {
        let e = [expected("set_timer", &[("minutes", vec![json!(10)]), ("label", vec![json!("?"), json!("*")])])];
        assert_eq!(score(&e, &[call("set_timer", r#"{"minutes": 10}"#)]), Ok(()));
        assert_eq!(score(&e, &[call("set_timer", r#"{"minutes": 10, "label": "tea"}"#)]), Ok(()));
        assert!(score(&e, &[call("set_timer", r#"{"minutes": 10, "label": " "}"#)]).is_err());
    }

    #[test]
    fn parallel_calls_match_in_any_order_and_irrelevance_wants_none() {
        let e = [
            expected("get_weather", &[("city", vec![json!("Oslo")])]),
            expected("get_weather", &[("city", vec![json!("Paris")])]),
        ];
        let got = [call("get_weather", r#"{"city": "Paris"}"#), call("get_weather", r#"{"city": "Oslo"}"#)];
        assert_eq!(score(&e, &got), Ok(()));
        let twice = [call("get_weather", r#"{"city": "Oslo"}"#), call("get_weather", r#"{"city": "Oslo"}"#)];
        assert!(score(&e, &twice).is_err());
        assert!(score(&e, &got[..1]).expect_err("one of two").contains("expected 2"));
        assert_eq!(score(&[], &[]), Ok(()));
        assert!(score(&[], &got[..1]).expect_err("no call wanted").contains("no function fits"));
        assert_eq!(score(&e[..1], &[]), Err("made no call".into()));
    }
}
