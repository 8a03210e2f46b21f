//! aither-infer end to end: the real binary on a small GGUF written by
//! `tests/models/make_gguf.py` (a SentencePiece vocabulary with byte fallback, random
//! weights), driven over HTTP: chat and text completions, streaming, sampling options,
//! concurrent streams, a client that goes away, errors, metrics, and the bad-model corpus.
//! The official `openai` Python client and the embedding model are in `openai_client.rs`.

mod common;

use std::io::{BufRead as _, BufReader};
use std::time::{Duration, Instant};

use common::{chat_model, Worker};
use serde_json::{json, Value};

fn chat_body(content: &str, extra: Value) -> Value {
    let mut v = json!({ "model": "tiny", "messages": [{ "role": "user", "content": content }] });
    for (k, x) in extra.as_object().expect("object") {
        v[k] = x.clone();
    }
    v
}

#[test]
fn health_models_and_a_chat_completion() {
    let w = Worker::start(&chat_model(), &["--parallel", "2", "--ctx", "512"]);
    let (status, health) = w.get("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")), "{health}");
    assert_eq!(health["slots_idle"], 2);
    let (_, models) = w.get("/v1/models");
    assert_eq!(models["data"][0]["id"], "tiny-chat");
    // Each of the two slots has its half of the 512 cells.
    assert_eq!(models["data"][0]["meta"]["n_ctx"], 256);
    assert_eq!(models["data"][0]["meta"]["kv_cells"], 512);

    let (status, r) = w.post("/v1/chat/completions", &chat_body("hello", json!({ "max_tokens": 8, "temperature": 0 })));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    let usage = &r["usage"];
    let completion = usage["completion_tokens"].as_u64().expect("completion tokens");
    assert!((1..=8).contains(&completion), "{r}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(usage["prompt_tokens"].as_u64().expect("prompt") + completion));
    let finish = r["choices"][0]["finish_reason"].as_str().expect("finish");
    assert!(finish == "length" && completion == 8 || finish == "stop", "{r}");
    // The prompt went through the model's own template: "<s>user: hello\nassistant:".
    assert!(usage["prompt_tokens"].as_u64().expect("prompt") > 5, "{r}");
}

#[test]
fn greedy_output_is_deterministic_and_stop_sequences_cut_it() {
    let w = Worker::start(&chat_model(), &["--ctx", "512"]);
    let ask = |extra: Value| {
        w.post(
            "/v1/completions",
            &json!({ "prompt": "the appliance", "max_tokens": 24, "temperature": 0 }).merge(extra),
        )
    };
    let (_, a) = ask(json!({}));
    let (_, b) = ask(json!({}));
    let text = a["choices"][0]["text"].as_str().expect("text").to_string();
    assert_eq!(text, b["choices"][0]["text"].as_str().expect("text"), "greedy twice gives the same text");
    assert!(text.chars().count() >= 6, "enough text to cut: {a}");
    // A stop sequence from the middle of the text: the answer ends just before it.
    let chars: Vec<char> = text.chars().collect();
    let stop: String = chars[3..5].iter().collect();
    let at = text.find(&stop).expect("stop in text");
    let (_, c) = ask(json!({ "stop": [stop] }));
    assert_eq!(c["choices"][0]["text"].as_str(), Some(&text[..at]), "{c}");
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
}

#[test]
fn a_seed_makes_sampling_repeatable() {
    let w = Worker::start(&chat_model(), &["--ctx", "512"]);
    let ask = |seed: u64| {
        let (_, r) = w.post(
            "/v1/completions",
            &json!({ "prompt": "once upon", "max_tokens": 16, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0, "seed": seed }),
        );
        r["choices"][0]["text"].as_str().expect("text").to_string()
    };
    assert_eq!(ask(42), ask(42));
    let others: Vec<String> = (43..47).map(ask).collect();
    assert!(others.iter().any(|t| *t != ask(42)), "different seeds sample differently: {others:?}");
}

#[test]
fn streaming_sends_chunks_then_done_with_usage() {
    let w = Worker::start(&chat_model(), &["--ctx", "512"]);
    let (status, full) =
        w.post("/v1/chat/completions", &chat_body("stream me", json!({ "max_tokens": 12, "temperature": 0 })));
    assert_eq!(status, 200);
    let events = w.stream(
        "/v1/chat/completions",
        &chat_body(
            "stream me",
            json!({ "max_tokens": 12, "temperature": 0, "stream": true, "stream_options": { "include_usage": true } }),
        ),
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).expect("chunk json")).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, full["choices"][0]["message"]["content"].as_str().expect("content"), "same text streamed or not");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], full["choices"][0]["finish_reason"]);
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage["usage"][k], full["usage"][k], "{k}");
    }
    let prompt = full["usage"]["prompt_tokens"].as_u64().expect("prompt tokens");
    assert_eq!(
        usage["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
        Some(prompt - 1),
        "the same prompt again reuses all but its last token"
    );
}

