//! Where the answers come from, first found wins:
//!
//! 1. `--answers FILE` on the command line;
//! 2. `aither.answers=FILE` or `aither.answers=https://…` on the kernel command line (a URL is
//!    fetched, retried for a minute while the network comes up). The answers carry the
//!    admin's password hash and SSH keys: `http://` is refused, and
//!    `aither.answers.sha256=HEX` pins the content (file or URL) so that nothing else is
//!    applied;
//! 3. `/etc/aither/answers.toml`, which cloud-init user-data can write (`write_files`) — that
//!    file holds secrets, so it is removed once applied (a redacted copy is kept in
//!    `/var/lib/aither/firstboot/answers.toml`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::answers::{self, Answers, AnswersError};

pub const DEFAULT_ANSWERS: &str = "/etc/aither/answers.toml";
const CMDLINE_KEY: &str = "aither.answers=";
const CMDLINE_PIN: &str = "aither.answers.sha256=";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Named by the admin: `--answers`.
    Given(PathBuf),
    /// From the kernel command line, with the SHA-256 `aither.answers.sha256=` pins.
    KernelFile {
        path: PathBuf,
        sha256: Option<String>,
    },
    KernelUrl {
        url: String,
        sha256: Option<String>,
    },
    /// The default file under the root; removed once applied.
    Default(PathBuf),
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Given(p) | Origin::KernelFile { path: p, .. } | Origin::Default(p) => p.display().to_string(),
            Origin::KernelUrl { url, .. } => url.clone(),
        }
    }
}

/// The last value of `key` in a kernel command line.
fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline.split_whitespace().filter_map(|w| w.strip_prefix(key)).next_back().map(str::to_string)
}

/// The value of `aither.answers=` in a kernel command line.
pub fn from_cmdline(cmdline: &str) -> Option<String> {
    cmdline_value(cmdline, CMDLINE_KEY)
}

/// Find the answers for the machine under `root`; `cmdline` is the kernel's (live only).
pub fn locate(root: &Path, given: Option<&Path>, cmdline: Option<&str>) -> Option<Origin> {
    if let Some(g) = given {
        return Some(Origin::Given(g.to_path_buf()));
    }
    if let Some(v) = cmdline.and_then(from_cmdline) {
        let sha256 = cmdline.and_then(|c| cmdline_value(c, CMDLINE_PIN));
        return Some(if v.contains("://") {
            Origin::KernelUrl { url: v, sha256 }
        } else {
            Origin::KernelFile { path: PathBuf::from(v), sha256 }
        });
    }
    let default = root.join(DEFAULT_ANSWERS.trim_start_matches('/'));
    default.exists().then_some(Origin::Default(default))
}

/// Read and parse the answers at `origin`: a URL only over https, and pinned content only
/// when it matches its pin.
pub fn load(origin: &Origin) -> Result<Answers, AnswersError> {
    let refused = |reason: String| AnswersError::Refused { origin: origin.describe(), reason };
    let (text, pin) = match origin {
        Origin::Given(p) | Origin::Default(p) => return answers::read(p),
        Origin::KernelFile { path, sha256 } => {
            (std::fs::read_to_string(path).map_err(|source| AnswersError::Read { path: path.clone(), source })?, sha256)
        }
        Origin::KernelUrl { url, sha256 } => {
            if !url.starts_with("https://") {
                return Err(refused(
                    "the answers carry the admin's password hash and SSH keys, so they are fetched only over \
                     https:// (or read from a file); give an https:// URL, ideally with aither.answers.sha256="
                        .into(),
                ));
            }
            let text = fetch_url(url, Duration::from_secs(60))
                .map_err(|message| AnswersError::Syntax { path: PathBuf::from(url), message })?;
            (text, sha256)
        }
    };
    if let Some(want) = pin {
        check_pin(text.as_bytes(), want).map_err(refused)?;
    }
    answers::parse(&text, Path::new(&origin.describe()))
}

