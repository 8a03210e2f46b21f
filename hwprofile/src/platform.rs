//! Platform facts: hypervisor and cloud from DMI, UEFI and Secure Boot from efivars, and the
//! free space where models are kept.

use std::fs;
use std::path::{Path, PathBuf};

use crate::profile::{Disk, Platform};
use crate::sysfs;

/// The EFI global variable GUID under which `SecureBoot` lives.
const EFI_GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// Azure sets this chassis asset tag on every VM, which tells it from on-premises Hyper-V.
const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// Hypervisor, cloud and firmware of the machine under `root`.
pub fn platform(root: &Path, hypervisor_flag: bool) -> Platform {
    let dmi =
        |name: &str| sysfs::read_trimmed(&root.join("sys/class/dmi/id").join(name)).ok().filter(|s| !s.is_empty());
    let sys_vendor = dmi("sys_vendor");
    let product_name = dmi("product_name");
    let bios_vendor = dmi("bios_vendor");
    let bios_version = dmi("bios_version");
    let asset_tag = dmi("chassis_asset_tag");
    let hypervisor_type = sysfs::read_trimmed(&root.join("sys/hypervisor/type")).ok();

    let vendor = sys_vendor.as_deref().unwrap_or("");
    let product = product_name.as_deref().unwrap_or("");
    let bios = bios_vendor.as_deref().unwrap_or("");
    let bios_ver = bios_version.as_deref().unwrap_or("");

    let cloud = if vendor == "Amazon EC2" || bios == "Amazon EC2" || bios_ver.contains("amazon") {
        Some("aws")
    } else if vendor == "Google" || product == "Google Compute Engine" {
        Some("gcp")
    } else if vendor == "Microsoft Corporation" && asset_tag.as_deref() == Some(AZURE_ASSET_TAG) {
        Some("azure")
    } else {
        None
    };

    let virtualization = if hypervisor_type.as_deref() == Some("xen") || vendor == "Xen" || bios_ver.contains("amazon")
    {
        "xen"
    } else if vendor.starts_with("VMware") {
        "vmware"
    } else if product == "VirtualBox" || vendor == "innotek GmbH" {
        "virtualbox"
    } else if vendor == "Microsoft Corporation" && product == "Virtual Machine" {
        "hyperv"
    } else if vendor == "QEMU"
        || product.contains("KVM")
        || vendor == "Red Hat"
        || vendor == "OpenStack Foundation"
        || (hypervisor_flag && matches!(cloud, Some("aws" | "gcp")))
    {
        "kvm"
    } else if hypervisor_flag {
        "unknown"
    } else {
        "none"
    };

    let uefi = root.join("sys/firmware/efi").is_dir();
    Platform {
        virtualization: virtualization.to_string(),
        cloud: cloud.map(str::to_string),
        system_vendor: sys_vendor,
        product_name,
        firmware: if uefi { "uefi" } else { "bios" }.to_string(),
        secure_boot: if uefi { secure_boot(root) } else { None },
    }
}

/// The `SecureBoot` EFI variable: 4 bytes of attributes, then one byte, 1 when enabled.
fn secure_boot(root: &Path) -> Option<bool> {
    let path = root.join(format!("sys/firmware/efi/efivars/SecureBoot-{EFI_GLOBAL_GUID}"));
    let bytes = fs::read(path).ok()?;
    bytes.get(4).map(|b| *b == 1)
}

/// Total and free space of the filesystem holding `model_dir` (a path on the target system,
/// looked up under `root`); the nearest existing parent is measured when the directory does
/// not exist yet, as on a machine not yet configured.
pub fn disk(root: &Path, model_dir: &Path) -> Option<Disk> {
    let relative = model_dir.strip_prefix("/").unwrap_or(model_dir);
    let mut measured: PathBuf = root.join(relative);
    while !measured.is_dir() {
        if !measured.pop() {
            return None;
        }
    }
    let stat = rustix::fs::statvfs(&measured).ok()?;
    let fragment = stat.f_frsize;
    Some(Disk {
        path: model_dir.display().to_string(),
        measured_path: measured.display().to_string(),
        total_bytes: stat.f_blocks.saturating_mul(fragment),
        free_bytes: stat.f_bavail.saturating_mul(fragment),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dmi_root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = dir.path().join("sys/class/dmi/id");
        fs::create_dir_all(&id).expect("mkdir");
        for (name, value) in files {
            fs::write(id.join(name), format!("{value}\n")).expect("write");
        }
        dir
    }

    #[test]
    fn dmi_strings_name_the_cloud_and_hypervisor() {
        // (DMI files, hypervisor flag, expected virtualization, expected cloud)
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (&[("sys_vendor", "Amazon EC2"), ("product_name", "g5.xlarge")], true, "kvm", Some("aws")),
            (&[("sys_vendor", "Amazon EC2"), ("product_name", "p5.48xlarge")], false, "none", Some("aws")),
            (&[("sys_vendor", "Google"), ("product_name", "Google Compute Engine")], true, "kvm", Some("gcp")),
            (
                &[
                    ("sys_vendor", "Microsoft Corporation"),
                    ("product_name", "Virtual Machine"),
                    ("chassis_asset_tag", AZURE_ASSET_TAG),
                ],
                true,
                "hyperv",
                Some("azure"),
            ),
            (&[("sys_vendor", "Microsoft Corporation"), ("product_name", "Virtual Machine")], true, "hyperv", None),
            (&[("sys_vendor", "QEMU"), ("product_name", "Standard PC (Q35 + ICH9, 2009)")], true, "kvm", None),
            (&[("sys_vendor", "VMware, Inc."), ("product_name", "VMware7,1")], true, "vmware", None),
            (&[("sys_vendor", "Supermicro"), ("product_name", "SYS-821GE-TNHR")], false, "none", None),
            (&[("sys_vendor", "Some Vendor")], true, "unknown", None),
        ];
        for (files, flag, virt, cloud) in cases {
            let root = dmi_root(files);
            let p = platform(root.path(), *flag);
            assert_eq!((p.virtualization.as_str(), p.cloud.as_deref()), (*virt, *cloud), "{files:?}");
        }
    }

    #[test]
    fn secure_boot_is_read_from_the_efi_variable() {
        let root = tempfile::tempdir().expect("tempdir");
        let vars = root.path().join("sys/firmware/efi/efivars");
        fs::create_dir_all(&vars).expect("mkdir");
        fs::write(vars.join(format!("SecureBoot-{EFI_GLOBAL_GUID}")), [6, 0, 0, 0, 1]).expect("write");
        let p = platform(root.path(), false);
        assert_eq!((p.firmware.as_str(), p.secure_boot), ("uefi", Some(true)));
        fs::write(vars.join(format!("SecureBoot-{EFI_GLOBAL_GUID}")), [6, 0, 0, 0, 0]).expect("write");
        assert_eq!(platform(root.path(), false).secure_boot, Some(false));
    }

    #[test]
    fn disk_measures_the_nearest_existing_parent() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("var/lib")).expect("mkdir");
        let d = disk(root.path(), Path::new("/var/lib/aither/models")).expect("measured");
        assert!(d.measured_path.ends_with("var/lib"));
        assert!(d.total_bytes >= d.free_bytes && d.total_bytes > 0);
    }
}
