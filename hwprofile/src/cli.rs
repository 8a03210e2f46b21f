//! The `aither-hwprofile` command line.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::detect::{detect, DetectOptions, DEFAULT_MODEL_DIR};
use crate::profile::Profile;
use crate::render;

#[derive(Debug, Parser)]
#[command(
    name = "aither-hwprofile",
    version,
    about = "Say what this machine is: GPUs, CPU, memory, platform, and the GPU drivers it needs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Profile the hardware.
    Detect {
        #[command(flatten)]
        detect: DetectArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Also write the JSON profile to this file, atomically (`/run/aither/hwprofile.json`).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// System root to read `sys/`, `proc/` and `usr/share/hwdata/` from.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// NVML library to open (default: `libnvidia-ml.so.1` through the dynamic loader).
    #[arg(long)]
    pub nvml_lib: Option<PathBuf>,
    /// ROCm SMI library to open (default: `librocm_smi64.so.1`, then /opt/rocm/lib).
    #[arg(long)]
    pub rocm_smi_lib: Option<PathBuf>,
    /// Model directory whose free space is reported.
    #[arg(long, default_value = DEFAULT_MODEL_DIR)]
    pub model_dir: PathBuf,
}

impl DetectArgs {
    pub fn options(&self) -> DetectOptions {
        DetectOptions {
            root: self.root.clone(),
            nvml_lib: self.nvml_lib.clone(),
            rocm_smi_lib: self.rocm_smi_lib.clone(),
            model_dir: self.model_dir.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Toml,
    Table,
}

/// Run the command line; the binary's `main` is a shim around this.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Detect {
            detect: args,
            format,
            output,
        } => {
            let profile = detect(&args.options()).context("hardware detection failed")?;
            if let Some(path) = output {
                write_atomically(&path, &to_json(&profile)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let text = match format {
                Format::Json => to_json(&profile)?,
                Format::Toml => {
                    toml::to_string_pretty(&profile).context("cannot render the profile as TOML")?
                }
                Format::Table => render::profile_table(&profile),
            };
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .context("cannot write to stdout")?;
            Ok(())
        }
    }
}

fn to_json(profile: &Profile) -> Result<String> {
    let mut s =
        serde_json::to_string_pretty(profile).context("cannot render the profile as JSON")?;
    s.push('\n');
    Ok(s)
}

/// Write `contents` to `path` through a temporary file in the same directory and a rename,
/// so readers see the old file or the new one, never a part.
pub fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
