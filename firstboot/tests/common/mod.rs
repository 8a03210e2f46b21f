//! A target machine's tree for the tests: accounts as a fresh Rocky 9 install has them
//! (with the groups sysusers.d creates), zone files, /etc/skel and two network interfaces.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQ3cjPzZ9xWVH2Hj3vX1n+Pw0d6ulOVmmEGNbAMlKPC ops@laptop";

pub fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

pub fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn target() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path();
    write(r, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\naither:x:991:991:AitherOS services:/var/lib/aither:/sbin/nologin\n");
    write(r, "etc/shadow", "root:!!:20000:0:99999:7:::\nbin:*:20000:0:99999:7:::\naither:!*:20000::::::\n");
    write(r, "etc/group", "root:x:0:\nbin:x:1:\nwheel:x:10:\naither:x:991:\naither-admin:x:990:\n");
    write(r, "etc/gshadow", "root:::\nbin:::\nwheel:::\naither:!*::\naither-admin:!*::\n");
    write(r, "etc/login.defs", "UID_MIN                  1000\nGID_MIN                  1000\n");
    write(r, "etc/skel/.bashrc", "# .bashrc\n");
    write(r, "etc/hostname", "localhost\n");
    write(r, "usr/share/zoneinfo/UTC", "TZif2");
    write(r, "usr/share/zoneinfo/Europe/Berlin", "TZif2");
    write(r, "bin/bash", "");
    for (name, mac) in [("enp1s0", "52:54:00:12:34:56"), ("enp2s0", "52:54:00:12:34:57")] {
        write(r, &format!("sys/class/net/{name}/address"), &format!("{mac}\n"));
        write(r, &format!("sys/class/net/{name}/operstate"), "up\n");
        std::fs::create_dir_all(r.join(format!("sys/class/net/{name}/device"))).expect("device");
    }
    t
}

/// The RTX 4090 profile agentd's tests use.
pub fn profile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/profiles/profile-1gpu.json")
}

/// Every file under `root`, with its contents (directories and links marked), for
/// comparing trees before and after.
pub fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("under root").display().to_string();
            let m = p.symlink_metadata().expect("meta");
            if m.is_symlink() {
                out.push((rel, format!("-> {}", std::fs::read_link(&p).expect("link").display())));
            } else if m.is_dir() {
                out.push((rel, "/".into()));
                stack.push(p);
            } else {
                out.push((rel, std::fs::read_to_string(&p).unwrap_or_else(|_| "(binary)".into())));
            }
        }
    }
    out.sort();
    out
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_aither-firstboot")
}
