//! The few SELinux facts and settings the supervisor needs, through procfs and selinuxfs.
//!
//! - [`enabled`]: whether the kernel has SELinux on (a mounted selinuxfs under `sys_root`,
//!   `/sys` on a host).
//! - [`current_context`]: this process's context.
//! - [`with_socket_context`]: run a closure with the thread's socket creation context set,
//!   so the sockets it makes carry that context (a unit's journal stream at the unit's level;
//!   the gateway's listening socket at `s0`, so agents confined to their own categories may
//!   connect to it). The context is per thread and restored before returning.

use std::path::Path;

/// Whether SELinux is enabled on this kernel, under `sys_root` (`/sys` on a host).
pub fn enabled(sys_root: &Path) -> bool {
    sys_root.join("fs/selinux/enforce").exists()
}

/// Whether SELinux enforces its policy, under `sys_root`: `Some(true)` enforcing,
/// `Some(false)` permissive, `None` off (no `fs/selinux/enforce`, or one that says neither).
pub fn enforcing(sys_root: &Path) -> Option<bool> {
    match std::fs::read_to_string(sys_root.join("fs/selinux/enforce")).ok()?.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// This process's context, as `PROC/self/attr/current` gives it (`proc_root` is `/proc`).
pub fn current_context(proc_root: &Path) -> std::io::Result<String> {
    let raw = std::fs::read(proc_root.join("self/attr/current"))?;
    Ok(String::from_utf8_lossy(&raw).trim_end_matches(['\0', '\n']).to_string())
}

/// `context` with its MLS/MCS range replaced by `level` (`user:role:type:level`).
pub fn at_level(context: &str, level: &str) -> Option<String> {
    let mut parts = context.splitn(4, ':');
    let (user, role, kind) = (parts.next()?, parts.next()?, parts.next()?);
    Some(format!("{user}:{role}:{kind}:{level}"))
}

/// Run `f` with the calling thread's socket creation context set to `context` (nothing set
/// when `None`), then clear it. `f` must not yield to other tasks: the setting is per thread.
pub fn with_socket_context<T>(context: Option<&str>, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    let sockcreate = Path::new("/proc/thread-self/attr/sockcreate");
    if let Some(c) = context {
        std::fs::write(sockcreate, c).map_err(|e| std::io::Error::new(e.kind(), format!("socket context {c}: {e}")))?;
    }
    let made = f();
    if context.is_some() {
        // A lone newline clears it (an empty `fs::write` would not even call write(2)).
        std::fs::write(sockcreate, "\n")?;
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_takes_another_level() {
        assert_eq!(
            at_level("system_u:system_r:agentd_t:s0-s0:c0.c1023", "s0").as_deref(),
            Some("system_u:system_r:agentd_t:s0")
        );
        assert_eq!(at_level("unconfined", "s0"), None);
    }

    #[test]
    fn enabled_looks_for_selinuxfs_under_the_given_root() {
        let t = tempfile::tempdir().expect("tempdir");
        assert!(!enabled(t.path()));
        std::fs::create_dir_all(t.path().join("fs/selinux")).expect("mkdir");
        std::fs::write(t.path().join("fs/selinux/enforce"), "1").expect("write");
        assert!(enabled(t.path()));
    }

    #[test]
    fn the_current_context_comes_from_procfs_without_its_nul() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("self/attr")).expect("mkdir");
        std::fs::write(t.path().join("self/attr/current"), b"system_u:system_r:agentd_t:s0\0").expect("write");
        assert_eq!(current_context(t.path()).expect("read"), "system_u:system_r:agentd_t:s0");
    }

    #[test]
    fn without_a_context_the_closure_just_runs() {
        assert_eq!(with_socket_context(None, || Ok(7)).expect("ran"), 7);
    }
}
