//! Workflow runs on disk, and the files handed to and taken back from a step's agent.
//!
//! ```text
//! /var/lib/aither/workflows/runs/RUN/run.json          the run document (aither_api::workflow::Run)
//! /var/lib/aither/workflows/runs/RUN/STEP/result.json  what the step's agent left, copied back
//! /var/lib/aither/workflows/runs/RUN/STEP/transcript.jsonl
//! /var/lib/aither/workflows/runs/RUN/STEP/outputs/…    its declared outputs: the next steps' inputs
//! /var/lib/aither/workflows/audit.jsonl                every proposal's decision, one line each
//! /var/lib/aither/agents/wf-RUN-STEP/                  the step's workspace while it runs
//! ```
//!
//! agentd (root without CAP_DAC_OVERRIDE) builds a step's workspace as its own, labels every
//! file with the step's MCS level and hands the tree to the agent user last; when the step
//! ends it takes the tree back (`lchown`, never following a link the agent planted), copies
//! what it needs (regular files only, bounded) and removes the workspace.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use aither_api::workflow::{ApprovalState, Run};
use anyhow::{Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// The most bytes of one file copied out of a workspace.
pub const MAX_COPY: u64 = 16 * 1024 * 1024;
/// The most entries a workspace may hold when it is taken back.
const MAX_ENTRIES: usize = 100_000;
/// The deepest a workspace's directories may nest when it is measured or taken back (the
/// walks recurse: a chain of directories a step made as deep as it could must not take
/// agentd's stack; removing is done without recursion, whatever the depth).
const MAX_DEPTH: usize = 128;
/// Runs kept (the oldest finished ones are removed beyond this).
pub const KEEP_RUNS: usize = 200;

/// Where runs are kept.
pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("workflows").join("runs")
}

pub fn audit_file(state_dir: &Path) -> PathBuf {
    state_dir.join("workflows").join("audit.jsonl")
}

/// A step's unit name.
pub fn step_unit(run_id: &str, step: &str) -> String {
    format!("wf-{run_id}-{step}")
}

/// Every run document under `dir`, by id; unreadable ones are reported and skipped.
pub fn load_all(dir: &Path) -> BTreeMap<String, Run> {
    let mut runs = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return runs };
    for e in entries.filter_map(Result::ok) {
        let path = e.path().join("run.json");
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Run>(&b).map_err(|e| e.to_string()))
        {
            Ok(mut run) => {
                for a in run.approvals.iter_mut().filter(|a| a.state == ApprovalState::InFlight) {
                    // Never carried out twice: its effect is for a human to check.
                    a.state = ApprovalState::Failed;
                    a.decided = Some(now());
                    a.outcome =
                        Some("agentd stopped while carrying it out: whether it took effect is not known".into());
                }
                runs.insert(run.id.clone(), run);
            }
            Err(e) if path.exists() => tracing::warn!("{}: {e}: the run is not loaded", path.display()),
            Err(_) => {}
        }
    }
    runs
}

/// Write a run document atomically.
pub fn save(dir: &Path, run: &Run) -> Result<()> {
    let path = dir.join(&run.id).join("run.json");
    std::fs::create_dir_all(path.parent().unwrap_or(dir))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_vec_pretty(run).context("run document")?;
    aither_sys::atomic::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))
}

/// `WORKFLOW-N`, above both the highest kept and `issued` (the last given out).
fn next_after(runs: &BTreeMap<String, Run>, workflow: &str, issued: u64) -> String {
    let n = runs
        .values()
        .filter(|r| r.workflow == workflow)
        .filter_map(|r| r.id.rsplit_once('-').and_then(|(_, n)| n.parse::<u64>().ok()))
        .max()
        .unwrap_or(0)
        .max(issued);
    format!("{workflow}-{}", n + 1)
}

/// The file that records the last run number given out per workflow, so an id is never
/// given twice after its runs were pruned (audit lines name proposals by run id).
pub const IDS_FILE: &str = "ids.json";

