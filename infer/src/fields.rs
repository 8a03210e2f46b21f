//! Every field of every request body, and what this server does with it.
//!
//! A field is read (it changes the answer as its API documents), taken only with certain
//! values (`store: false`), or refused with a 400 that says why. A field in no table is
//! refused as unknown. The tables are the list a test walks: each read field is proved to be
//! read (a wrong type is a 400 naming it) and each refused one is proved refused.

use serde_json::Value;

use crate::api::ApiError;

/// What happens to a field.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// Read and honoured.
    Read,
    /// Honoured only with these values (anything else is refused with the reason).
    Only(fn(&Value) -> bool, &'static str),
    /// Refused whatever its value (null aside), with the reason.
    Refused(&'static str),
}

use Field::{Only, Read, Refused};

pub(crate) fn is_false(v: &Value) -> bool {
    v == &Value::Bool(false)
}

pub(crate) fn is_default_tier(v: &Value) -> bool {
    matches!(v.as_str(), Some("auto" | "default"))
}

fn is_text_only(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(|m| m == "text"))
}

fn is_one(v: &Value) -> bool {
    v.as_i64() == Some(1)
}

const NOT_STORED: &str = "this server keeps no completions: store must be false";
const NO_AUDIO: &str = "this server generates text only";
const USE_TOOLS: &str = "the deprecated functions API is not supported: use tools and tool_choice";
const NO_PREDICTION: &str = "predicted outputs are not supported";
const NO_REASONING: &str = "reasoning_effort is not supported: models here are not asked to reason for a budget";
const NO_SEARCH: &str = "web search is not available to the model";
const NO_CACHE_KEY: &str =
    "prompt_cache_key is not needed: the worker finds shared prefixes itself (set cache_prompt false to turn it off)";
const NO_TIER: &str = "there is one service tier: auto";
const LLAMA_SAMPLER: &str = "this llama-server sampling option is not supported by aither-infer";

/// Fields shared by chat, text completions and llama-server's `/completion`.
const SAMPLING: &[(&str, Field)] = &[
    ("model", Read),
    ("temperature", Read),
    ("top_p", Read),
    ("top_k", Read),
    ("min_p", Read),
    ("seed", Read),
    ("stop", Read),
    ("presence_penalty", Read),
    ("frequency_penalty", Read),
    ("stream", Read),
    ("logit_bias", Read),
    ("cache_prompt", Read),
    ("grammar", Read),
    ("json_schema", Read),
    ("user", Read),
];

/// `POST /v1/chat/completions`.
pub const CHAT: &[(&str, Field)] = &[
    ("messages", Read),
    ("max_tokens", Read),
    ("max_completion_tokens", Read),
    ("n", Read),
    ("stream_options", Read),
    ("logprobs", Read),
    ("top_logprobs", Read),
    ("tools", Read),
    ("tool_choice", Read),
    ("parallel_tool_calls", Read),
    ("response_format", Read),
    ("safety_identifier", Read),
    ("add_generation_prompt", Read),
    ("verbose", Read),
    ("continue_final_message", Read),
    ("store", Only(is_false, NOT_STORED)),
    ("metadata", Refused(NOT_STORED)),
    ("service_tier", Only(is_default_tier, NO_TIER)),
    ("modalities", Only(is_text_only, NO_AUDIO)),
    ("audio", Refused(NO_AUDIO)),
    ("functions", Refused(USE_TOOLS)),
    ("function_call", Refused(USE_TOOLS)),
    ("prediction", Refused(NO_PREDICTION)),
    ("reasoning_effort", Refused(NO_REASONING)),
    ("verbosity", Refused("verbosity is not supported: say how long the answer should be in the messages")),
    ("web_search_options", Refused(NO_SEARCH)),
    ("prompt_cache_key", Refused(NO_CACHE_KEY)),
    ("prompt_cache_retention", Refused(NO_CACHE_KEY)),
];

/// `POST /v1/completions`.
pub const COMPLETIONS: &[(&str, Field)] = &[
    ("prompt", Read),
    ("max_tokens", Read),
    ("n_predict", Read),
    ("verbose", Read),
    ("n", Read),
    ("stream_options", Read),
    ("logprobs", Read),
    ("echo", Only(is_false, "echo is not supported: the prompt is not repeated in the answer")),
    ("best_of", Only(is_one, "best_of is not supported: ask for n choices and pick")),
    ("suffix", Refused("suffix (fill in the middle) is not supported")),
];

