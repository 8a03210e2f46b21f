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

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::api::Generation;

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
    Done {
        finish: Finish,
        prompt_tokens: usize,
        completion_tokens: usize,
        /// Prompt tokens whose KV cells were reused rather than computed.
        cached_tokens: usize,
        timings: Timings,
    },
    Error(String),
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
    Generate { prompt: Vec<LlamaToken>, generation: Generation, events: tmpsc::UnboundedSender<Event> },
    Embed { inputs: Vec<Vec<LlamaToken>>, reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>> },
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
    if let Some(t) = cfg.kv_type {
        p = p.with_type_k(t).with_type_v(t);
    }
    model.new_context(backend, p).map_err(|e| {
        format!("llama.cpp could not create a context of {} tokens for {} sequences: {e}", cfg.n_ctx, cfg.parallel)
    })
}

/// A request being served.
struct Active {
    prompt: Vec<LlamaToken>,
    sampler: LlamaSampler,
    events: tmpsc::UnboundedSender<Event>,
    /// Tokens still to generate at most.
    budget: usize,
    /// Cells this request may come to hold: its prompt plus its budget.
    reserved: usize,
    generated: usize,
    /// Sampled, not yet decoded: the next token this slot feeds.
    next: Option<LlamaToken>,
    /// Bytes of a character not yet complete.
    partial: Vec<u8>,
    /// Text held back because it could be the start of a stop sequence.
    held: String,
    stop: Vec<String>,
    /// Alternatives to report per token; None: no log-probabilities.
    logprobs: Option<usize>,
    /// Write special tokens as text.
    special: bool,
    /// Prompt tokens reused from the cache.
    cached: usize,
    admitted: Instant,
    first_token: Option<Instant>,
}

struct Slot {
    seq: i32,
    /// Tokens whose KV cells this sequence holds, in position order.
    cached: Vec<LlamaToken>,
    active: Option<Active>,
    /// Index in the current batch whose logits this slot samples from.
    logits_at: Option<i32>,
}

struct Loop<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// Cells one sequence may hold.
    n_ctx: usize,
    /// All slots share one cache of this many cells (`kv_unified` with several slots):
    /// requests are admitted by their reservations. `None`: a stream per slot.
    shared_cells: Option<usize>,
    stats: Arc<Stats>,
    embeddings: bool,
    piece: Vec<u8>,
}

