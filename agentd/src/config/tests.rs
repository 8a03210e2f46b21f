//! Configuration files merged, checked, and every error naming its file and key.

use super::*;

fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![("defaults.toml".to_string(), DEFAULTS.to_string())];
    v.extend(extra.iter().map(|(f, t)| ((*f).to_string(), (*t).to_string())));
    v
}

#[test]
fn the_shipped_defaults_are_valid() {
    let s = from_sources(&with(&[])).expect("defaults");
    assert_eq!(s.state_dir, PathBuf::from("/var/lib/aither"));
    assert!(s.gateway_listen.contains(&Listen::Tcp("127.0.0.1:8080".parse().expect("addr"))));
    assert_eq!(s.agents_max_concurrent, 0);
}

#[test]
fn later_files_override_earlier_ones_key_by_key() {
    let s = from_sources(&with(&[
        ("etc/agentd.toml", "[agents]\nmemory_max = \"4G\"\npids_max = 64\n"),
        ("etc/agentd.d/10-small.toml", "[agents]\npids_max = 32\n"),
    ]))
    .expect("valid");
    assert_eq!((s.agent_memory_max, s.agent_pids_max), (4 << 30, 32));
    assert_eq!(s.infer_binary, PathBuf::from("/usr/libexec/aither/aither-infer"), "untouched keys keep their value");
}

#[test]
fn an_unknown_key_names_the_file_and_the_key() {
    let err = from_sources(&with(&[("etc/agentd.d/50-typo.toml", "[agents]\nmax_concurent = 3\n")])).expect_err("typo");
    assert!(
        matches!(err, ConfigError::Parse { ref file, ref message } if file == "etc/agentd.d/50-typo.toml" && message.contains("max_concurent")),
        "{err}"
    );
    let err = from_sources(&with(&[("x.toml", "[gatway]\n")])).expect_err("unknown table");
    assert!(err.to_string().contains("gatway"), "{err}");
}

#[test]
fn an_invalid_value_names_the_file_that_set_it() {
    let err = from_sources(&with(&[("etc/agentd.toml", "[agents]\nmemory_max = \"lots\"\n")])).expect_err("bad size");
    assert!(
        matches!(err, ConfigError::Invalid { ref file, ref key, .. } if file == "etc/agentd.toml" && key == "agents.memory_max"),
        "{err}"
    );
    let err =
        from_sources(&without_key(&[("run.toml", "[gateway]\nlisten = [\"0.0.0.0:8080\"]\n")])).expect_err("no key");
    assert!(
        matches!(err, ConfigError::Invalid { ref file, ref key, .. } if file == "run.toml" && key == "gateway.listen"),
        "{err}"
    );
    let ok = from_sources(&with(&[(
        "run.toml",
        "[gateway]\nlisten = [\"0.0.0.0:8080\"]\napi_key_file = \"/etc/aither/gateway.key\"\n",
    )]));
    assert!(ok.is_ok(), "an API key allows listening beyond loopback");
    let err = from_sources(&with(&[("d.toml", "[daemon]\nstate_dir = \"relative\"\n")])).expect_err("relative");
    assert!(matches!(err, ConfigError::Invalid { ref key, .. } if key == "daemon.state_dir"), "{err}");
    let err = from_sources(&with(&[("d.toml", "[gateway]\nlisten = [\"localhost\"]\n")])).expect_err("no port");
    assert!(matches!(err, ConfigError::Invalid { ref key, .. } if key == "gateway.listen[0]"), "{err}");
}

/// The shipped defaults without their gateway key.
fn without_key(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let base = DEFAULTS.replace("api_key_file = \"/etc/aither/gateway.key\"", "");
    let mut v = vec![("defaults.toml".to_string(), base)];
    v.extend(extra.iter().map(|(f, t)| ((*f).to_string(), (*t).to_string())));
    v
}

