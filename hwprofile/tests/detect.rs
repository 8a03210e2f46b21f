//! `aither-hwprofile detect` end to end: the real binary, fixture roots in the layout of real
//! machines (`tests/fixtures/hw/`), and fake vendor libraries built from `tests/fakes/` so that
//! nvml-wrapper and the ROCm SMI loader run their real code, error paths included.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use aither_hwprofile::drivers::Stack;
use aither_hwprofile::profile::{Profile, Source, Vendor, WarningKind};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures/hw").join(name)
}

/// The fake libraries, each variant compiled once per test binary.
struct Fakes {
    nvml: PathBuf,
    nvml_old: PathBuf,
    nvml_not_nvml: PathBuf,
    rocm: PathBuf,
    rocm_old: PathBuf,
}

fn fakes() -> &'static Fakes {
    static FAKES: OnceLock<Fakes> = OnceLock::new();
    FAKES.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fakes");
        std::fs::create_dir_all(&out).expect("create fakes dir");
        let build = |src: &str, name: &str, defines: &[&str]| -> PathBuf {
            let dir = out.join(name);
            std::fs::create_dir_all(&dir).expect("create fake dir");
            let so = dir.join(if src.contains("nvml") { "libnvidia-ml.so.1" } else { "librocm_smi64.so.1" });
            let tmp = dir.join(format!(".build-{}", std::process::id()));
            let status = Command::new("cc")
                .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
                .arg(&tmp)
                .arg(workspace().join("tests/fakes").join(src))
                .args(defines)
                .status()
                .expect("run cc (gcc is needed to build the fake vendor libraries)");
            assert!(status.success(), "cc failed for {src}");
            std::fs::rename(&tmp, &so).expect("install fake");
            so
        };
        Fakes {
            nvml: build("fake_nvml.c", "nvml", &[]),
            nvml_old: build("fake_nvml.c", "nvml-old", &["-DFAKE_NVML_NO_MEMORY_V2"]),
            nvml_not_nvml: build("fake_nvml.c", "nvml-no-init", &["-DFAKE_NVML_NO_INIT_V2"]),
            rocm: build("fake_rocm_smi.c", "rocm", &[]),
            rocm_old: build("fake_rocm_smi.c", "rocm-old", &["-DFAKE_ROCM_NO_PCI_ID"]),
        }
    })
}

/// Run the binary; `env` names the fake library configurations.
fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aither-hwprofile"));
    cmd.args(args).env_remove("AITHER_FAKE_NVML_CONF").env_remove("AITHER_FAKE_ROCM_SMI_CONF");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run aither-hwprofile")
}

