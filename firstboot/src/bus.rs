//! The system bus, for the few calls first boot makes once the configuration is committed
//! (systemd-hostnamed, NetworkManager). Each runs on a current-thread tokio runtime made for
//! it, under a deadline: a service that does not answer is a warning, never a hang that
//! would hold back the appliance's boot.

use std::future::Future;
use std::time::Duration;

/// Run `f` with a connection to the system bus; an error when there is no bus, when `f`
/// fails, or when it has not finished within `deadline`.
pub fn on_system_bus<T, F, Fut>(deadline: Duration, f: F) -> Result<T, String>
where
    F: FnOnce(zbus::Connection) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the D-Bus client: {e}"))?;
    rt.block_on(async {
        let work = async {
            let conn = zbus::Connection::system().await.map_err(|e| format!("no system bus: {e}"))?;
            f(conn).await
        };
        tokio::time::timeout(deadline, work).await.map_err(|_| format!("no answer within {} s", deadline.as_secs()))?
    })
}

/// A proxy for `interface` at `path` of `destination`.
pub async fn proxy<'a>(
    conn: &zbus::Connection,
    destination: &'a str,
    path: &'a str,
    interface: &'a str,
) -> Result<zbus::Proxy<'a>, String> {
    zbus::Proxy::new(conn, destination, path, interface).await.map_err(|e| e.to_string())
}
