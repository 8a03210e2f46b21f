//! The command line, the model checks before llama.cpp sees the file, and the worker's life:
//! listen, load, serve, stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aither_api::plan::{local_file, Plan};
use aither_gguf as gguf;
use aither_http::guard::HostPolicy;
use aither_http::Limits;
use aither_sys::notify::Notifier;
use anyhow::Context as _;
use clap::Parser;
use llama_cpp_2::context::params::{KvCacheType, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

use crate::engine::{Engine, EngineConfig};
use crate::server::{self, AppState, Ready};
use crate::template::{ChatTemplate, CHATML};

/// Exit statuses, so a supervisor can tell a bad model (do not restart) from a crash.
pub mod exit {
    /// The model file is not a usable model: bad magic, truncated, counts or sizes beyond
    /// the file, or llama.cpp refused it.
    pub const BAD_MODEL: i32 = 65;
    /// The model file is missing or unreadable.
    pub const NO_MODEL: i32 = 66;
    /// The listening address cannot be used.
    pub const CANNOT_LISTEN: i32 = 69;
    /// llama.cpp could not make a context (memory) or the engine stopped.
    pub const ENGINE: i32 = 70;
    /// A command-line or plan error.
    pub const USAGE: i32 = 64;
}

#[derive(Debug, Parser)]
#[command(name = "aither-infer", version, about = "AitherOS inference worker: one model, an OpenAI-compatible API")]
pub struct Args {
    /// The GGUF model file (read with mmap).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Where to serve: unix:PATH or tcp:HOST:PORT.
    #[arg(long, value_name = "ADDR", value_parser = Listen::parse)]
    pub listen: Listen,
    /// CPU threads for llama.cpp [default: the CPUs this process may use].
    #[arg(long)]
    pub threads: Option<u32>,
    /// KV cache cells (tokens), shared by the parallel sequences [default: 4096, or the plan's].
    #[arg(long)]
    pub ctx: Option<u32>,
    /// Requests decoded together [default: 1, or the plan's]. Each gets ctx/parallel cells.
    #[arg(long)]
    pub parallel: Option<u32>,
    /// One KV cache shared by all parallel requests: one request may use the whole context,
    /// but attention reads every request's cells (slower with many at once).
    #[arg(long)]
    pub kv_unified: bool,
    /// A slot whose context fills up discards the older half of its tokens (after n_keep)
    /// and goes on generating, as llama-server's option; off by default: the answer ends
    /// with finish_reason "length".
    #[arg(long, overrides_with = "no_context_shift")]
    pub context_shift: bool,
    /// The default: a full context ends the answer.
    #[arg(long, overrides_with = "context_shift")]
    pub no_context_shift: bool,
    /// `GET /slots` answers 501, as llama-server's `--no-slots` (it is on by default).
    #[arg(long, overrides_with = "slots")]
    pub no_slots: bool,
    /// `GET /slots` answers with each slot's state (the default; llama-server's flag).
    #[arg(long, overrides_with = "no_slots")]
    pub slots: bool,
    /// Layers offloaded to GPUs [default: 0, or the plan's].
    #[arg(long)]
    pub gpu_layers: Option<u32>,
    /// Layers per GPU, comma-separated (the plan's split).
    #[arg(long, value_delimiter = ',')]
    pub tensor_split: Vec<u32>,
    /// KV cache type: f16, q8_0 or q4_0 [default: f16, or the plan's].
    #[arg(long, value_parser = ["f16", "q8_0", "q4_0"])]
    pub kv_cache_type: Option<String>,
    /// Tokens per decode batch (prompt chunks).
    #[arg(long, default_value_t = 2048)]
    pub batch: u32,
    /// Host memory (MiB) for prompts pushed out of their slots: a later request sharing
    /// their prefix gets their KV cells back instead of decoding them again [default: 0,
    /// none kept, or the model's share of the plan's L1 hot cache].
    #[arg(long, value_name = "MIB")]
    pub cache_ram: Option<u64>,
    /// The names served in /v1/models, comma-separated; as llama-server, the first in sort order
    /// is the model's id and every one is listed in its `aliases` [default: the file name
    /// without .gguf, or the plan's].
    #[arg(long)]
    pub alias: Option<String>,
    /// Informational tags listed in /v1/models, comma-separated (llama-server's option).
    #[arg(long)]
    pub tags: Option<String>,
    /// A chat template instead of the model's own (llama-server's option): the name of one
    /// of llama.cpp's built-in formats (chatml, llama3, mistral-v7, gemma, phi3 …; a text
    /// that is neither a name nor a Jinja template is refused with the list), or a Jinja
    /// template's text.
    #[arg(long, value_name = "NAME|JINJA", conflicts_with = "chat_template_file")]
    pub chat_template: Option<String>,
    /// A Jinja chat template to use instead of the model's own (llama-server's option).
    #[arg(long, value_name = "PATH")]
    pub chat_template_file: Option<PathBuf>,
    /// Where ggml's backend modules are (libggml-cpu-<level>.so, libggml-cuda.so, …)
    /// [default: ggml/ beside this program, else the installed library directory].
    #[arg(long, value_name = "DIR")]
    pub backends_dir: Option<PathBuf>,
    /// Serve embeddings (detected from the model's pooling type when not given).
    #[arg(long)]
    pub embeddings: bool,
    /// How an embedding model's token vectors become one (llama-server's option) [default:
    /// the model's own]: none (a vector per token, on /embedding only), mean, cls or last.
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// Take the settings of one model from a plan document (`aither-hwprofile plan --format json`).
    #[arg(long, value_name = "PLAN.json", requires = "plan_model")]
    pub plan: Option<PathBuf>,
    /// The model of the plan to serve.
    #[arg(long, value_name = "NAME", requires = "plan")]
    pub plan_model: Option<String>,
    /// Where the plan's model files are.
    #[arg(long, default_value = aither_sys::paths::MODEL_DIR)]
    pub model_dir: PathBuf,
    /// Seconds a client has to send a complete request head [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub header_timeout: Option<u64>,
    /// Seconds a client has to send a whole request body [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub body_timeout: Option<u64>,
    /// Seconds an idle kept-alive connection stays open; 0 closes after each request [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
    /// Open connections at once; more are answered 503 and closed [default: 512].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Largest request body in bytes [default: 33554432].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// A host name clients may use besides localhost, IP addresses and this machine's name
    /// (repeat for more): other `Host` values are refused (DNS rebinding).
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
}

/// A listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(String),
}

