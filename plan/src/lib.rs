//! # aither-plan: presets, the model catalog, the memory fit, and the plan
//!
//! Decisions only: pure functions of the hardware profile, the preset data and the catalog.
//! Nothing here starts a process or touches a device.
//!
//! - [`presets`]: the five presets (data in `presets/*.toml`, installed to
//!   `/usr/share/aither/presets`) and the choice of one from the profile, with the reason.
//! - [`catalog`]: the models (data in `catalog/*.toml`), with their published numbers.
//! - [`fit`]: what a model takes on the GPUs and the host (weights, KV cache, compute
//!   buffers, runtime overhead), and its placement across GPUs.
//! - [`plan()`]: the preset applied to the machine — the `aither_api::plan::Plan` document.
//! - [`data`]: loading the presets and the catalog, the appliance configuration's pinned
//!   preset, a saved profile.
//!
//! ## Limitations
//!
//! - The GPU runtime overhead is a constant per process per GPU (512 MiB), not measured on
//!   real GPUs here; the fit is checked against llama.cpp's own CPU buffers (`make bench-fit`).

pub mod catalog;
pub mod data;
mod datafiles;
pub mod fit;
pub mod plan;
pub mod presets;

pub use plan::{plan, PlanError, PlanOptions};
