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
use crate::engine::{Done, Event, Finish, Job, Sampled, Timings, TokenLogprob};
use crate::fields;
use crate::generate::{self, Events, Prepared};
use crate::server::{check_fit, token_ids, AppState, Ready};

/// A refusal in llama-server's shape.
fn refused(st: &AppState, e: ApiError) -> Response {
    let status = e.status;
    let mut body = e.body();
    body["error"]["code"] = json!(status.as_u16());
    if e.overflow.is_some() {
        body["error"]["type"] = json!("exceed_context_size_error");
    }
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

/// The most prompts one `/completion` request may carry.
const MAX_PROMPTS: usize = 16;

/// One prompt as llama-server takes it: text, token ids, text and ids mixed, or an object
/// with `prompt_string`.
fn prompt_tokens(r: &Ready, v: &Value, field: &str) -> Result<Vec<LlamaToken>, ApiError> {
    let bad = || {
        ApiError::invalid(
            format!("{field} must be a string, an array of token ids and strings, or {{\"prompt_string\": ...}}"),
            Some(field),
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
                        out.extend(token_ids(r, &[id], &format!("{field}[{i}]"))?);
                    }
                    _ => return Err(bad()),
                }
            }
            Ok(out)
        }
        Value::Object(o) => match (o.get("prompt_string"), o.len()) {
            (Some(p @ (Value::String(_) | Value::Array(_))), 1) => {
                prompt_tokens(r, p, &format!("{field}.prompt_string"))
            }
            (Some(_), 1) => Err(bad()),
            _ => Err(ApiError::invalid(
                format!(
                    "{field}: an object prompt has one field, prompt_string (multimodal_data needs a vision model)"
                ),
                Some(field),
            )),
        },
        _ => Err(bad()),
    }
}

/// `prompt` of `/completion`: one prompt, or several as llama-server reads them — an array
/// holding a token id is one prompt (ids, or ids and strings mixed); an array of strings,
/// arrays and objects is one prompt per entry.
fn prompts(r: &Ready, v: &Value, max: usize, field: &str) -> Result<Vec<Vec<LlamaToken>>, ApiError> {
    match v.as_array() {
        Some(items) if !items.iter().any(Value::is_number) => {
            if items.is_empty() {
                return Err(ApiError::invalid(format!("{field} must not be empty"), Some(field)));
            }
            if items.len() > max {
                return Err(ApiError::invalid(
                    format!("{field}: {} prompts in one request; at most {max}", items.len()),
                    Some(field),
                ));
            }
            items.iter().enumerate().map(|(i, p)| prompt_tokens(r, p, &format!("{field}[{i}]"))).collect()
        }
        _ => Ok(vec![prompt_tokens(r, v, field)?]),
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
    #[serde(default)]
    timings_per_token: bool,
    #[serde(default)]
    return_progress: bool,
    id_slot: Option<i64>,
    n_keep: Option<i64>,
    #[serde(default)]
    post_sampling_probs: bool,
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
        g.post_sampling = f.post_sampling_probs;
        g.each_token = true;
        g.progress = f.return_progress && g.stream;
        g.slot = match f.id_slot {
            None | Some(-1) => None,
            Some(k) => Some(usize::try_from(k).ok().filter(|k| *k < r.engine.parallel).ok_or_else(|| {
                ApiError::invalid(
                    format!("id_slot {k}: -1 (any free slot) or a slot from 0 to {}", r.engine.parallel - 1),
                    Some("id_slot"),
                )
            })?),
        };
        g.keep =
            match f.n_keep {
                None => None,
                Some(_) if !r.engine.context_shift => return Err(ApiError::invalid(
                    "n_keep applies when a full context is shifted: this worker was started without --context-shift",
                    Some("n_keep"),
                )),
                Some(-1) => Some(usize::MAX),
                Some(n) => Some(usize::try_from(n).map_err(|_| {
                    ApiError::invalid(format!("n_keep {n}: -1 (the whole prompt) or 0 and up"), Some("n_keep"))
                })?),
            };
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
        g.constraint = crate::options::structured(&v)?.0;
        if let Some(c) = &g.constraint {
            c.check(&r.model, "grammar")?;
        }
        if f.response_fields.len() > 64 || f.response_fields.iter().any(|p| p.is_empty() || p.len() > 256) {
            return Err(ApiError::invalid(
                "response_fields: at most 64 paths of 1 to 256 characters",
                Some("response_fields"),
            ));
        }
        let all = prompts(r, &f.prompt, MAX_PROMPTS, "prompt")?;
        for (i, tokens) in all.iter().enumerate() {
            let field = if all.len() == 1 { "prompt".to_string() } else { format!("prompt[{i}]") };
            check_fit(r, tokens.len(), &g, &field)?;
        }
        let texts = all.iter().map(|t| detokenize_text(r, t)).collect();
        let view = View {
            return_tokens: f.return_tokens,
            timings_per_token: f.timings_per_token,
            post_sampling: f.post_sampling_probs,
            fields: f.response_fields,
        };
        Ok((all, g, view, texts))
    })();
    let (all, g, view, texts) = match prepared {
        Ok(p) => p,
        Err(e) => return refused(&st, e),
    };
    let Ok(r) = st.ready() else { return refused(&st, ApiError::unavailable("the model is not loaded")) };
    let lens = all.iter().map(Vec::len).collect();
    let mut rxs = Vec::with_capacity(all.len());
    let mut settings = Vec::with_capacity(all.len());
    for tokens in all {
        let (tx, rx) = mpsc::unbounded_channel();
        let p = Prepared {
            tokens,
            also: vec![],
            text: String::new(),
            generation: g.clone(),
            tools: None,
            kind: Kind::Text,
        };
        settings.push(generation_settings(&st, r, &p));
        if !r.engine.submit(Job::Generate { prompt: p.tokens, generation: Box::new(p.generation), events: tx }) {
            return refused(&st, ApiError::internal("the inference engine has stopped"));
        }
        rxs.push(rx);
    }
    let out = Outcome { model: st.model_id.clone(), settings, prompts: texts, lens, view, stream: g.stream };
    st.requests.served();
    let events = generate::Events::new(rxs);
    if g.stream {
        stream_completion(out, events)
    } else {
        whole_completion(&st, out, events).await
    }
}

