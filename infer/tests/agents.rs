//! What agents need of aither-infer, on the tiny model (random weights: the grammar makes
//! the output valid, so every assertion about its shape is real): structured output, tool
//! calls in each template family, several choices, log-probabilities, llama-server's own
//! routes, and every request field read or refused.

mod common;

use common::{chat_model, embedding_model, Worker};
use serde_json::{json, Value};

fn template(name: &str) -> String {
    format!("{}/tests/templates/{name}.jinja", env!("CARGO_MANIFEST_DIR"))
}

fn ask(content: &str, extra: Value) -> Value {
    let mut body = json!({ "messages": [{ "role": "user", "content": content }], "max_tokens": 300 });
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

fn tools() -> Value {
    json!([
        { "type": "function", "function": { "name": "add", "description": "add two integers",
          "parameters": { "type": "object", "properties": { "a": { "type": "integer" }, "b": { "type": "integer" } },
                          "required": ["a", "b"], "additionalProperties": false } } },
        { "type": "function", "function": { "name": "get_weather",
          "parameters": { "type": "object", "properties": { "city": { "type": "string", "maxLength": 12 } },
                          "required": ["city"], "additionalProperties": false } } },
    ])
}

/// Characters as llama.cpp's grammar counts them, near enough: the random model writes
/// byte tokens that are not always UTF-8, and the grammar reads a lead byte with whatever
/// follows as one character, so a string's bound is checked on its valid characters.
fn valid_chars(s: &str) -> usize {
    s.chars().filter(|c| *c != '\u{FFFD}').count()
}

/// A call's arguments against its function's schema (the two functions above).
fn check_call(call: &Value) {
    let name = call["function"]["name"].as_str().expect("name");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("arguments string"))
        .unwrap_or_else(|e| panic!("arguments are JSON: {e}: {call}"));
    let keys: Vec<&String> = args.as_object().expect("object").keys().collect();
    match name {
        "add" => {
            assert_eq!(keys, ["a", "b"], "{call}");
            assert!(args["a"].is_i64() && args["b"].is_i64(), "{call}");
        }
        "get_weather" => {
            assert_eq!(keys, ["city"], "{call}");
            assert!(args["city"].as_str().is_some_and(|c| valid_chars(c) <= 12), "{call}");
        }
        other => panic!("no function {other}"),
    }
    assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()), "{call}");
}

#[test]
fn structured_output_matches_its_schema_or_grammar() {
    let w = Worker::start(&chat_model(), &["--ctx", "1024"]);
    let schema = json!({ "type": "object", "additionalProperties": false, "required": ["city", "days"],
        "properties": { "city": { "type": "string", "maxLength": 10 }, "days": { "type": "integer" } } });
    for seed in 0..3 {
        let (status, r) = w.post(
            "/v1/chat/completions",
            &ask(
                "plan a trip",
                json!({ "seed": seed, "response_format": { "type": "json_schema",
                "json_schema": { "name": "trip", "schema": schema, "strict": true } } }),
            ),
        );
        assert_eq!(status, 200, "{r}");
        let text = r["choices"][0]["message"]["content"].as_str().expect("content");
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("JSON: {e}: {text:?}"));
        assert!(v["city"].as_str().is_some_and(|c| valid_chars(c) <= 10) && v["days"].is_i64(), "{v}");
        assert_eq!(v.as_object().map(|m| m.len()), Some(2), "{v}");
    }
    let (status, r) = w.post("/v1/chat/completions", &ask("yes?", json!({ "grammar": "root ::= \"yes\" | \"no\"" })));
    assert_eq!(status, 200, "{r}");
    assert!(["yes", "no"].contains(&r["choices"][0]["message"]["content"].as_str().expect("content")), "{r}");
    let (status, r) =
        w.post("/v1/completions", &json!({ "prompt": "n:", "json_schema": { "type": "integer" }, "max_tokens": 30 }));
    assert_eq!(status, 200, "{r}");
    r["choices"][0]["text"].as_str().expect("text").trim().parse::<i64>().expect("an integer");
    for (body, param, words) in [
        (ask("x", json!({ "grammar": "root ::= item\n" })), "grammar", "line 1 column 10"),
        (
            ask("x", json!({ "grammar": "root ::= \"a\"", "response_format": { "type": "json_object" } })),
            "response_format",
            "give one",
        ),
        (
            ask(
                "x",
                json!({ "response_format": { "type": "json_schema", "json_schema": { "name": "t", "schema": { "type": "widget" } } } }),
            ),
            "response_format.json_schema.schema",
            "#/type is \"widget\"",
        ),
        (ask("x", json!({ "logit_bias": { "999999": 5 } })), "logit_bias", "outside the vocabulary"),
        (
            ask("x", json!({ "json_schema": { "type": "string", "minLength": 1_000_000_000u64 } })),
            "json_schema",
            "at most 4096",
        ),
        (
            ask("x", json!({ "grammar": format!("root ::= {}\"a\"{}", "(".repeat(500), ")".repeat(500)) })),
            "grammar",
            "nested deeper",
        ),
    ] {
        let (status, r) = w.post("/v1/chat/completions", &body);
        assert_eq!((status, r["error"]["param"].as_str()), (400, Some(param)), "{r}");
        assert!(r["error"]["message"].as_str().expect("message").contains(words), "{r}");
    }
}

