//! OpenAI's Responses API (`POST /v1/responses`), stateless: the request is read into the
//! chat completion it means (input items to messages, flat function tools to chat tools,
//! `text.format` to `response_format`) and run by the same code, and the answer is written
//! as a response object, or streamed as its typed events (`response.created`, output items,
//! text and argument deltas, `response.completed`).
//!
//! Nothing is kept: `previous_response_id` and `store: true` are refused with a 400 that
//! says to send the whole conversation as `input`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::api::ApiError;
use crate::choices::Choice;
use crate::engine::{Event, Finish};
use crate::fields::{self, is_default_tier, is_false, Field};
use crate::generate::{self, Counts};
use crate::server::{request_id, unix_now, AppState};

fn is_disabled(v: &Value) -> bool {
    v == "disabled"
}

fn is_empty(v: &Value) -> bool {
    v.as_array().is_some_and(Vec::is_empty) || v.as_object().is_some_and(Map::is_empty)
}

const STATELESS: &str = "this server keeps no responses: send the whole conversation as input";

/// `POST /v1/responses`.
pub const RESPONSES: &[(&str, Field)] = &[
    ("model", Field::Read),
    ("input", Field::Read),
    ("instructions", Field::Read),
    ("tools", Field::Read),
    ("tool_choice", Field::Read),
    ("parallel_tool_calls", Field::Read),
    ("text", Field::Read),
    ("temperature", Field::Read),
    ("top_p", Field::Read),
    ("max_output_tokens", Field::Read),
    ("stream", Field::Read),
    ("user", Field::Read),
    ("safety_identifier", Field::Read),
    ("store", Field::Only(is_false, STATELESS)),
    ("previous_response_id", Field::Refused(STATELESS)),
    ("conversation", Field::Refused(STATELESS)),
    ("background", Field::Only(is_false, "background responses are not supported: stream instead")),
    ("truncation", Field::Only(is_disabled, "truncation: a conversation that does not fit is refused, not cut")),
    ("include", Field::Only(is_empty, "include: no extra output is available")),
    ("metadata", Field::Only(is_empty, STATELESS)),
    ("reasoning", Field::Only(is_empty, "reasoning settings are not supported")),
    ("service_tier", Field::Only(is_default_tier, "there is one service tier")),
    ("prompt", Field::Refused("stored prompts are not supported")),
    ("max_tool_calls", Field::Refused("max_tool_calls is not supported")),
    ("top_logprobs", Field::Refused("top_logprobs is not supported in responses: use chat completions")),
    ("prompt_cache_key", Field::Refused("prompt_cache_key is not needed: shared prefixes are found by the worker")),
    ("stream_options", Field::Refused("stream_options is not supported in responses")),
];

/// The chat completion body a responses request means.
pub fn to_chat(v: &Value) -> Result<Value, ApiError> {
    fields::check_exact(v, RESPONSES, "responses")?;
    for (field, ok) in [
        ("temperature", Value::is_number as fn(&Value) -> bool),
        ("top_p", Value::is_number),
        ("max_output_tokens", Value::is_u64),
        ("parallel_tool_calls", Value::is_boolean),
        ("stream", Value::is_boolean),
        ("model", Value::is_string),
        ("user", Value::is_string),
        ("safety_identifier", Value::is_string),
    ] {
        if v.get(field).is_some_and(|x| !x.is_null() && !ok(x)) {
            return Err(ApiError::invalid(format!("{field} has the wrong type"), Some(field)));
        }
    }
    let mut messages = Vec::new();
    if let Some(i) = v.get("instructions").filter(|i| !i.is_null()) {
        let text =
            i.as_str().ok_or_else(|| ApiError::invalid("instructions must be a string", Some("instructions")))?;
        messages.push(json!({ "role": "system", "content": text }));
    }
    match v.get("input") {
        Some(Value::String(s)) => messages.push(json!({ "role": "user", "content": s })),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, i, &mut messages)?;
            }
        }
        _ => return Err(ApiError::invalid("input must be a string or a list of items", Some("input"))),
    }
    let mut chat = json!({ "messages": messages, "stream": false });
    for (from, to) in [
        ("model", "model"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_completion_tokens"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("user", "user"),
        ("safety_identifier", "safety_identifier"),
    ] {
        if let Some(x) = v.get(from).filter(|x| !x.is_null()) {
            chat[to] = x.clone();
        }
    }
    if let Some(tools) = v.get("tools").filter(|t| !t.is_null()) {
        let list = tools.as_array().ok_or_else(|| ApiError::invalid("tools must be an array", Some("tools")))?;
        let mut out = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ApiError::invalid(
                    format!("tools[{i}]: only function tools are supported (no hosted tools)"),
                    Some(&format!("tools[{i}].type")),
                ));
            }
            let mut f = t.as_object().cloned().unwrap_or_default();
            f.remove("type");
            out.push(json!({ "type": "function", "function": f }));
        }
        chat["tools"] = Value::Array(out);
    }
    if let Some(c) = v.get("tool_choice").filter(|c| !c.is_null()) {
        chat["tool_choice"] = match c {
            Value::String(_) => c.clone(),
            _ if c.get("type").and_then(Value::as_str) == Some("function") => {
                json!({ "type": "function", "function": { "name": c.get("name") } })
            }
            _ => {
                return Err(ApiError::invalid(
                    "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"name\": …}",
                    Some("tool_choice"),
                ))
            }
        };
    }
    if let Some(text) = v.get("text").filter(|t| !t.is_null()) {
        if let Some(k) = text.as_object().and_then(|m| m.keys().find(|k| k.as_str() != "format")) {
            return Err(ApiError::invalid(format!("text.{k} is not supported"), Some(&format!("text.{k}"))));
        }
        if let Some(f) = text.get("format") {
            chat["response_format"] = match f.get("type").and_then(Value::as_str) {
                Some("json_schema") => {
                    let mut js = f.as_object().cloned().unwrap_or_default();
                    js.remove("type");
                    json!({ "type": "json_schema", "json_schema": js })
                }
                _ => f.clone(),
            };
        }
    }
    Ok(chat)
}