impl<'m> Loop<'m> {
    fn new(model: &'m LlamaModel, ctx: LlamaContext<'m>, cfg: &EngineConfig, stats: Arc<Stats>) -> Loop<'m> {
        let n_batch = usize::try_from(cfg.n_batch).unwrap_or(512);
        let parallel = i32::try_from(cfg.parallel.max(1)).unwrap_or(1);
        let cells = usize::try_from(ctx.n_ctx()).unwrap_or(usize::MAX);
        let n_ctx = seq_ctx(cells, usize::try_from(parallel).unwrap_or(1), cfg.kv_unified);
        let shared_cells = (cfg.kv_unified && parallel > 1).then_some(cells);
        let slots = (0..parallel).map(|seq| Slot { seq, cached: vec![], active: None, logits_at: None }).collect();
        Loop {
            model,
            ctx,
            slots,
            queue: VecDeque::new(),
            batch: LlamaBatch::new(n_batch, parallel),
            n_batch,
            n_ctx,
            shared_cells,
            stats,
            embeddings: cfg.embeddings,
            piece: Vec::with_capacity(64),
        }
    }

    fn busy(&self) -> bool {
        self.slots.iter().any(|s| s.active.is_some())
    }

    fn run(&mut self, rx: &mpsc::Receiver<Job>) {
        loop {
            // Idle: wait for work. Busy: take what has arrived and carry on.
            if !self.busy() && self.queue.is_empty() {
                match rx.recv() {
                    Ok(job) => self.queue.push_back(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = rx.try_recv() {
                self.queue.push_back(job);
            }
            self.drop_abandoned();
            self.admit();
            if self.busy() {
                self.publish();
                self.step();
            }
            self.publish();
        }
    }

    /// Queued jobs whose client has gone, and busy slots whose client has gone.
    fn drop_abandoned(&mut self) {
        let before = self.queue.len();
        self.queue.retain(|j| !j.abandoned());
        let mut cancelled = before - self.queue.len();
        self.stats.queued.fetch_sub(cancelled, Ordering::Relaxed);
        for slot in &mut self.slots {
            if slot.active.as_ref().is_some_and(|a| a.events.is_closed()) {
                slot.active = None;
                clear_seq(&mut self.ctx, slot);
                cancelled += 1;
            }
        }
        self.stats.requests_cancelled.fetch_add(cancelled as u64, Ordering::Relaxed);
    }

    /// Give queued jobs free slots; embedding jobs run at once.
    fn admit(&mut self) {
        while let Some(job) = self.queue.pop_front() {
            match job {
                Job::Embed { inputs, reply } => {
                    self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                    let result = self.embed(&inputs);
                    self.stats.requests_done.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(result);
                }
                Job::Generate { prompt, generation, events } => {
                    let fits = self.fits_shared_cache(reservation(prompt.len(), generation.max_tokens, self.n_ctx));
                    let Some(i) = self.best_free_slot(&prompt).filter(|_| fits) else {
                        self.queue.push_front(Job::Generate { prompt, generation, events });
                        break;
                    };
                    self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                    self.start(i, prompt, &generation, events);
                }
            }
        }
    }

    /// Whether a request reserving `cells` fits beside the reservations of those running
    /// (always, with a stream per slot: each slot's own cells are checked at the door).
    fn fits_shared_cache(&self, cells: usize) -> bool {
        let Some(total) = self.shared_cells else { return true };
        let reserved: usize = self.slots.iter().filter_map(|s| s.active.as_ref()).map(|a| a.reserved).sum();
        reserved.saturating_add(cells) <= total
    }

    /// The free slot whose cache shares the longest prefix with `prompt`.
    fn best_free_slot(&self, prompt: &[LlamaToken]) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .max_by_key(|(i, s)| (common_prefix(&s.cached, prompt), std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    }

    fn start(&mut self, i: usize, prompt: Vec<LlamaToken>, g: &Generation, events: tmpsc::UnboundedSender<Event>) {
        let sampler = match sampler(self.model, g) {
            Ok(s) => s,
            Err(e) => {
                let _ = events.send(Event::Error(e));
                return;
            }
        };
        let slot = &mut self.slots[i];
        // Keep the shared prefix, but always decode at least the prompt's last token: its
        // logits give the first sampled token.
        let keep = if g.cache_prompt { common_prefix(&slot.cached, &prompt) } else { 0 };
        let keep = keep.min(prompt.len().saturating_sub(1));
        if keep < slot.cached.len() {
            let _ = self.ctx.clear_kv_cache_seq(
                Some(seq_u32(slot.seq)),
                Some(u32::try_from(keep).unwrap_or(u32::MAX)),
                None,
            );
            slot.cached.truncate(keep);
        }
        let room = self.n_ctx.saturating_sub(prompt.len());
        let budget = g.max_tokens.map_or(room, |m| m.min(room));
        let reserved = reservation(prompt.len(), g.max_tokens, self.n_ctx);
        slot.active = Some(Active {
            reserved,
            sampler,
            prompt,
            events,
            budget,
            generated: 0,
            next: None,
            partial: vec![],
            held: String::new(),
            stop: g.stop.clone(),
            logprobs: g.logprobs,
            special: g.special,
            cached: keep,
            admitted: Instant::now(),
            first_token: None,
        });
    }

    fn publish(&self) {
        self.stats.slots_busy.store(self.slots.iter().filter(|s| s.active.is_some()).count(), Ordering::Relaxed);
        self.stats.kv_cells_used.store(self.slots.iter().map(|s| s.cached.len()).sum(), Ordering::Relaxed);
        let mut states = self.stats.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        states.clear();
        states.extend(self.slots.iter().enumerate().map(|(id, s)| SlotState {
            id,
            processing: s.active.is_some(),
            n_cached: s.cached.len(),
            n_prompt: s.active.as_ref().map_or(0, |a| a.prompt.len()),
            n_decoded: s.active.as_ref().map_or(0, |a| a.generated),
        }));
    }

    /// One batch: a token for every generating slot, then prompt chunks.
    fn step(&mut self) {
        loop {
            self.batch.clear();
            let mut added: Vec<(usize, usize)> = Vec::with_capacity(self.slots.len());
            let mut prompt_tokens = 0u64;
            for (i, slot) in self.slots.iter_mut().enumerate() {
                slot.logits_at = None;
                let Some(a) = &slot.active else { continue };
                if let Some(tok) = a.next {
                    let pos = position(slot.cached.len());
                    if self.batch.add(tok, pos, &[slot.seq], true).is_ok() {
                        slot.logits_at = Some(self.batch.n_tokens() - 1);
                        added.push((i, 1));
                    }
                }
            }
            for (i, slot) in self.slots.iter_mut().enumerate() {
                let Some(a) = &slot.active else { continue };
                if a.next.is_some() {
                    continue;
                }
                let from = slot.cached.len();
                let room = self.n_batch.saturating_sub(usize::try_from(self.batch.n_tokens()).unwrap_or(0));
                let take = (a.prompt.len() - from).min(room);
                if take == 0 {
                    continue;
                }
                for (k, tok) in a.prompt[from..from + take].iter().enumerate() {
                    let pos = position(from + k);
                    let last = from + k + 1 == a.prompt.len();
                    let _ = self.batch.add(*tok, pos, &[slot.seq], last);
                    if last {
                        slot.logits_at = Some(self.batch.n_tokens() - 1);
                    }
                }
                prompt_tokens += take as u64;
                added.push((i, take));
            }
            if added.is_empty() {
                return;
            }
            let t0 = Instant::now();
            let result = self.ctx.decode(&mut self.batch);
            self.stats.record_decode(t0);
            match result {
                Ok(()) => {
                    self.stats.prompt_tokens.fetch_add(prompt_tokens, Ordering::Relaxed);
                    for (i, n) in added {
                        let slot = &mut self.slots[i];
                        let a = slot.active.as_mut().expect("busy slot");
                        match a.next.take() {
                            Some(tok) => slot.cached.push(tok),
                            None => {
                                let from = slot.cached.len();
                                slot.cached.extend_from_slice(&a.prompt[from..from + n]);
                            }
                        }
                    }
                    self.sample_all();
                    return;
                }
                Err(DecodeError::NoKvCacheSlot) => {
                    if !self.make_room() {
                        self.fail_all("the KV cache is full and nothing can be freed");
                        return;
                    }
                }
                Err(e) => {
                    self.fail_all(&format!("llama_decode failed: {e}"));
                    return;
                }
            }
        }
    }

    /// Free cells for the next try: idle slots' cached prefixes. A running request's cells
    /// are never taken (admission by reservation leaves them room); false when nothing is
    /// left to free.
    fn make_room(&mut self) -> bool {
        let mut freed = false;
        for slot in &mut self.slots {
            if slot.active.is_none() && !slot.cached.is_empty() {
                clear_seq(&mut self.ctx, slot);
                freed = true;
            }
        }
        freed
    }

    fn fail_all(&mut self, why: &str) {
        tracing::error!("{why}");
        for i in 0..self.slots.len() {
            if let Some(a) = self.slots[i].active.take() {
                let _ = a.events.send(Event::Error(why.to_string()));
            }
            let slot = &mut self.slots[i];
            clear_seq(&mut self.ctx, slot);
        }
    }

    fn sample_all(&mut self) {
        let mut generated = 0u64;
        for i in 0..self.slots.len() {
            let Some(idx) = self.slots[i].logits_at else { continue };
            let slot = &mut self.slots[i];
            let a = slot.active.as_mut().expect("busy slot");
            let tok = a.sampler.sample(&self.ctx, idx);
            a.first_token.get_or_insert_with(Instant::now);
            generated += 1;
            if let Some(top) = a.logprobs {
                let lp = logprob(self.model, self.ctx.get_logits_ith(idx), tok, top);
                let _ = a.events.send(Event::Logprob(lp));
            }
            if self.model.vocab().is_eog(tok) {
                self.finish(i, Finish::Stop);
                continue;
            }
            a.generated += 1;
            self.piece.clear();
            self.model.vocab().token_to_piece_into(tok, &mut self.piece, a.special, None);
            a.partial.extend_from_slice(&self.piece);
            if let Some(word) = a.push_text() {
                self.finish(i, Finish::Word(word));
            } else if a.generated >= a.budget || slot.cached.len() >= self.n_ctx {
                self.finish(i, Finish::Length);
            } else {
                a.next = Some(tok);
            }
        }
        self.stats.generated_tokens.fetch_add(generated, Ordering::Relaxed);
        self.stats.record_rate();
    }

    /// End slot `i`'s request: flush what it held and say why.
    fn finish(&mut self, i: usize, finish: Finish) {
        let Some(mut a) = self.slots[i].active.take() else { return };
        let mut rest = std::mem::take(&mut a.held);
        rest.push_str(&String::from_utf8_lossy(&a.partial));
        if !rest.is_empty() {
            let _ = a.events.send(Event::Text(rest));
        }
        let first = a.first_token.unwrap_or_else(Instant::now);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let _ = a.events.send(Event::Done {
            finish,
            prompt_tokens: a.prompt.len(),
            completion_tokens: a.generated,
            cached_tokens: a.cached,
            timings: Timings { prompt_ms: ms(first - a.admitted), predicted_ms: ms(first.elapsed()) },
        });
        self.stats.requests_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Pooled embeddings of each input, L2-normalized (as llama-server returns them).
    fn embed(&mut self, inputs: &[Vec<LlamaToken>]) -> Result<Vec<Vec<f32>>, String> {
        if !self.embeddings {
            return Err("this model does not produce embeddings".into());
        }
        let per_batch = self.slots.len();
        let mut out = Vec::with_capacity(inputs.len());
        let mut i = 0;
        while i < inputs.len() {
            self.batch.clear();
            let mut seqs = 0usize;
            let mut tokens = 0usize;
            while i + seqs < inputs.len() && seqs < per_batch {
                let input = &inputs[i + seqs];
                if seqs > 0 && tokens + input.len() > self.n_batch {
                    break;
                }
                for (pos, tok) in input.iter().enumerate() {
                    self.batch.add(*tok, position(pos), &[position(seqs)], true).map_err(|e| format!("batch: {e}"))?;
                }
                tokens += input.len();
                seqs += 1;
            }
            self.ctx.clear_kv_cache();
            let t0 = Instant::now();
            self.ctx.decode(&mut self.batch).map_err(|e| format!("llama_decode failed: {e}"))?;
            self.stats.record_decode(t0);
            self.stats.prompt_tokens.fetch_add(tokens as u64, Ordering::Relaxed);
            for s in 0..seqs {
                let v = self
                    .ctx
                    .embeddings_seq_ith(position(s))
                    .map_err(|_| "llama.cpp returned no pooled embedding".to_string())?;
                out.push(normalize(v));
            }
            i += seqs;
        }
        self.ctx.clear_kv_cache();
        Ok(out)
    }
}

impl Active {
    /// Move complete characters from `partial` to `held`, send what cannot be the start of
    /// a stop sequence; the index of the stop sequence that appeared, if one did (the text
    /// before it is sent).
    fn push_text(&mut self) -> Option<usize> {
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_some() => {
                // Not UTF-8 at all (a byte-fallback fragment that never completes): lossy.
                let s = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.held.push_str(&s);
                return self.release();
            }
            Err(e) => e.valid_up_to(),
        };
        let text = std::str::from_utf8(&self.partial[..valid]).expect("checked");
        self.held.push_str(text);
        self.partial.drain(..valid);
        self.release()
    }

    fn release(&mut self) -> Option<usize> {
        let found =
            self.stop.iter().enumerate().filter_map(|(k, s)| self.held.find(s.as_str()).map(|at| (at, k))).min();
        if let Some((at, word)) = found {
            // What follows the stop sequence is not sent, nor half a character after it.
            self.held.truncate(at);
            self.partial.clear();
            let text = std::mem::take(&mut self.held);
            if !text.is_empty() {
                let _ = self.events.send(Event::Text(text));
            }
            return Some(word);
        }
        let keep = self.stop.iter().map(|s| held_back(&self.held, s)).max().unwrap_or(0);
        let send = self.held.len() - keep;
        if send > 0 {
            let rest = self.held.split_off(send);
            let text = std::mem::replace(&mut self.held, rest);
            let _ = self.events.send(Event::Text(text));
        }
        None
    }
}

/// The longest tail of `text` that is a proper start of `stop` (bytes to hold back).
fn held_back(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

/// The cells one sequence may hold: its own stream's share, or the whole shared cache.
/// The cells a request may come to hold: its prompt and the tokens it may generate (the
/// rest of its slot's context when it gives no `max_tokens`).
fn reservation(prompt: usize, max_tokens: Option<usize>, seq_ctx: usize) -> usize {
    let room = seq_ctx.saturating_sub(prompt);
    prompt + max_tokens.map_or(room, |m| m.min(room))
}

fn seq_ctx(n_ctx: usize, parallel: usize, unified: bool) -> usize {
    if unified || parallel <= 1 {
        n_ctx
    } else {
        n_ctx / parallel
    }
}

/// A token position or sequence id for llama.cpp (contexts are far below `i32::MAX`).
fn position(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Sequence ids are 0..parallel.
fn seq_u32(seq: i32) -> u32 {
    u32::try_from(seq).unwrap_or(0)
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn clear_seq(ctx: &mut LlamaContext<'_>, slot: &mut Slot) {
    let _ = ctx.clear_kv_cache_seq(Some(seq_u32(slot.seq)), None, None);
    slot.cached.clear();
    slot.logits_at = None;
}

/// The sampler chain llama-server uses for the same options: logit biases, then the
/// grammar (before any cut of the candidates, so a valid token is always left), then
/// penalties and the sampling proper.
fn sampler(model: &LlamaModel, g: &Generation) -> Result<LlamaSampler, String> {
    let s = &g.sampling;
    let mut chain = Vec::with_capacity(8);
    if !g.logit_bias.is_empty() {
        let biases: Vec<LlamaLogitBias> =
            g.logit_bias.iter().map(|&(id, b)| LlamaLogitBias::new(LlamaToken::new(id), b)).collect();
        chain.push(LlamaSampler::logit_bias(model.n_vocab(), &biases));
    }
    if let Some(c) = &g.constraint {
        chain.push(c.sampler(model)?);
    }
    if s.presence_penalty != 0.0 || s.frequency_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(model.n_vocab(), 64, 1.0, s.frequency_penalty, s.presence_penalty));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if s.top_k > 0 {
            chain.push(LlamaSampler::top_k(s.top_k));
        }
        chain.push(LlamaSampler::top_p(s.top_p, 1));
        if s.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(s.min_p, 1));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        chain.push(LlamaSampler::dist(s.seed));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

/// The log-probability of `tok` under the model's logits and the `top` likeliest tokens.
fn logprob(model: &LlamaModel, logits: &[f32], tok: LlamaToken, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let bytes = |id: i32| model.vocab().token_to_piece(LlamaToken::new(id), true, None);
    let id = tok.0;
    let lp = |id: i32| usize::try_from(id).ok().and_then(|i| logits.get(i)).map_or(f32::NEG_INFINITY, |l| l - lse);
    let mut best: Vec<(i32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top || l > best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, b)| b >= l);
                best.insert(at, (i32::try_from(i).unwrap_or(i32::MAX), l));
                best.truncate(top);
            }
        }
    }
    TokenLogprob {
        id,
        bytes: bytes(id),
        logprob: lp(id),
        top: best.into_iter().map(|(i, l)| (i, bytes(i), l - lse)).collect(),
    }
}

fn normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    #[allow(clippy::cast_possible_truncation)]
    let scale = if norm > 0.0 { (1.0 / norm) as f32 } else { 0.0 };
    v.iter().map(|x| x * scale).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_possible_start_of_a_stop_sequence_is_held_back() {
        assert_eq!(held_back("hello wor", "world"), 3);
        assert_eq!(held_back("hello", "world"), 0);
        assert_eq!(held_back("ab", "b!"), 1);
        assert_eq!(held_back("é", "éa"), 2);
        assert_eq!(held_back("", "x"), 0);
    }

    #[test]
    fn a_slot_gets_its_share_of_the_cache_unless_it_is_shared() {
        assert_eq!(seq_ctx(8192, 8, false), 1024);
        assert_eq!(seq_ctx(8192, 8, true), 8192);
        assert_eq!(seq_ctx(4096, 1, false), 4096);
    }

    #[test]
    fn a_request_reserves_its_prompt_and_its_budget_within_its_slot() {
        assert_eq!(reservation(300, Some(100), 1024), 400);
        assert_eq!(reservation(300, None, 1024), 1024, "no max_tokens: the rest of the slot");
        assert_eq!(reservation(1000, Some(100), 1024), 1024, "never beyond the slot");
    }

    #[test]
    fn the_prefix_is_the_common_start() {
        let t = |v: &[i32]| v.iter().map(|i| LlamaToken::new(*i)).collect::<Vec<_>>();
        assert_eq!(common_prefix(&t(&[1, 2, 3]), &t(&[1, 2, 4])), 2);
        assert_eq!(common_prefix(&t(&[]), &t(&[1])), 0);
    }

    #[test]
    fn embeddings_are_unit_length() {
        let v = normalize(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalize(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
