//! Chat and text completions: a request read into a prompt and a [`Generation`], run as
//! one engine job per choice, answered whole or as Server-Sent Events in OpenAI's shape.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use llama_cpp_2::token::LlamaToken;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{self, ApiError, ChatRequest, CompletionRequest, Generation, Prompt, SamplingFields};
use crate::choices::{Choice, Kind};
use crate::engine::{Done, Event, Job};
use crate::fields;
use crate::options;
use crate::server::{check_fit, request_id, token_ids, tokenize, unix_now, AppState, Ready};
use crate::tools::{generic_instructions, Choice as ToolChoice, Family, Tools};

/// A request read and checked, ready for the engine.
#[derive(Debug)]
pub struct Prepared {
    pub tokens: Vec<LlamaToken>,
    /// More prompts after `tokens` (`/v1/completions` given several): each gets its `n` choices.
    pub also: Vec<Vec<LlamaToken>>,
    /// The prompt as rendered or given (token ids written out as text): `__verbose`'s.
    pub text: String,
    pub generation: Generation,
    /// The tool-call family, when the model may call tools.
    pub tools: Option<Family>,
    pub kind: Kind,
}

/// What every generating route checks first: a ready worker that generates, the body's
/// fields against the route's table, its sampling options.
pub fn open<'a>(
    st: &'a AppState,
    body: &[u8],
    table: &[(&'static str, fields::Field)],
    what: &str,
) -> Result<(&'a Ready, Value, Generation), ApiError> {
    let r = st.ready()?;
    let v = api::body(body)?;
    fields::check(&v, table, what)?;
    if r.engine.embeddings {
        return Err(ApiError::invalid(
            format!("{} is an embedding model: use /v1/embeddings", st.model_id),
            Some("model"),
        ));
    }
    let sampling: SamplingFields = api::fields(&v)?;
    if let Some(user) = v.get("user").or_else(|| v.get("safety_identifier")).and_then(Value::as_str) {
        // OpenAI's end-user id is for tracing abuse: it goes to the log with the request.
        tracing::info!(user, "request");
    }
    let mut g = sampling.validate(st.next_seed())?;
    g.verbose = v.get("verbose").and_then(Value::as_bool).unwrap_or(false);
    if g.verbose && g.stream {
        return Err(ApiError::invalid(
            "verbose is for whole answers: __verbose is not sent in a stream (ask with stream: false)",
            Some("verbose"),
        ));
    }
    if let Some(bias) = sampling.logit_bias.as_ref().filter(|b| !b.is_null()) {
        g.logit_bias = options::logit_bias(r, bias)?;
    }
    Ok((r, v, g))
}

/// `POST /v1/chat/completions`.
pub fn prepare_chat(st: &AppState, body: &[u8]) -> Result<Prepared, ApiError> {
    let (r, v, mut g) = open(st, body, fields::CHAT, "chat completion")?;
    let req: ChatRequest = api::fields(&v)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages is empty", Some("messages")));
    }
    g.logprobs = match (req.logprobs, req.top_logprobs) {
        (Some(true), top) => {
            let top = top.unwrap_or(0);
            if !(0..=api::MAX_TOP_LOGPROBS).contains(&top) {
                return Err(ApiError::invalid(
                    format!("top_logprobs {top}: from 0 to {}", api::MAX_TOP_LOGPROBS),
                    Some("top_logprobs"),
                ));
            }
            Some(usize::try_from(top).unwrap_or(0))
        }
        (_, Some(top)) if top > 0 => {
            return Err(ApiError::invalid("top_logprobs needs logprobs: true", Some("top_logprobs")));
        }
        _ => None,
    };
    let (constraint, response_schema) = options::structured(&v)?;
    let tools = Tools::from_request(req.tools.as_ref(), req.tool_choice.as_ref(), req.parallel_tool_calls)?;
    let calling = tools.as_ref().filter(|t| t.choice != ToolChoice::None);
    if calling.is_some() && v.get("grammar").is_some_and(|g| !g.is_null()) {
        return Err(ApiError::invalid("grammar cannot be combined with tools", Some("grammar")));
    }
    let family = calling.map(|_| Family::detect(r.template.source()));
    g.constraint = match (calling, family) {
        (Some(t), Some(f)) => f.constraint(t, response_schema.as_ref())?,
        _ => constraint,
    };
    let (add_generation_prompt, continued) = options::continuation(&req)?;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    for (i, m) in req.messages.iter().enumerate() {
        messages.push(m.template_value(i)?);
    }
    if continued.is_some() {
        messages.pop();
    }
    // A template that knows no tools gets the history written as text it can show (and,
    // when the model may call, the instructions), whether or not this turn calls.
    let knows_tools = Family::detect(r.template.source()) != Family::Generic;
    let template_tools = match (calling, knows_tools) {
        (Some(t), false) => {
            generic_history(&mut messages, Some(&generic_instructions(t)), r.template.source());
            None
        }
        (None, false) => {
            generic_history(&mut messages, None, r.template.source());
            None
        }
        (Some(t), true) => Some(&t.raw),
        (None, true) => None,
    };
    let mut prompt = r.template.render(&messages, template_tools, add_generation_prompt || continued.is_some())?;
    if let Some(text) = continued {
        prompt.push_str(&text);
    }
    let tokens = tokenize(r, &prompt);
    check_fit(r, tokens.len(), &g, "messages")?;
    g.special = family.is_some();
    if let Some(c) = &g.constraint {
        c.check(&r.model, if calling.is_some() { "tools" } else { "response_format" })?;
    }
    Ok(Prepared { tokens, also: vec![], text: prompt, generation: g, tools: family, kind: Kind::Chat })
}

