//! The OpenAI-compatible wire format: requests as they arrive, validated into what the
//! engine needs, and error bodies in OpenAI's shape (`{"error": {"message", "type", "param",
//! "code"}}`).
//!
//! No option is accepted and ignored: every field of every route is in its table
//! ([`crate::fields`]) as read or refused, and a field in no table is refused with a 400
//! naming it, so a client never believes an option took effect when it did not.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::grammar::Constraint;

/// An error answered to the client, OpenAI style.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// A context overflow's (prompt tokens, context per request): llama-server's
    /// `n_prompt_tokens` and `n_ctx`, in the error on every route.
    pub overflow: Option<(usize, usize)>,
}

/// How much of the KV cache one request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSize {
    /// Tokens one request may hold (`--ctx / --parallel`, or all with `--kv-unified`).
    pub tokens: usize,
    /// KV cells of the whole context.
    pub cells: usize,
    pub parallel: usize,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
            overflow: None,
        }
    }

    /// The prompt and the tokens asked for do not fit one request's share of the context:
    /// OpenAI's `context_length_exceeded` with llama-server's wording and counts, so clients
    /// of either recognise it.
    pub fn context_overflow(prompt: usize, max_tokens: usize, slot: SlotSize) -> ApiError {
        let share = if slot.tokens < slot.cells {
            format!(
                " (each of the {} parallel slots has {} of the {} KV cells: --ctx / --parallel)",
                slot.parallel, slot.tokens, slot.cells
            )
        } else {
            String::new()
        };
        let need = prompt + max_tokens;
        ApiError {
            code: Some("context_length_exceeded"),
            overflow: Some((prompt, slot.tokens)),
            ..ApiError::invalid(
                format!(
                    "request ({need} tokens) exceeds the available context size ({} tokens), try increasing it: \
                     this model's maximum context length is {} tokens per request{share}; the request needs {need} \
                     ({prompt} in the prompt, {max_tokens} to generate)",
                    slot.tokens, slot.tokens,
                ),
                Some("messages"),
            )
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("not_found"),
            overflow: None,
        }
    }

    /// A route this server was started without (llama-server's `not_supported_error`, 501).
    pub fn not_supported(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            message: message.into(),
            kind: "not_supported_error",
            param: None,
            code: None,
            overflow: None,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: Some("unavailable"),
            overflow: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
            overflow: None,
        }
    }

    pub fn body(&self) -> Value {
        let mut v =
            json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } });
        if let Some((prompt, n_ctx)) = self.overflow {
            v["error"]["n_prompt_tokens"] = json!(prompt);
            v["error"]["n_ctx"] = json!(n_ctx);
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Parse a JSON body: a syntax error names the line and column.
pub fn body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::invalid("the request body is empty; send a JSON object", None));
    }
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}"), None))?;
    if !v.is_object() {
        return Err(ApiError::invalid("the request body must be a JSON object", None));
    }
    Ok(v)
}

/// Read a request (or part of one) out of a parsed body: a wrong type names the field.
pub fn fields<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = (path != ".").then_some(path.as_str());
        ApiError::invalid(format!("invalid request: {inner}"), param)
    })
}

/// Parse a whole request from its bytes.
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    fields(&body(bytes)?)
}

/// A message of a chat: `content` is a string or a list of text parts; an assistant's
/// message may carry the tool calls it made, and a `tool` message answers one of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallMessage>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Fields the official clients send back with an assistant message they received;
    /// taken when empty (as this server writes them), refused otherwise.
    #[serde(default)]
    pub refusal: Option<Value>,
    #[serde(default)]
    pub audio: Option<Value>,
    #[serde(default)]
    pub function_call: Option<Value>,
    #[serde(default)]
    pub annotations: Option<Value>,
}

/// A call in an assistant message of the history.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallMessage {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: CalledFunction,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalledFunction {
    pub name: String,
    /// JSON text, as OpenAI sends it.
    pub arguments: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling options shared by chat and text completions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamplingFields {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub max_tokens: Option<i64>,
    /// The newer name of `max_tokens` in chat completions.
    pub max_completion_tokens: Option<i64>,
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Biases added to tokens' logits: read with the vocabulary ([`crate::options::logit_bias`]).
    pub logit_bias: Option<Value>,
    /// llama-server's: reuse the cached prefix of an earlier request (default true).
    pub cache_prompt: Option<bool>,
    /// llama-server's: a GBNF grammar the output must match.
    pub grammar: Option<String>,
    /// llama-server's: a JSON schema the output must match.
    pub json_schema: Option<Value>,
    /// OpenAI's end-user id: written to the worker's log with the request.
    pub user: Option<String>,
    /// llama-server's: `__verbose` in the answer (read in [`crate::generate::open`]).
    pub verbose: Option<bool>,
    /// The model asked for: the gateway routes by it; a worker serves its one model.
    pub model: Option<String>,
}

