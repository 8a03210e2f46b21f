//! The headless path through the binary, against a target tree: an answers file applied,
//! refused, checked, taken from the default place, and a failure that changes nothing.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{read, write, KEY};

const ANSWERS: &str = r#"schema_version = 1
preset = "server"
[system]
hostname = "gpu-node-7"
timezone = "UTC"
[admin]
user = "ops"
password = "correct horse battery"
ssh_keys = ["KEY"]
[[network]]
interface = "enp1s0"
method = "dhcp"
[cloud]
endpoint = "https://llm.example.com/v1"
model = "gpt-4o-mini"
api_key = "sk-secret"
"#;

fn answers() -> String {
    ANSWERS.replace("KEY", KEY)
}

fn firstboot(root: &Path, args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(["--root", root.to_str().expect("utf-8"), "--profile", common::profile().to_str().expect("utf-8")])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn an_answers_file_configures_the_machine_once() {
    let target = common::target();
    let root = target.path();
    let file = root.join("answers.toml");
    std::fs::write(&file, answers()).expect("answers");
    let o = firstboot(root, &["--answers", file.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("admin ops (created, uid 1000"), "{}", text(&o));

    assert_eq!(read(root, "etc/hostname"), "gpu-node-7\n");
    assert_eq!(std::fs::read_link(root.join("etc/localtime")).expect("link"), Path::new("../usr/share/zoneinfo/UTC"));
    let appliance = read(root, "etc/aither/appliance.toml");
    assert_eq!(
        aither_plan::data::pinned_preset(&root.join("etc/aither/appliance.toml")).expect("reads"),
        Some("server".into())
    );
    assert!(appliance.contains("schema_version = 1"), "{appliance}");
    let shadow = read(root, "etc/shadow");
    let hash =
        shadow.lines().find_map(|l| l.strip_prefix("ops:")).and_then(|l| l.split(':').next()).expect("ops in shadow");
    assert!(hash.starts_with("$6$"));
    assert!(read(root, "etc/gshadow").contains("wheel:::ops\n"));
    let keyfile = read(root, "etc/NetworkManager/system-connections/aither-enp1s0.nmconnection");
    assert!(keyfile.contains("[ipv4]\nmethod=auto\n"));
    {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(root.join("etc/aither/cloud.key")).expect("key");
        assert_eq!(m.mode() & 0o777, 0o600);
        let home = std::fs::metadata(root.join("home/ops")).expect("home");
        assert_eq!((home.uid(), home.mode() & 0o777), (1000, 0o700));
        assert!(root.join("home/ops/.bashrc").is_file(), "/etc/skel is copied");
    }
    // The cloud fallback is a file agentd accepts.
    let cfg = agentd_accepts(root);
    assert!(cfg.contains("gpt-4o-mini"), "{cfg}");
    // The server preset's packs, written as agentd reads them.
    let packs = read(root, "etc/aither/workflows-enabled.toml");
    let switches: aither_api::workflow::WorkflowSwitches =
        toml::from_str(&packs).unwrap_or_else(|e| panic!("{e}: {packs}"));
    assert_eq!(switches.enabled.iter().collect::<Vec<_>>(), ["code-review", "devops"]);
    // The given answers file is the admin's: it stays. The record has no secrets.
    assert!(file.exists());
    let record = read(root, "var/lib/aither/firstboot/answers.toml");
    assert!(!record.contains("correct horse") && !record.contains("sk-secret") && record.contains("gpu-node-7"));

    let before = common::snapshot(root);
    let again = firstboot(root, &["--answers", file.to_str().expect("utf-8")]);
    assert!(again.status.success());
    assert!(text(&again).contains("already configured"), "{}", text(&again));
    assert_eq!(common::snapshot(root), before);
}

/// agentd's configuration loader, on its defaults and the file first boot wrote.
fn agentd_accepts(root: &Path) -> String {
    let sources = vec![
        ("agentd.toml".to_string(), agentd::config::DEFAULTS.to_string()),
        ("50-cloud.toml".to_string(), read(root, "etc/aither/agentd.d/50-cloud.toml")),
    ];
    let settings = agentd::config::from_sources(&sources).unwrap_or_else(|e| panic!("agentd refuses it: {e}"));
    let cloud = settings.cloud.expect("the cloud fallback");
    assert_eq!(cloud.endpoint, "https://llm.example.com/v1");
    assert_eq!(cloud.api_key_file.as_deref(), Some(Path::new("/etc/aither/cloud.key")));
    format!("{cloud:?}")
}

#[test]
fn invalid_answers_change_nothing_and_name_every_problem() {
    let target = common::target();
    let root = target.path();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let file = elsewhere.path().join("answers.toml");
    std::fs::write(&file, answers().replace("gpu-node-7", "gpu_node").replace("\"UTC\"", "\"Moon/Base\""))
        .expect("answers");
    let before = common::snapshot(root);
    let o = firstboot(root, &["--answers", file.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(aither_firstboot::cli::EXIT_INVALID), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains(&format!("{}: 2 problems", file.display())), "{t}");
    assert!(t.contains("system.hostname:") && t.contains("system.timezone:"), "{t}");
    assert!(t.contains("nothing was changed"), "{t}");
    assert_eq!(common::snapshot(root), before);

    std::fs::write(&file, "schema_version = 1\n[admin]\nuser = \"ops\"\npasword = \"x\"\n").expect("answers");
    let o = firstboot(root, &["--answers", file.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(aither_firstboot::cli::EXIT_INVALID));
    assert!(text(&o).contains("line 4") && text(&o).contains("pasword"), "{}", text(&o));
    assert_eq!(common::snapshot(root), before);
}

#[test]
fn check_says_what_would_be_written_and_writes_nothing() {
    let target = common::target();
    let root = target.path();
    let file = root.join("answers.toml");
    std::fs::write(&file, answers()).expect("answers");
    let before = common::snapshot(root);
    let o = firstboot(root, &["--check", "--answers", file.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("preset: server, pinned") && t.contains("network enp1s0: DHCP"), "{t}");
    assert_eq!(common::snapshot(root), before);
}

#[test]
fn the_default_answers_file_is_applied_and_removed() {
    let target = common::target();
    let root = target.path();
    write(root, "etc/aither/answers.toml", &answers());
    let o = firstboot(root, &["--headless"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!root.join("etc/aither/answers.toml").exists(), "it held a password: removed once applied");
    assert!(read(root, "var/lib/aither/firstboot/answers.toml").contains("(redacted)"));
    assert!(root.join("var/lib/aither/configured").exists());
}

#[test]
fn headless_without_answers_applies_the_defaults_and_without_a_console_refuses() {
    let target = common::target();
    let root = target.path();
    let before = common::snapshot(root);
    let o = firstboot(root, &[]);
    assert_eq!(o.status.code(), Some(aither_firstboot::cli::EXIT_UNAVAILABLE), "{}", text(&o));
    assert_eq!(common::snapshot(root), before);
    let o = firstboot(root, &["--headless"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(root.join("var/lib/aither/configured").exists());
    assert_eq!(aither_plan::data::pinned_preset(&root.join("etc/aither/appliance.toml")).expect("reads"), None);
    // The packs of the preset the hardware selects (standard: devops and research).
    let packs = read(root, "etc/aither/workflows-enabled.toml");
    assert!(packs.contains("enabled = [\"devops\", \"research\"]"), "{packs}");
}

#[test]
fn where_cloud_init_ran_nobody_is_asked() {
    let target = common::target();
    let root = target.path();
    write(root, "run/cloud-init/result.json", "{\"v1\": {\"errors\": []}}\n");
    let o = firstboot(root, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("applying the defaults"), "{}", text(&o));
    assert!(root.join("var/lib/aither/configured").exists());
}

#[test]
fn a_failure_while_staging_leaves_the_machine_unconfigured() {
    let target = common::target();
    let root = target.path();
    // ops's home is in the way: a file where the directory should be.
    write(root, "etc/passwd", &(read(root, "etc/passwd") + "ops:x:1000:1000::/home/ops:/bin/bash\n"));
    write(root, "etc/group", &(read(root, "etc/group") + "ops:x:1000:\n"));
    write(root, "home/ops", "not a directory");
    let file = root.join("answers.toml");
    std::fs::write(&file, answers()).expect("answers");
    let before = common::snapshot(root);
    let o = firstboot(root, &["--answers", file.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(aither_firstboot::cli::EXIT_CANTCREAT), "{}", text(&o));
    assert!(text(&o).contains("nothing was changed") && text(&o).contains("home/ops"), "{}", text(&o));
    assert_eq!(common::snapshot(root), before);
}

#[test]
fn a_model_that_cannot_be_fetched_is_a_warning_and_the_configuration_stays() {
    let target = common::target();
    let root = target.path();
    let usb = tempfile::tempdir().expect("usb");
    let file = root.join("answers.toml");
    let text_in = format!(
        "schema_version = 1\n[models]\nfetch = \"now\"\nsource = \"{}\"\nnames = [\"all-minilm-l6-v2\"]\n",
        usb.path().display()
    );
    std::fs::write(&file, text_in).expect("answers");
    let o = firstboot(root, &["--answers", file.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("warning: model all-minilm-l6-v2:") && t.contains("aither-firstboot fetch-models all-minilm-l6-v2"),
        "{t}"
    );
    assert!(root.join("var/lib/aither/configured").exists());

    // Once the file is on the stick, fetch-models copies it.
    std::fs::write(usb.path().join("all-MiniLM-L6-v2-ggml-model-f16.gguf"), b"GGUF stand-in").expect("model");
    let o = firstboot(root, &["fetch-models", "all-minilm-l6-v2", "--source", usb.path().to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("model all-minilm-l6-v2: fetched"), "{}", text(&o));
    assert_eq!(
        std::fs::read(root.join("var/lib/aither/models/all-MiniLM-L6-v2-ggml-model-f16.gguf")).expect("copied"),
        b"GGUF stand-in"
    );
}
