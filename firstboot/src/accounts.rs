//! The admin account: the target's `/etc/passwd`, `/etc/shadow`, `/etc/group` and
//! `/etc/gshadow`, edited as text so the result can be staged and committed with the rest
//! of first boot (useradd would write the files in place, one by one).
//!
//! Only the admin's own lines and the member lists of its groups change; every other line
//! is kept byte for byte. A new admin gets the first free uid from `UID_MIN` in
//! `/etc/login.defs` (1000 without one), a private group with the same number when free, and
//! membership of `wheel` (or `sudo`) and `aither-admin`, the group agentd trusts.

use std::path::Path;

use base64::Engine as _;

/// The groups an admin joins, when the target has them: sudo rights (`wheel` on Rocky,
/// `sudo` on Debian), agentd's administrators, and the system journal's readers (the
/// appliance's logs, in Cockpit too).
pub const ADMIN_GROUPS: &[&str] = &["wheel", "sudo", "aither-admin", "systemd-journal"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// The account files of a target, as text.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub passwd: String,
    pub shadow: String,
    pub group: String,
    /// `None` where the target has no `/etc/gshadow`.
    pub gshadow: Option<String>,
    pub uid_min: u32,
    pub gid_min: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("cannot read {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("{path}: line {line}: not a valid entry")]
    Malformed { path: String, line: usize },
    #[error("no free id from {from} for {what}")]
    NoFreeId { from: u32, what: &'static str },
}

/// What [`Accounts::add_admin`] did, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminChange {
    pub user: User,
    pub created: bool,
    pub groups: Vec<String>,
}

impl Accounts {
    pub fn read(root: &Path) -> Result<Accounts, AccountsError> {
        let read = |name: &str| {
            let path = root.join("etc").join(name);
            std::fs::read_to_string(&path).map_err(|source| AccountsError::Read { path, source })
        };
        let optional = |name: &str| match read(name) {
            Err(AccountsError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            other => other.map(Some),
        };
        let defs = optional("login.defs")?.unwrap_or_default();
        let accounts = Accounts {
            passwd: read("passwd")?,
            shadow: optional("shadow")?.unwrap_or_default(),
            group: read("group")?,
            gshadow: optional("gshadow")?,
            uid_min: login_def(&defs, "UID_MIN").unwrap_or(1000),
            gid_min: login_def(&defs, "GID_MIN").unwrap_or(1000),
        };
        accounts.users()?;
        accounts.group_ids()?;
        Ok(accounts)
    }

    pub fn users(&self) -> Result<Vec<User>, AccountsError> {
        entries(&self.passwd)
            .map(|(n, f)| {
                match (f.get(2).and_then(|s| s.parse().ok()), f.get(3).and_then(|s| s.parse().ok()), f.get(5)) {
                    (Some(uid), Some(gid), Some(home)) if f.len() == 7 => {
                        Ok(User { name: f[0].to_string(), uid, gid, home: (*home).to_string() })
                    }
                    _ => Err(AccountsError::Malformed { path: "/etc/passwd".into(), line: n }),
                }
            })
            .collect()
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.users().ok()?.into_iter().find(|u| u.name == name)
    }

    /// The id of group `name`, when it exists.
    pub fn group_id(&self, name: &str) -> Option<u32> {
        self.group_ids().ok()?.into_iter().find(|(n, _)| n == name).map(|(_, gid)| gid)
    }

    fn group_ids(&self) -> Result<Vec<(String, u32)>, AccountsError> {
        entries(&self.group)
            .map(|(n, f)| match f.get(2).and_then(|s| s.parse().ok()) {
                Some(gid) if f.len() == 4 => Ok((f[0].to_string(), gid)),
                _ => Err(AccountsError::Malformed { path: "/etc/group".into(), line: n }),
            })
            .collect()
    }

    /// Create the admin (or update an existing regular user): password, private group and
    /// membership of [`ADMIN_GROUPS`]. `shell` is the login shell for a new user;
    /// `days_since_epoch` dates the password in `/etc/shadow`.
    pub fn add_admin(
        &mut self,
        name: &str,
        password_hash: Option<&str>,
        shell: &str,
        days_since_epoch: u64,
    ) -> Result<AdminChange, AccountsError> {
        let users = self.users()?;
        let groups = self.group_ids()?;
        let (user, created) = match users.iter().find(|u| u.name == name) {
            Some(u) => (u.clone(), false),
            None => {
                let uid = (self.uid_min..u32::MAX - 1)
                    .find(|id| !users.iter().any(|u| u.uid == *id))
                    .ok_or(AccountsError::NoFreeId { from: self.uid_min, what: "the admin user" })?;
                let own_group = groups.iter().find(|(n, _)| n == name).map(|(_, g)| *g);
                let gid = match own_group {
                    Some(g) => g,
                    None if !groups.iter().any(|(_, g)| *g == uid) => uid,
                    None => (self.gid_min..u32::MAX - 1)
                        .find(|id| !groups.iter().any(|(_, g)| g == id))
                        .ok_or(AccountsError::NoFreeId { from: self.gid_min, what: "the admin's group" })?,
                };
                if own_group.is_none() {
                    push_line(&mut self.group, &format!("{name}:x:{gid}:"));
                    if let Some(gs) = &mut self.gshadow {
                        push_line(gs, &format!("{name}:!::"));
                    }
                }
                let home = format!("/home/{name}");
                push_line(&mut self.passwd, &format!("{name}:x:{uid}:{gid}:AitherOS administrator:{home}:{shell}"));
                (User { name: name.to_string(), uid, gid, home }, true)
            }
        };
        let hash = password_hash.unwrap_or("!!");
        let shadow_line = format!("{name}:{hash}:{days_since_epoch}:0:99999:7:::");
        let mut replaced = false;
        self.shadow = map_lines(&self.shadow, |line| {
            if line.split(':').next() == Some(name) {
                replaced = true;
                if password_hash.is_none() && !created {
                    return line.to_string();
                }
                return shadow_line.clone();
            }
            line.to_string()
        });
        if !replaced {
            push_line(&mut self.shadow, &shadow_line);
        }
        let mut joined = Vec::new();
        for g in ADMIN_GROUPS {
            if groups.iter().any(|(n, _)| n == g) {
                self.group = add_member(&self.group, g, name, 3);
                if let Some(gs) = &self.gshadow {
                    self.gshadow = Some(add_member(gs, g, name, 3));
                }
                joined.push((*g).to_string());
            }
        }
        Ok(AdminChange { user, created, groups: joined })
    }
}

/// Non-empty, non-comment lines split on `:`, numbered from 1.
fn entries(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (i + 1, l.split(':').collect()))
}

fn push_line(text: &mut String, line: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
}

fn map_lines(text: &str, mut f: impl FnMut(&str) -> String) -> String {
    let mut out: String = text.lines().map(|l| f(l) + "\n").collect();
    if text.is_empty() {
        out.clear();
    }
    out
}

/// Add `member` to the comma-separated list in field `field` of group `group`'s line.
fn add_member(text: &str, group: &str, member: &str, field: usize) -> String {
    map_lines(text, |line| {
        let mut f: Vec<&str> = line.split(':').collect();
        if f.first() != Some(&group) || f.len() <= field {
            return line.to_string();
        }
        let mut members: Vec<&str> = f[field].split(',').filter(|m| !m.is_empty()).collect();
        if !members.contains(&member) {
            members.push(member);
        }
        let joined = members.join(",");
        f[field] = &joined;
        f.join(":")
    })
}

fn login_def(text: &str, key: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some(key)).then(|| w.next()?.parse().ok()).flatten()
    })
}

