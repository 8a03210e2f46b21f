//! The appliance's directories and files, as installed. Development mode and tests put the
//! same layout under another root.

/// Configuration the admin owns.
pub const CONFIG_DIR: &str = "/etc/aither";
/// State kept across boots.
pub const STATE_DIR: &str = "/var/lib/aither";
/// State kept until reboot.
pub const RUNTIME_DIR: &str = "/run/aither";
/// Data shipped with the appliance (presets, the catalog, defaults).
pub const DATA_DIR: &str = "/usr/share/aither";
/// Helper programs.
pub const LIBEXEC_DIR: &str = "/usr/libexec/aither";
/// The model files.
pub const MODEL_DIR: &str = "/var/lib/aither/models";
/// The appliance's own configuration (the pinned preset), written at first boot.
pub const APPLIANCE_FILE: &str = "/etc/aither/appliance.toml";
/// Which workflows are on (first boot's choice, then `aitherctl workflows enable|disable`).
pub const WORKFLOWS_ENABLED: &str = "/etc/aither/workflows-enabled.toml";
/// The key TCP clients of the gateway send.
pub const GATEWAY_KEY: &str = "/etc/aither/gateway.key";
/// The gateway's Unix socket (agents reach the model through it, without a key).
pub const GATEWAY_SOCKET: &str = "/run/aither/gateway.sock";
/// Installed tailored SELinux modules.
pub const POLICY_DIR: &str = "/var/lib/aither/selinux";

/// `path` (absolute, as installed) under `root`: `/` gives `path` itself.
pub fn under(root: &std::path::Path, path: &str) -> std::path::PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The `*.toml` files of a drop-in directory, in name order (none when it cannot be read).
pub fn toml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    files_ending(dir, "toml")
}

/// The files of `dir` whose extension is `ext`, in name order (none when it cannot be read).
pub fn files_ending(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_under_a_root() {
        assert_eq!(under(std::path::Path::new("/"), MODEL_DIR), std::path::PathBuf::from(MODEL_DIR));
        assert_eq!(
            under(std::path::Path::new("/tmp/r"), GATEWAY_KEY),
            std::path::PathBuf::from("/tmp/r/etc/aither/gateway.key")
        );
    }
}
