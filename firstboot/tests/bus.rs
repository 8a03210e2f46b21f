//! First boot's calls on the system bus, against a private dbus-daemon standing in for it: a
//! stand-in systemd-hostnamed that answers, and one that never does (a deadline, not a hang
//! that would hold back the boot).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aither_test_support::BusKind;

/// The private system bus and what the stand-in hostnamed was asked to set.
struct Bus {
    _daemon: aither_test_support::Bus,
    set: Arc<Mutex<Vec<String>>>,
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

/// One bus for the tests of this file: DBUS_SYSTEM_BUS_ADDRESS is process-wide.
fn bus() -> &'static Bus {
    static BUS: OnceLock<Bus> = OnceLock::new();
    BUS.get_or_init(|| {
        let daemon = aither_test_support::Bus::start(BusKind::System);
        let address = daemon.address.clone();
        std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &address);
        let set = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let served = Arc::clone(&set);
        std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let _conn = zbus::connection::Builder::address(address.as_str())
                    .expect("address")
                    .name("org.freedesktop.hostname1")
                    .expect("name")
                    .serve_at("/org/freedesktop/hostname1", Hostname { set: served })
                    .expect("serve")
                    .build()
                    .await
                    .expect("stand-in hostnamed");
                ready_tx.send(()).expect("ready");
                std::future::pending::<()>().await;
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("the stand-in hostnamed is on the bus");
        Bus { _daemon: daemon, set }
    })
}

#[test]
fn the_live_host_name_is_set_through_hostnamed() {
    let bus = bus();
    aither_firstboot::apply::set_live_hostname("lab-01").expect("set");
    assert_eq!(bus.set.lock().expect("lock").as_slice(), ["lab-01"]);
}

#[test]
fn a_service_that_never_answers_is_an_error_after_the_deadline() {
    bus();
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