impl Listen {
    pub fn parse(s: &str) -> Result<Listen, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a path".into());
            }
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            let (host, port) = a.rsplit_once(':').ok_or_else(|| format!("{a:?}: expected HOST:PORT"))?;
            port.parse::<u16>().map_err(|_| format!("{port:?} is not a port number"))?;
            if host.is_empty() {
                return Err(format!("{a:?}: expected HOST:PORT"));
            }
            return Ok(Listen::Tcp(a.to_string()));
        }
        Err(format!("{s:?}: expected unix:PATH or tcp:HOST:PORT"))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Everything the worker runs with, flags and plan merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub model: PathBuf,
    /// The model's id in answers and /v1/models.
    pub alias: String,
    /// Every name `--alias` gave (sorted; the first is `alias`), and `--tags`.
    pub aliases: Vec<String>,
    pub tags: Vec<String>,
    pub listen: Listen,
    pub threads: u32,
    pub ctx: u32,
    pub parallel: u32,
    pub gpu_layers: u32,
    pub tensor_split: Vec<u32>,
    pub kv_cache_type: Option<String>,
    pub batch: u32,
    pub kv_unified: bool,
    /// `GET /slots` answers (`--slots`, the default) or says 501 (`--no-slots`).
    pub slots_endpoint: bool,
    /// Bytes of host memory for prompts pushed out of their slots.
    pub cache_ram_bytes: u64,
    pub embeddings: Option<bool>,
    pub pooling: Option<Pooling>,
    pub context_shift: bool,
    pub chat_template: Option<String>,
    pub chat_template_file: Option<PathBuf>,
    pub backends_dir: Option<PathBuf>,
    /// The listener's limits.
    pub limits: Limits,
    pub allow_hosts: Vec<String>,
}

