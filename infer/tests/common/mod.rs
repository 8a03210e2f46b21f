//! Test models and a worker under test.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use aither_test_support::{chat_model, embedding_model, python};

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A running aither-infer on a TCP port of loopback; killed when dropped.
pub struct Worker {
    child: Child,
    pub port: u16,
    agent: ureq::Agent,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Worker {
    pub fn start(model: &Path, extra: &[&str]) -> Worker {
        Worker::start_under(&[], model, extra)
    }

    /// Start the worker as the argument of `wrapper` (an emulator, for one).
    pub fn start_under(wrapper: &[&str], model: &Path, extra: &[&str]) -> Worker {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("worker.log");
        let port = free_port();
        let mut args: Vec<String> =
            vec!["--model".into(), model.display().to_string(), "--listen".into(), format!("tcp:127.0.0.1:{port}")];
        if !extra.contains(&"--threads") {
            args.extend(["--threads".into(), "1".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let program = env!("CARGO_BIN_EXE_aither-infer");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = command
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn aither-infer");
        let w = Worker { child, port, agent: agent(), log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut r) = w.agent.get(&w.url("/health")).call() {
                if r.status() == 200 {
                    break;
                }
                let _ = r.body_mut().read_to_string();
            }
            assert!(Instant::now() < deadline, "aither-infer did not become ready:\n{}", w.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        w
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut r = self.agent.get(&self.url(path)).call().expect("GET");
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().expect("body");
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string())
    }

    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let mut r =
            self.agent.post(&self.url(path)).header("content-type", "application/json").send(body).expect("POST");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}\n{}", self.log())),
        )
    }

    /// The `data:` payloads of a streamed response.
    pub fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let r = self
            .agent
            .post(&self.url(path))
            .header("content-type", "application/json")
            .send(body.to_string())
            .expect("POST");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
        let reader = BufReader::new(r.into_body().into_reader());
        reader.lines().map(|l| l.expect("line")).filter_map(|l| l.strip_prefix("data: ").map(str::to_string)).collect()
    }

    pub fn metrics(&self) -> String {
        self.agent.get(&self.url("/metrics")).call().expect("metrics").body_mut().read_to_string().expect("body")
    }

    /// One sample of the Prometheus text, by its full name (labels included).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }
}

/// One HTTP/1.1 request over a Unix socket (`Connection: close`); status and body.
pub fn unix_request(sock: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = aither_test_support::http::unix(sock, &aither_test_support::http::request_text(method, path, "", body));
    (r.status, r.body)
}

/// A chat request asking `content`, with `extra`'s fields.
#[allow(dead_code)] // Not every test file asks chats.
pub fn ask(content: &str, extra: Value) -> Value {
    let mut body = json!({ "messages": [{ "role": "user", "content": content }], "max_tokens": 300 });
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

/// Two tools: `add` (two integers) and `get_weather` (a city of at most 12 characters).
#[allow(dead_code)]
pub fn tools() -> Value {
    json!([
        { "type": "function", "function": { "name": "add", "description": "add two integers",
          "parameters": { "type": "object", "properties": { "a": { "type": "integer" }, "b": { "type": "integer" } },
                          "required": ["a", "b"], "additionalProperties": false } } },
        { "type": "function", "function": { "name": "get_weather",
          "parameters": { "type": "object", "properties": { "city": { "type": "string", "maxLength": 12 } },
                          "required": ["city"], "additionalProperties": false } } },
    ])
}

/// `base` with `field` set to `value`.
#[allow(dead_code)]
pub fn merge(base: &Value, field: &str, value: Value) -> Value {
    let mut b = base.clone();
    b[field] = value;
    b
}

/// The `data:` payloads of a stream, as JSON (`[DONE]` left out).
#[allow(dead_code)]
pub fn chunks(w: &Worker, path: &str, body: &Value) -> Vec<Value> {
    w.stream(path, body).iter().filter(|l| *l != "[DONE]").map(|l| serde_json::from_str(l).expect("json")).collect()
}

/// aither-infer started on `model` with `args` that it must refuse before serving: its exit
/// status and what it printed.
#[allow(dead_code)]
pub fn refused_start(model: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aither-infer"))
        .arg("--model")
        .arg(model)
        .args(["--listen", "tcp:127.0.0.1:1", "--threads", "1"])
        .args(args)
        .output()
        .expect("run");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}
