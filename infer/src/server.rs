//! The HTTP API: OpenAI-compatible routes over the engine, `/health` and `/metrics`.
//!
//! The listener is up before the model has loaded: `/health` answers `loading` (503) until
//! the engine runs, then `ok`; the other routes answer 503 with an OpenAI error body
//! meanwhile. Streams are Server-Sent Events written as the engine produces text; a
//! client that goes away drops the stream, which frees its sequence in the engine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::api::{self, ApiError, EmbeddingInput, EmbeddingRequest, Generation};
use crate::engine::{Engine, Job};
use crate::metrics;
use crate::template::ChatTemplate;
use crate::{generate, llama};

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
    /// The model file (`/props`).
    pub model_path: String,
    /// What llama.cpp computes on (`/props`, `/metrics`).
    pub backends: crate::backends::Backends,
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
    /// `--alias`'s names and `--tags`, as /v1/models lists them.
    pub names: OnceLock<(Vec<String>, Vec<String>)>,
    /// `GET /slots` answers (`--no-slots`: 501).
    pub slots_endpoint: std::sync::atomic::AtomicBool,
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
            slots_endpoint: std::sync::atomic::AtomicBool::new(true),
            names: OnceLock::new(),
            seed: AtomicU64::new(started ^ u64::from(std::process::id()).rotate_left(32)),
        })
    }

    pub fn ready(&self) -> Result<&Ready, ApiError> {
        match (self.ready.get(), self.failed.get()) {
            (Some(r), _) if r.engine.is_alive() => Ok(r),
            (Some(_), _) => Err(ApiError::internal("the inference engine has stopped")),
            (None, Some(why)) => Err(ApiError::unavailable(format!("the model failed to load: {why}"))),
            (None, None) => Err(ApiError::unavailable("the model is still loading; retry when /health says ok")),
        }
    }

    /// A seed for requests that give none: different every time, as OpenAI's are.
    pub fn next_seed(&self) -> u32 {
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
        .route("/v1/chat/completions/input_tokens", post(chat_input_tokens))
        .route("/chat/completions/input_tokens", post(chat_input_tokens))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(crate::responses::create))
        .route("/completion", post(llama::completion))
        .route("/completions", post(llama::completion))
        .route("/tokenize", post(llama::tokenize))
        .route("/detokenize", post(llama::detokenize_route))
        .route("/apply-template", post(llama::apply_template))
        .route("/props", get(llama::props))
        .route("/slots", get(llama::slots))
        .route("/embedding", post(llama::embedding))
        .route("/embeddings", post(llama::embedding))
        .fallback(|| async {
            ApiError::not_found(
                "no such route; see /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings, /health, \
                 /metrics, and llama-server's /completion, /tokenize, /detokenize, /apply-template, /props, /slots, \
                 /embedding",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                ..ApiError::invalid("method not allowed on this route", None)
            }
        })
        .with_state(state)
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A response's id: `prefix` (with its separator, as OpenAI writes it: `chatcmpl-`, `cmpl-`,
/// `resp_`) and 24 hex digits, unique within this worker.
pub fn request_id(prefix: &str, state: &AppState) -> String {
    format!("{prefix}{:016x}{:08x}", state.seed.fetch_add(1, Ordering::Relaxed), state.next_seed())
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
    let (aliases, tags) = st.names.get().cloned().unwrap_or_default();
    let meta = st.ready.get().map(|r| {
        json!({ "n_ctx": r.engine.seq_ctx, "kv_cells": r.engine.n_ctx, "parallel": r.engine.parallel,
                "n_params": r.n_params, "size": r.size_bytes, "embeddings": r.engine.embeddings })
    });
    Json(json!({
        "object": "list",
        "data": [{ "id": st.model_id, "aliases": aliases, "tags": tags, "object": "model", "created": st.started,
                   "owned_by": "aitheros", "meta": meta }],
    }))
    .into_response()
}

