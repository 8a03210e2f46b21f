//! Readiness probes: a TCP connect, or an HTTP `GET` answered `2xx`, retried with backoff.

use std::time::Duration;

use tokio::sync::mpsc;

use super::Msg;

pub(super) fn probe(
    tx: mpsc::UnboundedSender<Msg>,
    unit: String,
    generation: u64,
    addr: std::net::SocketAddr,
    path: Option<String>,
) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(20);
        loop {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
                let ok = match &path {
                    None => true,
                    Some(p) => {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let req = format!("GET {p} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
                        let mut head = [0u8; 12];
                        stream.write_all(req.as_bytes()).await.is_ok()
                            && stream.read_exact(&mut head).await.is_ok()
                            && head.starts_with(b"HTTP/1.")
                            && head[9] == b'2'
                    }
                };
                if ok {
                    let _ = tx.send(Msg::Probed { unit, generation });
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    });
}
