//! The command line: the service's entry point, the headless path and `fetch-models`.
//!
//! Progress and results go to stderr, which the unit sends to the journal and the console
//! (stdout is the wizard's); `--check` answers on stdout.
//!
//! Exit status: 0 configured (or already configured: nothing to do, so systemd does not
//! retry), 65 the answers are invalid (each problem named), 73 applying failed (nothing was
//! changed), 69 there are no answers and no console to ask on, 2 a usage error.

use std::io::IsTerminal as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aither_api::profile::Profile;
use aither_models::Source;
use aither_plan::catalog::Catalog;
use aither_plan::presets::Presets;
use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::answers::{self, Answers};
use crate::apply::{self, Env, Event, Report};
use crate::source::{self, Origin};

pub const EXIT_INVALID: i32 = 65;
pub const EXIT_UNAVAILABLE: i32 = 69;
pub const EXIT_CANTCREAT: i32 = 73;

#[derive(Debug, Parser)]
#[command(name = "aither-firstboot", version, about = "Configure the AitherOS appliance at first boot")]
pub struct Cli {
    /// Apply this answers file, with no prompts.
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
    /// The machine to configure: / (the running one) or a tree being prepared.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Never start the console wizard: without answers, apply the defaults. Implied in a
    /// cloud (the profile says so, or cloud-init has run).
    #[arg(long)]
    pub headless: bool,
    /// Only validate the answers and say what would be done.
    #[arg(long)]
    pub check: bool,
    /// The hardware profile (default: /run/aither/hwprofile.json, else detect now).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Directory with presets/ and catalog/ (default: the built-in ones).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch the plan's models (or the ones named) into /var/lib/aither/models.
    FetchModels {
        /// Catalog names (default: every model of the plan).
        names: Vec<String>,
        /// A directory holding the GGUF files (a USB stick) instead of the catalog's URLs.
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
    },
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aither-firstboot: {e:#}");
            1
        }
    }
}

/// What the machine is and what can be chosen for it.
#[derive(Debug)]
pub struct Context {
    pub root: PathBuf,
    pub live: bool,
    pub profile: Option<Profile>,
    pub presets: Presets,
    pub catalog: Catalog,
}

impl Context {
    pub fn load(cli: &Cli) -> anyhow::Result<Context> {
        let (presets, catalog) = aither_plan::data::load(cli.data_dir.as_deref())?;
        let live = cli.root == Path::new("/");
        let profile = match &cli.profile {
            Some(p) => Some(aither_plan::data::read_profile(p)?),
            None => {
                let run = cli.root.join("run/aither/hwprofile.json");
                if run.exists() {
                    Some(aither_plan::data::read_profile(&run)?)
                } else if live {
                    let opts = aither_hwprofile::detect::DetectOptions {
                        root: cli.root.clone(),
                        nvml_lib: None,
                        rocm_smi_lib: None,
                        model_dir: cli.root.join("var/lib/aither/models"),
                    };
                    aither_hwprofile::detect::detect(&opts).ok()
                } else {
                    None
                }
            }
        };
        Ok(Context { root: cli.root.clone(), live, profile, presets, catalog })
    }