/// `POST /v1/embeddings`, `/embedding`, `/embeddings`.
pub const EMBEDDINGS: &[(&str, Field)] =
    &[("model", Read), ("input", Read), ("encoding_format", Read), ("dimensions", Read), ("user", Read)];

/// llama-server's `POST /completion`.
pub const LLAMA_COMPLETION: &[(&str, Field)] = &[
    ("prompt", Read),
    ("n_predict", Read),
    ("n_probs", Read),
    ("return_tokens", Read),
    ("n_keep", Read),
    ("ignore_eos", Read),
    ("response_fields", Read),
    ("typical_p", Refused(LLAMA_SAMPLER)),
    ("repeat_penalty", Refused(LLAMA_SAMPLER)),
    ("repeat_last_n", Refused(LLAMA_SAMPLER)),
    ("mirostat", Refused(LLAMA_SAMPLER)),
    ("mirostat_tau", Refused(LLAMA_SAMPLER)),
    ("mirostat_eta", Refused(LLAMA_SAMPLER)),
    ("dry_multiplier", Refused(LLAMA_SAMPLER)),
    ("xtc_probability", Refused(LLAMA_SAMPLER)),
    ("samplers", Refused(LLAMA_SAMPLER)),
    ("id_slot", Read),
    ("timings_per_token", Read),
    ("return_progress", Read),
    ("image_data", Refused(NO_AUDIO)),
    ("post_sampling_probs", Read),
];

/// The table of a generating route: its own fields and the sampling ones.
pub fn table(route: &[(&'static str, Field)]) -> Vec<(&'static str, Field)> {
    let mut all: Vec<(&'static str, Field)> = route.to_vec();
    all.extend(SAMPLING.iter().filter(|(n, _)| !route.iter().any(|(m, _)| m == n)).copied());
    all
}

/// Refuse a body with a field the route does not read, or a value it does not take.
pub fn check(body: &Value, route: &[(&'static str, Field)], what: &str) -> Result<(), ApiError> {
    check_exact(body, &table(route), what)
}

/// [`check`] against exactly these fields (no shared sampling ones).
pub fn check_exact(body: &Value, table: &[(&'static str, Field)], what: &str) -> Result<(), ApiError> {
    let Some(map) = body.as_object() else { return Ok(()) };
    for (key, value) in map {
        match table.iter().find(|(n, _)| n == key).map(|(_, f)| *f) {
            None => {
                return Err(ApiError::invalid(
                    format!(
                        "unknown field {key:?} in a {what} request: this server does not accept options it would ignore"
                    ),
                    Some(key),
                ))
            }
            Some(Read) => {}
            Some(_) if value.is_null() => {}
            Some(Only(ok, why)) if !ok(value) => return Err(ApiError::invalid(format!("{key}: {why}"), Some(key))),
            Some(Only(..)) => {}
            Some(Refused(why)) => return Err(ApiError::invalid(format!("{key}: {why}"), Some(key))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_and_refused_fields_are_named() {
        let e = check(&json!({"messages": [], "frobnicate": 1}), CHAT, "chat").expect_err("unknown");
        assert_eq!(e.param.as_deref(), Some("frobnicate"));
        assert!(e.message.contains("unknown field"), "{}", e.message);
        let e = check(&json!({"functions": [{"name": "x"}]}), CHAT, "chat").expect_err("refused");
        assert!(e.message.contains("use tools"), "{}", e.message);
        check(&json!({"store": false, "service_tier": "auto", "modalities": ["text"], "audio": null}), CHAT, "chat")
            .expect("taken values");
        let e = check(&json!({"store": true}), CHAT, "chat").expect_err("store");
        assert_eq!(e.param.as_deref(), Some("store"));
        check(&json!({"top_k": 3, "grammar": "root ::= \"a\""}), COMPLETIONS, "completion").expect("shared fields");
        let e = check(&json!({"max_completion_tokens": 3}), COMPLETIONS, "completion").expect_err("chat only");
        assert_eq!(e.param.as_deref(), Some("max_completion_tokens"));
        assert!(
            check_exact(&json!({"temperature": 1}), EMBEDDINGS, "embeddings").is_err(),
            "no sampling in embeddings"
        );
    }

    #[test]
    fn no_field_is_listed_twice() {
        for route in [CHAT, COMPLETIONS, EMBEDDINGS, LLAMA_COMPLETION, SAMPLING] {
            let mut names: Vec<_> = route.iter().map(|(n, _)| *n).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "{names:?}");
        }
    }
}
