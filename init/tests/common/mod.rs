//! Helpers shared by the engine and cgroup tests.

use std::time::Duration;

use aither_init::{Event, UnitState};
use tokio::sync::broadcast;

/// The next event of `unit` that satisfies `pred`, within `secs`.
pub async fn until(
    rx: &mut broadcast::Receiver<Event>,
    unit: &str,
    secs: u64,
    pred: impl Fn(&UnitState) -> bool,
) -> Event {
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match rx.recv().await {
                Ok(e) if e.unit == unit && pred(&e.state) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{unit}: no matching event within {secs}s"))
}

/// Poll `done` every 20 ms until it holds; panics naming `what` after `secs`.
pub async fn eventually(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
