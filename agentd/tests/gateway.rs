//! The gateway end to end in development mode: agentd with real aither-infer workers on the
//! test models, driven over HTTP as a client would — routing by model, a pinned model
//! loaded at boot, a dormant one started by its first request and unloaded when idle,
//! streams passed through, API keys, the official openai client, an invalid model reported
//! and not restarted, the cloud fallback (a stand-in server on loopback), and `cpu-only`
//! sending chat to the cloud first with the local model as its fallback.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Bed;
use serde_json::{json, Value};

use aither_test_support::{bin, http, python, repo, test_model};

/// One raw exchange on loopback, the request as given; the whole answer as text.
fn raw_tcp(port: u16, request: &str) -> String {
    let r = http::tcp(port, request);
    let head: String = r.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    format!("HTTP/1.1 {} \r\n{head}\r\n{}", r.status, r.body)
}

/// The worker binary, built beside this test by `cargo test --workspace`.
fn infer_binary() -> PathBuf {
    bin("aither-infer")
}

/// What the stand-in cloud saw.
#[derive(Debug, Default)]
struct CloudLog {
    requests: Vec<(String, String, Value)>,
}

/// An OpenAI-compatible stand-in on loopback: answers every POST with a completion that
/// says it came from the cloud, or 500 while `failing` is set.
fn cloud_standin() -> (u16, Arc<Mutex<CloudLog>>, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let log = Arc::new(Mutex::new(CloudLog::default()));
    let failing = Arc::new(AtomicBool::new(false));
    let (log2, failing2) = (log.clone(), failing.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = r.read_line(&mut request_line);
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
            log2.lock().expect("log").requests.push((path, auth, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let (status, answer) = if failing2.load(Ordering::SeqCst) {
                ("500 Internal Server Error", json!({ "error": { "message": "overloaded" } }))
            } else {
                (
                    "200 OK",
                    json!({ "id": "cloud-1", "object": "chat.completion", "model": "cloud-model",
                    "choices": [{ "index": 0, "message": { "role": "assistant", "content": "from the cloud" }, "finish_reason": "stop" }],
                    "usage": { "prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4 } }),
                )
            };
            let text = answer.to_string();
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
        }
    });
    (port, log, failing)
}

struct Client {
    agent: ureq::Agent,
    base: String,
    key: Option<String>,
}

impl Client {
    fn post(&self, path: &str, body: &Value) -> (u16, String, Value) {
        let mut req = self.agent.post(&format!("{}{path}", self.base)).header("content-type", "application/json");
        if let Some(k) = &self.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let mut r = req.send(body.to_string()).expect("POST");
        let status = r.status().as_u16();
        let route = r.headers().get("x-aither-route").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = r.body_mut().read_to_string().expect("body");
        (status, route, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn get(&self, path: &str) -> (u16, String, Value) {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let mut r = req.call().expect("GET");
        let status = r.status().as_u16();
        let route = r.headers().get("x-aither-route").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = r.body_mut().read_to_string().expect("body");
        (status, route, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let mut req = self.agent.post(&format!("{}{path}", self.base)).header("content-type", "application/json");
        if let Some(k) = &self.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let r = req.send(body.to_string()).expect("POST");
        assert_eq!(r.status().as_u16(), 200);
        BufReader::new(r.into_body().into_reader())
            .lines()
            .map(|l| l.expect("line"))
            .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
            .collect()
    }
}

/// The fixture machine, with this machine's two cores, so workers get one thread each.
fn small_profile(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/profiles/profile-1gpu.json");
    let mut p: Value = serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("json");
    p["cpu"]["physical_cores"] = json!(2);
    p["cpu"]["logical_cores"] = json!(2);
    let out = dir.join("profile-2core.json");
    std::fs::write(&out, p.to_string()).expect("write");
    out
}

fn link(model: &Path, dest: &Path) {
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    let _ = std::fs::remove_file(dest);
    std::os::unix::fs::symlink(model, dest).expect("symlink");
}

#[test]
fn the_gateway_routes_starts_unloads_and_falls_back() {
    let (chat, embed) = (test_model("tiny-chat.gguf"), test_model("all-MiniLM-L6-v2.gguf"));
    let bed = Bed::new();
    let (cloud_port, cloud_log, cloud_failing) = cloud_standin();
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let models = bed.root().join("var/lib/aither/models");
    let keys = bed.root().join("etc/aither");
    bed.write("etc/aither/gateway.key", "gw-secret\n");
    bed.write("etc/aither/cloud.key", "cloud-secret\n");
    bed.write(
        "etc/aither/agentd.toml",
        &format!(
            "[gateway]\nlisten = [\"127.0.0.1:{port}\", \"unix:/run/aither/gateway.sock\"]\napi_key_file = \"{}\"\n\
             keep_alive_seconds = 2\nstart_timeout_seconds = 120\n\
             [infer]\nbinary = \"{}\"\nmodel_dir = \"{}\"\n\
             [cloud]\nendpoint = \"http://127.0.0.1:{cloud_port}/v1\"\napi_key_file = \"{}\"\n",
            keys.join("gateway.key").display(),
            infer_binary().display(),
            models.display(),
            keys.join("cloud.key").display()
        ),
    );
    // minimal: the chat model pinned (loaded at boot), the embedding model on demand.
    bed.write("etc/aither/appliance.toml", "preset = \"minimal\"\n");
    link(&chat, &models.join("Qwen2.5-14B-Instruct-Q4_K_M.gguf"));
    link(&embed, &models.join("nomic-embed-text-v1.5.Q8_0.gguf"));
    let _daemon = bed.agentd_with_profile(&small_profile(bed.dir()));
    bed.wait_up(30);
    let chat_unit = bed.wait_state("infer-qwen2.5-14b-instruct", "running", 120);
    assert!(chat_unit["status"].as_str().is_some_and(|s| s.contains("serving qwen2.5-14b-instruct")), "{chat_unit}");
    assert_eq!(bed.unit("infer-nomic-embed-text-v1.5")["state"], "dormant");

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(180)))
        .build()
        .into();
    let tcp = Client { agent: agent.clone(), base: format!("http://127.0.0.1:{port}"), key: Some("gw-secret".into()) };
    let anonymous = Client { agent: agent.clone(), base: tcp.base.clone(), key: None };
    let wrong = Client { agent: agent.clone(), base: tcp.base.clone(), key: Some("gw-secreT".into()) };

    // Keys on TCP.
    let ask =
        json!({ "model": "qwen2.5-14b-instruct", "messages": [{ "role": "user", "content": "hi" }], "max_tokens": 4 });
    for c in [&anonymous, &wrong] {
        let (status, _, body) = c.post("/v1/chat/completions", &ask);
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_api_key")), "{body}");
    }

    // A pinned model, by name and by default.
    let (status, route, body) = tcp.post("/v1/chat/completions", &ask);
    assert_eq!((status, route.as_str()), (200, "local:qwen2.5-14b-instruct"), "{body}\n{}", bed.log());
    assert_eq!(body["model"], "qwen2.5-14b-instruct");
    assert!(body["usage"]["completion_tokens"].as_u64().is_some_and(|n| n >= 1), "{body}");
    let (status, route, _) =
        tcp.post("/v1/chat/completions", &json!({ "messages": [{ "role": "user", "content": "x" }], "max_tokens": 2 }));
    assert_eq!((status, route.as_str()), (200, "local:qwen2.5-14b-instruct"), "no model: the chat model");

    // A stream passes through as events.
    let events = tcp.stream(
        "/v1/chat/completions",
        &json!({ "model": "chat", "stream": true, "max_tokens": 5,
        "messages": [{ "role": "user", "content": "stream" }] }),
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    assert!(events.len() >= 3, "{events:?}");

    // agentd samples the running workers' figures: the tokens just generated show as a rate.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let figures = loop {
        let doc: Value = serde_json::from_str(&bed.ok(&["--json", "inference"])).expect("json");
        let chat = doc["workers"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["unit"] == "infer-qwen2.5-14b-instruct"))
            .cloned();
        let generating = chat
            .as_ref()
            .and_then(|c| c["samples"].as_array())
            .is_some_and(|s| s.iter().any(|s| s["generated_per_second"].as_f64().is_some_and(|r| r > 0.0)));
        if generating || std::time::Instant::now() > deadline {
            break chat;
        }
        // Something to count between two samples.
        tcp.post("/v1/chat/completions", &ask);
        std::thread::sleep(Duration::from_secs(1));
    };
    let figures = figures.expect("the chat worker is sampled");
    let last = figures["samples"].as_array().and_then(|s| s.last()).cloned().expect("a sample");
    assert_eq!(
        (figures["model"].as_str(), last["slots_total"].as_u64().is_some_and(|n| n >= 1)),
        (Some("qwen2.5-14b-instruct"), true),
        "{figures}"
    );
    assert!(last["kv_cells_total"].as_u64().is_some_and(|n| n > 0), "{figures}");
    assert!(
        figures["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .any(|s| s["generated_per_second"].as_f64().is_some_and(|r| r > 0.0)),
        "{figures}"
    );
    let table = bed.ok(&["inference"]);
    assert!(table.contains("qwen2.5-14b-instruct") && table.contains("TOKENS/S"), "{table}");

    // llama-server's own routes and the Responses API go to the chat model too.
    let chat_route = "local:qwen2.5-14b-instruct";
    let (status, route, body) = tcp.post("/completion", &json!({ "prompt": "ab", "n_predict": 2 }));
    assert_eq!((status, route.as_str()), (200, chat_route), "{body}");
    assert_eq!(body["tokens_predicted"], 2, "{body}");
    let (status, _, body) = tcp.post("/tokenize", &json!({ "content": "hello" }));
    assert!(status == 200 && body["tokens"].as_array().is_some_and(|t| !t.is_empty()), "{body}");
    let ask = json!({ "messages": [{ "role": "user", "content": "count me" }] });
    let (status, route, body) = tcp.post("/v1/chat/completions/input_tokens", &ask);
    assert_eq!((status, route.as_str()), (200, chat_route), "{body}");
    assert!(body["input_tokens"].as_u64().is_some_and(|n| n > 0), "{body}");
    let (status, route, body) = tcp.get("/props?model=chat");
    assert_eq!((status, route.as_str(), body["total_slots"].is_u64()), (200, chat_route, true), "{body}");
    let (status, route, body) = tcp.post("/v1/responses", &json!({ "input": "hi", "max_output_tokens": 3 }));
    assert_eq!((status, route.as_str(), body["object"].as_str()), (200, chat_route, Some("response")), "{body}");

    // The dormant embedding model starts on the first request, which waits for it.
    let (status, route, body) = tcp.post("/v1/embeddings", &json!({ "input": ["hello world", "bye"] }));
    assert_eq!((status, route.as_str()), (200, "local:nomic-embed-text-v1.5"), "{body}\n{}", bed.log());
    assert_eq!(body["data"][0]["embedding"].as_array().map(Vec::len), Some(384));
    assert_eq!(bed.unit("infer-nomic-embed-text-v1.5")["state"], "running");
    // ... and is unloaded once idle past the keep-alive; the pinned chat model stays.
    bed.wait_state("infer-nomic-embed-text-v1.5", "dormant", 30);
    assert_eq!(bed.unit("infer-qwen2.5-14b-instruct")["state"], "running", "pinned models are never unloaded");

    // The Unix socket needs no key; its permissions guard it.
    let sock = bed.dir().join("xdg/aither/gateway.sock");
    let r = http::unix(
        &sock,
        &http::request_text("POST", "/v1/completions", "", &json!({ "prompt": "ab", "max_tokens": 2 }).to_string()),
    );
    let (status, body) = (r.status, r.body);
    assert_eq!(status, 200, "{body}");

    // The official openai client, through the gateway with its key.
    let out = Command::new(python())
        .arg(repo().join("infer/tests/openai_client.py"))
        .arg(format!("{}/v1", tcp.base))
        .args(["qwen2.5-14b-instruct", "--api-key", "gw-secret"])
        .output()
        .expect("python");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // A model that is not here goes to the cloud, with the cloud's key.
    let (status, route, body) = tcp
        .post("/v1/chat/completions", &json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "x" }] }));
    assert_eq!((status, route.as_str()), (200, "cloud"), "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from the cloud");
    {
        let log = cloud_log.lock().expect("log");
        let (path, auth, sent) = log.requests.last().expect("the cloud was asked");
        assert_eq!((path.as_str(), auth.as_str()), ("/v1/chat/completions", "Bearer cloud-secret"));
        assert_eq!(sent["model"], "gpt-4o", "the client's model passes through");
    }

    // An invalid model file: reported, not restarted, and the cloud serves instead.
    let bad = bed.dir().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\0\0\0 not really a model").expect("bad");
    link(&bad, &models.join("nomic-embed-text-v1.5.Q8_0.gguf"));
    let (status, route, _) = tcp.post("/v1/embeddings", &json!({ "input": "x" }));
    assert_eq!((status, route.as_str()), (200, "cloud"), "the invalid local model falls back");
    let worker = bed.wait_state("infer-nomic-embed-text-v1.5", "invalid", 20);
    assert_eq!(worker["restarts"], 0, "{worker}");
    assert!(worker["detail"].as_str().is_some_and(|d| d.contains("exited with status 65")), "{worker}");
    let logs = bed.ok(&["logs", "infer-nomic-embed-text-v1.5"]);
    assert!(logs.contains("truncated"), "the worker says what is wrong: {logs}");

    // Without a cloud that answers, the failure names every reason.
    cloud_failing.store(true, Ordering::SeqCst);
    let (status, _, body) = tcp.post("/v1/embeddings", &json!({ "input": "x" }));
    assert_eq!(status, 503, "{body}");
    let msg = body["error"]["message"].as_str().expect("message");
    assert!(msg.contains("invalid") && msg.contains("500"), "{msg}");
    cloud_failing.store(false, Ordering::SeqCst);

    // cpu-only: chat goes to the cloud first; when the cloud fails, the local model serves.
    link(&chat, &models.join("Phi-3.5-mini-instruct-Q4_K_M.gguf"));
    link(&embed, &models.join("nomic-embed-text-v1.5.f16.gguf"));
    let out = bed.ok(&["preset", "set", "cpu-only"]);
    assert!(out.contains("cpu-only pinned"), "{out}");
    let chat_ask = json!({ "messages": [{ "role": "user", "content": "hi" }], "max_tokens": 3 });
    let (status, route, _) = tcp.post("/v1/chat/completions", &chat_ask);
    assert_eq!((status, route.as_str()), (200, "cloud"), "cpu-only asks the cloud first");
    cloud_failing.store(true, Ordering::SeqCst);
    let (status, route, body) = tcp.post("/v1/chat/completions", &chat_ask);
    assert_eq!((status, route.as_str()), (200, "local:phi-3.5-mini-instruct"), "{body}\n{}", bed.log());
}

