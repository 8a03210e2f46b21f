//! # agentd: the AitherOS appliance daemon
//!
//! `agentd` turns the hardware profile, the chosen preset and the configuration into
//! running, confined, sized workloads, and answers questions about them.
//!
//! ## Design
//!
//! - [`config`]: layered TOML configuration (`/usr/share/aither` < `/etc/aither` < drop-ins <
//!   `/run`), validated into typed settings; errors name the file and the key.
//! - [`units`]: the plan (from `aither-hwprofile`), unit manifests ([`services`]) and agent
//!   manifests ([`agents`]) become `aither-init` units — a pure function.
//! - [`daemon`]: runs them on `aither-init`, admits agents within the preset's limit, labels
//!   workspaces, reloads (all-or-nothing), stops or steps aside for a restart.
//! - [`workflows`] (the `aither-workflow` crate): workflow definitions (steps as roles,
//!   inputs, triggers, budgets), read from `/usr/share/aither/workflows` and `/etc/aither/workflows.d` and validated; the
//!   engine that runs them (steps as `aither-agent` units, hand-over, proposals, approvals,
//!   audit, resume) is in `daemon` (`workflow.rs`, `runs.rs`).
//! - [`gateway`]: the OpenAI-compatible front door, routing to the workers (started on
//!   demand, unloaded when idle) or the cloud fallback.
//! - [`inference`]: the workers' figures over the last minutes (tokens/s, queue, KV use).
//! - [`bus`]: the D-Bus API `org.aitheros.Agentd1`, authorized by the caller's uid.
//! - [`run`]: `agentd`'s main — journald logging, `sd_notify` ([`aither_sys::notify`]), signals, watchdog.
//! - `aitherctl`, the client, is a crate of its own (`ctl/`), on the documents of `aither-api`.
//! - per-agent SELinux modules: the `aither-policy` crate.
//!
//! ## Limitations
//!
//! - Tailored modules are installed by `aitherctl policy install`, not by agentd: an agent
//!   whose module is missing is shown `blocked` with the command to run.
//! - A unit whose definition changes on reload keeps running with the old one until its next
//!   start (reload says which).
//! - During `systemctl restart agentd` the units run without cgroup limits for the moment
//!   between the old agentd's exit and the new one's adoption (the kernel refuses systemd's
//!   attach while controllers are enabled; see `aither_init::cgroup`).

pub mod agents;
pub mod bus;
pub mod config;
pub mod daemon;
pub mod gateway;
pub mod inference;
pub mod run;
pub mod services;
pub mod units;
/// The workflow definitions, from their own crate (shared with the eval).
pub use aither_workflow as workflows;
