//! Accepting connections and running them under the [`Limits`].

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tower_service::Service as _;

use crate::body::Tracked;
use crate::Limits;

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// What a front has done since it started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections served (within the cap).
    pub accepted: AtomicU64,
    /// Connections refused with a 503 because the cap was reached.
    pub shed: AtomicU64,
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections closed because a request head did not arrive in time.
    pub header_timeouts: AtomicU64,
    /// Requests refused because their body did not arrive in time.
    pub body_timeouts: AtomicU64,
    /// Kept-alive connections closed for idleness.
    pub idle_closed: AtomicU64,
    /// Requests that reached a handler.
    pub requests: AtomicU64,
}

impl Stats {
    /// The counters in Prometheus' text format, each named `{prefix}_...`.
    pub fn prometheus(&self, prefix: &str) -> String {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut put = |name: &str, kind: &str, help: &str, value: u64| {
            out.push_str(&format!(
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} {kind}\n{prefix}_{name} {value}\n"
            ));
        };
        put("connections_accepted_total", "counter", "Connections served within the cap.", c(&self.accepted));
        put("connections_shed_total", "counter", "Connections refused with 503 at the cap.", c(&self.shed));
        put(
            "connections_open",
            "gauge",
            "Connections open now.",
            u64::try_from(self.open.load(Ordering::Relaxed)).unwrap_or(u64::MAX),
        );
        put(
            "header_timeouts_total",
            "counter",
            "Connections closed for a late request head.",
            c(&self.header_timeouts),
        );
        put("body_timeouts_total", "counter", "Requests refused for a late body.", c(&self.body_timeouts));
        put("idle_closed_total", "counter", "Kept-alive connections closed for idleness.", c(&self.idle_closed));
        put("requests_total", "counter", "Requests that reached a handler.", c(&self.requests));
        out
    }
}

/// One front door: its limits and counters, shared by its listeners. Each listener has
/// its own `max_connections`, so a flood on TCP cannot take the Unix socket's (the agents').
#[derive(Debug, Clone)]
pub struct Front {
    limits: Limits,
    stats: Arc<Stats>,
}

/// The answer to a connection beyond the cap, written without reading the request.
static SHED: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let body = "{\"error\":{\"message\":\"too many open connections; try again\",\"type\":\"server_error\",\
                \"param\":null,\"code\":\"overloaded\"}}\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

impl Front {
    pub fn new(limits: Limits) -> Front {
        Front { limits, stats: Arc::new(Stats::default()) }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Accept on `listener` and serve `app` until `stop` turns true; then stop accepting,
    /// let the requests in flight finish and return once every connection has ended.
    pub async fn serve(&self, listener: Listener, app: Router, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let mut connections = tokio::task::JoinSet::new();
        let mut accept_errors = 0u64;
        loop {
            let accepted = tokio::select! {
                Ok(_) = stop.wait_for(|s| *s) => break,
                Some(_) = connections.join_next() => continue,
                a = accept(&listener) => a,
            };
            let stream = match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: wait for some to be freed
                    // rather than spin; every other error belongs to one connection only.
                    if matches!(e.raw_os_error(), Some(23 | 24) | Some(12 | 105)) {
                        accept_errors += 1;
                        if accept_errors.is_power_of_two() {
                            tracing::error!("accept: {e} ({accept_errors} times)");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                let shed = self.stats.shed.fetch_add(1, Ordering::Relaxed) + 1;
                if shed.is_power_of_two() {
                    tracing::warn!(
                        "{shed} connections shed so far: {} are open on one listener, its cap (max_connections)",
                        self.limits.max_connections
                    );
                }
                stream.shed();
                continue;
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let (limits, stats, app, stop) = (self.limits, self.stats.clone(), app.clone(), stop.clone());
            connections.spawn(async move {
                stats.open.fetch_add(1, Ordering::Relaxed);
                match stream {
                    Stream::Tcp(s) => connection(s, app, limits, &stats, stop).await,
                    Stream::Unix(s) => connection(s, app, limits, &stats, stop).await,
                }
                stats.open.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Stream {
    /// Answer 503 if the socket takes it at once, and close. What the client has already
    /// sent is read first (without waiting), so that closing sends an orderly FIN rather
    /// than a reset that could destroy the 503 before the client reads it.
    fn shed(self) {
        let mut sink = [0u8; 16 * 1024];
        match &self {
            Stream::Tcp(s) => {
                while matches!(s.try_read(&mut sink), Ok(n) if n > 0) {}
                let _ = s.try_write(&SHED);
            }
            Stream::Unix(s) => {
                while matches!(s.try_read(&mut sink), Ok(n) if n > 0) {}
                let _ = s.try_write(&SHED);
            }
        }
    }
}

async fn accept(l: &Listener) -> io::Result<Stream> {
    match l {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            // A token is a few bytes and must not wait for Nagle.
            let _ = s.set_nodelay(true);
            Ok(Stream::Tcp(s))
        }
        Listener::Unix(l) => Ok(Stream::Unix(l.accept().await?.0)),
    }
}

/// When a connection last moved bytes, and how many of its requests are in flight.
#[derive(Debug)]
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        self.base.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The connection's stream, noting every transfer in its [`Activity`].
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serve one connection with hyper under the limits.
async fn connection<I>(io: I, app: Router, limits: Limits, stats: &Arc<Stats>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity =
        Arc::new(Activity { base: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) });
    let service = {
        let (activity, stats) = (activity.clone(), stats.clone());
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut app = app.clone();
            let activity = activity.clone();
            activity.in_flight.fetch_add(1, Ordering::Relaxed);
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(stats.clone());
            async move {
                let resp = app.call(req).await?;
                Ok::<_, std::convert::Infallible>(resp.map(|b| {
                    Body::new(Tracked::new(b, move || {
                        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
                        activity.touch();
                    }))
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(!limits.idle_timeout.is_zero());
    let io = TokioIo::new(Watched { io, activity: activity.clone() });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let idle = if limits.idle_timeout.is_zero() { limits.header_timeout } else { limits.idle_timeout };
    let mut closing = false;
    loop {
        let quiet = activity.quiet_for();
        let check_in = idle.saturating_sub(quiet).max(Duration::from_millis(10));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!("connection: {e}");
                }
                return;
            }
            _ = tokio::time::sleep(check_in), if !closing => {
                if activity.in_flight.load(Ordering::Relaxed) == 0 && activity.quiet_for() >= idle {
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            Ok(_) = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}
