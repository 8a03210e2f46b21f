//! The engine: one thread that owns the llama.cpp context and runs continuous batching.
//!
//! Each request gets a *slot*: its own sequence id in one unified KV cache. Every turn of
//! the loop builds one batch from all busy slots: one token for each slot that is
//! generating, then prompt tokens of slots still reading their prompt (chunked, up to the
//! batch size), so a long prompt never stalls the streams already running. After one
//! `llama_decode`, each slot whose last position produced logits samples its next token
//! with its own sampler chain.
//!
//! - **Cancellation**: a slot's events go to a channel whose receiver belongs to the HTTP
//!   response. A client that disconnects drops it; the loop sees the channel closed before
//!   the next batch and frees the sequence's KV cells at once.
//! - **Prefix reuse**: a slot keeps the tokens of its last request in the cache. A new
//!   request goes to the free slot sharing the longest prefix with it and only the rest is
//!   decoded (multi-turn chats re-read only the new turn).
//! - **The KV cache**: by default each slot has its own stream of `n_ctx / parallel` cells,
//!   as llama-server does with `--parallel`, so a token's attention reads only its own
//!   sequence. With `kv_unified` (and always with one slot) all slots share the `n_ctx`
//!   cells: a request may use the whole context, at the price of attention over every
//!   slot's cells. A request there *reserves* the cells it may come to hold (its prompt
//!   plus its token budget) and is admitted only when the reservations of the requests
//!   running leave room for it; until then it waits in the queue. When a decode finds no
//!   room, idle slots' cached prefixes are evicted; a running request is never ended to
//!   make room for another.
//!
//! Requests that cannot fit (prompt plus `max_tokens` above a slot's context) are refused
//! before they reach the engine (see [`Engine::seq_ctx`]).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::api::Generation;

mod batch;
mod sampling;
mod store;
mod text;

use batch::Loop;

/// How the context is made.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub threads: i32,
    /// KV cache cells, all slots together.
    pub n_ctx: u32,
    /// One cache shared by all slots instead of a stream per slot.
    pub kv_unified: bool,
    pub parallel: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub kv_type: Option<KvCacheType>,
    /// An embedding model: pooled embeddings, no generation.
    pub embeddings: bool,
    /// How token vectors are pooled; None: the model's own way.
    pub pooling: Option<LlamaPoolingType>,
    /// A slot whose context is full discards half of its older tokens and goes on.
    pub context_shift: bool,
    /// Bytes of host memory for prompts pushed out of their slots (0: none kept).
    pub cache_ram_bytes: usize,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token.
    Stop,
    /// The stop sequence of this index in the request's `stop`.
    Word(usize),
    /// `max_tokens`, or the context is full.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop | Finish::Word(_) => "stop",
            Finish::Length => "length",
        }
    }
}

/// What a generating request hears back.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text ready to send (whole UTF-8 characters, stop sequences held back until ruled out).
    Text(String),
    /// A sampled token's log-probability, before the text it adds (when asked for).
    Logprob(TokenLogprob),
    /// A sampled token with the request's counts and timings so far, before the text it adds
    /// (when asked for: llama-server's native stream reports each token).
    Token(Sampled),
    /// How far the prompt has been read (when asked for: llama-server's `return_progress`).
    Progress(Progress),
    Done(Done),
    Error(String),
}

/// How a request ended, with its counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Done {
    pub finish: Finish,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV cells were reused rather than computed.
    pub cached_tokens: usize,
    pub timings: Timings,
    /// The slot (KV sequence) that ran it.
    pub slot: usize,
    /// Its context was shifted (older tokens discarded) to go on.
    pub truncated: bool,
}

/// Prompt processing so far, as llama-server's `prompt_progress` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The prompt's tokens.
    pub total: usize,
    /// Of them, reused from the cache.
    pub cache: usize,
    /// Of them, in the slot's KV cells now (the cached ones included).
    pub processed: usize,
    /// Since the request was admitted.
    pub time_ms: u64,
}

