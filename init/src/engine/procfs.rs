//! What the engine reads of other processes, under a proc root (`/proc` on a host).

use std::path::Path;

/// Field `n` (1-based, as in proc(5)) of `PROC/PID/stat`, for fields after the name.
fn stat_field(proc_root: &Path, pid: i32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// The start time of a process in clock ticks since boot (field 22): with the PID, it names
/// one process for good (a reused PID has another start time).
pub fn start_time(proc_root: &Path, pid: i32) -> Option<u64> {
    stat_field(proc_root, pid, 22)
}

/// A process's parent (field 4).
pub fn parent_of(proc_root: &Path, pid: i32) -> Option<u32> {
    stat_field(proc_root, pid, 4).and_then(|p| u32::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("42")).expect("mkdir");
        std::fs::write(
            t.path().join("42/stat"),
            "42 (my (odd) cmd) S 7 42 42 0 -1 4194560 95 0 0 0 0 0 0 0 20 0 1 0 123456 2269184 128",
        )
        .expect("stat");
        assert_eq!(parent_of(t.path(), 42), Some(7));
        assert_eq!(start_time(t.path(), 42), Some(123_456));
        assert_eq!(start_time(t.path(), 43), None, "gone");
    }
}
