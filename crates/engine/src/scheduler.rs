//! Continuous batching: one engine thread owns the model and steps all running sequences
//! together. Sequences join and leave at token boundaries; each step is one forward pass over a
//! ragged batch of decode tokens (one per running sequence) plus prompt chunks, bounded by a
//! per-step token budget so that running streams keep flowing while a long prompt is read
//! (chunked prefill, as vLLM's scheduler does).
//!
//! Requests arrive on a channel, each with its own event sink; a sink that reports closed
//! (the client went away) cancels its sequence at the next step and its KV blocks are freed.
//!
//! KV memory is the paged cache of [`crate::kv`]: a sequence is admitted when blocks for its
//! whole prompt are available (after reusing the cached blocks its prompt starts with), takes
//! one more block every BLOCK_SIZE generated tokens, and when none is left the most recently
//! admitted sequence is preempted: its blocks are released and it goes back to the front of the
//! queue, to be recomputed (mostly from the prefix cache) when blocks free up. A request is
//! never failed for lack of KV memory once admitted.
//!
//! A sequence is just its tokens (prompt, then generated) and how many of them are in the
//! cache: each step computes the next chunk of the uncached ones and, when the chunk reaches the
//! last token, samples from its logits. Prefill, decode and recomputation after preemption are
//! the same operation.

use crate::batch::Batch;
use crate::kv::{block_hash, block_hashes, BlockManager, KvBatch, KvStore, BLOCK_SIZE};
use crate::models::{self, Ctx};
use crate::sample::{logprobs, Sampler, SamplingParams, TokenConstraint};
use crate::session::{FinishReason, LoadedModel};
use hearth_tokenizer::StreamDecoder;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub threads: usize,
    /// Sequences decoded together at most.
    pub max_running: usize,
    /// Requests waiting for a slot at most; past it `submit` refuses (HTTP 429).
    pub max_waiting: usize,
    /// Tokens per forward pass at most (decode tokens + prompt chunks).
    pub step_tokens: usize,
    /// Memory for the paged KV cache, in MiB (blocks are carved from it).
    pub kv_cache_mb: usize,
    /// Storage type of the KV cache.
    pub kv_type: crate::kv::KvType,
    /// Reuse cached KV blocks across requests that share a prompt prefix.
    pub prefix_caching: bool,
    /// Exact number of KV blocks, overriding `kv_cache_mb` (tests use it to force preemption).
    pub kv_blocks: Option<usize>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            threads: 1,
            max_running: 16,
            max_waiting: 64,
            step_tokens: 256,
            kv_cache_mb: 1024,
            kv_type: crate::kv::KvType::F16,
            prefix_caching: true,
            kv_blocks: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Token {
        id: u32,
        /// The text this token completes (may be empty inside a multi-byte character).
        text: String,
        /// (logprob of the chosen token, top alternatives) when asked for.
        logprob: Option<(f32, Vec<(u32, f32)>)>,
    },
    Done {
        finish: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Error(String),
}

/// Where a sequence's events go.
pub trait EventSink: Send {
    /// Deliver an event; false when the receiver is gone.
    fn send(&mut self, e: Event) -> bool;
    /// Whether the receiver is gone (checked every step, also during prefill).
    fn is_closed(&self) -> bool;
}

pub struct Request {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub max_tokens: usize,
    /// Some(n): report each token's logprob and the top n alternatives.
    pub logprobs: Option<usize>,
    /// Structured output: which tokens may come next (see [`TokenConstraint`]).
    pub constraint: Option<Box<dyn TokenConstraint>>,
    pub sink: Box<dyn EventSink>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("the request queue is full ({0} waiting)")]
    QueueFull(usize),
    #[error("the engine has stopped")]
    Stopped,
    #[error("prompt of {prompt} tokens plus {max_tokens} new tokens exceeds the context length of {context}")]
    ContextOverflow {
        prompt: usize,
        max_tokens: usize,
        context: usize,
    },
    #[error("empty prompt")]
    EmptyPrompt,
}