#[test]
fn concurrent_streams_share_batches_and_each_gets_its_own_answer() {
    let w = Worker::start(&chat_model(), &["--parallel", "4", "--ctx", "2048", "--threads", "1"]);
    let prompts: Vec<String> = (0..8).map(|i| format!("request number {i}")).collect();
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            let (_, r) = w.post("/v1/completions", &json!({ "prompt": p, "max_tokens": 16, "temperature": 0 }));
            r["choices"][0]["text"].as_str().expect("text").to_string()
        })
        .collect();
    let (calls, generated) =
        (w.metric("aither_infer_decode_calls_total"), w.metric("aither_infer_generated_tokens_total"));
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let w = &w;
                s.spawn(move || {
                    let events = w.stream(
                        "/v1/completions",
                        &json!({ "prompt": p, "max_tokens": 16, "temperature": 0, "stream": true }),
                    );
                    events
                        .iter()
                        .filter(|e| *e != "[DONE]")
                        .map(|e| {
                            serde_json::from_str::<Value>(e).expect("chunk")["choices"][0]["text"]
                                .as_str()
                                .unwrap_or("")
                                .to_string()
                        })
                        .collect::<String>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(together, alone, "batched greedy decoding gives each request the answer it gets alone");
    // One after another, every generated token costs a decode call; four at a time share them.
    let calls = w.metric("aither_infer_decode_calls_total") - calls;
    let generated = w.metric("aither_infer_generated_tokens_total") - generated;
    assert!(calls < generated * 0.6, "{calls} decode calls for {generated} tokens: the streams did not share batches");
    let (_, h) = w.get("/health");
    assert_eq!(h["slots_processing"], 0, "all slots free again");
}

/// Stream a completion with usage; (finish_reason, completion tokens).
fn streamed_finish(w: &Worker, prompt: &str, max_tokens: usize) -> (String, u64) {
    let events = w.stream(
        "/v1/completions",
        &json!({ "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": true,
                 "stream_options": { "include_usage": true } }),
    );
    let chunks: Vec<Value> =
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).expect("chunk")).collect();
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str().map(str::to_string))
        .expect("a finish reason");
    let tokens = chunks.iter().find_map(|c| c["usage"]["completion_tokens"].as_u64()).expect("usage");
    (finish, tokens)
}

#[test]
fn a_request_beyond_its_slot_is_refused_and_no_stream_is_cut_for_another() {
    let w = Worker::start(&chat_model(), &["--ctx", "512", "--parallel", "2"]);
    // More than the slot's 256 tokens, fewer than all 512 cells: refused, naming the slot.
    let long = "word ".repeat(150);
    let (status, r) = w.post("/v1/completions", &json!({ "prompt": long, "max_tokens": 16 }));
    assert_eq!((status, r["error"]["code"].as_str()), (400, Some("context_length_exceeded")), "{r}");
    let message = r["error"]["message"].as_str().expect("message");
    assert!(message.contains("256 tokens per request") && message.contains("256 of the 512"), "{message}");
    // Two streams that each fill most of their slot run together to their full length.
    let results: Vec<(String, u64)> = std::thread::scope(|s| {
        let a = s.spawn(|| streamed_finish(&w, "first stream", 200));
        let b = s.spawn(|| streamed_finish(&w, "second stream", 200));
        vec![a.join().expect("a"), b.join().expect("b")]
    });
    for (finish, tokens) in &results {
        assert!(finish == "stop" || (finish == "length" && *tokens == 200), "cut short: {results:?}");
    }
}

