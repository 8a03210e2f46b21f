//! Starting a unit's process: fork, set the child up with async-signal-safe system calls
//! only, exec.
//!
//! Everything the child needs (argv, envp, paths, the `LISTEN_PID=` buffer, file
//! descriptors) is prepared before `fork`, because after `fork` in a multi-threaded process
//! the child may not allocate. The child then: resets its signal mask, starts a new session,
//! joins its cgroup, sets rlimits, wires stdio and the socket-activation descriptors, marks
//! every other descriptor close-on-exec (`close_range`, so nothing the supervisor holds —
//! client connections, other units' sockets — leaks into the unit), writes its own PID into
//! `LISTEN_PID`, changes directory, drops to its user and group, sets the SELinux exec
//! context and `no_new_privs`, and execs. A failure in any step is written to a
//! close-on-exec pipe, so the parent reports it as [`SpawnError`] instead of a mystery exit.

#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::libc;

use crate::unit::{Rlimit, RlimitResource};

/// What to start.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    pub argv: &'a [String],
    pub env: Vec<(String, String)>,
    pub working_directory: Option<&'a Path>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub rlimits: &'a [Rlimit],
    pub no_new_privs: bool,
    /// Written to `/proc/thread-self/attr/exec` (SELinux) when set.
    pub selinux_context: Option<&'a str>,
    /// `cgroup.procs` of the unit's cgroup, opened for writing.
    pub cgroup_procs: Option<&'a File>,
    pub stdout: Option<&'a OwnedFd>,
    pub stderr: Option<&'a OwnedFd>,
    /// Listening sockets handed over as fds 3.. with `LISTEN_FDS`/`LISTEN_PID`.
    pub listen_fds: &'a [OwnedFd],
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{program}: not found in PATH")]
    NotFound { program: String },
    #[error("{what}: contains a NUL byte")]
    Nul { what: String },
    #[error("fork failed: {0}")]
    Fork(std::io::Error),
    #[error("{program}: {step} failed: {source}")]
    Child { program: String, step: &'static str, source: std::io::Error },
}

/// Steps the child reports failures of, by index.
const STEPS: &[&str] = &[
    "sigprocmask",
    "setsid",
    "joining the cgroup",
    "setrlimit",
    "dup2 of stdio",
    "dup2 of a listening socket",
    "setgroups",
    "setgid",
    "setuid",
    "chdir",
    "setting the SELinux exec context",
    "no_new_privs",
    "execve",
];

fn cstring(what: &str, bytes: &[u8]) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::Nul { what: what.to_string() })
}

/// Resolve a program name through `PATH` as execvp would, in the parent.
pub fn resolve_program(program: &str, path_env: Option<&OsStr>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let default = OsStr::new("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    std::env::split_paths(path_env.unwrap_or(default)).map(|d| d.join(program)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
            .unwrap_or(false)
    })
}

fn resource(r: RlimitResource) -> libc::__rlimit_resource_t {
    match r {
        RlimitResource::Nofile => libc::RLIMIT_NOFILE,
        RlimitResource::Nproc => libc::RLIMIT_NPROC,
        RlimitResource::Core => libc::RLIMIT_CORE,
        RlimitResource::Memlock => libc::RLIMIT_MEMLOCK,
        RlimitResource::Stack => libc::RLIMIT_STACK,
        RlimitResource::As => libc::RLIMIT_AS,
        RlimitResource::Fsize => libc::RLIMIT_FSIZE,
    }
}

