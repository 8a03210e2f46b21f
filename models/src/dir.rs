//! The model directory by descriptor: every file is opened relative to it, with `O_NOFOLLOW`,
//! and the checksums file is replaced whole.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use sha2::{Digest as _, Sha256};

use crate::{hex, Checksums, FetchError, Recorded, CHECKSUMS};

/// The model directory, by descriptor: every file is opened relative to it.
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    pub(crate) fn open(path: &Path) -> Result<Dir, FetchError> {
        let io = |source| FetchError::Io { path: path.to_path_buf(), source };
        std::fs::create_dir_all(path).map_err(io)?;
        let fd = rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io(e.into()))?;
        Ok(Dir { fd, path: path.to_path_buf() })
    }

    /// Open without creating (for reading the records).
    pub(crate) fn open_existing(path: &Path) -> Result<Dir, FetchError> {
        let fd = rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| FetchError::Io { path: path.to_path_buf(), source: e.into() })?;
        Ok(Dir { fd, path: path.to_path_buf() })
    }

    pub(crate) fn at(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The size of `name` when it is a regular file (a symlink is not followed).
    pub(crate) fn regular_size(&self, name: &str) -> Option<u64> {
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        (FileType::from_raw_mode(st.st_mode) == FileType::RegularFile).then(|| u64::try_from(st.st_size).unwrap_or(0))
    }

    pub(crate) fn is_symlink(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    }

    pub(crate) fn remove(&self, name: &str) -> Result<(), FetchError> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(FetchError::Io { path: self.at(name), source: e.into() }),
        }
    }

    /// A new, empty file (whatever had the name is removed first).
    pub(crate) fn create_new(&self, name: &str) -> Result<File, FetchError> {
        self.remove(name)?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| FetchError::Io { path: self.at(name), source: e.into() })?;
        Ok(File::from(fd))
    }

    /// An existing part to append to: a regular file with one link, or an error.
    pub(crate) fn append(&self, name: &str) -> Result<File, FetchError> {
        let path = self.at(name);
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP => {
                FetchError::Unsafe { path: path.clone(), problem: "is a symbolic link: not resumed".into() }
            }
            e => FetchError::Io { path: path.clone(), source: e.into() },
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| FetchError::Io { path: path.clone(), source: e.into() })?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_nlink != 1 {
            return Err(FetchError::Unsafe {
                path,
                problem: "is not a regular file with a single link: not resumed (remove it to start again)".into(),
            });
        }
        Ok(File::from(fd))
    }

    pub(crate) fn read(&self, name: &str) -> Result<File, FetchError> {
        let fd = rustix::fs::openat(&self.fd, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| FetchError::Io { path: self.at(name), source: e.into() })?;
        Ok(File::from(fd))
    }

    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), FetchError> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| FetchError::Io { path: self.at(to), source: e.into() })
    }

    pub(crate) fn sha256(&self, name: &str) -> Result<String, FetchError> {
        let mut f = self.read(name)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|source| FetchError::Io { path: self.at(name), source })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex(&hasher.finalize()))
    }

    pub(crate) fn checksums(&self) -> Checksums {
        let mut text = String::new();
        match self.read(CHECKSUMS).map(|mut f| f.read_to_string(&mut text)) {
            Ok(Ok(_)) => serde_json::from_str(&text).unwrap_or_default(),
            _ => Checksums::default(),
        }
    }

    pub(crate) fn record(&self, name: &str, r: Recorded) -> Result<(), FetchError> {
        let mut all = self.checksums();
        all.files.insert(name.to_string(), r);
        self.write_checksums(all)
    }

    /// Replace the checksums file (whole, through a temporary file).
    pub(crate) fn write_checksums(&self, mut all: Checksums) -> Result<(), FetchError> {
        all.schema_version = aither_api::store::CHECKSUMS_SCHEMA_VERSION;
        let tmp = format!(".{CHECKSUMS}.tmp");
        let mut f = self.create_new(&tmp)?;
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|source| FetchError::Write { path: self.at(&tmp), source })?;
        self.rename(&tmp, CHECKSUMS)
    }
}