#[test]
fn a_shared_cache_admits_requests_by_their_reservations_and_never_cuts_one() {
    // One cache of 512 cells for two slots: each request may use all of it, so two that
    // reserve 300 cells each cannot run together; the second waits for the first.
    let w = Worker::start(&chat_model(), &["--ctx", "512", "--parallel", "2", "--kv-unified"]);
    let results: Vec<(String, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let w = &w;
                s.spawn(move || streamed_finish(w, &format!("request {i}"), 290))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (finish, tokens) in &results {
        assert!(finish == "stop" || (finish == "length" && *tokens == 290), "cut short: {results:?}");
    }
    assert_eq!(w.metric("aither_infer_queue_length"), 0.0);
}

#[test]
fn a_client_that_disconnects_frees_its_sequence_at_once() {
    let w = Worker::start(&chat_model(), &["--ctx", "4096", "--threads", "1"]);
    let agent = common::agent();
    let resp = agent
        .post(&w.url("/v1/completions"))
        .header("content-type", "application/json")
        .send(
            json!({ "prompt": "a long story", "max_tokens": 4000, "temperature": 1.0, "seed": 1, "stream": true })
                .to_string(),
        )
        .expect("stream");
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        reader.read_line(&mut line).expect("first event");
    }
    assert_eq!(w.metric("aither_infer_slots_busy"), 1.0);
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.metric("aither_infer_slots_busy") != 0.0 || w.metric("aither_infer_requests_cancelled_total") != 1.0 {
        assert!(Instant::now() < deadline, "the sequence was not freed:\n{}", w.metrics());
        std::thread::sleep(Duration::from_millis(20));
    }
    let generated = w.metric("aither_infer_generated_tokens_total");
    assert!(generated < 4000.0, "generation stopped early: {generated}");
    assert_eq!(w.metric("aither_infer_kv_cache_cells_used"), 0.0, "its cells are free");
    // The worker still serves.
    let (status, _) = w.post("/v1/completions", &json!({ "prompt": "still there", "max_tokens": 2 }));
    assert_eq!(status, 200);
}

#[test]
fn bad_requests_get_openai_errors_naming_the_field() {
    // llama.cpp rounds the context up to a multiple of 256.
    let w = Worker::start(&chat_model(), &["--ctx", "256"]);
    let cases = [
        ("{\"messages\": [", None, "line 1"),
        (r#"{"messages": "hi"}"#, Some("messages"), "invalid request"),
        (r#"{"messages": []}"#, Some("messages"), "empty"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "temperature": 9}"#, Some("temperature"), "outside"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "n": 17}"#, Some("n"), "between 1 and 16"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "frobnicate": 1}"#, Some("frobnicate"), "unknown field"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "functions": []}"#, Some("functions"), "use tools"),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 500}"#,
            Some("messages"),
            "maximum context length is 256",
        ),
    ];
    for (body, param, words) in cases {
        let (status, r) = w.post_raw("/v1/chat/completions", body);
        assert_eq!(status, 400, "{body}: {r}");
        assert_eq!(r["error"]["type"], "invalid_request_error", "{r}");
        assert_eq!(r["error"]["param"].as_str(), param, "{body}: {r}");
        assert!(r["error"]["message"].as_str().expect("message").contains(words), "{body}: {r}");
    }
    let long = "word ".repeat(400);
    let (status, r) = w.post("/v1/completions", &json!({ "prompt": long }));
    assert_eq!((status, r["error"]["code"].as_str()), (400, Some("context_length_exceeded")), "{r}");
    let (status, r) = w.post("/v1/embeddings", &json!({ "input": "x" }));
    assert_eq!(status, 400, "a chat model has no embeddings: {r}");
    let (status, r) = w.get("/v1/nothing");
    assert_eq!((status, r["error"]["code"].as_str()), (404, Some("not_found")));
    assert!(w.metric("aither_infer_requests_total{outcome=\"client_error\"}") >= 8.0, "refusals are counted");
}

#[test]
fn metrics_are_prometheus_text() {
    let w = Worker::start(&chat_model(), &["--parallel", "2", "--ctx", "512"]);
    let _ = w.post("/v1/completions", &json!({ "prompt": "count", "max_tokens": 5, "temperature": 0 }));
    let m = w.metrics();
    for name in [
        "aither_infer_ready 1",
        "aither_infer_slots_total 2",
        "aither_infer_kv_cache_cells_total 512",
        "# TYPE aither_infer_generated_tokens_total counter",
        "# TYPE aither_infer_generation_tokens_per_second gauge",
        "aither_infer_queue_length 0",
    ] {
        assert!(m.contains(name), "{name} missing:\n{m}");
    }
    assert!(w.metric("aither_infer_generated_tokens_total") >= 1.0);
    assert!(w.metric("aither_infer_prompt_tokens_total") >= 2.0);
    assert!(w.metric("aither_infer_kv_cache_cells_used") > 0.0, "the prompt stays cached for the next request");
}

/// ggml's CPU backend is a module per instruction-set level: on this machine the worker loads
/// the best one, and on an x86-64-v2 CPU (Rocky 9's floor: SSE4.2, no AVX), emulated by QEMU's
/// user mode, it loads the SSE4.2 one and still answers instead of dying on an instruction the
/// CPU lacks. Each is reported in /props and /metrics.
#[test]
fn the_cpu_backend_is_the_best_variant_the_cpu_runs() {
    let here = Worker::start(&chat_model(), &["--ctx", "256"]);
    let (_, props) = here.get("/props");
    let variant = props["backends"]["cpu_variant"].as_str().unwrap_or_default().to_string();
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if flags.split_whitespace().any(|f| f == "avx2") {
        assert_eq!(variant, "haswell", "an AVX2 CPU gets the AVX2 variant: {props}");
    }
    assert!(here.metrics().contains(&format!("cpu_variant=\"{variant}\"")), "{}", here.metrics());

    let qemu = ["qemu-x86_64", "-cpu", "Nehalem"];
    assert!(
        std::process::Command::new(qemu[0]).arg("--version").output().is_ok_and(|o| o.status.success()),
        "qemu-x86_64 (QEMU user mode, Debian's qemu-user; scripts/deps.sh installs it) is needed"
    );
    let floor = Worker::start_under(&qemu, &chat_model(), &["--ctx", "256"]);
    let (_, props) = floor.get("/props");
    assert_eq!(props["backends"]["cpu_variant"], "sse42", "{props}");
    let info = props["backends"]["system_info"].as_str().unwrap_or_default();
    assert!(!info.contains("AVX"), "no AVX in the SSE4.2 variant: {info}");
    let (status, r) = floor.post("/v1/completions", &json!({ "prompt": "count", "max_tokens": 4, "temperature": 0 }));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 4, "{r}");
}

