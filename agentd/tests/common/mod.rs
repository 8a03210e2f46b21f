//! The test bed shared by the dev-mode tests: a private dbus-daemon, a configuration root,
//! agentd in development mode, and aitherctl to drive it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use aither_test_support::Guard;
use aither_test_support::{Bus, BusKind};

pub struct Bed {
    dir: tempfile::TempDir,
    bus: Bus,
}

impl Bed {
    pub fn new() -> Bed {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("xdg")).expect("xdg");
        Bed { bus: Bus::start(BusKind::Session), dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Write a file under the root; `@MARK@` becomes the file units record their start in.
    pub fn write(&self, rel: &str, text: &str) {
        let text = text.replace("@MARK@", &self.dir.path().join("marks").display().to_string());
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    pub fn command(&self, exe: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(exe);
        c.env("DBUS_SESSION_BUS_ADDRESS", &self.bus.address)
            .env("XDG_RUNTIME_DIR", self.dir.path().join("xdg"))
            .env_remove("NOTIFY_SOCKET");
        c
    }

    /// The bed's own directory (the bus, logs, marks; the root is `root()`).
    /// The private bus agentd is on.
    #[allow(dead_code)]
    pub fn bus_address(&self) -> &str {
        &self.bus.address
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// agentd on the RTX 4090 fixture profile.
    pub fn agentd(&self) -> Guard {
        self.agentd_with_profile(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/profiles/profile-1gpu.json"),
        )
    }

    /// Wait until agentd answers on the bus.
    pub fn wait_up(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.ctl(&["status"]).status.code() == Some(69) {
            assert!(Instant::now() < deadline, "agentd did not come up:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn agentd_with_profile(&self, fixture: &Path) -> Guard {
        let log = std::fs::File::create(self.dir.path().join("agentd.log")).expect("log");
        let child = self
            .command(env!("CARGO_BIN_EXE_agentd"))
            .args(["--dev", "--root"])
            .arg(self.root())
            .arg("--profile")
            .arg(fixture)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("agentd");
        Guard(child)
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        self.command(aitherctl()).arg("--session").args(args).output().expect("aitherctl")
    }

    /// aitherctl that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "aitherctl {args:?}: {}\n{}\nagentd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn units(&self) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.ok(&["--json", "units"])).expect("json");
        v["units"].as_array().expect("a UnitList").clone()
    }

    pub fn unit(&self, name: &str) -> Value {
        self.units().into_iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("no unit {name}"))
    }

    /// Wait until `name` is in `state`.
    pub fn wait_state(&self, name: &str, state: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let u = self.unit(name);
            if u["state"] == state {
                return u;
            }
            assert!(Instant::now() < deadline, "{name} is {} not {state}\n{}", u["state"], self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn marks(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("marks")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agentd.log")).unwrap_or_default()
    }

    /// agentd's state directory in development mode.
    #[allow(dead_code)] // Not every test file runs workflows.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("xdg/aither/state")
    }

    /// `agentd.toml` for workflow runs: steps run the workspace's `aither-agent` and reach the
    /// model at `socket`; `extra`: more lines of the `[workflows]` table.
    #[allow(dead_code)]
    pub fn configure_workflows(&self, socket: &Path, extra: &str) {
        self.write(
            "etc/aither/agentd.toml",
            &format!(
                "[gateway]\nlisten = [\"unix:/run/aither/gateway.sock\"]\n[workflows]\nrunner = \"{}\"\ngateway_socket = \"{}\"\n{extra}",
                aither_test_support::bin("aither-agent").display(),
                socket.display()
            ),
        );
    }

    /// A workflow run's document.
    #[allow(dead_code)]
    pub fn run_doc(&self, id: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["--json", "workflows", "status", id])).expect("json");
        v["run"].clone()
    }

    /// Wait until run `id` is in `state`; its document.
    #[allow(dead_code)]
    pub fn wait_run(&self, id: &str, state: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.ctl(&["--json", "workflows", "status", id]);
            if out.status.success() {
                let r = self.run_doc(id);
                if r["state"] == state {
                    return r;
                }
                assert!(Instant::now() < deadline, "run {id} is {} not {state}: {r:#}\n{}", r["state"], self.log());
            } else {
                assert!(Instant::now() < deadline, "no run {id}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether agentd has a unit `name` (in `state`, when given).
    #[allow(dead_code)]
    pub fn has_unit(&self, name: &str, state: Option<&str>) -> bool {
        self.units().iter().any(|u| u["name"] == name && state.is_none_or(|s| u["state"] == s))
    }
}

/// A unit that fails on its first start (saying why in its log) and runs on the next.
#[allow(dead_code)] // For the workflow tests.
pub const FLAKY: &str = r#"
name = "flaky"
group = "core"
restart = "never"
command = ["/bin/sh", "-c", "echo flaky >> \"$MARK\"; if [ $(grep -c flaky \"$MARK\") -lt 2 ]; then echo 'flaky: database connection refused'; exit 3; fi; exec sleep 1000"]
environment = { MARK = "@MARK@" }
"#;

/// aitherctl, a binary of the workspace.
pub fn aitherctl() -> PathBuf {
    aither_test_support::bin("aitherctl")
}