/// What a request asked to see of its answer.
#[derive(Debug, Clone)]
struct View {
    return_tokens: bool,
    timings_per_token: bool,
    post_sampling: bool,
    /// `response_fields`: the final object holds only these paths (`a/b` unnested as `a/b`).
    fields: Vec<String>,
}

/// What the objects of a completion repeat, per prompt.
#[derive(Debug, Clone)]
struct Outcome {
    model: String,
    settings: Vec<Value>,
    prompts: Vec<String>,
    /// Each prompt's tokens.
    lens: Vec<usize>,
    view: View,
    stream: bool,
}

/// One prompt's answer so far.
#[derive(Debug, Default)]
struct Tally {
    content: String,
    tokens: Vec<i32>,
    probs: Vec<TokenLogprob>,
    /// Sampled since the last chunk sent (the stream's `tokens` and probabilities).
    new_tokens: Vec<i32>,
    new_probs: Vec<TokenLogprob>,
    last: Option<Sampled>,
    prompt_tokens: usize,
}

impl Tally {
    fn take(&mut self, ev: &Event) {
        match ev {
            Event::Token(s) => {
                self.tokens.push(s.id);
                self.new_tokens.push(s.id);
                self.last = Some(*s);
            }
            Event::Logprob(lp) => {
                self.probs.push(lp.clone());
                self.new_probs.push(lp.clone());
            }
            Event::Text(t) => self.content.push_str(t),
            Event::Progress(_) | Event::Done(_) | Event::Error(_) => {}
        }
    }
}

/// llama-server's `timings`: the prompt's tokens computed (not reused) and the time they
/// took, the tokens generated and theirs.
fn timings(prompt: usize, cached: usize, predicted: usize, t: Timings) -> Value {
    let per = |n: usize, ms: f64| {
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        (if n > 0.0 { ms / n } else { 0.0 }, if ms > 0.0 { n * 1000.0 / ms } else { 0.0 })
    };
    let computed = prompt - cached.min(prompt);
    let (ppt, pps) = per(computed, t.prompt_ms);
    let (gpt, gps) = per(predicted, t.predicted_ms);
    json!({
        "cache_n": cached,
        "prompt_n": computed, "prompt_ms": t.prompt_ms, "prompt_per_token_ms": ppt, "prompt_per_second": pps,
        "predicted_n": predicted, "predicted_ms": t.predicted_ms, "predicted_per_token_ms": gpt,
        "predicted_per_second": gps,
    })
}