#[test]
fn tool_calls_in_each_family_parse_and_match_their_schemas() {
    for family in ["hermes", "llama3", "mistral", "generic"] {
        let path = template(family);
        let args: Vec<&str> = if family == "generic" {
            vec!["--ctx", "2048"]
        } else {
            vec!["--ctx", "2048", "--chat-template-file", &path]
        };
        let w = Worker::start(&chat_model(), &args);
        let (status, props) = w.get("/props");
        assert_eq!((status, props["chat_template_caps"]["tool_call_format"].as_str()), (200, Some(family)), "{props}");
        for (seed, choice) in
            [(1, json!("required")), (2, json!({ "type": "function", "function": { "name": "get_weather" } }))]
        {
            let (status, r) = w.post(
                "/v1/chat/completions",
                &ask(
                    "weather in Oslo?",
                    json!({ "tools": tools(), "tool_choice": choice, "seed": seed,
                    "parallel_tool_calls": false }),
                ),
            );
            assert_eq!(status, 200, "{family}: {r}");
            let c = &r["choices"][0];
            assert_eq!(c["finish_reason"], "tool_calls", "{family}: {r}");
            let calls = c["message"]["tool_calls"].as_array().expect("tool_calls");
            assert!(!calls.is_empty(), "{family}: {r}");
            calls.iter().for_each(check_call);
            if choice.is_object() {
                assert!(calls.iter().all(|k| k["function"]["name"] == "get_weather"), "{family}: named: {r}");
            }
            if family == "mistral" {
                assert!(calls.iter().all(|k| k["id"].as_str().is_some_and(|id| id.len() == 9)), "{r}");
            }
            // The answer goes back into the history with the tool's result, and the
            // model's template takes it.
            let mut history = vec![json!({ "role": "user", "content": "weather in Oslo?" }), c["message"].clone()];
            for k in calls {
                history.push(json!({ "role": "tool", "tool_call_id": k["id"], "content": "{\"ok\": true}" }));
            }
            let (status, r) = w.post(
                "/v1/chat/completions",
                &json!({ "messages": history, "tools": tools(), "tool_choice": "none", "max_tokens": 4 }),
            );
            assert_eq!(status, 200, "{family}: the history with calls and results renders: {r}");
            assert!(r["choices"][0]["message"].get("tool_calls").is_none(), "none calls nothing: {r}");
        }
    }
}

#[test]
fn a_streamed_call_comes_as_tool_call_deltas() {
    let path = template("hermes");
    let w = Worker::start(&chat_model(), &["--ctx", "2048", "--chat-template-file", &path]);
    let events = w.stream(
        "/v1/chat/completions",
        &ask(
            "add 2 and 3",
            json!({ "tools": tools(), "tool_choice": "required", "stream": true, "seed": 3,
                                     "parallel_tool_calls": false }),
        ),
    );
    let chunks: Vec<Value> =
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).expect("json")).collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .flat_map(|t| t.as_array().expect("array"))
        .collect();
    assert_eq!(deltas.len(), 1, "one call, parallel calls off: {chunks:?}");
    check_call(deltas[0]);
    assert_eq!(chunks.iter().rev().find_map(|c| c["choices"][0]["finish_reason"].as_str()), Some("tool_calls"));
    assert!(
        chunks.iter().all(|c| c["choices"][0]["delta"]["content"].as_str().is_none_or(|t| !t.contains("<tool_call>"))),
        "the call's text is not sent as content"
    );
}