/// A failure with the exit status it means.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl Failure {
    fn new(code: i32, error: anyhow::Error) -> Failure {
        Failure { code, error }
    }
}

/// Flags win over the plan; the plan wins over the defaults.
pub fn settings(args: Args) -> Result<Settings, Failure> {
    let usage = |e: anyhow::Error| Failure::new(exit::USAGE, e);
    let planned = match (&args.plan, &args.plan_model) {
        (Some(path), Some(name)) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display())).map_err(usage)?;
            let plan: Plan = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a plan document", path.display()))
                .map_err(usage)?;
            let m = plan.models.iter().find(|m| &m.name == name).cloned().ok_or_else(|| {
                let names: Vec<&str> = plan.models.iter().map(|m| m.name.as_str()).collect();
                usage(anyhow::anyhow!(
                    "{}: no model named {name:?} in the plan (it has: {})",
                    path.display(),
                    names.join(", ")
                ))
            })?;
            Some((plan, m))
        }
        _ => None,
    };
    let model = match (&args.model, &planned) {
        (Some(m), _) => m.clone(),
        (None, Some((_, m))) => local_file(&args.model_dir, &m.url),
        (None, None) => {
            return Err(usage(anyhow::anyhow!("--model PATH or --plan FILE --plan-model NAME is required")))
        }
    };
    let names = |v: &Option<String>| -> Vec<String> {
        let set: std::collections::BTreeSet<String> =
            v.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        set.into_iter().collect()
    };
    let (aliases, tags) = (names(&args.alias), names(&args.tags));
    let alias =
        aliases.first().cloned().or_else(|| planned.as_ref().map(|(_, m)| m.name.clone())).unwrap_or_else(|| {
            let name = model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
            name.strip_suffix(".gguf").map(str::to_string).unwrap_or(name)
        });
    let threads = args
        .threads
        .or_else(|| planned.as_ref().map(|(p, _)| p.inference.threads))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)));
    let kv_cache_type =
        args.kv_cache_type.clone().or_else(|| planned.as_ref().map(|(_, m)| m.kv_cache_type.name().to_string()));
    let s = Settings {
        model,
        alias,
        aliases,
        tags,
        listen: args.listen.clone(),
        threads,
        ctx: args.ctx.or_else(|| planned.as_ref().map(|(_, m)| m.context)).unwrap_or(4096),
        parallel: args.parallel.or_else(|| planned.as_ref().map(|(p, _)| p.inference.parallel)).unwrap_or(1),
        gpu_layers: args.gpu_layers.or_else(|| planned.as_ref().map(|(_, m)| m.gpu_layers)).unwrap_or(0),
        tensor_split: if args.tensor_split.is_empty() {
            planned.as_ref().map(|(_, m)| m.tensor_split.clone()).unwrap_or_default()
        } else {
            args.tensor_split.clone()
        },
        kv_cache_type,
        batch: args.batch,
        kv_unified: args.kv_unified,
        slots_endpoint: !args.no_slots,
        cache_ram_bytes: match args.cache_ram {
            Some(mib) => {
                mib.checked_mul(1 << 20).ok_or_else(|| usage(anyhow::anyhow!("--cache-ram {mib}: too large")))?
            }
            None => planned.as_ref().map_or(0, |(p, m)| p.prompt_cache_bytes(&m.name)),
        },
        embeddings: args.embeddings.then_some(true),
        pooling: args.pooling,
        context_shift: args.context_shift,
        chat_template: args.chat_template.clone(),
        chat_template_file: args.chat_template_file.clone(),
        backends_dir: args.backends_dir.clone(),
        limits: limits(&args).map_err(|e| {
            usage(anyhow::anyhow!("--{}: {}", e.key.trim_end_matches("_seconds").replace('_', "-"), e.problem))
        })?,
        allow_hosts: args.allow_hosts.clone(),
    };
    for (name, v) in [("--threads", s.threads), ("--ctx", s.ctx), ("--parallel", s.parallel), ("--batch", s.batch)] {
        if v == 0 {
            return Err(usage(anyhow::anyhow!("{name} must be at least 1")));
        }
    }
    if s.ctx < 16 {
        return Err(usage(anyhow::anyhow!("--ctx {} is too small (at least 16 tokens)", s.ctx)));
    }
    if s.parallel > 256 {
        return Err(usage(anyhow::anyhow!("--parallel {} is above llama.cpp's 256 sequences", s.parallel)));
    }
    Ok(s)
}

