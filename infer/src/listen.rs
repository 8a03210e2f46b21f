//! Binding the worker's listening socket: a Unix socket (as agentd runs it) or TCP. Serving
//! is the front door's ([`aither_http::Front`]): timeouts, a connection cap, `TCP_NODELAY`.

use std::os::unix::fs::PermissionsExt as _;

use aither_http::Listener;
use anyhow::Context as _;
use tokio::net::{TcpListener, UnixListener};

use crate::cli::Listen;

/// Bind `addr`. A stale socket file (nobody answers on it) is replaced; a live one is an
/// error, so two workers never fight over one model.
pub async fn bind(addr: &Listen) -> anyhow::Result<Listener> {
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
            Ok(Listener::Unix(l))
        }
        Listen::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a).await.with_context(|| format!("{a}: cannot listen"))?)),
    }
}
