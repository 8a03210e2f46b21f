//! # aither-sys: what every AitherOS binary needs from the host
//!
//! Small and dependency-free, so the daemon, the worker, the tools and the engine share one
//! of each instead of a copy each:
//!
//! - [`paths`]: the appliance's directories (`/etc/aither`, `/var/lib/aither`, ...) in one place.
//! - [`atomic`]: writing a file so readers see the old one or the new one, never a part, and
//!   nothing left behind when it fails.
//! - [`command`]: running a program, with its whole argv in every error.
//! - [`children`]: the children a process waits for itself, which its orphan reaper leaves.
//! - [`notify`]: the sd_notify sender (`READY=1`, `STATUS=`, `WATCHDOG=1`).
//! - [`time`]: UTC calendar dates from Unix time.
//! - [`selinux`]: whether SELinux is on, this process's context, and creating sockets in a
//!   given context.
//!
//! Every function that touches a host path takes it (or its root) as a parameter.
//!
//! ## Limitations
//!
//! - [`selinux`] talks to procfs and selinuxfs directly (no libselinux): enough for the
//!   checks and settings the appliance makes, not a general binding.

pub mod atomic;
pub mod children;
pub mod command;
pub mod notify;
pub mod paths;
pub mod selinux;
pub mod time;