/// The listener's limits: the flags given, the front door's defaults for the rest.
fn limits(args: &Args) -> Result<Limits, aither_http::LimitsError> {
    let d = Limits::default();
    let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
    let l = Limits {
        header_timeout: secs(args.header_timeout, d.header_timeout),
        body_timeout: secs(args.body_timeout, d.body_timeout),
        idle_timeout: secs(args.idle_timeout, d.idle_timeout),
        max_connections: args.max_connections.unwrap_or(d.max_connections),
        max_body_bytes: args.max_body_bytes.unwrap_or(d.max_body_bytes),
    };
    l.validate()?;
    Ok(l)
}

/// What the header says about the model, checked before llama.cpp reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFacts {
    pub architecture: String,
    /// The model pools token embeddings into one vector (an embedding model).
    pub pooled: bool,
}

/// Check the file: present, a GGUF whose every count and size fits the file.
pub fn check_model(path: &Path) -> Result<ModelFacts, Failure> {
    match std::fs::metadata(path) {
        Err(e) => {
            return Err(Failure::new(exit::NO_MODEL, anyhow::anyhow!("{}: {e}", path.display())));
        }
        Ok(m) if !m.is_file() => {
            return Err(Failure::new(exit::NO_MODEL, anyhow::anyhow!("{}: not a regular file", path.display())));
        }
        Ok(_) => {}
    }
    let g = gguf::read(path).map_err(|e| match e {
        gguf::GgufError::Io { .. } => Failure::new(exit::NO_MODEL, e.into()),
        _ => Failure::new(exit::BAD_MODEL, anyhow::Error::new(e).context("not a usable model")),
    })?;
    let architecture = g
        .architecture()
        .ok_or_else(|| {
            Failure::new(exit::BAD_MODEL, anyhow::anyhow!("{}: no general.architecture in the header", path.display()))
        })?
        .to_string();
    if g.tensors.is_empty() {
        return Err(Failure::new(exit::BAD_MODEL, anyhow::anyhow!("{}: the file declares no tensors", path.display())));
    }
    let pooled = g.arch_u64("pooling_type").is_some_and(|p| p > 0);
    Ok(ModelFacts { architecture, pooled })
}

fn kv_type(name: &str) -> Option<KvCacheType> {
    match name {
        "q8_0" => Some(KvCacheType::Q8_0),
        "q4_0" => Some(KvCacheType::Q4_0),
        "f16" => Some(KvCacheType::F16),
        _ => None,
    }
}

/// The worker: listen at once, load, serve until SIGTERM. Returns the exit status.
pub fn run(args: Args) -> i32 {
    match run_inner(args) {
        Ok(()) => 0,
        Err(f) => {
            tracing::error!("{:#}", f.error);
            eprintln!("aither-infer: {:#}", f.error);
            f.code
        }
    }
}

fn run_inner(args: Args) -> Result<(), Failure> {
    let s = settings(args)?;
    let facts = check_model(&s.model)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::ENGINE, e.into()))?;
    rt.block_on(serve(s, facts))
}

