//! A unit's stdout and stderr: journald's stream protocol, a file, or nothing.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::unit::LogTarget;

/// The unit's stdout and stderr. A journald stream for a unit with an SELinux context is
/// created in that context, so a unit confined to its own MCS categories may write to it.
pub(super) fn open_log(
    target: &LogTarget,
    unit: &str,
    context: Option<&str>,
    journal_socket: &Path,
) -> std::io::Result<Option<(OwnedFd, OwnedFd)>> {
    match target {
        LogTarget::Inherit => Ok(None),
        LogTarget::Null => {
            let f = File::options().write(true).open("/dev/null")?;
            Ok(Some((OwnedFd::from(f.try_clone()?), OwnedFd::from(f))))
        }
        LogTarget::File { path } => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = File::options().create(true).append(true).open(path)?;
            Ok(Some((OwnedFd::from(f.try_clone()?), OwnedFd::from(f))))
        }
        LogTarget::Journal => {
            use std::io::Write;
            // The socket creation context is per thread; nothing awaits between set and reset.
            let mut s = aither_sys::selinux::with_socket_context(context, || {
                std::os::unix::net::UnixStream::connect(journal_socket)
            })?;
            // The journald stream header: identifier, unit id, priority, level prefix,
            // forward to syslog, kmsg, console.
            write!(s, "{unit}\n\n6\n1\n0\n0\n0\n")?;
            s.shutdown(std::net::Shutdown::Read)?;
            let fd = OwnedFd::from(s);
            Ok(Some((fd.try_clone()?, fd)))
        }
    }
}