/// Live counters, read by the server for /metrics.
#[derive(Default)]
pub struct Stats {
    pub running: AtomicUsize,
    pub waiting: AtomicUsize,
    pub kv_blocks_total: AtomicUsize,
    /// Bytes of one KV block (all layers).
    pub kv_block_bytes: AtomicUsize,
    pub kv_blocks_used: AtomicUsize,
    /// Blocks kept only for the prefix cache (reusable, evicted when space is needed).
    pub kv_blocks_cached: AtomicUsize,
    /// Prompt tokens looked up in the prefix cache, and how many were found there.
    pub prefix_query_tokens: AtomicU64,
    pub prefix_hit_tokens: AtomicU64,
    pub preemptions: AtomicU64,
}

pub struct Scheduler {
    tx: Sender<Request>,
    pub stats: Arc<Stats>,
    cfg: SchedulerConfig,
    n_ctx: usize,
    /// Tokens the KV cache holds at most; a request that could never fit is refused.
    kv_capacity: usize,
}

impl Scheduler {
    pub fn start(lm: Arc<LoadedModel>, cfg: SchedulerConfig) -> Self {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let n_ctx = lm.n_ctx();
        let specs = lm.model.kv_specs();
        let block_bytes = KvStore::block_bytes(&specs, cfg.kv_type);
        let n_blocks = cfg
            .kv_blocks
            .unwrap_or(cfg.kv_cache_mb * (1 << 20) / block_bytes.max(1))
            .max(1);
        tracing::info!(
            "KV cache: {n_blocks} blocks of {BLOCK_SIZE} tokens ({} tokens, {:.1} MiB, {})",
            n_blocks * BLOCK_SIZE,
            (n_blocks * block_bytes) as f64 / (1u64 << 20) as f64,
            cfg.kv_type
        );
        if n_blocks * BLOCK_SIZE < n_ctx {
            tracing::warn!(
                "the KV cache holds {} tokens, less than the model's context of {n_ctx}: longer requests are refused (raise --kv-cache-mb)",
                n_blocks * BLOCK_SIZE
            );
        }
        stats.kv_blocks_total.store(n_blocks, Ordering::Relaxed);
        stats.kv_block_bytes.store(block_bytes, Ordering::Relaxed);
        let (s2, c2) = (stats.clone(), cfg.clone());
        std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || Loop::new(lm, c2, s2, rx, n_blocks).run())
            .expect("spawn engine thread");
        Scheduler {
            tx,
            stats,
            cfg,
            n_ctx,
            kv_capacity: n_blocks * BLOCK_SIZE,
        }
    }

    pub fn submit(&self, req: Request) -> Result<(), SubmitError> {
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        let context = self.n_ctx.min(self.kv_capacity);
        if req.prompt.len() + req.max_tokens > context {
            return Err(SubmitError::ContextOverflow {
                prompt: req.prompt.len(),
                max_tokens: req.max_tokens,
                context,
            });
        }
        let w = self.stats.waiting.fetch_add(1, Ordering::SeqCst);
        if w >= self.cfg.max_waiting {
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull(w));
        }
        self.tx.send(req).map_err(|_| {
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            SubmitError::Stopped
        })
    }
}

struct Seq {
    req: Request,
    /// Prompt, then generated tokens.
    tokens: Vec<u32>,
    n_prompt: usize,
    /// Tokens whose K/V are in the cache (a prefix of `tokens`).
    n_cached: usize,
    /// Block table: position p is in block `table[p / BLOCK_SIZE]`.
    table: Vec<u32>,
    /// Prefix-cache keys of the full blocks registered so far (a prefix of `table`).
    hashes: Vec<u64>,
    sampler: Sampler,
    decoder: StreamDecoder,
    finished: bool,
    /// Admission order: the highest is preempted first.
    admitted: u64,
}

