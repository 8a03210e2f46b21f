//! The generator's rules, and what an attacker's manifest cannot get into a module.

use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

struct Fixed(BTreeMap<&'static str, &'static str>);

impl LabelResolver for Fixed {
    fn file_type(&self, path: &Path) -> Result<String, LabelError> {
        // Longest matching prefix, as file contexts behave for these simple cases.
        let p = path.to_string_lossy();
        self.0
            .iter()
            .filter(|(k, _)| p == **k || p.starts_with(&format!("{}/", k.trim_end_matches('/'))) || **k == "/")
            .max_by_key(|(k, _)| k.len())
            .map(|(_, t)| (*t).to_string())
            .ok_or_else(|| LabelError::Unlabelled(path.to_path_buf()))
    }
    fn port_type(&self, _: Protocol, port: u16) -> Result<Option<String>, LabelError> {
        Ok(match port {
            5432 => Some("postgresql_port_t".into()),
            _ => None,
        })
    }
}

fn labels() -> Fixed {
    Fixed(BTreeMap::from([
        ("/", "root_t"),
        ("/srv", "var_t"),
        ("/home", "home_root_t"),
        ("/home/alice", "user_home_dir_t"),
        ("/etc", "etc_t"),
    ]))
}

fn perms(text: &str) -> Permissions {
    toml::from_str(text).expect("permissions parse")
}

#[test]
fn a_manifest_without_permissions_needs_no_module() {
    assert!(!needs_module(&Permissions::default()));
    assert!(needs_module(&perms("network = \"gateway\"")));
}

#[test]
fn names_become_type_stems_or_are_refused() {
    assert_eq!(type_stem("web-research").as_deref(), Ok("web_research"));
    assert!(matches!(type_stem("Bad Name"), Err(PolicyError::Name { .. })));
    assert!(matches!(type_stem("9lives"), Err(PolicyError::Name { .. })));
    assert!(matches!(type_stem(""), Err(PolicyError::Name { .. })));
}

#[test]
fn home_directories_and_system_writes_are_refused_naming_the_field() {
    let p = perms(
        "paths = [{ path = \"/srv/data\", access = \"read\" }, { path = \"/home/alice/notes\", access = \"read\" }]",
    );
    let err = generate("a", &p, &labels()).expect_err("home is forbidden");
    assert!(matches!(err, PolicyError::Field { ref field, .. } if field == "permissions.paths[1]"), "{err}");
    let p = perms("paths = [{ path = \"/etc/hosts\", access = \"write\" }]");
    let err = generate("a", &p, &labels()).expect_err("etc_t is read-only");
    assert!(err.to_string().contains("etc_t"), "{err}");
    let p = perms("paths = [{ path = \"relative\", access = \"read\" }]");
    assert!(matches!(generate("a", &p, &labels()), Err(PolicyError::Field { .. })));
}

#[test]
fn ports_are_checked() {
    let p = perms("network = \"loopback\"\nports = [{ port = 80, access = \"bind\" }]");
    assert!(generate("a", &p, &labels()).expect_err("privileged").to_string().contains("privileged"));
    let p = perms("ports = [{ port = 5432, access = \"connect\" }]");
    assert!(generate("a", &p, &labels()).expect_err("network none").to_string().contains("network"));
    let p = perms("network = \"outbound\"\nports = [{ port = 70000, access = \"connect\" }]");
    assert!(matches!(generate("a", &p, &labels()), Err(PolicyError::Field { .. })));
}

#[test]
fn unknown_manifest_keys_are_rejected() {
    assert!(toml::from_str::<Permissions>("netwrok = \"outbound\"").is_err());
    assert!(toml::from_str::<Permissions>("network = \"everything\"").is_err());
}

#[test]
fn install_writes_the_file_and_calls_semodule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let fake = dir.path().join("semodule");
    std::fs::write(&fake, format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display())).expect("write");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let policy = generate("a", &perms("network = \"gateway\""), &labels()).expect("generates");
    let path = install(&policy, &dir.path().join("cil"), &fake).expect("installs");
    assert_eq!(std::fs::read_to_string(&path).expect("cil"), policy.cil);
    remove(&policy.module, &dir.path().join("cil"), &fake).expect("removes");
    let calls = std::fs::read_to_string(&log).expect("log");
    assert_eq!(calls, format!("-i {}\n-r aither_agent_a\n", path.display()));
    assert!(!path.exists());
}