#[test]
fn several_choices_and_log_probabilities() {
    let w = Worker::start(&chat_model(), &["--ctx", "1024", "--parallel", "2"]);
    let (status, r) = w.post(
        "/v1/chat/completions",
        &ask("hi", json!({ "n": 2, "max_tokens": 5, "logprobs": true, "top_logprobs": 3, "seed": 9 })),
    );
    assert_eq!(status, 200, "{r}");
    let choices = r["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 2);
    assert_ne!(choices[0]["message"]["content"], choices[1]["message"]["content"], "different samples: {r}");
    for c in choices {
        let lps = c["logprobs"]["content"].as_array().expect("logprobs");
        assert!(!lps.is_empty(), "{c}");
        for t in lps {
            let lp = t["logprob"].as_f64().expect("logprob");
            assert!(lp <= 0.0, "{t}");
            let top = t["top_logprobs"].as_array().expect("top");
            assert_eq!(top.len(), 3);
            assert!(
                top.windows(2).all(|p| p[0]["logprob"].as_f64() >= p[1]["logprob"].as_f64()),
                "likeliest first: {t}"
            );
        }
    }
    let completion = r["usage"]["completion_tokens"].as_u64().expect("usage");
    assert!((2..=10).contains(&completion), "the choices' tokens add up: {r}");
    let (status, t) =
        w.post("/v1/completions", &json!({ "prompt": "abc", "max_tokens": 3, "logprobs": 2, "temperature": 0 }));
    assert_eq!(status, 200, "{t}");
    let lp = &t["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().map(Vec::len), lp["token_logprobs"].as_array().map(Vec::len), "{lp}");
    assert_eq!(lp["top_logprobs"][0].as_object().map(|m| m.len()), Some(2), "{lp}");
    // Greedy: the chosen token is the likeliest.
    let best =
        lp["top_logprobs"][0].as_object().expect("top").values().filter_map(Value::as_f64).fold(f64::MIN, f64::max);
    assert!((lp["token_logprobs"][0].as_f64().expect("lp") - best).abs() < 1e-4, "{lp}");
}

#[test]
fn llama_servers_own_routes_answer_as_it_does() {
    let w = Worker::start(&chat_model(), &["--ctx", "1024", "--parallel", "2"]);
    let (status, t) = w.post("/tokenize", &json!({ "content": "hello", "with_pieces": true }));
    assert_eq!(status, 200, "{t}");
    let tokens = t["tokens"].as_array().expect("tokens");
    let text: String = tokens.iter().map(|x| x["piece"].as_str().unwrap_or("")).collect();
    assert_eq!(text.trim_start(), "hello", "{t}");
    let ids: Vec<Value> = tokens.iter().map(|x| x["id"].clone()).collect();
    let (_, d) = w.post("/detokenize", &json!({ "tokens": ids }));
    assert_eq!(d["content"].as_str().map(str::trim_start), Some("hello"), "{d}");
    let (_, p) = w.post("/apply-template", &json!({ "messages": [{ "role": "user", "content": "hi" }] }));
    assert_eq!(p["prompt"], "<s>user: hi\nassistant:", "{p}");
    let (status, c) = w.post(
        "/completion",
        &json!({ "prompt": "Once", "n_predict": 4, "temperature": 0, "n_probs": 2, "return_tokens": true }),
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["tokens_predicted"], 4);
    assert_eq!(c["stop_type"], "limit");
    assert_eq!(c["tokens"].as_array().map(Vec::len), Some(4), "{c}");
    assert_eq!(c["completion_probabilities"].as_array().map(Vec::len), Some(4), "{c}");
    assert!(c["timings"]["predicted_per_second"].as_f64().is_some_and(|x| x > 0.0), "{c}");
    // ignore_eos: a model pushed to end at once still writes n_predict tokens.
    let eos = json!({ "2": 100 });
    let (_, ended) = w.post("/completion", &json!({ "prompt": "Once", "n_predict": 4, "logit_bias": eos }));
    assert_eq!((ended["stop_type"].as_str(), ended["tokens_predicted"].as_u64()), (Some("eos"), Some(0)), "{ended}");
    let (status, on) =
        w.post("/completion", &json!({ "prompt": "Once", "n_predict": 4, "logit_bias": eos, "ignore_eos": true }));
    assert_eq!(status, 200, "{on}");
    assert_eq!((on["stop_type"].as_str(), on["tokens_predicted"].as_u64()), (Some("limit"), Some(4)), "{on}");
    let (_, again) = w.post("/completion", &json!({ "prompt": "Once", "n_predict": 4, "temperature": 0 }));
    assert_eq!(again["content"], c["content"], "greedy is repeatable");
    assert!(again["tokens_cached"].as_u64() >= Some(1), "the prompt's prefix was reused: {again}");
    let (_, s) =
        w.post("/completion", &json!({ "prompt": [1, "Once"], "n_predict": 2, "stop": ["x"], "temperature": 0 }));
    assert!(s["stop_type"] == "limit" || s["stop_type"] == "word" || s["stop_type"] == "eos", "{s}");
    let events =
        w.stream("/completion", &json!({ "prompt": "Once", "n_predict": 3, "stream": true, "temperature": 0 }));
    let last: Value = serde_json::from_str(events.last().expect("events")).expect("json");
    assert_eq!((last["stop"].as_bool(), last["tokens_predicted"].as_u64()), (Some(true), Some(3)), "{events:?}");
    let (status, props) = w.get("/props");
    assert_eq!((status, props["total_slots"].as_u64()), (200, Some(2)), "{props}");
    let defaults = &props["default_generation_settings"]["params"];
    assert_eq!(
        (defaults["seed"].as_u64(), defaults["ignore_eos"].as_bool()),
        (Some(4_294_967_295), Some(false)),
        "{props}"
    );
    assert!(props["chat_template"].as_str().is_some_and(|t| t.contains("assistant:")));
    let devices = props["backends"]["devices"].as_array().expect("devices");
    assert!(devices.iter().any(|d| d["kind"] == "cpu" && d["backend"] == "CPU"), "{props}");
    assert!(props["backends"]["system_info"].as_str().is_some_and(|s| s.starts_with("CPU :")), "{props}");
    assert!(w.metrics().contains("aither_infer_device_info{name=\"CPU\",backend=\"CPU\",kind=\"cpu\""));
    let (status, slots) = w.get("/slots");
    assert_eq!((status, slots.as_array().map(Vec::len)), (200, Some(2)), "{slots}");
    assert!(slots[0]["n_ctx"].as_u64() == Some(512) && slots[0]["is_processing"] == false, "{slots}");
    // response_fields: only the paths asked for, a nested one under its path.
    let (_, picked) = w.post(
        "/completion",
        &json!({ "prompt": "Once", "n_predict": 2, "response_fields": ["content", "generation_settings/n_predict", "nope"] }),
    );
    let keys: Vec<&String> = picked.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["content", "generation_settings/n_predict"], "{picked}");
    assert_eq!(picked["generation_settings/n_predict"], 2, "{picked}");
    // n_predict on the OpenAI text route too.
    let (status, v1) = w.post("/v1/completions", &json!({ "prompt": "Once", "n_predict": 3, "temperature": 0 }));
    assert_eq!((status, v1["usage"]["completion_tokens"].as_u64()), (200, Some(3)), "{v1}");
    let (status, e) = w.post("/v1/completions", &json!({ "prompt": "Once", "n_predict": 3, "max_tokens": 5 }));
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("n_predict")), "{e}");
    // A chat request's prompt counted without generating: what the chat route's usage says.
    let ask = json!({ "messages": [{ "role": "user", "content": "count me" }], "max_tokens": 2, "temperature": 0 });
    let (status, n) = w.post("/v1/chat/completions/input_tokens", &ask);
    assert_eq!((status, n["object"].as_str()), (200, Some("response.input_tokens")), "{n}");
    let (_, done) = w.post("/v1/chat/completions", &ask);
    assert_eq!(n["input_tokens"], done["usage"]["prompt_tokens"], "{n} {done}");
    let (status, _) = w.post("/chat/completions/input_tokens", &ask);
    assert_eq!(status, 200);
    // Several aliases and tags, as llama-server lists them: the first in sort order is the id.
    let named = Worker::start(&chat_model(), &["--ctx", "256", "--alias", "zeta, alpha,beta", "--tags", "y,x"]);
    let (_, models) = named.get("/v1/models");
    let m = &models["data"][0];
    assert_eq!(
        (m["id"].as_str(), &m["aliases"], &m["tags"]),
        (Some("alpha"), &json!(["alpha", "beta", "zeta"]), &json!(["x", "y"])),
        "{models}"
    );
    drop(named);
    let closed = Worker::start(&chat_model(), &["--ctx", "256", "--no-slots"]);
    let (status, e) = closed.get("/slots");
    assert_eq!(
        (status, e["error"]["code"].as_u64(), e["error"]["type"].as_str()),
        (501, Some(501), Some("not_supported_error"))
    );
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("Start it with `--slots`")), "{e}");
    drop(closed);
    let (status, e) = w.post("/completion", &json!({ "prompt": "x", "n_predict": 0 }));
    assert_eq!((status, e["error"]["code"].as_u64()), (400, Some(400)), "llama-server's error shape: {e}");
    let (status, e) = w.post("/tokenize", &json!({ "text": "x" }));
    assert_eq!((status, e["error"]["type"].as_str()), (400, Some("invalid_request_error")), "{e}");

    let m = Worker::start(&embedding_model(), &[]);
    let (status, e) = m.post("/embedding", &json!({ "content": "hello" }));
    assert_eq!(status, 200, "{e}");
    assert_eq!(e[0]["embedding"][0].as_array().map(Vec::len), Some(384), "{e}");
    let (_, o) = m.post("/v1/embeddings", &json!({ "input": [[101, 7592, 102], [101, 102]] }));
    assert_eq!(o["data"].as_array().map(Vec::len), Some(2), "token-id lists: {o}");
}