/// For a template that knows no tools: earlier calls written as the JSON the model answers
/// with, tool results as messages the template can show, and the instructions after the last
/// turn.
fn generic_history(messages: &mut Vec<Value>, instructions: Option<&str>, template: &str) {
    let tool_role = template.contains("'tool'") || template.contains("\"tool\"") || !template.contains("role");
    for m in messages.iter_mut() {
        if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| json!({ "name": c["function"]["name"], "arguments": c["function"]["arguments"] }))
                .collect();
            *m = json!({ "role": "assistant", "content": json!({ "tool_calls": calls }).to_string() });
        } else if m["role"] == "tool" && !tool_role {
            let body = json!({ "tool_response": { "tool_call_id": m["tool_call_id"], "content": m["content"] } });
            *m = json!({ "role": "user", "content": body.to_string() });
        }
    }
    // The instructions go into the last turn, before what the model must act on (the user's
    // request, a tool's answer): a small model heeds the last turn far more than a system
    // message (measured by the eval's tool-calling suite). Without such a turn, they open the
    // system message.
    let Some(instructions) = instructions else { return };
    match messages.last_mut() {
        Some(m) if (m["role"] == "user" || m["role"] == "tool") && m["content"].is_string() => {
            let content = m["content"].as_str().unwrap_or("").to_string();
            m["content"] = json!(format!("{instructions}\n\nRequest: {content}"));
        }
        _ => match messages.first_mut() {
            Some(m) if m["role"] == "system" => {
                let content = m["content"].as_str().unwrap_or("").to_string();
                m["content"] = json!(format!("{instructions}\n\n{content}"));
            }
            _ => messages.insert(0, json!({ "role": "system", "content": instructions })),
        },
    }
}