#[test]
fn serves_on_a_unix_socket_and_says_ready_to_its_supervisor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("run/infer/tiny.sock");
    let notify = dir.path().join("notify");
    let server = std::os::unix::net::UnixDatagram::bind(&notify).expect("notify socket");
    // Guarded: a failed assertion below still stops the worker.
    let mut child = aither_test_support::Guard(
        std::process::Command::new(env!("CARGO_BIN_EXE_aither-infer"))
            .args(["--model"])
            .arg(chat_model())
            .arg("--listen")
            .arg(format!("unix:{}", sock.display()))
            .args(["--threads", "1", "--ctx", "256"])
            .env("NOTIFY_SOCKET", &notify)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    server.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut said = String::new();
    let mut buf = [0u8; 512];
    while !said.contains("READY=1") {
        let n = server.recv(&mut buf).expect("a notification");
        said.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(said.contains("STATUS=serving tiny-chat"), "{said}");
    let (status, body) = common::unix_request(&sock, "POST", "/v1/completions", r#"{"prompt": "hi", "max_tokens": 3}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"text_completion\""), "{body}");
    nix_kill(&child.0);
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    assert!(!sock.exists(), "the socket is removed");
}

fn nix_kill(child: &std::process::Child) {
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
}

/// The bad-model corpus: each fails before serving, with its own message and exit status.
#[test]
fn bad_models_fail_to_load_with_a_clear_message_and_a_distinct_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read(chat_model()).expect("model");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    };
    let mut wrong_magic = good.clone();
    wrong_magic[..4].copy_from_slice(b"GGML");
    let mut huge_counts = good.clone();
    // tensor count (u64 at byte 8) far beyond what the file can hold
    huge_counts[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut huge_string = good.clone();
    // the first metadata key's length (u64 at byte 24)
    huge_string[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let unknown_arch = {
        let needle = b"llama";
        let at = good.windows(needle.len()).position(|w| w == needle).expect("architecture value");
        let mut v = good.clone();
        v[at..at + 5].copy_from_slice(b"zzzzz");
        v
    };
    let cases: Vec<(std::path::PathBuf, i32, &str)> = vec![
        (write("truncated.gguf", &good[..good.len() / 2]), 65, "truncated"),
        (write("header-only.gguf", &good[..20]), 65, "truncated"),
        (write("wrong-magic.gguf", &wrong_magic), 65, "not a GGUF file"),
        (write("huge-counts.gguf", &huge_counts), 65, "tensor entries"),
        (write("huge-string.gguf", &huge_string), 65, "needs 1099511627776 bytes"),
        (write("empty.gguf", b""), 65, "truncated"),
        (write("unknown-arch.gguf", &unknown_arch), 65, "llama.cpp could not load the model"),
        (dir.path().join("missing.gguf"), 66, "No such file"),
        (dir.path().to_path_buf(), 66, "not a regular file"),
    ];
    for (path, code, words) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aither-infer"))
            .arg("--model")
            .arg(&path)
            .args(["--listen", &format!("unix:{}", dir.path().join("s.sock").display()), "--threads", "1"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{}: {err}", path.display());
        assert!(err.contains(words), "{}: wanted {words:?} in:\n{err}", path.display());
        assert!(err.contains(&path.display().to_string()), "the message names the file: {err}");
    }
}

trait Merge {
    fn merge(self, other: Value) -> Value;
}

impl Merge for Value {
    fn merge(mut self, other: Value) -> Value {
        for (k, v) in other.as_object().expect("object") {
            self[k] = v.clone();
        }
        self
    }
}
