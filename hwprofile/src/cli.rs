//! The `aither-hwprofile` command line.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::detect::{detect, DetectOptions, DEFAULT_MODEL_DIR};
use crate::profile::Profile;
use crate::render;
use aither_gguf as gguf;
use aither_plan::catalog::Catalog;
use aither_plan::data::{load as load_data, pinned_preset, read_profile};
use aither_plan::fit::{FitParams, KvType, Shape};
use aither_plan::plan::{plan, PlanOptions};

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
    /// Apply a preset to this machine: models, groups, memory tiers, agents, threads.
    Plan {
        #[command(flatten)]
        detect: DetectArgs,
        /// Read the profile from this file (as `detect --output` writes it) instead of detecting.
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Use this preset instead of the pinned or selected one.
        #[arg(long)]
        preset: Option<String>,
        /// Appliance configuration whose `preset` key pins a preset
        /// (default: etc/aither/appliance.toml under --root, when it exists).
        #[arg(long)]
        appliance_config: Option<PathBuf>,
        /// Directory holding `presets/` and `catalog/` (default: the built-in copies).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Size one model on the host: weights, KV cache and compute buffer for a context.
    Fit {
        /// A GGUF file, or the name of a catalog model.
        model: String,
        /// Quantization of a catalog model (default: its first file).
        #[arg(long)]
        quant: Option<String>,
        #[arg(long, default_value_t = 4096)]
        context: u32,
        /// KV cache element type: f16, q8_0 or q4_0.
        #[arg(long, default_value = "f16")]
        kv_cache_type: String,
        /// Micro-batch size (llama.cpp `--ubatch-size`).
        #[arg(long, default_value_t = aither_plan::fit::DEFAULT_UBATCH)]
        ubatch: u32,
        /// Whether flash attention is on (default: on for a quantized KV cache).
        #[arg(long)]
        flash_attention: Option<bool>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// GPU drivers for this machine from the local repository (the same as `aither-drivers`).
    Drivers(aither_drivers::cli::Args),
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
        Command::Detect { detect: args, format, output } => {
            let profile = detect(&args.options()).context("hardware detection failed")?;
            if let Some(path) = output {
                aither_sys::atomic::write(&path, to_json(&profile)?.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let text = match format {
                Format::Json => to_json(&profile)?,
                Format::Toml => toml::to_string_pretty(&profile).context("cannot render the profile as TOML")?,
                Format::Table => render::profile_table(&profile),
            };
            print(&text)
        }
        Command::Plan { detect: args, profile, preset, appliance_config, data_dir, format } => {
            let profile = match profile {
                Some(path) => read_profile(&path)?,
                None => detect(&args.options()).context("hardware detection failed")?,
            };
            let (presets, catalog) = load_data(data_dir.as_deref())?;
            let config = appliance_config.unwrap_or_else(|| args.root.join("etc/aither/appliance.toml"));
            let pinned = match preset {
                Some(p) => Some(p),
                None => pinned_preset(&config)?,
            };
            let model_dir = args.root.join(args.model_dir.strip_prefix("/").unwrap_or(&args.model_dir));
            let plan = plan(&profile, &presets, &catalog, &PlanOptions { preset: pinned, model_dir: Some(model_dir) })?;
            let text = match format {
                Format::Json => format!("{}\n", serde_json::to_string_pretty(&plan).context("cannot render the plan")?),
                Format::Toml => toml::to_string_pretty(&plan).context("cannot render the plan as TOML")?,
                Format::Table => render::plan_table(&plan),
            };
            print(&text)
        }
        Command::Fit { model, quant, context, kv_cache_type, ubatch, flash_attention, format } => {
            let kv = KvType::parse(&kv_cache_type)
                .with_context(|| format!("--kv-cache-type {kv_cache_type:?}: expected f16, q8_0 or q4_0"))?;
            let shape = if Path::new(&model).is_file() {
                let g = gguf::read(Path::new(&model))?;
                Shape::from_gguf(&g).map_err(|e| anyhow::anyhow!("{model}: {e}"))?
            } else {
                let catalog = Catalog::builtin()?;
                let m =
                    catalog.get(&model).with_context(|| format!("{model:?} is neither a file nor a catalog model"))?;
                let f = match &quant {
                    Some(q) => {
                        m.files.iter().find(|f| &f.quant == q).with_context(|| format!("{model} has no {q} file"))?
                    }
                    None => m.files.first().context("catalog entry without files")?,
                };
                Shape::from_catalog(m, f)
            };
            let mut params = FitParams::new(context, kv);
            params.ubatch = ubatch;
            if let Some(fa) = flash_attention {
                params.flash_attention = fa;
            }
            let report = render::FitReport::new(&model, &shape, &params);
            let text = match format {
                Format::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
                Format::Toml => toml::to_string_pretty(&report)?,
                Format::Table => report.table(),
            };
            print(&text)
        }
        Command::Drivers(args) => aither_drivers::cli::run(&args),
    }
}

fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).context("cannot write to stdout")
}

fn to_json(profile: &Profile) -> Result<String> {
    let mut s = serde_json::to_string_pretty(profile).context("cannot render the profile as JSON")?;
    s.push('\n');
    Ok(s)
}
