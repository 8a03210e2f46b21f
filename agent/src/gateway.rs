//! The agent's one way to the model: the gateway's Unix socket (no key: the socket's group and
//! SELinux decide who may connect), one HTTP/1.1 chat completion per turn, bounded in time and
//! in the size of the answer. The eval (`aitherctl eval`) runs the same steps through the
//! gateway's TCP listener with its key, or against another OpenAI-compatible server
//! ([`Endpoint::Http`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long to wait before asking again after a 503.
const RETRY: Duration = Duration::from_secs(1);

/// The largest answer read from the gateway.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Where the model is served.
#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The gateway's Unix socket: no key (its group and SELinux decide who connects).
    Unix(PathBuf),
    /// An OpenAI-compatible server over plain HTTP on TCP (the gateway's TCP listener, or
    /// another server), with the bearer key it wants.
    Http { addr: SocketAddr, key: Option<String> },
}

impl std::fmt::Debug for Endpoint {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Http { addr, .. } => write!(f, "http://{addr}"),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    /// `unix:/path`, or `http://HOST:PORT` with an optional trailing `/` or `/v1` (an IP
    /// address: no name is resolved). The key is given apart.
    fn from_str(s: &str) -> Result<Endpoint, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a Unix socket is an absolute path (unix:/run/aither/gateway.sock)"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("http://") else {
            return Err(format!("{s:?}: an endpoint is unix:/PATH or http://ADDRESS:PORT (plain HTTP; no TLS)"));
        };
        let host = rest.trim_end_matches('/').trim_end_matches("/v1");
        let addr = host.parse::<SocketAddr>().map_err(|e| format!("{s:?}: {host:?} is not IP:PORT ({e})"))?;
        Ok(Endpoint::Http { addr, key: None })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot reach the gateway at {socket}: {message}")]
    Connect { socket: String, message: String },
    #[error("the gateway did not answer in time")]
    Timeout,
    #[error("the gateway answered {status}: {message}")]
    Refused { status: u16, message: String },
    /// The prompt and the tokens asked for do not fit the model's context (400,
    /// `context_length_exceeded`, as OpenAI, vLLM and aither-infer say it).
    #[error("the gateway answered 400: {message}")]
    ContextFull { message: String },
    #[error("the gateway's answer is not a chat completion: {0}")]
    Protocol(String),
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments, as JSON text (as OpenAI sends them).
    pub arguments: String,
}

/// One turn's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The assistant message as the gateway gave it, to go back into the history.
    pub message: Value,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The gateway (or another OpenAI-compatible server) at its endpoint.
#[derive(Debug)]
pub struct Gateway {
    endpoint: Endpoint,
    runtime: tokio::runtime::Runtime,
}

impl Gateway {
    pub fn new(endpoint: Endpoint) -> std::io::Result<Gateway> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Gateway { endpoint, runtime })
    }

    /// Where it talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `POST /v1/chat/completions` with `request`; the answer within `timeout`.
    pub fn chat(&self, request: &Value, timeout: Duration) -> Result<Reply, GatewayError> {
        let body = serde_json::to_vec(request).map_err(|e| GatewayError::Protocol(e.to_string()))?;
        let (status, answer) = self.post_patiently("/v1/chat/completions", &body, timeout)?;
        let doc: Value =
            serde_json::from_slice(&answer).map_err(|e| GatewayError::Protocol(format!("{status}, not JSON ({e})")))?;
        if status != 200 {
            return Err(refusal(status, &doc, &answer));
        }
        parse_reply(&doc)
    }

    /// `POST /v1/embeddings` of `texts` with `model`; one vector per text, in order.
    pub fn embed(&self, model: &str, texts: &[String], timeout: Duration) -> Result<Vec<Vec<f32>>, GatewayError> {
        let body = serde_json::to_vec(&serde_json::json!({"model": model, "input": texts}))
            .map_err(|e| GatewayError::Protocol(e.to_string()))?;
        let (status, answer) = self.post_patiently("/v1/embeddings", &body, timeout)?;
        let doc: Value =
            serde_json::from_slice(&answer).map_err(|e| GatewayError::Protocol(format!("{status}, not JSON ({e})")))?;
        if status != 200 {
            return Err(refusal(status, &doc, &answer));
        }
        let data = doc.get("data").and_then(Value::as_array).ok_or_else(|| GatewayError::Protocol("no data".into()))?;
        let mut out = vec![Vec::new(); texts.len()];
        for item in data {
            let i = item.get("index").and_then(Value::as_u64).and_then(|i| usize::try_from(i).ok());
            let v = item.get("embedding").and_then(Value::as_array);
            let (Some(i), Some(v)) = (i, v) else {
                return Err(GatewayError::Protocol(format!("an embedding without index or vector: {item}")));
            };
            #[allow(clippy::cast_possible_truncation)]
            let v: Vec<f32> = v.iter().filter_map(Value::as_f64).map(|x| x as f32).collect();
            *out.get_mut(i).ok_or_else(|| GatewayError::Protocol(format!("embedding index {i} out of range")))? = v;
        }
        if out.iter().any(Vec::is_empty) {
            return Err(GatewayError::Protocol("an input got no embedding".into()));
        }
        Ok(out)
    }

    /// `GET path` (`/props`): its JSON answer within `timeout`.
    pub fn get(&self, path: &str, timeout: Duration) -> Result<Value, GatewayError> {
        let (status, answer) = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, self.send(hyper::Method::GET, path, Vec::new())).await })
            .map_err(|_| GatewayError::Timeout)??;
        let doc: Value =
            serde_json::from_slice(&answer).map_err(|e| GatewayError::Protocol(format!("{status}, not JSON ({e})")))?;
        if status != 200 {
            return Err(refusal(status, &doc, &answer));
        }
        Ok(doc)
    }

    /// POST within `timeout`, asking again (each second) while the answer is 503: a model
    /// still loading, a listener at its connection cap.
    fn post_patiently(&self, path: &str, body: &[u8], timeout: Duration) -> Result<(u16, Bytes), GatewayError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let (status, answer) = self
                .runtime
                .block_on(async {
                    tokio::time::timeout(left, self.send(hyper::Method::POST, path, body.to_vec())).await
                })
                .map_err(|_| GatewayError::Timeout)??;
            let again = status == 503 && deadline.saturating_duration_since(std::time::Instant::now()) > RETRY;
            if !again {
                return Ok((status, answer));
            }
            std::thread::sleep(RETRY);
        }
    }

    async fn send(&self, method: hyper::Method, path: &str, body: Vec<u8>) -> Result<(u16, Bytes), GatewayError> {
        let connect = |e: &dyn std::fmt::Display| GatewayError::Connect {
            socket: self.endpoint.to_string(),
            message: e.to_string(),
        };
        let mut request =
            hyper::Request::builder().method(method.clone()).uri(path).header(hyper::header::HOST, "localhost");
        if method == hyper::Method::POST {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let (mut sender, conn) = match &self.endpoint {
            Endpoint::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| connect(&e))?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| connect(&e))?;
                (sender, tokio::spawn(conn))
            }
            Endpoint::Http { addr, key } => {
                if let Some(key) = key {
                    request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
                }
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| connect(&e))?;
                let _ = stream.set_nodelay(true);
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| connect(&e))?;
                (sender, tokio::spawn(conn))
            }
        };
        drop(conn);
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| GatewayError::Protocol(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| GatewayError::Protocol(e.to_string()))?;
        let status = response.status().as_u16();
        let answer = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| GatewayError::Protocol(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((status, answer))
    }
}

