//! # agentd: the AitherOS appliance daemon
//!
//! `agentd` turns the hardware profile, the chosen preset and the configuration into
//! running, confined, sized workloads, and answers questions about them.
//!
//! ## Design (to be built by the agentd issue)
//!
//! - Layered TOML configuration (`/usr/share/aither` < `/etc/aither` < drop-ins < `/run`),
//!   validated into typed settings.
//! - A plan (profile + preset + config + manifests → units) run on `aither-init`.
//! - Agents confined as `aither_agent_t` with one MCS category pair each, in cgroups.
//! - `Type=notify` under systemd; the D-Bus API `org.aitheros.Agentd1`; `aitherctl`.
//! - The OpenAI-compatible gateway in front of the inference workers.
//!
//! ## Status
//!
//! Built so far: [`config`] (layered configuration with file-and-key errors), [`agents`]
//! (manifests, persistent MCS category pairs, the admission queue), [`tailored_policy`] (the
//! per-agent SELinux modules) and `aitherctl policy`.
//! The daemon itself is not implemented yet: `agentd` and the other `aitherctl` commands say
//! so and exit with [`EXIT_NOT_IMPLEMENTED`].
//!
//! ## Limitations
//!
//! Everything in the design above but the tailored policies is not yet built.

pub mod agents;
pub mod bus;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod run;
pub mod sd;
pub mod services;
pub mod tailored_policy;
pub mod units;

/// Exit status of a binary whose feature has not landed yet (`EX_UNAVAILABLE`, sysexits.h).
pub const EXIT_NOT_IMPLEMENTED: i32 = 69;

/// Print a one-line notice that `what` is not implemented yet and return the exit status.
pub fn not_implemented(what: &str, issue: &str) -> i32 {
    eprintln!("{what}: not implemented yet (see the issue \"{issue}\")");
    EXIT_NOT_IMPLEMENTED
}
