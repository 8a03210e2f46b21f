//! Listening on a Unix socket or TCP (with `TCP_NODELAY`: a token is a few bytes and must
//! not wait for Nagle).

use std::os::unix::fs::PermissionsExt as _;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use axum::Router;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::cli::Listen;

#[derive(Debug)]
pub enum Bound {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Bind `addr`. A stale socket file (nobody answers on it) is replaced; a live one is an
/// error, so two workers never fight over one model.
pub async fn bind(addr: &Listen) -> anyhow::Result<Bound> {
    match addr {
        Listen::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            }
            if path.exists() {
                if tokio::net::UnixStream::connect(path).await.is_ok() {
                    anyhow::bail!("{}: another process is serving on this socket", path.display());
                }
                std::fs::remove_file(path)
                    .with_context(|| format!("{}: cannot remove the stale socket", path.display()))?;
            }
            let l = UnixListener::bind(path).with_context(|| format!("{}: cannot listen", path.display()))?;
            // The socket's directory decides who may connect; the socket itself is open to
            // the group (agentd's gateway runs as the same user or in the same group).
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .with_context(|| format!("{}", path.display()))?;
            Ok(Bound::Unix(l))
        }
        Listen::Tcp(a) => Ok(Bound::Tcp(TcpListener::bind(a).await.with_context(|| format!("{a}: cannot listen"))?)),
    }
}

/// Serve `app` until `stop` turns true.
pub async fn serve(l: Bound, app: Router, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    match l {
        Bound::Unix(l) => axum::serve(l, app).with_graceful_shutdown(stopped).await,
        Bound::Tcp(l) => {
            let l = l.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(l, app).with_graceful_shutdown(stopped).await
        }
    }
}
