//! The HTTP API: OpenAI-compatible routes over the engine, `/health` and `/metrics`.
//!
//! The listener is up before the model has loaded: `/health` answers `loading` (503) until
//! the engine runs, then `ok`; the other routes answer 503 with an OpenAI error body
//! meanwhile. Streams are Server-Sent Events written as the engine produces text; a
//! client that goes away drops the stream, which frees its sequence in the engine.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::api::{
    self, ApiError, ChatRequest, CompletionRequest, EmbeddingInput, EmbeddingRequest, Generation, Prompt,
    SamplingFields,
};
use crate::engine::{Engine, Event, Finish, Job};
use crate::metrics;
use crate::template::{ChatTemplate, TemplateMessage};

/// What the routes need once the model is loaded.
#[derive(Debug)]
pub struct Ready {
    pub engine: Engine,
    pub model: Arc<LlamaModel>,
    pub template: ChatTemplate,
    /// The text of the BOS token, to avoid a second one when the template writes it.
    pub bos_text: String,
    pub add_bos: bool,
    pub n_params: u64,
    pub size_bytes: u64,
}

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    /// The name served in `/v1/models` and in responses.
    pub model_id: String,
    pub ready: OnceLock<Ready>,
    /// Set when loading failed (the process is about to exit).
    pub failed: OnceLock<String>,
    pub started: u64,
    pub requests: metrics::Requests,
    /// The listener's counters (connections, shed, timeouts).
    pub http: Arc<aither_http::Stats>,
    seed: AtomicU64,
}

impl AppState {
    pub fn new(model_id: String, http: Arc<aither_http::Stats>) -> Arc<AppState> {
        let started = unix_now();
        Arc::new(AppState {
            model_id,
            ready: OnceLock::new(),
            failed: OnceLock::new(),
            started,
            requests: metrics::Requests::default(),
            http,
            seed: AtomicU64::new(started ^ u64::from(std::process::id()).rotate_left(32)),
        })
    }

    fn ready(&self) -> Result<&Ready, ApiError> {
        match (self.ready.get(), self.failed.get()) {
            (Some(r), _) if r.engine.is_alive() => Ok(r),
            (Some(_), _) => Err(ApiError::internal("the inference engine has stopped")),
            (None, Some(why)) => Err(ApiError::unavailable(format!("the model failed to load: {why}"))),
            (None, None) => Err(ApiError::unavailable("the model is still loading; retry when /health says ok")),
        }
    }

    /// A seed for requests that give none: different every time, as OpenAI's are.
    fn next_seed(&self) -> u32 {
        let x = self.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation)]
        let s = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) as u32;
        s
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .fallback(|| async { ApiError::not_found("no such route; see /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings, /health, /metrics") })
        .method_not_allowed_fallback(|| async {
            ApiError { status: StatusCode::METHOD_NOT_ALLOWED, ..ApiError::invalid("method not allowed on this route", None) }
        })
        .with_state(state)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn request_id(prefix: &str, state: &AppState) -> String {
    format!("{prefix}-{:016x}{:08x}", state.seed.fetch_add(1, Ordering::Relaxed), state.next_seed())
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    match st.ready() {
        Ok(r) => {
            let busy = r.engine.stats.slots_busy.load(Ordering::Relaxed);
            Json(json!({
                "status": "ok",
                "model": st.model_id,
                "slots_idle": r.engine.parallel.saturating_sub(busy),
                "slots_processing": busy,
            }))
            .into_response()
        }
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE && st.failed.get().is_none() => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "loading", "model": st.model_id })))
                .into_response()
        }
        Err(e) => {
            (e.status, Json(json!({ "status": "error", "model": st.model_id, "message": e.message }))).into_response()
        }
    }
}

async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    let body = metrics::render(&st);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    let meta = st.ready.get().map(|r| {
        json!({ "n_ctx": r.engine.seq_ctx, "kv_cells": r.engine.n_ctx, "parallel": r.engine.parallel,
                "n_params": r.n_params, "size": r.size_bytes, "embeddings": r.engine.embeddings })
    });
    Json(json!({
        "object": "list",
        "data": [{ "id": st.model_id, "object": "model", "created": st.started, "owned_by": "aitheros", "meta": meta }],
    }))
    .into_response()
}

/// Tokenize `text`; `add_bos` unless the text already starts with the BOS token's text.
fn tokenize(r: &Ready, text: &str) -> Vec<LlamaToken> {
    let add = r.add_bos && (r.bos_text.is_empty() || !text.starts_with(&r.bos_text));
    r.model.vocab().tokenize(text.as_bytes(), add, true)
}