/// The next run id of `workflow`, recorded in `dir/ids.json` before it is used.
pub fn issue_id(dir: &Path, runs: &BTreeMap<String, Run>, workflow: &str) -> Result<String> {
    let path = dir.join(IDS_FILE);
    let mut issued: BTreeMap<String, u64> = match std::fs::read(&path) {
        Ok(b) => {
            serde_json::from_slice(&b).with_context(|| format!("{} is not a map of run numbers", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let id = next_after(runs, workflow, issued.get(workflow).copied().unwrap_or(0));
    let n = id.rsplit_once('-').and_then(|(_, n)| n.parse::<u64>().ok()).unwrap_or(0);
    issued.insert(workflow.to_string(), n);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_vec_pretty(&issued).context("run numbers")?;
    aither_sys::atomic::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// Remove the oldest finished runs beyond [`KEEP_RUNS`]; their ids.
pub fn prune(dir: &Path, runs: &mut BTreeMap<String, Run>) -> Vec<String> {
    let mut finished: Vec<(u64, String)> =
        runs.values().filter(|r| r.state.is_final()).map(|r| (r.created, r.id.clone())).collect();
    finished.sort();
    let excess = runs.len().saturating_sub(KEEP_RUNS);
    let gone: Vec<String> = finished.into_iter().take(excess).map(|(_, id)| id).collect();
    for id in &gone {
        runs.remove(id);
        if let Err(e) = std::fs::remove_dir_all(dir.join(id)) {
            tracing::warn!("{}: {e}", dir.join(id).display());
        }
    }
    gone
}

pub use aither_sys::time::unix_now as now;

/// How a workspace is handed to its agent.
#[derive(Debug, Clone)]
pub struct Handover {
    /// The agent user's uid and gid (`None`: agentd's own, development mode).
    pub owner: Option<(u32, u32)>,
    /// The SELinux context every file gets (`None`: SELinux is off).
    pub context: Option<String>,
}

/// A file for a step's workspace: its path there and its contents.
pub type Staged = (String, Vec<u8>);

/// Build a step's workspace at `ws` (removing what an earlier attempt left): `step.json`,
/// `inputs/…`, an empty `outputs/`; labelled and handed to the agent.
pub fn stage(ws: &Path, files: &[Staged], handover: &Handover) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if ws.symlink_metadata().is_ok() {
        remove(ws)?;
    }
    let dir_mode = std::fs::Permissions::from_mode(0o700);
    std::fs::create_dir_all(ws).with_context(|| format!("cannot create {}", ws.display()))?;
    let mut made: Vec<PathBuf> = vec![ws.to_path_buf()];
    for sub in ["inputs", "outputs"] {
        std::fs::create_dir(ws.join(sub)).with_context(|| format!("cannot create {}", ws.join(sub).display()))?;
        made.push(ws.join(sub));
    }
    for (rel, data) in files {
        let path = ws.join(rel);
        // `NAME/`: an empty directory.
        if rel.ends_with('/') {
            std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
            made.push(path);
            continue;
        }
        if let Some(parent) = path.parent() {
            let mut p = parent.to_path_buf();
            let mut missing = Vec::new();
            while !p.exists() {
                missing.push(p.clone());
                if !p.pop() {
                    break;
                }
            }
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            made.extend(missing.into_iter().rev());
        }
        std::fs::write(&path, data).with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod {}", path.display()))?;
        made.push(path);
    }
    for p in &made {
        if p.is_dir() {
            std::fs::set_permissions(p, dir_mode.clone()).with_context(|| format!("chmod {}", p.display()))?;
        }
        if let Some(context) = &handover.context {
            rustix::fs::lsetxattr(p, "security.selinux", context.as_bytes(), rustix::fs::XattrFlags::empty())
                .with_context(|| format!("cannot label {} {context}", p.display()))?;
        }
    }
    // The workspace itself last: until then the agent user cannot reach anything in it.
    if let Some((uid, gid)) = handover.owner {
        for p in made.iter().rev() {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid)).with_context(|| format!("chown {}", p.display()))?;
        }
    }
    Ok(())
}

/// Take a workspace back from its agent: every entry owned by agentd again (`lchown`, links
/// never followed), directories opened to it. Errors name the entry.
pub fn reclaim(ws: &Path) -> Result<()> {
    let me = (rustix::process::geteuid(), rustix::process::getegid());
    let parent = ws.parent().context("a workspace has a parent")?;
    let name = ws.file_name().context("a workspace has a name")?;
    let pdir = rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("open {}", parent.display()))?;
    let mut count = 0;
    reclaim_at(&pdir, Path::new(name), ws, me, &mut count, 0)
}

fn reclaim_at(
    dir: &OwnedFd,
    name: &Path,
    shown: &Path,
    me: (rustix::process::Uid, rustix::process::Gid),
    count: &mut usize,
    depth: usize,
) -> Result<()> {
    *count += 1;
    if *count > MAX_ENTRIES {
        anyhow::bail!("{}: more than {MAX_ENTRIES} entries", shown.display());
    }
    if depth > MAX_DEPTH {
        anyhow::bail!("{}: deeper than {MAX_DEPTH} directories", shown.display());
    }
    rustix::fs::chownat(dir, name, Some(me.0), Some(me.1), AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("chown {}", shown.display()))?;
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("stat {}", shown.display()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(());
    }
    rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())
        .with_context(|| format!("chmod {}", shown.display()))?;
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {}", shown.display()))?;
    for n in entry_names(&sub).with_context(|| format!("list {}", shown.display()))? {
        reclaim_at(&sub, Path::new(&n), &shown.join(&n), me, count, depth + 1)?;
    }
    Ok(())
}