struct Detect<'a> {
    machine: &'a str,
    nvml: Option<(&'a Path, PathBuf)>,
    rocm: Option<(&'a Path, PathBuf)>,
}

impl<'a> Detect<'a> {
    fn on(machine: &'a str) -> Self {
        Detect { machine, nvml: None, rocm: None }
    }
    /// Use the fake NVML `lib` driven by the fixture's own `fake/nvml.conf`.
    fn nvml(mut self, lib: &'a Path) -> Self {
        self.nvml = Some((lib, fixture(self.machine).join("fake/nvml.conf")));
        self
    }
    fn nvml_conf(mut self, lib: &'a Path, conf: PathBuf) -> Self {
        self.nvml = Some((lib, conf));
        self
    }
    fn rocm(mut self, lib: &'a Path) -> Self {
        self.rocm = Some((lib, fixture(self.machine).join("fake/rocm-smi.conf")));
        self
    }
    fn rocm_conf(mut self, lib: &'a Path, conf: PathBuf) -> Self {
        self.rocm = Some((lib, conf));
        self
    }
    fn profile(self) -> Profile {
        let root = fixture(self.machine);
        let root = root.to_string_lossy().into_owned();
        let mut args = vec!["detect".to_string(), "--format".into(), "json".into(), "--root".into(), root];
        let mut env: Vec<(&str, &Path)> = Vec::new();
        if let Some((lib, conf)) = &self.nvml {
            args.push("--nvml-lib".into());
            args.push(lib.to_string_lossy().into_owned());
            env.push(("AITHER_FAKE_NVML_CONF", conf.as_path()));
        }
        if let Some((lib, conf)) = &self.rocm {
            args.push("--rocm-smi-lib".into());
            args.push(lib.to_string_lossy().into_owned());
            env.push(("AITHER_FAKE_ROCM_SMI_CONF", conf.as_path()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, &env);
        assert!(out.status.success(), "detect failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("detect prints a profile that parses back")
    }
}

fn kinds(p: &Profile) -> Vec<WarningKind> {
    p.warnings.iter().map(|w| w.kind).collect()
}

fn stacks(p: &Profile) -> Vec<Stack> {
    p.drivers.iter().map(|d| d.stack).collect()
}

/// A copy of the fixture's NVML configuration with `edit` applied to its text.
fn edited_conf(machine: &str, file: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let text = std::fs::read_to_string(fixture(machine).join("fake").join(file)).expect("read conf");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("confs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let edited = edit(&text);
    // Named by content, so tests running in parallel never share a file they disagree on.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&edited, &mut h);
    let path = dir.join(format!("{machine}-{file}-{:016x}", std::hash::Hasher::finish(&h)));
    std::fs::write(&path, &edited).expect("write conf");
    path
}

#[test]
fn eight_h100_with_a_bmc_are_eight_gpus_with_exact_nvml_figures() {
    let p = Detect::on("server-8xh100").nvml(&fakes().nvml).profile();
    assert_eq!(p.gpus.len(), 8);
    assert!(p.gpus.iter().all(|g| g.vendor == Vendor::Nvidia && g.name == "NVIDIA H100 80GB HBM3"));
    assert!(p.gpus.iter().all(|g| g.vram_bytes == Some(81559 << 20) && g.vram_source == Source::Nvml));
    assert!(p.gpus.iter().all(|g| g.architecture.as_deref() == Some("hopper")));
    let nv = p.gpus[0].nvidia.as_ref().expect("NVML details");
    assert_eq!(nv.compute_capability.as_deref(), Some("9.0"));
    assert_eq!(nv.power_limit_watts, Some(700));
    assert_eq!(nv.mig_mode.as_deref(), Some("disabled"));
    assert_eq!(nv.persistence_mode, Some(true));
    assert_eq!(nv.nvlink_peers, vec!["0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"]);
    assert_eq!(p.gpus[4].numa_node, Some(1));
    assert_eq!(p.display_adapters.len(), 1, "the ASPEED BMC is a display adapter");
    assert!(p.display_adapters[0].reason.contains("ASPEED"));
    assert_eq!(stacks(&p), vec![Stack::NvidiaOpen; 8]);
    let rt = p.runtimes.nvml.as_ref().expect("NVML runtime");
    assert_eq!((rt.driver_version.as_deref(), rt.cuda_version.as_deref()), (Some("550.54.15"), Some("12.4")));
    assert_eq!((p.cpu.sockets, p.cpu.physical_cores, p.cpu.logical_cores), (2, 112, 224));
    assert!(p.cpu.flags.contains(&"amx_tile".to_string()));
    assert_eq!(p.numa_nodes.len(), 2);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn laptop_lists_the_igpu_and_the_rtx4060_and_needs_signed_modules() {
    let p = Detect::on("laptop-rtx4060").nvml(&fakes().nvml).profile();
    assert_eq!(p.gpus.len(), 2);
    let igpu = &p.gpus[0];
    assert_eq!((igpu.vendor, igpu.integrated, igpu.vram_bytes), (Vendor::Intel, true, None));
    let dgpu = &p.gpus[1];
    assert_eq!(dgpu.name, "NVIDIA GeForce RTX 4060 Laptop GPU");
    assert_eq!((dgpu.vram_bytes, dgpu.vram_source), (Some(8188 << 20), Source::Nvml));
    assert_eq!(stacks(&p), vec![Stack::I915, Stack::NvidiaOpen]);
    assert!(p.drivers[1].signed_modules_required, "Secure Boot is on in this fixture");
    assert!(!p.drivers[0].signed_modules_required);
    assert_eq!(p.platform.secure_boot, Some(true));
    assert_eq!((p.cpu.physical_cores, p.cpu.logical_cores), (14, 20));
}

#[test]
fn desktops_and_the_workstation_report_their_cards() {
    let p = Detect::on("desktop-rtx3060").nvml(&fakes().nvml).profile();
    assert_eq!(p.gpus.len(), 1);
    assert_eq!((p.gpus[0].vram_bytes, p.gpus[0].vram_source), (Some(12 << 30), Source::Nvml));

    let p = Detect::on("desktop-rtx4090").nvml(&fakes().nvml).profile();
    let names: Vec<&str> = p.gpus.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, vec!["Intel Raptor Lake-S GT1 [UHD Graphics 770]", "NVIDIA GeForce RTX 4090"]);

    let p = Detect::on("workstation-2x3090-nvlink").nvml(&fakes().nvml).profile();
    assert_eq!(p.gpus.len(), 2);
    let peers: Vec<&Vec<String>> = p.gpus.iter().map(|g| &g.nvidia.as_ref().expect("nvml").nvlink_peers).collect();
    assert_eq!(peers, vec![&vec!["0000:49:00.0".to_string()], &vec!["0000:21:00.0".to_string()]]);
}

#[test]
fn rx7900xtx_uses_rocm_smi_when_present_and_amdgpu_sysfs_when_not() {
    let with = Detect::on("desktop-rx7900xtx").rocm(&fakes().rocm).profile();
    let g = &with.gpus[0];
    assert_eq!((g.name.as_str(), g.vram_source), ("Radeon RX 7900 XTX", Source::RocmSmi));
    let amd = g.amd.as_ref().expect("amd details");
    assert_eq!((amd.gfx_target.as_deref(), amd.gfx_target_source), (Some("gfx1100"), Source::RocmSmi));
    assert_eq!(stacks(&with), vec![Stack::AmdgpuRocm]);

    let without = Detect::on("desktop-rx7900xtx").profile();
    let g = &without.gpus[0];
    assert_eq!((g.name.as_str(), g.name_source), ("AMD Radeon RX 7900 XTX", Source::PciTable));
    assert_eq!((g.vram_bytes, g.vram_source), (Some(25_753_026_560), Source::Sysfs));
    let amd = g.amd.as_ref().expect("amd details");
    assert_eq!((amd.gfx_target.as_deref(), amd.gfx_target_source), (Some("gfx1100"), Source::Sysfs));
    assert_eq!(amd.vram_used_bytes, Some(1 << 30));
}

#[test]
fn eight_mi300x_are_accelerators_with_gfx942() {
    let p = Detect::on("server-8xmi300x").rocm(&fakes().rocm).profile();
    assert_eq!(p.gpus.len(), 8);
    assert!(p.gpus.iter().all(|g| g.vram_bytes == Some(205_822_885_888) && g.vram_source == Source::RocmSmi));
    assert!(p.gpus.iter().all(|g| g.architecture.as_deref() == Some("gfx942")));
    assert_eq!(p.display_adapters.len(), 1, "the Matrox BMC VGA");
    assert_eq!(stacks(&p), vec![Stack::AmdgpuRocm; 8]);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn a_kvm_guest_with_qemu_vga_has_no_gpu() {
    let p = Detect::on("kvm-cpu-only").profile();
    assert!(p.gpus.is_empty());
    assert_eq!(p.display_adapters.len(), 1);
    assert!(p.display_adapters[0].reason.contains("QEMU"));
    assert_eq!((p.platform.virtualization.as_str(), p.platform.firmware.as_str()), ("kvm", "bios"));
    assert!(p.drivers.is_empty());
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn an_aws_g5_is_an_a10g_on_aws() {
    let p = Detect::on("aws-g5").nvml(&fakes().nvml).profile();
    assert_eq!(p.gpus.len(), 1);
    assert_eq!(p.gpus[0].name, "NVIDIA A10G");
    assert_eq!(p.platform.cloud.as_deref(), Some("aws"));
    assert_eq!(p.display_adapters.len(), 1, "the EC2 VGA");
}

#[test]
fn driver_not_loaded_keeps_every_gpu_at_the_pci_tier() {
    let conf = edited_conf("server-8xh100", "nvml.conf", |t| format!("init_error 9\n{t}"));
    let p = Detect::on("server-8xh100").nvml_conf(&fakes().nvml, conf).profile();
    assert_eq!(p.gpus.len(), 8, "never CPU-only while GPUs sit on the bus");
    assert!(p.gpus.iter().all(|g| g.vram_source == Source::PciTable && g.vram_bytes == Some(80 << 30)));
    assert!(p.gpus.iter().all(|g| g.name == "NVIDIA H100 SXM5 80GB"));
    assert_eq!(kinds(&p), vec![WarningKind::NvmlUnavailable]);
    assert!(p.warnings[0].message.contains("not loaded"), "{}", p.warnings[0].message);
}

#[test]
fn a_missing_or_foreign_library_is_a_warning_not_a_failure() {
    let missing = Path::new("/nonexistent/libnvidia-ml.so.1");
    let p = Detect::on("desktop-rtx4090").nvml(missing).profile();
    assert_eq!(kinds(&p), vec![WarningKind::NvmlUnavailable]);
    assert_eq!(p.gpus[1].vram_source, Source::PciTable);

    let p = Detect::on("desktop-rtx4090").nvml(&fakes().nvml_not_nvml).profile();
    assert_eq!(kinds(&p), vec![WarningKind::NvmlUnavailable]);
    assert!(p.warnings[0].message.contains("nvmlInit_v2"), "{}", p.warnings[0].message);
}

#[test]
fn an_old_nvml_without_a_symbol_keeps_what_it_could_read() {
    let p = Detect::on("desktop-rtx4090").nvml(&fakes().nvml_old).profile();
    let g = &p.gpus[1];
    assert_eq!(g.name_source, Source::Nvml, "the name came from NVML");
    assert_eq!(g.vram_source, Source::PciTable, "memory did not");
    assert_eq!(kinds(&p), vec![WarningKind::NvmlDeviceError]);
}

#[test]
fn a_lost_gpu_stays_listed_with_a_warning() {
    // GPU 3 answers every query with NVML_ERROR_GPU_IS_LOST.
    let conf = edited_conf("server-8xh100", "nvml.conf", |t| {
        let mut n = 0;
        t.lines()
            .map(|l| {
                let mut s = l.to_string();
                if l == "gpu" {
                    n += 1;
                    if n == 4 {
                        s.push_str("\nfail all 15");
                    }
                }
                s + "\n"
            })
            .collect()
    });
    let p = Detect::on("server-8xh100").nvml_conf(&fakes().nvml, conf).profile();
    assert_eq!(p.gpus.len(), 8);
    let lost = &p.gpus[3];
    assert_eq!((lost.pci_address.as_str(), lost.vram_source), ("0000:5d:00.0", Source::PciTable));
    assert!(kinds(&p).contains(&WarningKind::NvmlDeviceError));
    assert!(kinds(&p).contains(&WarningKind::GpuCountMismatch));
    assert!(p.gpus.iter().enumerate().all(|(i, g)| i == 3 || g.vram_source == Source::Nvml));
}

#[test]
fn contradictions_between_pci_and_nvml_are_reported() {
    // An H100 by PCI ID that NVML says has 40 GB and compute capability 8.0 (an A100).
    let conf = edited_conf("desktop-rtx4090", "nvml.conf", |t| {
        t.replace("memory_total 25757220864", "memory_total 12884901888").replace("cc 8 9", "cc 7 5")
    });
    let p = Detect::on("desktop-rtx4090").nvml_conf(&fakes().nvml, conf).profile();
    assert!(kinds(&p).contains(&WarningKind::VramConflict), "{:?}", p.warnings);
    assert!(kinds(&p).contains(&WarningKind::IdentityConflict), "{:?}", p.warnings);
    assert_eq!(p.gpus[1].vram_bytes, Some(12 << 30), "the vendor library's figure is used");
}

#[test]
fn rocm_smi_failures_fall_back_to_sysfs() {
    let conf = edited_conf("desktop-rx7900xtx", "rocm-smi.conf", |t| format!("init_error 8\n{t}"));
    let p = Detect::on("desktop-rx7900xtx").rocm_conf(&fakes().rocm, conf).profile();
    assert_eq!(kinds(&p), vec![WarningKind::RocmSmiUnavailable]);
    assert_eq!(p.gpus[0].vram_source, Source::Sysfs);

    let p = Detect::on("desktop-rx7900xtx").rocm(&fakes().rocm_old).profile();
    assert_eq!(kinds(&p), vec![WarningKind::RocmSmiUnavailable]);
    assert!(p.warnings[0].message.contains("rsmi_dev_pci_id_get"));
    assert_eq!(p.gpus[0].vram_source, Source::Sysfs);
}

#[test]
fn json_toml_and_table_formats_all_render() {
    let root = fixture("server-8xh100");
    let root = root.to_str().expect("utf-8 path");
    for format in ["json", "toml", "table"] {
        let out = run(&["detect", "--root", root, "--format", format], &[]);
        assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stdout.is_empty());
    }
    let out = run(&["detect", "--root", root, "--format", "toml"], &[]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("schema_version = 1"), "{text}");
}

#[test]
fn output_file_is_written_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("run/aither/hwprofile.json");
    let root = fixture("kvm-cpu-only");
    let out = run(
        &[
            "detect",
            "--root",
            root.to_str().expect("utf-8"),
            "--format",
            "table",
            "--output",
            out_path.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(out.status.success());
    let p: Profile = serde_json::from_slice(&std::fs::read(&out_path).expect("written")).expect("parses");
    assert_eq!(p.schema_version, 1);
    let leftovers: Vec<_> = std::fs::read_dir(out_path.parent().expect("parent")).expect("ls").collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
}

#[test]
fn a_root_with_nothing_readable_fails_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["detect", "--root", dir.path().to_str().expect("utf-8")], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("proc/cpuinfo"), "{err}");
}