#[test]
fn manifest_strings_that_could_break_out_of_the_module_are_refused() {
    for (path, what) in [
        ("/srv/x\n(typepermissive aither_agent_a_t)", "a newline"),
        ("/srv/x\r;; y", "a carriage return"),
        ("/srv/\"quoted\"", "a quote"),
        ("/srv/a)(allow", "a parenthesis"),
        ("/srv/a;b", "a semicolon"),
        ("/srv/a\\b", "a backslash"),
        ("/srv/../etc", "a parent directory"),
        ("/srv/\u{0}x", "a NUL"),
        ("/srv/caf\u{e9}", "a non-ASCII letter"),
    ] {
        let p = Permissions {
            paths: vec![PathGrant { path: PathBuf::from(path), access: Access::Read }],
            ..Permissions::default()
        };
        let err = generate("a", &p, &labels()).expect_err(what);
        assert!(
            matches!(err, PolicyError::Field { ref field, .. } if field == "permissions.paths[0]"),
            "{what}: {err}"
        );
    }
}

#[test]
fn a_type_the_policy_tools_answer_is_checked_too() {
    struct Lying;
    impl LabelResolver for Lying {
        fn file_type(&self, _: &Path) -> Result<String, LabelError> {
            Ok("var_t) (typepermissive aither_agent_t".into())
        }
        fn port_type(&self, _: Protocol, _: u16) -> Result<Option<String>, LabelError> {
            Ok(Some("x y".into()))
        }
    }
    let p = perms("paths = [{ path = \"/srv/data\", access = \"read\" }]");
    assert!(matches!(generate("a", &p, &Lying), Err(PolicyError::Resolve { .. })));
    let p = perms("network = \"outbound\"\nports = [{ port = 5432, access = \"connect\" }]");
    assert!(matches!(generate("a", &p, &Lying), Err(PolicyError::Resolve { .. })));
}

/// A reader for the CIL the generator writes: comments, lists, quoted strings, atoms.
#[derive(Debug, Clone, PartialEq)]
enum Sexp {
    Atom(String),
    Str(String),
    List(Vec<Sexp>),
}

fn parse_line(line: &str) -> Result<Sexp, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let sexp = parse_at(&chars, &mut i)?;
    if i != chars.len() {
        return Err(format!("text after the statement: {line:?}"));
    }
    Ok(sexp)
}

fn parse_at(c: &[char], i: &mut usize) -> Result<Sexp, String> {
    match c.get(*i) {
        Some('(') => {
            *i += 1;
            let mut items = Vec::new();
            loop {
                match c.get(*i) {
                    Some(')') => {
                        *i += 1;
                        return Ok(Sexp::List(items));
                    }
                    Some(' ') => *i += 1,
                    Some(_) => items.push(parse_at(c, i)?),
                    None => return Err("unclosed list".into()),
                }
            }
        }
        Some('"') => {
            *i += 1;
            let start = *i;
            while c.get(*i).is_some_and(|ch| *ch != '"') {
                *i += 1;
            }
            if c.get(*i).is_none() {
                return Err("unclosed string".into());
            }
            let s: String = c[start..*i].iter().collect();
            *i += 1;
            Ok(Sexp::Str(s))
        }
        Some(_) => {
            let start = *i;
            while c.get(*i).is_some_and(|ch| !matches!(ch, '(' | ')' | ' ' | '"' | ';')) {
                *i += 1;
            }
            if start == *i {
                return Err(format!("unexpected {:?}", c[*i]));
            }
            Ok(Sexp::Atom(c[start..*i].iter().collect()))
        }
        None => Err("unexpected end".into()),
    }
}

fn atom(s: &Sexp) -> Option<&str> {
    match s {
        Sexp::Atom(a) => Some(a),
        _ => None,
    }
}

fn ident_ok(s: &Sexp) -> bool {
    atom(s).is_some_and(|a| Ident::new(a).is_some())
}

