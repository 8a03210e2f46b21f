//! llama-server's own API, as its README documents it, so clients written for llama.cpp
//! work unchanged: `/completion`, `/tokenize`, `/detokenize`, `/apply-template`, `/props`,
//! `/slots`, `/embedding` and `/embeddings`. Errors here are in llama-server's shape
//! (`{"error": {"code": 400, "message", "type"}}`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use llama_cpp_2::token::LlamaToken;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{self, ApiError, Message};
use crate::choices::{logprobs_value, Kind};
use crate::engine::{Done, Event, Finish, Job, TokenLogprob};
use crate::fields;
use crate::generate::{self, Prepared};
use crate::server::{check_fit, token_ids, AppState, Ready};

/// A refusal in llama-server's shape.
fn refused(st: &AppState, e: ApiError) -> Response {
    let status = e.status;
    let body = json!({ "error": { "code": status.as_u16(), "message": e.message, "type": e.kind, "param": e.param } });
    let _ = st.requests.refused(e);
    (status, Json(body)).into_response()
}

fn answer(st: &AppState, r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => {
            st.requests.served();
            Json(v).into_response()
        }
        Err(e) => refused(st, e),
    }
}

/// A prompt as llama-server takes it: text, token ids, or text and ids mixed.
fn prompt_tokens(r: &Ready, v: &Value) -> Result<Vec<LlamaToken>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "prompt must be a string, or one array of token ids and strings (several prompts in one request are not supported)",
            Some("prompt"),
        )
    };
    match v {
        Value::String(s) => Ok(crate::server::tokenize(r, s)),
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    // BOS only before a leading string, as llama-server does.
                    Value::String(s) if i == 0 => out.extend(crate::server::tokenize(r, s)),
                    Value::String(s) => out.extend(r.model.vocab().tokenize(s.as_bytes(), false, true)),
                    Value::Number(n) => {
                        let id = n.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(bad)?;
                        out.extend(token_ids(r, &[id], &format!("prompt[{i}]"))?);
                    }
                    _ => return Err(bad()),
                }
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

#[derive(Debug, Deserialize)]
struct CompletionFields {
    prompt: Value,
    n_predict: Option<i64>,
    #[serde(default)]
    n_probs: usize,
    #[serde(default)]
    return_tokens: bool,
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    response_fields: Vec<String>,
}

/// `POST /completion`.
pub async fn completion(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let prepared = (|| {
        let (r, v, mut g) = generate::open(&st, &body, fields::LLAMA_COMPLETION, "completion")?;
        let f: CompletionFields = api::fields(&v)?;
        g.max_tokens = match f.n_predict {
            None | Some(-1) => None,
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(n) => {
                return Err(ApiError::invalid(
                    format!("n_predict {n}: -1 (no limit) or at least 1 (warming the cache with 0 is not supported)"),
                    Some("n_predict"),
                ))
            }
        };
        if f.n_probs > 100 {
            return Err(ApiError::invalid("n_probs is at most 100", Some("n_probs")));
        }
        g.logprobs = (f.n_probs > 0).then_some(f.n_probs);
        if f.ignore_eos {
            // As llama-server: the end-of-generation tokens are never sampled, so the answer
            // runs to n_predict (or the slot's end).
            let vocab = r.model.vocab();
            g.logit_bias.extend(
                (0..r.model.n_vocab())
                    .filter(|&id| vocab.is_eog(llama_cpp_2::token::LlamaToken::new(id)))
                    .map(|id| (id, f32::NEG_INFINITY)),
            );
        }
        g.constraint = generate::structured(&v)?.0;
        if let Some(c) = &g.constraint {
            c.check(&r.model, "grammar")?;
        }
        if f.response_fields.len() > 64 || f.response_fields.iter().any(|p| p.is_empty() || p.len() > 256) {
            return Err(ApiError::invalid(
                "response_fields: at most 64 paths of 1 to 256 characters",
                Some("response_fields"),
            ));
        }
        let tokens = prompt_tokens(r, &f.prompt)?;
        check_fit(r, tokens.len(), &g, "prompt")?;
        let text = String::from_utf8_lossy(&detokenize(r, &tokens)).into_owned();
        Ok((
            Prepared { tokens, generation: g, tools: None, kind: Kind::Text },
            (f.return_tokens, f.response_fields),
            text,
        ))
    })();
    let (p, (return_tokens, fields), prompt_text) = match prepared {
        Ok(p) => p,
        Err(e) => return refused(&st, e),
    };
    let Ok(r) = st.ready() else { return refused(&st, ApiError::unavailable("the model is not loaded")) };
    let (tx, rx) = mpsc::unbounded_channel();
    if !r.engine.submit(Job::Generate { prompt: p.tokens.clone(), generation: p.generation.clone(), events: tx }) {
        return refused(&st, ApiError::internal("the inference engine has stopped"));
    }
    let settings = generation_settings(&st, r, &p);
    let out = Outcome { model: st.model_id.clone(), settings, prompt: prompt_text, return_tokens, fields };
    st.requests.served();
    if p.generation.stream {
        stream_completion(out, rx)
    } else {
        whole_completion(&st, out, rx).await
    }
}