impl Seq {
    fn new(req: Request) -> Self {
        let sampler = Sampler::new(req.params.clone());
        let tokens = req.prompt.clone();
        Seq {
            n_prompt: tokens.len(),
            tokens,
            req,
            n_cached: 0,
            table: Vec::new(),
            hashes: Vec::new(),
            sampler,
            decoder: StreamDecoder::new(true),
            finished: false,
            admitted: 0,
        }
    }
    fn n_generated(&self) -> usize {
        self.tokens.len() - self.n_prompt
    }
    /// Tokens still to compute (the last one yields logits).
    fn pending(&self) -> usize {
        self.tokens.len() - self.n_cached
    }
}

struct Loop {
    lm: Arc<LoadedModel>,
    cfg: SchedulerConfig,
    stats: Arc<Stats>,
    rx: Receiver<Request>,
    ctx: Ctx,
    store: KvStore,
    blocks: BlockManager,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    batch: Batch,
    logits: Vec<f32>,
    admissions: u64,
}

impl Loop {
    fn new(
        lm: Arc<LoadedModel>,
        cfg: SchedulerConfig,
        stats: Arc<Stats>,
        rx: Receiver<Request>,
        n_blocks: usize,
    ) -> Self {
        let ctx = Ctx::new(cfg.threads);
        let store = KvStore::new(&lm.model.kv_specs(), cfg.kv_type, n_blocks);
        Loop {
            lm,
            cfg,
            stats,
            rx,
            ctx,
            store,
            blocks: BlockManager::new(n_blocks),
            waiting: VecDeque::new(),
            running: Vec::new(),
            batch: Batch::default(),
            logits: Vec::new(),
            admissions: 0,
        }
    }