/// Every line is blank, a comment, or one statement of an allowed kind about the
/// agent's own types; returns the problem otherwise.
fn only_allowed_statements(cil: &str, stem: &str) -> Result<(), String> {
    let own =
        |s: &Sexp| atom(s).is_some_and(|a| a.starts_with(&format!("aither_agent_{stem}_")) && Ident::new(a).is_some());
    for line in cil.lines() {
        if line.is_empty() || line.starts_with(";;") {
            continue;
        }
        let Sexp::List(items) = parse_line(line)? else { return Err(format!("not a statement: {line:?}")) };
        let head = items.first().and_then(atom).unwrap_or("");
        let ok = match (head, items.as_slice()) {
            ("type", [_, t]) => own(t),
            ("roletype", [_, r, t]) => matches!(atom(r), Some("system_r" | "object_r")) && own(t),
            ("typeattributeset", [_, a, Sexp::List(members)]) => {
                ident_ok(a) && atom(a) != Some("permissive") && members.iter().all(own)
            }
            ("allow", [_, from, to, Sexp::List(class_perms)]) => {
                (own(from) || atom(from) == Some("agentd_t"))
                    && ident_ok(to)
                    && matches!(class_perms.as_slice(), [class, Sexp::List(perms)]
                        if ident_ok(class) && perms.iter().all(ident_ok))
            }
            ("filecon", [_, Sexp::Str(re), kind, Sexp::List(ctx)]) => {
                !re.contains('\n')
                    && atom(kind) == Some("any")
                    && matches!(ctx.as_slice(), [u, r, t, Sexp::List(_)]
                        if atom(u) == Some("system_u") && atom(r) == Some("object_r") && own(t))
            }
            _ => false,
        };
        if !ok {
            return Err(format!("statement not allowed: {line:?}"));
        }
    }
    Ok(())
}

#[test]
fn the_reader_finds_an_injected_statement() {
    let cil = ";; ok\n(type aither_agent_a_t)\n(typepermissive aither_agent_a_t)\n";
    assert!(only_allowed_statements(cil, "a").is_err());
    assert!(only_allowed_statements("(allow aither_agent_a_t x (file (read))) (type y)\n", "a").is_err());
    assert!(only_allowed_statements("(allow aither_agent_a_t x (file (read)))\n", "a").is_ok());
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Strings built from the characters that matter to CIL and file contexts.
    fn hostile_text() -> impl Strategy<Value = String> {
        prop_oneof![
            // Absolute paths with the characters that matter to CIL and file contexts.
            "/[/a-z0-9 ._*+?^$|\\[\\]{}()\";\\\\\n\r\t-]{0,24}",
            "[/a-z0-9 ._*+?^$|\\[\\]{}()\";\\\\\n\r\t-]{0,24}",
            "/[a-z]{1,8}(/[a-z .]{1,8}){0,3}",
            any::<String>(),
        ]
    }

    fn grant() -> impl Strategy<Value = PathGrant> {
        (hostile_text(), any::<bool>()).prop_map(|(p, w)| PathGrant {
            path: PathBuf::from(p),
            access: if w { Access::Write } else { Access::Read },
        })
    }

    fn port() -> impl Strategy<Value = PortGrant> {
        (0u32..70_000, any::<bool>(), any::<bool>()).prop_map(|(port, udp, bind)| PortGrant {
            port,
            protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
            access: if bind { PortAccess::Bind } else { PortAccess::Connect },
        })
    }

    /// A resolver that answers from the fixed labels, or with a hostile string.
    struct Answers(Option<String>);
    impl LabelResolver for Answers {
        fn file_type(&self, path: &Path) -> Result<String, LabelError> {
            match &self.0 {
                Some(t) => Ok(t.clone()),
                None => labels().file_type(path),
            }
        }
        fn port_type(&self, p: Protocol, port: u16) -> Result<Option<String>, LabelError> {
            match &self.0 {
                Some(t) => Ok(Some(t.clone())),
                None => labels().port_type(p, port),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn hostile_manifests_are_refused_or_yield_only_allowed_statements(
            network in 0usize..4,
            paths in proptest::collection::vec(grant(), 0..4),
            ports in proptest::collection::vec(port(), 0..3),
            answer in proptest::option::of(hostile_text()),
            name in "[a-z][a-z0-9_-]{0,12}",
        ) {
            let network = [Network::None, Network::Gateway, Network::Loopback, Network::Outbound][network];
            let p = Permissions { network, paths, ports };
            if let Ok(policy) = generate(&name, &p, &Answers(answer)) {
                let stem = type_stem(&name).expect("a generated module has a valid name");
                prop_assert_eq!(only_allowed_statements(&policy.cil, &stem), Ok(()), "{}", policy.cil);
            }
        }
    }
}
