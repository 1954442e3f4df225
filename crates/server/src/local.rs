//! `LocalBackend`: models run in this process by Hearth's engine, one continuous-batching
//! scheduler per model. This is the only module of the server that knows the engine, and it
//! only uses the engine's public API (tokenizer, template, scheduler), never tensors.

use crate::backend::{
    Backend, BackendError, BackendStats, FinishReason, GenerateEvent, GenerateRequest, KvStats,
    ModelCard, TokenLogprob, TopLogprob,
};
use hearth_engine::scheduler::{
    Event, EventSink, Request, Scheduler, SchedulerConfig, SubmitError,
};
use hearth_engine::template::{Message, RenderOptions};
use hearth_engine::LoadedModel;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

pub struct LocalModel {
    pub id: String,
    pub lm: Arc<LoadedModel>,
    pub scheduler: Scheduler,
    pub created: u64,
}

pub struct LocalBackend {
    models: Vec<LocalModel>,
}

impl LocalBackend {
    /// Start a scheduler for each (id, model).
    pub fn new(models: Vec<(String, Arc<LoadedModel>)>, cfg: SchedulerConfig) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        LocalBackend {
            models: models
                .into_iter()
                .map(|(id, lm)| LocalModel {
                    id,
                    scheduler: Scheduler::start(lm.clone(), cfg.clone()),
                    lm,
                    created,
                })
                .collect(),
        }
    }

    fn model(&self, id: &str) -> Result<&LocalModel, BackendError> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| BackendError::UnknownModel(id.to_string()))
    }
}

struct Sink {
    tx: mpsc::UnboundedSender<GenerateEvent>,
    lm: Arc<LoadedModel>,
}

impl EventSink for Sink {
    fn send(&mut self, e: Event) -> bool {
        let ev = match e {
            Event::Token { id, text, logprob } => GenerateEvent::Token {
                id,
                text,
                logprob: logprob.map(|(lp, top)| TokenLogprob {
                    logprob: lp,
                    bytes: self.lm.tokenizer.token_bytes(id),
                    top: top
                        .into_iter()
                        .map(|(t, l)| TopLogprob {
                            id: t,
                            bytes: self.lm.tokenizer.token_bytes(t),
                            logprob: l,
                        })
                        .collect(),
                }),
            },
            Event::Done { finish, .. } => GenerateEvent::Done {
                finish_reason: match finish {
                    hearth_engine::FinishReason::Length => FinishReason::Length,
                    _ => FinishReason::Stop,
                },
            },
            Event::Error(m) => GenerateEvent::Error(m),
        };
        self.tx.send(ev).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Backend for LocalBackend {
    fn models(&self) -> Vec<ModelCard> {
        self.models
            .iter()
            .map(|m| ModelCard {
                id: m.id.clone(),
                context_length: m.lm.n_ctx(),
                created: m.created,
                owned_by: "hearth".into(),
            })
            .collect()
    }

    fn tokenize(
        &self,
        model: &str,
        text: &str,
        add_special: bool,
    ) -> Result<Vec<u32>, BackendError> {
        Ok(self
            .model(model)?
            .lm
            .tokenizer
            .encode(text, add_special, true))
    }

    fn detokenize(&self, model: &str, ids: &[u32]) -> Result<String, BackendError> {
        let m = self.model(model)?;
        let n = m.lm.tokenizer.vocab_size();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= n) {
            return Err(BackendError::BadRequest(format!(
                "token id {bad} is outside the vocabulary (size {n})"
            )));
        }
        Ok(m.lm.tokenizer.decode(ids, false))
    }

    fn apply_chat_template(
        &self,
        model: &str,
        messages: &[serde_json::Value],
        tools: Option<&serde_json::Value>,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, BackendError> {
        let m = self.model(model)?;
        let msgs = messages
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                serde_json::Value::Object(o) => Ok(Message(o.clone())),
                _ => Err(BackendError::BadRequest(format!(
                    "messages[{i}] is not an object"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let opts = RenderOptions {
            add_generation_prompt: true,
            tools: tools.cloned(),
            extra: extra.clone(),
        };
        m.lm.template
            .render(&msgs, &opts)
            .map_err(|e| BackendError::BadRequest(format!("chat template: {e}")))
    }

    fn generate(
        &self,
        req: GenerateRequest,
    ) -> Result<mpsc::UnboundedReceiver<GenerateEvent>, BackendError> {
        let m = self.model(&req.model)?;
        let n_vocab = m.lm.tokenizer.vocab_size();
        if let Some(bad) = req.prompt_tokens.iter().find(|&&i| i as usize >= n_vocab) {
            return Err(BackendError::BadRequest(format!(
                "token id {bad} is outside the vocabulary (size {n_vocab})"
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let p = &req.params;
        let params = hearth_engine::SamplingParams {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            repetition_penalty: p.repetition_penalty,
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            penalty_last_n: 0,
            seed: p.seed,
            logit_bias: p.logit_bias.clone(),
        };
        let r = Request {
            prompt: req.prompt_tokens,
            params,
            max_tokens: req.max_tokens,
            logprobs: req.logprobs,
            constraint: None,
            sink: Box::new(Sink {
                tx,
                lm: m.lm.clone(),
            }),
        };
        m.scheduler.submit(r).map_err(|e| match e {
            SubmitError::QueueFull(_) => BackendError::QueueFull { retry_after_s: 1 },
            SubmitError::ContextOverflow {
                prompt,
                max_tokens,
                context,
            } => BackendError::ContextOverflow {
                prompt,
                max_tokens,
                context,
            },
            SubmitError::EmptyPrompt => BackendError::BadRequest("the prompt is empty".into()),
            SubmitError::Stopped => BackendError::Internal("the engine has stopped".into()),
        })?;
        Ok(rx)
    }

    fn stats(&self) -> BackendStats {
        let (mut running, mut waiting) = (0, 0);
        let mut kv = KvStats::default();
        for m in &self.models {
            let st = &m.scheduler.stats;
            running += st.running.load(Ordering::Relaxed);
            waiting += st.waiting.load(Ordering::Relaxed);
            kv.blocks_total += st.kv_blocks_total.load(Ordering::Relaxed);
            kv.blocks_used += st.kv_blocks_used.load(Ordering::Relaxed);
            kv.blocks_cached += st.kv_blocks_cached.load(Ordering::Relaxed);
            kv.prefix_query_tokens += st.prefix_query_tokens.load(Ordering::Relaxed);
            kv.prefix_hit_tokens += st.prefix_hit_tokens.load(Ordering::Relaxed);
            kv.preemptions += st.preemptions.load(Ordering::Relaxed);
        }
        BackendStats {
            running,
            waiting,
            kv_cache_usage: (kv.blocks_total > 0)
                .then(|| kv.blocks_used as f64 / kv.blocks_total as f64),
            kv: Some(kv),
        }
    }
}
