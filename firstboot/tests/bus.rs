//! First boot's calls on the system bus, against a private dbus-daemon standing in for it: a
//! stand-in systemd-hostnamed that answers, and one that never does (a deadline, not a hang
//! that would hold back the boot).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aither_test_support::BusKind;

/// A private system bus with the stand-in hostnamed on it, and what it was asked to set. Both
/// end when it is dropped (a panicking test included): nothing outlives the test.
struct Bus {
    set: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<std::thread::JoinHandle<()>>,
    _daemon: aither_test_support::Bus,
    _serial: MutexGuard<'static, ()>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(served) = self.served.take() {
            let _ = served.join();
        }
    }
}

struct Hostname {
    set: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.freedesktop.hostname1")]
impl Hostname {
    async fn set_hostname(&self, name: String, _interactive: bool) {
        self.set.lock().expect("lock").push(name);
    }

    /// Never answers.
    async fn set_static_hostname(&self, _name: String, _interactive: bool) {
        std::future::pending::<()>().await;
    }
}

/// A bus for one test. DBUS_SYSTEM_BUS_ADDRESS is process-wide, so the tests of this file take
/// their turns.
fn bus() -> Bus {
    static SERIAL: Mutex<()> = Mutex::new(());
    let serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let daemon = aither_test_support::Bus::start(BusKind::System);
    let address = daemon.address.clone();
    std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &address);
    let set = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let recorded = Arc::clone(&set);
    let served = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let _conn = zbus::connection::Builder::address(address.as_str())
                .expect("address")
                .name("org.freedesktop.hostname1")
                .expect("name")
                .serve_at("/org/freedesktop/hostname1", Hostname { set: recorded })
                .expect("serve")
                .build()
                .await
                .expect("stand-in hostnamed");
            ready_tx.send(()).expect("ready");
            let _ = stop_rx.await;
        });
        rt.shutdown_background();
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("the stand-in hostnamed is on the bus");
    Bus { set, stop: Some(stop_tx), served: Some(served), _daemon: daemon, _serial: serial }
}

#[test]
fn the_live_host_name_is_set_through_hostnamed() {
    let bus = bus();
    aither_firstboot::apply::set_live_hostname("lab-01").expect("set");
    assert_eq!(bus.set.lock().expect("lock").as_slice(), ["lab-01"]);
}

#[test]
fn a_service_that_never_answers_is_an_error_after_the_deadline() {
    let _bus = bus();
    let start = Instant::now();
    let e = aither_firstboot::bus::on_system_bus(Duration::from_millis(500), |conn| async move {
        let p = aither_firstboot::bus::proxy(
            &conn,
            "org.freedesktop.hostname1",
            "/org/freedesktop/hostname1",
            "org.freedesktop.hostname1",
        )
        .await?;
        p.call::<_, _, ()>("SetStaticHostname", &("x", false)).await.map_err(|e| e.to_string())
    })
    .expect_err("no answer");
    assert!(e.contains("no answer within"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
}
