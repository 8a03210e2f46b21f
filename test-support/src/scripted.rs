//! A scripted stand-in for the gateway: an OpenAI-compatible chat endpoint on a Unix socket
//! that answers each request with the next turn of a script (tool calls, text, an error or a
//! stall) and keeps every request it received, so tests of agents and workflows are
//! deterministic without a model. Embedding requests get bag-of-words vectors ([`embedding`]),
//! so a search finds the passages that share the query's words.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// One answer of the script.
#[derive(Debug, Clone)]
pub enum Turn {
    /// Call these tools: `(name, arguments)`.
    Tools(Vec<(String, Value)>),
    /// Answer with text (no tool call): the model is done.
    Text(String),
    /// Answer with this HTTP status and an OpenAI error message.
    Error(u16, String),
    /// Answer 400 `context_length_exceeded`: the prompt and `max_tokens` do not fit.
    ContextFull,
    /// Say nothing for this long, then answer the next turn.
    Stall(Duration),
}

impl Turn {
    /// One tool call.
    pub fn call(name: &str, arguments: Value) -> Turn {
        Turn::Tools(vec![(name.to_string(), arguments)])
    }

    pub fn text(t: &str) -> Turn {
        Turn::Text(t.to_string())
    }
}

/// Tokens each answer claims to have generated.
pub const COMPLETION_TOKENS: u64 = 10;

/// The stand-in, serving until the test process ends.
#[derive(Debug)]
pub struct ScriptedModel {
    pub socket: PathBuf,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl ScriptedModel {
    /// Listen on `socket` and answer with `turns`, in order (500 once they run out).
    pub fn start(socket: &Path, turns: Vec<Turn>) -> ScriptedModel {
        let _ = std::fs::remove_file(socket);
        let listener =
            std::os::unix::net::UnixListener::bind(socket).unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || serve(listener.incoming(), turns, &seen, None));
        ScriptedModel { socket: socket.to_path_buf(), requests }
    }

    /// The same on TCP, in the foreground (the `aither-scripted-model` binary): each request
    /// body is also appended to `log` as a JSON line.
    pub fn serve_tcp(listener: &std::net::TcpListener, turns: Vec<Turn>, log: Option<&Path>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        serve(listener.incoming(), turns, &seen, log);
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// What the tool calls answered, in order, as the model saw them in `request`.
pub fn tool_answers(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Dimensions of the stand-in's embeddings.
pub const EMBEDDING_DIM: usize = 64;

/// The stand-in's embedding of a text: its lowercase words hashed into
/// [`EMBEDDING_DIM`] counts, so texts sharing words are near (enough for tests of search).
pub fn embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; EMBEDDING_DIM];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
        let h = word.to_lowercase().bytes().fold(5381u64, |h, b| h.wrapping_mul(33) ^ u64::from(b));
        v[usize::try_from(h % EMBEDDING_DIM as u64).unwrap_or(0)] += 1.0;
    }
    v
}

fn embeddings(request: &Value) -> Value {
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embedding(t)}))
        .collect();
    json!({"object": "list", "model": request["model"], "data": data, "usage": {"prompt_tokens": 0, "total_tokens": 0}})
}

/// Answer each connection with the next turn (an embeddings request is answered at once,
/// without taking a turn).
fn serve<S: std::io::Read + std::io::Write>(
    incoming: impl Iterator<Item = std::io::Result<S>>,
    turns: Vec<Turn>,
    seen: &Mutex<Vec<Value>>,
    log: Option<&Path>,
) {
    let mut turns = turns.into_iter();
    let mut n = 0;
    for conn in incoming {
        let Ok(mut conn) = conn else { continue };
        let Some(body) = read_request(&mut conn) else { continue };
        if body.get("input").is_some() {
            let text = embeddings(&body).to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            continue;
        }
        if let Some(log) = log {
            let line = format!("{body}\n");
            let _ = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(log)
                .and_then(|mut f| f.write_all(line.as_bytes()));
        }
        seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(body.clone());
        n += 1;
        let mut turn = turns.next();
        while let Some(Turn::Stall(d)) = turn {
            std::thread::sleep(d);
            turn = turns.next();
        }
        let (status, answer) = match turn {
            Some(Turn::Tools(calls)) => (200, completion(n, &body, None, &calls)),
            Some(Turn::Text(t)) => (200, completion(n, &body, Some(&t), &[])),
            Some(Turn::Error(s, m)) => (s, json!({"error": {"message": m, "type": "invalid_request_error"}})),
            Some(Turn::ContextFull) => (
                400,
                json!({"error": {"message": format!("this model's maximum context length is 4096 tokens per request; the request asks {}", body["max_tokens"]),
                    "type": "invalid_request_error", "code": "context_length_exceeded"}}),
            ),
            Some(Turn::Stall(_)) | None => (500, json!({"error": {"message": "the script has no more turns"}})),
        };
        let text = answer.to_string();
        let _ = write!(
            conn,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    }
}

/// A script as JSON: `[{"tools": [["read_file", {"path": "…"}]]}, {"text": "done"},
/// {"error": [404, "…"]}, {"stall_ms": 3000}]`.
pub fn parse_script(text: &str) -> Result<Vec<Turn>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let turns = doc.as_array().ok_or("a script is a JSON array of turns")?;
    turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let bad = || format!("turn {i}: {t}");
            if let Some(calls) = t.get("tools").and_then(Value::as_array) {
                let calls = calls
                    .iter()
                    .map(|c| match c.as_array().map(Vec::as_slice) {
                        Some([Value::String(name), args]) => Ok((name.clone(), args.clone())),
                        _ => Err(bad()),
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(Turn::Tools(calls))
            } else if let Some(text) = t.get("text").and_then(Value::as_str) {
                Ok(Turn::Text(text.to_string()))
            } else if let Some(ms) = t.get("stall_ms").and_then(Value::as_u64) {
                Ok(Turn::Stall(std::time::Duration::from_millis(ms)))
            } else if let Some([Value::Number(s), Value::String(m)]) =
                t.get("error").and_then(Value::as_array).map(Vec::as_slice)
            {
                Ok(Turn::Error(s.as_u64().and_then(|s| u16::try_from(s).ok()).ok_or_else(bad)?, m.clone()))
            } else {
                Err(bad())
            }
        })
        .collect()
}

fn read_request(conn: &mut impl std::io::Read) -> Option<Value> {
    let mut r = std::io::BufReader::new(conn);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn completion(n: usize, request: &Value, text: Option<&str>, calls: &[(String, Value)]) -> Value {
    let tool_calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"id": format!("call_{n}_{i}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": text});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let prompt = request.to_string().len() as u64 / 4;
    json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "model": request["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": COMPLETION_TOKENS, "total_tokens": prompt + COMPLETION_TOKENS}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_reads_from_json_and_bad_turns_are_named() {
        let turns = parse_script(
            r#"[{"tools": [["read_file", {"path": "a"}]]}, {"stall_ms": 5}, {"text": "done"}, {"error": [404, "no"]}]"#,
        )
        .expect("script");
        assert!(matches!(&turns[0], Turn::Tools(c) if c[0].0 == "read_file" && c[0].1["path"] == "a"));
        assert!(matches!(turns[1], Turn::Stall(d) if d == std::time::Duration::from_millis(5)));
        assert!(matches!(&turns[2], Turn::Text(t) if t == "done"));
        assert!(matches!(&turns[3], Turn::Error(404, m) if m == "no"));
        assert!(parse_script(r#"[{"speak": 1}]"#).expect_err("bad").starts_with("turn 0: "));
    }
}