use std::os::unix::ffi::OsStrExt as _;

/// The names in directory `dir` but `.` and `..`, read at once (the caller then changes it).
fn entry_names(dir: &OwnedFd) -> rustix::io::Result<Vec<std::ffi::OsString>> {
    Ok(rustix::fs::Dir::read_from(dir)?
        .filter_map(Result::ok)
        .map(|e| std::ffi::OsString::from(std::ffi::OsStr::from_bytes(e.file_name().to_bytes())))
        .filter(|n| n != "." && n != "..")
        .collect())
}

/// What a workspace holds, counted until a bound is passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes allocated on disk (what a full disk is made of; a sparse file's holes cost nothing).
    pub bytes: u64,
    /// Files, directories, links and the rest.
    pub entries: u64,
    /// Directories not even their owner may list.
    pub unreadable: u64,
    /// Directories nested deeper than agentd walks.
    pub too_deep: bool,
}

impl Usage {
    /// Why `self` is past the bounds, if it is.
    pub fn over(&self, max_bytes: u64, max_entries: u64) -> Option<String> {
        if self.bytes > max_bytes {
            Some(format!("more than {max_bytes} bytes (workflows.workspace_max)"))
        } else if self.entries > max_entries {
            Some(format!("more than {max_entries} files and directories (workflows.workspace_max_files)"))
        } else if self.too_deep {
            Some(format!("directories nested deeper than {MAX_DEPTH}, which agentd does not walk"))
        } else if self.unreadable > 0 {
            Some(format!("{} directories even their owner cannot list, which agentd cannot bound", self.unreadable))
        } else {
            None
        }
    }
}

