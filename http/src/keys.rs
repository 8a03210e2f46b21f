//! API keys: the files that hold them, and checking a request's bearer token.
//!
//! A key file that is configured must be there, readable and non-empty: [`read`] says which
//! of those it is not, and the caller refuses to start (or to reload) rather than open the
//! door. [`generate`] makes a new key the way first boot does.

use std::path::{Path, PathBuf};

/// A key, kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The key itself, for sending it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether an `Authorization` header value is `Bearer <this key>`, compared in time that
    /// depends only on the lengths.
    pub fn matches_bearer(&self, authorization: Option<&str>) -> bool {
        let Some(given) = authorization.and_then(|v| v.strip_prefix("Bearer ")) else { return false };
        let (a, b) = (given.trim().as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Why a configured key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read the key: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: the key file is empty")]
    Empty { path: PathBuf },
    #[error("{path}: the key holds a character other than printable ASCII (it must fit in an HTTP header)")]
    NotPrintable { path: PathBuf },
    #[error("{path}: cannot write the key: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Read the key in `path`: its first line, trimmed.
pub fn read(path: &Path) -> Result<Secret, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_path_buf(), source })?;
    let key = text.lines().next().unwrap_or("").trim();
    if key.is_empty() {
        return Err(KeyError::Empty { path: path.to_path_buf() });
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::NotPrintable { path: path.to_path_buf() });
    }
    Ok(Secret(key.to_string()))
}

/// A new key: `aither-` and 32 random bytes in hex.
pub fn new_key() -> std::io::Result<Secret> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        filled += rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(Secret(format!("aither-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())))
}

/// Write a new key to `path` unless a usable one is there: mode 0640, group `group` when
/// given (root and the admins read it). Returns whether a key was written. The file is
/// created beside its final name and renamed into place, so a reader never sees half a key.
pub fn generate(path: &Path, group: Option<u32>) -> Result<bool, KeyError> {
    if read(path).is_ok() {
        return Ok(false);
    }
    let write = |source| KeyError::Write { path: path.to_path_buf(), source };
    let key = new_key().map_err(write)?;
    aither_sys::atomic::write_secret(path, format!("{}\n", key.expose()).as_bytes(), 0o640, group).map_err(write)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_empty_or_binary_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("gateway.key");
        assert!(matches!(read(&p), Err(KeyError::Read { .. })));
        std::fs::write(&p, "\n  \n").expect("write");
        assert!(matches!(read(&p), Err(KeyError::Empty { .. })));
        std::fs::write(&p, "k\u{7f}ey\n").expect("write");
        assert!(matches!(read(&p), Err(KeyError::NotPrintable { .. })));
        std::fs::write(&p, "  the-key  \nsecond line\n").expect("write");
        assert_eq!(read(&p).expect("key").expose(), "the-key");
        assert_eq!(format!("{:?}", read(&p).expect("key")), "Secret(..)", "never in logs");
    }

    #[test]
    fn generate_writes_once_and_keeps_an_existing_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("etc/gateway.key");
        assert!(generate(&p, None).expect("generated"));
        let key = read(&p).expect("readable");
        assert!(key.expose().starts_with("aither-") && key.expose().len() == 7 + 64);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).expect("meta").permissions()) & 0o777;
        assert_eq!(mode, 0o640);
        assert!(!generate(&p, None).expect("kept"), "an existing key is kept");
        assert_eq!(read(&p).expect("same").expose(), key.expose());
        assert_ne!(new_key().expect("k").expose(), key.expose());
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let k = Secret::new("abc");
        assert!(k.matches_bearer(Some("Bearer abc")));
        for bad in [None, Some("Bearer abd"), Some("Bearer ab"), Some("abc"), Some("Basic abc"), Some("Bearer ")] {
            assert!(!k.matches_bearer(bad), "{bad:?}");
        }
    }
}
