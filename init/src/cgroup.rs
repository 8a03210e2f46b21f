//! cgroup v2 in the subtree systemd delegates to the supervisor (`Delegate=yes`).
//!
//! Layout under the delegated root `R` (the supervisor's own cgroup):
//!
//! ```text
//! R/                      controllers enabled for the children (cgroup.subtree_control)
//! R/supervisor/           the supervisor itself (a cgroup with children holds no processes)
//! R/unit-<unit>/          one per unit: memory.max, memory.oom.group, pids.max, cpu.weight,
//!                         io.weight, cpuset.cpus; cgroup.kill stops it whole; memory.events
//!                         counts its OOM kills
//! ```
//!
//! When the supervisor is restarted (`systemctl restart`, or after a crash) while its units
//! keep running, systemd puts the new supervisor in `R`, which the kernel refuses while R
//! distributes controllers (219/CGROUP; systemd 254's `DelegateSubgroup=` avoids it, Rocky 9
//! has 252). So the controllers are turned off first ([`Cgroups::release`]: by the supervisor
//! when it steps aside, and by a helper unit before every start in case it crashed), which the
//! kernel allows because the tree is flat: no child distributes controllers itself. The units
//! run unlimited until the new supervisor turns the controllers on again and re-applies their
//! limits as it adopts them.
//!
//! Every path is under a root given as a parameter, so tests can point it at a fixture; the
//! real behaviour is tested in the VM test bed, where systemd delegates a subtree.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::unit::Limits;

/// The statfs magic of a cgroup2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CONTROLLERS: &[&str] = &["cpu", "io", "memory", "pids", "cpuset"];

/// Why limits are off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("{0} is not a cgroup v2 filesystem (cgroup v1 or hybrid host): limits are off")]
    NotCgroup2(PathBuf),
    #[error("cannot read {path}: {problem}")]
    Unreadable { path: PathBuf, problem: String },
    #[error("{0} is not writable: no cgroup subtree is delegated to the supervisor (dev mode?): limits are off")]
    NotDelegated(PathBuf),
    #[error("{0}: cgroup limits are off")]
    Disabled(String),
}

/// The delegated subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    root: PathBuf,
}

/// The cgroup of one unit.
#[derive(Debug)]
pub struct UnitCgroup {
    pub dir: PathBuf,
    /// `cgroup.procs`, opened for the child to write itself into.
    pub procs: File,
}

/// The cgroup of the current process from `proc_self_cgroup` (`0::/system.slice/agentd.service`),
/// resolved under the cgroup2 mount `mount`.
pub fn own_cgroup(mount: &Path, proc_self_cgroup: &Path) -> Result<PathBuf, Unavailable> {
    let text = fs::read_to_string(proc_self_cgroup)
        .map_err(|e| Unavailable::Unreadable { path: proc_self_cgroup.into(), problem: e.to_string() })?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).ok_or_else(|| Unavailable::Unreadable {
        path: proc_self_cgroup.into(),
        problem: "no cgroup v2 line (0::)".into(),
    })?;
    Ok(mount.join(rel.trim_start_matches('/')))
}

impl Cgroups {
    /// The delegated subtree of this process, or why there is none.
    pub fn detect(mount: &Path, proc_self_cgroup: &Path) -> Result<Cgroups, Unavailable> {
        let stat = rustix::fs::statfs(mount)
            .map_err(|e| Unavailable::Unreadable { path: mount.into(), problem: e.to_string() })?;
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
        if stat.f_type as i64 != CGROUP2_SUPER_MAGIC {
            return Err(Unavailable::NotCgroup2(mount.into()));
        }
        let mut root = own_cgroup(mount, proc_self_cgroup)?;
        // A restarted supervisor finds itself in its own leaf: the root is its parent.
        if root.file_name().is_some_and(|n| n == "supervisor") {
            root.pop();
        }
        Cgroups::at(root)
    }