/// A chat completion request; its sampling options are read separately ([`SamplingFields`]).
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<Value>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    /// OpenAI's newer end-user id: written to the log like `user`.
    pub safety_identifier: Option<String>,
    /// vLLM's and llama-server's: end the prompt with the assistant's header (default true).
    pub add_generation_prompt: Option<bool>,
    /// vLLM's and llama-server's: the last message is the assistant's, to be continued
    /// (`true` or `"content"`).
    pub continue_final_message: Option<Value>,
}

/// `prompt` of a text completion: a string, token ids, or several of either (one set of
/// choices each).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i32>),
    TokenLists(Vec<Vec<i32>>),
}

/// A text completion request; its sampling options are read separately ([`SamplingFields`]).
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Prompt,
    #[serde(default)]
    pub echo: bool,
    /// The number of most likely alternatives to report with each token (0 to 5).
    pub logprobs: Option<i64>,
}

/// `input` of an embeddings request.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i32>),
    TokenLists(Vec<Vec<i32>>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    pub model: Option<String>,
    pub input: EmbeddingInput,
    pub encoding_format: Option<String>,
    pub dimensions: Option<i64>,
    /// OpenAI's end-user id.
    pub user: Option<String>,
}

/// Sampling as the engine runs it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 turns top-k off.
    pub top_k: i32,
    pub min_p: f32,
    pub seed: u32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
}

/// What a completion asks of the engine besides its prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub sampling: Sampling,
    /// None: until the end of the context.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// Choices of the same prompt (`n`).
    pub n: usize,
    /// A grammar the output must match.
    pub constraint: Option<Constraint>,
    /// (token id, bias) pairs added to the logits before sampling.
    pub logit_bias: Vec<(i32, f32)>,
    /// Report each token's log-probability and this many alternatives.
    pub logprobs: Option<usize>,
    /// Write special tokens as their text (tool-call markers are often special tokens).
    pub special: bool,
    /// Reuse a cached prefix (llama-server's `cache_prompt`).
    pub cache_prompt: bool,
    /// Report each sampled token with the counts and timings so far (llama-server's stream).
    pub each_token: bool,
    /// Report how far the prompt has been read (llama-server's `return_progress`).
    pub progress: bool,
    /// Run on this slot, waiting for it if busy (llama-server's `id_slot`); None: the best free one.
    pub slot: Option<usize>,
    /// Add llama-server's `__verbose` (the rendered prompt, settings, counts) to the answer.
    pub verbose: bool,
    /// Prompt tokens a context shift keeps (llama-server's `n_keep`; the BOS besides); None: none.
    pub keep: Option<usize>,
    /// Report probabilities after the sampler chain (llama-server's `post_sampling_probs`).
    pub post_sampling: bool,
}

/// The most choices one request may ask for.
pub const MAX_N: i64 = 16;
/// The most alternatives per token (OpenAI's limit for chat).
pub const MAX_TOP_LOGPROBS: i64 = 20;

/// Defaults are llama-server's (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05), so the
/// same request samples the same way on both.
pub const DEFAULT_TEMPERATURE: f32 = 0.8;
pub const DEFAULT_TOP_K: i32 = 40;
pub const DEFAULT_TOP_P: f32 = 0.95;
pub const DEFAULT_MIN_P: f32 = 0.05;
/// OpenAI allows at most four stop sequences.
const MAX_STOP: usize = 4;