/// The `data:` payloads of a stream, as JSON.
fn chunks(w: &Worker, path: &str, body: &Value) -> Vec<Value> {
    w.stream(path, body).iter().filter(|l| *l != "[DONE]").map(|l| serde_json::from_str(l).expect("json")).collect()
}

#[test]
fn llama_servers_native_options_are_honoured() {
    let w = Worker::start(&chat_model(), &["--ctx", "512", "--parallel", "2"]);
    // Several prompts in one request: a string, ids and text mixed, an object; one answer each.
    let (status, all) = w.post(
        "/completion",
        &json!({ "prompt": ["Once", [1, "upon"], { "prompt_string": "A" }], "n_predict": 2, "temperature": 0 }),
    );
    assert_eq!(status, 200, "{all}");
    let answers = all.as_array().expect("an array for several prompts");
    assert_eq!(answers.iter().map(|a| a["index"].as_u64()).collect::<Vec<_>>(), [Some(0), Some(1), Some(2)]);
    let (_, one) = w.post("/completion", &json!({ "prompt": "Once", "n_predict": 2, "temperature": 0 }));
    assert_eq!(one["content"], answers[0]["content"], "the same prompt alone: {one}");
    let (status, e) = w.post("/completion", &json!({ "prompt": [{ "nope": 1 }] }));
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("prompt[0]")), "{e}");

    // The stream: each chunk's tokens and probabilities, timings per token, progress first.
    let ask = json!({ "prompt": "Once upon a time", "n_predict": 6, "ignore_eos": true, "temperature": 0, "stream": true,
                      "n_probs": 2, "timings_per_token": true, "return_progress": true, "return_tokens": true });
    let c = chunks(&w, "/completion", &ask);
    let last = c.last().expect("chunks");
    assert_eq!((last["stop"].as_bool(), last["tokens_predicted"].as_u64()), (Some(true), Some(6)), "{last}");
    assert!(last.get("completion_probabilities").is_none() && last["content"] == "", "streamed already: {last}");
    let progress: Vec<&Value> = c.iter().filter(|v| v.get("prompt_progress").is_some()).collect();
    let evaluated = last["tokens_evaluated"].as_u64();
    assert!(!progress.is_empty(), "{c:?}");
    assert_eq!(progress.last().map(|p| p["prompt_progress"]["processed"].as_u64()), Some(evaluated), "{c:?}");
    assert!(progress.iter().all(|p| p["prompt_progress"]["total"].as_u64() == evaluated), "{progress:?}");
    let pieces: Vec<&Value> = c.iter().filter(|v| v["stop"] == false && v.get("prompt_progress").is_none()).collect();
    let ids: Vec<u64> = pieces
        .iter()
        .flat_map(|v| v["tokens"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_u64())
        .collect();
    let probs: usize = pieces.iter().map(|v| v["completion_probabilities"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!((ids.len(), probs), (6, 6), "a token and its probabilities per token: {pieces:?}");
    assert!(pieces.iter().all(|v| v["timings"]["predicted_n"].as_u64().is_some()), "{pieces:?}");
    let text: String = pieces.iter().filter_map(|v| v["content"].as_str()).collect();
    let (_, whole) = w.post("/completion", &merge(&ask, "stream", json!(false)));
    assert_eq!((whole["content"].as_str(), whole["tokens"].as_array().map(Vec::len)), (Some(text.as_str()), Some(6)));
    let whole_ids: Vec<u64> = whole["tokens"].as_array().expect("tokens").iter().filter_map(Value::as_u64).collect();
    assert_eq!(whole_ids, ids, "the same tokens streamed and not");
    let (_, plain) =
        w.post("/completion", &json!({ "prompt": "Once", "n_predict": 3, "ignore_eos": true, "return_tokens": true }));
    assert_eq!(plain["tokens"].as_array().map(Vec::len), Some(3), "return_tokens without n_probs: {plain}");

    // Several prompts on the OpenAI text route: n choices each, indexed prompt by prompt,
    // each prompt's tokens counted once.
    let one =
        |prompt: Value| w.post("/v1/completions", &json!({ "prompt": prompt, "max_tokens": 3, "temperature": 0 })).1;
    let (a, b) = (one(json!("Once")), one(json!("Upon a")));
    let (status, both) =
        w.post("/v1/completions", &json!({ "prompt": ["Once", "Upon a"], "n": 2, "max_tokens": 3, "temperature": 0 }));
    assert_eq!(status, 200, "{both}");
    let texts: Vec<&str> =
        both["choices"].as_array().expect("choices").iter().filter_map(|c| c["text"].as_str()).collect();
    let first = a["choices"][0]["text"].as_str().expect("a");
    let second = b["choices"][0]["text"].as_str().expect("b");
    assert_eq!(texts, [first, first, second, second], "{both}");
    let indexes: Vec<u64> =
        both["choices"].as_array().expect("choices").iter().filter_map(|c| c["index"].as_u64()).collect();
    assert_eq!(indexes, [0, 1, 2, 3]);
    let prompt_tokens = |v: &Value| v["usage"]["prompt_tokens"].as_u64().expect("usage");
    assert_eq!(prompt_tokens(&both), prompt_tokens(&a) + prompt_tokens(&b), "{both}");
    let (status, lists) = w.post("/v1/completions", &json!({ "prompt": [[1, 2], [3, 4, 5]], "max_tokens": 1 }));
    assert_eq!(
        (status, lists["choices"].as_array().map(Vec::len), prompt_tokens(&lists)),
        (200, Some(2), 5),
        "{lists}"
    );
    let streamed =
        chunks(&w, "/v1/completions", &json!({ "prompt": ["Once", "Upon a"], "max_tokens": 2, "stream": true }));
    let mut seen: Vec<u64> = streamed.iter().filter_map(|c| c["choices"][0]["index"].as_u64()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, [0, 1], "{streamed:?}");
    let (status, e) = w.post("/v1/completions", &json!({ "prompt": vec!["x"; 9], "n": 2, "max_tokens": 1 }));
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("prompt")), "18 choices: {e}");

    // post_sampling_probs: the probabilities among what the sampler chain left.
    let post = json!({ "prompt": "Today was the day. Today I would finally become a", "n_probs": 10, "temperature": 1.0,
                       "n_predict": 5, "post_sampling_probs": true, "ignore_eos": true });
    for (extra, most) in [(json!({}), 10), (json!({ "top_k": 3 }), 3)] {
        let mut body = post.clone();
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, p) = w.post("/completion", &body);
        assert_eq!(status, 200, "{p}");
        let probs = p["completion_probabilities"].as_array().expect("probabilities");
        assert_eq!(probs.len(), 5, "{p}");
        for tok in probs {
            let prob = tok["prob"].as_f64().expect("prob");
            assert!(prob > 0.0 && prob <= 1.0 && tok.get("logprob").is_none(), "{tok}");
            let top = tok["top_probs"].as_array().expect("top_probs");
            assert!(!top.is_empty() && top.len() <= most, "{tok}");
            assert!(top.iter().all(|t| t["prob"].as_f64().is_some_and(|x| x > 0.0 && x <= 1.0)), "{tok}");
            let sum: f64 = top.iter().filter_map(|t| t["prob"].as_f64()).sum();
            assert!(top.len() == most || (sum - 1.0).abs() < 1e-3, "fewer than asked sum to 1: {tok}");
            if most == 3 {
                assert!((sum - 1.0).abs() < 1e-3, "top_k 3 leaves three: {tok}");
            }
        }
    }
    let (_, greedy) = w.post("/completion", &merge(&post, "temperature", json!(0)));
    let first = &greedy["completion_probabilities"][0];
    assert_eq!((first["prob"].as_f64(), first["top_probs"].as_array().map(Vec::len)), (Some(1.0), Some(1)), "{first}");
    let streamed = chunks(&w, "/completion", &merge(&post, "stream", json!(true)));
    let n: usize = streamed.iter().map(|c| c["completion_probabilities"].as_array().map_or(0, Vec::len)).sum();
    assert!(n == 5 && streamed.iter().all(|c| c.get("completion_probabilities").is_none_or(|p| p[0]["prob"].is_f64())));

    // id_slot: the slot asked for, and nothing outside the worker's.
    let (_, pinned) = w.post("/completion", &json!({ "prompt": "Once", "n_predict": 1, "id_slot": 1 }));
    assert_eq!(pinned["id_slot"], 1, "{pinned}");
    let (status, e) = w.post("/completion", &json!({ "prompt": "Once", "n_predict": 1, "id_slot": 2 }));
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("id_slot")), "{e}");

    // logit_bias in llama-server's forms: [token, bias] pairs, text keys, false to ban.
    let end = |bias: Value| {
        let (status, v) = w.post("/completion", &json!({ "prompt": "Once", "n_predict": 3, "logit_bias": bias }));
        assert_eq!(status, 200, "{v}");
        (v["stop_type"].as_str().map(str::to_string), v["tokens_predicted"].as_u64())
    };
    assert_eq!(end(json!([[2, 100]])), (Some("eos".into()), Some(0)));
    assert_eq!(end(json!([[2, 100], [2, false]])), (Some("limit".into()), Some(3)), "false bans the token");
    assert_eq!(end(json!({ "2": 100, "hello": -5 })).0.as_deref(), Some("eos"));
    for bad in [json!([[2]]), json!({ "2": "x" }), json!([[2, 500]]), json!([[999_999, 1]]), json!("x")] {
        let (status, e) = w.post("/completion", &json!({ "prompt": "Once", "n_predict": 1, "logit_bias": bad }));
        assert_eq!((status, e["error"]["param"].as_str()), (400, Some("logit_bias")), "{bad}: {e}");
    }

    // A context overflow both kinds of client recognise.
    let long = "word ".repeat(400);
    let (status, e) = w.post("/completion", &json!({ "prompt": long, "n_predict": 8 }));
    assert_eq!((status, e["error"]["type"].as_str()), (400, Some("exceed_context_size_error")), "{e}");
    assert!(e["error"]["n_prompt_tokens"].as_u64() > Some(256) && e["error"]["n_ctx"] == 256, "{e}");
    let (status, e) = w.post("/v1/completions", &json!({ "prompt": long, "max_tokens": 8 }));
    assert_eq!(
        (status, e["error"]["type"].as_str(), e["error"]["code"].as_str()),
        (400, Some("invalid_request_error"), Some("context_length_exceeded")),
        "{e}"
    );
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("exceeds the available context size")), "{e}");
    assert_eq!(e["error"]["n_ctx"], 256, "{e}");

    // Continuing a final assistant message (vLLM's form), and what llama-server refuses.
    let talk = |extra: Value| {
        let mut body = json!({ "messages": [{ "role": "user", "content": "hi" }, { "role": "assistant", "content": "Hello th" }],
                               "max_tokens": 2, "temperature": 0 });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        w.post("/v1/chat/completions", &body)
    };
    let (status, cont) = talk(json!({ "continue_final_message": true, "add_generation_prompt": false }));
    assert_eq!(status, 200, "{cont}");
    let (_, t) = w.post("/tokenize", &json!({ "content": "<s>user: hi\nassistant:Hello th" }));
    assert_eq!(cont["usage"]["prompt_tokens"].as_u64(), t["tokens"].as_array().map(|a| a.len() as u64), "{cont} {t}");
    let (status, e) = talk(json!({ "continue_final_message": true }));
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("add_generation_prompt")), "{e}");
    let (status, e) =
        talk(json!({ "messages": [{ "role": "assistant", "content": "a" }, { "role": "assistant", "content": "b" }] }));
    assert!(status == 400 && e["error"]["message"].as_str().is_some_and(|m| m.contains("2 or more assistant")), "{e}");
    let (status, e) = talk(json!({ "messages": [{ "role": "user", "content": "a" }], "continue_final_message": true,
                                    "add_generation_prompt": false }));
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("continue_final_message")), "{e}");

    // verbose: llama-server's native view of an OpenAI-route answer.
    let (status, v) = talk(json!({ "messages": [{ "role": "user", "content": "hi" }], "verbose": true }));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["__verbose"]["prompt"], "<s>user: hi\nassistant:", "{v}");
    assert_eq!(v["__verbose"]["tokens_predicted"], v["usage"]["completion_tokens"], "{v}");
    let (status, e) = talk(json!({ "verbose": true, "stream": true }));
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("verbose")), "{e}");

    // Determinism: the same seed gives the same text streamed and not.
    let seeded = json!({ "messages": [{ "role": "user", "content": "Tell me a story" }], "max_tokens": 8,
                         "temperature": 1.0, "seed": 42 });
    let (_, whole) = w.post("/v1/chat/completions", &seeded);
    let streamed: String = chunks(&w, "/v1/chat/completions", &merge(&seeded, "stream", json!(true)))
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(whole["choices"][0]["message"]["content"].as_str(), Some(streamed.as_str()));
    drop(w);

    // Embeddings' inputs in llama-server's extra forms.
    let m = Worker::start(&embedding_model(), &[]);
    let (status, e) =
        m.post("/embedding", &json!({ "content": ["hello", { "prompt_string": "hi" }, [101, "hello", 102]] }));
    assert_eq!((status, e.as_array().map(Vec::len)), (200, Some(3)), "{e}");
    let (_, single) = m.post("/embedding", &json!({ "content": "hello" }));
    assert_eq!(single[0]["embedding"], e[0]["embedding"], "a string alone or in a list");
    let (status, e) = m.post("/embeddings", &json!({ "input": "word ".repeat(600) }));
    assert!(status == 400 && e["error"]["message"].as_str().is_some_and(|m| m.contains("too large")), "{e}");
}