async fn serve(s: Settings, facts: ModelFacts) -> Result<(), Failure> {
    let notifier = Notifier::from_env();
    let front = aither_http::Front::new(s.limits);
    let state = AppState::new(s.alias.clone(), front.stats().clone());
    let _ = state.names.set((s.aliases.clone(), s.tags.clone()));
    state.slots_endpoint.store(s.slots_endpoint, std::sync::atomic::Ordering::Relaxed);
    let policy = aither_http::guard::Policy { hosts: HostPolicy::new(&s.allow_hosts), limits: s.limits };
    let app = aither_http::guard::apply(server::router(state.clone()), policy);
    let listener = crate::listen::bind(&s.listen).await.map_err(|e| Failure::new(exit::CANNOT_LISTEN, e))?;
    tracing::info!("listening on {}; loading {} ({})", s.listen, s.model.display(), facts.architecture);
    notifier.notify(&format!("STATUS=loading {}", s.model.display()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move { front.serve(listener, app, stop_rx).await });

    let loaded = tokio::task::spawn_blocking({
        let s = s.clone();
        move || load(&s, &facts)
    })
    .await
    .map_err(|e| Failure::new(exit::ENGINE, anyhow::anyhow!("the loading task failed: {e}")))?;
    let ready = match loaded {
        Ok(r) => r,
        Err(f) => {
            let _ = state.failed.set(format!("{:#}", f.error));
            let _ = stop_tx.send(true);
            let _ = server.await;
            return Err(f);
        }
    };
    let summary = format!(
        "serving {} on {}: {} tokens of context per request, {} parallel, {} threads{}; {}",
        s.alias,
        s.listen,
        ready.engine.seq_ctx,
        ready.engine.parallel,
        s.threads,
        if ready.engine.embeddings { ", embeddings" } else { "" },
        ready.backends.summary()
    );
    let _ = state.ready.set(ready);
    tracing::info!("{summary}");
    notifier.notify(&format!("READY=1\nSTATUS={summary}"));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::new(exit::ENGINE, e.into()))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure::new(exit::ENGINE, e.into()))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        r = server => {
            return Err(Failure::new(exit::CANNOT_LISTEN, anyhow::anyhow!("the HTTP server stopped: {r:?}")));
        }
    }
    notifier.notify("STOPPING=1");
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    if let Listen::Unix(p) = &s.listen {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// Load the model and start the engine (blocking: minutes for a large model).
fn load(s: &Settings, facts: &ModelFacts) -> Result<Ready, Failure> {
    let t0 = Instant::now();
    let modules = crate::backends::module_dir(s.backends_dir.as_deref());
    crate::backends::load(&modules).map_err(|e| Failure::new(exit::ENGINE, anyhow::anyhow!(e)))?;
    let backend = Arc::new(
        LlamaBackend::init().map_err(|e| Failure::new(exit::ENGINE, anyhow::anyhow!("llama.cpp backend: {e}")))?,
    );
    let params = LlamaModelParams::default().with_n_gpu_layers(s.gpu_layers).with_use_mmap(true);
    if s.tensor_split.len() > 1 {
        tracing::info!(
            "layers per GPU {:?}: llama.cpp places them in proportion to each GPU's free memory",
            s.tensor_split
        );
    }
    let model = LlamaModel::load_from_file(&backend, &s.model, &params).map_err(|e| {
        Failure::new(exit::BAD_MODEL, anyhow::anyhow!("{}: llama.cpp could not load the model: {e}", s.model.display()))
    })?;
    let model = Arc::new(model);
    let embeddings = s.embeddings.unwrap_or(facts.pooled);
    if s.context_shift && !can_shift(&model) {
        return Err(Failure::new(
            exit::USAGE,
            anyhow::anyhow!(
                "--context-shift: {} keeps positions llama.cpp cannot shift (a recurrent or multi-section RoPE model)",
                s.model.display()
            ),
        ));
    }
    if let (Some(p), false) = (s.pooling, embeddings) {
        return Err(Failure::new(
            exit::USAGE,
            anyhow::anyhow!(
                "--pooling {p:?}: {} is not served as an embedding model (add --embeddings)",
                s.model.display()
            ),
        ));
    }
    let n_ctx_train = model.n_ctx_train();
    let ctx = if n_ctx_train > 0 && s.ctx > n_ctx_train && !embeddings {
        tracing::warn!("--ctx {} is above the {n_ctx_train} tokens the model was trained on", s.ctx);
        s.ctx
    } else if embeddings && n_ctx_train > 0 {
        s.ctx.min(n_ctx_train)
    } else {
        s.ctx
    };
    let vocab = model.vocab();
    let bos = vocab.bos();
    let text_of = |t| vocab.text(t).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    let (bos_text, eos_text) = (text_of(bos), text_of(vocab.eos()));
    let add_bos = vocab.should_add_bos();
    let template = chat_template(s, &model, &bos_text, &eos_text)?;
    if embeddings && s.cache_ram_bytes > 0 {
        tracing::warn!("--cache-ram: an embedding model keeps no prompts (each input is read once); not used");
    }
    let batch = if embeddings { ctx } else { s.batch.min(ctx) };
    let cfg = EngineConfig {
        threads: i32::try_from(s.threads).unwrap_or(1),
        n_ctx: ctx,
        kv_unified: s.kv_unified || embeddings,
        parallel: s.parallel,
        n_batch: batch,
        n_ubatch: if embeddings { batch } else { batch.min(512) },
        kv_type: s.kv_cache_type.as_deref().and_then(kv_type),
        embeddings,
        pooling: s.pooling.map(Pooling::llama),
        context_shift: s.context_shift,
        cache_ram_bytes: if embeddings { 0 } else { usize::try_from(s.cache_ram_bytes).unwrap_or(usize::MAX) },
    };
    let (n_params, size_bytes) = (model.n_params(), model.size());
    let engine =
        Engine::start(backend, model.clone(), cfg).map_err(|e| Failure::new(exit::ENGINE, anyhow::anyhow!(e)))?;
    tracing::info!("loaded in {:.2} s", t0.elapsed().as_secs_f64());
    let backends = crate::backends::describe();
    for d in &backends.devices {
        tracing::info!("device {} ({}, {}): {}", d.name, d.backend, d.kind, d.description);
    }
    tracing::info!(
        "llama.cpp: CPU variant {} ({}); modules {}",
        backends.cpu_variant.as_deref().unwrap_or("-"),
        backends.system_info,
        backends.modules.join(", ")
    );
    Ok(Ready {
        engine,
        model,
        template,
        bos_text,
        add_bos,
        n_params,
        size_bytes,
        model_path: s.model.display().to_string(),
        backends,
    })
}

/// Whether llama.cpp can move this model's KV cells to new positions (what
/// `llama_memory_can_shift` says): not recurrent or hybrid, one position per embedding.
fn can_shift(model: &LlamaModel) -> bool {
    use llama_cpp_2::model::RopeType;
    !model.is_recurrent()
        && !model.is_hybrid()
        && !matches!(model.rope_type(), Some(RopeType::MRope | RopeType::IMRope | RopeType::Vision))
}

/// `--pooling`: llama.cpp's pooling types that give embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooling {
    None,
    Mean,
    Cls,
    Last,
}