/// `POST /v1/completions`.
pub fn prepare_completion(st: &AppState, body: &[u8]) -> Result<Prepared, ApiError> {
    let (r, v, mut g) = open(st, body, fields::COMPLETIONS, "completion")?;
    let req: CompletionRequest = api::fields(&v)?;
    // llama-server's name for max_tokens, on its OpenAI route too: -1 no limit.
    if let Some(n) = v.get("n_predict").filter(|n| !n.is_null()) {
        let limit = match n.as_i64() {
            Some(-1) => None,
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => {
                return Err(ApiError::invalid(format!("n_predict {n}: -1 (no limit) or at least 1"), Some("n_predict")))
            }
        };
        if v.get("max_tokens").is_some_and(|m| !m.is_null()) && g.max_tokens != limit {
            return Err(ApiError::invalid(
                "n_predict and max_tokens differ: give one of them (n_predict is llama-server's name for max_tokens)",
                Some("n_predict"),
            ));
        }
        g.max_tokens = limit;
    }
    if let Some(n) = req.logprobs {
        if !(0..=5).contains(&n) {
            return Err(ApiError::invalid(format!("logprobs {n}: from 0 to 5"), Some("logprobs")));
        }
        g.logprobs = Some(usize::try_from(n).unwrap_or(0));
    }
    g.constraint = options::structured(&v)?.0;
    if let Some(c) = &g.constraint {
        c.check(&r.model, "grammar")?;
    }
    let mut prompts: Vec<(Vec<LlamaToken>, String)> = match &req.prompt {
        Prompt::Text(t) => vec![(tokenize(r, t), t.clone())],
        Prompt::Texts(v) => v.iter().map(|t| (tokenize(r, t), t.clone())).collect(),
        Prompt::Tokens(ids) => {
            let tokens = token_ids(r, ids, "prompt")?;
            let text = crate::llama::detokenize_text(r, &tokens);
            vec![(tokens, text)]
        }
        Prompt::TokenLists(lists) => lists
            .iter()
            .enumerate()
            .map(|(i, ids)| {
                let tokens = token_ids(r, ids, &format!("prompt[{i}]"))?;
                let text = crate::llama::detokenize_text(r, &tokens);
                Ok((tokens, text))
            })
            .collect::<Result<_, ApiError>>()?,
    };
    if prompts.is_empty() {
        return Err(ApiError::invalid("prompt is an empty list", Some("prompt")));
    }
    let jobs = prompts.len().saturating_mul(g.n);
    if jobs > usize::try_from(api::MAX_N).unwrap_or(16) {
        return Err(ApiError::invalid(
            format!("{} prompts × n {} = {jobs} choices; at most {} per request", prompts.len(), g.n, api::MAX_N),
            Some("prompt"),
        ));
    }
    for (i, (tokens, _)) in prompts.iter().enumerate() {
        let field = if prompts.len() == 1 { "prompt".to_string() } else { format!("prompt[{i}]") };
        check_fit(r, tokens.len(), &g, &field)?;
    }
    let (tokens, text) = prompts.remove(0);
    let also = prompts.into_iter().map(|(t, _)| t).collect();
    Ok(Prepared { tokens, also, text, generation: g, tools: None, kind: Kind::Text })
}

/// One choice's events, tagged with its index.
pub type Tagged = (usize, Event);

/// The events of a request's choices as the engine sends them, each tagged with its
/// choice: read straight from each choice's channel (no task in between), and dropped with
/// the response, which cancels the jobs.
#[derive(Debug)]
pub struct Events {
    rxs: Vec<Option<mpsc::UnboundedReceiver<Event>>>,
    next: usize,
}

impl Events {
    pub fn new(rxs: Vec<mpsc::UnboundedReceiver<Event>>) -> Events {
        Events { rxs: rxs.into_iter().map(Some).collect(), next: 0 }
    }

    /// The next event of any choice; None once every choice's channel is closed.
    pub async fn recv(&mut self) -> Option<Tagged> {
        std::future::poll_fn(|cx| {
            let n = self.rxs.len();
            let mut open = false;
            for k in 0..n {
                let i = (self.next + k) % n;
                let Some(rx) = &mut self.rxs[i] else { continue };
                match rx.poll_recv(cx) {
                    std::task::Poll::Ready(Some(ev)) => {
                        self.next = (i + 1) % n;
                        return std::task::Poll::Ready(Some((i, ev)));
                    }
                    std::task::Poll::Ready(None) => self.rxs[i] = None,
                    std::task::Poll::Pending => open = true,
                }
            }
            if open {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(None)
            }
        })
        .await
    }
}

/// Submit one job per choice of each prompt (a prompt's choices' seeds one apart); choice
/// `k` is prompt `k / n`'s.
pub fn submit(r: &Ready, p: &Prepared) -> Result<Events, ApiError> {
    let mut rxs = Vec::with_capacity(p.generation.n * (1 + p.also.len()));
    for prompt in std::iter::once(&p.tokens).chain(&p.also) {
        for i in 0..p.generation.n {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut g = p.generation.clone();
            g.sampling.seed = g.sampling.seed.wrapping_add(u32::try_from(i).unwrap_or(0));
            if !r.engine.submit(Job::Generate { prompt: prompt.clone(), generation: Box::new(g), events: tx }) {
                return Err(ApiError::internal("the inference engine has stopped"));
            }
            rxs.push(rx);
        }
    }
    Ok(Events::new(rxs))
}

fn object(kind: Kind, stream: bool) -> &'static str {
    match (kind, stream) {
        (Kind::Chat, false) => "chat.completion",
        (Kind::Chat, true) => "chat.completion.chunk",
        (Kind::Text, _) => "text_completion",
    }
}

