//! Writing a file whole or not at all.

use std::io::Write as _;
use std::path::Path;

/// Write `contents` to `path` through a temporary file in the same directory, synced, then
/// renamed over it: readers see the old file or the new one, never a part. On failure the
/// temporary file is removed and `path` is as it was. The directory is created if missing.
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_file(path, contents, None)
}

/// [`write`] for a secret: the file is created owner-only, filled, handed to `group` when
/// given, then given `mode` (say 0640) and renamed into place.
pub fn write_secret(path: &Path, contents: &[u8], mode: u32, group: Option<u32>) -> std::io::Result<()> {
    write_file(path, contents, Some((mode, group)))
}

fn write_file(path: &Path, contents: &[u8], secret: Option<(u32, Option<u32>)>) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        // create_new: O_EXCL, so a link planted under the temporary name is never followed.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        if secret.is_some() {
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        if let Some((mode, group)) = secret {
            if let Some(gid) = group {
                std::os::unix::fs::fchown(&f, None, Some(gid))?;
            }
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/state.json");
        write(&p, b"one").expect("first");
        write(&p, b"two").expect("second");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        assert_eq!(std::fs::read_dir(p.parent().expect("dir")).expect("ls").count(), 1, "no temporary file left");
    }

    #[test]
    fn a_secret_gets_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("gateway.key");
        write_secret(&p, b"k\n", 0o640, None).expect("write");
        assert_eq!(std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The target is a directory: the rename fails after the temporary file was written.
        let p = dir.path().join("taken");
        std::fs::create_dir(p.join("")).expect("mkdir");
        std::fs::write(p.join("inside"), b"x").expect("inside");
        assert!(write(&p, b"new").is_err());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into())
            .collect();
        assert_eq!(names, ["taken"], "the temporary file was removed");
    }
}
