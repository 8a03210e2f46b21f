//! A step's workspace as the file tools see it. A path is relative and made of plain names
//! (no `..`, no absolute path, no empty or `.` part, no control characters), and every part is
//! opened relative to its parent's descriptor with `O_NOFOLLOW`: a symbolic link planted in the
//! workspace cannot lead a read, a write or a listing outside it. Only regular files are read
//! (a FIFO cannot hang the agent); reads, writes and listings are bounded.

use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// The most bytes a read returns (the rest is cut, and the caller told so).
pub const MAX_READ: usize = 256 * 1024;
/// The largest file a write may leave.
pub const MAX_WRITE: usize = 1024 * 1024;
/// The most entries a listing returns.
pub const MAX_ENTRIES: usize = 1000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{path:?}: {problem}")]
    BadPath { path: String, problem: &'static str },
    #[error("{path}: {errno}")]
    Io { path: String, errno: Errno },
    #[error("{path}: not a regular file")]
    NotAFile { path: String },
    #[error("{path}: {size} bytes is over the limit of {max}")]
    TooLarge { path: String, size: usize, max: usize },
}

/// What a listing shows of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    /// A symbolic link: listed, never followed.
    Link,
    Other,
}

/// The workspace directory, held open.
#[derive(Debug)]
pub struct Workspace {
    dir: OwnedFd,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

impl Workspace {
    /// Open the workspace at `root` (given by agentd, trusted).
    pub fn open(root: &Path) -> Result<Workspace, FileError> {
        let dir = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|errno| FileError::Io { path: root.display().to_string(), errno })?;
        Ok(Workspace { dir })
    }

    /// Read a regular file: its first [`MAX_READ`] bytes, and whether there was more.
    pub fn read(&self, path: &str) -> Result<(Vec<u8>, bool), FileError> {
        let (dir, name) = self.parent(path, false)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| io(path, errno))?;
        let st = rustix::fs::fstat(&fd).map_err(|errno| io(path, errno))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(FileError::NotAFile { path: path.to_string() });
        }
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(u64::try_from(MAX_READ).unwrap_or(u64::MAX) + 1)
            .read_to_end(&mut data)
            .map_err(|e| io(path, Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
        let cut = data.len() > MAX_READ;
        data.truncate(MAX_READ);
        Ok((data, cut))
    }

    /// Write a file whole (created with its directories, or replaced): a temporary file made
    /// beside it, then renamed over the name, so a reader never sees half of it.
    pub fn write(&self, path: &str, data: &[u8]) -> Result<(), FileError> {
        if data.len() > MAX_WRITE {
            return Err(FileError::TooLarge { path: path.to_string(), size: data.len(), max: MAX_WRITE });
        }
        let (dir, name) = self.parent(path, true)?;
        if let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                return Err(FileError::NotAFile { path: path.to_string() });
            }
        }
        let temp = format!(".{name}.partial-{}", std::process::id());
        let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
        let fd = rustix::fs::openat(
            &dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o640),
        )
        .map_err(|errno| io(path, errno))?;
        let written = std::fs::File::from(fd).write_all(data);
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
            return Err(io(path, Errno::from_io_error(&e).unwrap_or(Errno::IO)));
        }
        rustix::fs::renameat(&dir, temp.as_str(), &dir, name).map_err(|errno| {
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
            io(path, errno)
        })
    }

    /// The entries of a directory (`""` or `"."`: the workspace), by name, at most
    /// [`MAX_ENTRIES`]; and whether there were more.
    pub fn list(&self, path: &str) -> Result<(Vec<Entry>, bool), FileError> {
        let dir = if path.is_empty() || path == "." {
            rustix::fs::openat(&self.dir, ".", DIR_FLAGS, Mode::empty()).map_err(|errno| io(path, errno))?
        } else {
            let (parent, name) = self.parent(path, false)?;
            rustix::fs::openat(&parent, name, DIR_FLAGS, Mode::empty()).map_err(|errno| io(path, errno))?
        };
        let mut entries = Vec::new();
        let mut more = false;
        let listing = rustix::fs::Dir::read_from(&dir).map_err(|errno| io(path, errno))?;
        for entry in listing {
            let entry = entry.map_err(|errno| io(path, errno))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            if entries.len() == MAX_ENTRIES {
                more = true;
                break;
            }
            let st = rustix::fs::statat(&dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW).ok();
            let kind = match st.map(|s| FileType::from_raw_mode(s.st_mode)) {
                Some(FileType::RegularFile) => EntryKind::File,
                Some(FileType::Directory) => EntryKind::Directory,
                Some(FileType::Symlink) => EntryKind::Link,
                _ => EntryKind::Other,
            };
            let size = st.map_or(0, |s| u64::try_from(s.st_size).unwrap_or(0));
            entries.push(Entry { name, kind, size });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((entries, more))
    }

    /// The directory holding `path`'s last part, opened part by part (created when `create`),
    /// and that last part.
    fn parent<'p>(&self, path: &'p str, create: bool) -> Result<(OwnedFd, &'p str), FileError> {
        let parts = parts(path)?;
        let (name, dirs) = parts.split_last().ok_or(FileError::BadPath { path: path.to_string(), problem: "empty" })?;
        let mut dir = rustix::fs::openat(&self.dir, ".", DIR_FLAGS, Mode::empty()).map_err(|errno| io(path, errno))?;
        for part in dirs {
            let next = match rustix::fs::openat(&dir, *part, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    rustix::fs::mkdirat(&dir, *part, Mode::from_raw_mode(0o750)).map_err(|errno| io(path, errno))?;
                    rustix::fs::openat(&dir, *part, DIR_FLAGS, Mode::empty())
                }
                other => other,
            };
            dir = next.map_err(|errno| io(path, errno))?;
        }
        Ok((dir, name))
    }
}