pub fn usage(prompt: usize, completion: usize, cached: usize) -> Value {
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": { "cached_tokens": cached } })
}

pub const SYSTEM_FINGERPRINT: &str = concat!("aither-infer-", env!("CARGO_PKG_VERSION"));

/// Token counts over the choices: the prompt once, the completions summed, the prompt
/// tokens every choice found cached.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Choices per prompt: the prompt's tokens are counted once for them.
    pub per_prompt: usize,
    pub prompt: usize,
    pub completion: usize,
    pub cached: Option<usize>,
    /// The first choice's timings.
    pub timings: Option<crate::engine::Timings>,
}

impl Counts {
    pub fn new(per_prompt: usize) -> Counts {
        Counts { per_prompt, ..Counts::default() }
    }

    /// Choice `choice` ended: its prompt's tokens counted once per prompt, its own added.
    pub fn add(&mut self, choice: usize, done: &Done) {
        if choice % self.per_prompt.max(1) == 0 {
            self.prompt += done.prompt_tokens;
        }
        self.completion += done.completion_tokens;
        self.cached = Some(self.cached.map_or(done.cached_tokens, |c| c.min(done.cached_tokens)));
        self.timings.get_or_insert(done.timings);
    }

    pub fn usage(&self) -> Value {
        usage(self.prompt, self.completion, self.cached.unwrap_or(0))
    }
}

/// Run a prepared request and answer it.
pub async fn run(st: &Arc<AppState>, p: Prepared) -> Response {
    let Ok(r) = st.ready() else { return st.requests.refused(ApiError::unavailable("the model is not loaded")) };
    let rx = match submit(r, &p) {
        Ok(rx) => rx,
        Err(e) => return st.requests.refused(e),
    };
    let prefix = if p.kind == Kind::Chat { "chatcmpl-" } else { "cmpl-" };
    let id = request_id(prefix, st);
    let created = unix_now();
    let choices = new_choices(&p, st.next_seed().into());
    if p.generation.stream {
        st.requests.served();
        let header = Header { model: st.model_id.clone(), id, created, kind: p.kind };
        sse(header, p.generation.include_usage, choices, p.generation.n, rx)
    } else {
        match collect(choices, p.generation.n, rx).await {
            Ok((choices, counts)) => {
                st.requests.served();
                let mut v = json!({
                    "id": id,
                    "object": object(p.kind, false),
                    "created": created,
                    "model": st.model_id,
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": choices.iter().map(Choice::whole).collect::<Vec<_>>(),
                    "usage": counts.usage(),
                });
                if p.generation.verbose {
                    v["__verbose"] = crate::llama::verbose(st, r, &p, choices[0].raw_text(), &counts);
                }
                Json(v).into_response()
            }
            Err(e) => st.requests.refused(e),
        }
    }
}

pub fn new_choices(p: &Prepared, seed: u64) -> Vec<Choice> {
    (0..p.generation.n * (1 + p.also.len()))
        .map(|i| Choice::new(i, p.kind, p.tools, p.generation.logprobs.is_some(), seed.wrapping_add(i as u64)))
        .collect()
}

/// Wait for every choice to finish.
pub async fn collect(
    mut choices: Vec<Choice>,
    per_prompt: usize,
    mut rx: Events,
) -> Result<(Vec<Choice>, Counts), ApiError> {
    let mut counts = Counts::new(per_prompt);
    let mut left = choices.len();
    while let Some((i, ev)) = rx.recv().await {
        match ev {
            Event::Text(t) => choices[i].push_text(&t),
            Event::Logprob(lp) => choices[i].logprob(lp),
            Event::Token(_) | Event::Progress(_) => {}
            Event::Error(e) => return Err(ApiError::internal(e)),
            Event::Done(done) => {
                counts.add(i, &done);
                choices[i].finish = Some(done.finish);
                choices[i].settle();
                left -= 1;
                if left == 0 {
                    return Ok((choices, counts));
                }
            }
        }
    }
    Err(ApiError::internal("the inference engine dropped the request"))
}

/// The fields every chunk of a stream repeats.
#[derive(Debug, Clone)]
pub struct Header {
    pub model: String,
    pub id: String,
    pub created: u64,
    pub kind: Kind,
}

