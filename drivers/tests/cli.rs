//! `aither-drivers` as the service runs it, on machines that need nothing installed.

use std::process::Command;

use aither_test_support::{bin, fixture};

fn drivers(args: &[&str]) -> std::process::Output {
    Command::new(bin("aither-drivers")).args(args).output().expect("aither-drivers runs")
}

#[test]
fn a_machine_without_gpus_needs_nothing_and_touches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("drivers.json");
    let profile = fixture("profiles/kvm-cpu-only.json");
    let out =
        drivers(&["plan", "--profile", profile.to_str().expect("utf-8"), "--state", state.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Drivers  no GPU: nothing to install\n");
    assert!(!state.exists(), "plan records nothing");
}

#[test]
fn a_bad_table_or_profile_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("drivers.toml");
    std::fs::write(&table, "[nvidia-closed]\npackages = []\n").expect("write");
    let profile = fixture("profiles/kvm-cpu-only.json");
    let out =
        drivers(&["plan", "--profile", profile.to_str().expect("utf-8"), "--table", table.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}: [nvidia-closed] is not a driver stack", table.display())), "{err}");

    let out = drivers(&["plan", "--profile", table.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}: not a hardware profile", table.display())), "{err}");
}

#[test]
fn aither_hwprofile_drivers_is_the_same_command() {
    let profile = fixture("profiles/kvm-cpu-only.json");
    let out = Command::new(bin("aither-hwprofile"))
        .args(["drivers", "plan", "--format", "json", "--profile", profile.to_str().expect("utf-8")])
        .output()
        .expect("aither-hwprofile runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(plan["gpus"], serde_json::json!({}));
}