    fn run(mut self) {
        loop {
            // Take new requests; block only when there is nothing to do.
            if self.running.is_empty() && self.waiting.is_empty() {
                match self.rx.recv() {
                    Ok(r) => self.waiting.push_back(Seq::new(r)),
                    Err(_) => return,
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(r) => self.waiting.push_back(Seq::new(r)),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if self.running.is_empty() && self.waiting.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            self.drop_cancelled();
            self.admit();
            self.step();
            self.retire_finished();
            self.publish_stats();
        }
    }

    fn publish_stats(&self) {
        let st = &self.stats;
        st.running.store(self.running.len(), Ordering::Relaxed);
        st.kv_blocks_used
            .store(self.blocks.used(), Ordering::Relaxed);
        st.kv_blocks_cached
            .store(self.blocks.cached_idle(), Ordering::Relaxed);
        st.prefix_query_tokens
            .store(self.blocks.query_tokens, Ordering::Relaxed);
        st.prefix_hit_tokens
            .store(self.blocks.hit_tokens, Ordering::Relaxed);
    }

    fn retire_finished(&mut self) {
        let blocks = &mut self.blocks;
        self.running.retain_mut(|s| {
            if s.finished {
                blocks.release(&s.table);
                s.table.clear();
            }
            !s.finished
        });
    }

    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        // Waiting sequences hold no blocks (preemption released them).
        self.waiting.retain(|s| !s.req.sink.is_closed());
        self.stats
            .waiting
            .fetch_sub(before - self.waiting.len(), Ordering::SeqCst);
        for s in &mut self.running {
            if s.req.sink.is_closed() {
                s.finished = true;
            }
        }
        self.retire_finished();
    }

    /// Admit waiting sequences, oldest first, while slots and KV blocks for their whole prompt
    /// are available.
    fn admit(&mut self) {
        while self.running.len() < self.cfg.max_running {
            let Some(s) = self.waiting.front_mut() else {
                break;
            };
            // Reuse cached blocks the sequence starts with; at least its last token must be
            // computed, for its logits.
            let reusable = (s.tokens.len() - 1) / BLOCK_SIZE;
            let hit = if self.cfg.prefix_caching {
                let hashes = block_hashes(&s.tokens, reusable);
                let hit = self.blocks.lookup(&hashes);
                s.hashes = hashes[..hit.len()].to_vec();
                hit
            } else {
                Vec::new()
            };
            let need = s.tokens.len().div_ceil(BLOCK_SIZE) - hit.len();
            // Keep one block per running sequence in reserve so they can keep decoding.
            let reserve = self.running.len().min(self.blocks.n_blocks() / 4);
            if self.blocks.available() < need + reserve && !self.running.is_empty()
                || self.blocks.available() < need
            {
                self.blocks.release(&hit);
                s.hashes.clear();
                break;
            }
            let mut s = self.waiting.pop_front().expect("front exists");
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            if s.n_prompt == s.tokens.len() && self.cfg.prefix_caching {
                // Count each request's prompt once (not again after a preemption).
                self.blocks
                    .count_lookup(reusable * BLOCK_SIZE, hit.len() * BLOCK_SIZE);
            }
            s.n_cached = hit.len() * BLOCK_SIZE;
            s.table = hit;
            for _ in 0..need {
                let b = self.blocks.allocate().expect("availability checked above");
                s.table.push(b);
            }
            self.admissions += 1;
            s.admitted = self.admissions;
            self.running.push(s);
        }
    }

    /// Release the blocks of running sequence `v` and put it back at the front of the queue,
    /// to be recomputed (mostly from the prefix cache) when blocks free up.
    fn preempt(&mut self, v: usize) {
        let mut s = self.running.remove(v);
        tracing::debug!(
            "KV cache full: preempting a sequence of {} tokens",
            s.tokens.len()
        );
        self.blocks.release(&s.table);
        s.table.clear();
        s.hashes.clear();
        s.n_cached = 0;
        self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
        self.stats.waiting.fetch_add(1, Ordering::SeqCst);
        self.waiting.push_front(s);
    }

    /// Make sure running sequence `i` has blocks for positions up to `end` (exclusive),
    /// preempting the most recently admitted sequences when none is free (possibly `i`
    /// itself, then None). Returns `i`'s index after any removal.
    fn ensure_blocks(&mut self, mut i: usize, end: usize) -> Option<usize> {
        while self.running[i].table.len() * BLOCK_SIZE < end {
            if let Some(b) = self.blocks.allocate() {
                self.running[i].table.push(b);
                continue;
            }
            let youngest = self
                .running
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.finished)
                .max_by_key(|(_, s)| s.admitted)
                .map_or(i, |(v, _)| v);
            self.preempt(youngest);
            match youngest.cmp(&i) {
                std::cmp::Ordering::Equal => return None,
                // Removing an earlier index shifts ours.
                std::cmp::Ordering::Less => i -= 1,
                std::cmp::Ordering::Greater => {}
            }
        }
        Some(i)
    }