impl Header {
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Bytes {
        let mut v = json!({
            "id": self.id,
            "object": object(self.kind, true),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        Bytes::from(format!("data: {v}\n\n"))
    }
}

/// Stream the choices as Server-Sent Events, OpenAI's chunk format, `[DONE]` last.
pub fn sse(h: Header, include_usage: bool, choices: Vec<Choice>, per_prompt: usize, rx: Events) -> Response {
    struct S {
        rx: Events,
        choices: Vec<Choice>,
        first: bool,
        done: bool,
        left: usize,
        counts: Counts,
    }
    let left = choices.len();
    let state = S { rx, choices, first: true, done: false, left, counts: Counts::new(per_prompt) };
    let stream = futures_util::stream::unfold(state, move |mut s| {
        let h = h.clone();
        async move {
            if s.done {
                return None;
            }
            let mut out = Vec::new();
            if s.first && h.kind == Kind::Chat {
                let opening: Vec<Value> = (0..s.choices.len())
                    .map(|i| {
                        json!({ "index": i, "delta": { "role": "assistant", "content": "" },
                                     "logprobs": null, "finish_reason": null })
                    })
                    .collect();
                out.extend_from_slice(&h.chunk(Value::Array(opening), None));
            }
            s.first = false;
            let deltas = match s.rx.recv().await {
                Some((i, Event::Text(t))) => s.choices[i].text(&t),
                Some((i, Event::Logprob(lp))) => {
                    s.choices[i].logprob(lp);
                    vec![]
                }
                Some((_, Event::Token(_) | Event::Progress(_))) => vec![],
                Some((i, Event::Done(done))) => {
                    s.counts.add(i, &done);
                    s.left -= 1;
                    s.choices[i].done(done.finish)
                }
                Some((_, Event::Error(e))) => {
                    let err = ApiError::internal(e).body();
                    out.extend_from_slice(format!("data: {err}\n\n").as_bytes());
                    s.done = true;
                    return Some((Ok::<Bytes, Infallible>(Bytes::from(out)), s));
                }
                None => return None,
            };
            for d in deltas {
                out.extend_from_slice(&h.chunk(json!([d]), None));
            }
            if s.left == 0 {
                if include_usage {
                    out.extend_from_slice(&h.chunk(json!([]), Some(s.counts.usage())));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                s.done = true;
            }
            Some((Ok(Bytes::from(out)), s))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Finish;

    /// The SSE body for these engine events, one entry per `data:` line (`[DONE]` as a string).
    async fn stream(kind: Kind, include_usage: bool, n: usize, events: Vec<Tagged>) -> Vec<Value> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        for (i, e) in events {
            txs[i].send(e).expect("send");
        }
        drop(txs);
        let rx = Events::new(rxs);
        let choices = (0..n).map(|i| Choice::new(i, kind, None, false, 1)).collect();
        let h = Header { model: "tiny".into(), id: "chatcmpl-1".into(), created: 7, kind };
        let resp = sse(h, include_usage, choices, n, rx);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(text.ends_with("\n\n"), "every event ends with a blank line: {text:?}");
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let data = e.strip_prefix("data: ").expect("data line");
                serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string()))
            })
            .collect()
    }

    fn done(prompt: usize, completion: usize) -> Event {
        Event::Done(Done {
            finish: Finish::Stop,
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: 0,
            timings: Default::default(),
            slot: 0,
            truncated: false,
        })
    }

    #[tokio::test]
    async fn a_chat_stream_opens_with_the_role_then_text_then_the_finish_usage_and_done() {
        let events = stream(
            Kind::Chat,
            true,
            1,
            vec![(0, Event::Text("Hel".into())), (0, Event::Text("lo".into())), (0, done(5, 2))],
        )
        .await;
        assert_eq!(events.len(), 6, "{events:?}");
        assert_eq!(events[0]["choices"][0]["delta"], json!({ "role": "assistant", "content": "" }));
        assert_eq!(events[0]["object"], "chat.completion.chunk");
        assert_eq!(events[0]["id"], "chatcmpl-1");
        assert_eq!(events[0]["model"], "tiny");
        assert_eq!(events[1]["choices"][0]["delta"], json!({ "content": "Hel" }));
        assert_eq!(events[2]["choices"][0]["delta"], json!({ "content": "lo" }));
        assert_eq!(events[3]["choices"][0]["delta"], json!({}));
        assert_eq!(events[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[4]["choices"], json!([]), "the usage chunk has no choices");
        assert_eq!(events[4]["usage"]["total_tokens"], 7);
        assert_eq!(events[4]["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
        assert_eq!(events[5], "[DONE]");
        assert!(events[..4].iter().all(|e| e.get("usage").is_none()), "usage only in its own chunk");
    }

    #[tokio::test]
    async fn a_text_stream_has_no_role_chunk_and_no_usage_unless_asked() {
        let events = stream(
            Kind::Text,
            false,
            1,
            vec![
                (0, Event::Text("a".into())),
                (
                    0,
                    Event::Done(Done {
                        finish: Finish::Length,
                        prompt_tokens: 1,
                        completion_tokens: 1,
                        cached_tokens: 0,
                        timings: Default::default(),
                        slot: 0,
                        truncated: false,
                    }),
                ),
            ],
        )
        .await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0]["object"], "text_completion");
        assert_eq!(events[0]["choices"][0]["text"], "a");
        assert_eq!(events[1]["choices"][0]["text"], "");
        assert_eq!(events[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(events[2], "[DONE]");
    }

    #[tokio::test]
    async fn several_choices_stream_by_index_and_done_comes_after_the_last() {
        let events = stream(
            Kind::Chat,
            true,
            2,
            vec![(1, Event::Text("b".into())), (0, Event::Text("a".into())), (0, done(3, 1)), (1, done(3, 1))],
        )
        .await;
        assert_eq!(events[0]["choices"].as_array().map(Vec::len), Some(2), "both roles first");
        let b = json!({"index": 1, "delta": {"content": "b"}, "logprobs": null, "finish_reason": null});
        assert!(events.iter().any(|e| e["choices"][0] == b), "choice 1's text under its index: {events:?}");
        let finishes: Vec<_> = events.iter().filter(|e| e["choices"][0]["finish_reason"] == "stop").collect();
        assert_eq!(finishes.len(), 2);
        let usage = events.iter().find(|e| e.get("usage").is_some()).expect("usage");
        assert_eq!(usage["usage"]["completion_tokens"], 2, "completions add up");
        assert_eq!(usage["usage"]["prompt_tokens"], 3, "the prompt counts once");
        assert_eq!(events.last().expect("done"), "[DONE]");
    }

    #[tokio::test]
    async fn an_engine_error_ends_the_stream_with_an_error_body_and_no_done() {
        let events =
            stream(Kind::Chat, true, 1, vec![(0, Event::Text("x".into())), (0, Event::Error("decode failed".into()))])
                .await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[2]["error"]["message"], "decode failed");
        assert!(!events.iter().any(|e| e == "[DONE]"));
    }

    #[tokio::test]
    async fn a_stream_whose_engine_went_away_ends_without_done() {
        let events = stream(Kind::Chat, false, 1, vec![(0, Event::Text("x".into()))]).await;
        assert_eq!(events.len(), 2, "role and text, then the end of the body: {events:?}");
        assert!(!events.iter().any(|e| e == "[DONE]"));
    }

    #[test]
    fn a_history_with_calls_is_written_as_text_for_templates_that_know_no_tools() {
        let mut m = vec![
            json!({ "role": "user", "content": "add" }),
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "c1", "type": "function",
                    "function": { "name": "add", "arguments": { "a": 1 } } }] }),
            json!({ "role": "tool", "tool_call_id": "c1", "content": "2" }),
        ];
        generic_history(&mut m, None, "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% endfor %}");
        assert_eq!(m.len(), 3, "no instructions when the model may not call");
        assert_eq!(
            m[1],
            json!({ "role": "assistant", "content": "{\"tool_calls\":[{\"name\":\"add\",\"arguments\":{\"a\":1}}]}" })
        );
        assert_eq!(m[2]["role"], "user", "a template with no tool role gets the result as a user turn");
        let mut m = vec![json!({ "role": "system", "content": "be brief" })];
        generic_history(&mut m, Some("call tools"), "{{ 'tool' }}");
        assert_eq!(m[0]["content"], "call tools\n\nbe brief", "no turn to follow: in the system message");
        let mut m =
            vec![json!({ "role": "system", "content": "be brief" }), json!({ "role": "user", "content": "weather?" })];
        generic_history(&mut m, Some("call tools"), "{{ 'tool' }}");
        assert_eq!(
            (m[0]["content"].as_str(), m[1]["content"].as_str()),
            (Some("be brief"), Some("call tools\n\nRequest: weather?"))
        );
    }
}
