//! Staged changes to a machine's files, committed together.
//!
//! Every change is written first beside its target (`.NAME.aither-new`: same directory, so
//! same file system), with its final mode, owner and — when it replaces a file — the SELinux
//! label of the file it replaces. Nothing the machine reads has changed until [`Transaction::commit`],
//! which renames the staged files over their targets in order, keeping a hard link to each
//! replaced file. If a rename fails, the ones already done are undone from those links, so
//! the machine is left as it was; on success the links are removed. Dropping a transaction
//! that was not committed removes what it staged, and the directories it had to create.
//!
//! Each rename is atomic on its own; the set is not — a power cut in the middle of the
//! renames (microseconds) can leave some done. The caller puts its "configured" marker last,
//! so such a machine is still unconfigured and first boot runs again.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

const SELINUX_XATTR: &str = "security.selinux";

#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}: {source}")]
pub struct StageError {
    pub path: PathBuf,
    pub what: &'static str,
    #[source]
    pub source: std::io::Error,
}

fn err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> StageError + 'a {
    move |source| StageError { path: path.to_path_buf(), what, source }
}

/// Mode and owner of a staged file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perms {
    /// Those of the file it replaces; `mode`, owned by root, for a new one.
    KeepOr(u32),
    Exact {
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

#[derive(Debug)]
struct Item {
    target: PathBuf,
    staged: PathBuf,
    is_dir: bool,
}

/// Changes under `root`, staged and not yet visible.
#[derive(Debug)]
pub struct Transaction {
    root: PathBuf,
    items: Vec<Item>,
    created_dirs: Vec<PathBuf>,
}

/// What a commit changed: the paths that did not exist before (to label them).
#[derive(Debug, Default)]
pub struct Committed {
    pub replaced: Vec<PathBuf>,
    pub created: Vec<PathBuf>,
}

impl Transaction {
    pub fn new(root: &Path) -> Transaction {
        Transaction { root: root.to_path_buf(), items: Vec::new(), created_dirs: Vec::new() }
    }

    /// `path` on the machine (`/etc/hostname`) under this transaction's root.
    pub fn target(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn staged_path(&mut self, target: &Path) -> Result<PathBuf, StageError> {
        let parent = target.parent().unwrap_or(Path::new("/"));
        self.ensure_dir(parent)?;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let staged = parent.join(format!(".{name}.aither-new"));
        remove_any(&staged).map_err(err(&staged, "cannot remove a stale staged copy"))?;
        Ok(staged)
    }

    /// Create the missing directories up to `dir`, remembered so an abort removes them.
    fn ensure_dir(&mut self, dir: &Path) -> Result<(), StageError> {
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.exists() {
            missing.push(d.to_path_buf());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        for m in missing.into_iter().rev() {
            std::fs::create_dir(&m).map_err(err(&m, "cannot create the directory"))?;
            self.created_dirs.push(m);
        }
        Ok(())
    }

    /// Stage `path` with `contents`.
    pub fn file(&mut self, path: &str, contents: &[u8], perms: Perms) -> Result<(), StageError> {
        let target = self.target(path);
        let staged = self.staged_path(&target)?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&staged)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(contents)?;
            f.sync_all()
        };
        self.items.push(Item { target: target.clone(), staged: staged.clone(), is_dir: false });
        write().map_err(err(&staged, "cannot write the staged file"))?;
        apply_perms(&staged, &target, perms)
    }

    /// Stage `path` as a symbolic link to `to`.
    pub fn symlink(&mut self, path: &str, to: &Path) -> Result<(), StageError> {
        let target = self.target(path);
        let staged = self.staged_path(&target)?;
        self.items.push(Item { target: target.clone(), staged: staged.clone(), is_dir: false });
        std::os::unix::fs::symlink(to, &staged).map_err(err(&staged, "cannot create the staged link"))?;
        copy_label(&target, &staged, true)
    }

    /// Stage a new directory `path`, filled by `fill` (given the staged directory). The
    /// directory must not exist yet.
    pub fn new_dir(
        &mut self,
        path: &str,
        perms: Perms,
        fill: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<(), StageError> {
        let target = self.target(path);
        if target.symlink_metadata().is_ok() {
            return Err(StageError {
                path: target,
                what: "already exists",
                source: std::io::ErrorKind::AlreadyExists.into(),
            });
        }
        let staged = self.staged_path(&target)?;
        self.items.push(Item { target: target.clone(), staged: staged.clone(), is_dir: true });
        std::fs::create_dir(&staged).map_err(err(&staged, "cannot create the staged directory"))?;
        fill(&staged).map_err(err(&staged, "cannot fill the staged directory"))?;
        apply_perms(&staged, &target, perms)
    }

    /// Make every staged change visible, in the order staged; on failure undo the ones made.
    pub fn commit(mut self) -> Result<Committed, StageError> {
        let items = std::mem::take(&mut self.items);
        let mut done: Vec<(usize, Option<PathBuf>)> = Vec::new();
        let mut result = Ok(());
        for (i, item) in items.iter().enumerate() {
            match commit_one(item) {
                Ok(backup) => done.push((i, backup)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = result {
            for (i, backup) in done.into_iter().rev() {
                let item = &items[i];
                match backup {
                    Some(b) => {
                        let _ = std::fs::rename(&b, &item.target);
                    }
                    None => {
                        let _ = remove_any(&item.target);
                    }
                }
            }
            for item in &items {
                let _ = remove_any(&item.staged);
            }
            self.remove_created_dirs();
            return Err(e);
        }
        let mut committed = Committed::default();
        for (i, backup) in done {
            let target = items[i].target.clone();
            if let Some(b) = backup {
                let _ = std::fs::remove_file(&b);
                committed.replaced.push(target);
            } else {
                committed.created.push(target);
            }
        }
        for item in &items {
            if let Some(parent) = item.target.parent() {
                let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
            }
        }
        self.created_dirs.clear();
        Ok(committed)
    }

    fn remove_created_dirs(&mut self) {
        for d in self.created_dirs.drain(..).rev() {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

impl Drop for Transaction {
    /// An uncommitted transaction leaves nothing behind.
    fn drop(&mut self) {
        for item in self.items.drain(..) {
            let _ = remove_any(&item.staged);
        }
        self.remove_created_dirs();
    }
}

/// Rename one staged change into place; returns the link kept to what it replaced.
fn commit_one(item: &Item) -> Result<Option<PathBuf>, StageError> {
    let backup = if !item.is_dir && item.target.symlink_metadata().is_ok() {
        let name = item.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let b = item.target.with_file_name(format!(".{name}.aither-old"));
        remove_any(&b).map_err(err(&b, "cannot remove a stale backup"))?;
        std::fs::hard_link(&item.target, &b).map_err(err(&item.target, "cannot keep the file it replaces"))?;
        Some(b)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(&item.staged, &item.target) {
        if let Some(b) = &backup {
            let _ = std::fs::remove_file(b);
        }
        return Err(StageError { path: item.target.clone(), what: "cannot put the new version in place", source: e });
    }
    Ok(backup)
}

fn apply_perms(staged: &Path, target: &Path, perms: Perms) -> Result<(), StageError> {
    use std::os::unix::fs::MetadataExt as _;
    let (mode, uid, gid) = match (perms, std::fs::metadata(target)) {
        (Perms::KeepOr(_), Ok(m)) => (m.mode() & 0o7777, m.uid(), m.gid()),
        (Perms::KeepOr(mode), Err(_)) => (mode, 0, 0),
        (Perms::Exact { mode, uid, gid }, _) => (mode, uid, gid),
    };
    let meta = std::fs::metadata(staged).map_err(err(staged, "cannot stat the staged copy"))?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::chown(staged, Some(uid), Some(gid)).map_err(err(staged, "cannot set the owner"))?;
    }
    std::fs::set_permissions(staged, std::fs::Permissions::from_mode(mode))
        .map_err(err(staged, "cannot set the mode"))?;
    copy_label(target, staged, false)
}

/// Give `staged` the SELinux label of the file it replaces, so there is never a moment with
/// the wrong one. New files are labelled after the commit (see [`crate::apply`]).
fn copy_label(target: &Path, staged: &Path, link: bool) -> Result<(), StageError> {
    let mut buf = [0u8; 512];
    let Ok(len) = rustix::fs::lgetxattr(target, SELINUX_XATTR, &mut buf[..]) else { return Ok(()) };
    let value = &buf[..len];
    let set = if link {
        rustix::fs::lsetxattr(staged, SELINUX_XATTR, value, rustix::fs::XattrFlags::empty())
    } else {
        rustix::fs::setxattr(staged, SELINUX_XATTR, value, rustix::fs::XattrFlags::empty())
    };
    set.map_err(|e| StageError { path: staged.to_path_buf(), what: "cannot copy the SELinux label", source: e.into() })
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("readdir") {
                let p = e.expect("entry").path();
                out.push(p.strip_prefix(root).expect("under root").display().to_string());
                if p.is_dir() && !p.is_symlink() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn nothing_is_visible_until_commit_and_everything_is_after() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("etc")).expect("etc");
        std::fs::write(t.path().join("etc/hostname"), "old\n").expect("hostname");
        let mut tx = Transaction::new(t.path());
        tx.file("/etc/hostname", b"new\n", Perms::KeepOr(0o644)).expect("staged");
        tx.file("/var/lib/aither/configured", b"yes\n", Perms::KeepOr(0o644)).expect("staged");
        tx.symlink("/etc/localtime", Path::new("../usr/share/zoneinfo/UTC")).expect("staged");
        tx.new_dir("/home/ops", Perms::KeepOr(0o700), |d| std::fs::write(d.join(".profile"), "x")).expect("staged");
        assert_eq!(std::fs::read_to_string(t.path().join("etc/hostname")).expect("read"), "old\n");
        assert!(!t.path().join("var/lib/aither/configured").exists());
        let c = tx.commit().expect("committed");
        assert_eq!(std::fs::read_to_string(t.path().join("etc/hostname")).expect("read"), "new\n");
        assert_eq!(
            std::fs::read_link(t.path().join("etc/localtime")).expect("link"),
            Path::new("../usr/share/zoneinfo/UTC")
        );
        assert!(t.path().join("home/ops/.profile").is_file());
        assert_eq!(c.replaced, [t.path().join("etc/hostname")]);
        assert_eq!(c.created.len(), 3);
        assert!(!listing(t.path()).iter().any(|p| p.contains("aither-new") || p.contains("aither-old")));
    }

    #[test]
    fn an_abandoned_transaction_leaves_the_tree_as_it_was() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("etc")).expect("etc");
        std::fs::write(t.path().join("etc/hostname"), "old\n").expect("hostname");
        let before = listing(t.path());
        {
            let mut tx = Transaction::new(t.path());
            tx.file("/etc/hostname", b"new\n", Perms::KeepOr(0o644)).expect("staged");
            tx.file("/var/lib/aither/firstboot/answers.toml", b"x", Perms::KeepOr(0o600)).expect("staged");
        }
        assert_eq!(listing(t.path()), before);
        assert_eq!(std::fs::read_to_string(t.path().join("etc/hostname")).expect("read"), "old\n");
    }

    #[test]
    fn a_failed_rename_undoes_the_renames_before_it() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("etc")).expect("etc");
        std::fs::write(t.path().join("etc/hostname"), "old\n").expect("hostname");
        let mut tx = Transaction::new(t.path());
        tx.file("/etc/hostname", b"new\n", Perms::KeepOr(0o644)).expect("staged");
        tx.file("/etc/motd", b"hello\n", Perms::KeepOr(0o644)).expect("staged");
        tx.new_dir("/home/ops", Perms::KeepOr(0o700), |_| Ok(())).expect("staged");
        // Someone creates the home directory, with a file in it, after staging.
        std::fs::create_dir_all(t.path().join("home/ops")).expect("home");
        std::fs::write(t.path().join("home/ops/keep"), "x").expect("file");
        let e = tx.commit().expect_err("the directory is taken");
        assert_eq!(e.path, t.path().join("home/ops"));
        assert_eq!(std::fs::read_to_string(t.path().join("etc/hostname")).expect("read"), "old\n");
        assert!(!t.path().join("etc/motd").exists());
        assert!(t.path().join("home/ops/keep").exists());
        assert!(!listing(t.path()).iter().any(|p| p.contains("aither-new") || p.contains("aither-old")));
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_new_one_gets_the_default() {
        use std::os::unix::fs::MetadataExt as _;
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("etc")).expect("etc");
        std::fs::write(t.path().join("etc/shadow"), "root:*:1:0:99999:7:::\n").expect("shadow");
        std::fs::set_permissions(t.path().join("etc/shadow"), std::fs::Permissions::from_mode(0o000)).expect("mode");
        let mut tx = Transaction::new(t.path());
        tx.file("/etc/shadow", b"root:!:1:0:99999:7:::\n", Perms::KeepOr(0o600)).expect("staged");
        tx.file("/etc/aither/cloud.key", b"sk", Perms::KeepOr(0o600)).expect("staged");
        tx.commit().expect("committed");
        assert_eq!(std::fs::metadata(t.path().join("etc/shadow")).expect("meta").mode() & 0o777, 0o000);
        assert_eq!(std::fs::metadata(t.path().join("etc/aither/cloud.key")).expect("meta").mode() & 0o777, 0o600);
    }
}
