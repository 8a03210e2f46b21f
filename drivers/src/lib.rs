//! # aither-drivers: the GPU drivers a machine needs, installed at first boot
//!
//! The profile's driver choice (`aither-hwprofile detect`, [`aither_api::profile::DriverChoice`])
//! turned into packages from the appliance's local repository, Secure Boot handled, the modules
//! loaded, and the machine profiled again. Its own binary, `/usr/libexec/aither/aither-drivers`
//! (`plan` or `apply`), run by `aither-drivers.service` in the installer domain
//! `aither_drivers_t`: it runs dnf, openssl, mokutil and modprobe, which the confined profiling
//! domain must never do. `aither-hwprofile drivers plan|apply` runs the same code.
//!
//! Which packages a stack needs is data (`/usr/share/aither/drivers.toml`, built-in copy in
//! `drivers/drivers.toml`): vendors rename packages, the logic stays. For each stack:
//!
//! - in-tree drivers (`amdgpu`, `i915`, `xe`) need no kernel module; ROCm needs its
//!   userspace (`amdgpu-rocm`);
//! - NVIDIA (out-of-tree modules) with Secure Boot on: the stack's `signed` packages (modules
//!   built and signed for the distribution kernel) when the local repository has them; else
//!   the `dkms` packages, built on the machine and signed with a Machine Owner Key that is
//!   created here and queued for enrolment (`mokutil --import`), with the steps to finish
//!   it printed on the console: the modules load after the reboot that enrols the key;
//! - NVIDIA without Secure Boot: the `dkms` packages (or `signed` ones, when only those are
//!   there).
//!
//! [`plan`] is a pure function of the profile, the packages the repository offers, what was
//! applied before and whether a key is already enrolled; [`apply`] runs the plan through
//! [`Commands`] (the real dnf, mokutil, modprobe in [`system::System`]; fakes in tests) and
//! records it in `/var/lib/aither/drivers.json`, so the next boot does nothing unless the GPUs
//! changed. This crate knows no hardware: it reads the profile document, and profiles the
//! machine again by running `aither-hwprofile detect`.
//!
//! ## Limitations
//!
//! - The package names in `drivers.toml` follow NVIDIA's and AMD's RHEL 9 repositories as
//!   published; they are not verified against a real repository here (no network).
//! - MOK enrolment needs someone at the console for one reboot; that cannot be automated by
//!   design of shim.
//! - dnf, DKMS, mokutil and a real GPU are never run in tests here: [`apply`] is tested against
//!   a fake [`Commands`], and the VM test bed checks the GPU-less path only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use aither_api::profile::{Profile, Stack};
use aither_sys::command::CommandError;

pub mod cli;
pub mod system;

/// The built-in package table.
pub const BUILTIN_TABLE: &str = include_str!("../drivers.toml");

/// What one stack needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackPackages {
    /// Userspace and in-tree helpers, installed in every case.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Modules built and signed for the distribution kernel (no MOK needed).
    #[serde(default)]
    pub signed: Vec<String>,
    /// Modules built on the machine (DKMS), signed with the machine's own key.
    #[serde(default)]
    pub dkms: Vec<String>,
    /// Kernel modules to load once installed.
    #[serde(default)]
    pub modules: Vec<String>,
}

/// `drivers.toml`: one table per stack (`nvidia-open`, `nvidia-legacy`, `amdgpu-rocm`, ...).
pub type Table = BTreeMap<String, StackPackages>;

/// A package table that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{file}: {source}")]
    Syntax { file: String, source: toml::de::Error },
    #[error("{file}: [{key}] is not a driver stack (nvidia-open, nvidia-legacy, amdgpu-rocm, amdgpu, i915, xe)")]
    UnknownStack { file: String, key: String },
}

/// Parse `drivers.toml`; `file` names it in errors.
pub fn parse_table(file: &str, text: &str) -> Result<Table, TableError> {
    let t: Table = toml::from_str(text).map_err(|source| TableError::Syntax { file: file.into(), source })?;
    for key in t.keys() {
        if serde_json::from_value::<Stack>(serde_json::Value::String(key.clone())).is_err() {
            return Err(TableError::UnknownStack { file: file.into(), key: key.clone() });
        }
    }
    Ok(t)
}

