//! `fetch_url`: one GET over http or https, for a step granted outbound network. Bounded in
//! time and size, at most a few redirects, and never to this machine or the link-local
//! network (the cloud's metadata service lives at 169.254.169.254): the addresses are
//! checked where the connection is made (a resolver that drops them), so a name that
//! resolves to loopback, or a redirect to one, is refused too. HTML comes back as its text.

use std::io::Read as _;
use std::net::IpAddr;
use std::time::Duration;

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// The most bytes of a body read.
pub const MAX_BODY: u64 = 2 * 1024 * 1024;
const MAX_REDIRECTS: u32 = 5;

/// A fetched page: its status, type and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    pub content_type: String,
    pub text: String,
    /// The body was longer than [`MAX_BODY`].
    pub cut: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: only http and https URLs can be fetched")]
    Scheme { url: String },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: {content_type} is not text")]
    NotText { url: String, content_type: String },
}

/// An HTTP agent that refuses this machine's and the link-local addresses.
#[derive(Debug)]
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Fetcher {
    /// `allow_loopback` is for tests only: the agent never allows it.
    pub fn new(timeout: Duration, allow_loopback: bool) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .timeout_global(Some(timeout))
            .user_agent(concat!("aitheros-agent/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher { agent: ureq::Agent::with_parts(config, DefaultConnector::new(), Guarded { allow_loopback }) }
    }

    pub fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(FetchError::Scheme { url: url.to_string() });
        }
        let http = |message: String| FetchError::Http { url: url.to_string(), message };
        let response = self.agent.get(url).call().map_err(|e| http(e.to_string()))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_ascii_lowercase();
        let mime = content_type.split(';').next().unwrap_or_default().trim().to_string();
        let textual = mime.starts_with("text/")
            || [
                "application/json",
                "application/xml",
                "application/xhtml+xml",
                "application/rss+xml",
                "application/atom+xml",
            ]
            .contains(&mime.as_str())
            || mime.ends_with("+json");
        if !textual {
            return Err(FetchError::NotText { url: url.to_string(), content_type });
        }
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut body)
            .map_err(|e| http(format!("reading the body: {e}")))?;
        let cut = body.len() as u64 > MAX_BODY;
        body.truncate(usize::try_from(MAX_BODY).unwrap_or(usize::MAX));
        let raw = String::from_utf8_lossy(&body);
        let text = if mime.contains("html") { html_text(&raw) } else { raw.into_owned() };
        Ok(Fetched { status, content_type, text, cut })
    }
}

/// The default resolver, less the addresses an agent must never reach.
#[derive(Debug)]
struct Guarded {
    allow_loopback: bool,
}

impl Resolver for Guarded {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let all = DefaultResolver::default().resolve(uri, config, timeout)?;
        let mut kept = self.empty();
        let mut refused = None;
        for addr in all.iter() {
            if forbidden(addr.ip()) && !(self.allow_loopback && addr.ip().is_loopback()) {
                refused = Some(addr.ip());
            } else {
                kept.push(*addr);
            }
        }
        match (kept.is_empty(), refused) {
            (true, Some(ip)) => Err(ureq::Error::Io(std::io::Error::other(format!(
                "refused: {ip} is this machine's or a link-local address"
            )))),
            (true, None) => Err(ureq::Error::HostNotFound),
            (false, _) => Ok(kept),
        }
    }
}

/// Loopback, unspecified, link-local (the metadata service), multicast and broadcast.
fn forbidden(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_unspecified() || v4.is_link_local() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The text of an HTML page: no scripts, styles or tags, the common entities decoded, blank
/// runs collapsed.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &lower[i..];
        if rest.starts_with("<script") || rest.starts_with("<style") || rest.starts_with("<!--") {
            let end = if rest.starts_with("<!--") {
                rest.find("-->").map(|e| e + 3)
            } else if rest.starts_with("<script") {
                rest.find("</script>").map(|e| e + 9)
            } else {
                rest.find("</style>").map(|e| e + 8)
            };
            i += end.unwrap_or(rest.len());
            out.push(' ');
        } else if rest.starts_with('<') {
            let end = rest.find('>').map_or(rest.len(), |e| e + 1);
            let tag = &rest[1..end.saturating_sub(1).max(1)];
            let block = ["p", "/p", "br", "div", "/div", "li", "h1", "h2", "h3", "h4", "tr", "/tr", "pre", "/pre"]
                .iter()
                .any(|b| tag == *b || tag.starts_with(&format!("{b} ")) || tag.starts_with(&format!("{b}/")));
            out.push(if block { '\n' } else { ' ' });
            i += end;
        } else {
            let next = rest.find('<').unwrap_or(rest.len());
            out.push_str(&html[i..i + next]);
            i += next;
        }
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let mut text = String::new();
    for line in decoded.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if !line.is_empty() {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_its_text() {
        let html = "<html><head><style>p{}</style><script>alert(1)</script></head><body><h1>Title</h1>\
                    <p>One &amp; two<br>three</p><!-- hidden --><div>four</div></body></html>";
        assert_eq!(html_text(html), "Title\nOne & two\nthree\nfour\n");
    }

    #[test]
    fn this_machine_and_the_metadata_service_are_refused() {
        for ip in ["127.0.0.1", "::1", "169.254.169.254", "0.0.0.0", "::ffff:127.0.0.1", "fe80::1", "224.0.0.1"] {
            assert!(forbidden(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["192.168.1.10", "10.0.0.2", "93.184.216.34", "2001:db8::1"] {
            assert!(!forbidden(ip.parse().expect("ip")), "{ip}");
        }
        let f = Fetcher::new(Duration::from_secs(5), false);
        let e = f.get("http://127.0.0.1:9/").expect_err("loopback");
        assert!(e.to_string().contains("refused: 127.0.0.1"), "{e}");
        let e = f.get("http://localhost:9/").expect_err("a name for loopback");
        assert!(e.to_string().contains("refused"), "{e}");
        assert!(matches!(f.get("file:///etc/passwd"), Err(FetchError::Scheme { .. })));
    }

    #[test]
    fn a_page_comes_back_as_text_and_other_types_are_refused() {
        let body = "<p>hello</p>";
        let (port, server) = aither_test_support::http::serve(vec![format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()]);
        let f = Fetcher::new(Duration::from_secs(5), true);
        let page = f.get(&format!("http://127.0.0.1:{port}/doc")).expect("fetched");
        assert_eq!((page.status, page.text.as_str(), page.cut), (200, "hello\n", false));
        server.join().expect("server");
        let (port, server) = aither_test_support::http::serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        ]);
        assert!(matches!(f.get(&format!("http://127.0.0.1:{port}/x.png")), Err(FetchError::NotText { .. })));
        server.join().expect("server");
    }
}