/// A value of the wrong type for a field (a string where the field wants one, an object
/// elsewhere), and a value a refused or restricted field does not take.
fn wrong(field: &str) -> Value {
    match field {
        "json_schema" => json!("not a schema"),
        _ => json!({ "bad": true }),
    }
}

#[test]
fn every_field_is_read_or_refused() {
    use aither_infer::fields::{self, Field};
    let w = Worker::start(&chat_model(), &["--ctx", "1024"]);
    let m = Worker::start(&embedding_model(), &[]);
    /// A worker, a route, its fields, and a request it answers.
    type Route<'a> = (&'a Worker, &'static str, Vec<(&'static str, Field)>, Value);
    let routes: [Route; 5] = [
        (&w, "/v1/chat/completions", fields::table(fields::CHAT), ask("x", json!({ "max_tokens": 2 }))),
        (&w, "/v1/completions", fields::table(fields::COMPLETIONS), json!({ "prompt": "x", "max_tokens": 2 })),
        (&w, "/completion", fields::table(fields::LLAMA_COMPLETION), json!({ "prompt": "x", "n_predict": 2 })),
        (
            &w,
            "/v1/responses",
            aither_infer::responses::RESPONSES.to_vec(),
            json!({ "input": "x", "max_output_tokens": 2 }),
        ),
        (&m, "/v1/embeddings", fields::EMBEDDINGS.to_vec(), json!({ "input": "x" })),
    ];
    let mut checked = 0;
    for (worker, route, table, base) in routes {
        let (status, r) = worker.post(route, &base);
        assert_eq!(status, 200, "{route}: the base request works: {r}");
        let (status, r) = worker.post(route, &merge(&base, "frobnicate", json!(1)));
        assert_eq!(status, 400, "{route}: an unknown field is refused: {r}");
        for (field, treatment) in table {
            let (value, what) = match treatment {
                Field::Read => (wrong(field), "read: a wrong value is refused, naming it"),
                Field::Only(..) | Field::Refused(_) => (json!("something else"), "refused"),
            };
            let (status, r) = worker.post(route, &merge(&base, field, value));
            let param = r["error"]["param"].as_str().unwrap_or_default();
            let message = r["error"]["message"].as_str().unwrap_or_default();
            assert!(
                status == 400 && (param.starts_with(field) || message.contains(field)),
                "{route} {field} ({what}): {status} {}",
                r.to_string().chars().take(400).collect::<String>()
            );
            checked += 1;
        }
    }
    assert!(checked > 80, "{checked} fields checked");
}