/// One input item as chat messages.
fn input_item(item: &Value, i: usize, messages: &mut Vec<Value>) -> Result<(), ApiError> {
    let at = |f: &str| format!("input[{i}].{f}");
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match kind {
        "message" => {
            let role = item
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid(format!("input[{i}] needs a role"), Some(&at("role"))))?;
            let content = match item.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                            (Some("input_text" | "output_text" | "text"), Some(t)) => text.push_str(t),
                            (kind, _) => {
                                return Err(ApiError::invalid(
                                    format!("content part of type {kind:?} is not supported; only text"),
                                    Some(&at(&format!("content[{j}]"))),
                                ))
                            }
                        }
                    }
                    text
                }
                _ => return Err(ApiError::invalid("content must be a string or parts", Some(&at("content")))),
            };
            messages.push(json!({ "role": role, "content": content }));
        }
        "function_call" => {
            let call = json!({
                "id": item.get("call_id"),
                "type": "function",
                "function": { "name": item.get("name"), "arguments": item.get("arguments") },
            });
            // Calls made in one turn belong to one assistant message.
            match messages.last_mut() {
                Some(m) if m["role"] == "assistant" && m.get("tool_calls").is_some() => {
                    if let Some(calls) = m["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => messages.push(json!({ "role": "assistant", "content": null, "tool_calls": [call] })),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            messages.push(json!({ "role": "tool", "tool_call_id": item.get("call_id"), "content": output }));
        }
        other => {
            return Err(ApiError::invalid(
                format!("input items of type {other:?} are not supported"),
                Some(&at("type")),
            ))
        }
    }
    Ok(())
}

/// The response object, from the request and the finished choice.
fn response_object(
    id: &str,
    created: u64,
    req: &Value,
    model: &str,
    status: &str,
    output: Vec<Value>,
    counts: Option<Counts>,
) -> Value {
    let usage = counts.map(|c| {
        json!({
            "input_tokens": c.prompt, "input_tokens_details": { "cached_tokens": c.cached.unwrap_or(0) },
            "output_tokens": c.completion, "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": c.prompt + c.completion,
        })
    });
    let get = |k: &str, default: Value| req.get(k).filter(|v| !v.is_null()).cloned().unwrap_or(default);
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": null,
        "incomplete_details": if status == "incomplete" { json!({ "reason": "max_output_tokens" }) } else { Value::Null },
        "instructions": get("instructions", Value::Null),
        "max_output_tokens": get("max_output_tokens", Value::Null),
        "model": model,
        "output": output,
        "parallel_tool_calls": get("parallel_tool_calls", json!(true)),
        "previous_response_id": null,
        "reasoning": { "effort": null, "summary": null },
        "store": false,
        "temperature": get("temperature", json!(crate::api::DEFAULT_TEMPERATURE)),
        "text": get("text", json!({ "format": { "type": "text" } })),
        "tool_choice": get("tool_choice", json!("auto")),
        "tools": get("tools", json!([])),
        "top_p": get("top_p", json!(crate::api::DEFAULT_TOP_P)),
        "truncation": "disabled",
        "usage": usage,
        "user": get("user", Value::Null),
        "metadata": {},
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({ "type": "message", "id": id, "status": status, "role": "assistant",
            "content": [{ "type": "output_text", "text": text, "annotations": [], "logprobs": [] }] })
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({ "type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status })
}

/// The output items of a finished choice: its text as a message, then its calls.
fn output_items(resp_id: &str, c: &Choice) -> Vec<Value> {
    let mut out = vec![];
    let whole = c.whole();
    let text = whole["message"]["content"].as_str().unwrap_or("");
    if !text.is_empty() || c.calls().is_empty() {
        out.push(message_item(&format!("msg_{resp_id}"), text, "completed"));
    }
    for (k, (call_id, call)) in c.calls().iter().enumerate() {
        out.push(call_item(&format!("fc_{resp_id}_{k}"), call_id, &call.name, &call.arguments, "completed"));
    }
    out
}

/// `POST /v1/responses`.
pub async fn create(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let prepared = (|| {
        let v = crate::api::body(&body)?;
        let chat = to_chat(&v)?;
        let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let bytes = serde_json::to_vec(&chat).map_err(|e| ApiError::internal(e.to_string()))?;
        let p = generate::prepare_chat(&st, &bytes)?;
        Ok::<_, ApiError>((v, p, stream))
    })();
    let (req, p, stream) = match prepared {
        Ok(x) => x,
        Err(e) => return st.requests.refused(e),
    };
    let Ok(r) = st.ready() else { return st.requests.refused(ApiError::unavailable("the model is not loaded")) };
    let rx = match generate::submit(r, &p) {
        Ok(rx) => rx,
        Err(e) => return st.requests.refused(e),
    };
    let id = request_id("resp_", &st);
    let created = unix_now();
    let choice = generate::new_choices(&p, st.next_seed().into()).remove(0);
    st.requests.served();
    if stream {
        return events(st.model_id.clone(), id, created, req, choice, rx);
    }
    match generate::collect(vec![choice], 1, rx).await {
        Ok((choices, counts)) => {
            let c = &choices[0];
            let status = if c.finish == Some(Finish::Length) { "incomplete" } else { "completed" };
            Json(response_object(&id, created, &req, &st.model_id, status, output_items(&id, c), Some(counts)))
                .into_response()
        }
        Err(e) => st.requests.refused(e),
    }
}

/// The typed event stream.
fn events(model: String, id: String, created: u64, req: Value, choice: Choice, rx: generate::Events) -> Response {
    struct S {
        rx: generate::Events,
        choice: Choice,
        seq: u64,
        started: bool,
        /// The message item is open (its index), and its text so far.
        message: Option<(usize, String)>,
        items: Vec<Value>,
        done: bool,
        counts: Counts,
    }
    let state =
        S { rx, choice, seq: 0, started: false, message: None, items: vec![], done: false, counts: Counts::default() };
    let stream = futures_util::stream::unfold(state, move |mut s| {
        let (model, id, req) = (model.clone(), id.clone(), req.clone());
        async move {
            if s.done {
                return None;
            }
            let mut out = String::new();
            let mut emit = |s: &mut S, kind: &str, mut v: Value| {
                v["type"] = json!(kind);
                v["sequence_number"] = json!(s.seq);
                s.seq += 1;
                out.push_str(&format!("event: {kind}\ndata: {v}\n\n"));
            };
            if !s.started {
                s.started = true;
                let r = response_object(&id, created, &req, &model, "in_progress", vec![], None);
                emit(&mut s, "response.created", json!({ "response": r }));
                emit(&mut s, "response.in_progress", json!({ "response": r }));
            }
            let msg_id = format!("msg_{id}");
            let (deltas, finish) = match s.rx.recv().await {
                Some((_, Event::Text(t))) => (s.choice.text(&t), None),
                Some((_, Event::Logprob(lp))) => {
                    s.choice.logprob(lp);
                    (vec![], None)
                }
                Some((_, Event::Token(_) | Event::Progress(_))) => (vec![], None),
                Some((_, Event::Done(done))) => {
                    s.counts.add(0, &done);
                    (s.choice.done(done.finish), Some(done.finish))
                }
                Some((_, Event::Error(e))) => {
                    emit(&mut s, "error", json!({ "code": "server_error", "message": e, "param": null }));
                    s.done = true;
                    return Some((Ok::<Bytes, Infallible>(Bytes::from(out)), s));
                }
                None => return None,
            };
            for d in deltas {
                if let Some(text) = d["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
                    if s.message.is_none() {
                        let index = s.items.len();
                        s.items.push(Value::Null);
                        s.message = Some((index, String::new()));
                        emit(
                            &mut s,
                            "response.output_item.added",
                            json!({ "output_index": index, "item": { "type": "message", "id": msg_id, "status": "in_progress", "role": "assistant", "content": [] } }),
                        );
                        emit(
                            &mut s,
                            "response.content_part.added",
                            json!({ "item_id": msg_id, "output_index": index, "content_index": 0,
                                     "part": { "type": "output_text", "text": "", "annotations": [] } }),
                        );
                    }
                    let index = s.message.as_ref().map_or(0, |m| m.0);
                    if let Some(m) = s.message.as_mut() {
                        m.1.push_str(text);
                    }
                    emit(
                        &mut s,
                        "response.output_text.delta",
                        json!({ "item_id": msg_id, "output_index": index, "content_index": 0, "delta": text, "logprobs": [] }),
                    );
                }
                for call in d["delta"]["tool_calls"].as_array().cloned().unwrap_or_default() {
                    let index = s.items.len();
                    let fc_id = format!("fc_{id}_{}", call["index"]);
                    let (call_id, name, args) = (
                        call["id"].as_str().unwrap_or_default().to_string(),
                        call["function"]["name"].as_str().unwrap_or_default().to_string(),
                        call["function"]["arguments"].as_str().unwrap_or_default().to_string(),
                    );
                    emit(
                        &mut s,
                        "response.output_item.added",
                        json!({ "output_index": index, "item": call_item(&fc_id, &call_id, &name, "", "in_progress") }),
                    );
                    emit(
                        &mut s,
                        "response.function_call_arguments.delta",
                        json!({ "item_id": fc_id, "output_index": index, "delta": args }),
                    );
                    emit(
                        &mut s,
                        "response.function_call_arguments.done",
                        json!({ "item_id": fc_id, "output_index": index, "arguments": args }),
                    );
                    let item = call_item(&fc_id, &call_id, &name, &args, "completed");
                    emit(&mut s, "response.output_item.done", json!({ "output_index": index, "item": item }));
                    s.items.push(item);
                }
            }
            if let Some(finish) = finish {
                if let Some((index, text)) = s.message.take() {
                    emit(
                        &mut s,
                        "response.output_text.done",
                        json!({ "item_id": msg_id, "output_index": index, "content_index": 0, "text": text, "logprobs": [] }),
                    );
                    emit(
                        &mut s,
                        "response.content_part.done",
                        json!({ "item_id": msg_id, "output_index": index, "content_index": 0,
                                 "part": { "type": "output_text", "text": text, "annotations": [] } }),
                    );
                    let item = message_item(&msg_id, &text, "completed");
                    emit(&mut s, "response.output_item.done", json!({ "output_index": index, "item": item }));
                    s.items[index] = item;
                }
                let status = if finish == Finish::Length { "incomplete" } else { "completed" };
                let r = response_object(&id, created, &req, &model, status, s.items.clone(), Some(s.counts));
                let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
                emit(&mut s, kind, json!({ "response": r }));
                s.done = true;
            }
            Some((Ok(Bytes::from(out)), s))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_items_become_messages() {
        let chat = to_chat(&json!({
            "instructions": "be brief",
            "input": [
                { "role": "user", "content": [{ "type": "input_text", "text": "add 1 and 2" }] },
                { "type": "function_call", "call_id": "call_1", "name": "add", "arguments": "{\"a\":1,\"b\":2}" },
                { "type": "function_call", "call_id": "call_2", "name": "add", "arguments": "{\"a\":3,\"b\":4}" },
                { "type": "function_call_output", "call_id": "call_1", "output": "3" },
            ],
            "tools": [{ "type": "function", "name": "add", "parameters": { "type": "object" } }],
            "tool_choice": { "type": "function", "name": "add" },
            "text": { "format": { "type": "json_schema", "name": "out", "schema": { "type": "object" } } },
            "max_output_tokens": 9,
        }))
        .expect("valid");
        let m = chat["messages"].as_array().expect("messages");
        assert_eq!(m[0], json!({ "role": "system", "content": "be brief" }));
        assert_eq!(m[1]["content"], "add 1 and 2");
        assert_eq!(m[2]["tool_calls"].as_array().map(Vec::len), Some(2), "one turn's calls in one message");
        assert_eq!(m[3], json!({ "role": "tool", "tool_call_id": "call_1", "content": "3" }));
        assert_eq!(chat["tools"][0]["function"]["name"], "add");
        assert_eq!(chat["tool_choice"]["function"]["name"], "add");
        assert_eq!(chat["response_format"]["json_schema"]["name"], "out");
        assert_eq!(chat["max_completion_tokens"], 9);
    }

    #[test]
    fn stateful_options_are_refused() {
        for (body, param) in [
            (json!({ "input": "x", "previous_response_id": "resp_1" }), "previous_response_id"),
            (json!({ "input": "x", "store": true }), "store"),
            (json!({ "input": "x", "tools": [{ "type": "web_search" }] }), "tools[0].type"),
            (json!({ "input": [{ "type": "reasoning" }] }), "input[0].type"),
            (json!({ "input": "x", "frobnicate": 1 }), "frobnicate"),
        ] {
            let e = to_chat(&body).expect_err(param);
            assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
        }
        to_chat(&json!({ "input": "x", "store": false, "include": [], "truncation": "disabled" })).expect("defaults");
    }
}
