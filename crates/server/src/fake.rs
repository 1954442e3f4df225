//! A deterministic stand-in for the engine, for tests and demos.
//!
//! Vocabulary: ids 0..=255 are single bytes (so any text tokenizes and
//! round-trips), 256 is BOS, 257 is EOS, and 258.. are whole words from
//! [`WORDS`]. A generation either replays a fixed `script` byte by byte
//! (to exercise stop strings, tool calls, multi-byte UTF-8) or cycles
//! through the words starting at a position derived from the prompt and
//! seed. It sleeps `token_delay` per token, so streaming, concurrency and
//! cancellation can be observed, and counts started / finished / cancelled
//! generations so tests can check that a dropped receiver stops it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::backend::{
    Backend, BackendError, BackendStats, ChatFormat, FinishReason, GenerateEvent, GenerateRequest,
    ModelAdmin, ModelAdminError, ModelCard, TokenLogprob, TopLogprob,
};

pub const BOS: u32 = 256;
pub const EOS: u32 = 257;
const WORD_BASE: u32 = 258;
pub const WORDS: &[&str] = &[
    "The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".",
];

#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub model: String,
    pub context_length: usize,
    pub token_delay: Duration,
    /// Replay this text (one byte per token), then EOS.
    pub script: Option<String>,
    /// Without a script: emit EOS after this many words (else run to max_tokens).
    pub eos_after: Option<usize>,
    /// Concurrent generations accepted; more get `QueueFull`.
    pub capacity: usize,
    /// Send `GenerateEvent::Error` after this many tokens.
    pub fail_after: Option<usize>,
    /// When set, `health()` reports this reason.
    pub unhealthy: Option<String>,
    /// What [`Backend::chat_format`] reports: `Harmony` makes the server render harmony
    /// prompts and parse the `script` as harmony output (write its special tokens literally).
    pub chat_format: ChatFormat,
    /// How long [`ModelAdmin::load`] takes (to observe the `loading` state).
    pub load_delay: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            model: "fake-model".into(),
            context_length: 256,
            token_delay: Duration::from_millis(0),
            script: None,
            eos_after: None,
            capacity: 64,
            fail_after: None,
            unhealthy: None,
            chat_format: ChatFormat::Jinja,
            load_delay: Duration::from_millis(0),
        }
    }
}

#[derive(Debug, Default)]
pub struct FakeCounters {
    pub started: AtomicUsize,
    /// Ran to EOS / max_tokens and delivered the final event.
    pub finished: AtomicUsize,
    /// Noticed the receiver was dropped and stopped early.
    pub cancelled: AtomicUsize,
    pub active: AtomicUsize,
}

/// One served model: its id and its unload-with-cancel flag (see [`ModelAdmin::unload`]).
struct Served {
    id: String,
    cancelled: Arc<AtomicBool>,
}

impl Served {
    fn new(id: &str) -> Self {
        Served {
            id: id.into(),
            cancelled: Arc::default(),
        }
    }
}

pub struct FakeBackend {
    pub config: FakeConfig,
    /// `config.model` at first; [`ModelAdmin`] loads more (every model behaves the same).
    models: Mutex<Vec<Served>>,
    pub counters: Arc<FakeCounters>,
    /// The last request `generate` received (to check what the server sent).
    pub last_request: Mutex<Option<GenerateRequest>>,
    created: u64,
}

impl FakeBackend {
    pub fn new(config: FakeConfig) -> Self {
        FakeBackend {
            models: Mutex::new(vec![Served::new(&config.model)]),
            config,
            counters: Arc::default(),
            last_request: Mutex::new(None),
            created: 1_700_000_000,
        }
    }

    fn served(&self) -> std::sync::MutexGuard<'_, Vec<Served>> {
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The model's cancel flag, or `UnknownModel`.
    fn check_model(&self, model: &str) -> Result<Arc<AtomicBool>, BackendError> {
        self.served()
            .iter()
            .find(|m| m.id == model)
            .map(|m| m.cancelled.clone())
            .ok_or_else(|| BackendError::UnknownModel(model.into()))
    }

    fn card(&self, id: &str) -> ModelCard {
        ModelCard {
            id: id.into(),
            context_length: self.config.context_length,
            created: self.created,
            owned_by: "hearth".into(),
        }
    }