fn merge(base: &Value, field: &str, value: Value) -> Value {
    let mut b = base.clone();
    b[field] = value;
    b
}

/// A long system prompt shared by agents is decoded once: a request whose prompt starts
/// with what another slot holds (running or idle), or is still reading, takes those KV
/// cells (llama.cpp's sequence copy) and decodes only the rest. With a stream per slot and
/// with one unified cache; prompts read in chunks of 16 so one can arrive while another
/// is still reading.
#[test]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn a_shared_prefix_is_decoded_once() {
    let system = "You are one of the agents of a research workflow; read the sources and cite them. ".repeat(6);
    let ask = |q: &str, max: u32| {
        json!({ "messages": [{ "role": "system", "content": system }, { "role": "user", "content": q }],
                "max_tokens": max, "temperature": 0 })
    };
    for unified in [false, true] {
        let mut args = vec!["--ctx", "4096", "--parallel", "3", "--batch", "16"];
        if unified {
            args.push("--kv-unified");
        }
        let w = Worker::start(&chat_model(), &args);
        let decoded = |w: &Worker| w.metric("aither_infer_prompt_tokens_total") as u64;
        // Two agents at once: the second waits for the first's prefix, or takes it.
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| w.post("/v1/chat/completions", &ask("first question", 40)));
            let b = s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                w.post("/v1/chat/completions", &ask("a second, different question", 4))
            });
            (a.join().expect("a"), b.join().expect("b"))
        });
        assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
        let prompt = |r: &Value| r["usage"]["prompt_tokens"].as_u64().expect("prompt tokens");
        let cached = |r: &Value| r["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().expect("cached");
        let (pa, pb) = (prompt(&a.1), prompt(&b.1));
        let shared = cached(&a.1).max(cached(&b.1));
        assert!(shared >= pb.min(pa) * 3 / 4, "unified {unified}: the system prompt was shared: {a:?} {b:?}");
        assert_eq!(decoded(&w), pa + pb - cached(&a.1) - cached(&b.1), "unified {unified}: only the rest was decoded");
        assert!(w.metric("aither_infer_shared_prefix_tokens_total") as u64 >= shared);
        // The same answer as without sharing: greedy output does not depend on where the
        // cells came from.
        let (_, alone) = w.post(
            "/v1/chat/completions",
            &merge(&ask("a second, different question", 4), "cache_prompt", json!(false)),
        );
        assert_eq!(
            alone["choices"][0]["message"]["content"], b.1["choices"][0]["message"]["content"],
            "unified {unified}"
        );
        // n = 2: the second choice takes the first's prompt.
        let before = decoded(&w);
        let (_, r) = w.post("/v1/chat/completions", &merge(&ask("third", 3), "n", json!(2)));
        let p = prompt(&r);
        assert!(
            decoded(&w) - before < p + p / 4,
            "unified {unified}: n = 2 decodes the prompt about once: {} of {p}",
            decoded(&w) - before
        );
    }
}