/// Tokenize `text`; `add_bos` unless the text already starts with the BOS token's text.
pub fn tokenize(r: &Ready, text: &str) -> Vec<LlamaToken> {
    let add = r.add_bos && (r.bos_text.is_empty() || !text.starts_with(&r.bos_text));
    r.model.vocab().tokenize(text.as_bytes(), add, true)
}

/// One request's share of the KV cache, for errors that say why a request does not fit.
pub fn slot_size(r: &Ready) -> api::SlotSize {
    api::SlotSize { tokens: r.engine.seq_ctx, cells: r.engine.n_ctx, parallel: r.engine.parallel }
}

pub fn check_fit(r: &Ready, prompt: usize, g: &Generation, param: &str) -> Result<(), ApiError> {
    if prompt == 0 {
        return Err(ApiError::invalid("the prompt is empty", Some(param)));
    }
    // With --context-shift the answer may run past the slot's end: the prompt must fit.
    let want = if r.engine.context_shift { 1 } else { g.max_tokens.unwrap_or(1) };
    if prompt.saturating_add(want) > r.engine.seq_ctx {
        return Err(ApiError {
            param: Some(param.to_string()),
            ..ApiError::context_overflow(prompt, want, slot_size(r))
        });
    }
    Ok(())
}

async fn chat(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    match generate::prepare_chat(&st, &body) {
        Ok(p) => generate::run(&st, p).await,
        Err(e) => st.requests.refused(e),
    }
}

/// `POST /v1/chat/completions/input_tokens` (llama-server's): how many tokens a chat request's
/// prompt is — rendered through the template with its tools, as the chat route would — without
/// generating.
async fn chat_input_tokens(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    match generate::prepare_chat(&st, &body) {
        Ok(p) => {
            st.requests.served();
            Json(json!({ "input_tokens": p.tokens.len(), "object": "response.input_tokens" })).into_response()
        }
        Err(e) => st.requests.refused(e),
    }
}

async fn completions(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    match generate::prepare_completion(&st, &body) {
        Ok(p) => generate::run(&st, p).await,
        Err(e) => st.requests.refused(e),
    }
}

/// Token ids given by a client, each checked against the vocabulary.
pub fn token_ids(r: &Ready, ids: &[i32], param: &str) -> Result<Vec<LlamaToken>, ApiError> {
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

/// Pooled embeddings of a request's `input`.
#[derive(Debug)]
pub struct Embedded {
    /// Per input, its pooled vector (or a vector per token: `--pooling none`).
    pub vectors: Vec<Vec<Vec<f32>>>,
    pub prompt_tokens: usize,
    /// `encoding_format: base64`.
    pub base64: bool,
}

/// Embed the `input` of a parsed embeddings request.
pub async fn embed(st: &AppState, v: &Value) -> Result<Embedded, ApiError> {
    {
        let r = st.ready()?;
        crate::fields::check_exact(v, crate::fields::EMBEDDINGS, "embeddings")?;
        let req: EmbeddingRequest = api::fields(v)?;
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
                    param: Some(format!("input[{i}]")),
                    message: format!(
                        "input {i} ({} tokens) is too large to process: the model reads at most {} tokens at once \
                         (--ctx)",
                        t.len(),
                        r.engine.seq_ctx
                    ),
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
        Ok(Embedded { vectors, prompt_tokens, base64 })
    }
}

async fn embeddings(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let v = api::body(&body)?;
        if st.ready()?.engine.per_token {
            return Err(ApiError::invalid(
                "this worker runs with --pooling none (a vector per token), which OpenAI's embeddings cannot carry: \
                 use /embedding, or another pooling",
                Some("input"),
            ));
        }
        let Embedded { vectors, prompt_tokens, base64 } = embed(&st, &v).await?;
        Ok(json!({
            "object": "list",
            "data": vectors.iter().filter_map(|v| v.first()).enumerate().map(|(i, v)| {
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