#[test]
fn tcp_without_a_key_is_refused_unless_the_admin_opts_out_for_loopback() {
    let err = from_sources(&without_key(&[])).expect_err("loopback TCP without a key");
    assert!(matches!(err, ConfigError::Invalid { ref key, .. } if key == "gateway.api_key_file"), "{err}");
    let s = from_sources(&without_key(&[("opt-out.toml", "[gateway]\nallow_tcp_without_key = true\n")]))
        .expect("an explicit opt-out on loopback");
    assert!(s.gateway_allow_tcp_without_key && s.gateway_api_key_file.is_none());
    let err = from_sources(&without_key(&[(
        "opt-out.toml",
        "[gateway]\nallow_tcp_without_key = true\nlisten = [\"0.0.0.0:8080\"]\n",
    )]))
    .expect_err("beyond loopback, never without a key");
    assert!(matches!(err, ConfigError::Invalid { ref key, .. } if key == "gateway.listen"), "{err}");
    let s = from_sources(&without_key(&[("unix.toml", "[gateway]\nlisten = [\"unix:/run/aither/g.sock\"]\n")]))
        .expect("a Unix socket alone needs no key");
    assert!(s.gateway_api_key.is_none());
}

#[test]
fn configured_keys_that_cannot_be_read_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("gateway.key");
    let with_key = |text: &str| {
        from_sources(&with(&[("k.toml", &format!("[gateway]\napi_key_file = {:?}\n", key.display().to_string()))]))
            .map(|mut s| {
                if !text.is_empty() {
                    std::fs::write(&key, text).expect("write");
                }
                (read_keys(&mut s), s)
            })
            .expect("valid")
    };
    let (missing, _) = with_key("");
    assert!(matches!(missing, Err(ConfigError::Key { key: "gateway.api_key_file", .. })), "{missing:?}");
    let (empty, _) = with_key("\n");
    let e = empty.expect_err("empty");
    assert!(e.to_string().contains("gateway.key") && e.to_string().contains("empty"), "{e}");
    let (ok, s) = with_key("s3cret\n");
    ok.expect("readable");
    assert_eq!(s.gateway_api_key.as_ref().map(Secret::expose), Some("s3cret"));
    let mut cloud = from_sources(&with(&[(
        "c.toml",
        "[cloud]\nendpoint = \"https://api.example.com/v1\"\napi_key_file = \"/nonexistent/cloud.key\"\n",
    )]))
    .expect("valid");
    cloud.gateway_api_key_file = None;
    assert!(matches!(read_keys(&mut cloud), Err(ConfigError::Key { key: "cloud.api_key_file", .. })));
}

#[test]
fn listener_limits_are_read_and_checked() {
    let s = from_sources(&with(&[(
        "l.toml",
        "[gateway]\nheader_timeout_seconds = 20\nidle_timeout_seconds = 5\nmax_connections = 64\nmax_body_size = \"1M\"\n",
    )]))
    .expect("valid");
    assert_eq!(s.gateway_limits.header_timeout, std::time::Duration::from_secs(20));
    assert_eq!((s.gateway_limits.max_connections, s.gateway_limits.max_body_bytes), (64, 1 << 20));
    let err = from_sources(&with(&[("l.toml", "[gateway]\nidle_timeout_seconds = 60\n")])).expect_err("idle > header");
    assert!(
        matches!(err, ConfigError::Invalid { ref file, ref key, .. } if file == "l.toml" && key == "gateway.idle_timeout_seconds"),
        "{err}"
    );
    let err = from_sources(&with(&[("l.toml", "[gateway]\nmax_connections = 0\n")])).expect_err("zero");
    assert!(matches!(err, ConfigError::Invalid { ref key, .. } if key == "gateway.max_connections"), "{err}");
    let err = from_sources(&with(&[("h.toml", "[gateway]\nallowed_hosts = [\"ok.example\", \"evil example\"]\n")]))
        .expect_err("not a host name");
    assert!(matches!(err, ConfigError::Invalid { ref key, .. } if key == "gateway.allowed_hosts[1]"), "{err}");
}

#[test]
fn a_cloud_endpoint_in_clear_text_is_accepted_only_on_loopback() {
    for ok in ["https://api.example.com/v1", "http://127.0.0.1:9999/v1", "http://localhost:8000/v1", "http://[::1]/v1"]
    {
        assert!(from_sources(&with(&[("c.toml", &format!("[cloud]\nendpoint = {ok:?}\n"))])).is_ok(), "{ok}");
    }
    for bad in ["http://api.example.com/v1", "http://10.0.0.5:8000/v1", "https://user:pw@api.example.com/v1"] {
        let err = from_sources(&with(&[("c.toml", &format!("[cloud]\nendpoint = {bad:?}\n"))])).expect_err(bad);
        assert!(matches!(err, ConfigError::Invalid { ref key, .. } if key == "cloud.endpoint"), "{bad}: {err}");
    }
}

