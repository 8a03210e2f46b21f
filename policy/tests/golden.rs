//! Golden tests of the tailored SELinux modules: each manifest in `selinux/tests/golden/`
//! generates exactly the `.cil` beside it (resolving labels from `labels.toml`). Run with
//! `AITHER_BLESS=1` to rewrite the expected files after an intended change; the modules are
//! also linked into a complete policy by `selinux/tests/check.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aither_policy::{self as tailored_policy, LabelError, LabelResolver, Protocol};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../selinux/tests/golden")
}

struct Labels {
    files: BTreeMap<String, String>,
    ports: BTreeMap<String, String>,
}

impl LabelResolver for Labels {
    fn file_type(&self, path: &Path) -> Result<String, LabelError> {
        let p = path.to_string_lossy();
        self.files
            .iter()
            .filter(|(k, _)| k.as_str() == "/" || p == k.as_str() || p.starts_with(&format!("{k}/")))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, t)| t.clone())
            .ok_or_else(|| LabelError::Unlabelled(path.to_path_buf()))
    }
    fn port_type(&self, protocol: Protocol, port: u16) -> Result<Option<String>, LabelError> {
        Ok(self.ports.get(&format!("{}/{port}", protocol.name())).cloned())
    }
}

fn labels() -> Labels {
    #[derive(serde::Deserialize)]
    struct File {
        files: BTreeMap<String, String>,
        ports: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(golden_dir().join("labels.toml")).expect("labels.toml");
    let f: File = toml::from_str(&text).expect("labels.toml parses");
    Labels { files: f.files, ports: f.ports }
}

#[test]
fn every_golden_manifest_generates_its_cil() {
    let bless = std::env::var_os("AITHER_BLESS").is_some();
    let resolver = labels();
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("golden dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.ends_with("labels.toml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 3, "golden manifests present");
    for manifest in manifests {
        let (name, perms) = tailored_policy::read_manifest(&manifest).expect("manifest reads");
        let policy = tailored_policy::generate(&name, &perms, &resolver).expect("generates");
        let expected_path = golden_dir().join(format!("{}.cil", policy.module));
        if bless {
            std::fs::write(&expected_path, &policy.cil).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with AITHER_BLESS=1 to create it)", expected_path.display()));
        assert_eq!(policy.cil, expected, "{} differs from {}", manifest.display(), expected_path.display());
    }
}