/// One request's share of the KV cache, for errors that say why a request does not fit.
fn slot_size(r: &Ready) -> api::SlotSize {
    api::SlotSize { tokens: r.engine.seq_ctx, cells: r.engine.n_ctx, parallel: r.engine.parallel }
}

fn check_fit(r: &Ready, prompt: usize, g: &Generation, param: &str) -> Result<(), ApiError> {
    if prompt == 0 {
        return Err(ApiError::invalid("the prompt is empty", Some(param)));
    }
    let want = g.max_tokens.unwrap_or(1);
    if prompt.saturating_add(want) > r.engine.seq_ctx {
        return Err(ApiError {
            param: Some(param.to_string()),
            ..ApiError::context_overflow(prompt, want, slot_size(r))
        });
    }
    Ok(())
}

/// What chat and text completions share: a ready worker that is not an embedding model,
/// the request's own fields and its sampling options.
fn generation_request<'a, R: serde::de::DeserializeOwned>(
    st: &'a AppState,
    body: &[u8],
) -> Result<(&'a Ready, R, SamplingFields), ApiError> {
    let r = st.ready()?;
    let v = api::body(body)?;
    let req: R = api::fields(&v)?;
    let sampling: SamplingFields = api::fields(&v)?;
    if r.engine.embeddings {
        return Err(ApiError::invalid(
            format!("{} is an embedding model: use /v1/embeddings", st.model_id),
            Some("model"),
        ));
    }
    Ok((r, req, sampling))
}

fn chat_request(st: &AppState, body: &[u8]) -> Result<(Generation, Vec<LlamaToken>), ApiError> {
    let (r, req, sampling) = generation_request::<ChatRequest>(st, body)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages is empty", Some("messages")));
    }
    let g = sampling.validate(st.next_seed())?;
    let mut msgs = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        msgs.push(TemplateMessage { role: m.role.clone(), content: m.text(i)? });
    }
    let prompt = r.template.render(&msgs)?;
    let tokens = tokenize(r, &prompt);
    check_fit(r, tokens.len(), &g, "messages")?;
    Ok((g, tokens))
}

fn completion_request(st: &AppState, body: &[u8]) -> Result<(Generation, Vec<LlamaToken>), ApiError> {
    let (r, req, sampling) = generation_request::<CompletionRequest>(st, body)?;
    if req.echo {
        return Err(ApiError::invalid("echo is not supported", Some("echo")));
    }
    let g = sampling.validate(st.next_seed())?;
    let tokens = match &req.prompt {
        Prompt::Text(t) => tokenize(r, t),
        Prompt::Texts(v) if v.len() == 1 => tokenize(r, &v[0]),
        Prompt::Texts(v) => {
            return Err(ApiError::invalid(format!("{} prompts: one per request is supported", v.len()), Some("prompt")))
        }
        Prompt::Tokens(ids) => token_ids(r, ids, "prompt")?,
    };
    check_fit(r, tokens.len(), &g, "prompt")?;
    Ok((g, tokens))
}

async fn chat(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    match chat_request(&st, &body) {
        Ok((g, tokens)) => generate(&st, tokens, g, Kind::Chat).await,
        Err(e) => st.requests.refused(e),
    }
}

async fn completions(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    match completion_request(&st, &body) {
        Ok((g, tokens)) => generate(&st, tokens, g, Kind::Text).await,
        Err(e) => st.requests.refused(e),
    }
}