/// More agents than slots: a prompt pushed out of its slot is kept in host memory
/// (`--cache-ram`) and comes back for the next request sharing its prefix; only the rest is
/// decoded, and the answer is the one a fresh decode gives. With one slot (one cache) and
/// with a stream per slot; without `--cache-ram` nothing is kept.
#[test]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn a_prompt_pushed_out_of_its_slot_comes_back_from_memory() {
    let system =
        |who: &str| format!("You are the {who} agent of this appliance; keep to your task and cite. ").repeat(5);
    let ask = |who: &str, q: &str, cache: bool| {
        json!({ "messages": [{ "role": "system", "content": system(who) }, { "role": "user", "content": q }],
                "max_tokens": 4, "temperature": 0, "cache_prompt": cache })
    };
    let cached = |r: &Value| r["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().expect("cached");
    for (parallel, store) in [("1", true), ("2", true), ("1", false)] {
        let mut args = vec!["--ctx", "4096", "--parallel", parallel];
        if store {
            args.extend(["--cache-ram", "64"]);
        }
        let w = Worker::start(&chat_model(), &args);
        let decoded = |w: &Worker| w.metric("aither_infer_prompt_tokens_total") as u64;
        // One agent more than there are slots: the first is pushed out.
        for who in ["research", "writer", "reviewer"] {
            let (status, r) = w.post("/v1/chat/completions", &ask(who, "first", true));
            assert_eq!(status, 200, "{r}");
        }
        let before = decoded(&w);
        let (_, again) = w.post("/v1/chat/completions", &ask("research", "second", true));
        let prompt = again["usage"]["prompt_tokens"].as_u64().expect("prompt tokens");
        let restored = w.metric("aither_infer_restored_prompt_tokens_total") as u64;
        if !store {
            assert!(cached(&again) < prompt / 4, "nothing kept without --cache-ram: {again}");
            assert_eq!((restored, w.metric("aither_infer_prompt_store_entries") as u64), (0, 0));
            continue;
        }
        assert!(cached(&again) >= prompt * 3 / 4, "parallel {parallel}: the system prompt came back: {again}");
        assert_eq!(restored, cached(&again), "parallel {parallel}: from the store");
        assert_eq!(decoded(&w) - before, prompt - cached(&again), "parallel {parallel}: only the rest was decoded");
        assert!(
            w.metric("aither_infer_prompt_store_entries") >= 1.0 && w.metric("aither_infer_prompt_store_bytes") > 0.0
        );
        let (_, fresh) = w.post("/v1/chat/completions", &ask("research", "second", false));
        assert_eq!(cached(&fresh), 0);
        assert_eq!(
            again["choices"][0]["message"]["content"], fresh["choices"][0]["message"]["content"],
            "parallel {parallel}: the restored cells give the same answer"
        );
    }
}