/// Count what the workspace at `ws` holds — links never followed, other filesystems never
/// entered — until past `max_bytes` or `max_entries`. It runs on a thread of its own as the
/// workspace's `owner` (agentd, without CAP_DAC_OVERRIDE, cannot list the agent's private
/// directories as itself; Linux credentials are per thread, and the thread's end takes
/// them with it).
pub fn measure(ws: &Path, owner: Option<(u32, u32)>, max_bytes: u64, max_entries: u64) -> Result<Usage> {
    let ws = ws.to_path_buf();
    std::thread::Builder::new()
        .name("workspace-measure".into())
        .spawn(move || {
            if let Some((uid, gid)) = owner {
                // The group first: once the effective uid is not 0, the capability to change it is gone.
                rustix::thread::set_thread_res_gid(None, Some(rustix::process::Gid::from_raw(gid)), None)
                    .context("setresgid")?;
                rustix::thread::set_thread_res_uid(None, Some(rustix::process::Uid::from_raw(uid)), None)
                    .context("setresuid")?;
            }
            let root = rustix::fs::open(
                &ws,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("open {}", ws.display()))?;
            let dev = rustix::fs::fstat(&root).with_context(|| format!("stat {}", ws.display()))?.st_dev;
            let mut usage = Usage::default();
            measure_dir(&root, dev, &mut usage, (max_bytes, max_entries), 0);
            Ok(usage)
        })
        .context("cannot start a thread to measure a workspace")?
        .join()
        .map_err(|_| anyhow::anyhow!("measuring {} panicked", "a workspace"))?
}

fn measure_dir(dir: &OwnedFd, dev: u64, usage: &mut Usage, bounds: (u64, u64), depth: usize) {
    let (max_bytes, max_entries) = bounds;
    if depth > MAX_DEPTH {
        usage.too_deep = true;
        return;
    }
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        usage.unreadable += 1;
        return;
    };
    let names: Vec<std::ffi::CString> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        if usage.bytes > max_bytes || usage.entries > max_entries || usage.too_deep {
            return;
        }
        usage.entries += 1;
        let Ok(st) = rustix::fs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) else { continue };
        #[allow(clippy::cast_sign_loss)]
        let blocks = st.st_blocks as u64;
        usage.bytes = usage.bytes.saturating_add(blocks.saturating_mul(512));
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory || st.st_dev != dev {
            continue;
        }
        match rustix::fs::openat(
            dir,
            name.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(sub) => measure_dir(&sub, dev, usage, bounds, depth + 1),
            Err(_) => usage.unreadable += 1,
        }
    }
}

/// Remove a workspace, whatever the agent left in it: each directory is taken back
/// (`lchown`, `0700`) and emptied, its subdirectories first moved up to the workspace's top
/// (so no walk recurses, however deep they nest, and no more than two directories are open
/// at once); links are removed, never followed.
pub fn remove(ws: &Path) -> Result<()> {
    let me = (rustix::process::geteuid(), rustix::process::getegid());
    let parent = ws.parent().context("a workspace has a parent")?;
    let name = ws.file_name().context("a workspace has a name")?;
    let pdir = rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("open {}", parent.display()))?;
    let take = |dir: &OwnedFd, name: &std::ffi::OsStr| -> Result<bool> {
        rustix::fs::chownat(dir, name, Some(me.0), Some(me.1), AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("chown {}", Path::new(name).display()))?;
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("stat {}", Path::new(name).display()))?;
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())
                .with_context(|| format!("chmod {}", Path::new(name).display()))?;
        }
        Ok(is_dir)
    };
    if !take(&pdir, name)? {
        return rustix::fs::unlinkat(&pdir, name, AtFlags::empty()).with_context(|| format!("remove {}", ws.display()));
    }
    let open_dir = |dir: &OwnedFd, name: &std::ffi::OsStr| {
        rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("open {}", ws.join(name).display()))
    };
    let top = open_dir(&pdir, name)?;
    // Directories directly under the top still to empty (None: the top itself).
    let mut pending: Vec<Option<std::ffi::OsString>> = vec![None];
    let mut moved = 0u64;
    while let Some(next) = pending.pop() {
        let dir = match &next {
            None => top.try_clone().context("dup")?,
            Some(n) => open_dir(&top, n)?,
        };
        for n in entry_names(&dir).with_context(|| format!("list {}", ws.display()))? {
            if !take(&dir, &n)? {
                rustix::fs::unlinkat(&dir, &n, AtFlags::empty())
                    .with_context(|| format!("remove {}", ws.join(&n).display()))?;
            } else if next.is_none() {
                pending.push(Some(n));
            } else {
                // Up to the top under a name of agentd's (never over one already there).
                loop {
                    let fresh = std::ffi::OsString::from(format!(".aither-removing-{moved}"));
                    moved += 1;
                    match rustix::fs::renameat_with(&dir, &n, &top, &fresh, rustix::fs::RenameFlags::NOREPLACE) {
                        Ok(()) => {
                            pending.push(Some(fresh));
                            break;
                        }
                        Err(rustix::io::Errno::EXIST) => continue,
                        Err(e) => return Err(e).with_context(|| format!("move {} up", ws.join(&n).display())),
                    }
                }
            }
        }
        if let Some(n) = next {
            // Emptied; but it may hold what was moved into it meanwhile: none is (only the
            // top receives), so it goes.
            rustix::fs::unlinkat(&top, &n, AtFlags::REMOVEDIR)
                .with_context(|| format!("remove {}", ws.join(&n).display()))?;
        }
    }
    drop(top);
    rustix::fs::unlinkat(&pdir, name, AtFlags::REMOVEDIR).with_context(|| format!("remove {}", ws.display()))
}

