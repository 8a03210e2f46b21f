//! Finding the units' processes again when the state file cannot be read.
//!
//! Adoption normally trusts the state file (unit, PID, start time). When that file is
//! corrupt, the engine still must not start a second copy of every unit that is running:
//! each unit leads its own session (the child calls `setsid`), and carries
//! `AITHER_UNIT=<name>` in its environment, so its main process is found
//!
//! - with cgroups, as the session leader among the processes of the unit's cgroup;
//! - without them (development mode), as a session leader whose environment names the unit
//!   and which runs as this process's user (or any user when this process is root).
//!
//! Everything is read under `proc_root` (`/proc` on a host), so tests use fixture trees.

use std::collections::BTreeMap;
use std::path::Path;

/// The environment variable that names a unit in its processes.
pub const UNIT_ENV: &str = "AITHER_UNIT";

/// A unit's main process, found again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`.
    pub start_time: u64,
}

/// `(session, start_time)` of a process, from its `stat`.
fn stat(proc_root: &Path, pid: i32) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command (field 2) is in parentheses and may hold anything: fields after the last ')'.
    let rest: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // rest[0] is field 3 (state); session is field 6, start time field 22.
    Some((rest.get(3)?.parse().ok()?, rest.get(19)?.parse().ok()?))
}

/// The session leader among `pids`: a unit's main process.
pub fn session_leader(proc_root: &Path, pids: &[i32]) -> Option<Found> {
    pids.iter().find_map(|&pid| match stat(proc_root, pid) {
        Some((session, start_time)) if session == pid => Some(Found { pid, start_time }),
        _ => None,
    })
}

/// The unit a process says it belongs to (its `AITHER_UNIT`), if it may be believed: it
/// runs as `uid` unless `uid` is `None` (root may adopt anyone's).
fn unit_of(proc_root: &Path, pid: i32, uid: Option<u32>) -> Option<String> {
    let dir = proc_root.join(pid.to_string());
    if let Some(uid) = uid {
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let real: u32 = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()?;
        if real != uid {
            return None;
        }
    }
    let environ = std::fs::read(dir.join("environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|kv| {
        let kv = std::str::from_utf8(kv).ok()?;
        kv.strip_prefix(UNIT_ENV)?.strip_prefix('=').map(str::to_string)
    })
}

/// Without cgroups: the session leaders under `proc_root` whose environment names one of
/// `units`, by unit (the oldest, when several claim one).
pub fn scan(proc_root: &Path, units: &[&str], uid: Option<u32>) -> BTreeMap<String, Found> {
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else { return found };
    for e in entries.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Some((session, start_time)) = stat(proc_root, pid) else { continue };
        if session != pid {
            continue;
        }
        let Some(unit) = unit_of(proc_root, pid, uid).filter(|u| units.contains(&u.as_str())) else { continue };
        let f = Found { pid, start_time };
        found
            .entry(unit)
            .and_modify(|old| {
                if start_time < old.start_time {
                    *old = f
                }
            })
            .or_insert(f);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process in a fixture /proc: `stat` as the kernel writes it, `status`, `environ`.
    fn process(root: &Path, pid: i32, session: i32, start: u64, uid: u32, env: &[&str]) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("mkdir");
        let stat = format!(
            "{pid} (sleep (x) y) S 1 {pid} {session} 0 -1 4194560 95 0 0 0 0 0 0 0 20 0 1 0 {start} 2269184 128 \
             18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        );
        std::fs::write(dir.join("stat"), stat).expect("stat");
        std::fs::write(dir.join("status"), format!("Name:\tsleep\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"))
            .expect("status");
        let environ: Vec<u8> = env.iter().flat_map(|e| e.bytes().chain(std::iter::once(0))).collect();
        std::fs::write(dir.join("environ"), environ).expect("environ");
    }

    #[test]
    fn a_units_main_process_is_its_session_leader() {
        let t = tempfile::tempdir().expect("tempdir");
        process(t.path(), 100, 100, 5000, 1000, &["AITHER_UNIT=a"]);
        process(t.path(), 101, 100, 5001, 1000, &["AITHER_UNIT=a"]);
        assert_eq!(session_leader(t.path(), &[101, 100]), Some(Found { pid: 100, start_time: 5000 }));
        assert_eq!(session_leader(t.path(), &[101]), None, "a child of the unit is not its main process");
    }

    #[test]
    fn a_scan_finds_session_leaders_that_name_a_known_unit_and_run_as_us() {
        let t = tempfile::tempdir().expect("tempdir");
        process(t.path(), 100, 100, 5000, 1000, &["PATH=/bin", "AITHER_UNIT=a"]);
        process(t.path(), 101, 100, 5001, 1000, &["AITHER_UNIT=a"]); // a child
        process(t.path(), 200, 200, 6000, 1000, &["AITHER_UNIT=b"]);
        process(t.path(), 300, 300, 7000, 0, &["AITHER_UNIT=c"]); // another user
        process(t.path(), 400, 400, 8000, 1000, &["AITHER_UNIT=unknown"]);
        std::fs::create_dir_all(t.path().join("self")).expect("self");
        let found = scan(t.path(), &["a", "b", "c"], Some(1000));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found["a"], Found { pid: 100, start_time: 5000 });
        assert_eq!(found["b"].pid, 200);
        let as_root = scan(t.path(), &["c"], None);
        assert_eq!(as_root["c"].pid, 300, "root may adopt any user's unit");
    }
}
