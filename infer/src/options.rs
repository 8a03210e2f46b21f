//! What a request asks that is read with the model, the same on every route that takes it:
//! `logit_bias` in OpenAI's and llama-server's forms, the output's constraint (`grammar`,
//! `json_schema`, `response_format`), and a final assistant message to continue.

use serde_json::{json, Value};

use crate::api::{ApiError, ChatRequest};
use crate::grammar::{self, Constraint};
use crate::server::Ready;

/// The most tokens one request may bias.
const MAX_BIASED: usize = 1024;

/// `logit_bias` in OpenAI's form (an object of token ids, as strings, to a bias from -100 to
/// 100) and llama-server's (an array of `[token, bias]` pairs; a key or first element that is
/// text stands for each of its tokens; a bias of `false` bans the token). An entry this server
/// cannot read is refused, never skipped.
pub fn logit_bias(r: &Ready, v: &Value) -> Result<Vec<(i32, f32)>, ApiError> {
    let bad = |at: &str, why: &str| ApiError::invalid(format!("logit_bias{at}: {why}"), Some("logit_bias"));
    let n_vocab = r.model.n_vocab();
    let mut out = Vec::new();
    let mut add = |at: &str, key: &Value, bias: &Value| -> Result<(), ApiError> {
        let bias = match bias {
            Value::Bool(false) => f32::NEG_INFINITY,
            #[allow(clippy::cast_possible_truncation)]
            Value::Number(n) => match n.as_f64() {
                Some(b) if (-100.0..=100.0).contains(&b) => b as f32,
                _ => return Err(bad(at, &format!("the bias {n} is outside -100 to 100 (false bans the token)"))),
            },
            other => return Err(bad(at, &format!("the bias {other} is not a number or false"))),
        };
        let ids: Vec<i32> = match key {
            Value::Number(n) => vec![n.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(-1)],
            // A key that is all digits is a token id (OpenAI's form); other text, its tokens.
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                vec![s.parse::<i32>().unwrap_or(-1)]
            }
            Value::String(s) if !s.is_empty() => {
                r.model.vocab().tokenize(s.as_bytes(), false, false).iter().map(|t| t.0).collect()
            }
            other => return Err(bad(at, &format!("{other} is not a token id or a piece of text"))),
        };
        if let Some(id) = ids.iter().find(|id| !(0..n_vocab).contains(*id)) {
            return Err(bad(at, &format!("token {id} is outside the vocabulary (0 to {})", n_vocab - 1)));
        }
        out.extend(ids.into_iter().map(|id| (id, bias)));
        Ok(())
    };
    match v {
        Value::Object(m) => {
            for (k, b) in m {
                add(&format!("[{k:?}]"), &Value::String(k.clone()), b)?;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_array().map(Vec::as_slice) {
                    Some([key, bias]) => add(&format!("[{i}]"), key, bias)?,
                    _ => return Err(bad(&format!("[{i}]"), "each entry is a [token, bias] pair")),
                }
            }
        }
        _ => return Err(bad("", "an object of token ids to biases, or an array of [token or text, bias] pairs")),
    }
    if out.len() > MAX_BIASED {
        return Err(bad("", &format!("{} tokens biased; at most {MAX_BIASED}", out.len())));
    }
    Ok(out)
}

