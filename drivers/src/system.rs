//! The real programs behind [`Commands`]: dnf against the local repository, openssl and
//! mokutil for the machine key, modprobe, and `aither-hwprofile detect` to profile again.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aither_sys::command::{self, CommandError};

use crate::{ApplyError, Commands};

/// The real programs, under `root` (`/` on the appliance).
#[derive(Debug)]
pub struct System {
    pub root: PathBuf,
    /// The dnf repository id to install from.
    pub repo: String,
    /// `aither-hwprofile`, run to profile the machine again once the modules load.
    pub hwprofile: PathBuf,
    /// Where the new profile goes (`/run/aither/hwprofile.json`).
    pub profile_output: PathBuf,
}

/// How long one package or module command may run: a driver's install builds kernel modules.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);

fn run(cmd: &mut Command) -> Result<String, ApplyError> {
    Ok(command::run_for(cmd, LIMIT)?)
}

impl Commands for System {
    fn available(&mut self) -> Result<BTreeSet<String>, ApplyError> {
        let out = run(Command::new("dnf").args([
            "--quiet",
            "--disablerepo=*",
            &format!("--enablerepo={}", self.repo),
            "repoquery",
            "--queryformat",
            "%{name}\n",
        ]))?;
        Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
    }

    fn install(&mut self, packages: &[String]) -> Result<(), ApplyError> {
        let mut cmd = Command::new("dnf");
        cmd.args(["--assumeyes", "--disablerepo=*", &format!("--enablerepo={}", self.repo), "install"]).args(packages);
        run(&mut cmd).map(|_| ())
    }

    fn mok_enrolled(&mut self, cert: &Path) -> bool {
        Command::new("mokutil")
            .arg("--test-key")
            .arg(cert)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("is already enrolled"))
    }

    fn make_key(&mut self, key: &Path, cert: &Path) -> Result<(), ApplyError> {
        if key.exists() && cert.exists() {
            return Ok(());
        }
        if let Some(dir) = key.parent() {
            std::fs::create_dir_all(dir).map_err(ApplyError::io(dir))?;
        }
        run(Command::new("openssl")
            .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "36500", "-outform", "DER"])
            .args(["-subj", "/CN=AitherOS machine owner key for DKMS modules/"])
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(cert))
        .map(|_| ())
    }

    fn mok_import(&mut self, cert: &Path, password: &str) -> Result<(), ApplyError> {
        // mokutil reads the password twice from stdin when it is not a terminal.
        let mut cmd = Command::new("mokutil");
        cmd.arg("--import").arg(cert).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let argv = command::argv(&cmd);
        let mut child = cmd.spawn().map_err(|source| CommandError::Spawn { argv: argv.clone(), source })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{password}\n{password}");
        }
        let out = child.wait_with_output().map_err(|source| CommandError::Spawn { argv: argv.clone(), source })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(CommandError::Failed {
                argv,
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }
            .into())
        }
    }

    fn load_module(&mut self, module: &str) -> Result<(), ApplyError> {
        run(Command::new("modprobe").arg(module)).map(|_| ())
    }

    fn reprofile(&mut self) -> Result<(), ApplyError> {
        run(Command::new(&self.hwprofile)
            .arg("detect")
            .arg("--format")
            .arg("json")
            .arg("--output")
            .arg(&self.profile_output))
        .map(|_| ())
    }

    fn console(&mut self, text: &str) {
        eprintln!("{text}");
        if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open(self.root.join("dev/console")) {
            let _ = c.write_all(text.as_bytes());
        }
        let motd = self.root.join("etc/motd.d/aither-mok");
        if let Some(dir) = motd.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(motd, text);
    }
}