/// A regular file under `root` at `rel` (plain names, opened without following links), at
/// most [`MAX_COPY`] bytes; `None` when it is missing, not a regular file, or `rel` is not a
/// path of plain names.
pub fn read_regular(root: &Path, rel: &str) -> Result<Option<Vec<u8>>> {
    let mut dir = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("open {}", root.display()))?;
    let parts: Vec<&str> = rel.split('/').collect();
    // The names come from what agents left (a result's outputs): plain names only.
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0')) {
        return Ok(None);
    }
    let (last, dirs) = parts.split_last().context("an empty path")?;
    for part in dirs {
        match rustix::fs::openat(
            &dir,
            *part,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => dir = d,
            Err(_) => return Ok(None),
        }
    }
    read_regular_at(&dir, last, &format!("{}/{rel}", root.display()))
}

/// The regular files of a directory tree (links and special files skipped), as
/// `(path relative to dir, contents)`: at most `max_files` files and `max_bytes` in all. The
/// tree is walked by descriptors, no link followed — not in `dir`'s own path either — so a
/// directory swapped for a link after it was checked copies nothing from elsewhere.
pub fn collect_dir(dir: &Path, max_files: usize, max_bytes: u64) -> Result<Vec<Staged>> {
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(String::new(), open_dir_nofollow(dir)?)];
    while let Some((rel, fd)) = stack.pop() {
        let mut names: Vec<(String, FileType)> = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd).with_context(|| format!("list {}/{rel}", dir.display()))? {
            let entry = entry.with_context(|| format!("list {}/{rel}", dir.display()))?;
            let Ok(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => rustix::fs::statat(&fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_or(FileType::Unknown, |st| FileType::from_raw_mode(st.st_mode)),
                k => k,
            };
            names.push((name, kind));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in names {
            let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            match kind {
                FileType::Directory => {
                    let sub = rustix::fs::openat(
                        &fd,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    );
                    if let Ok(sub) = sub {
                        stack.push((child, sub));
                    }
                }
                FileType::RegularFile => {
                    if out.len() >= max_files {
                        anyhow::bail!("{}: more than {max_files} files", dir.display());
                    }
                    if let Some(data) = read_regular_at(&fd, &name, &format!("{}/{child}", dir.display()))? {
                        total += data.len() as u64;
                        if total > max_bytes {
                            anyhow::bail!("{}: more than {max_bytes} bytes", dir.display());
                        }
                        out.push((child, data));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// A directory opened from `/` one name at a time, following no link on the way.
fn open_dir_nofollow(path: &Path) -> Result<OwnedFd> {
    use std::path::Component;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open("/", flags, Mode::empty()).context("open /")?;
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(name) => {
                fd = rustix::fs::openat(&fd, name, flags, Mode::empty())
                    .with_context(|| format!("open {} (a directory, without links on its path)", path.display()))?;
            }
            _ => anyhow::bail!("{}: not an absolute path of plain names", path.display()),
        }
    }
    Ok(fd)
}

/// The regular file `name` in the directory `dir` (not followed if a link), at most
/// [`MAX_COPY`] bytes; `None` when it is not a regular file. `shown`: its path, for errors.
fn read_regular_at(dir: &OwnedFd, name: &str, shown: &str) -> Result<Option<Vec<u8>>> {
    let Ok(fd) = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Ok(None);
    };
    let st = rustix::fs::fstat(&fd).with_context(|| format!("stat {shown}"))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    let mut data = Vec::new();
    std::fs::File::from(fd).take(MAX_COPY).read_to_end(&mut data).with_context(|| format!("read {shown}"))?;
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_collected_by_descriptors_without_following_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs = dir.path().join("docs");
        std::fs::create_dir_all(docs.join("sub")).expect("dirs");
        std::fs::write(docs.join("a.txt"), "A").expect("a");
        std::fs::write(docs.join("sub/b.txt"), "B").expect("b");
        let secret = dir.path().join("secret");
        std::fs::create_dir(&secret).expect("secret");
        std::fs::write(secret.join("shadow"), "root:x").expect("shadow");
        std::os::unix::fs::symlink(&secret, docs.join("link-dir")).expect("link");
        std::os::unix::fs::symlink(secret.join("shadow"), docs.join("link-file")).expect("link");
        let got: Vec<(String, Vec<u8>)> = collect_dir(&docs, 10, 1024).expect("collected");
        assert_eq!(got, vec![("a.txt".to_string(), b"A".to_vec()), ("sub/b.txt".to_string(), b"B".to_vec())]);
        // The directory swapped for a link after it was checked: nothing is copied.
        let swapped = dir.path().join("swapped");
        std::os::unix::fs::symlink(&secret, &swapped).expect("link");
        let err = collect_dir(&swapped, 10, 1024).expect_err("a link on the path");
        assert!(format!("{err:#}").contains("without links on its path"), "{err:#}");
        assert!(collect_dir(&docs, 1, 1024).is_err(), "the file bound");
    }

    #[test]
    fn a_workspace_is_measured_to_its_bounds_and_removed_however_deep_it_nests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("agents/wf-x-1-a");
        stage(&ws, &[], &Handover { owner: None, context: None }).expect("staged");
        std::fs::write(ws.join("outputs/big"), vec![7u8; 3 << 20]).expect("big");
        for i in 0..40 {
            std::fs::write(ws.join(format!("outputs/f{i}")), "x").expect("small");
        }
        let usage = measure(&ws, None, 1 << 30, 1000).expect("measured");
        assert!(usage.bytes >= 3 << 20 && usage.entries >= 42, "{usage:?}");
        assert_eq!(usage.over(1 << 30, 1000), None);
        assert!(usage.over(1 << 20, 1000).is_some_and(|w| w.contains("workflows.workspace_max")));
        let few = measure(&ws, None, 1 << 30, 10).expect("measured");
        assert!(few.entries <= 12, "the count stops once past the bound: {few:?}");
        assert!(few.over(1 << 30, 10).is_some_and(|w| w.contains("workspace_max_files")));
        // A chain of directories deeper than any walk should go, made as a step could
        // (relative to each one, past PATH_MAX), some locked.
        let mut at = rustix::fs::open(&ws, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("ws");
        for i in 0..3000 {
            rustix::fs::mkdirat(&at, "d", Mode::from_raw_mode(0o700)).expect("mkdir");
            let next = rustix::fs::openat(&at, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open");
            if i % 500 == 0 {
                rustix::fs::openat(&next, "f", OFlags::CREATE | OFlags::WRONLY, Mode::from_raw_mode(0o600))
                    .expect("file");
                rustix::fs::chmodat(&at, "d", Mode::from_raw_mode(0o000), AtFlags::empty()).expect("lock");
            }
            at = next;
        }
        drop(at);
        let deep = measure(&ws, None, 1 << 30, 1 << 20).expect("measured");
        assert!(deep.over(1 << 30, 1 << 20).is_some(), "{deep:?}");
        assert!(reclaim(&ws).is_err(), "taking back refuses a chain that deep");
        remove(&ws).expect("removed");
        assert!(!ws.exists());
    }

    #[test]
    fn a_workspace_is_staged_taken_back_and_removed_without_following_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("agents/wf-x-1-a");
        let files = vec![("step.json".to_string(), b"{}".to_vec()), ("inputs/docs/a.txt".to_string(), b"A".to_vec())];
        stage(&ws, &files, &Handover { owner: None, context: None }).expect("staged");
        assert_eq!(std::fs::read(ws.join("inputs/docs/a.txt")).expect("input"), b"A");
        assert!(ws.join("outputs").is_dir());
        // What an agent might leave: a link out, a locked directory.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "keep").expect("outside");
        std::os::unix::fs::symlink(&outside, ws.join("outputs/link")).expect("link");
        std::fs::create_dir(ws.join("outputs/locked")).expect("dir");
        std::fs::write(ws.join("outputs/locked/x"), "x").expect("x");
        std::fs::write(ws.join("outputs/report.md"), "# R").expect("report");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(ws.join("outputs/locked"), std::fs::Permissions::from_mode(0o000)).expect("chmod");
        reclaim(&ws).expect("reclaimed");
        assert_eq!(read_regular(&ws, "outputs/report.md").expect("read"), Some(b"# R".to_vec()));
        assert_eq!(read_regular(&ws, "outputs/link").expect("read"), None, "a link is not read through");
        assert_eq!(read_regular(&ws, "outputs/../step.json").expect("read"), None);
        // Staging again replaces what was there.
        stage(&ws, &files, &Handover { owner: None, context: None }).expect("again");
        assert!(!ws.join("outputs/report.md").exists());
        remove(&ws).expect("removed");
        assert!(!ws.exists());
        assert_eq!(std::fs::read_to_string(&outside).expect("outside"), "keep");
    }

    #[test]
    fn run_ids_count_up_per_workflow() {
        let mut runs = BTreeMap::new();
        assert_eq!(next_after(&runs, "heal", 0), "heal-1");
        for id in ["heal-1", "heal-7", "other-9"] {
            let run: Run = serde_json::from_value(serde_json::json!({
                "schema_version": 1, "id": id, "workflow": id.rsplit_once('-').expect("id").0, "trigger": "manual",
                "trigger_unit": null, "inputs": {}, "state": "completed", "reason": null, "created": 1, "ended": 2,
                "steps": [], "approvals": []
            }))
            .expect("run");
            runs.insert(id.to_string(), run);
        }
        assert_eq!(next_after(&runs, "heal", 0), "heal-8");
        assert_eq!(step_unit("heal-8", "diagnose"), "wf-heal-8-diagnose");
    }

    #[test]
    fn run_ids_never_repeat_after_their_runs_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut runs = BTreeMap::new();
        assert_eq!(issue_id(dir.path(), &runs, "heal").expect("id"), "heal-1");
        assert_eq!(issue_id(dir.path(), &runs, "heal").expect("id"), "heal-2");
        let run: Run = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "id": "heal-9", "workflow": "heal", "trigger": "manual",
            "trigger_unit": null, "inputs": {}, "state": "completed", "reason": null, "created": 1, "ended": 2,
            "steps": [], "approvals": []
        }))
        .expect("run");
        runs.insert("heal-9".to_string(), run);
        // A run kept from before the record (an older agentd) counts too.
        assert_eq!(issue_id(dir.path(), &runs, "heal").expect("id"), "heal-10");
        // Every run pruned: the numbers go on.
        runs.clear();
        assert_eq!(issue_id(dir.path(), &runs, "heal").expect("id"), "heal-11");
        assert_eq!(issue_id(dir.path(), &runs, "tidy").expect("id"), "tidy-1");
        std::fs::write(dir.path().join(IDS_FILE), "nonsense").expect("write");
        let e = issue_id(dir.path(), &runs, "heal").expect_err("unreadable");
        assert!(format!("{e:#}").contains("ids.json is not a map of run numbers"), "{e:#}");
    }
}
