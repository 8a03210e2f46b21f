//! # aither-hwprofile: what this machine is
//!
//! At every boot `aither-hwprofile detect` says, fast and truthfully, what the machine is:
//! its GPUs, CPU, memory, NUMA layout, platform and the GPU driver stack each GPU needs. The
//! result is the [`Profile`] document (`/run/aither/hwprofile.json`), which the presets, the
//! plan, agentd and the first-boot wizard read.
//!
//! ## How
//!
//! Discovery has two tiers, joined by PCI address:
//!
//! 1. **PCI** ([`pci`]): display controllers and accelerators from
//!    `<root>/sys/bus/pci/devices`, named from the built-in [`devices`] table (architecture,
//!    memory, driver family, usable before any driver is loaded) or the system's `pci.ids`.
//!    This tier is always there and is the ground truth for *which* GPUs exist.
//! 2. **Vendor libraries**, opened at run time so the binary runs where they are absent:
//!    NVML through `nvml-wrapper` ([`nvml`]), ROCm SMI through `libloading` ([`rocm`]),
//!    and the amdgpu driver's sysfs files as the AMD fallback. They give the exact figures.
//!
//! Every figure says where it came from ([`profile::Source`]); when the tiers disagree
//! (a GPU on the bus that NVML does not list, a memory size far from the card's, a compute
//! capability that contradicts the PCI ID) the profile carries a [`profile::Warning`].
//! Virtual and management display adapters (QEMU VGA, virtio-gpu, ASPEED BMC, ...) are
//! listed as `display_adapters`, never as GPUs.
//!
//! The driver choice ([`drivers::choose`]) is a pure function of a GPU's PCI identity and
//! the Secure Boot state. Installing the drivers is `aither-drivers`' job; presets, the
//! catalog and the fit are `aither-plan`'s. The `aither-hwprofile` command line fronts all
//! three (`detect`, `plan`, `fit`, `drivers`); only its [`cli`] and [`render`] modules use
//! them, discovery does not.
//!
//! Every host path is under a `root` parameter, so tests run against fixture trees
//! (`tests/fixtures/hw/`) and fake vendor libraries (`tests/fakes/`) with the same code.
//!
//! ## Degrade, never lie
//!
//! A vendor library that is missing, too old, failing or that loses a GPU leaves that GPU at
//! the PCI tier with a warning. Nothing here panics on hardware input, and a GPU on the bus
//! is never dropped to make the result look CPU-only.
//!
//! ## Limitations
//!
//! - NVML is initialised once per process; a second detection in the same process with a
//!   different library path uses the first library and says so in a warning.
//! - Intel GPUs are reported from PCI only (no Level Zero query); integrated GPUs have no
//!   dedicated memory figure.
//! - The built-in table knows the cards listed in [`devices::KNOWN_DEVICES`]; others are
//!   named from `pci.ids` and their memory is unknown until their vendor library answers.

pub mod cli;
pub mod detect;
pub mod devices;
pub mod drivers;
pub mod host;
pub mod nvml;
pub mod pci;
pub mod pciids;
pub mod platform;
pub use aither_api::profile;
pub mod render;
pub mod rocm;
mod sysfs;

pub use detect::{detect, DetectError, DetectOptions};
pub use profile::Profile;