    pub fn env(&self) -> Env<'_> {
        Env {
            root: &self.root,
            live: self.live,
            profile: self.profile.as_ref(),
            presets: &self.presets,
            catalog: &self.catalog,
        }
    }

    /// The preset the hardware selects, and why.
    pub fn selected_preset(&self) -> Option<(String, String)> {
        self.profile.as_ref().map(|p| {
            let (name, reason) = aither_plan::presets::select(p);
            (name.to_string(), reason)
        })
    }
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let ctx = Context::load(&cli)?;
    if let Some(Command::FetchModels { names, source }) = &cli.command {
        return fetch_models(&ctx, names, source.as_deref());
    }
    let env = ctx.env();
    if env.is_configured() && !cli.check {
        eprintln!("aither-firstboot: this machine is already configured ({}): nothing to do", apply::MARKER);
        return Ok(0);
    }
    let cmdline = if ctx.live { std::fs::read_to_string("/proc/cmdline").ok() } else { None };
    let origin = source::locate(&ctx.root, cli.answers.as_deref(), cmdline.as_deref());
    // A cloud: the profile says so, or cloud-init ran (it writes the answers from user-data
    // before this runs). Nobody is at the console there: never wait on it.
    let cloud = ctx.profile.as_ref().is_some_and(|p| p.platform.cloud.is_some())
        || ctx.root.join("run/cloud-init/result.json").exists();
    let console = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let wizard_allowed = !cli.headless && !cli.check && !cloud && console;
    let mut draft = None;
    if let Some(origin) = &origin {
        let answers = match source::load(origin) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("aither-firstboot: {e}");
                return Ok(EXIT_INVALID);
            }
        };
        match answers::validate(&answers, &env.target()) {
            Ok(settings) if cli.check => {
                println!("{}: valid; applying it would write:", origin.describe());
                for line in describe(&settings) {
                    println!("  {line}");
                }
                std::io::stdout().flush()?;
                return Ok(0);
            }
            Ok(settings) => {
                eprintln!("aither-firstboot: applying {}{}", origin.describe(), selinux_context());
                return Ok(finish(apply::apply(&answers, &settings, &env, &mut print_event), origin));
            }
            Err(problems) => {
                eprintln!("{}", answers::AnswersError::Invalid { path: PathBuf::from(origin.describe()), problems });
                if !wizard_allowed || matches!(origin, Origin::Given(_)) {
                    eprintln!("aither-firstboot: nothing was changed");
                    return Ok(EXIT_INVALID);
                }
                // On the console, the wizard starts from these answers and shows what is wrong.
                draft = Some(answers);
            }
        }
    } else if cli.check {
        eprintln!("aither-firstboot: no answers to check (give --answers FILE)");
        return Ok(EXIT_INVALID);
    } else if !wizard_allowed {
        if !cli.headless && !cloud {
            eprintln!("aither-firstboot: no answers and no console to ask on: give --answers FILE, --headless, or run it on a terminal");
            return Ok(EXIT_UNAVAILABLE);
        }
        eprintln!("aither-firstboot: no answers: applying the defaults (the preset chosen from the hardware)");
        let defaults = Answers { schema_version: Some(answers::SCHEMA_VERSION), ..Answers::default() };
        let origin = Origin::Given(PathBuf::from("(defaults)"));
        return Ok(match apply::validate_and_apply(&defaults, &env, &mut print_event) {
            Ok(r) => finish(Ok(r), &origin),
            Err(apply::ValidateOrApply::Apply(e)) => finish(Err(e), &origin),
            Err(e @ apply::ValidateOrApply::Invalid(_)) => {
                eprintln!("aither-firstboot: {e}");
                EXIT_INVALID
            }
        });
    }
    crate::wizard::run(&ctx, draft, origin)
}

/// ` (as CONTEXT)` when SELinux gives this process a context, for the journal.
fn selinux_context() -> String {
    std::fs::read_to_string("/proc/self/attr/current")
        .ok()
        .map(|c| c.trim_end_matches(['\0', '\n']).to_string())
        .filter(|c| !c.is_empty() && c != "unconfined" && c != "kernel")
        .map(|c| format!(" (as {c})"))
        .unwrap_or_default()
}

/// Report the outcome; remove the default answers file once applied (it may hold secrets).
fn finish(result: Result<Report, apply::ApplyError>, origin: &Origin) -> i32 {
    match result {
        Ok(report) => {
            if let Origin::Default(p) = origin {
                if let Err(e) = std::fs::remove_file(p) {
                    eprintln!("aither-firstboot: cannot remove {} (it may hold secrets): {e}", p.display());
                }
            }
            eprintln!(
                "aither-firstboot: configured{}",
                if report.warnings.is_empty() {
                    String::new()
                } else {
                    format!(", with {} warning(s) above", report.warnings.len())
                }
            );
            0
        }
        Err(e) => {
            eprintln!("aither-firstboot: {e}");
            EXIT_CANTCREAT
        }
    }
}

