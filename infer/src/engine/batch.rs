//! The batch loop: slots, admission, one decode per turn, sampling, the end of a request.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use tokio::sync::mpsc as tmpsc;

use super::sampling::{logprob, normalize, post_sampling, sampler, FirstChars, RequestSampler};
use super::store::PromptStore;
use super::{seq_ctx, Done, EngineConfig, Event, Finish, Job, Progress, Sampled, SlotState, Stats, Timings};
use crate::api::Generation;

pub(super) struct Active {
    pub(super) prompt: Vec<LlamaToken>,
    pub(super) sampler: RequestSampler,
    pub(super) events: tmpsc::UnboundedSender<Event>,
    /// Tokens still to generate at most.
    pub(super) budget: usize,
    /// Cells this request may come to hold: its prompt plus its budget.
    pub(super) reserved: usize,
    pub(super) generated: usize,
    /// Sampled, not yet decoded: the next token this slot feeds.
    pub(super) next: Option<LlamaToken>,
    /// Bytes of a character not yet complete.
    pub(super) partial: Vec<u8>,
    /// Text held back because it could be the start of a stop sequence.
    pub(super) held: String,
    pub(super) stop: Vec<String>,
    /// Alternatives to report per token; None: no log-probabilities.
    pub(super) logprobs: Option<usize>,
    /// Write special tokens as text.
    pub(super) special: bool,
    /// Report each sampled token ([`Event::Token`]).
    pub(super) each_token: bool,
    /// Report prompt processing ([`Event::Progress`]).
    pub(super) progress: bool,
    /// Probabilities after the sampler chain instead of the model's.
    pub(super) post_sampling: bool,
    /// Leading tokens a context shift keeps (`n_keep`, the BOS included).
    pub(super) keep: usize,
    /// Once its context has been shifted: the leading tokens whose cells are still exactly
    /// what a fresh decode would give (the rest attended to what was discarded).
    pub(super) shifted: Option<usize>,
    /// Prompt tokens reused from the cache.
    pub(super) cached: usize,
    pub(super) admitted: Instant,
    /// Waiting for another slot to finish reading the prompt prefix this one shares:
    /// (that slot, the tokens it will hold), copied instead of computed twice.
    pub(super) wait_for: Option<(usize, usize)>,
    pub(super) first_token: Option<Instant>,
}

struct Slot {
    seq: i32,
    /// Tokens whose KV cells this sequence holds, in position order.
    cached: Vec<LlamaToken>,
    active: Option<Active>,
    /// Index in the current batch whose logits this slot samples from.
    logits_at: Option<i32>,
    /// When a request last came to this slot (the loop's count of requests started).
    last_used: u64,
}

pub(super) struct Loop<'m> {
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
    /// All sequences in one cache (`kv_unified`, or one slot): prefixes are shared by
    /// reference; otherwise each slot has a stream and a shared prefix is copied.
    unified: bool,
    stats: Arc<Stats>,
    embeddings: bool,
    /// Pooling none: a vector per token.
    per_token: bool,
    /// `--context-shift`: a full slot discards half of its older tokens instead of ending.
    context_shift: bool,
    piece: Vec<u8>,
    /// The vocabulary by first character, for grammars (made at the first constrained step).
    first_chars: std::cell::OnceCell<FirstChars>,
    /// Prompts pushed out of their slots, in host memory.
    store: PromptStore<SeqState>,
    /// Requests started so far (the slots' `last_used` clock).
    started: u64,
}