impl Outcome {
    /// The final object of prompt `i`: llama-server's fields. Streamed, its content, tokens
    /// and probabilities went out in the chunks before it.
    fn last(&self, i: usize, t: &Tally, done: &Done) -> Value {
        let (prompt, predicted, cached) = (done.prompt_tokens, done.completion_tokens, done.cached_tokens);
        let (stop_type, word) = match done.finish {
            Finish::Stop => ("eos", String::new()),
            Finish::Length => ("limit", String::new()),
            Finish::Word(k) => {
                ("word", self.settings[i]["stop"].get(k).and_then(Value::as_str).unwrap_or_default().to_string())
            }
        };
        let whole = !self.stream;
        let mut v = json!({
            "index": i,
            "content": if whole { t.content.as_str() } else { "" },
            "tokens": if whole && self.view.return_tokens { json!(t.tokens) } else { json!([]) },
            "id_slot": done.slot,
            "stop": true,
            "model": self.model,
            "tokens_predicted": predicted,
            "tokens_evaluated": prompt,
            "generation_settings": self.settings[i],
            "prompt": self.prompts[i],
            "has_new_line": t.content.contains('\n'),
            "truncated": done.truncated,
            "stop_type": stop_type,
            "stopping_word": word,
            "tokens_cached": cached,
            "timings": timings(prompt, cached, predicted, done.timings),
        });
        if whole && !t.probs.is_empty() {
            v["completion_probabilities"] = probs(&t.probs, self.view.post_sampling);
        }
        if self.view.fields.is_empty() {
            v
        } else {
            pick_fields(&v, &self.view.fields)
        }
    }

