//! Where the answers come from, first found wins:
//!
//! 1. `--answers FILE` on the command line;
//! 2. `aither.answers=FILE` or `aither.answers=https://…` on the kernel command line (a URL is
//!    fetched, retried for a minute while the network comes up);
//! 3. `/etc/aither/answers.toml`, which cloud-init user-data can write (`write_files`) — that
//!    file holds secrets, so it is removed once applied (a redacted copy is kept in
//!    `/var/lib/aither/firstboot/answers.toml`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::answers::{self, Answers, AnswersError};

pub const DEFAULT_ANSWERS: &str = "/etc/aither/answers.toml";
const CMDLINE_KEY: &str = "aither.answers=";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Named by the admin: `--answers`.
    Given(PathBuf),
    /// From the kernel command line.
    KernelFile(PathBuf),
    KernelUrl(String),
    /// The default file under the root; removed once applied.
    Default(PathBuf),
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Given(p) | Origin::KernelFile(p) | Origin::Default(p) => p.display().to_string(),
            Origin::KernelUrl(u) => u.clone(),
        }
    }
}

/// The value of `aither.answers=` in a kernel command line.
pub fn from_cmdline(cmdline: &str) -> Option<String> {
    cmdline.split_whitespace().filter_map(|w| w.strip_prefix(CMDLINE_KEY)).next_back().map(str::to_string)
}

/// Find the answers for the machine under `root`; `cmdline` is the kernel's (live only).
pub fn locate(root: &Path, given: Option<&Path>, cmdline: Option<&str>) -> Option<Origin> {
    if let Some(g) = given {
        return Some(Origin::Given(g.to_path_buf()));
    }
    if let Some(v) = cmdline.and_then(from_cmdline) {
        return Some(if v.starts_with("http://") || v.starts_with("https://") {
            Origin::KernelUrl(v)
        } else {
            Origin::KernelFile(PathBuf::from(v))
        });
    }
    let default = root.join(DEFAULT_ANSWERS.trim_start_matches('/'));
    default.exists().then_some(Origin::Default(default))
}

/// Read and parse the answers at `origin`.
pub fn load(origin: &Origin) -> Result<Answers, AnswersError> {
    match origin {
        Origin::Given(p) | Origin::KernelFile(p) | Origin::Default(p) => answers::read(p),
        Origin::KernelUrl(url) => {
            let text = fetch_url(url, Duration::from_secs(60))
                .map_err(|message| AnswersError::Syntax { path: PathBuf::from(url), message })?;
            answers::parse(&text, Path::new(url))
        }
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
            Some(Origin::KernelUrl("https://cfg.example/a.toml".into()))
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
    fn answers_come_from_a_url() {
        use std::io::{BufRead as _, Write as _};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/answers.toml", l.local_addr().expect("addr"));
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = "schema_version = 1\npreset = \"server\"\n";
            write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                .expect("write");
        });
        let a = load(&Origin::KernelUrl(url)).expect("loaded");
        h.join().expect("server");
        assert_eq!(a.preset.as_deref(), Some("server"));
    }
}