    fn step(&mut self) {
        if self.running.is_empty() {
            return;
        }
        // Blocks for every decoding sequence's next position, oldest first (preempting the
        // youngest when they run out).
        let mut order: Vec<u64> = self
            .running
            .iter()
            .filter(|s| s.pending() == 1)
            .map(|s| s.admitted)
            .collect();
        order.sort_unstable();
        for a in order {
            if let Some(i) = self.running.iter().position(|s| s.admitted == a) {
                let end = self.running[i].tokens.len();
                self.ensure_blocks(i, end);
            }
        }
        if self.running.is_empty() {
            return;
        }
        let mut budget = self.cfg.step_tokens.max(1);
        self.batch.clear();
        // Decode tokens first: every sequence with one token left advances by one.
        for (i, s) in self.running.iter().enumerate() {
            if s.pending() == 1 {
                let pos = s.n_cached;
                self.batch.push(s.tokens[pos], pos, i, true);
                budget = budget.saturating_sub(1);
            }
        }
        // Then prompt (or recomputation) chunks with what is left of the budget (at least one
        // token per step so a full batch of decoders cannot starve prefill forever). Their
        // blocks were allocated at admission.
        for (i, s) in self.running.iter().enumerate() {
            let left = s.pending();
            if left <= 1 {
                continue;
            }
            let n = left.min(budget.max(if self.batch.is_empty() { 1 } else { 0 }));
            if n == 0 {
                break;
            }
            for j in 0..n {
                let p = s.n_cached + j;
                self.batch.push(s.tokens[p], p, i, p + 1 == s.tokens.len());
            }
            budget -= n.min(budget);
        }
        let tables: Vec<&[u32]> = self.running.iter().map(|s| s.table.as_slice()).collect();
        models::forward(
            self.lm.model.as_ref(),
            &mut self.ctx,
            &self.batch,
            &mut KvBatch {
                store: &mut self.store,
                tables: &tables,
            },
            &mut self.logits,
        );
        drop(tables);
        // Advance cache counters and publish newly full blocks to the prefix cache.
        for t in 0..self.batch.len() {
            let s = &mut self.running[self.batch.seq[t]];
            s.n_cached = s.n_cached.max(self.batch.pos[t] + 1);
        }
        if self.cfg.prefix_caching {
            for s in &mut self.running {
                while (s.hashes.len() + 1) * BLOCK_SIZE <= s.n_cached {
                    let b = s.hashes.len();
                    let prev = s.hashes.last().copied().unwrap_or(0);
                    let h = block_hash(prev, &s.tokens[b * BLOCK_SIZE..(b + 1) * BLOCK_SIZE]);
                    self.blocks.register(s.table[b], h);
                    s.hashes.push(h);
                }
            }
        }
        // Sample for every token that produced logits, in batch order.
        let nv = self.lm.model.info().n_vocab;
        let mut row = 0;
        for t in 0..self.batch.len() {
            if !self.batch.logits[t] {
                continue;
            }
            let logits = &mut self.logits[row * nv..(row + 1) * nv];
            row += 1;
            let s = &mut self.running[self.batch.seq[t]];
            let lp = s.req.logprobs.map(|n| (logits.to_vec(), n));
            if let Some(c) = &mut s.req.constraint {
                if let Err(e) = c.mask(logits) {
                    s.req
                        .sink
                        .send(Event::Error(format!("structured output: {e}")));
                    s.finished = true;
                    continue;
                }
            }
            // Penalties look at generated tokens only, as vLLM applies presence/frequency
            // penalties.
            let tok = s.sampler.sample(logits, &s.tokens[s.n_prompt..]);
            let mut constraint_done = false;
            if let Some(c) = &mut s.req.constraint {
                if let Err(e) = c.commit(tok) {
                    s.req
                        .sink
                        .send(Event::Error(format!("structured output: {e}")));
                    s.finished = true;
                    continue;
                }
                constraint_done = c.is_finished();
            }
            s.tokens.push(tok);
            let tk = &self.lm.tokenizer;
            let eog = tk.is_eog(tok);
            let finish = if eog || constraint_done {
                Some(FinishReason::Stop)
            } else if s.n_generated() >= s.req.max_tokens || s.tokens.len() >= self.lm.n_ctx() {
                Some(FinishReason::Length)
            } else {
                None
            };
            let mut text = if eog {
                String::new()
            } else {
                s.decoder.push(tk, tok)
            };
            if finish.is_some() {
                text.push_str(&s.decoder.flush());
            }
            let logprob = lp.map(|(raw, n)| logprobs(&raw, tok, n));
            let alive = s.req.sink.send(Event::Token {
                id: tok,
                text,
                logprob,
            });
            if let Some(f) = finish {
                s.req.sink.send(Event::Done {
                    finish: f,
                    prompt_tokens: s.n_prompt,
                    completion_tokens: s.n_generated(),
                });
                s.finished = true;
            }
            if !alive {
                s.finished = true;
            }
        }
    }
}