    /// The bytes token `id` stands for (specials render as nothing, as
    /// llama.cpp does when not asked to render special tokens).
    pub fn token_bytes(id: u32) -> Vec<u8> {
        match id {
            0..=255 => vec![id as u8],
            BOS | EOS => Vec::new(),
            _ => WORDS
                .get((id - WORD_BASE) as usize)
                .map(|w| w.as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// The token sequence a request will produce (before EOS / max_tokens).
    fn plan(&self, req: &GenerateRequest) -> (Vec<u32>, bool) {
        if let Some(script) = &self.config.script {
            return (script.bytes().map(u32::from).collect(), true);
        }
        let start = req
            .prompt_tokens
            .iter()
            .map(|&t| t as u64)
            .sum::<u64>()
            .wrapping_add(req.params.seed.unwrap_or(0)) as usize;
        let len = self
            .config
            .eos_after
            .unwrap_or(req.max_tokens)
            .min(req.max_tokens);
        let ids = (0..len)
            .map(|i| WORD_BASE + ((start + i) % WORDS.len()) as u32)
            .collect();
        (ids, self.config.eos_after.is_some())
    }
}

impl Backend for FakeBackend {
    fn models(&self) -> Vec<ModelCard> {
        self.served().iter().map(|m| self.card(&m.id)).collect()
    }

    fn tokenize(
        &self,
        model: &str,
        text: &str,
        add_special: bool,
    ) -> Result<Vec<u32>, BackendError> {
        self.check_model(model)?;
        let mut ids = Vec::with_capacity(text.len() + 1);
        if add_special {
            ids.push(BOS);
        }
        ids.extend(text.bytes().map(u32::from));
        Ok(ids)
    }

    fn detokenize(&self, model: &str, ids: &[u32]) -> Result<String, BackendError> {
        self.check_model(model)?;
        let mut bytes = Vec::new();
        for &id in ids {
            if id >= WORD_BASE + WORDS.len() as u32 {
                return Err(BackendError::BadRequest(format!(
                    "token id {id} is out of the vocabulary"
                )));
            }
            bytes.extend(Self::token_bytes(id));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn apply_chat_template(
        &self,
        model: &str,
        messages: &[serde_json::Value],
        tools: Option<&serde_json::Value>,
        _extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, BackendError> {
        self.check_model(model)?;
        let mut out = String::new();
        if let Some(t) = tools {
            out.push_str(&format!("<|tools|>\n{t}\n"));
        }
        for m in messages {
            let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("?");
            let content = m.get("content").and_then(|c| c.as_str()).unwrap_or("");
            out.push_str(&format!("<|{role}|>\n{content}\n"));
        }
        out.push_str("<|assistant|>\n");
        Ok(out)
    }

    fn generate(
        &self,
        req: GenerateRequest,
    ) -> Result<mpsc::UnboundedReceiver<GenerateEvent>, BackendError> {
        let unloaded = self.check_model(&req.model)?;
        let model = req.model.clone();
        let c = &self.counters;
        // Reserve a slot atomically so concurrent callers cannot overshoot.
        let reserved = c
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| {
                (a < self.config.capacity).then_some(a + 1)
            });
        if reserved.is_err() {
            return Err(BackendError::QueueFull { retry_after_s: 1 });
        }
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(h) => h,
            Err(_) => {
                c.active.fetch_sub(1, Ordering::SeqCst);
                return Err(BackendError::Internal(
                    "FakeBackend::generate needs a tokio runtime".into(),
                ));
            }
        };
        c.started.fetch_add(1, Ordering::SeqCst);
        *self.last_request.lock().unwrap_or_else(|p| p.into_inner()) = Some(req.clone());

        let (ids, ends_with_eos) = self.plan(&req);
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = self.counters.clone();
        let delay = self.config.token_delay;
        let fail_after = self.config.fail_after;
        let logprobs = req.logprobs;
        let max_tokens = req.max_tokens;
        runtime.spawn(async move {
            struct Slot(Arc<FakeCounters>);
            impl Drop for Slot {
                fn drop(&mut self) {
                    self.0.active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _slot = Slot(counters.clone());
            let cancelled = || {
                counters.cancelled.fetch_add(1, Ordering::SeqCst);
            };
            // Incremental detokenization: hold bytes until they form whole
            // UTF-8 characters, like a real engine must.
            let mut pending: Vec<u8> = Vec::new();
            for (i, &id) in ids.iter().take(max_tokens).enumerate() {
                if fail_after == Some(i) {
                    let _ = tx.send(GenerateEvent::Error("injected failure".into()));
                    return;
                }
                if unloaded.load(Ordering::SeqCst) {
                    let _ = tx.send(GenerateEvent::Error(format!(
                        "the model `{model}` was unloaded"
                    )));
                    return cancelled();
                }
                tokio::select! {
                    _ = tx.closed() => return cancelled(),
                    _ = tokio::time::sleep(delay) => {}
                }
                let bytes = FakeBackend::token_bytes(id);
                pending.extend(&bytes);
                let text = match std::str::from_utf8(&pending) {
                    Ok(s) => {
                        let s = s.to_string();
                        pending.clear();
                        s
                    }
                    Err(e) if e.error_len().is_none() => {
                        // Incomplete trailing character: emit the valid prefix.
                        let valid = e.valid_up_to();
                        let s = String::from_utf8_lossy(&pending[..valid]).into_owned();
                        pending.drain(..valid);
                        s
                    }
                    Err(_) => String::from_utf8_lossy(&std::mem::take(&mut pending)).into_owned(),
                };
                let logprob = logprobs.map(|k| fake_logprob(id, i, k));
                if tx.send(GenerateEvent::Token { id, text, logprob }).is_err() {
                    return cancelled();
                }
            }
            let finish_reason = if ends_with_eos && ids.len() < max_tokens {
                FinishReason::Stop
            } else {
                FinishReason::Length
            };
            if tx.send(GenerateEvent::Done { finish_reason }).is_ok() {
                counters.finished.fetch_add(1, Ordering::SeqCst);
            } else {
                cancelled();
            }
        });
        Ok(rx)
    }

    fn chat_format(&self, _model: &str) -> ChatFormat {
        self.config.chat_format
    }

    fn health(&self) -> Result<(), String> {
        match &self.config.unhealthy {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    fn model_admin(&self) -> Option<&dyn ModelAdmin> {
        Some(self)
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            running: self.counters.active.load(Ordering::SeqCst),
            waiting: 0,
            kv_cache_usage: None,
            kv: None,
        }
    }
}

/// A fake "model file" is any file that starts with the GGUF magic; others fail as a
/// corrupt file does in the engine, with a message naming the file.
impl ModelAdmin for FakeBackend {
    fn load(&self, id: &str, path: &std::path::Path) -> Result<ModelCard, ModelAdminError> {
        std::thread::sleep(self.config.load_delay);
        let bytes = std::fs::read(path)
            .map_err(|e| ModelAdminError::Load(format!("{}: {e}", path.display())))?;
        if !bytes.starts_with(b"GGUF") {
            return Err(ModelAdminError::Load(format!(
                "{}: not a GGUF file (bad magic)",
                path.display()
            )));
        }
        let mut models = self.served();
        if models.iter().any(|m| m.id == id) {
            return Err(ModelAdminError::Exists(id.into()));
        }
        models.push(Served::new(id));
        Ok(self.card(id))
    }

    fn unload(&self, id: &str, cancel: bool) -> Result<(), ModelAdminError> {
        let mut models = self.served();
        let i = models
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| ModelAdminError::NotFound(id.into()))?;
        let gone = models.remove(i);
        gone.cancelled.store(cancel, Ordering::SeqCst);
        Ok(())
    }

    fn set_default(&self, id: &str) -> Result<(), ModelAdminError> {
        let mut models = self.served();
        let i = models
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| ModelAdminError::NotFound(id.into()))?;
        let m = models.remove(i);
        models.insert(0, m);
        Ok(())
    }
}

/// Deterministic made-up logprobs: the chosen token first, then the next
/// word ids, each less likely than the one before.
fn fake_logprob(id: u32, position: usize, k: usize) -> TokenLogprob {
    let chosen = -0.25 * (1 + position % 4) as f32;
    let top = (0..k)
        .map(|j| {
            let alt = if j == 0 {
                id
            } else {
                WORD_BASE + ((id as usize + j) % WORDS.len()) as u32
            };
            TopLogprob {
                id: alt,
                bytes: FakeBackend::token_bytes(alt),
                logprob: chosen - j as f32,
            }
        })
        .collect();
    TokenLogprob {
        logprob: chosen,
        bytes: FakeBackend::token_bytes(id),
        top,
    }
}