fn io(path: &str, errno: Errno) -> FileError {
    // ELOOP/ENOTDIR on an O_NOFOLLOW open: a symbolic link where a plain name was expected.
    FileError::Io { path: path.to_string(), errno }
}

/// The parts of a workspace path, each a plain name.
fn parts(path: &str) -> Result<Vec<&str>, FileError> {
    let bad = |problem| Err(FileError::BadPath { path: path.to_string(), problem });
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > 1024 {
        return bad("longer than 1,024 bytes");
    }
    if path.starts_with('/') {
        return bad("absolute: paths are relative to the workspace");
    }
    if path.chars().any(char::is_control) {
        return bad("a control character");
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return bad("empty, '.' or '..' parts");
    }
    if parts.iter().any(|p| p.len() > 255) {
        return bad("a part longer than 255 bytes");
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::open(dir.path()).expect("open");
        (dir, ws)
    }

    #[test]
    fn files_are_written_whole_read_back_and_listed() {
        let (dir, ws) = workspace();
        ws.write("outputs/report/summary.md", b"# Summary\n").expect("write");
        ws.write("outputs/report/summary.md", b"# Summary, again\n").expect("replace");
        assert_eq!(ws.read("outputs/report/summary.md").expect("read"), (b"# Summary, again\n".to_vec(), false));
        let (entries, more) = ws.list("outputs/report").expect("list");
        assert_eq!(entries, vec![Entry { name: "summary.md".into(), kind: EntryKind::File, size: 17 }]);
        assert!(!more);
        assert_eq!(
            std::fs::read_dir(dir.path().join("outputs/report")).expect("dir").count(),
            1,
            "no partial file left"
        );
        let (top, _) = ws.list("").expect("list");
        assert_eq!(top[0].kind, EntryKind::Directory);
    }

    #[test]
    fn paths_that_leave_the_workspace_are_refused() {
        let (_dir, ws) = workspace();
        for path in ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "", "a\nb", "a/."] {
            assert!(matches!(ws.read(path), Err(FileError::BadPath { .. })), "{path:?}");
            assert!(matches!(ws.write(path, b"x"), Err(FileError::BadPath { .. })), "{path:?}");
        }
    }

    #[test]
    fn a_planted_link_is_never_followed() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), b"key").expect("write");
        let (dir, ws) = workspace();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).expect("link");
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("secret")).expect("link");
        assert!(ws.read("escape/secret").is_err(), "a link as a directory");
        assert!(ws.read("secret").is_err(), "a link as the file");
        assert!(ws.write("escape/planted", b"x").is_err());
        assert!(matches!(ws.write("secret", b"x"), Err(FileError::NotAFile { .. })));
        assert!(ws.list("escape").is_err());
        assert_eq!(std::fs::read(outside.path().join("secret")).expect("read"), b"key", "the target is untouched");
        assert!(!outside.path().join("planted").exists());
        let (entries, _) = ws.list(".").expect("list");
        assert!(entries.iter().all(|e| e.kind == EntryKind::Link), "{entries:?}");
    }

    #[test]
    fn reads_and_writes_are_bounded_and_only_regular_files_are_read() {
        let (dir, ws) = workspace();
        let big = vec![b'a'; MAX_READ + 10];
        std::fs::write(dir.path().join("big"), &big).expect("write");
        let (data, cut) = ws.read("big").expect("read");
        assert_eq!((data.len(), cut), (MAX_READ, true));
        assert!(matches!(ws.write("huge", &vec![0; MAX_WRITE + 1]), Err(FileError::TooLarge { .. })));
        rustix::fs::mknodat(rustix::fs::CWD, dir.path().join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .expect("mkfifo");
        assert!(matches!(ws.read("fifo"), Err(FileError::NotAFile { .. })), "a FIFO does not hang the reader");
    }
}