/// `--chat-template NAME` renders llama.cpp's built-in format by llama.cpp itself (as
/// llama-server without `--jinja`); `chatml` is ChatML; Jinja text is a template; anything
/// else stops the worker with the list of names.
#[test]
fn a_built_in_chat_template_is_chosen_by_name() {
    let hi = json!({ "messages": [{ "role": "system", "content": "Be brief." }, { "role": "user", "content": "hi" }] });
    let w = Worker::start(&chat_model(), &["--ctx", "1024", "--chat-template", "llama3"]);
    let (status, p) = w.post("/apply-template", &hi);
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p["prompt"],
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n\
         hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "{p}"
    );
    let (_, props) = w.get("/props");
    assert_eq!(props["chat_template"], "llama3", "{props}");
    let (status, c) = w.post("/v1/chat/completions", &merge(&hi, "max_tokens", json!(2)));
    assert_eq!(status, 200, "{c}");
    let (status, c) = w.post("/v1/chat/completions", &ask("weather?", json!({ "tools": tools(), "max_tokens": 8 })));
    assert_eq!(status, 200, "tools are described in the messages for a built-in format: {c}");
    drop(w);
    let w = Worker::start(&chat_model(), &["--ctx", "256", "--chat-template", "chatml"]);
    let (_, p) = w.post("/apply-template", &hi);
    assert_eq!(
        p["prompt"],
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    drop(w);
    let w = Worker::start(
        &chat_model(),
        &["--ctx", "256", "--chat-template", "{% for m in messages %}[{{ m.content }}]{% endfor %}"],
    );
    let (_, p) = w.post("/apply-template", &hi);
    assert_eq!(p["prompt"], "[Be brief.][hi]");
    drop(w);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aither-infer"))
        .arg("--model")
        .arg(chat_model())
        .args(["--listen", "tcp:127.0.0.1:1", "--threads", "1", "--chat-template", "{% nope"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("--chat-template") && err.contains("mistral-v7"), "the option and the names: {err}");
}

/// `--pooling`: none gives a vector per token on llama-server's route (refused on OpenAI's);
/// mean is what MiniLM does by itself; cls pools differently; a chat model refuses it.
#[test]
fn pooling_is_chosen_at_start() {
    let norm =
        |v: &Value| v.as_array().expect("vector").iter().filter_map(Value::as_f64).map(|x| x * x).sum::<f64>().sqrt();
    let own = Worker::start(&embedding_model(), &[]);
    let (_, base) = own.post("/v1/embeddings", &json!({ "input": "hello world" }));
    drop(own);
    let none = Worker::start(&embedding_model(), &["--pooling", "none"]);
    let (_, t) = none.post("/tokenize", &json!({ "content": "hello world", "add_special": true }));
    let (status, e) = none.post("/embedding", &json!({ "content": "hello world" }));
    assert_eq!(status, 200, "{e}");
    let vectors = e[0]["embedding"].as_array().expect("vectors");
    assert_eq!(Some(vectors.len()), t["tokens"].as_array().map(Vec::len), "a vector per token: {t}");
    assert!(vectors.iter().all(|v| v.as_array().map(Vec::len) == Some(384)));
    let (status, e) = none.post("/v1/embeddings", &json!({ "input": "hello world" }));
    assert!(status == 400 && e["error"]["message"].as_str().is_some_and(|m| m.contains("--pooling none")), "{e}");
    drop(none);
    let mean = Worker::start(&embedding_model(), &["--pooling", "mean"]);
    let (_, m) = mean.post("/v1/embeddings", &json!({ "input": "hello world" }));
    assert_eq!(m["data"][0]["embedding"], base["data"][0]["embedding"], "mean is MiniLM's own");
    drop(mean);
    let cls = Worker::start(&embedding_model(), &["--pooling", "cls"]);
    let (_, c) = cls.post("/v1/embeddings", &json!({ "input": "hello world" }));
    assert_ne!(c["data"][0]["embedding"], base["data"][0]["embedding"], "the first token's vector");
    assert!((norm(&c["data"][0]["embedding"]) - 1.0).abs() < 1e-3, "normalized as pooled vectors are");
    drop(cls);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aither-infer"))
        .arg("--model")
        .arg(chat_model())
        .args(["--listen", "tcp:127.0.0.1:1", "--threads", "1", "--pooling", "mean"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("--pooling") && err.contains("--embeddings"), "{err}");
}

/// `--context-shift`: an answer longer than its slot goes on (the older half of the tokens
/// after n_keep discarded), is marked truncated, and leaves nothing inexact for later
/// requests to reuse; without it the same request is refused up front.
#[test]
fn a_full_context_shifts_when_asked() {
    let short = json!({ "prompt": "Once upon a time", "n_predict": 4, "temperature": 0 });
    let w = Worker::start(&chat_model(), &["--ctx", "64", "--context-shift"]);
    // llama.cpp rounds a context up (to 256 cells): ask for more than the slot holds.
    let (_, props) = w.get("/props");
    let n_ctx = props["default_generation_settings"]["n_ctx"].as_u64().expect("n_ctx");
    let long = json!({ "prompt": "Once upon a time", "n_predict": n_ctx + 50, "ignore_eos": true, "temperature": 0 });
    let (_, before) = w.post("/completion", &short);
    let (status, r) = w.post("/completion", &merge(&long, "n_keep", json!(2)));
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["tokens_predicted"].as_u64(), r["truncated"].as_bool()), (Some(n_ctx + 50), Some(true)), "{r}");
    assert!(w.metric("aither_infer_context_shifts_total") >= 1.0);
    let (_, after) = w.post("/completion", &short);
    assert_eq!(
        (after["content"].as_str(), after["tokens_cached"].as_u64()),
        (before["content"].as_str(), Some(0)),
        "{after}"
    );
    let chat = ask("hi", json!({ "max_tokens": n_ctx, "temperature": 0 }));
    let (status, c) = w.post("/v1/chat/completions", &merge(&chat, "logit_bias", json!([[2, false]])));
    assert_eq!((status, c["usage"]["completion_tokens"].as_u64()), (200, Some(n_ctx)), "{c}");
    drop(w);
    let w = Worker::start(&chat_model(), &["--ctx", "64"]);
    let (status, e) = w.post("/completion", &long);
    assert_eq!((status, e["error"]["type"].as_str()), (400, Some("exceed_context_size_error")), "{e}");
    let (status, e) = w.post("/completion", &merge(&short, "n_keep", json!(2)));
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("n_keep")), "{e}");
}