impl Pooling {
    fn llama(self) -> LlamaPoolingType {
        match self {
            Pooling::None => LlamaPoolingType::None,
            Pooling::Mean => LlamaPoolingType::Mean,
            Pooling::Cls => LlamaPoolingType::Cls,
            Pooling::Last => LlamaPoolingType::Last,
        }
    }
}

/// The chat template in force: `--chat-template` (a built-in name, or Jinja text),
/// `--chat-template-file`, else the model's own. One given on the command line that does not
/// compile stops the worker; the model's own falls back to ChatML with a warning.
fn chat_template(s: &Settings, model: &LlamaModel, bos: &str, eos: &str) -> Result<ChatTemplate, Failure> {
    let usage = |what: String| Failure::new(exit::USAGE, anyhow::anyhow!(what));
    let given = match (&s.chat_template, &s.chat_template_file) {
        (Some(t), _) if t == "chatml" => Some(("--chat-template".to_string(), CHATML.to_string())),
        (Some(t), _) if crate::template::builtin_names().contains(t) => {
            return ChatTemplate::builtin(t).map_err(|e| usage(format!("--chat-template: {e}")));
        }
        (Some(t), _) => Some(("--chat-template".to_string(), t.clone())),
        (None, Some(path)) => Some((
            format!("--chat-template-file {}", path.display()),
            std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--chat-template-file {}: {e}", path.display())))?,
        )),
        (None, None) => None,
    };
    if let Some((option, source)) = given {
        return ChatTemplate::new(&source, bos, eos).map_err(|e| {
            let names = crate::template::builtin_names().join(", ");
            usage(format!("{option}: {e} (a built-in template is one of: {names})"))
        });
    }
    let own = model.chat_template(None).ok().and_then(|t| t.to_string().ok());
    match own.as_deref().map(|src| ChatTemplate::new(src, bos, eos)) {
        Some(Ok(t)) => Ok(t),
        Some(Err(e)) => {
            tracing::warn!("the model's {e}; using ChatML");
            ChatTemplate::new(CHATML, bos, eos).map_err(|e| Failure::new(exit::ENGINE, anyhow::anyhow!(e)))
        }
        None => ChatTemplate::new(CHATML, bos, eos).map_err(|e| Failure::new(exit::ENGINE, anyhow::anyhow!(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse_or_say_what_is_expected() {
        assert_eq!(Listen::parse("unix:/run/a.sock"), Ok(Listen::Unix("/run/a.sock".into())));
        assert_eq!(Listen::parse("tcp:127.0.0.1:8081"), Ok(Listen::Tcp("127.0.0.1:8081".into())));
        assert_eq!(Listen::parse("tcp:[::1]:80"), Ok(Listen::Tcp("[::1]:80".into())));
        assert!(Listen::parse("tcp:host").expect_err("no port").contains("HOST:PORT"));
        assert!(Listen::parse("tcp:h:99999").expect_err("bad port").contains("not a port"));
        assert!(Listen::parse("/run/a.sock").expect_err("no scheme").contains("unix:PATH"));
    }

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["aither-infer", "--listen", "unix:/tmp/x.sock"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).expect("args")
    }

    #[test]
    fn flags_and_defaults() {
        let s = settings(args(&["--model", "/m/qwen.gguf", "--threads", "3", "--parallel", "4"])).expect("settings");
        assert_eq!((s.alias.as_str(), s.threads, s.parallel, s.ctx, s.gpu_layers), ("qwen", 3, 4, 4096, 0));
        let e = settings(args(&["--model", "/m/q.gguf", "--ctx", "0"])).expect_err("zero ctx");
        assert_eq!(e.code, exit::USAGE);
        assert_eq!(settings(args(&[])).expect_err("no model").code, exit::USAGE);
    }

    #[test]
    fn a_plan_gives_the_model_file_and_its_settings_and_flags_still_win() {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/profiles/profile-1gpu.json");
        let profile = aither_plan::data::read_profile(Path::new(fixture)).expect("profile");
        let (presets, catalog) = aither_plan::data::load(None).expect("data");
        let plan = aither_plan::plan::plan(&profile, &presets, &catalog, &Default::default()).expect("plan");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plan.json");
        std::fs::write(&path, serde_json::to_string(&plan).expect("json")).expect("write");
        let m = &plan.models[0];
        let p = path.display().to_string();
        let s = settings(args(&["--plan", &p, "--plan-model", &m.name, "--model-dir", "/m"])).expect("settings");
        assert_eq!(s.model, local_file(Path::new("/m"), &m.url));
        assert_eq!((s.alias.as_str(), s.ctx, s.gpu_layers), (m.name.as_str(), m.context, m.gpu_layers));
        assert_eq!((s.threads, s.parallel), (plan.inference.threads, plan.inference.parallel));
        assert_eq!(s.kv_cache_type.as_deref(), Some(m.kv_cache_type.name()));
        let s =
            settings(args(&["--plan", &p, "--plan-model", &m.name, "--threads", "1", "--ctx", "512"])).expect("flags");
        assert_eq!((s.threads, s.ctx), (1, 512));
        let e = settings(args(&["--plan", &p, "--plan-model", "nope"])).expect_err("unknown model");
        assert!(format!("{:#}", e.error).contains(&m.name), "names the models there are: {:#}", e.error);
    }

    #[test]
    fn a_missing_model_is_not_a_bad_model() {
        let e = check_model(Path::new("/nonexistent/model.gguf")).expect_err("missing");
        assert_eq!(e.code, exit::NO_MODEL);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bad.gguf");
        std::fs::write(&p, b"GGUX\x03\0\0\0").expect("write");
        let e = check_model(&p).expect_err("bad magic");
        assert_eq!(e.code, exit::BAD_MODEL);
        assert!(format!("{:#}", e.error).contains("not a GGUF file"), "{:#}", e.error);
    }
}
