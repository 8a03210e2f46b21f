//! Small helpers for the kernel's text files (sysfs, procfs).

use std::fs;
use std::io;
use std::path::Path;

/// A sysfs/procfs file's contents without the trailing newline and surrounding blanks.
pub fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_string())
}

/// The value of `key` in a "key: value" or "key value" file such as `/proc/meminfo` or the
/// KFD topology's `properties`. The key must match a whole word at the start of the line.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        // The key must end here: at a separator, not inside a longer key.
        if !(rest.is_empty() || rest.starts_with([':', ' ', '\t'])) {
            return None;
        }
        let rest = rest.trim_start();
        Some(rest.strip_prefix(':').unwrap_or(rest).trim())
    })
}

/// A `/proc/meminfo`-style size (`16318412 kB`) in bytes.
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    let v = field(text, key)?;
    let number = v.strip_suffix("kB").unwrap_or(v).trim();
    number.parse::<u64>().ok().map(|n| n * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_match_whole_keys_only() {
        let text = "MemTotal:       16318412 kB\nMemTotalX:  1 kB\nHugePages_Total:       4\n";
        assert_eq!(kib_field(text, "MemTotal"), Some(16318412 * 1024));
        assert_eq!(field(text, "HugePages_Total"), Some("4"));
        assert_eq!(field(text, "Mem"), None);
        let kfd = "gfx_target_version 110000\nlocation_id 768\n";
        assert_eq!(field(kfd, "location_id"), Some("768"));
        assert_eq!(field("model name\t: Intel(R) Xeon(R)\n", "model name"), Some("Intel(R) Xeon(R)"));
    }
}