fn token_ids(r: &Ready, ids: &[i32], param: &str) -> Result<Vec<LlamaToken>, ApiError> {
    let n_vocab = r.model.n_vocab();
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            if (0..n_vocab).contains(&id) {
                Ok(LlamaToken::new(id))
            } else {
                Err(ApiError::invalid(
                    format!("token {id} is outside the vocabulary (0 to {})", n_vocab - 1),
                    Some(&format!("{param}[{i}]")),
                ))
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

impl Kind {
    fn object(self, stream: bool) -> &'static str {
        match (self, stream) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Kind::Chat => "chatcmpl",
            Kind::Text => "cmpl",
        }
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
}

async fn generate(st: &Arc<AppState>, tokens: Vec<LlamaToken>, g: Generation, kind: Kind) -> Response {
    let Ok(r) = st.ready() else { return st.requests.refused(ApiError::unavailable("the model is not loaded")) };
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = g.stream;
    let include_usage = g.include_usage;
    if !r.engine.submit(Job::Generate { prompt: tokens, generation: g, events: tx }) {
        return st.requests.refused(ApiError::internal("the inference engine has stopped"));
    }
    let id = request_id(kind.prefix(), st);
    let created = unix_now();
    if stream {
        st.requests.served();
        sse(st.model_id.clone(), id, created, kind, include_usage, rx)
    } else {
        collect(st, id, created, kind, rx).await
    }
}

/// Wait for the whole completion.
async fn collect(
    st: &AppState,
    id: String,
    created: u64,
    kind: Kind,
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> Response {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            Event::Error(e) => return st.requests.refused(ApiError::internal(e)),
            Event::Done { finish, prompt_tokens, completion_tokens } => {
                let choice = match kind {
                    Kind::Chat => json!({
                        "index": 0,
                        "message": { "role": "assistant", "content": text },
                        "logprobs": null,
                        "finish_reason": finish.as_str(),
                    }),
                    Kind::Text => {
                        json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": finish.as_str() })
                    }
                };
                st.requests.served();
                return Json(json!({
                    "id": id,
                    "object": kind.object(false),
                    "created": created,
                    "model": st.model_id,
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": [choice],
                    "usage": usage(prompt_tokens, completion_tokens),
                }))
                .into_response();
            }
        }
    }
    st.requests.refused(ApiError::internal("the inference engine dropped the request"))
}

const SYSTEM_FINGERPRINT: &str = concat!("aither-infer-", env!("CARGO_PKG_VERSION"));

