//! Request guards every front door applies before its handlers: the `Host` a request names,
//! the type of its body, and reading that body within the deadline and the size cap.
//!
//! Browsers are the threat here: a page on any site can make the browser of someone on the
//! appliance's network send requests to `127.0.0.1:8080`. Without preflight it can only send
//! "simple" requests (`text/plain`, form encodings), so requiring `application/json` on every
//! request that changes or computes something forces a CORS preflight, which fails because no
//! CORS header is ever sent. DNS rebinding (a hostile name that resolves to 127.0.0.1) gets
//! past the same-origin policy, but the request still carries the hostile name in `Host`,
//! which [`HostPolicy`] refuses.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;

use crate::{Limits, Stats};

/// The `Host` values a front answers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    /// Names besides the built-in ones (lowercase, without a port).
    names: Vec<String>,
}

impl HostPolicy {
    /// Loopback names, IP literals, this machine's host name and `extra` (names an admin
    /// configured, such as the appliance's DNS name).
    pub fn new(extra: &[String]) -> HostPolicy {
        let mut names: Vec<String> =
            extra.iter().map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
        if let Some(h) = local_host_name() {
            if let Some((short, _)) = h.split_once('.') {
                names.push(short.to_string());
            }
            names.push(h);
        }
        names.sort();
        names.dedup();
        HostPolicy { names }
    }

    /// Only the built-in names and `extra` (tests).
    pub fn without_host_name(extra: &[&str]) -> HostPolicy {
        HostPolicy { names: extra.iter().map(|n| n.to_ascii_lowercase()).collect() }
    }

    /// Whether a `Host` header value (`name[:port]`, `[v6]:port`) names this machine.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        let name = if let Some(rest) = host.strip_prefix('[') {
            // An IPv6 literal: "[::1]" or "[::1]:8080".
            return rest.split_once(']').is_some_and(|(addr, port)| {
                addr.parse::<std::net::Ipv6Addr>().is_ok() && (port.is_empty() || valid_port(port.strip_prefix(':')))
            });
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if valid_port(Some(port)) => name,
                Some(_) => return false,
                None => host,
            }
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        // An IP literal cannot be rebound; only names can.
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || name == "localhost.localdomain"
            || self.names.contains(&name)
    }
}

fn valid_port(p: Option<&str>) -> bool {
    p.is_some_and(|p| {
        !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    })
}

/// This machine's host name, from uname(2) (no file: workers may not read /proc/sys).
fn local_host_name() -> Option<String> {
    let uts = rustix::system::uname();
    let name = uts.nodename().to_str().ok()?.trim().to_ascii_lowercase();
    (!name.is_empty() && name != "(none)").then_some(name)
}

/// What [`enforce`] checks.
#[derive(Debug, Clone)]
pub struct Policy {
    pub hosts: HostPolicy,
    pub limits: Limits,
}

/// An error in the OpenAI shape every AitherOS API answers with.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    let body = serde_json::json!({ "error": { "message": message.into(), "type": kind, "param": null, "code": code } });
    (status, axum::Json(body)).into_response()
}

/// Methods a cross-site page could use to act, which must carry JSON.
fn acts(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_json(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
}

/// The guard as axum middleware (`axum::middleware::from_fn_with_state(Arc<Policy>, enforce)`):
/// `Host` first, then the body's type, then the body itself, read whole within
/// `limits.body_timeout` and `limits.max_body_bytes`.
pub async fn enforce(State(policy): State<Arc<Policy>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| req.uri().host());
    match host {
        None => return error(StatusCode::BAD_REQUEST, "missing_host", "the request has no Host header"),
        Some(h) if !policy.hosts.allows(h) => {
            return error(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!(
                    "Host {h:?} does not name this appliance; use its address, localhost, or add the name to \
                     gateway.allowed_hosts"
                ),
            )
        }
        Some(_) => {}
    }
    if acts(req.method()) && !is_json(req.headers().get(header::CONTENT_TYPE)) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON, sent with Content-Type: application/json",
        );
    }
    let (parts, body) = req.into_parts();
    let stats = parts.extensions.get::<Arc<Stats>>().cloned();
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let max = policy.limits.max_body_bytes;
    if declared.is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX)) {
        return too_large(max);
    }
    let read = http_body_util::Limited::new(body, max).collect();
    let bytes: Bytes = match tokio::time::timeout(policy.limits.body_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return too_large(max),
        Ok(Err(e)) => {
            return error(StatusCode::BAD_REQUEST, "invalid_body", format!("cannot read the request body: {e}"))
        }
        Err(_) => {
            if let Some(s) = stats {
                s.body_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            let mut resp = error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {} s", policy.limits.body_timeout.as_secs()),
            );
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn too_large(max: usize) -> Response {
    let mut resp = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than {max} bytes (max_body_bytes)"),
    );
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// `router` behind [`enforce`] with `policy`; axum's own body limit is lifted, as the
/// guard has already applied the configured one.
pub fn apply(router: axum::Router, policy: Policy) -> axum::Router {
    router
        .layer(axum::middleware::from_fn_with_state(Arc::new(policy), enforce))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_ip_literals_and_configured_names_are_allowed() {
        let p = HostPolicy::without_host_name(&["gpu-node-7.example.com"]);
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "api.localhost:80",
            "127.0.0.1:8080",
            "192.0.2.10",
            "[::1]:8080",
            "[::1]",
            "gpu-node-7.example.com:8080",
        ] {
            assert!(p.allows(ok), "{ok} is allowed");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
            ":8080",
            "localhost:99999",
            "localhost:80x",
            "[::1]x",
            "[evil]:80",
            "gpu-node-7.example.com.evil.example",
        ] {
            assert!(!p.allows(bad), "{bad:?} is refused");
        }
    }
}