/// Fork and exec; returns the child's PID once `execve` succeeded.
pub fn spawn(req: &SpawnRequest<'_>) -> Result<i32, SpawnError> {
    let program_name = req.argv.first().cloned().unwrap_or_default();
    let path_env = req.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| OsStr::new(v.as_str()));
    let program = resolve_program(&program_name, path_env)
        .ok_or_else(|| SpawnError::NotFound { program: program_name.clone() })?;

    // Everything below is allocated before fork.
    let path_c = cstring("program path", program.as_os_str().as_bytes())?;
    let argv_c: Vec<CString> = req.argv.iter().map(|a| cstring("argument", a.as_bytes())).collect::<Result<_, _>>()?;
    let mut env_c: Vec<CString> = req
        .env
        .iter()
        .filter(|(k, _)| k != "LISTEN_PID" && k != "LISTEN_FDS")
        .map(|(k, v)| cstring("environment", format!("{k}={v}").as_bytes()))
        .collect::<Result<_, _>>()?;
    // LISTEN_PID is filled in by the child with its own PID: 20 spaces of room, then trimmed
    // by a NUL the child writes after the digits.
    let listen_pid_index = if req.listen_fds.is_empty() {
        None
    } else {
        env_c.push(cstring("environment", format!("LISTEN_FDS={}", req.listen_fds.len()).as_bytes())?);
        env_c.push(cstring("environment", b"LISTEN_PID=                    ")?);
        Some(env_c.len() - 1)
    };
    let mut env_bufs: Vec<Vec<u8>> = env_c.into_iter().map(CString::into_bytes_with_nul).collect();
    let argv_p: Vec<*const libc::c_char> =
        argv_c.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let env_p: Vec<*mut libc::c_char> = env_bufs
        .iter_mut()
        .map(|b| b.as_mut_ptr().cast::<libc::c_char>())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    let listen_pid_buf: *mut u8 = match listen_pid_index {
        Some(i) => env_bufs[i].as_mut_ptr(),
        None => std::ptr::null_mut(),
    };
    let cwd_c = match req.working_directory {
        Some(d) => Some(cstring("working directory", d.as_os_str().as_bytes())?),
        None => None,
    };
    let context_c = match req.selinux_context {
        Some(c) => Some(cstring("SELinux context", c.as_bytes())?),
        None => None,
    };
    let attr_path = c"/proc/thread-self/attr/exec";
    let rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)> = req
        .rlimits
        .iter()
        .map(|r| (resource(r.resource), libc::rlimit { rlim_cur: r.soft, rlim_max: r.hard }))
        .collect();
    let devnull = File::options().read(true).write(true).open("/dev/null").map_err(SpawnError::Fork)?;
    let stdin_fd = devnull.as_raw_fd();
    let stdout_fd = req.stdout.map_or(libc::STDOUT_FILENO, AsRawFd::as_raw_fd);
    let stderr_fd = req.stderr.map_or(libc::STDERR_FILENO, AsRawFd::as_raw_fd);
    let listen_raw: Vec<RawFd> = req.listen_fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cgroup_fd = req.cgroup_procs.map(AsRawFd::as_raw_fd);
    let mut pipe_fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(pipe_fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SpawnError::Fork(std::io::Error::last_os_error()));
    }
    let (err_read, err_write) = (pipe_fds[0], pipe_fds[1]);

    // SAFETY: after fork the child only makes async-signal-safe system calls on memory
    // prepared above, and leaves through execve or _exit; it never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: closing the pipe we created.
        unsafe {
            libc::close(err_read);
            libc::close(err_write);
        }
        return Err(SpawnError::Fork(e));
    }
    if pid == 0 {
        // SAFETY: child side of fork, see above.
        unsafe {
            child(ChildPlan {
                err_write,
                path: path_c.as_ptr(),
                argv: argv_p.as_ptr(),
                envp: env_p.as_ptr(),
                listen_pid_buf,
                cwd: cwd_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                context: context_c.as_ref().map(|c| (c.as_ptr(), c.as_bytes().len())),
                attr_path: attr_path.as_ptr(),
                rlimits: &rlimits,
                stdio: [stdin_fd, stdout_fd, stderr_fd],
                listen: &listen_raw,
                cgroup_fd,
                uid: req.uid,
                gid: req.gid,
                no_new_privs: req.no_new_privs,
            })
        }
    }
    // Parent.
    // SAFETY: closing our copy of the write end; the child holds its own.
    unsafe { libc::close(err_write) };
    // SAFETY: err_read is a descriptor we own from here on.
    let mut reader = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(err_read) };
    let mut report = [0u8; 8];
    let mut got = 0;
    while got < report.len() {
        match reader.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if got == 0 {
        return Ok(pid);
    }
    // The child failed before exec: reap it and report the step.
    let mut status = 0;
    // SAFETY: waiting for our own child, which has exited or is about to.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let step = usize::try_from(i32::from_ne_bytes([report[0], report[1], report[2], report[3]])).unwrap_or(0);
    let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
    Err(SpawnError::Child {
        program: program_name,
        step: STEPS.get(step).copied().unwrap_or("setup"),
        source: std::io::Error::from_raw_os_error(errno),
    })
}