impl SamplingFields {
    /// Validate the options; every refusal names its field.
    pub fn validate(&self, seed_if_unset: u32) -> Result<Generation, ApiError> {
        let n = self.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(ApiError::invalid(format!("n = {n}: between 1 and {MAX_N}"), Some("n")));
        }
        if self.stream_options.is_some() && !self.stream {
            return Err(ApiError::invalid("stream_options is only for stream: true", Some("stream_options")));
        }
        let temperature = self.temperature.unwrap_or(DEFAULT_TEMPERATURE);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(format!("temperature {temperature} is outside 0 to 2"), Some("temperature")));
        }
        let top_p = self.top_p.unwrap_or(DEFAULT_TOP_P);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(format!("top_p {top_p} must be above 0 and at most 1"), Some("top_p")));
        }
        let top_k = self.top_k.unwrap_or(DEFAULT_TOP_K);
        if top_k < 0 {
            return Err(ApiError::invalid(format!("top_k {top_k} must not be negative"), Some("top_k")));
        }
        let min_p = self.min_p.unwrap_or(DEFAULT_MIN_P);
        if !(0.0..=1.0).contains(&min_p) {
            return Err(ApiError::invalid(format!("min_p {min_p} is outside 0 to 1"), Some("min_p")));
        }
        for (field, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if let Some(v) = v {
                if !(-2.0..=2.0).contains(&v) {
                    return Err(ApiError::invalid(format!("{field} {v} is outside -2 to 2"), Some(field)));
                }
            }
        }
        let (field, max) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => ("max_completion_tokens", Some(m)),
            (None, m) => ("max_tokens", m),
        };
        let max_tokens = match max {
            None | Some(-1) => None,
            Some(m) if m < 1 => {
                return Err(ApiError::invalid(format!("{field} {m} must be at least 1"), Some(field)));
            }
            Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        };
        let stop = match &self.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid(format!("{} stop sequences; at most {MAX_STOP}", stop.len()), Some("stop")));
        }
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid("a stop sequence is empty", Some("stop")));
        }
        let seed = match self.seed {
            None => seed_if_unset,
            // OpenAI seeds are 64-bit; llama.cpp's are 32: keep the low bits.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(s) => s as u32,
        };
        Ok(Generation {
            sampling: Sampling {
                temperature,
                top_p,
                top_k,
                min_p,
                seed,
                presence_penalty: self.presence_penalty.unwrap_or(0.0),
                frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            },
            max_tokens,
            stop,
            stream: self.stream,
            include_usage: self.stream_options.as_ref().is_some_and(|o| o.include_usage),
            n: usize::try_from(n).unwrap_or(1),
            constraint: None,
            logit_bias: Vec::new(),
            logprobs: None,
            special: false,
            cache_prompt: self.cache_prompt.unwrap_or(true),
            each_token: false,
            progress: false,
            slot: None,
            verbose: false,
            keep: None,
            post_sampling: false,
        })
    }
}