/// A refusal in OpenAI's shape, or the start of whatever came.
fn refusal(status: u16, doc: &Value, answer: &[u8]) -> GatewayError {
    let message = doc
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map_or_else(|| String::from_utf8_lossy(answer).chars().take(500).collect(), str::to_string);
    if status == 400 && doc.pointer("/error/code").and_then(Value::as_str) == Some("context_length_exceeded") {
        return GatewayError::ContextFull { message };
    }
    GatewayError::Refused { status, message }
}

/// The first choice of a chat completion.
fn parse_reply(doc: &Value) -> Result<Reply, GatewayError> {
    let choice = doc.pointer("/choices/0").ok_or_else(|| GatewayError::Protocol("no choices".into()))?;
    let message = choice.get("message").cloned().ok_or_else(|| GatewayError::Protocol("no message".into()))?;
    let content = message.get("content").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut tool_calls = Vec::new();
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let text = |p: &str| call.pointer(p).and_then(Value::as_str).map(str::to_string);
        let (Some(id), Some(name)) = (text("/id"), text("/function/name")) else {
            return Err(GatewayError::Protocol(format!("a tool call without an id or a name: {call}")));
        };
        tool_calls.push(ToolCall { id, name, arguments: text("/function/arguments").unwrap_or_default() });
    }
    let tokens = |p: &str| doc.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Ok(Reply {
        message,
        content,
        tool_calls,
        finish_reason: choice.get("finish_reason").and_then(Value::as_str).unwrap_or_default().to_string(),
        prompt_tokens: tokens("/usage/prompt_tokens"),
        completion_tokens: tokens("/usage/completion_tokens"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_reply_gives_its_tool_calls_and_usage() {
        let doc = json!({
            "choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a\"}"}}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 9}
        });
        let r = parse_reply(&doc).expect("reply");
        assert_eq!(
            r.tool_calls,
            vec![ToolCall { id: "c1".into(), name: "read_file".into(), arguments: r#"{"path":"a"}"#.into() }]
        );
        assert_eq!(
            (r.finish_reason.as_str(), r.prompt_tokens, r.completion_tokens, r.content.as_str()),
            ("tool_calls", 30, 9, "")
        );
        assert!(matches!(parse_reply(&json!({"choices": []})), Err(GatewayError::Protocol(_))));
    }

    #[test]
    fn endpoints_parse_from_their_text_and_never_show_the_key() {
        assert_eq!("unix:/run/aither/gateway.sock".parse(), Ok(Endpoint::Unix("/run/aither/gateway.sock".into())));
        let http: Endpoint = "http://127.0.0.1:8080/v1".parse().expect("http");
        assert_eq!(http, Endpoint::Http { addr: "127.0.0.1:8080".parse().expect("addr"), key: None });
        assert!("unix:relative".parse::<Endpoint>().is_err());
        assert!("https://127.0.0.1:8080".parse::<Endpoint>().is_err());
        assert!("http://localhost:8080".parse::<Endpoint>().is_err());
        let keyed = Endpoint::Http { addr: "127.0.0.1:1".parse().expect("addr"), key: Some("sekrit".into()) };
        assert!(!format!("{keyed:?} {keyed}").contains("sekrit"));
    }
}