/// Names useradd accepts on Rocky and Debian by default: a lowercase letter or underscore,
/// then letters, digits, underscores and hyphens; 32 characters at most.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(format!(
            "{name:?} is not a user name: a lowercase letter first, then lowercase letters, digits, _ or -, 32 at most"
        ));
    }
    if ["root", "aither", "aither-agent"].contains(&name) {
        return Err(format!("{name:?} is reserved; choose another name"));
    }
    Ok(())
}

pub const MIN_PASSWORD_LENGTH: usize = 8;

pub fn check_password(pw: &str) -> Result<(), String> {
    if pw.chars().count() < MIN_PASSWORD_LENGTH {
        return Err(format!("at least {MIN_PASSWORD_LENGTH} characters"));
    }
    if pw.chars().any(char::is_control) {
        return Err("no control characters".into());
    }
    Ok(())
}

/// SHA-512 crypt with a random salt, what Rocky's `ENCRYPT_METHOD SHA512` writes. The salt is
/// 16 characters (12 random bytes): crypt(3) uses no more, and a longer one written out makes a
/// hash that crypt(3) computes to a different string, so pam_unix refuses the password.
pub fn hash_password(pw: &str) -> Result<String, String> {
    use sha_crypt::PasswordHasher as _;
    use std::io::Read as _;
    let mut salt = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| format!("no random salt: /dev/urandom: {e}"))?;
    sha_crypt::ShaCrypt::default()
        .hash_password_with_salt(pw.as_bytes(), &salt)
        .map(|h| h.as_str().to_string())
        .map_err(|e| e.to_string())
}