    /// Use `root` as the delegated subtree (it must be a writable cgroup v2 directory).
    pub fn at(root: PathBuf) -> Result<Cgroups, Unavailable> {
        let procs = root.join("cgroup.procs");
        if rustix::fs::access(&procs, rustix::fs::Access::WRITE_OK).is_err() {
            return Err(Unavailable::NotDelegated(root));
        }
        Ok(Cgroups { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cgroup directory of a unit.
    pub fn unit_dir(&self, unit: &str) -> PathBuf {
        self.root.join(format!("unit-{unit}"))
    }

    /// Move this process into `supervisor/` and enable the controllers for the units.
    pub fn prepare(&self) -> io::Result<()> {
        let leaf = self.root.join("supervisor");
        fs::create_dir_all(&leaf)?;
        // Every process of the root moves: the supervisor's threads share its thread group.
        fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())?;
        enable_controllers(&self.root)
    }

    /// Turn the controllers off again before the supervisor exits and leaves its units
    /// running (a restart): systemd attaches the next supervisor to the delegated root, and
    /// the kernel refuses a process in a cgroup that distributes controllers to children.
    /// The units keep running, unlimited until the next supervisor applies their limits again
    /// when it adopts them.
    pub fn release(&self) -> io::Result<()> {
        disable_controllers(&self.root)
    }

    /// Create (or reuse) the unit's cgroup with its limits.
    pub fn create_unit(&self, unit: &str, limits: &Limits) -> io::Result<UnitCgroup> {
        let dir = self.unit_dir(unit);
        fs::create_dir_all(&dir)?;
        let write = |file: &str, value: String| -> io::Result<()> {
            fs::write(dir.join(file), value)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display())))
        };
        write("memory.max", limits.memory_max.map_or("max".into(), |v| v.to_string()))?;
        write("memory.oom.group", if limits.oom_group { "1" } else { "0" }.into())?;
        write("pids.max", limits.pids_max.map_or("max".into(), |v| v.to_string()))?;
        if let Some(w) = limits.cpu_weight {
            write("cpu.weight", w.to_string())?;
        }
        if let Some(w) = limits.io_weight {
            // io.weight needs the BFQ or io.cost controller; without it the file is absent.
            if dir.join("io.weight").exists() {
                write("io.weight", format!("default {w}"))?;
            }
        }
        if let Some(cpus) = &limits.cpuset {
            write("cpuset.cpus", cpus.clone())?;
        }
        let procs = File::options().write(true).open(dir.join("cgroup.procs"))?;
        Ok(UnitCgroup { dir, procs })
    }

    /// Kill every process of the unit at once (`cgroup.kill`, Linux 5.14+).
    pub fn kill(&self, unit: &str) -> io::Result<()> {
        fs::write(self.unit_dir(unit).join("cgroup.kill"), "1")
    }

    /// The unit's OOM kill count (`oom_kill` in memory.events).
    pub fn oom_kills(&self, unit: &str) -> Option<u64> {
        let text = fs::read_to_string(self.unit_dir(unit).join("memory.events")).ok()?;
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok())
    }

    /// The processes in the unit's cgroup, for re-adoption.
    pub fn procs(&self, unit: &str) -> Vec<i32> {
        fs::read_to_string(self.unit_dir(unit).join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Remove the unit's cgroup once it is empty.
    pub fn remove_unit(&self, unit: &str) {
        let _ = fs::remove_dir(self.unit_dir(unit));
    }
}

fn disable_controllers(dir: &Path) -> io::Result<()> {
    let enabled = match fs::read_to_string(dir.join("cgroup.subtree_control")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let off: Vec<String> = enabled.split_whitespace().map(|c| format!("-{c}")).collect();
    if off.is_empty() {
        return Ok(());
    }
    fs::write(dir.join("cgroup.subtree_control"), off.join(" "))
}

fn enable_controllers(dir: &Path) -> io::Result<()> {
    let available = fs::read_to_string(dir.join("cgroup.controllers"))?;
    let wanted: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_cgroup_comes_from_the_v2_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("cgroup");
        fs::write(&f, "12:memory:/x\n0::/system.slice/agentd.service\n").expect("write");
        assert_eq!(
            own_cgroup(Path::new("/sys/fs/cgroup"), &f),
            Ok(PathBuf::from("/sys/fs/cgroup/system.slice/agentd.service"))
        );
        fs::write(&f, "12:memory:/x\n").expect("write");
        assert!(matches!(own_cgroup(Path::new("/sys/fs/cgroup"), &f), Err(Unavailable::Unreadable { .. })));
    }

    #[test]
    fn a_plain_directory_is_not_a_cgroup2_mount() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Cgroups::detect(dir.path(), Path::new("/proc/self/cgroup")).expect_err("tmpfs or ext4");
        assert!(matches!(err, Unavailable::NotCgroup2(_)), "{err}");
    }

    #[test]
    fn unit_limits_are_written_as_the_kernel_expects() {
        // A fixture tree with the files a cgroup would have.
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("cgroup.procs"), "").expect("procs");
        let cg = Cgroups::at(dir.path().to_path_buf()).expect("writable root");
        let unit = dir.path().join("unit-agent-a");
        fs::create_dir_all(&unit).expect("mkdir");
        fs::write(unit.join("cgroup.procs"), "").expect("procs");
        let limits =
            Limits { memory_max: Some(64 << 20), pids_max: Some(32), cpu_weight: Some(200), ..Limits::default() };
        let limits = Limits { oom_group: true, ..limits };
        cg.create_unit("agent-a", &limits).expect("created");
        let read = |f: &str| fs::read_to_string(unit.join(f)).expect(f);
        assert_eq!(
            (read("memory.max"), read("pids.max"), read("cpu.weight"), read("memory.oom.group")),
            ("67108864".into(), "32".into(), "200".into(), "1".into())
        );
        fs::write(unit.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").expect("events");
        assert_eq!(cg.oom_kills("agent-a"), Some(1));
    }
}
