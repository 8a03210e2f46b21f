//! llama-server's own API as its clients use it (its README and `tools/server/tests/unit/`):
//! the native routes and their options, the server options (`--chat-template NAME`,
//! `--pooling`, `--context-shift`), and where OpenAI's and llama-server's behaviour meet.

mod common;

use common::{ask, chat_model, chunks, embedding_model, merge, refused_start, tools, Worker};
use serde_json::{json, Value};

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
    let (code, err) = refused_start(&chat_model(), &["--chat-template", "{% nope"]);
    assert_eq!(code, Some(64), "{err}");
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
    let (code, err) = refused_start(&chat_model(), &["--pooling", "mean"]);
    assert_eq!(code, Some(64), "{err}");
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