/// One sampled token as llama-server's stream reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampled {
    pub id: i32,
    /// Tokens sampled so far, this one included.
    pub n_decoded: usize,
    pub slot: usize,
    /// Prompt tokens reused from the cache.
    pub cached: usize,
    pub timings: Timings,
}

/// Where a request's time went, in milliseconds: from its admission to its first sampled
/// token (the prompt), and from there to its end (the rest).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub prompt_ms: f64,
    pub predicted_ms: f64,
}

/// One token with its log-probability under the model, and the likeliest alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub id: i32,
    /// The token's bytes (a piece of a character is not valid UTF-8 alone).
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// (id, bytes, logprob), likeliest first.
    pub top: Vec<(i32, Vec<u8>, f32)>,
}

/// Work for the engine.
#[derive(Debug)]
pub enum Job {
    Generate {
        prompt: Vec<LlamaToken>,
        generation: Box<Generation>,
        events: tmpsc::UnboundedSender<Event>,
    },
    /// Per input, its pooled vector (or, pooling none, a vector per token).
    Embed {
        inputs: Vec<Vec<LlamaToken>>,
        reply: oneshot::Sender<Result<Vec<Vec<Vec<f32>>>, String>>,
    },
}

impl Job {
    fn abandoned(&self) -> bool {
        match self {
            Job::Generate { events, .. } => events.is_closed(),
            Job::Embed { reply, .. } => reply.is_closed(),
        }
    }
}

/// Figures the HTTP side reads for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens taken from another slot's cells instead of being decoded.
    pub shared_prefix_tokens: AtomicU64,
    /// Prompt tokens restored from the prompt store instead of being decoded.
    pub restored_prompt_tokens: AtomicU64,
    /// Prompts in the prompt store, and their bytes.
    pub prompt_store_entries: AtomicUsize,
    pub prompt_store_bytes: AtomicUsize,
    /// Tokens sampled under a grammar, and those for which the whole vocabulary was masked.
    pub constrained_tokens: AtomicU64,
    pub grammar_full_masks: AtomicU64,
    /// Context shifts (`--context-shift`).
    pub context_shifts: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Nanoseconds spent in `llama_decode`.
    pub decode_nanos: AtomicU64,
    /// `llama_decode` calls (batches).
    pub decode_calls: AtomicU64,
    pub requests_done: AtomicU64,
    pub requests_cancelled: AtomicU64,
    /// Jobs submitted and not yet given a slot.
    pub queued: AtomicUsize,
    pub slots_busy: AtomicUsize,
    pub kv_cells_used: AtomicUsize,
    /// (when, generated tokens so far), the last ten seconds, for the tokens-per-second gauge.
    pub recent: Mutex<VecDeque<(Instant, u64)>>,
    /// Each slot as the last turn of the loop left it (`/slots`).
    pub slots: Mutex<Vec<SlotState>>,
}

/// One slot, as `/slots` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotState {
    pub id: usize,
    pub processing: bool,
    /// Tokens whose KV cells the slot holds (its request's, or the prefix it keeps).
    pub n_cached: usize,
    /// The running request's prompt tokens and tokens generated so far.
    pub n_prompt: usize,
    pub n_decoded: usize,
}

impl Stats {
    /// Tokens generated per second over the last ten seconds.
    pub fn tokens_per_second(&self) -> f64 {
        let recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let Some(&(t0, n0)) = recent.iter().find(|(t, _)| now.duration_since(*t) <= RATE_WINDOW) else { return 0.0 };
        let n1 = self.generated_tokens.load(Ordering::Relaxed);
        let secs = now.duration_since(t0).as_secs_f64().max(RATE_WINDOW.as_secs_f64() / 10.0);
        #[allow(clippy::cast_precision_loss)]
        let tokens = n1.saturating_sub(n0) as f64;
        tokens / secs
    }

    /// One `llama_decode` call that began at `t0`.
    fn record_decode(&self, t0: Instant) {
        self.decode_calls.fetch_add(1, Ordering::Relaxed);
        self.decode_nanos.fetch_add(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn record_rate(&self) {
        let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW) {
            recent.pop_front();
        }
        if recent.back().is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_millis(100)) {
            recent.push_back((now, self.generated_tokens.load(Ordering::Relaxed)));
        }
    }
}