    /// A streamed chunk of prompt `i`: the text since the last one, the tokens and
    /// probabilities that made it, the counts (and timings, when asked for) so far.
    fn chunk(&self, i: usize, t: &mut Tally, text: &str) -> Value {
        let mut v = json!({
            "index": i,
            "content": text,
            "tokens": std::mem::take(&mut t.new_tokens),
            "stop": false,
            "id_slot": t.last.map_or(-1, |s| i64::try_from(s.slot).unwrap_or(-1)),
            "tokens_predicted": t.last.map_or(0, |s| s.n_decoded),
            "tokens_evaluated": t.prompt_tokens,
        });
        if let (true, Some(s)) = (self.view.timings_per_token, t.last) {
            v["timings"] = timings(t.prompt_tokens, s.cached, s.n_decoded, s.timings);
        }
        let new_probs = std::mem::take(&mut t.new_probs);
        if !new_probs.is_empty() {
            v["completion_probabilities"] = probs(&new_probs, self.view.post_sampling);
        }
        v
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

/// llama-server's `probs`: like OpenAI chat's, with the token ids; after sampling
/// (`post_sampling_probs`), `prob` and `top_probs` in place of the log-probabilities.
fn probs(lps: &[TokenLogprob], post_sampling: bool) -> Value {
    let chat = logprobs_value(Kind::Chat, lps, 0);
    let mut items = chat["content"].as_array().cloned().unwrap_or_default();
    let to_prob = |o: &mut serde_json::Map<String, Value>| {
        if let Some(lp) = o.remove("logprob").and_then(|v| v.as_f64()) {
            o.insert("prob".into(), json!(lp.exp()));
        }
    };
    for (item, lp) in items.iter_mut().zip(lps) {
        item["id"] = json!(lp.id);
        if let Some(top) = item["top_logprobs"].as_array_mut() {
            for (t, (id, _, _)) in top.iter_mut().zip(&lp.top) {
                t["id"] = json!(id);
                if let (true, Some(o)) = (post_sampling, t.as_object_mut()) {
                    to_prob(o);
                }
            }
        }
        if let (true, Some(o)) = (post_sampling, item.as_object_mut()) {
            to_prob(o);
            if let Some(top) = o.remove("top_logprobs") {
                o.insert("top_probs".into(), top);
            }
        }
    }
    Value::Array(items)
}

impl Outcome {
    fn tallies(&self) -> Vec<Tally> {
        self.lens.iter().map(|&n| Tally { prompt_tokens: n, ..Tally::default() }).collect()
    }
}

/// Wait for every prompt's answer: one object for one prompt, an array (in prompt order) for
/// several, as llama-server answers.
async fn whole_completion(st: &AppState, out: Outcome, mut events: Events) -> Response {
    let mut tallies = out.tallies();
    let mut answers: Vec<Option<Value>> = vec![None; tallies.len()];
    while let Some((i, ev)) = events.recv().await {
        match ev {
            Event::Error(e) => return refused(st, ApiError::internal(e)),
            Event::Done(done) => {
                answers[i] = Some(out.last(i, &tallies[i], &done));
                if answers.iter().all(Option::is_some) {
                    let mut all: Vec<Value> = answers.into_iter().flatten().collect();
                    let v = if all.len() == 1 { all.remove(0) } else { Value::Array(all) };
                    return Json(v).into_response();
                }
            }
            ev => tallies[i].take(&ev),
        }
    }
    refused(st, ApiError::internal("the inference engine dropped the request"))
}

/// llama-server's stream: per piece of text `{"index", "content", "tokens", "stop": false, …}`
/// (with `prompt_progress` chunks before, when asked for), then each prompt's final object
/// with `"stop": true`.
fn stream_completion(out: Outcome, events: Events) -> Response {
    let tallies = out.tallies();
    let left = tallies.len();
    let stream = futures_util::stream::unfold((events, tallies, left), move |(mut events, mut tallies, left)| {
        let out = out.clone();
        async move {
            if left == 0 {
                return None;
            }
            let line = |v: Value| Ok::<Bytes, Infallible>(Bytes::from(format!("data: {v}\n\n")));
            loop {
                let (i, ev) = events.recv().await?;
                let v = match ev {
                    Event::Text(ref s) => {
                        tallies[i].take(&ev);
                        out.chunk(i, &mut tallies[i], s)
                    }
                    Event::Progress(p) => json!({
                        "index": i, "content": "", "tokens": [], "stop": false, "id_slot": -1,
                        "tokens_predicted": 0, "tokens_evaluated": p.total,
                        "prompt_progress": { "total": p.total, "cache": p.cache, "processed": p.processed,
                                             "time_ms": p.time_ms },
                    }),
                    Event::Done(done) => {
                        // Tokens that added no text yet (a piece of a character, a control
                        // token) go out in a chunk of their own before the final object.
                        let mut lines = Vec::new();
                        if !tallies[i].new_tokens.is_empty() || !tallies[i].new_probs.is_empty() {
                            lines.push(format!("data: {}\n\n", out.chunk(i, &mut tallies[i], "")));
                        }
                        lines.push(format!("data: {}\n\n", out.last(i, &tallies[i], &done)));
                        return Some((Ok(Bytes::from(lines.concat())), (events, tallies, left - 1)));
                    }
                    Event::Error(e) => {
                        let v = json!({ "error": { "code": 500, "message": e, "type": "server_error" } });
                        return Some((line(v), (events, tallies, 0)));
                    }
                    Event::Token(_) | Event::Logprob(_) => {
                        tallies[i].take(&ev);
                        continue;
                    }
                };
                return Some((line(v), (events, tallies, left)));
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
}

/// llama-server's `__verbose` of an OpenAI-route answer (`verbose: true`): the native view —
/// the text as generated, the prompt as rendered, the settings, counts and timings.
pub fn verbose(st: &AppState, r: &Ready, p: &Prepared, text: &str, counts: &generate::Counts) -> Value {
    let cached = counts.cached.unwrap_or(0);
    json!({
        "content": text,
        "prompt": p.text,
        "model": st.model_id,
        "tokens_evaluated": counts.prompt,
        "tokens_predicted": counts.completion,
        "tokens_cached": cached,
        "generation_settings": generation_settings(st, r, p),
        "timings": timings(counts.prompt, cached, counts.completion, counts.timings.unwrap_or_default()),
    })
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

/// Tokens written out as text (special tokens as theirs).
pub fn detokenize_text(r: &Ready, tokens: &[LlamaToken]) -> String {
    String::from_utf8_lossy(&detokenize(r, tokens)).into_owned()
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

/// The most inputs one native embeddings request may carry.
const MAX_INPUTS: usize = 2048;

/// `POST /embedding` and `/embeddings` (llama-server's own): `content` or `input`, in any
/// form a `/completion` prompt takes (ids and text mixed, `{"prompt_string"}`, several);
/// one entry per input, its pooled vector in a list (as llama-server answers pooled models).
pub async fn embedding(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let mut v = api::body(&body)?;
        if let Some(c) = v.as_object_mut().and_then(|m| m.remove("content")) {
            if v.get("input").is_some() {
                return Err(ApiError::invalid("give content or input, not both", Some("content")));
            }
            v["input"] = c;
        }
        if let Some(input) = v.get("input").filter(|i| !i.is_null()) {
            // Read here with the vocabulary, handed on as token ids (which the shared route takes).
            let r = st.ready()?;
            let ids: Vec<Vec<i32>> =
                prompts(r, input, MAX_INPUTS, "input")?.iter().map(|p| p.iter().map(|t| t.0).collect()).collect();
            v["input"] = json!(ids);
        }
        let out = crate::server::embed(&st, &v).await?;
        if out.base64 {
            return Err(ApiError::invalid("encoding_format base64 is for /v1/embeddings", Some("encoding_format")));
        }
        Ok(Value::Array(out.vectors.iter().enumerate().map(|(i, e)| json!({ "index": i, "embedding": e })).collect()))
    }
    .await;
    answer(&st, result)
}
