//! The front door against misbehaving clients, over real sockets.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aither_http::guard::{self, HostPolicy, Policy};
use aither_http::{Front, Limits, Listener};
use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

struct Served {
    addr: std::net::SocketAddr,
    front: Front,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

fn app(limits: Limits) -> Router {
    let routes = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/echo", post(|b: Bytes| async move { format!("{} bytes", b.len()) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "slow but done"
            }),
        );
    guard::apply(routes, Policy { hosts: HostPolicy::without_host_name(&["appliance.example"]), limits })
}

async fn serve(limits: Limits) -> Served {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let front = Front::new(limits);
    let (stop, rx) = watch::channel(false);
    let f = front.clone();
    let done = tokio::spawn(async move { f.serve(Listener::Tcp(l), app(limits), rx).await });
    Served { addr, front, stop, done }
}

/// Everything the server sends until it closes the connection (bounded by 5 s).
async fn read_to_close(s: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

async fn request(addr: std::net::SocketAddr, text: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(text.as_bytes()).await.expect("write");
    read_to_close(&mut s).await.expect("the server answers and closes")
}

/// Poll `f` until it holds, for at most 5 s.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn quick() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_connections: 4,
        max_body_bytes: 1024,
    }
}

#[tokio::test]
async fn a_request_head_that_never_completes_is_dropped() {
    let s = serve(quick()).await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(b"GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Slow").await.expect("write");
    assert!(read_to_close(&mut c).await.is_some(), "the server closed the connection");
    eventually("one header timeout counted", || s.front.stats().header_timeouts.load(Ordering::Relaxed) == 1).await;
}

#[tokio::test]
async fn a_body_that_never_completes_gets_408() {
    let s = serve(quick()).await;
    let resp = {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":",
        )
        .await
        .expect("write");
        read_to_close(&mut c).await.expect("answered")
    };
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("body_timeout"), "{resp}");
    assert_eq!(s.front.stats().body_timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_shed_with_503_and_served_again_after() {
    let limits = Limits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        max_connections: 2,
        ..quick()
    };
    let s = serve(limits).await;
    let held1 = TcpStream::connect(s.addr).await.expect("connect");
    let held2 = TcpStream::connect(s.addr).await.expect("connect");
    eventually("two connections open", || s.front.stats().open.load(Ordering::Relaxed) == 2).await;
    let shed = request(s.addr, "GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(shed.starts_with("HTTP/1.1 503"), "{shed}");
    let (head, body) = shed.split_once("\r\n\r\n").expect("head and body");
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.parse().ok()).expect("length");
    assert_eq!(length, body.len(), "the canned answer's Content-Length is its body's");
    assert!(serde_json::from_str::<serde_json::Value>(body).is_ok(), "{body}");
    assert_eq!(s.front.stats().shed.load(Ordering::Relaxed), 1);
    drop((held1, held2));
    eventually("the held connections closed", || s.front.stats().open.load(Ordering::Relaxed) == 0).await;
    let ok = request(s.addr, "GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok"), "{ok}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_but_a_slow_answer_is_not() {
    let limits =
        Limits { header_timeout: Duration::from_secs(10), idle_timeout: Duration::from_millis(200), ..quick() };
    let s = serve(limits).await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    // The handler takes 600 ms, three idle timeouts: a request in flight is never idle.
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let text = read_to_close(&mut c).await.expect("closed after the answer");
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("slow but done"), "{text}");
    assert_eq!(s.front.stats().idle_closed.load(Ordering::Relaxed), 1, "closed for idleness, after the answer");
    assert_eq!(s.front.stats().header_timeouts.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_foreign_host_is_refused_and_no_cors_header_is_ever_sent() {
    let s = serve(quick()).await;
    let rebound = request(s.addr, "GET /ok HTTP/1.1\r\nHost: attacker.example:8080\r\nConnection: close\r\n\r\n").await;
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert!(rebound.contains("allowed_hosts"), "{rebound}");
    let named = request(s.addr, "GET /ok HTTP/1.1\r\nHost: appliance.example\r\nConnection: close\r\n\r\n").await;
    assert!(named.starts_with("HTTP/1.1 200"), "{named}");
    let preflight = request(
        s.addr,
        "OPTIONS /echo HTTP/1.1\r\nHost: localhost\r\nOrigin: http://attacker.example\r\n\
         Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!preflight.to_ascii_lowercase().contains("access-control-"), "{preflight}");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415() {
    let s = serve(quick()).await;
    let form = request(
        s.addr,
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert!(form.starts_with("HTTP/1.1 415"), "{form}");
    let none =
        request(s.addr, "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            .await;
    assert!(none.starts_with("HTTP/1.1 415"), "{none}");
    let json = request(
        s.addr,
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert!(json.starts_with("HTTP/1.1 200") && json.ends_with("2 bytes"), "{json}");
}

#[tokio::test]
async fn a_body_over_the_cap_gets_413_whether_declared_or_chunked() {
    let s = serve(quick()).await;
    let declared = request(
        s.addr,
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n",
    )
    .await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    let chunk = "x".repeat(2000);
    let chunked = request(
        s.addr,
        &format!(
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        ),
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
}

#[tokio::test]
async fn stopping_lets_a_request_in_flight_finish_then_returns() {
    let s = serve(Limits { header_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(10), ..quick() })
        .await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    eventually("the request reached the handler", || s.front.stats().requests.load(Ordering::Relaxed) == 1).await;
    s.stop.send(true).expect("stop");
    let text = read_to_close(&mut c).await.expect("answered, then closed");
    assert!(text.ends_with("slow but done"), "{text}");
    tokio::time::timeout(Duration::from_secs(5), s.done).await.expect("serve returned").expect("no panic");
    assert!(TcpStream::connect(s.addr).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn a_unix_listener_is_served_the_same_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.sock");
    let l = tokio::net::UnixListener::bind(&path).expect("bind");
    let front = Front::new(quick());
    let (_stop, rx) = watch::channel(false);
    let f = front.clone();
    tokio::spawn(async move { f.serve(Listener::Unix(l), app(quick()), rx).await });
    let mut c = tokio::net::UnixStream::connect(&path).await.expect("connect");
    c.write_all(b"GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut out = String::new();
    c.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("ok"), "{out}");
    assert_eq!(front.stats().accepted.load(Ordering::Relaxed), 1);
}
