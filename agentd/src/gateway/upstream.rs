//! Where the gateway sends a request: a worker's Unix socket (HTTP/1.1 through hyper, the
//! response body passed through frame by frame), or the cloud fallback (an OpenAI-compatible
//! HTTPS endpoint, through ureq on a blocking thread, its body relayed as it arrives).

use std::path::Path;
use std::time::Duration;

use aither_http::keys::Secret;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

/// Headers a client sends that the worker should see too.
const PASSED: [header::HeaderName; 2] = [header::CONTENT_TYPE, header::ACCEPT];

/// Why an upstream did not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach {what}: {message}")]
    Connect { what: String, message: String },
    #[error("{what} answered with a broken response: {message}")]
    Protocol { what: String, message: String },
}

/// Send a request to the worker listening on `socket`.
pub async fn to_worker(
    socket: &Path,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response<Incoming>, UpstreamError> {
    let what = || format!("the worker at {}", socket.display());
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| UpstreamError::Connect { what: what(), message: e.to_string() })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| UpstreamError::Connect { what: what(), message: e.to_string() })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("worker connection: {e}");
        }
    });
    let mut req = Request::builder().method(method).uri(path).header(header::HOST, "localhost");
    for h in PASSED {
        if let Some(v) = headers.get(&h) {
            req = req.header(h, v);
        }
    }
    let req =
        req.body(Full::new(body)).map_err(|e| UpstreamError::Protocol { what: what(), message: e.to_string() })?;
    sender.send_request(req).await.map_err(|e| UpstreamError::Protocol { what: what(), message: e.to_string() })
}

pub use aither_http::body::Tracked;

/// The cloud fallback as the gateway uses it, with one HTTP agent for every request so that
/// connections (and their TLS sessions) are reused.
#[derive(Debug, Clone)]
pub struct CloudTarget {
    pub endpoint: String,
    pub model: Option<String>,
    pub api_key: Option<Secret>,
    agent: ureq::Agent,
}

impl CloudTarget {
    /// `timeout` bounds a whole request, the streamed answer included.
    pub fn new(endpoint: String, model: Option<String>, api_key: Option<Secret>, timeout: Duration) -> CloudTarget {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("aitheros-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        CloudTarget { endpoint, model, api_key, agent }
    }
}

/// Forward to the cloud endpoint. `path` is the part after `/v1` (`/chat/completions`); the
/// model is replaced when the configuration names one.
pub async fn to_cloud(cloud: &CloudTarget, path: &str, body: Bytes) -> Result<Response<Body>, UpstreamError> {
    let body = match &cloud.model {
        Some(m) => match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(mut v) => {
                v["model"] = serde_json::Value::String(m.clone());
                Bytes::from(v.to_string())
            }
            Err(_) => body,
        },
        None => body,
    };
    let url = format!("{}{path}", cloud.endpoint);
    let key = cloud.api_key.clone();
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    let (chunks_tx, chunks_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let what = format!("the cloud endpoint {}", cloud.endpoint);
    let what2 = what.clone();
    let agent = cloud.agent.clone();
    tokio::task::spawn_blocking(move || {
        let mut req = agent.post(&url).header("content-type", "application/json");
        if let Some(k) = &key {
            req = req.header("authorization", format!("Bearer {}", k.expose()));
        }
        let resp = match req.send(&body[..]) {
            Ok(r) => r,
            Err(e) => {
                let _ = head_tx.send(Err(UpstreamError::Connect { what: what2, message: e.to_string() }));
                return;
            }
        };
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
        let _ = head_tx.send(Ok((status, content_type)));
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if chunks_tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        break; // the client went away
                    }
                }
                Err(e) => {
                    let _ = chunks_tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let (status, content_type) = head_rx
        .await
        .map_err(|_| UpstreamError::Protocol { what: what.clone(), message: "the request thread ended".into() })??;
    let stream = futures_util::stream::unfold(chunks_rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(resp)
}