/// What was applied, kept in `/var/lib/aither/drivers.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub schema_version: u32,
    /// The GPUs and their stacks when the drivers were applied (`PCI address: stack`).
    pub gpus: BTreeMap<String, Stack>,
    pub packages: Vec<String>,
    /// A key was queued for enrolment and waits for the reboot.
    pub mok_pending: bool,
}

/// How the kernel modules get trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signing {
    /// No out-of-tree modules, or Secure Boot off.
    NotNeeded,
    /// Signed packages for the distribution kernel.
    Signed,
    /// DKMS modules signed with the machine's key, already enrolled.
    MokEnrolled,
    /// DKMS modules signed with a new machine key, queued for enrolment at the next boot.
    MokEnrol,
}

/// What [`apply`] will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Nothing changed since the drivers were applied: nothing to do.
    pub up_to_date: bool,
    pub gpus: BTreeMap<String, Stack>,
    pub packages: Vec<String>,
    pub signing: Signing,
    /// Modules to load now (none while a key waits for enrolment).
    pub load: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the local repository lacks {missing} for {stack} (GPU {gpu}); it has none of the packages drivers.toml names for it")]
    Missing { stack: String, gpu: String, missing: String },
    #[error("drivers.toml has no [{0}] table")]
    NoTable(String),
}

fn gpu_stacks(profile: &Profile) -> BTreeMap<String, Stack> {
    profile.drivers.iter().map(|d| (d.pci_address.clone(), d.stack)).collect()
}

fn stack_name(s: Stack) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Decide what to install. `available` is what the local repository offers.
pub fn plan(
    profile: &Profile,
    table: &Table,
    available: &BTreeSet<String>,
    before: Option<&Applied>,
    mok_enrolled: bool,
) -> Result<Plan, PlanError> {
    let gpus = gpu_stacks(profile);
    let secure_boot = profile.platform.secure_boot == Some(true);
    if let Some(b) = before {
        if b.gpus == gpus && !b.mok_pending {
            return Ok(Plan {
                up_to_date: true,
                gpus,
                packages: vec![],
                signing: Signing::NotNeeded,
                load: vec![],
                notes: vec!["the drivers for these GPUs were applied at an earlier boot".into()],
            });
        }
    }
    let mut packages = BTreeSet::new();
    let mut load = Vec::new();
    let mut signing = Signing::NotNeeded;
    let mut notes = Vec::new();
    let stacks: BTreeSet<Stack> = gpus.values().copied().collect();
    for stack in stacks {
        let name = stack_name(stack);
        let gpu = gpus.iter().find(|(_, s)| **s == stack).map(|(g, _)| g.clone()).unwrap_or_default();
        if stack == Stack::None {
            notes.push(format!("{gpu}: no driver stack for this GPU (see the profile's reason)"));
            continue;
        }
        let Some(p) = table.get(&name) else {
            if stack.out_of_tree() || stack == Stack::AmdgpuRocm {
                return Err(PlanError::NoTable(name));
            }
            notes.push(format!("{name}: in the distribution kernel, nothing to install"));
            continue;
        };
        let all = |list: &[String]| !list.is_empty() && list.iter().all(|p| available.contains(p));
        for pkg in &p.packages {
            if !available.contains(pkg) {
                return Err(PlanError::Missing { stack: name.clone(), gpu: gpu.clone(), missing: pkg.clone() });
            }
            packages.insert(pkg.clone());
        }
        if stack.out_of_tree() {
            let (chosen, how) = match (secure_boot, all(&p.signed), all(&p.dkms)) {
                (true, true, _) => (&p.signed, Signing::Signed),
                (true, false, true) => (&p.dkms, if mok_enrolled { Signing::MokEnrolled } else { Signing::MokEnrol }),
                (false, _, true) => (&p.dkms, Signing::NotNeeded),
                (false, true, false) => (&p.signed, Signing::NotNeeded),
                _ => {
                    let wanted = if secure_boot { &p.signed } else { &p.dkms };
                    let missing = wanted
                        .iter()
                        .find(|x| !available.contains(*x))
                        .cloned()
                        .unwrap_or_else(|| "its packages".into());
                    return Err(PlanError::Missing { stack: name, gpu, missing });
                }
            };
            packages.extend(chosen.iter().cloned());
            signing = signing.max_with(how);
            notes.push(match how {
                Signing::Signed => format!("{name}: Secure Boot is on; modules signed for the distribution kernel"),
                Signing::MokEnrolled => format!("{name}: Secure Boot is on; DKMS modules signed with the enrolled machine key"),
                Signing::MokEnrol => {
                    format!("{name}: Secure Boot is on and no signed modules are in the repository: DKMS modules, signed with a new machine key that must be enrolled at the next boot")
                }
                Signing::NotNeeded => format!("{name}: Secure Boot is off; modules built for this kernel (DKMS)"),
            });
        }
        load.extend(p.modules.iter().cloned());
    }
    if signing == Signing::MokEnrol {
        notes.push(format!("modules {} load after the reboot that enrols the key", load.join(", ")));
        load.clear();
    }
    Ok(Plan { up_to_date: false, gpus, packages: packages.into_iter().collect(), signing, load, notes })
}