struct ChildPlan<'a> {
    err_write: RawFd,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *mut libc::c_char,
    listen_pid_buf: *mut u8,
    cwd: *const libc::c_char,
    context: Option<(*const libc::c_char, usize)>,
    attr_path: *const libc::c_char,
    rlimits: &'a [(libc::__rlimit_resource_t, libc::rlimit)],
    stdio: [RawFd; 3],
    listen: &'a [RawFd],
    cgroup_fd: Option<RawFd>,
    uid: Option<u32>,
    gid: Option<u32>,
    no_new_privs: bool,
}

/// Report `step` with the current errno on the error pipe and exit.
unsafe fn fail(err_write: RawFd, step: usize) -> ! {
    // SAFETY: __errno_location is always valid in the calling thread.
    let errno = unsafe { *libc::__errno_location() };
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&i32::try_from(step).unwrap_or(0).to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is on our stack.
    unsafe {
        libc::write(err_write, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The child after fork. Only async-signal-safe calls; never returns.
unsafe fn child(p: ChildPlan<'_>) -> ! {
    // SAFETY: every call below is a raw system call or an async-signal-safe libc wrapper, on
    // pointers into memory prepared before fork that stays valid until exec.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            fail(p.err_write, 0);
        }
        // Signals the parent ignored would stay ignored across exec: restore the defaults.
        for sig in [libc::SIGPIPE, libc::SIGCHLD, libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
            libc::signal(sig, libc::SIG_DFL);
        }
        if libc::setsid() < 0 {
            fail(p.err_write, 1);
        }
        if let Some(fd) = p.cgroup_fd {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(p.err_write, 2);
            }
        }
        for (res, lim) in p.rlimits {
            if libc::setrlimit(*res, lim) != 0 {
                fail(p.err_write, 3);
            }
        }
        // Listening sockets first move out of the way of stdio, then into 3, 4, ...
        // (dup2 onto itself keeps close-on-exec, so the flag is cleared explicitly).
        for (i, fd) in p.stdio.iter().enumerate() {
            let target = i32::try_from(i).unwrap_or(0);
            if *fd != target && libc::dup2(*fd, target) < 0 {
                fail(p.err_write, 4);
            }
            libc::fcntl(target, libc::F_SETFD, 0);
        }
        for (i, fd) in p.listen.iter().enumerate() {
            let target = 3 + i32::try_from(i).unwrap_or(0);
            if *fd != target && libc::dup2(*fd, target) < 0 {
                fail(p.err_write, 5);
            }
            libc::fcntl(target, libc::F_SETFD, 0);
        }
        // Everything above the descriptors the unit gets goes at exec. CLOEXEC rather than
        // closing: the error pipe must stay open until execve succeeds.
        let first = 3 + u32::try_from(p.listen.len()).unwrap_or(0);
        if libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
            // Kernels before 5.11: one descriptor at a time, up to the descriptor limit.
            let mut lim: libc::rlimit = std::mem::zeroed();
            let max =
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 { lim.rlim_cur.min(1 << 20) } else { 65536 };
            let mut fd = libc::c_int::try_from(first).unwrap_or(3);
            while u64::try_from(fd).unwrap_or(u64::MAX) < max {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                fd += 1;
            }
        }
        if !p.listen_pid_buf.is_null() {
            // "LISTEN_PID=" is 11 bytes; the digits follow, then a NUL.
            let mut pid = u32::try_from(libc::getpid()).unwrap_or(0);
            let mut digits = [0u8; 10];
            let mut n = 0;
            loop {
                digits[n] = b'0' + u8::try_from(pid % 10).unwrap_or(0);
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            for i in 0..n {
                *p.listen_pid_buf.add(11 + i) = digits[n - 1 - i];
            }
            *p.listen_pid_buf.add(11 + n) = 0;
        }
        if let Some(gid) = p.gid {
            if libc::setgroups(0, std::ptr::null()) != 0 {
                fail(p.err_write, 6);
            }
            if libc::setgid(gid) != 0 {
                fail(p.err_write, 7);
            }
        }
        if let Some(uid) = p.uid {
            if libc::setuid(uid) != 0 {
                fail(p.err_write, 8);
            }
        }
        // As the unit's user: its private working directory may be closed to the supervisor,
        // which holds no CAP_DAC_OVERRIDE.
        if !p.cwd.is_null() && libc::chdir(p.cwd) != 0 {
            fail(p.err_write, 9);
        }
        if let Some((ctx, len)) = p.context {
            let fd = libc::open(p.attr_path, libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, ctx.cast(), len) < 0 {
                fail(p.err_write, 10);
            }
            libc::close(fd);
        }
        if p.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(p.err_write, 11);
        }
        libc::execve(p.path, p.argv, p.envp.cast());
        fail(p.err_write, 12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(argv: &'a [String], rlimits: &'a [Rlimit]) -> SpawnRequest<'a> {
        SpawnRequest {
            argv,
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            working_directory: None,
            uid: None,
            gid: None,
            rlimits,
            no_new_privs: true,
            selinux_context: None,
            cgroup_procs: None,
            stdout: None,
            stderr: None,
            listen_fds: &[],
        }
    }

    fn wait(pid: i32) -> i32 {
        let mut status = 0;
        // SAFETY: waiting for a child this test spawned.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        libc::WEXITSTATUS(status)
    }

    #[test]
    fn a_missing_program_is_reported_before_fork() {
        let argv = vec!["no-such-program-aither".to_string()];
        assert!(matches!(spawn(&request(&argv, &[])), Err(SpawnError::NotFound { .. })));
    }

    #[test]
    fn a_failing_setup_step_is_reported_with_its_name() {
        let argv = vec!["true".to_string()];
        let mut req = request(&argv, &[]);
        let missing = Path::new("/nonexistent/dir");
        req.working_directory = Some(missing);
        let err = spawn(&req).expect_err("chdir fails");
        assert!(matches!(err, SpawnError::Child { step: "chdir", .. }), "{err}");
    }

    #[test]
    fn a_descriptor_without_close_on_exec_does_not_reach_the_child() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("fds");
        let file = File::open("/dev/null").expect("open");
        // SAFETY: a copy (at 200 or above) of a descriptor we own; F_DUPFD leaves it without
        // close-on-exec.
        let leaked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD, 200) };
        assert!(leaked >= 200);
        let script = format!("ls /proc/$$/fd > {}", out.display());
        let argv = vec!["sh".to_string(), "-c".to_string(), script];
        let pid = spawn(&request(&argv, &[])).expect("spawns");
        assert_eq!(wait(pid), 0);
        // SAFETY: closing the copy made above.
        unsafe { libc::close(leaked) };
        let fds: Vec<i32> =
            std::fs::read_to_string(&out).expect("output").split_whitespace().filter_map(|f| f.parse().ok()).collect();
        assert!(fds.contains(&0) && fds.contains(&2), "stdio is there: {fds:?}");
        assert!(!fds.contains(&leaked), "fd {leaked} leaked into the child: {fds:?}");
    }

    #[test]
    fn the_child_runs_in_its_own_session_with_its_rlimits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let script = format!("ps -o sid= -p $$ > {0}; echo $$ >> {0}; ulimit -n >> {0}", out.display());
        let argv = vec!["sh".to_string(), "-c".to_string(), script];
        let limits = [Rlimit { resource: RlimitResource::Nofile, soft: 123, hard: 456 }];
        let pid = spawn(&request(&argv, &limits)).expect("spawns");
        assert_eq!(wait(pid), 0);
        let text = std::fs::read_to_string(&out).expect("output");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(lines[0], lines[1], "session id equals the child's pid: {text}");
        assert_eq!(lines[2], "123");
    }
}