/// Stream the completion as Server-Sent Events, OpenAI's chunk format, `[DONE]` last.
fn sse(
    model: String,
    id: String,
    created: u64,
    kind: Kind,
    include_usage: bool,
    rx: mpsc::UnboundedReceiver<Event>,
) -> Response {
    struct S {
        rx: mpsc::UnboundedReceiver<Event>,
        first: bool,
        done: bool,
    }
    let chunk = move |choice: Value, usage_v: Option<Value>| -> Bytes {
        let mut v = json!({
            "id": id,
            "object": kind.object(true),
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choice,
        });
        if let Some(u) = usage_v {
            v["usage"] = u;
        }
        Bytes::from(format!("data: {v}\n\n"))
    };
    let delta = move |content: Option<&str>, role: bool, finish: Option<Finish>| -> Value {
        let finish = finish.map(Finish::as_str);
        match kind {
            Kind::Chat => {
                let mut d = serde_json::Map::new();
                if role {
                    d.insert("role".into(), json!("assistant"));
                }
                if let Some(c) = content {
                    d.insert("content".into(), json!(c));
                }
                json!([{ "index": 0, "delta": d, "logprobs": null, "finish_reason": finish }])
            }
            Kind::Text => {
                json!([{ "index": 0, "text": content.unwrap_or(""), "logprobs": null, "finish_reason": finish }])
            }
        }
    };
    let stream = futures_util::stream::unfold(S { rx, first: true, done: false }, move |mut s| {
        let chunk = chunk.clone();
        async move {
            if s.done {
                return None;
            }
            let mut out = Vec::new();
            if s.first && kind == Kind::Chat {
                out.extend_from_slice(&chunk(delta(Some(""), true, None), None));
            }
            s.first = false;
            match s.rx.recv().await {
                Some(Event::Text(t)) => out.extend_from_slice(&chunk(delta(Some(&t), false, None), None)),
                Some(Event::Done { finish, prompt_tokens, completion_tokens }) => {
                    let fin = match kind {
                        Kind::Chat => delta(None, false, Some(finish)),
                        Kind::Text => delta(Some(""), false, Some(finish)),
                    };
                    out.extend_from_slice(&chunk(fin, None));
                    if include_usage {
                        out.extend_from_slice(&chunk(json!([]), Some(usage(prompt_tokens, completion_tokens))));
                    }
                    out.extend_from_slice(b"data: [DONE]\n\n");
                    s.done = true;
                }
                Some(Event::Error(e)) => {
                    let err = ApiError::internal(e).body();
                    out.extend_from_slice(format!("data: {err}\n\n").as_bytes());
                    s.done = true;
                }
                None => return None,
            }
            Some((Ok::<Bytes, Infallible>(Bytes::from(out)), s))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
}

async fn embeddings(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let r = st.ready()?;
        let req: EmbeddingRequest = api::parse(&body)?;
        if !r.engine.embeddings {
            return Err(ApiError::invalid(format!("{} is not an embedding model", st.model_id), Some("model")));
        }
        // The official clients ask for base64 (little-endian f32s) unless told otherwise.
        let base64 = match req.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(f) => {
                return Err(ApiError::invalid(
                    format!("encoding_format {f:?} is not supported; use \"float\" or \"base64\""),
                    Some("encoding_format"),
                ))
            }
        };
        if req.dimensions.is_some() {
            return Err(ApiError::invalid("dimensions is not supported by this model", Some("dimensions")));
        }
        let inputs: Vec<Vec<LlamaToken>> = match &req.input {
            EmbeddingInput::Text(t) => vec![tokenize(r, t)],
            EmbeddingInput::Texts(v) => v.iter().map(|t| tokenize(r, t)).collect(),
            EmbeddingInput::Tokens(ids) => vec![token_ids(r, ids, "input")?],
            EmbeddingInput::TokenLists(v) => v
                .iter()
                .enumerate()
                .map(|(i, ids)| token_ids(r, ids, &format!("input[{i}]")))
                .collect::<Result<_, _>>()?,
        };
        if inputs.is_empty() {
            return Err(ApiError::invalid("input is empty", Some("input")));
        }
        for (i, t) in inputs.iter().enumerate() {
            if t.is_empty() {
                return Err(ApiError::invalid(format!("input {i} is empty"), Some("input")));
            }
            if t.len() > r.engine.seq_ctx {
                return Err(ApiError {
                    param: Some("input".into()),
                    ..ApiError::context_overflow(t.len(), 0, slot_size(r))
                });
            }
        }
        let prompt_tokens: usize = inputs.iter().map(Vec::len).sum();
        let (tx, rx) = oneshot::channel();
        if !r.engine.submit(Job::Embed { inputs, reply: tx }) {
            return Err(ApiError::internal("the inference engine has stopped"));
        }
        let vectors = rx
            .await
            .map_err(|_| ApiError::internal("the inference engine dropped the request"))?
            .map_err(ApiError::internal)?;
        Ok(json!({
            "object": "list",
            "data": vectors.iter().enumerate().map(|(i, v)| {
                let embedding = if base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(v)
                };
                json!({ "object": "embedding", "index": i, "embedding": embedding })
            }).collect::<Vec<_>>(),
            "model": st.model_id,
            "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
        }))
    }
    .await;
    match result {
        Ok(v) => {
            st.requests.served();
            Json(v).into_response()
        }
        Err(e) => st.requests.refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SSE body for these engine events, one entry per `data:` line (`[DONE]` as a string).
    async fn stream(kind: Kind, include_usage: bool, events: Vec<Event>) -> Vec<Value> {
        let (tx, rx) = mpsc::unbounded_channel();
        for e in events {
            tx.send(e).expect("send");
        }
        drop(tx);
        let resp = sse("tiny".into(), "chatcmpl-1".into(), 7, kind, include_usage, rx);
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
        Event::Done { finish: Finish::Stop, prompt_tokens: prompt, completion_tokens: completion }
    }

    #[tokio::test]
    async fn a_chat_stream_opens_with_the_role_then_text_then_the_finish_usage_and_done() {
        let events =
            stream(Kind::Chat, true, vec![Event::Text("Hel".into()), Event::Text("lo".into()), done(5, 2)]).await;
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
        assert_eq!(events[4]["usage"], json!({ "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7 }));
        assert_eq!(events[5], "[DONE]");
        assert!(events[..4].iter().all(|e| e.get("usage").is_none()), "usage only in its own chunk");
    }

    #[tokio::test]
    async fn a_text_stream_has_no_role_chunk_and_no_usage_unless_asked() {
        let events = stream(
            Kind::Text,
            false,
            vec![
                Event::Text("a".into()),
                Event::Done { finish: Finish::Length, prompt_tokens: 1, completion_tokens: 1 },
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
    async fn an_engine_error_ends_the_stream_with_an_error_body_and_no_done() {
        let events =
            stream(Kind::Chat, true, vec![Event::Text("x".into()), Event::Error("decode failed".into())]).await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[2]["error"]["message"], "decode failed");
        assert!(!events.iter().any(|e| e == "[DONE]"));
    }

    #[tokio::test]
    async fn a_stream_whose_engine_went_away_ends_without_done() {
        let events = stream(Kind::Chat, false, vec![Event::Text("x".into())]).await;
        assert_eq!(events.len(), 2, "role and text, then the end of the body: {events:?}");
        assert!(!events.iter().any(|e| e == "[DONE]"));
    }

    #[test]
    fn objects_and_usage_follow_openai() {
        assert_eq!(Kind::Chat.object(false), "chat.completion");
        assert_eq!(Kind::Chat.object(true), "chat.completion.chunk");
        assert_eq!(Kind::Text.object(true), "text_completion");
        assert_eq!(usage(3, 4)["total_tokens"], 7);
    }
}
