//! `fetch_url`: one GET over http or https, for a step granted outbound network. Bounded in
//! time and size, at most a few redirects, no proxy from the environment, and never to this
//! machine, the link-local network (the cloud's metadata service lives at 169.254.169.254) or
//! a metadata service elsewhere (100.100.100.200, fd00:ec2::254); private ranges (RFC 1918,
//! 100.64.0.0/10, fc00::/7) and this machine's own addresses only where the step's
//! `fetch_allow` names them. The addresses are checked where the connection is made (a
//! resolver that drops them), so a name that resolves to one, or a redirect to one, is
//! refused too. HTML comes back as its text.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
    /// `allow`: the networks the step's `fetch_allow` names (unparsable ones are left out; the
    /// workflow was checked). `allow_loopback` is for tests only: the agent never allows it.
    pub fn new(timeout: Duration, allow: &[String], allow_loopback: bool) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .timeout_global(Some(timeout))
            .proxy(None)
            .user_agent(concat!("aitheros-agent/", env!("CARGO_PKG_VERSION")))
            .build();
        let guarded = Guarded {
            allow: allow.iter().filter_map(|n| aither_api::workflow::parse_net(n).ok()).collect(),
            own: own_addresses(),
            allow_loopback,
        };
        Fetcher { agent: ureq::Agent::with_parts(config, DefaultConnector::new(), guarded) }
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

/// The default resolver, less the addresses an agent must not reach.
#[derive(Debug)]
struct Guarded {
    allow: Vec<(IpAddr, u8)>,
    /// This machine's own addresses.
    own: Vec<IpAddr>,
    allow_loopback: bool,
}

impl Guarded {
    /// Why `ip` is refused, or `None`.
    fn refusal(&self, ip: IpAddr) -> Option<String> {
        let ip = unmapped(ip);
        if self.allow_loopback && ip.is_loopback() {
            return None;
        }
        if let Some(why) = never(ip) {
            return Some(format!("refused: {ip} is {why}"));
        }
        if self.allow.iter().any(|n| aither_api::workflow::net_contains(*n, ip)) {
            return None;
        }
        let why = if self.own.contains(&ip) { Some("this machine's own address") } else { private(ip) };
        why.map(|why| format!("refused: {ip} is {why}; the step's fetch_allow may name it"))
    }
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
            match self.refusal(addr.ip()) {
                Some(why) => refused = Some(why),
                None => kept.push(*addr),
            }
        }
        match (kept.is_empty(), refused) {
            (true, Some(why)) => Err(ureq::Error::Io(std::io::Error::other(why))),
            (true, None) => Err(ureq::Error::HostNotFound),
            (false, _) => Ok(kept),
        }
    }
}

/// An IPv4 address mapped into IPv6 as itself.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// What no step reaches: loopback, unspecified, link-local (the metadata service), the
/// metadata services elsewhere, multicast and broadcast.
fn never(ip: IpAddr) -> Option<&'static str> {
    let metadata = aither_api::workflow::METADATA_ADDRESSES.iter().any(|m| m.parse() == Ok(ip));
    let (local, link_local, multi) = match ip {
        IpAddr::V4(v4) => {
            (v4.is_loopback() || v4.is_unspecified(), v4.is_link_local(), v4.is_multicast() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            (v6.is_loopback() || v6.is_unspecified(), (v6.segments()[0] & 0xffc0) == 0xfe80, v6.is_multicast())
        }
    };
    if metadata {
        Some("a cloud metadata service")
    } else if local {
        Some("this machine")
    } else if link_local {
        Some("a link-local address")
    } else if multi {
        Some("a multicast or broadcast address")
    } else {
        None
    }
}

/// The private ranges: RFC 1918, shared address space (100.64.0.0/10), unique local (fc00::/7).
fn private(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_private() => Some("a private address (RFC 1918)"),
        IpAddr::V4(v4) if v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 => {
            Some("a shared address (100.64.0.0/10)")
        }
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => Some("a unique local address (fc00::/7)"),
        _ => None,
    }
}

/// This machine's addresses: IPv4 from the kernel's local routes (`/proc/net/fib_trie`), IPv6
/// from `/proc/net/if_inet6`.
fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        out.extend(local_v4(&trie).into_iter().map(IpAddr::V4));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in text.lines() {
            let Some(hex) = line.split_whitespace().next().filter(|h| h.len() == 32) else { continue };
            if let Ok(n) = u128::from_str_radix(hex, 16) {
                out.push(IpAddr::V6(Ipv6Addr::from(n)));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The addresses `/proc/net/fib_trie` lists as `/32 host LOCAL`: each follows its `|-- ADDRESS`
/// line.
fn local_v4(trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last = None;
    for line in trie.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = addr.parse::<Ipv4Addr>().ok();
        } else if t.starts_with("/32 host LOCAL") {
            out.extend(last);
        }
    }
    out
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

    fn guarded(allow: &[&str], own: &[&str]) -> Guarded {
        Guarded {
            allow: allow.iter().map(|n| aither_api::workflow::parse_net(n).expect("net")).collect(),
            own: own.iter().map(|a| a.parse().expect("ip")).collect(),
            allow_loopback: false,
        }
    }

    #[test]
    fn this_machine_private_ranges_and_the_metadata_services_are_refused() {
        let g = guarded(&[], &["203.0.113.7"]);
        for ip in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "fe80::1",
            "224.0.0.1",
            "100.100.100.200",
            "fd00:ec2::254",
            "100.64.0.1",
            "100.127.255.254",
            "10.0.0.2",
            "172.16.5.4",
            "192.168.1.10",
            "fc00::1",
            "fd12:3456::1",
            "203.0.113.7",
        ] {
            assert!(g.refusal(ip.parse().expect("ip")).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "2001:db8::1", "100.128.0.1", "172.32.0.1"] {
            assert_eq!(g.refusal(ip.parse().expect("ip")), None, "{ip}");
        }
        // A step's fetch_allow opens a private range and the host, never the metadata service.
        let g = guarded(&["10.1.0.0/16", "203.0.113.7", "169.254.0.0/16", "100.100.100.200"], &["203.0.113.7"]);
        assert_eq!(g.refusal("10.1.2.3".parse().expect("ip")), None);
        assert_eq!(g.refusal("203.0.113.7".parse().expect("ip")), None);
        let e = g.refusal("10.2.0.1".parse().expect("ip")).expect("outside the allowed range");
        assert!(e.contains("a private address (RFC 1918); the step's fetch_allow may name it"), "{e}");
        for ip in ["169.254.169.254", "100.100.100.200"] {
            assert!(g.refusal(ip.parse().expect("ip")).is_some(), "{ip}");
        }
    }

    #[test]
    fn this_machines_addresses_are_read_from_the_kernel() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
                    Local:\n     |-- 10.0.2.15\n        /32 host LOCAL\n     |-- 10.0.2.255\n        /32 link BROADCAST\n\
                    |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(local_v4(trie), ["10.0.2.15".parse::<Ipv4Addr>().expect("ip"), Ipv4Addr::LOCALHOST]);
        assert!(own_addresses().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{:?}", own_addresses());
    }

    #[test]
    fn names_and_urls_that_lead_here_are_refused() {
        let f = Fetcher::new(Duration::from_secs(5), &[], false);
        let e = f.get("http://127.0.0.1:9/").expect_err("loopback");
        assert!(e.to_string().contains("refused: 127.0.0.1 is this machine"), "{e}");
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
        let f = Fetcher::new(Duration::from_secs(5), &[], true);
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
