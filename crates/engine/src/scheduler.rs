//! Continuous batching: one engine thread owns the model and steps all running sequences
//! together. Sequences join and leave at token boundaries; each step is one forward pass over a
//! ragged batch of decode tokens (one per running sequence) plus prompt chunks, bounded by a
//! per-step token budget so that running streams keep flowing while a long prompt is read
//! (chunked prefill, as vLLM's scheduler does).
//!
//! Requests arrive on a channel, each with its own event sink; a sink that reports closed
//! (the client went away) cancels its sequence at the next step and its KV memory is freed.

use crate::batch::Batch;
use crate::kv::SeqKv;
use crate::models::{self, Ctx};
use crate::sample::{logprobs, Sampler, SamplingParams, TokenConstraint};
use crate::session::{FinishReason, LoadedModel};
use hearth_tokenizer::StreamDecoder;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
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

#[derive(Default)]
pub struct Stats {
    pub running: AtomicUsize,
    pub waiting: AtomicUsize,
    pub kv_bytes: AtomicUsize,
}

pub struct Scheduler {
    tx: Sender<Request>,
    pub stats: Arc<Stats>,
    cfg: SchedulerConfig,
    n_ctx: usize,
}

impl Scheduler {
    pub fn start(lm: Arc<LoadedModel>, cfg: SchedulerConfig) -> Self {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let n_ctx = lm.n_ctx();
        let (s2, c2) = (stats.clone(), cfg.clone());
        std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || Loop::new(lm, c2, s2, rx).run())
            .expect("spawn engine thread");
        Scheduler {
            tx,
            stats,
            cfg,
            n_ctx,
        }
    }

    pub fn submit(&self, req: Request) -> Result<(), SubmitError> {
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if req.prompt.len() + req.max_tokens > self.n_ctx {
            return Err(SubmitError::ContextOverflow {
                prompt: req.prompt.len(),
                max_tokens: req.max_tokens,
                context: self.n_ctx,
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
    kv: SeqKv,
    /// Prompt tokens already in the cache.
    done_prompt: usize,
    generated: Vec<u32>,
    /// All tokens seen (prompt + generated), for penalties.
    history: Vec<u32>,
    sampler: Sampler,
    decoder: StreamDecoder,
    finished: bool,
}

impl Seq {
    fn pos(&self) -> usize {
        self.done_prompt + self.generated.len().saturating_sub(1)
    }
}

struct Loop {
    lm: Arc<LoadedModel>,
    cfg: SchedulerConfig,
    stats: Arc<Stats>,
    rx: Receiver<Request>,
    ctx: Ctx,
    waiting: VecDeque<Request>,
    running: Vec<Seq>,
    batch: Batch,
    logits: Vec<f32>,
}

impl Loop {
    fn new(
        lm: Arc<LoadedModel>,
        cfg: SchedulerConfig,
        stats: Arc<Stats>,
        rx: Receiver<Request>,
    ) -> Self {
        let ctx = Ctx::new(cfg.threads);
        Loop {
            lm,
            cfg,
            stats,
            rx,
            ctx,
            waiting: VecDeque::new(),
            running: Vec::new(),
            batch: Batch::default(),
            logits: Vec::new(),
        }
    }

    fn run(mut self) {
        loop {
            // Take new requests; block only when there is nothing to do.
            if self.running.is_empty() && self.waiting.is_empty() {
                match self.rx.recv() {
                    Ok(r) => self.waiting.push_back(r),
                    Err(_) => return,
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(r) => self.waiting.push_back(r),
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
            self.running.retain(|s| !s.finished);
            self.publish_stats();
        }
    }

    fn publish_stats(&self) {
        self.stats
            .running
            .store(self.running.len(), Ordering::Relaxed);
        self.stats.kv_bytes.store(
            self.running.iter().map(|s| s.kv.bytes()).sum(),
            Ordering::Relaxed,
        );
    }

    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|r| !r.sink.is_closed());
        self.stats
            .waiting
            .fetch_sub(before - self.waiting.len(), Ordering::SeqCst);
        // Dropping a Seq frees its KV memory at once.
        self.running.retain(|s| !s.req.sink.is_closed());
    }

    fn admit(&mut self) {
        while self.running.len() < self.cfg.max_running {
            let Some(req) = self.waiting.pop_front() else {
                break;
            };
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            let kv = SeqKv::new(&self.lm.model.kv_specs(), self.lm.n_ctx());
            let sampler = Sampler::new(req.params.clone());
            // Penalties look at generated tokens only, as vLLM applies presence/frequency penalties.
            let history = Vec::new();
            self.running.push(Seq {
                req,
                kv,
                done_prompt: 0,
                generated: Vec::new(),
                history,
                sampler,
                decoder: StreamDecoder::new(true),
                finished: false,
            });
        }
    }

    fn step(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let mut budget = self.cfg.step_tokens.max(1);
        self.batch.clear();
        // Decode tokens first: every running sequence past its prompt advances by one.
        for (i, s) in self.running.iter_mut().enumerate() {
            if s.done_prompt == s.req.prompt.len() {
                let tok = *s
                    .generated
                    .last()
                    .expect("a sequence past its prompt has sampled a token");
                let pos = s.pos();
                s.kv.reserve(pos + 1);
                self.batch.push(tok, pos, i, true);
                budget = budget.saturating_sub(1);
            }
        }
        // Then prompt chunks with what is left of the budget (at least one token per step so a
        // full batch of decoders cannot starve prefill forever).
        for (i, s) in self.running.iter_mut().enumerate() {
            let left = s.req.prompt.len() - s.done_prompt;
            if left == 0 {
                continue;
            }
            let n = left.min(budget.max(if self.batch.is_empty() { 1 } else { 0 }));
            if n == 0 {
                break;
            }
            s.kv.reserve(s.done_prompt + n);
            for j in 0..n {
                let p = s.done_prompt + j;
                self.batch
                    .push(s.req.prompt[p], p, i, p + 1 == s.req.prompt.len());
            }
            budget -= n.min(budget);
        }
        let mut kvs: Vec<&mut SeqKv> = self.running.iter_mut().map(|s| &mut s.kv).collect();
        models::forward(
            self.lm.model.as_ref(),
            &mut self.ctx,
            &self.batch,
            &mut kvs,
            &mut self.logits,
        );
        drop(kvs);
        // Advance prompt counters.
        for t in 0..self.batch.len() {
            let s = &mut self.running[self.batch.seq[t]];
            if s.done_prompt < s.req.prompt.len() && self.batch.pos[t] == s.done_prompt {
                s.done_prompt += 1;
            }
            s.kv.len = s.kv.len.max(self.batch.pos[t] + 1);
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
            let tok = s.sampler.sample(logits, &s.history);
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
            s.generated.push(tok);
            s.history.push(tok);
            let tk = &self.lm.tokenizer;
            let eog = tk.is_eog(tok);
            let finish = if eog || constraint_done {
                Some(FinishReason::Stop)
            } else if s.generated.len() >= s.req.max_tokens || s.pos() + 1 >= self.lm.n_ctx() {
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
                    prompt_tokens: s.req.prompt.len(),
                    completion_tokens: s.generated.len(),
                });
                s.finished = true;
            }
            if !alive {
                s.finished = true;
            }
        }
    }
}