impl Signing {
    /// The stronger requirement of two stacks (a pending enrolment outweighs the rest).
    fn max_with(self, other: Signing) -> Signing {
        let rank = |s: Signing| match s {
            Signing::NotNeeded => 0,
            Signing::Signed => 1,
            Signing::MokEnrolled => 2,
            Signing::MokEnrol => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// Why [`apply`] stopped. Nothing is recorded in the state file unless every step succeeded,
/// so the next boot tries again.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// dnf, openssl, mokutil, modprobe or aither-hwprofile failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot encode what was applied: {source}")]
    Encode { path: PathBuf, source: serde_json::Error },
}

impl ApplyError {
    /// An I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ApplyError + '_ {
        move |source| ApplyError::Io { path: path.to_path_buf(), source }
    }
}

/// The programs [`apply`] runs.
pub trait Commands {
    /// Package names the local repository offers.
    fn available(&mut self) -> Result<BTreeSet<String>, ApplyError>;
    fn install(&mut self, packages: &[String]) -> Result<(), ApplyError>;
    /// Whether the machine key (`pub_der`) is enrolled.
    fn mok_enrolled(&mut self, pub_der: &Path) -> bool;
    /// Create the machine key pair (private key, DER certificate) if missing.
    fn make_key(&mut self, key: &Path, cert: &Path) -> Result<(), ApplyError>;
    /// Queue the certificate for enrolment with a one-time password.
    fn mok_import(&mut self, cert: &Path, password: &str) -> Result<(), ApplyError>;
    fn load_module(&mut self, module: &str) -> Result<(), ApplyError>;
    /// Profile the machine again (the drivers can now report exact VRAM).
    fn reprofile(&mut self) -> Result<(), ApplyError>;
    /// Tell the person at the console.
    fn console(&mut self, text: &str);
}

/// Where the machine key lives: DKMS signs with it (`mok_signing_key` in dkms.conf).
pub const MOK_DIR: &str = "var/lib/dkms";

/// Run the plan; returns what was applied (also written to `state`).
pub fn apply(
    profile: &Profile,
    table: &Table,
    root: &Path,
    state: &Path,
    cmds: &mut dyn Commands,
    password: &str,
) -> Result<(Plan, Applied), ApplyError> {
    let before: Option<Applied> = std::fs::read_to_string(state).ok().and_then(|t| serde_json::from_str(&t).ok());
    let key = root.join(MOK_DIR).join("mok.key");
    let cert = root.join(MOK_DIR).join("mok.pub");
    let mok_enrolled = cert.exists() && cmds.mok_enrolled(&cert);
    // Nothing changed since the last boot: decide without asking dnf (a boot with no GPU
    // change costs no repository query).
    let unchanged = before.as_ref().is_some_and(|b| !b.mok_pending && b.gpus == gpu_stacks(profile));
    let needs_repo = !unchanged && profile.drivers.iter().any(|d| d.stack != Stack::None);
    let available = if needs_repo { cmds.available()? } else { BTreeSet::new() };
    let plan = plan(profile, table, &available, before.as_ref(), mok_enrolled)?;
    if plan.up_to_date {
        return Ok((plan, before.unwrap_or_default()));
    }
    if plan.signing == Signing::MokEnrol {
        cmds.make_key(&key, &cert)?;
    }
    if !plan.packages.is_empty() {
        cmds.install(&plan.packages)?;
    }
    let mok_pending = plan.signing == Signing::MokEnrol;
    if mok_pending {
        cmds.mok_import(&cert, password)?;
        cmds.console(&mok_instructions(password));
    }
    for m in &plan.load {
        cmds.load_module(m)?;
    }
    if !plan.load.is_empty() {
        cmds.reprofile()?;
    }
    let applied = Applied { schema_version: 1, gpus: plan.gpus.clone(), packages: plan.packages.clone(), mok_pending };
    let text = serde_json::to_string_pretty(&applied)
        .map_err(|source| ApplyError::Encode { path: state.to_path_buf(), source })?;
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).map_err(ApplyError::io(dir))?;
    }
    aither_sys::atomic::write(state, text.as_bytes()).map_err(ApplyError::io(state))?;
    Ok((plan, applied))
}

