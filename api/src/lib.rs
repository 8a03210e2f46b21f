//! # aither-api: the documents that cross a process boundary
//!
//! One typed model shared by whoever writes a document and whoever reads it (bottlerocket's
//! `models`, bootc's `spec`): the hardware profile (`/run/aither/hwprofile.json`), the plan,
//! agentd's replies on D-Bus, and the step documents between agentd and a workflow step's
//! agent (`workflow`: what the agent is given, what it leaves, the proposals). Clients deserialize into these same types; nothing on the
//! other side indexes untyped JSON. Every top-level document carries `schema_version`, and
//! its JSON Schema (for clients not written in Rust, such as the Cockpit page) is generated
//! from the types into `docs/schema/` — a test fails when the files and the types differ.
//!
//! ## Limitations
//!
//! - Only the shapes live here; the code that computes a document lives with its owner
//!   (`aither-hwprofile` detects the profile and computes the plan; agentd builds its replies).

pub mod agentd;
pub mod eval;
pub mod net;
pub mod plan;
pub mod preset;
pub mod profile;
pub mod render;
pub mod schema;
pub mod store;
pub mod viewers;
pub mod workflow;

/// Bytes as GiB with one decimal, for messages and tables.
pub fn gib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let g = bytes as f64 / f64::from(1u32 << 30);
    format!("{g:.1} GiB")
}