/// A crypt(3) hash that Rocky 9's libxcrypt accepts for logins: yescrypt, SHA-512, SHA-256 or
/// bcrypt. MD5 and DES are refused.
pub fn check_password_hash(h: &str) -> Result<(), String> {
    let known = ["$y$", "$6$", "$5$", "$2b$", "$2y$"].iter().any(|p| h.starts_with(p));
    if !known {
        return Err("not a yescrypt ($y$), SHA-512 ($6$), SHA-256 ($5$) or bcrypt ($2b$) hash (make one with `openssl passwd -6`)".into());
    }
    if h.contains(':') || h.contains(char::is_whitespace) || h.len() < 20 {
        return Err("not a complete crypt(3) hash".into());
    }
    Ok(())
}

const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An OpenSSH public key line (`TYPE BASE64 [COMMENT]`), checked by decoding it: the blob
/// must name the same key type. Returns the line normalized to single spaces.
pub fn check_ssh_key(line: &str) -> Result<String, String> {
    let mut words = line.split_whitespace();
    let (Some(kind), Some(b64)) = (words.next(), words.next()) else {
        return Err("not a public key line like \"ssh-ed25519 AAAA… comment\"".into());
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(format!("{kind:?} is not an SSH public key type ({})", SSH_KEY_TYPES.join(", ")));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the key is not valid base64 (was it cut when pasted?)".to_string())?;
    // The blob is a sequence of length-prefixed strings (RFC 4253): the type, then the key's
    // fields. A key cut short when pasted leaves its last field incomplete.
    let mut fields = Vec::new();
    let mut rest = blob.as_slice();
    while !rest.is_empty() {
        let len = rest.get(..4).and_then(|n| <[u8; 4]>::try_from(n).ok()).map(|n| u32::from_be_bytes(n) as usize);
        match len.and_then(|n| rest.get(4..4 + n).map(|f| (n, f))) {
            Some((n, f)) => {
                fields.push(f);
                rest = &rest[4 + n..];
            }
            None => return Err("the key's data is incomplete (was it cut when pasted?)".into()),
        }
    }
    if fields.first() != Some(&kind.as_bytes()) || fields.len() < 2 {
        return Err(format!("the key's data is not a {kind} key"));
    }
    if kind == "ssh-ed25519" && fields[1].len() != 32 {
        return Err("an ed25519 key has 32 bytes of key data".into());
    }
    let comment: Vec<&str> = words.collect();
    Ok(if comment.is_empty() { format!("{kind} {b64}") } else { format!("{kind} {b64} {}", comment.join(" ")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQ3cjPzZ9xWVH2Hj3vX1n+Pw0d6ulOVmmEGNbAMlKPC ops@laptop";

    fn accounts() -> Accounts {
        Accounts {
            passwd: "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n".into(),
            shadow: "root:*:19000:0:99999:7:::\nalice:$6$x:19000:0:99999:7:::\n".into(),
            group: "root:x:0:\nwheel:x:10:alice\nalice:x:1000:\naither-admin:x:990:\n".into(),
            gshadow: Some("root:*::\nwheel:!::alice\nalice:!::\naither-admin:!::\n".into()),
            uid_min: 1000,
            gid_min: 1000,
        }
    }

    #[test]
    fn a_new_admin_gets_the_next_uid_a_private_group_and_the_admin_groups() {
        let mut a = accounts();
        let c = a.add_admin("ops", Some("$6$salt$hash"), "/bin/bash", 20000).expect("added");
        assert!(c.created);
        assert_eq!((c.user.uid, c.user.gid), (1001, 1001));
        assert_eq!(c.groups, ["wheel", "aither-admin"]);
        assert!(a.passwd.ends_with("ops:x:1001:1001:AitherOS administrator:/home/ops:/bin/bash\n"));
        assert!(a.shadow.ends_with("ops:$6$salt$hash:20000:0:99999:7:::\n"));
        assert!(a.group.contains("wheel:x:10:alice,ops\n"));
        assert!(a.group.contains("aither-admin:x:990:ops\n"));
        assert!(a.group.ends_with("ops:x:1001:\n"));
        let gs = a.gshadow.as_deref().expect("gshadow");
        assert!(gs.contains("wheel:!::alice,ops\n") && gs.ends_with("ops:!::\n"));
        // Every other line is kept as it was.
        assert!(a.passwd.starts_with("root:x:0:0:root:/root:/bin/bash\nalice:"));
    }

    #[test]
    fn an_existing_user_keeps_its_ids_and_gets_the_new_password() {
        let mut a = accounts();
        let c = a.add_admin("alice", Some("$6$new$hash"), "/bin/bash", 20000).expect("updated");
        assert!(!c.created);
        assert_eq!(c.user.uid, 1000);
        assert!(a.shadow.contains("alice:$6$new$hash:20000:"));
        assert_eq!(a.group.matches("alice").count(), 3, "{}", a.group);
    }

    #[test]
    fn no_password_locks_password_login() {
        let mut a = accounts();
        a.add_admin("ops", None, "/bin/sh", 1).expect("added");
        assert!(a.shadow.ends_with("ops:!!:1:0:99999:7:::\n"));
    }

    #[test]
    fn the_private_group_moves_when_its_number_is_taken() {
        let mut a = accounts();
        a.group.push_str("docker:x:1001:\n");
        let c = a.add_admin("ops", None, "/bin/sh", 1).expect("added");
        assert_eq!((c.user.uid, c.user.gid), (1001, 1002));
    }

    #[test]
    fn hashes_verify_and_bad_ones_are_refused() {
        use sha_crypt::PasswordVerifier as _;
        let h = hash_password("correct horse").expect("hash");
        // `$6$rounds=5000$SALT$HASH`, the salt as long as crypt(3) reads it.
        let fields: Vec<&str> = h.split('$').collect();
        assert_eq!((fields[1], fields[2], fields[3].len(), fields[4].len()), ("6", "rounds=5000", 16, 86), "{h}");
        let parsed = sha_crypt::PasswordHash::new(&h).expect("parses");
        assert!(sha_crypt::ShaCrypt::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(check_password_hash(&h).is_ok());
        assert!(check_password_hash("$1$abc$defdefdefdefdefdef").is_err());
        assert!(check_password("short").is_err());
    }

    #[test]
    fn ssh_keys_are_decoded_and_checked() {
        assert_eq!(check_ssh_key(&format!("  {KEY}  ")).expect("valid"), KEY);
        assert!(check_ssh_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGQ3cjPzZ9xWVH2Hj3vX1n+Pw0d6ulOVmmEGNbAMlKPC").is_err());
        assert!(check_ssh_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQ3cjPz").is_err());
        assert!(check_ssh_key("ssh-dss AAAA").is_err());
    }

    #[test]
    fn user_names_follow_useradd() {
        assert!(check_user_name("ops-1").is_ok());
        for bad in ["", "1ops", "Ops", "a b", "root", &"x".repeat(33)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }
}