/// The console text for a queued key enrolment.
pub fn mok_instructions(password: &str) -> String {
    format!(
        "\n\
         ================================================================================\n\
         AitherOS: the GPU driver needs one more step because Secure Boot is on.\n\
         \n\
         The driver's kernel modules are signed with this machine's own key, which the\n\
         firmware must learn once. At the next boot a blue screen (MOK manager) appears:\n\
         \n\
         \x20 1. press a key within 10 seconds;\n\
         \x20 2. choose \"Enroll MOK\", then \"Continue\", then \"Yes\";\n\
         \x20 3. type the password   {password}   (it is asked once);\n\
         \x20 4. choose \"Reboot\".\n\
         \n\
         Until then the GPU is unused and models run on the CPU. To do it later:\n\
         \x20 mokutil --import /var/lib/dkms/mok.pub   (then reboot, as above)\n\
         ================================================================================\n"
    )
}

/// A one-time enrolment password from random bytes: eight digits, easy to type into MOK
/// manager (which asks for it once, at the console, on the next boot).
pub fn one_time_password(random: [u8; 8]) -> String {
    format!("{:08}", u64::from_le_bytes(random) % 100_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aither_api::profile::DriverChoice;

    fn table() -> Table {
        parse_table("drivers.toml", BUILTIN_TABLE).expect("built-in table")
    }

    fn profile(stacks: &[Stack], secure_boot: Option<bool>) -> Profile {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/profiles/profile-1gpu.json"
        ))
        .expect("fixture");
        let mut p: Profile = serde_json::from_str(&text).expect("profile");
        p.platform.secure_boot = secure_boot;
        p.drivers = stacks
            .iter()
            .enumerate()
            .map(|(i, s)| DriverChoice {
                pci_address: format!("0000:0{}:00.0", i + 1),
                stack: *s,
                reason: "test".into(),
                secure_boot,
                signed_modules_required: s.out_of_tree() && secure_boot == Some(true),
            })
            .collect();
        p
    }

    fn everything() -> BTreeSet<String> {
        table().values().flat_map(|p| p.packages.iter().chain(&p.signed).chain(&p.dkms).cloned()).collect()
    }

    #[test]
    fn the_built_in_table_names_a_stack_per_table() {
        let t = table();
        for s in ["nvidia-open", "nvidia-legacy", "amdgpu-rocm"] {
            assert!(t.contains_key(s), "{s}");
        }
        let e = parse_table("x.toml", "[nvidia-closed]\npackages = []\n").expect_err("unknown");
        assert!(matches!(e, TableError::UnknownStack { ref key, .. } if key == "nvidia-closed"), "{e}");
        let e = parse_table("x.toml", "[amdgpu-rocm]\npackagez = []\n").expect_err("typo");
        assert!(matches!(e, TableError::Syntax { .. }) && e.to_string().contains("packagez"), "{e}");
    }

    #[test]
    fn without_secure_boot_nvidia_uses_dkms_and_loads_now() {
        let p = plan(&profile(&[Stack::NvidiaOpen], Some(false)), &table(), &everything(), None, false).expect("plan");
        assert_eq!(p.signing, Signing::NotNeeded);
        assert!(p
            .packages
            .iter()
            .all(|x| !table()["nvidia-open"].signed.contains(x) || table()["nvidia-open"].dkms.contains(x)));
        assert!(p.packages.iter().any(|x| table()["nvidia-open"].dkms.contains(x)), "{:?}", p.packages);
        assert_eq!(p.load, table()["nvidia-open"].modules);
    }

    #[test]
    fn secure_boot_prefers_signed_modules_and_falls_back_to_a_machine_key() {
        let t = table();
        let sb = profile(&[Stack::NvidiaOpen], Some(true));
        let p = plan(&sb, &t, &everything(), None, false).expect("plan");
        assert_eq!(p.signing, Signing::Signed);
        assert!(t["nvidia-open"].signed.iter().all(|x| p.packages.contains(x)));
        assert!(!p.load.is_empty());

        let no_signed: BTreeSet<String> =
            everything().into_iter().filter(|x| !t["nvidia-open"].signed.contains(x)).collect();
        let p = plan(&sb, &t, &no_signed, None, false).expect("plan");
        assert_eq!(p.signing, Signing::MokEnrol);
        assert!(p.load.is_empty(), "nothing loads until the key is enrolled");
        assert!(p.notes.iter().any(|n| n.contains("enrolled at the next boot")), "{:?}", p.notes);
        let p = plan(&sb, &t, &no_signed, None, true).expect("plan");
        assert_eq!(p.signing, Signing::MokEnrolled);
        assert!(!p.load.is_empty());
    }

    #[test]
    fn rocm_needs_its_userspace_and_in_tree_drivers_nothing() {
        let t = table();
        let p = plan(&profile(&[Stack::AmdgpuRocm, Stack::I915], Some(true)), &t, &everything(), None, false)
            .expect("plan");
        assert_eq!(p.signing, Signing::NotNeeded, "amdgpu is in-tree: Secure Boot asks nothing");
        assert!(t["amdgpu-rocm"].packages.iter().all(|x| p.packages.contains(x)));
        let cpu = plan(&profile(&[], None), &t, &BTreeSet::new(), None, false).expect("plan");
        assert!(cpu.packages.is_empty() && cpu.load.is_empty());
    }

    #[test]
    fn a_repository_without_the_packages_is_an_error_naming_one() {
        let e = plan(&profile(&[Stack::NvidiaLegacy], Some(false)), &table(), &BTreeSet::new(), None, false)
            .expect_err("missing");
        assert!(matches!(e, PlanError::Missing { ref stack, .. } if stack == "nvidia-legacy"), "{e}");
    }

    #[test]
    fn the_same_gpus_as_last_time_need_nothing_but_a_new_gpu_does() {
        let p = profile(&[Stack::NvidiaOpen], Some(false));
        let done = Applied {
            schema_version: 1,
            gpus: p.drivers.iter().map(|d| (d.pci_address.clone(), d.stack)).collect(),
            packages: vec![],
            mok_pending: false,
        };
        assert!(plan(&p, &table(), &everything(), Some(&done), false).expect("plan").up_to_date);
        let two = profile(&[Stack::NvidiaOpen, Stack::NvidiaOpen], Some(false));
        assert!(!plan(&two, &table(), &everything(), Some(&done), false).expect("plan").up_to_date);
    }

    /// Records what would run.
    #[derive(Default)]
    struct Fake {
        available: BTreeSet<String>,
        log: Vec<String>,
        enrolled: bool,
    }

    impl Commands for Fake {
        fn available(&mut self) -> Result<BTreeSet<String>, ApplyError> {
            Ok(self.available.clone())
        }
        fn install(&mut self, p: &[String]) -> Result<(), ApplyError> {
            self.log.push(format!("install {}", p.join(" ")));
            Ok(())
        }
        fn mok_enrolled(&mut self, _: &Path) -> bool {
            self.enrolled
        }
        fn make_key(&mut self, key: &Path, cert: &Path) -> Result<(), ApplyError> {
            std::fs::create_dir_all(key.parent().expect("dir")).expect("mkdir");
            std::fs::write(key, "key").expect("key");
            std::fs::write(cert, "cert").expect("cert");
            self.log.push("make-key".into());
            Ok(())
        }
        fn mok_import(&mut self, _: &Path, password: &str) -> Result<(), ApplyError> {
            self.log.push(format!("mok-import {password}"));
            Ok(())
        }
        fn load_module(&mut self, m: &str) -> Result<(), ApplyError> {
            self.log.push(format!("modprobe {m}"));
            Ok(())
        }
        fn reprofile(&mut self) -> Result<(), ApplyError> {
            self.log.push("reprofile".into());
            Ok(())
        }
        fn console(&mut self, text: &str) {
            self.log.push(format!("console: {}", text.lines().nth(2).unwrap_or("")));
        }
    }

    #[test]
    fn apply_enrols_a_key_then_on_the_boot_after_loads_and_profiles_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("var/lib/aither/drivers.json");
        let t = table();
        let no_signed: BTreeSet<String> =
            everything().into_iter().filter(|x| !t["nvidia-open"].signed.contains(x)).collect();
        let p = profile(&[Stack::NvidiaOpen], Some(true));
        let mut fake = Fake { available: no_signed.clone(), ..Fake::default() };
        let (plan, applied) = apply(&p, &t, dir.path(), &state, &mut fake, "12345678").expect("apply");
        assert_eq!(plan.signing, Signing::MokEnrol);
        assert!(applied.mok_pending);
        assert_eq!(fake.log[0], "make-key");
        assert!(fake.log[1].starts_with("install "));
        assert_eq!(fake.log[2], "mok-import 12345678");
        assert!(fake.log[3].contains("Secure Boot is on"), "{:?}", fake.log);
        assert!(!fake.log.iter().any(|l| l.starts_with("modprobe")), "nothing loads before the enrolment");
        // The next boot, the key enrolled: the modules load and the machine is profiled again.
        let mut fake = Fake { available: no_signed, enrolled: true, ..Fake::default() };
        let (plan, applied) = apply(&p, &t, dir.path(), &state, &mut fake, "x").expect("apply");
        assert_eq!(plan.signing, Signing::MokEnrolled);
        assert!(!applied.mok_pending);
        assert!(fake.log.iter().any(|l| l == "modprobe nvidia"), "{:?}", fake.log);
        assert_eq!(fake.log.last().map(String::as_str), Some("reprofile"));
        // And the boot after that does nothing.
        let mut fake = Fake { available: everything(), enrolled: true, ..Fake::default() };
        let (plan, _) = apply(&p, &t, dir.path(), &state, &mut fake, "x").expect("apply");
        assert!(plan.up_to_date && fake.log.is_empty(), "{:?}", fake.log);
    }

    #[test]
    fn the_enrolment_password_is_eight_digits() {
        let p = one_time_password([7; 8]);
        assert_eq!(p.len(), 8);
        assert!(p.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(p, one_time_password([8; 8]));
        assert_eq!(one_time_password([0; 8]), "00000000");
        assert!(mok_instructions(&p).contains(&p));
    }
}