#[test]
fn a_request_for_a_model_that_nobody_serves_lists_the_models() {
    let bed = Bed::new();
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let models = bed.root().join("var/lib/aither/models");
    bed.write(
        "etc/aither/agentd.toml",
        &format!("[gateway]\nlisten = [\"127.0.0.1:{port}\"]\n[infer]\nmodel_dir = \"{}\"\n", models.display()),
    );
    let _daemon = bed.agentd();
    bed.wait_up(30);
    // Development mode made the gateway key under the configuration root.
    let key = std::fs::read_to_string(bed.root().join("etc/aither/gateway.key")).expect("the dev key");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let c = Client { agent, base: format!("http://127.0.0.1:{port}"), key: Some(key.trim().to_string()) };
    let (status, _, body) = c.post("/v1/chat/completions", &json!({ "model": "nope", "messages": [] }));
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("model_not_found")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("mistral-small-24b-instruct-2501")), "{body}");
    // The planned model's file is missing: the error says how to get it.
    let (status, _, body) =
        c.post("/v1/chat/completions", &json!({ "messages": [{ "role": "user", "content": "x" }] }));
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("is missing: download")), "{body}");
    let (status, _, body) = c.post("/v1/chat/completions", &json!({ "messages": "not a list" }));
    assert_eq!(status, 503, "the worker, not the gateway, validates the body: {body}");
    let mut r = c
        .agent
        .get(&format!("{}/v1/models", c.base))
        .header("authorization", format!("Bearer {}", key.trim()))
        .call()
        .expect("models");
    let listed: Value = serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json");
    let ids: Vec<&str> = listed["data"].as_array().expect("list").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["mistral-small-24b-instruct-2501", "nomic-embed-text-v1.5"]);
    assert_eq!(listed["data"][0]["meta"]["state"], "missing");

    // The front door: a key on TCP, loopback included; only this machine's names in Host;
    // JSON bodies only; no CORS headers; its counters at /metrics.
    let anonymous = Client { agent: c.agent.clone(), base: c.base.clone(), key: None };
    let (status, _, body) = anonymous.post("/v1/chat/completions", &json!({ "messages": [] }));
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_api_key")), "{body}");
    let auth = format!("Authorization: Bearer {}\r\n", key.trim());
    let rebound =
        raw_tcp(port, &format!("GET /v1/models HTTP/1.1\r\nHost: attacker.example\r\n{auth}Connection: close\r\n\r\n"));
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let form = raw_tcp(
        port,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: text/plain\r\n\
             Content-Length: 2\r\nOrigin: http://attacker.example\r\nConnection: close\r\n\r\n{{}}"
        ),
    );
    assert!(form.starts_with("HTTP/1.1 415"), "{form}");
    assert!(!form.to_ascii_lowercase().contains("access-control-"), "{form}");
    let metrics =
        raw_tcp(port, &format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"));
    assert!(metrics.contains("aither_gateway_http_connections_accepted_total"), "{metrics}");

    // aitherctl models: list, pull from a directory (a USB stick), remove.
    let list = bed.ok(&["models", "list"]);
    assert!(list.contains("nomic-embed-text-v1.5") && list.contains("missing"), "{list}");
    let usb = bed.dir().join("usb");
    std::fs::create_dir_all(&usb).expect("usb");
    std::fs::copy(test_model("all-MiniLM-L6-v2.gguf"), usb.join("nomic-embed-text-v1.5.f16.gguf")).expect("copy");
    let out = bed.ok(&["models", "pull", "--from", &usb.display().to_string(), "nomic-embed-text-v1.5"]);
    assert!(out.contains("pulled") && out.contains("reloaded"), "{out}");
    assert!(models.join("nomic-embed-text-v1.5.f16.gguf").is_file());
    let doc: Value = serde_json::from_str(&bed.ok(&["--json", "models", "list"])).expect("json");
    assert_eq!(doc["models"][1]["present"], true, "{doc}");
    assert_eq!(doc["models"][1]["verification"], "recorded", "no SHA-256 in the catalog: the first one is recorded");
    assert_ne!(bed.unit("infer-nomic-embed-text-v1.5")["state"], "blocked", "the reload unblocked its worker");
    let out = bed.ctl(&["models", "pull", "--from", &usb.display().to_string(), "no-such-model"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the catalog has:"), "{out:?}");
    let out = bed.ok(&["models", "remove", "nomic-embed-text-v1.5"]);
    assert!(out.contains("removed"), "{out}");
    assert!(!models.join("nomic-embed-text-v1.5.f16.gguf").exists());
    let checksums = std::fs::read_to_string(models.join("checksums.json")).expect("checksums");
    assert!(!checksums.contains("nomic-embed-text-v1.5.f16.gguf"), "its record went with it: {checksums}");
    assert_eq!(bed.unit("infer-nomic-embed-text-v1.5")["state"], "blocked");
    let out = bed.ctl(&["models", "remove", "no-such-model"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model \"no-such-model\" in the plan"), "{out:?}");
}
