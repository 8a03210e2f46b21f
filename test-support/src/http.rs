//! Raw HTTP/1.1 for tests: one exchange over TCP or a Unix socket (`Connection: close`, the
//! request exactly as given), and a one-shot server that answers what it is told to.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;

/// A response: its status, its header lines (name lowercased) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    fn parse(raw: &str) -> Response {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut lines = head.lines();
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Response { status, headers, body: body.to_string() }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A request with a JSON body (none when `body` is empty), `Host: localhost` and
/// `Connection: close`, plus `extra` header lines (`Name: value\r\n` each).
pub fn request_text(method: &str, path: &str, extra: &str, body: &str) -> String {
    let content =
        if body.is_empty() && method == "GET" { String::new() } else { "Content-Type: application/json\r\n".into() };
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{content}{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Send `request` as given over a Unix socket; the whole answer.
pub fn unix(sock: &Path, request: &str) -> Response {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
    s.write_all(request.as_bytes()).expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    Response::parse(&raw)
}

/// Send `request` as given to `127.0.0.1:port`; the whole answer.
pub fn tcp(port: u16, request: &str) -> Response {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(request.as_bytes()).expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    Response::parse(&raw)
}

/// What [`serve`] saw of a request: its request line and header lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub request_line: String,
    pub headers: Vec<String>,
}

/// A server on `127.0.0.1` that answers `responses.len()` connections, one each, with the
/// given raw responses (`HTTP/1.1 200 OK\r\n…`), then ends; joining it gives what it saw.
pub fn serve(responses: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<Vec<Seen>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let h = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for response in responses {
            let (mut s, _) = l.accept().expect("accept");
            let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
            let mut request_line = String::new();
            r.read_line(&mut request_line).expect("request line");
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                headers.push(line.trim_end().to_string());
            }
            seen.push(Seen { request_line: request_line.trim_end().to_string(), headers });
            let _ = s.write_all(&response);
        }
        seen
    });
    (port, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_shot_server_answers_and_reports_what_it_saw() {
        let (port, h) = serve(vec![
            b"HTTP/1.1 404 Not Found\r\nX-A: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno".to_vec(),
        ]);
        let r = tcp(port, &request_text("GET", "/x", "X-Test: 1\r\n", ""));
        assert_eq!((r.status, r.header("x-a"), r.body.as_str()), (404, Some("b"), "no"));
        let seen = h.join().expect("server");
        assert_eq!(seen[0].request_line, "GET /x HTTP/1.1");
        assert!(seen[0].headers.contains(&"X-Test: 1".to_string()));
    }
}