impl<'m> Loop<'m> {
    pub(super) fn new(model: &'m LlamaModel, ctx: LlamaContext<'m>, cfg: &EngineConfig, stats: Arc<Stats>) -> Loop<'m> {
        let n_batch = usize::try_from(cfg.n_batch).unwrap_or(512);
        let parallel = i32::try_from(cfg.parallel.max(1)).unwrap_or(1);
        let cells = usize::try_from(ctx.n_ctx()).unwrap_or(usize::MAX);
        let n_ctx = seq_ctx(cells, usize::try_from(parallel).unwrap_or(1), cfg.kv_unified);
        let shared_cells = (cfg.kv_unified && parallel > 1).then_some(cells);
        let slots = (0..parallel)
            .map(|seq| Slot { seq, cached: vec![], active: None, logits_at: None, last_used: 0 })
            .collect();
        Loop {
            model,
            ctx,
            slots,
            queue: VecDeque::new(),
            batch: LlamaBatch::new(n_batch, parallel),
            n_batch,
            n_ctx,
            shared_cells,
            unified: cfg.kv_unified || parallel <= 1,
            stats,
            embeddings: cfg.embeddings,
            per_token: cfg.pooling == Some(llama_cpp_2::context::params::LlamaPoolingType::None),
            context_shift: cfg.context_shift,
            piece: Vec::with_capacity(64),
            first_chars: std::cell::OnceCell::new(),
            store: PromptStore::new(cfg.cache_ram_bytes),
            started: 0,
        }
    }

    fn busy(&self) -> bool {
        self.slots.iter().any(|s| s.active.is_some())
    }

    pub(super) fn run(&mut self, rx: &mpsc::Receiver<Job>) {
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
            self.resolve_waits();
            if self.busy() {
                self.publish();
                self.step();
            }
            self.publish();
            self.publish_slots();
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
                    let free = match generation.slot {
                        // llama-server's id_slot: that slot, once it is free.
                        Some(k) => self.slots.get(k).filter(|s| s.active.is_none()).map(|_| k),
                        None => self.best_free_slot(&prompt),
                    };
                    let Some(i) = free.filter(|_| fits) else {
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

    /// The free slot whose cache shares the longest prefix with `prompt`; of those sharing
    /// as much, the least recently used (an empty slot before one holding a prefix), so
    /// what the slots hold lasts as long as it can.
    fn best_free_slot(&self, prompt: &[LlamaToken]) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .max_by_key(|(i, s)| (common_prefix(&s.cached, prompt), std::cmp::Reverse((s.last_used, *i))))
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
        // Keep the shared prefix, but always decode at least the prompt's last token: its
        // logits give the first sampled token.
        let keep = if g.cache_prompt { common_prefix(&self.slots[i].cached, &prompt) } else { 0 };
        let keep = keep.min(prompt.len().saturating_sub(1));
        self.shelve(i, keep);
        let keep = if g.cache_prompt { self.unshelve(i, &prompt, keep) } else { keep };
        self.started += 1;
        let slot = &mut self.slots[i];
        slot.last_used = self.started;
        if keep < slot.cached.len() {
            let _ = self.ctx.clear_kv_cache_seq(
                Some(seq_u32(slot.seq)),
                Some(u32::try_from(keep).unwrap_or(u32::MAX)),
                None,
            );
            slot.cached.truncate(keep);
        }
        let room = self.n_ctx.saturating_sub(prompt.len());
        // With --context-shift, max_tokens may go past the slot's end (no max_tokens still
        // ends there: a request never runs on without a limit).
        let budget = match g.max_tokens {
            Some(m) if self.context_shift => m,
            m => m.map_or(room, |m| m.min(room)),
        };
        let bos = usize::from(prompt.first() == Some(&self.model.vocab().bos()));
        let n_keep = g.keep.map_or(0, |k| k.min(prompt.len())) + bos;
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
            each_token: g.each_token,
            progress: g.progress,
            post_sampling: g.post_sampling,
            keep: n_keep,
            shifted: None,
            cached: keep,
            admitted: Instant::now(),
            first_token: None,
            wait_for: None,
        });
        if g.cache_prompt {
            self.borrow_prefix(i);
        }
        self.report_progress(i);
    }

    /// Tell slot `i`'s client how much of its prompt is read, when it asked.
    fn report_progress(&self, i: usize) {
        let slot = &self.slots[i];
        let Some(a) = slot.active.as_ref().filter(|a| a.progress) else { return };
        let _ = a.events.send(Event::Progress(Progress {
            total: a.prompt.len(),
            cache: a.cached,
            processed: slot.cached.len(),
            time_ms: u64::try_from(a.admitted.elapsed().as_millis()).unwrap_or(u64::MAX),
        }));
    }

    /// Before slot `i` gives up its cells past `keep`: save what it holds in the prompt
    /// store when most of it would be lost (and it is not held there already).
    fn shelve(&mut self, i: usize, keep: usize) {
        let slot = &self.slots[i];
        let n = slot.cached.len();
        if !self.store.enabled() || n < keep + MIN_SHARE || keep * 2 >= n || self.store.holds(&slot.cached) {
            return;
        }
        match self.ctx.state_seq_get(slot.seq, LlamaStateSeqFlags::empty()) {
            Ok(state) => {
                let bytes = state.byte_len();
                self.store.put(slot.cached.clone(), state, bytes);
            }
            Err(e) => tracing::warn!("cannot save slot {i}'s {n} tokens to the prompt store: {e}"),
        }
        self.publish_store();
    }

    /// Restore into slot `i` the stored prompt sharing the longest prefix with `prompt`,
    /// when it shares more than the `keep` tokens the slot holds already; the tokens the
    /// slot now keeps. The prompt's last token is always decoded (its logits give the
    /// first sampled token).
    fn unshelve(&mut self, i: usize, prompt: &[LlamaToken], keep: usize) -> usize {
        if !self.store.enabled() {
            return keep;
        }
        let seq = self.slots[i].seq;
        let Some((tokens, state, have)) = self.store.best(&prompt[..prompt.len().saturating_sub(1)], keep) else {
            return keep;
        };
        let tokens = tokens[..have].to_vec();
        let _ = self.ctx.clear_kv_cache_seq(Some(seq_u32(seq)), None, None);
        let slot = &mut self.slots[i];
        let restored = self.ctx.state_seq_set(state, seq);
        slot.cached.clear();
        if let Err(e) = restored {
            // The cache may have no room for it (a shared cache, full): decode it instead.
            tracing::warn!("cannot restore {have} tokens from the prompt store into slot {i}: {e}");
            let _ = self.ctx.clear_kv_cache_seq(Some(seq_u32(seq)), None, None);
            return 0;
        }
        let _ = self.ctx.clear_kv_cache_seq(Some(seq_u32(seq)), Some(u32::try_from(have).unwrap_or(u32::MAX)), None);
        slot.cached = tokens;
        self.stats.restored_prompt_tokens.fetch_add(have as u64, Ordering::Relaxed);
        have
    }

    fn publish_store(&self) {
        self.stats.prompt_store_entries.store(self.store.len(), Ordering::Relaxed);
        self.stats.prompt_store_bytes.store(self.store.bytes(), Ordering::Relaxed);
    }

    /// Share another slot's KV cells for the longest prefix of slot `i`'s prompt: at once
    /// from a slot that holds it (idle or running), or, when a running request is still
    /// reading a longer shared prefix, once it has (the slot waits meanwhile). Agents of one
    /// workflow send the same long system prompt: it is computed once.
    fn borrow_prefix(&mut self, i: usize) {
        let Some(a) = &self.slots[i].active else { return };
        let own = self.slots[i].cached.len();
        let last = a.prompt.len().saturating_sub(1);
        let mut held = (own, None);
        let mut reading = (own, None);
        for (j, s) in self.slots.iter().enumerate() {
            if j == i {
                continue;
            }
            // A shifted request's cells are exact only up to what it kept.
            let exact = s.active.as_ref().and_then(|d| d.shifted).unwrap_or(usize::MAX);
            let have = common_prefix(&s.cached, &a.prompt).min(last).min(exact);
            if have > held.0 {
                held = (have, Some(j));
            }
            if let Some(d) = s.active.as_ref().filter(|d| d.next.is_none() && d.wait_for.is_none()) {
                let will = common_prefix(&d.prompt, &a.prompt).min(last);
                if will > reading.0 && will > s.cached.len() {
                    reading = (will, Some(j));
                }
            }
        }
        if let (have, Some(j)) = held {
            if have >= own + MIN_SHARE {
                self.share(j, i, have);
            }
        }
        if let (will, Some(j)) = reading {
            if will >= self.slots[i].cached.len() + MIN_SHARE {
                if let Some(a) = self.slots[i].active.as_mut() {
                    a.wait_for = Some((j, will));
                }
            }
        }
    }

    /// Slots waiting for a prefix another slot was reading: take it once it is there, or
    /// what there is when that request ends or stops reading.
    fn resolve_waits(&mut self) {
        for i in 0..self.slots.len() {
            let Some((j, need)) = self.slots[i].active.as_ref().and_then(|a| a.wait_for) else { continue };
            let a = self.slots[i].active.as_ref().expect("waiting slot");
            let have = common_prefix(&self.slots[j].cached, &a.prompt).min(a.prompt.len().saturating_sub(1));
            let donor_reading = self.slots[j]
                .active
                .as_ref()
                .is_some_and(|d| d.next.is_none() && common_prefix(&d.prompt, &a.prompt) >= need);
            if have < need && donor_reading {
                continue;
            }
            if have >= self.slots[i].cached.len() + MIN_SHARE {
                self.share(j, i, have);
            }
            if let Some(a) = self.slots[i].active.as_mut() {
                a.wait_for = None;
            }
        }
    }

    /// Give slot `to` the first `len` cells of slot `from`'s sequence.
    fn share(&mut self, from: usize, to: usize, len: usize) {
        let (src, dst) = (self.slots[from].seq, self.slots[to].seq);
        let _ = self.ctx.clear_kv_cache_seq(Some(seq_u32(dst)), None, None);
        if self.unified {
            // One cache: the cells are marked as the other sequence's too (no copy).
            let _ = self.ctx.copy_kv_cache_seq(src, dst, Some(0), Some(u32::try_from(len).unwrap_or(u32::MAX)));
        } else {
            // A stream per slot: llama.cpp copies a stream whole (at the next decode); the
            // cells past the prefix are dropped from the copy at once.
            let _ = self.ctx.copy_kv_cache_seq(src, dst, None, None);
            let _ = self.ctx.clear_kv_cache_seq(Some(seq_u32(dst)), Some(u32::try_from(len).unwrap_or(u32::MAX)), None);
        }
        let prefix = self.slots[from].cached[..len].to_vec();
        self.slots[to].cached = prefix;
        if let Some(a) = self.slots[to].active.as_mut() {
            a.cached = len;
        }
        self.stats.shared_prefix_tokens.fetch_add(len as u64, Ordering::Relaxed);
    }

    fn publish(&self) {
        self.stats.slots_busy.store(self.slots.iter().filter(|s| s.active.is_some()).count(), Ordering::Relaxed);
        self.stats.kv_cells_used.store(self.slots.iter().map(|s| s.cached.len()).sum(), Ordering::Relaxed);
    }

    /// Each slot's state for `/slots`, once per turn of the loop.
    fn publish_slots(&self) {
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
                if a.next.is_some() || a.wait_for.is_some() {
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
                                self.report_progress(i);
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

    /// Free cells for the next try: idle slots' cached prefixes (saved to the prompt store first). A running request's cells
    /// are never taken (admission by reservation leaves them room); false when nothing is
    /// left to free.
    fn make_room(&mut self) -> bool {
        let mut freed = false;
        for i in 0..self.slots.len() {
            if self.slots[i].active.is_none() && !self.slots[i].cached.is_empty() {
                self.shelve(i, 0);
                clear_seq(&mut self.ctx, &mut self.slots[i]);
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
            let masks = a.sampler.full_masks;
            // The grammar reads the next token's first character on its own only when the
            // text so far ends on a whole one.
            let first = (a.sampler.constrained() && a.partial.is_empty())
                .then(|| self.first_chars.get_or_init(|| FirstChars::new(self.model)));
            let tok = a.sampler.sample(&self.ctx, idx, first);
            if a.sampler.full_masks > masks {
                self.stats.grammar_full_masks.fetch_add(1, Ordering::Relaxed);
            }
            if a.sampler.constrained() {
                self.stats.constrained_tokens.fetch_add(1, Ordering::Relaxed);
            }
            let first = *a.first_token.get_or_insert_with(Instant::now);
            generated += 1;
            if a.each_token {
                let timings = timings(a.admitted, first);
                let n_decoded = a.generated + 1;
                let _ =
                    a.events.send(Event::Token(Sampled { id: tok.0, n_decoded, slot: i, cached: a.cached, timings }));
            }
            if let Some(top) = a.logprobs {
                let lp = if a.post_sampling {
                    post_sampling(self.model, a.sampler.candidates(), tok, top)
                } else {
                    logprob(self.model, self.ctx.get_logits_ith(idx), tok, top)
                };
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
            let full = slot.cached.len() >= self.n_ctx;
            if let Some(word) = a.push_text() {
                self.finish(i, Finish::Word(word));
            } else if a.generated >= a.budget || (full && !(self.context_shift && self.shift(i))) {
                self.finish(i, Finish::Length);
            } else if let Some(a) = self.slots[i].active.as_mut() {
                a.next = Some(tok);
            }
        }
        self.stats.generated_tokens.fetch_add(generated, Ordering::Relaxed);
        self.stats.record_rate();
    }

    /// Make room in slot `i`'s full context as llama-server's `--context-shift` does: keep
    /// the first `keep` tokens, discard half of the rest, move the later half down. False
    /// when nothing can be discarded.
    fn shift(&mut self, i: usize) -> bool {
        let slot = &mut self.slots[i];
        let Some(a) = slot.active.as_mut() else { return false };
        let n_past = slot.cached.len();
        let keep = a.keep.min(n_past);
        let discard = (n_past - keep) / 2;
        let pos = |n: usize| u32::try_from(n).ok();
        let Ok(delta) = i32::try_from(discard) else { return false };
        if discard == 0 {
            return false;
        }
        let removed = self.ctx.clear_kv_cache_seq(Some(seq_u32(slot.seq)), pos(keep), pos(keep + discard));
        if !matches!(removed, Ok(true)) {
            return false;
        }
        if self.ctx.kv_cache_seq_add(slot.seq, pos(keep + discard), pos(n_past), -delta).is_err() {
            return false;
        }
        slot.cached.drain(keep..keep + discard);
        a.shifted = Some(keep);
        self.stats.context_shifts.fetch_add(1, Ordering::Relaxed);
        true
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
        let _ = a.events.send(Event::Done(Done {
            finish,
            prompt_tokens: a.prompt.len(),
            completion_tokens: a.generated,
            cached_tokens: a.cached,
            timings: timings(a.admitted, first),
            slot: i,
            truncated: a.shifted.is_some(),
        }));
        self.stats.requests_done.fetch_add(1, Ordering::Relaxed);
        if a.shifted.is_some() {
            // Its cells past `keep` are not what the tokens would give afresh: no later
            // request may reuse them.
            clear_seq(&mut self.ctx, &mut self.slots[i]);
        }
    }

    /// Pooled embeddings of each input, L2-normalized (as llama-server returns them); with
    /// pooling none, each token's vector as the model gives it (llama-server does not
    /// normalize those either).
    fn embed(&mut self, inputs: &[Vec<LlamaToken>]) -> Result<Vec<Vec<Vec<f32>>>, String> {
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
            let mut at = 0;
            for s in 0..seqs {
                let n = inputs[i + s].len();
                if self.per_token {
                    let vectors = (at..at + n)
                        .map(|k| self.ctx.embeddings_ith(position(k)).map(<[f32]>::to_vec))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("llama.cpp returned no token embedding: {e}"))?;
                    out.push(vectors);
                } else {
                    let v = self
                        .ctx
                        .embeddings_seq_ith(position(s))
                        .map_err(|_| "llama.cpp returned no pooled embedding".to_string())?;
                    out.push(vec![normalize(v)]);
                }
                at += n;
            }
            i += seqs;
        }
        self.ctx.clear_kv_cache();
        Ok(out)
    }
}

/// The cells a request may come to hold: its prompt and the tokens it may generate (the
/// rest of its slot's context when it gives no `max_tokens`).
fn reservation(prompt: usize, max_tokens: Option<usize>, seq_ctx: usize) -> usize {
    let room = seq_ctx.saturating_sub(prompt);
    prompt + max_tokens.map_or(room, |m| m.min(room))
}

/// A token position or sequence id for llama.cpp (contexts are far below `i32::MAX`).
fn position(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Sequence ids are 0..parallel.
fn seq_u32(seq: i32) -> u32 {
    u32::try_from(seq).unwrap_or(0)
}

/// The fewest shared tokens worth copying rather than computing.
const MIN_SHARE: usize = 16;

pub(super) fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn clear_seq(ctx: &mut LlamaContext<'_>, slot: &mut Slot) {
    let _ = ctx.clear_kv_cache_seq(Some(seq_u32(slot.seq)), None, None);
    slot.cached.clear();
    slot.logits_at = None;
}

/// A request's timings so far: admission to first token, first token to now.
fn timings(admitted: Instant, first: Instant) -> Timings {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Timings { prompt_ms: ms(first - admitted), predicted_ms: ms(first.elapsed()) }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