const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The handle the HTTP side holds.
#[derive(Debug, Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    pub stats: Arc<Stats>,
    /// KV cache cells, all slots together.
    pub n_ctx: usize,
    /// The most tokens one request may hold (prompt and generated).
    pub seq_ctx: usize,
    pub parallel: usize,
    pub embeddings: bool,
    /// `--pooling none`: a vector per token, which OpenAI's route cannot carry.
    pub per_token: bool,
    /// `--context-shift`: requests may ask for more tokens than their slot holds.
    pub context_shift: bool,
    alive: Arc<AtomicBool>,
}

impl Engine {
    /// Create the context and start the engine thread. Errors are llama.cpp's refusal to
    /// make the context (memory, unsupported cache type).
    pub fn start(backend: Arc<LlamaBackend>, model: Arc<LlamaModel>, cfg: EngineConfig) -> Result<Engine, String> {
        let (jobs, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let alive = Arc::new(AtomicBool::new(true));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (thread_stats, thread_alive, thread_cfg) = (stats.clone(), alive.clone(), cfg.clone());
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let ctx = match make_context(&backend, &model, &thread_cfg) {
                    Ok(ctx) => ctx,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let n_ctx = usize::try_from(ctx.n_ctx()).unwrap_or(usize::MAX);
                let _ = ready_tx.send(Ok(n_ctx));
                let mut lp = Loop::new(&model, ctx, &thread_cfg, thread_stats);
                lp.run(&rx);
                thread_alive.store(false, Ordering::Release);
            })
            .map_err(|e| format!("cannot start the engine thread: {e}"))?;
        let n_ctx = ready_rx.recv().map_err(|_| "the engine thread ended while starting".to_string())??;
        let parallel = usize::try_from(cfg.parallel.max(1)).unwrap_or(1);
        Ok(Engine {
            jobs,
            stats,
            n_ctx,
            seq_ctx: seq_ctx(n_ctx, parallel, cfg.kv_unified),
            parallel,
            embeddings: cfg.embeddings,
            per_token: cfg.pooling == Some(LlamaPoolingType::None),
            context_shift: cfg.context_shift,
            alive,
        })
    }

    /// Queue a job; false when the engine is gone. It counts as queued until the engine
    /// gives it a slot (or drops it): counted before it is sent, so the engine never sees a
    /// job the count does not hold yet.
    pub fn submit(&self, job: Job) -> bool {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if self.jobs.send(job).is_ok() {
            true
        } else {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

fn make_context<'m>(
    backend: &LlamaBackend,
    model: &'m LlamaModel,
    cfg: &EngineConfig,
) -> Result<LlamaContext<'m>, String> {
    let mut p = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cfg.n_ctx))
        .with_n_batch(cfg.n_batch)
        .with_n_ubatch(cfg.n_ubatch)
        .with_n_seq_max(cfg.parallel.max(1))
        .with_n_threads(cfg.threads)
        .with_n_threads_batch(cfg.threads)
        .with_kv_unified(cfg.kv_unified || cfg.parallel <= 1)
        .with_embeddings(cfg.embeddings);
    if let Some(pooling) = cfg.pooling {
        p = p.with_pooling_type(pooling);
    }
    if let Some(t) = cfg.kv_type {
        p = p.with_type_k(t).with_type_v(t);
    }
    model.new_context(backend, p).map_err(|e| {
        format!("llama.cpp could not create a context of {} tokens for {} sequences: {e}", cfg.n_ctx, cfg.parallel)
    })
}

/// The cells one sequence may hold: its own stream's share, or the whole shared cache.
fn seq_ctx(n_ctx: usize, parallel: usize, unified: bool) -> usize {
    if unified || parallel <= 1 {
        n_ctx
    } else {
        n_ctx / parallel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_gets_its_share_of_the_cache_unless_it_is_shared() {
        assert_eq!(seq_ctx(8192, 8, false), 1024);
        assert_eq!(seq_ctx(8192, 8, true), 8192);
        assert_eq!(seq_ctx(4096, 1, false), 4096);
    }
}