/// The constraint from llama-server's `grammar` and `json_schema` and OpenAI's
/// `response_format`: at most one of them. Returns the schema a JSON answer must match too
/// (for combining with tools).
pub fn structured(v: &Value) -> Result<(Option<Constraint>, Option<Value>), ApiError> {
    let grammar = v.get("grammar").filter(|g| !g.is_null());
    let schema = v.get("json_schema").filter(|g| !g.is_null());
    let format = v.get("response_format").filter(|g| !g.is_null());
    let given: Vec<&str> = [("grammar", grammar), ("json_schema", schema), ("response_format", format)]
        .iter()
        .filter(|(_, f)| f.is_some())
        .map(|(n, _)| *n)
        .collect();
    if given.len() > 1 {
        return Err(ApiError::invalid(
            format!("{} each constrain the output: give one", given.join(" and ")),
            Some(given[1]),
        ));
    }
    if let Some(g) = grammar {
        let text = g.as_str().ok_or_else(|| ApiError::invalid("grammar must be a GBNF string", Some("grammar")))?;
        grammar::check_syntax(text)
            .map_err(|e| ApiError::invalid(format!("the grammar does not parse: {e}"), Some("grammar")))?;
        return Ok((Some(Constraint::Full { gbnf: text.to_string() }), None));
    }
    if let Some(s) = schema {
        return Ok((Some(Constraint::Full { gbnf: grammar::from_schema(s, "json_schema")? }), Some(s.clone())));
    }
    let Some(f) = format else { return Ok((None, None)) };
    let kind = f.get("type").and_then(Value::as_str).unwrap_or("");
    let keys = |allowed: &[&str]| -> Result<(), ApiError> {
        match f.as_object().and_then(|m| m.keys().find(|k| !allowed.contains(&k.as_str()))) {
            Some(k) => Err(ApiError::invalid(
                format!("response_format.{k} is not a field of a {kind:?} response format"),
                Some(&format!("response_format.{k}")),
            )),
            None => Ok(()),
        }
    };
    match kind {
        "text" => {
            keys(&["type"])?;
            Ok((None, None))
        }
        "json_object" => {
            // llama-server takes a schema here too.
            keys(&["type", "schema"])?;
            match f.get("schema") {
                Some(s) => Ok((
                    Some(Constraint::Full { gbnf: grammar::from_schema(s, "response_format.schema")? }),
                    Some(s.clone()),
                )),
                None => Ok((Some(Constraint::Full { gbnf: grammar::json_object() }), Some(json!({"type": "object"})))),
            }
        }
        "json_schema" => {
            keys(&["type", "json_schema"])?;
            let js = f.get("json_schema").and_then(Value::as_object).ok_or_else(|| {
                ApiError::invalid("response_format json_schema needs a json_schema object", Some("response_format"))
            })?;
            if let Some(k) = js.keys().find(|k| !["name", "schema", "strict", "description"].contains(&k.as_str())) {
                return Err(ApiError::invalid(
                    format!("response_format.json_schema.{k} is not a field of a JSON schema format"),
                    Some(&format!("response_format.json_schema.{k}")),
                ));
            }
            let name = js.get("name").and_then(Value::as_str).unwrap_or("");
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return Err(ApiError::invalid(
                    "response_format.json_schema.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -",
                    Some("response_format.json_schema.name"),
                ));
            }
            // `strict` is always so here: the grammar admits only matching output.
            let s = js.get("schema").cloned().unwrap_or_else(|| json!({}));
            let gbnf = grammar::from_schema(&s, "response_format.json_schema.schema")?;
            Ok((Some(Constraint::Full { gbnf }), Some(s)))
        }
        other => Err(ApiError::invalid(
            format!("response_format type {other:?}: expected \"text\", \"json_object\" or \"json_schema\""),
            Some("response_format.type"),
        )),
    }
}

/// `add_generation_prompt` and `continue_final_message` as vLLM and llama-server read them:
/// whether the prompt ends with the assistant's header, and the text of a final assistant
/// message the answer continues (the prompt is the conversation before it, the header, then
/// that text). Returns the first and the second.
pub fn continuation(req: &ChatRequest) -> Result<(bool, Option<String>), ApiError> {
    let last = req.messages.len() - 1;
    let assistant = |i: usize| req.messages[i].role == "assistant";
    if last >= 1 && assistant(last) && assistant(last - 1) {
        return Err(ApiError::invalid(
            "Cannot have 2 or more assistant messages at the end of the list.",
            Some("messages"),
        ));
    }
    let add = req.add_generation_prompt.unwrap_or(true);
    let field = Some("continue_final_message");
    let continued = match &req.continue_final_message {
        None | Some(Value::Null | Value::Bool(false)) => return Ok((add, None)),
        Some(Value::Bool(true)) => true,
        Some(Value::String(s)) if s == "content" => true,
        Some(Value::String(s)) if s == "reasoning_content" => {
            return Err(ApiError::invalid(
                "continue_final_message: this server keeps no reasoning apart from the content; continue \"content\"",
                field,
            ))
        }
        Some(other) => {
            return Err(ApiError::invalid(format!("continue_final_message {other}: true, false or \"content\""), field))
        }
    };
    if continued && add {
        return Err(ApiError::invalid(
            "Cannot set both add_generation_prompt and continue_final_message to true.",
            Some("add_generation_prompt"),
        ));
    }
    let m = &req.messages[last];
    if !assistant(last) {
        return Err(ApiError::invalid(
            format!(
                "continue_final_message: the last message (messages[{last}]) is the {}'s, not the assistant's",
                m.role
            ),
            field,
        ));
    }
    if m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::invalid("Cannot continue an assistant message that contains tool calls.", field));
    }
    Ok((false, Some(m.text(last)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_constraint_at_a_time_and_formats_are_checked() {
        let e = structured(&json!({"grammar": "root ::= \"a\"", "json_schema": {}})).expect_err("two");
        assert_eq!(e.param.as_deref(), Some("json_schema"));
        let e = structured(&json!({"grammar": "root ::= b"})).expect_err("undefined rule");
        assert!(e.message.contains("line 1 column 10"), "{}", e.message);
        assert_eq!(structured(&json!({"response_format": {"type": "text"}})).expect("text").0, None);
        let e = structured(&json!({"response_format": {"type": "xml"}})).expect_err("type");
        assert_eq!(e.param.as_deref(), Some("response_format.type"));
        let e = structured(&json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}))
            .expect_err("name");
        assert_eq!(e.param.as_deref(), Some("response_format.json_schema.name"));
        let e =
            structured(&json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "extra": 1}}}))
                .expect_err("unknown key");
        assert_eq!(e.param.as_deref(), Some("response_format.json_schema.extra"));
    }
}
