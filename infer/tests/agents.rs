//! What agents need of aither-infer, on the tiny model (random weights: the grammar makes
//! the output valid, so every assertion about its shape is real): structured output, tool
//! calls in each template family, several choices, log-probabilities, llama-server's own
//! routes, and every request field read or refused.

mod common;

use common::{ask, chat_model, embedding_model, merge, tools, Worker};
use serde_json::{json, Value};

fn template(name: &str) -> String {
    format!("{}/tests/templates/{name}.jinja", env!("CARGO_MANIFEST_DIR"))
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
