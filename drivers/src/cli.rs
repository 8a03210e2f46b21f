//! The command line, shared by `aither-drivers` and `aither-hwprofile drivers`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;

use aither_api::profile::{Profile, Stack};
use aither_sys::paths;

use crate::system::System;
use crate::{Commands, Plan, MOK_DIR};

/// Where the profile is read from and written to again.
const PROFILE: &str = "/run/aither/hwprofile.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Toml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Action {
    /// Say what would be installed.
    Plan,
    /// Install it, handle Secure Boot, load the modules and profile the machine again.
    Apply,
}

/// GPU drivers for this machine from the local repository (first boot: aither-drivers.service).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    pub action: Action,
    /// The profile to act on (as `aither-hwprofile detect --output` writes it).
    #[arg(long, default_value = PROFILE)]
    pub profile: PathBuf,
    /// The package table (default: /usr/share/aither/drivers.toml, else the built-in copy).
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// What was applied at earlier boots.
    #[arg(long, default_value = "/var/lib/aither/drivers.json")]
    pub state: PathBuf,
    /// The dnf repository to install from.
    #[arg(long, default_value = "aither-local")]
    pub repo: String,
    /// `aither-hwprofile`, run to profile the machine again once the modules load.
    #[arg(long, default_value = "/usr/bin/aither-hwprofile")]
    pub hwprofile: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `aither-drivers` on its own.
#[derive(Debug, clap::Parser)]
#[command(name = "aither-drivers", version, about = "GPU drivers for this machine from the local repository")]
pub struct Cli {
    #[command(flatten)]
    pub args: Args,
}

fn read_profile(path: &Path) -> Result<Profile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a hardware profile", path.display()))
}

fn read_table(path: Option<&Path>) -> Result<crate::Table> {
    let installed = Path::new(paths::DATA_DIR).join("drivers.toml");
    let path = path.map(Path::to_path_buf).or_else(|| installed.is_file().then_some(installed));
    Ok(match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            crate::parse_table(&p.display().to_string(), &text)?
        }
        None => crate::parse_table("built-in drivers.toml", crate::BUILTIN_TABLE)?,
    })
}

/// Plan or apply, and print the plan.
pub fn run(args: &Args) -> Result<()> {
    let profile = read_profile(&args.profile)?;
    let table = read_table(args.table.as_deref())?;
    let mut sys = System {
        root: PathBuf::from("/"),
        repo: args.repo.clone(),
        hwprofile: args.hwprofile.clone(),
        profile_output: PROFILE.into(),
    };
    let plan = match args.action {
        Action::Apply => {
            let mut random = [0u8; 8];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
                .context("cannot read /dev/urandom")?;
            let password = crate::one_time_password(random);
            crate::apply(&profile, &table, Path::new("/"), &args.state, &mut sys, &password)?.0
        }
        Action::Plan => {
            let before = std::fs::read_to_string(&args.state).ok().and_then(|t| serde_json::from_str(&t).ok());
            let available = if profile.drivers.iter().any(|d| d.stack != Stack::None) {
                sys.available()?
            } else {
                Default::default()
            };
            let cert = Path::new("/").join(MOK_DIR).join("mok.pub");
            let enrolled = cert.exists() && sys.mok_enrolled(&cert);
            crate::plan(&profile, &table, &available, before.as_ref(), enrolled)?
        }
    };
    let text = match args.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&plan)?),
        Format::Toml => toml::to_string_pretty(&plan)?,
        Format::Table => plan.table(),
    };
    use std::io::Write as _;
    std::io::stdout().lock().write_all(text.as_bytes()).context("cannot write to stdout")
}

impl Plan {
    /// The plan as the console and `--format table` show it.
    pub fn table(&self) -> String {
        let name = |v: serde_json::Result<serde_json::Value>| {
            v.ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        };
        let mut out = String::new();
        if self.gpus.is_empty() {
            out.push_str("Drivers  no GPU: nothing to install\n");
            return out;
        }
        for (gpu, stack) in &self.gpus {
            out.push_str(&format!("GPU      {gpu}: {}\n", name(serde_json::to_value(stack))));
        }
        if self.up_to_date {
            out.push_str("Drivers  up to date: applied at an earlier boot for these GPUs\n");
        } else {
            let packages = if self.packages.is_empty() { "none".to_string() } else { self.packages.join(" ") };
            out.push_str(&format!("Install  {packages}\n"));
            out.push_str(&format!("Signing  {}\n", name(serde_json::to_value(self.signing))));
            if !self.load.is_empty() {
                out.push_str(&format!("Load     {}\n", self.load.join(" ")));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("Note     {n}\n"));
        }
        out
    }
}