/// What applying `s` writes, one line per item, for `--check` and the wizard's review.
pub fn describe(s: &answers::Settings) -> Vec<String> {
    let mut out = Vec::new();
    out.push(match &s.preset {
        Some(p) => format!("preset: {p}, pinned"),
        None => "preset: chosen from the hardware at every boot".into(),
    });
    if let Some(h) = &s.hostname {
        out.push(format!("host name: {h}"));
    }
    if let Some(z) = &s.timezone {
        out.push(format!("time zone: {z}"));
    }
    match &s.admin {
        Some(a) => out.push(format!(
            "admin: {} ({}{} SSH key(s))",
            a.user,
            if a.password_hash.is_some() { "password, " } else { "no password, " },
            a.ssh_keys.len()
        )),
        None => out.push("admin: none created (give [admin] or let cloud-init create one)".into()),
    }
    for i in &s.network {
        out.push(match &i.method {
            answers::Method::Dhcp => format!("network {}: DHCP", i.interface),
            answers::Method::Static { address, prefix, gateway, dns } => format!(
                "network {}: {address}/{prefix}{}{}",
                i.interface,
                gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                if dns.is_empty() {
                    String::new()
                } else {
                    format!(", DNS {}", dns.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))
                }
            ),
        });
    }
    out.push(format!(
        "models: {} {}",
        match &s.models.names {
            Some(n) if n.is_empty() => "none".to_string(),
            Some(n) => n.join(", "),
            None => "the plan's".to_string(),
        },
        match (&s.models.fetch_now, &s.models.source_dir) {
            (false, _) => "fetched later".to_string(),
            (true, None) => "fetched now from the catalog".to_string(),
            (true, Some(d)) => format!("copied now from {}", d.display()),
        }
    ));
    out.push(match &s.workflows {
        Some(w) if w.is_empty() => "workflow packs: none".to_string(),
        Some(w) => format!("workflow packs: {}", w.join(", ")),
        None => "workflow packs: the preset's".to_string(),
    });
    if let Some(c) = &s.cloud {
        out.push(format!(
            "cloud fallback: {}{}{}",
            c.endpoint,
            c.model.as_deref().map(|m| format!(", model {m}")).unwrap_or_default(),
            if c.api_key.is_some() { ", with an API key" } else { "" }
        ));
    }
    out
}

/// Progress as lines on stderr; transfers as a percentage that updates in place on a
/// terminal and every tenth otherwise.
fn print_event(e: Event) {
    thread_local!(static LAST: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) });
    let tty = std::io::stderr().is_terminal();
    match e {
        Event::Step(s) => eprintln!("==> {s}"),
        Event::Done(s) => eprintln!("    {s}"),
        Event::Warning(s) => eprintln!("    warning: {s}"),
        Event::Transfer { what, done, total } => {
            let Some(total) = total.filter(|t| *t > 0) else { return };
            let pct = done.saturating_mul(100) / total;
            let step = if tty { pct } else { pct / 10 * 10 };
            if LAST.with(|l| l.replace(step)) != step {
                if tty {
                    eprint!("\r    {what}: {pct:3}% of {} MB", total / 1_000_000);
                    if done >= total {
                        eprintln!();
                    }
                    let _ = std::io::stderr().flush();
                } else {
                    eprintln!("    {what}: {pct}% of {} MB", total / 1_000_000);
                }
            }
        }
    }
}

fn fetch_models(ctx: &Context, names: &[String], source: Option<&Path>) -> anyhow::Result<i32> {
    let env = ctx.env();
    let preset = aither_plan::data::pinned_preset(&ctx.root.join(apply::APPLIANCE.trim_start_matches('/')))?;
    for n in names {
        if ctx.catalog.get(n).is_none() {
            eprintln!("aither-firstboot: {n:?} is not in the model catalog");
            return Ok(EXIT_INVALID);
        }
    }
    let wanted = apply::models_to_fetch(&env, preset.as_deref(), (!names.is_empty()).then_some(names));
    if wanted.is_empty() {
        eprintln!("aither-firstboot: the plan has no models to fetch (no hardware profile, or nothing fits)");
        return Ok(0);
    }
    let source = match source {
        Some(d) => Source::Dir(std::fs::canonicalize(d).with_context(|| format!("{}", d.display()))?),
        None => Source::Catalog,
    };
    let mut report = Report::default();
    apply::fetch_models(&env, &wanted, &source, &mut report, &mut print_event);
    Ok(if report.warnings.is_empty() { 0 } else { 1 })
}