#[test]
fn the_cloud_fallback_first_boot_writes_is_accepted_and_checked() {
    let ok = from_sources(&with(&[(
        "50-cloud.toml",
        "[cloud]\nendpoint = \"https://api.example.com/v1/\"\nmodel = \"gpt-4o-mini\"\napi_key_file = \"/etc/aither/cloud.key\"\n",
    )]))
    .expect("valid");
    let cloud = ok.cloud.expect("cloud");
    assert_eq!(cloud.endpoint, "https://api.example.com/v1");
    assert_eq!(cloud.api_key_file.as_deref(), Some(Path::new("/etc/aither/cloud.key")));
    let err = from_sources(&with(&[("c.toml", "[cloud]\nendpoint = \"ftp://x\"\n")])).expect_err("ftp");
    assert!(
        matches!(err, ConfigError::Invalid { ref file, ref key, .. } if file == "c.toml" && key == "cloud.endpoint"),
        "{err}"
    );
    let err = from_sources(&with(&[("c.toml", "[cloud]\nmodel = \"m\"\n")])).expect_err("no endpoint");
    assert!(matches!(err, ConfigError::Invalid { ref key, .. } if key == "cloud.endpoint"), "{err}");
}

#[test]
fn files_are_found_in_precedence_order() {
    let root = tempfile::tempdir().expect("tempdir");
    for (p, t) in [
        ("usr/share/aither/agentd.toml", DEFAULTS),
        ("etc/aither/agentd.d/20-b.toml", "[agents]\npids_max = 20\n"),
        ("etc/aither/agentd.d/10-a.toml", "[agents]\npids_max = 10\n"),
        ("run/aither/agentd.d/00-run.toml", "[agents]\npids_max = 99\n"),
    ] {
        let path = root.path().join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, t).expect("write");
    }
    let s = load(root.path()).expect("valid");
    assert_eq!(s.agent_pids_max, 99, "/run overrides /etc");
    let names: Vec<&str> = s.sources.iter().map(|f| f.rsplit('/').next().unwrap_or("")).collect();
    assert_eq!(names, vec!["agentd.toml", "10-a.toml", "20-b.toml", "00-run.toml"]);
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("512M"), Some(512 << 20));
    assert_eq!(parse_size("1.5G"), Some(3 << 29));
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("0"), None);
    assert_eq!(parse_size("12Q"), None);
}

#[test]
fn a_webhook_is_https_or_loopback_and_its_key_file_must_be_readable() {
    let s =
        from_sources(&with(&[("w.toml", "[workflows]\nwebhook = \"https://hooks.example/aither\"\n")])).expect("https");
    assert_eq!(s.webhook.as_deref(), Some("https://hooks.example/aither"));
    from_sources(&with(&[("w.toml", "[workflows]\nwebhook = \"http://127.0.0.1:9000/hook\"\n")])).expect("loopback");
    let err = from_sources(&with(&[("w.toml", "[workflows]\nwebhook = \"http://hooks.example/aither\"\n")]))
        .expect_err("clear text");
    assert!(err.to_string().starts_with("w.toml: workflows.webhook: "), "{err}");
    let err = from_sources(&with(&[("w.toml", "[workflows]\nwebhook_key_file = \"/etc/aither/webhook.key\"\n")]))
        .expect_err("a key without a webhook");
    assert!(err.to_string().contains("workflows.webhook: missing"), "{err}");
    let mut s = from_sources(&with(&[(
        "w.toml",
        "[workflows]\nwebhook = \"https://hooks.example/a\"\nwebhook_key_file = \"/nonexistent/webhook.key\"\n",
    )]))
    .expect("valid");
    s.gateway_api_key_file = None;
    let err = read_keys(&mut s).expect_err("an unreadable key stops agentd");
    assert!(err.to_string().starts_with("workflows.webhook_key_file: "), "{err}");
}