/// What the last object of a completion repeats.
#[derive(Debug, Clone)]
struct Outcome {
    model: String,
    settings: Value,
    prompt: String,
    return_tokens: bool,
    /// `response_fields`: the final object holds only these paths (`a/b` unnested as `a/b`).
    fields: Vec<String>,
}

/// The final object of a completion: llama-server's fields.
#[derive(Debug, Default)]
struct Tally {
    content: String,
    tokens: Vec<i32>,
    probs: Vec<TokenLogprob>,
}

impl Tally {
    fn logprob(&mut self, lp: TokenLogprob) {
        self.tokens.push(lp.id);
        self.probs.push(lp);
    }
}

impl Outcome {
    fn last(&self, t: &Tally, done: &Done) -> Value {
        let (prompt, predicted, cached) = (done.prompt_tokens, done.completion_tokens, done.cached_tokens);
        let ms = (done.timings.prompt_ms, done.timings.predicted_ms);
        let (stop_type, word) = match done.finish {
            Finish::Stop => ("eos", String::new()),
            Finish::Length => ("limit", String::new()),
            Finish::Word(k) => {
                ("word", self.settings["stop"].get(k).and_then(Value::as_str).unwrap_or_default().to_string())
            }
        };
        let per = |n: usize, ms: f64| {
            #[allow(clippy::cast_precision_loss)]
            let n = n as f64;
            (if n > 0.0 { ms / n } else { 0.0 }, if ms > 0.0 { n * 1000.0 / ms } else { 0.0 })
        };
        let computed = prompt - cached;
        let (ppt, pps) = per(computed, ms.0);
        let (gpt, gps) = per(predicted, ms.1);
        let mut v = json!({
            "content": t.content,
            "tokens": if self.return_tokens { json!(t.tokens) } else { json!([]) },
            "id_slot": -1,
            "stop": true,
            "model": self.model,
            "tokens_predicted": predicted,
            "tokens_evaluated": prompt,
            "generation_settings": self.settings,
            "prompt": self.prompt,
            "has_new_line": t.content.contains('\n'),
            "truncated": false,
            "stop_type": stop_type,
            "stopping_word": word,
            "tokens_cached": cached,
            "timings": {
                "cache_n": cached,
                "prompt_n": computed, "prompt_ms": ms.0, "prompt_per_token_ms": ppt, "prompt_per_second": pps,
                "predicted_n": predicted, "predicted_ms": ms.1, "predicted_per_token_ms": gpt,
                "predicted_per_second": gps,
            },
        });
        if !t.probs.is_empty() {
            v["completion_probabilities"] = probs(&t.probs);
        }
        if self.fields.is_empty() {
            v
        } else {
            pick_fields(&v, &self.fields)
        }
    }
}

/// llama-server's `response_fields`: an object of the paths of `v` asked for, each under its
/// path (`generation_settings/n_predict` becomes a key of its own); a path `v` lacks is left out.
fn pick_fields(v: &Value, paths: &[String]) -> Value {
    let mut out = serde_json::Map::new();
    for path in paths {
        let found = path.split('/').try_fold(v, |cur, k| cur.as_object().and_then(|o| o.get(k)));
        if let Some(found) = found {
            out.insert(path.clone(), found.clone());
        }
    }
    Value::Object(out)
}

/// llama-server's `probs`: like OpenAI chat's, with the token ids.
fn probs(lps: &[TokenLogprob]) -> Value {
    let chat = logprobs_value(Kind::Chat, lps, 0);
    let mut items = chat["content"].as_array().cloned().unwrap_or_default();
    for (item, lp) in items.iter_mut().zip(lps) {
        item["id"] = json!(lp.id);
        if let Some(top) = item["top_logprobs"].as_array_mut() {
            for (t, (id, _, _)) in top.iter_mut().zip(&lp.top) {
                t["id"] = json!(id);
            }
        }
    }
    Value::Array(items)
}

