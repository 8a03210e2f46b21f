//! The console wizard driven like a person would: in tmux (80×25), with send-keys, reading
//! the screen with capture-pane.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{read, KEY};

struct Pane {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    status: PathBuf,
}

impl Pane {
    fn start(root: &Path) -> Pane {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("tmux.sock");
        let status = dir.path().join("status");
        let cmd = format!(
            "{} --root {} --profile {}; echo $? > {}; sleep 60",
            common::bin(),
            root.display(),
            common::profile().display(),
            status.display()
        );
        let ok = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["new-session", "-d", "-x", "80", "-y", "25", "-s", "wizard"])
            .arg(cmd)
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux is installed (make deps installs it)");
        assert!(ok.success(), "tmux did not start");
        Pane { socket, _dir: dir, status }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "wizard"])
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "wizard", k]);
        }
    }

    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "wizard", "-l", text]);
    }

    /// Wait until the screen shows `text`; fail with the screen after 10 s.
    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "waited for {text:?}; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exit_status(&self) -> i32 {
        let start = Instant::now();
        loop {
            // The shell creates the file before it writes the number: wait for the line.
            if let Some(code) = std::fs::read_to_string(&self.status).ok().filter(|s| s.ends_with('\n')) {
                return code.trim().parse().expect("status");
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the wizard did not exit; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

#[test]
fn a_full_run_configures_the_machine() {
    let target = common::target();
    let root = target.path();
    let p = Pane::start(root);
    let s = p.wait_for("Step 1 of 9: This machine");
    assert!(s.contains("NVIDIA GeForce RTX 4090, 24.0 GiB"), "{s}");
    assert!(s.contains("Preset standard:"), "{s}");
    assert!(s.lines().count() <= 25 && s.lines().all(|l| l.chars().count() <= 80));

    p.keys(&["Enter"]);
    p.wait_for("◀ auto (standard) ▶");
    p.keys(&["Enter"]);
    p.wait_for("Step 3 of 9: Administrator");
    p.keys(&["Tab"]);
    p.type_text("correct horse battery");
    p.keys(&["Tab"]);
    p.type_text("correct horse battery");
    p.keys(&["Tab"]);
    p.type_text(KEY);
    p.keys(&["Enter"]);

    p.wait_for("Step 4 of 9: Network");
    p.keys(&["Right", "Right"]);
    p.wait_for("Address/prefix");
    p.keys(&["Tab"]);
    p.type_text("192.0.2.10/24");
    p.keys(&["Tab"]);
    p.type_text("192.0.2.1");
    p.keys(&["Tab"]);
    p.type_text("192.0.2.53");
    p.keys(&["Enter"]);

    p.wait_for("Step 5 of 9: Host name and time zone");
    p.keys(&["C-u"]);
    p.type_text("lab-01");
    p.keys(&["Tab", "C-u"]);
    p.type_text("Europe/Berlin");
    p.keys(&["Enter"]);

    let s = p.wait_for("Step 6 of 9: Models");
    assert!(s.contains("[x] "), "the plan's models are offered, ticked: {s}");
    p.keys(&["Enter"]);
    let s = p.wait_for("Step 7 of 9: Workflow packs");
    assert!(s.contains("[x] devops") && s.contains("[x] research") && s.contains("[ ] code-review"), "{s}");
    p.keys(&["Tab", "Tab", "Tab", "Tab", "Space"]);
    p.wait_for("[x] code-review");
    p.keys(&["Enter"]);
    p.wait_for("Step 8 of 9: Cloud fallback");
    p.type_text("https://llm.example.com/v1");
    p.keys(&["Tab", "Tab"]);
    p.type_text("sk-test-key");
    p.keys(&["Enter"]);

    let s = p.wait_for("Step 9 of 9: Review");
    for line in [
        "preset: chosen from the hardware at every boot",
        "host name: lab-01",
        "time zone: Europe/Berlin",
        "admin: admin (password, 1 SSH key(s))",
        "network enp1s0: 192.0.2.10/24 via 192.0.2.1, DNS 192.0.2.53",
        "cloud fallback: https://llm.example.com/v1, with an API key",
        "workflow packs: code-review, devops, research",
    ] {
        assert!(s.contains(line), "review lacks {line:?}:\n{s}");
    }
    assert!(!root.join("var/lib/aither/configured").exists(), "nothing is written before apply");

    p.keys(&["Enter"]);
    let s = p.wait_for("AitherOS is configured.");
    assert!(s.contains("admin admin (created, uid 1000"), "{s}");
    p.keys(&["Enter"]);
    assert_eq!(p.exit_status(), 0);

    assert!(root.join("var/lib/aither/configured").is_file());
    assert_eq!(read(root, "etc/hostname"), "lab-01\n");
    assert!(read(root, "etc/passwd").contains("admin:x:1000:1000:AitherOS administrator:/home/admin:/bin/bash\n"));
    assert!(read(root, "etc/group").contains("wheel:x:10:admin\n"));
    assert!(read(root, "etc/group").contains("aither-admin:x:990:admin\n"));
    assert!(read(root, "etc/shadow").contains("\nadmin:$6$"));
    assert_eq!(read(root, "home/admin/.ssh/authorized_keys"), format!("{KEY}\n"));
    let keyfile = read(root, "etc/NetworkManager/system-connections/aither-enp1s0.nmconnection");
    assert!(keyfile.contains("address1=192.0.2.10/24,192.0.2.1\n"), "{keyfile}");
    assert!(!root.join("etc/NetworkManager/system-connections/aither-enp2s0.nmconnection").exists());
    assert!(read(root, "etc/aither/agentd.d/50-cloud.toml").contains("endpoint = \"https://llm.example.com/v1\""));
    assert_eq!(read(root, "etc/aither/cloud.key"), "sk-test-key\n");
    let packs = read(root, "etc/aither/workflows-enabled.toml");
    assert!(packs.contains("enabled = [\"code-review\", \"devops\", \"research\"]"), "{packs}");
    let record = read(root, "var/lib/aither/firstboot/answers.toml");
    assert!(!record.contains("correct horse") && !record.contains("sk-test-key"), "{record}");
}

#[test]
fn invalid_input_is_shown_on_its_page_and_quitting_changes_nothing() {
    let target = common::target();
    let root = target.path();
    let before = common::snapshot(root);
    let p = Pane::start(root);
    p.wait_for("Step 1 of 9");
    p.keys(&["Enter"]);
    p.wait_for("◀ auto (standard) ▶");
    // cpu-only asks for the cloud fallback right after the preset.
    p.keys(&["Right"]);
    p.wait_for("◀ cpu-only ▶");
    p.keys(&["Enter"]);
    let s = p.wait_for("Step 3 of 9: Cloud fallback");
    assert!(s.contains("no usable GPU"), "{s}");
    p.type_text("ftp://llm.example.com");
    p.keys(&["Enter"]);
    let s = p.wait_for("cloud.endpoint:");
    assert!(s.contains("Step 3 of 9"), "an invalid answer keeps the page: {s}");
    p.keys(&["C-u", "Enter"]);
    p.wait_for("Step 4 of 9: Administrator");
    p.keys(&["C-u"]);
    p.type_text("Root");
    p.keys(&["Enter"]);
    let s = p.wait_for("admin.user:");
    assert!(s.contains("is not a user name"), "{s}");
    p.keys(&["Escape"]);
    p.wait_for("Step 3 of 9: Cloud fallback");
    p.keys(&["C-c"]);
    p.wait_for("Quit without configuring?");
    p.keys(&["y"]);
    assert_eq!(p.exit_status(), aither_firstboot::wizard::EXIT_QUIT);
    assert_eq!(common::snapshot(root), before, "quitting wrote nothing");
}
