//! # aither-firstboot: the console wizard and the headless path
//!
//! At first boot `aither-firstboot.service` (ordered before `aither-configured.target`, and
//! skipped once `/var/lib/aither/configured` exists) configures the appliance. Both ways in
//! end in one core:
//!
//! - **headless** ([`source`]): an answers file — `--answers FILE`, `aither.answers=` on the
//!   kernel command line (a file or a URL), or `/etc/aither/answers.toml` written by
//!   cloud-init user-data. The cloud image never waits on the console: without answers it
//!   applies the defaults.
//! - **the console wizard** ([`wizard`], ratatui, keyboard only, fits 80×25): the hardware,
//!   the preset and its reason, the admin account, the network, host name and time zone, the
//!   models, the cloud fallback, a review, then apply with progress and a summary.
//!
//! Both produce an [`answers::Answers`] document (the answers file's schema), which
//! [`answers::validate`] checks against the target machine — every problem reported at once,
//! each with its key — and [`apply`] writes through a staged transaction ([`stage`]): nothing
//! is visible until everything is written, the commit undoes itself on failure, and the
//! "configured" marker goes last. A failure leaves the machine unconfigured, never half.
//!
//! ## Limitations
//!
//! - Network: wired interfaces only (NetworkManager keyfiles, DHCP or static); Wi-Fi, bonds
//!   and VLANs are left to `nmtui` after first boot.
//! - GPU drivers are installed by `aither-drivers.service` (the images), not here; the wizard
//!   shows what the profile says they need.
//! - The admin gets `wheel` (or `sudo`) and `aither-admin`; sudo's own configuration is the
//!   distribution's.
//! - After the commit, the running host name is set by systemd-hostnamed and the connections
//!   activated by NetworkManager, over the system bus ([`bus`], each call under a deadline);
//!   a service that is absent or silent is a warning in the summary, and the files apply at
//!   the next boot.

pub mod accounts;
pub mod answers;
pub mod apply;
pub mod bus;
pub mod cli;
pub mod network;
pub mod source;
pub mod stage;
pub mod wizard;