async fn whole_completion(st: &AppState, out: Outcome, mut rx: mpsc::UnboundedReceiver<Event>) -> Response {
    let mut t = Tally::default();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(s) => t.content.push_str(&s),
            Event::Logprob(lp) => t.logprob(lp),
            Event::Error(e) => return refused(st, ApiError::internal(e)),
            Event::Done(done) => return Json(out.last(&t, &done)).into_response(),
        }
    }
    refused(st, ApiError::internal("the inference engine dropped the request"))
}

/// llama-server's stream: `{"content", "tokens", "stop": false}` per piece, then the full
/// final object with `"stop": true`.
fn stream_completion(out: Outcome, rx: mpsc::UnboundedReceiver<Event>) -> Response {
    let state = (rx, Tally::default(), false);
    let stream = futures_util::stream::unfold(state, move |(mut rx, mut t, done)| {
        let out = out.clone();
        async move {
            if done {
                return None;
            }
            let line = |v: Value| Bytes::from(format!("data: {v}\n\n"));
            loop {
                match rx.recv().await? {
                    Event::Logprob(lp) => t.logprob(lp),
                    Event::Text(s) => {
                        t.content.push_str(&s);
                        let v = json!({ "content": s, "tokens": [], "stop": false });
                        return Some((Ok::<Bytes, Infallible>(line(v)), (rx, t, false)));
                    }
                    Event::Done(done) => {
                        let mut v = out.last(&t, &done);
                        v["content"] = json!("");
                        return Some((Ok(line(v)), (rx, t, true)));
                    }
                    Event::Error(e) => {
                        let v = json!({ "error": { "code": 500, "message": e, "type": "server_error" } });
                        return Some((Ok(line(v)), (rx, t, true)));
                    }
                }
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
}

/// The settings a completion runs with, as `/props` and `/completion` show them.
fn generation_settings(st: &AppState, r: &Ready, p: &Prepared) -> Value {
    let g = &p.generation;
    json!({
        "n_ctx": r.engine.seq_ctx,
        "model": st.model_id,
        "n_predict": g.max_tokens.map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX)),
        "seed": g.sampling.seed,
        "temperature": g.sampling.temperature,
        "top_k": g.sampling.top_k,
        "top_p": g.sampling.top_p,
        "min_p": g.sampling.min_p,
        "presence_penalty": g.sampling.presence_penalty,
        "frequency_penalty": g.sampling.frequency_penalty,
        "stop": g.stop,
        "stream": g.stream,
        "n_probs": g.logprobs.unwrap_or(0),
        "grammar": g.constraint.as_ref().map_or("", |c| c.gbnf()),
        "cache_prompt": g.cache_prompt,
    })
}

fn detokenize(r: &Ready, tokens: &[LlamaToken]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        r.model.vocab().token_to_piece_into(*t, &mut out, true, None);
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeRequest {
    content: String,
    #[serde(default)]
    add_special: bool,
    #[serde(default = "yes")]
    parse_special: bool,
    #[serde(default)]
    with_pieces: bool,
}

fn yes() -> bool {
    true
}

/// `POST /tokenize`.
pub async fn tokenize(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = (|| {
        let r = st.ready()?;
        let req: TokenizeRequest = api::parse(&body)?;
        let tokens = r.model.vocab().tokenize(req.content.as_bytes(), req.add_special, req.parse_special);
        let list: Vec<Value> = if req.with_pieces {
            tokens
                .iter()
                .map(|t| {
                    let bytes = r.model.vocab().token_to_piece(*t, true, None);
                    let piece = match String::from_utf8(bytes) {
                        Ok(s) => json!(s),
                        Err(e) => json!(e.into_bytes()),
                    };
                    json!({ "id": t.0, "piece": piece })
                })
                .collect()
        } else {
            tokens.iter().map(|t| json!(t.0)).collect()
        };
        Ok(json!({ "tokens": list }))
    })();
    answer(&st, result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeRequest {
    tokens: Vec<i32>,
}

/// `POST /detokenize`.
pub async fn detokenize_route(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = (|| {
        let r = st.ready()?;
        let req: DetokenizeRequest = api::parse(&body)?;
        let tokens = token_ids(r, &req.tokens, "tokens")?;
        Ok(json!({ "content": String::from_utf8_lossy(&detokenize(r, &tokens)) }))
    })();
    answer(&st, result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyTemplateRequest {
    messages: Vec<Message>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default = "yes")]
    add_generation_prompt: bool,
}

/// `POST /apply-template`: the prompt a chat would be, without running it.
pub async fn apply_template(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = (|| {
        let r = st.ready()?;
        let req: ApplyTemplateRequest = api::parse(&body)?;
        let mut messages = Vec::with_capacity(req.messages.len());
        for (i, m) in req.messages.iter().enumerate() {
            messages.push(m.template_value(i)?);
        }
        let tools = crate::tools::Tools::from_request(req.tools.as_ref(), None, None)?;
        let prompt = r.template.render(&messages, tools.as_ref().map(|t| &t.raw), req.add_generation_prompt)?;
        Ok(json!({ "prompt": prompt }))
    })();
    answer(&st, result)
}

/// `GET /props`.
pub async fn props(State(st): State<Arc<AppState>>) -> Response {
    let result = st.ready().map(|r| {
        let defaults = api::SamplingFields::default().validate(0).ok();
        json!({
            "default_generation_settings": {
                "id": 0,
                "n_ctx": r.engine.seq_ctx,
                "is_processing": false,
                // As llama-server shows them: seed 4294967295 (its LLAMA_DEFAULT_SEED) is a new
                // random seed per request, as here; the samplers this worker does not have are
                // shown at the values that turn them off in llama-server, which is what they are.
                "params": defaults.map(|g| json!({
                    "seed": u32::MAX, "n_predict": -1, "max_tokens": -1, "temperature": g.sampling.temperature,
                    "top_k": g.sampling.top_k, "top_p": g.sampling.top_p, "min_p": g.sampling.min_p, "stop": [],
                    "n_probs": 0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "grammar": "", "stream": false,
                    "ignore_eos": false, "n_keep": 0, "n_discard": 0, "typical_p": 1.0, "repeat_penalty": 1.0,
                    "repeat_last_n": 64, "mirostat": 0, "dry_multiplier": 0.0, "xtc_probability": 0.0,
                    "top_n_sigma": -1.0, "min_keep": 1, "timings_per_token": false, "post_sampling_probs": false,
                    "samplers": ["penalties", "top_k", "top_p", "min_p", "temperature"],
                })),
            },
            "total_slots": r.engine.parallel,
            "model_alias": st.model_id,
            "model_path": r.model_path,
            "chat_template": r.template.source(),
            "chat_template_caps": { "supports_tools": r.template.knows_tools(),
                                    "tool_call_format": crate::tools::Family::detect(r.template.source()).name() },
            "modalities": { "vision": false, "audio": false },
            "build_info": generate::SYSTEM_FINGERPRINT,
            "is_sleeping": false,
            "embeddings": r.engine.embeddings,
            "backends": r.backends,
        })
    });
    answer(&st, result)
}

/// `GET /slots`: each slot's state.
pub async fn slots(State(st): State<Arc<AppState>>) -> Response {
    if !st.slots_endpoint.load(std::sync::atomic::Ordering::Relaxed) {
        return answer(
            &st,
            Err(ApiError::not_supported("This server does not support slots endpoint. Start it with `--slots`")),
        );
    }
    let result = st.ready().map(|r| {
        let states = r.engine.stats.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Value::Array(
            states
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id,
                        "n_ctx": r.engine.seq_ctx,
                        "is_processing": s.processing,
                        "n_cached": s.n_cached,
                        "n_prompt_tokens": s.n_prompt,
                        "next_token": { "has_next_token": s.processing, "n_decoded": s.n_decoded },
                    })
                })
                .collect(),
        )
    });
    answer(&st, result)
}

/// `POST /embedding` and `/embeddings` (llama-server's own): `content` or `input`; one
/// entry per input, its pooled vector in a list (as llama-server answers pooled models).
pub async fn embedding(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let mut v = api::body(&body)?;
        if let Some(c) = v.as_object_mut().and_then(|m| m.remove("content")) {
            if v.get("input").is_some() {
                return Err(ApiError::invalid("give content or input, not both", Some("content")));
            }
            v["input"] = c;
        }
        let out = crate::server::embed(&st, &v).await?;
        if out.base64 {
            return Err(ApiError::invalid("encoding_format base64 is for /v1/embeddings", Some("encoding_format")));
        }
        Ok(Value::Array(out.vectors.iter().enumerate().map(|(i, e)| json!({ "index": i, "embedding": [e] })).collect()))
    }
    .await;
    answer(&st, result)
}