/// Whether `bytes` have the SHA-256 `want` (hex, either case); the reason when not.
fn check_pin(bytes: &[u8], want: &str) -> Result<(), String> {
    use sha2::Digest as _;
    if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("aither.answers.sha256={want:?} is not a SHA-256 (64 hexadecimal digits)"));
    }
    let got: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    if got.eq_ignore_ascii_case(want) {
        Ok(())
    } else {
        Err(format!("its SHA-256 is {got}, but aither.answers.sha256 pins {want}: nothing was applied"))
    }
}

fn fetch_url(url: &str, patience: Duration) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .user_agent(concat!("aitheros-firstboot/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let start = Instant::now();
    loop {
        match agent.get(url).call() {
            Ok(resp) => {
                return resp
                    .into_body()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_string()
                    .map_err(|e| format!("cannot read the answers: {e}"))
            }
            // 4xx will not get better; connection errors may, once the network is up.
            Err(ureq::Error::StatusCode(code)) if (400..500).contains(&code) => {
                return Err(format!("the server answered {code}"))
            }
            Err(e) if start.elapsed() >= patience => return Err(format!("cannot fetch the answers: {e}")),
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_command_line_names_a_file_or_a_url() {
        assert_eq!(
            from_cmdline("BOOT_IMAGE=/vmlinuz ro aither.answers=/run/media/answers.toml quiet").as_deref(),
            Some("/run/media/answers.toml")
        );
        assert_eq!(from_cmdline("ro quiet"), None);
        let t = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            locate(t.path(), None, Some("aither.answers=https://cfg.example/a.toml")),
            Some(Origin::KernelUrl { url: "https://cfg.example/a.toml".into(), sha256: None })
        );
        assert_eq!(locate(t.path(), None, None), None);
        std::fs::create_dir_all(t.path().join("etc/aither")).expect("dir");
        std::fs::write(t.path().join("etc/aither/answers.toml"), "schema_version = 1\n").expect("file");
        assert_eq!(locate(t.path(), None, Some("ro")), Some(Origin::Default(t.path().join("etc/aither/answers.toml"))));
        assert_eq!(
            locate(t.path(), Some(Path::new("/a.toml")), Some("aither.answers=/b")),
            Some(Origin::Given("/a.toml".into()))
        );
    }

    #[test]
    fn answers_over_plain_http_are_refused_saying_why() {
        let origin =
            locate(Path::new("/nonexistent"), None, Some("aither.answers=http://192.0.2.1/a.toml")).expect("an origin");
        let e = load(&origin).expect_err("http is refused before any request");
        assert!(matches!(e, AnswersError::Refused { .. }), "{e}");
        assert!(e.to_string().contains("https://") && e.to_string().contains("password hash"), "{e}");
    }

    #[test]
    fn pinned_answers_are_applied_only_when_their_sha256_matches() {
        use sha2::Digest as _;
        let t = tempfile::tempdir().expect("tempdir");
        let file = t.path().join("answers.toml");
        let text = "schema_version = 1\npreset = \"server\"\n";
        std::fs::write(&file, text).expect("write");
        let sha: String = sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let cmdline = |pin: &str| format!("ro aither.answers={} aither.answers.sha256={pin}", file.display());
        let origin = locate(t.path(), None, Some(&cmdline(&sha.to_ascii_uppercase()))).expect("origin");
        assert_eq!(load(&origin).expect("pinned and matching").preset.as_deref(), Some("server"));
        let other = "0".repeat(64);
        let e = load(&locate(t.path(), None, Some(&cmdline(&other))).expect("origin")).expect_err("mismatch");
        assert!(matches!(e, AnswersError::Refused { .. }) && e.to_string().contains(&sha), "{e}");
        let e = load(&locate(t.path(), None, Some(&cmdline("abc"))).expect("origin")).expect_err("not a hash");
        assert!(e.to_string().contains("not a SHA-256"), "{e}");
    }
}