impl Message {
    /// The text of the message: a string, or its text parts joined.
    pub fn text(&self, index: usize) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(String::new()),
            Some(Content::Text(t)) => Ok(t.clone()),
            Some(Content::Parts(parts)) => {
                let mut out = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                format!("content part of type {kind:?} is not supported; only text"),
                                Some(&format!("messages[{index}].content[{j}]")),
                            ))
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// The message as a chat template reads it: `content` a string (null for an assistant
    /// message that only calls tools), `tool_calls` with their arguments as objects (the
    /// templates write them with `tojson`), `tool_call_id` and `name` when given.
    pub fn template_value(&self, index: usize) -> Result<Value, ApiError> {
        let at = |field: &str| format!("messages[{index}].{field}");
        for (field, v) in [
            ("refusal", &self.refusal),
            ("audio", &self.audio),
            ("function_call", &self.function_call),
            ("annotations", &self.annotations),
        ] {
            let empty = match v {
                None | Some(Value::Null) => true,
                Some(Value::Array(a)) => a.is_empty(),
                Some(_) => false,
            };
            if !empty {
                return Err(ApiError::invalid(
                    format!("messages[{index}].{field} is not supported by this server"),
                    Some(&at(field)),
                ));
            }
        }
        let known = ["system", "developer", "user", "assistant", "tool"];
        if !known.contains(&self.role.as_str()) {
            return Err(ApiError::invalid(
                format!("role {:?}: expected one of {}", self.role, known.join(", ")),
                Some(&at("role")),
            ));
        }
        let mut m = serde_json::Map::new();
        // Templates know `system`; OpenAI's newer `developer` is the same message.
        let role = if self.role == "developer" { "system" } else { self.role.as_str() };
        m.insert("role".into(), json!(role));
        let calls = self.tool_calls.as_deref().unwrap_or_default();
        if !calls.is_empty() && self.role != "assistant" {
            return Err(ApiError::invalid("only assistant messages carry tool_calls", Some(&at("tool_calls"))));
        }
        let text = self.text(index)?;
        m.insert("content".into(), if self.content.is_none() && !calls.is_empty() { Value::Null } else { json!(text) });
        if !calls.is_empty() {
            let mut out = Vec::with_capacity(calls.len());
            for (j, c) in calls.iter().enumerate() {
                if c.kind != "function" {
                    return Err(ApiError::invalid(
                        format!("tool call of type {:?}; only \"function\"", c.kind),
                        Some(&at(&format!("tool_calls[{j}].type"))),
                    ));
                }
                let args: Value = serde_json::from_str(&c.function.arguments).map_err(|e| {
                    ApiError::invalid(
                        format!("the arguments of tool call {:?} are not JSON: {e}", c.id),
                        Some(&at(&format!("tool_calls[{j}].function.arguments"))),
                    )
                })?;
                out.push(json!({ "id": c.id, "type": "function",
                                 "function": { "name": c.function.name, "arguments": args } }));
            }
            m.insert("tool_calls".into(), Value::Array(out));
        }
        if self.role == "tool" {
            let id = self.tool_call_id.as_deref().ok_or_else(|| {
                ApiError::invalid("a tool message needs the tool_call_id it answers", Some(&at("tool_call_id")))
            })?;
            m.insert("tool_call_id".into(), json!(id));
        } else if self.tool_call_id.is_some() {
            return Err(ApiError::invalid("only tool messages carry tool_call_id", Some(&at("tool_call_id"))));
        }
        if let Some(name) = &self.name {
            m.insert("name".into(), json!(name));
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let e = parse::<ChatRequest>(b"{\"messages\": [}").expect_err("bad json");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("line 1 column 15"), "{}", e.message);
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let e = parse::<SamplingFields>(br#"{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#)
            .expect_err("bad type");
        assert_eq!(e.param.as_deref(), Some("temperature"), "{e:?}");
        let e = parse::<ChatRequest>(br#"{"model": "m"}"#).expect_err("missing messages");
        assert!(e.message.contains("messages"), "{e:?}");
    }

    #[test]
    fn defaults_are_llama_servers_and_out_of_range_values_are_refused() {
        let g = SamplingFields::default().validate(7).expect("defaults");
        assert_eq!(g.sampling.temperature, DEFAULT_TEMPERATURE);
        assert_eq!((g.sampling.top_k, g.sampling.seed, g.max_tokens), (40, 7, None));
        for (fields, param) in [
            (SamplingFields { temperature: Some(3.0), ..Default::default() }, "temperature"),
            (SamplingFields { top_p: Some(0.0), ..Default::default() }, "top_p"),
            (SamplingFields { max_tokens: Some(0), ..Default::default() }, "max_tokens"),
            (SamplingFields { n: Some(17), ..Default::default() }, "n"),
            (SamplingFields { stop: Some(Stop::Many(vec!["".into()])), ..Default::default() }, "stop"),
            (SamplingFields { stream_options: Some(StreamOptions::default()), ..Default::default() }, "stream_options"),
        ] {
            let e = fields.validate(0).expect_err(param);
            assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
        }
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let f = SamplingFields { max_tokens: Some(5), max_completion_tokens: Some(9), ..Default::default() };
        assert_eq!(f.validate(0).expect("valid").max_tokens, Some(9));
    }

    #[test]
    fn text_parts_are_joined_and_images_refused() {
        let m: Message = serde_json::from_value(
            json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
        )
        .expect("message");
        assert_eq!(m.text(0).expect("text"), "ab");
        let m: Message =
            serde_json::from_value(json!({"role": "user", "content": [{"type": "image_url"}]})).expect("message");
        assert_eq!(m.text(3).expect_err("image").param.as_deref(), Some("messages[3].content[0]"));
    }

    #[test]
    fn overflow_is_a_400_with_openais_code() {
        let e = ApiError::context_overflow(100, 50, SlotSize { tokens: 128, cells: 128, parallel: 1 });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body()["error"]["code"], "context_length_exceeded");
        assert!(!e.message.contains("slots"), "{}", e.message);
        let e = ApiError::context_overflow(330, 16, SlotSize { tokens: 256, cells: 512, parallel: 2 });
        assert!(
            e.message.contains("256 tokens per request") && e.message.contains("2 parallel slots has 256 of the 512"),
            "the slot's size is named: {}",
            e.message
        );
    }
}
