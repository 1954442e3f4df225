//! The one trait the HTTP layer talks to.
//!
//! The server never sees tensors or the scheduler: like TGI's router
//! (`router/src/infer/mod.rs`, `trait Backend`), it validates and tokenizes a
//! request, hands an already-checked [`GenerateRequest`] to the backend and
//! turns the [`GenerateEvent`]s that come back into OpenAI JSON. The real
//! engine adapter lives elsewhere; tests drive the server with
//! [`crate::fake::FakeBackend`].
//!
//! Division of labour (decided here, so each rule has one owner):
//! - **Backend**: tokenizer, chat template, sampling, end-of-generation tokens
//!   (EOS/EOT → [`FinishReason::Stop`]), the `max_tokens` limit
//!   ([`FinishReason::Length`]), incremental detokenization (a `Token` event's
//!   `text` is the *new* text that token completes; it may be empty while a
//!   multi-byte UTF-8 character is still incomplete), its bounded queue.
//! - **Server**: validation, context-length check, stop *strings* (applied to
//!   the text stream with hold-back, see [`crate::stop`]), Hermes tool-call
//!   parsing, usage counting, metrics, SSE. When the server has what it needs
//!   (a stop string matched, the client went away) it drops the receiver; the
//!   backend must notice (`UnboundedSender::is_closed` or a failed `send`)
//!   and free the sequence.

use serde::Serialize;
use tokio::sync::mpsc;

/// One model the backend serves (`GET /v1/models`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCard {
    /// The name clients put in `"model"`.
    pub id: String,
    /// Maximum prompt + completion tokens.
    pub context_length: usize,
    /// Unix seconds (load time is fine).
    pub created: u64,
    /// Always `"hearth"` for local models; kept as a field for proxies.
    pub owned_by: String,
}

/// A model's file, for `GET /api/admin/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelDetails {
    /// Where the model was loaded from (a `.gguf` file or a Hugging Face directory).
    pub path: Option<String>,
    pub architecture: Option<String>,
    pub file_size: Option<u64>,
    /// The weight type holding most of the weight bytes (`Q4_K`, `BF16`, ...).
    pub quantization: Option<String>,
    pub memory: Option<ModelMemory>,
}

/// Memory a loaded model uses, for the admin API's model list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelMemory {
    /// Weights mapped from the model file(s), and how many of those bytes are in RAM now
    /// (`None` where the OS cannot say).
    pub weights_mapped: u64,
    pub weights_resident: Option<u64>,
    /// Weights copied into memory at load (repacked, transposed or quantized tensors).
    pub weights_owned: u64,
    /// The model's KV cache: its whole budget (allocated lazily, page by page) and the bytes
    /// of blocks in use by running sequences or kept for the prefix cache.
    pub kv_cache: u64,
    pub kv_cache_used: u64,
}

/// Sampling settings, already validated by the server (ranges checked,
/// defaults filled in). Field meanings follow the OpenAI / vLLM parameters of
/// the same names.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 1.0 disables nucleus sampling.
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    /// 0.0 disables min-p.
    pub min_p: f32,
    pub seed: Option<u64>,
    /// OpenAI semantics: subtract `presence_penalty` once from every token that
    /// appeared, and `frequency_penalty * count`.
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Multiplicative (CTRL-style) penalty; 1.0 disables it.
    pub repetition_penalty: f32,
    /// Added to the logits of these token ids (OpenAI `logit_bias`, −100..100).
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logit_bias: Vec::new(),
        }
    }
}

/// Output constraints the client asked for. Passed through untouched so a
/// later constrained-decoding (grammar) layer in the backend can honour them;
/// a backend that cannot must ignore them rather than fail (the server
/// already validated their shape).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputConstraints {
    /// The request's `response_format` object (`{"type": "json_object"}`,
    /// `{"type": "json_schema", "json_schema": {...}}`); `None` for text.
    pub response_format: Option<serde_json::Value>,
    /// The request's `tools` array, when any.
    pub tools: Option<serde_json::Value>,
    /// The request's `tool_choice` (`"auto"`, `"none"`, `"required"` or an object).
    pub tool_choice: Option<serde_json::Value>,
}

/// A validated, tokenized generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub model: String,
    pub prompt_tokens: Vec<u32>,
    pub params: SamplingParams,
    /// Generate at most this many tokens. The server has already checked
    /// `prompt_tokens.len() + max_tokens <= context_length`.
    pub max_tokens: usize,
    /// When `Some(k)`, each `Token` event carries its logprob and the top `k`
    /// alternatives (`k` may be 0: only the chosen token's logprob).
    pub logprobs: Option<usize>,
    pub constraints: OutputConstraints,
    /// Unique per generation (`chatcmpl-…-<choice>`), for logs.
    pub request_id: String,
}

/// Log-probability of a generated token and of its best alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// Natural log of the probability of the chosen token.
    pub logprob: f32,
    /// The chosen token's raw bytes (may be a partial UTF-8 sequence).
    pub bytes: Vec<u8>,
    /// Most likely tokens at this position, best first.
    pub top: Vec<TopLogprob>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopLogprob {
    pub id: u32,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// Why a generation ended, as reported by the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token was sampled.
    Stop,
    /// `max_tokens` (or the context) was reached.
    Length,
}

/// What a running generation reports, in order: zero or more `Token`s, then
/// exactly one `Done` or `Error`, then the channel closes.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerateEvent {
    Token {
        id: u32,
        /// Text this token completes (incrementally detokenized; may be empty).
        text: String,
        logprob: Option<TokenLogprob>,
    },
    Done {
        finish_reason: FinishReason,
    },
    Error(String),
}

/// Load figures the backend reports for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BackendStats {
    /// Sequences being decoded now.
    pub running: usize,
    /// Sequences admitted but waiting for a slot.
    pub waiting: usize,
    /// Fraction of KV cache in use, 0..=1, when the backend knows it.
    pub kv_cache_usage: Option<f64>,
    /// Paged KV cache and prefix cache figures, when the backend has them.
    pub kv: Option<KvStats>,
}

/// Paged KV cache figures, summed over models.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KvStats {
    pub blocks_total: usize,
    /// Blocks referenced by running sequences.
    pub blocks_used: usize,
    /// Unreferenced blocks kept for the prefix cache (evicted when space is needed).
    pub blocks_cached: usize,
    /// Prompt tokens looked up in the prefix cache, and how many were found.
    pub prefix_query_tokens: u64,
    pub prefix_hit_tokens: u64,
    /// Sequences preempted (KV blocks ran out) and recomputed later.
    pub preemptions: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    #[error("the model `{0}` does not exist")]
    UnknownModel(String),
    #[error("the server is busy: the request queue is full; retry in {retry_after_s} s")]
    QueueFull { retry_after_s: u64 },
    #[error(
        "this model's maximum context length is {context} tokens, but you requested \
         {total} tokens ({prompt} in the prompt, {max_tokens} for the completion)",
        total = prompt + max_tokens
    )]
    ContextOverflow {
        prompt: usize,
        max_tokens: usize,
        context: usize,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// How a model's conversations are written and its output read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChatFormat {
    /// The model's own (Jinja) chat template via [`Backend::apply_chat_template`]; output is
    /// plain text, with Hermes `<tool_call>` blocks when the request has tools.
    #[default]
    Jinja,
    /// OpenAI's harmony format (gpt-oss): the server renders the prompt with
    /// `hearth-harmony` and parses the output into reasoning / content / tool calls. The
    /// backend must then emit harmony's special tokens (`<|channel|>`, `<|message|>`,
    /// `<|return|>`, `<|call|>`, ...) as their literal text in `Token` events, because the
    /// parser reads the message structure from them, and must end the generation at
    /// `<|return|>` / `<|call|>` (the server also stops there, should a backend not).
    Harmony,
    /// GLM-4 and ChatGLM3 (`glm4` / `chatglm`, or a `[gMASK]<sop>` / `[gMASK]sop` template):
    /// the Jinja template as for `Jinja`, but a tool call is the function name alone on the
    /// first line of the answer and then its JSON arguments, or ChatGLM3's
    /// "```python\ntool_call(...)\n```" (`toolcall::parse_glm4`), and an answer's leading "\n" (GLM-4's
    /// generation prompt is a bare `<|assistant|>`) is dropped.
    Glm4,
}

/// The engine as the HTTP layer sees it. Synchronous methods may be CPU-bound
/// (tokenizing a long prompt, rendering a template): the server calls them on
/// tokio's blocking pool, never on the async workers.
pub trait Backend: Send + Sync + 'static {
    /// Models served, in a stable order; the first is the default for
    /// endpoints where `model` is optional (`/tokenize`).
    fn models(&self) -> Vec<ModelCard>;

    fn tokenize(
        &self,
        model: &str,
        text: &str,
        add_special: bool,
    ) -> Result<Vec<u32>, BackendError>;

    /// Tokenize a rendered chat prompt in which `literal` (sorted byte ranges of `text`) hold
    /// the message contents. Special tokens count only in the template's own text: role
    /// markers a client types into a message (`<|im_start|>system`, `<|start|>`, ...) stay
    /// plain text and cannot forge a turn. The default, for backends without special tokens,
    /// is [`Backend::tokenize`].
    fn tokenize_chat(
        &self,
        model: &str,
        text: &str,
        literal: &[std::ops::Range<usize>],
    ) -> Result<Vec<u32>, BackendError> {
        let _ = literal;
        self.tokenize(model, text, false)
    }

    /// Whether `text` holds special-token text of `model` (text that tokenizes differently
    /// with and without special-token parsing).
    fn has_special_text(&self, model: &str, text: &str) -> Result<bool, BackendError> {
        let _ = (model, text);
        Ok(false)
    }

    fn detokenize(&self, model: &str, ids: &[u32]) -> Result<String, BackendError>;

    /// Render the model's chat template over `messages` (OpenAI message
    /// objects; `content` already flattened to a string or null), with the
    /// generation prompt appended. `tools` is the request's `tools` array;
    /// `extra` holds `chat_template_kwargs` (e.g. `enable_thinking`).
    fn apply_chat_template(
        &self,
        model: &str,
        messages: &[serde_json::Value],
        tools: Option<&serde_json::Value>,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, BackendError>;

    /// Start a generation. Events arrive on the returned channel; dropping the
    /// receiver cancels the generation (the backend must notice — a failed
    /// `send` or `UnboundedSender::is_closed` — and free its resources).
    /// Returns `QueueFull` instead of queueing without bound.
    ///
    /// The channel is unbounded on purpose (as TGI's response streams are):
    /// the engine loop must never wait on one slow client, and a
    /// generation's events are bounded by `max_tokens` anyway.
    ///
    /// Called on an async worker inside a tokio runtime: it must not block
    /// (enqueue to the engine loop and return; never run the model here).
    fn generate(
        &self,
        req: GenerateRequest,
    ) -> Result<mpsc::UnboundedReceiver<GenerateEvent>, BackendError>;

    /// The chat format of `model` (unknown models: [`ChatFormat::Jinja`]; the request then
    /// fails on its model lookup anyway).
    fn chat_format(&self, _model: &str) -> ChatFormat {
        ChatFormat::Jinja
    }

    /// Load figures for `/metrics`.
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }

    /// What the admin pages show of a model: architecture, file size, quantization (`None`
    /// when unknown).
    fn model_details(&self, _model: &str) -> Option<ModelDetails> {
        None
    }

    /// `Err(reason)` while the backend cannot serve (loading, broken);
    /// `/health` then answers 503.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Loading and unloading models at run time (`/admin/v1/models`); `None` (the default)
    /// when this backend's set of models is fixed.
    fn model_admin(&self) -> Option<&dyn ModelAdmin> {
        None
    }
}

/// Why a model could not be loaded, unloaded or made the default.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelAdminError {
    #[error("the model `{0}` does not exist")]
    NotFound(String),
    #[error("a model with the id `{0}` is already served")]
    Exists(String),
    /// The file could not be read as a model: the engine's message, which names the file.
    #[error("{0}")]
    Load(String),
}

/// A backend whose models change at run time. The set of models is read on every request
/// (a lookup by id), so an implementation swaps it whole (copy on write) rather than locking
/// it for the length of a generation.
pub trait ModelAdmin: Send + Sync {
    /// Load the model at `path` (a `.gguf` file or a Hugging Face directory, already resolved
    /// by the server) and serve it as `id`, last in [`Backend::models`]. Slow and blocking
    /// (it maps and checks the file): the server calls it on the blocking pool.
    fn load(&self, id: &str, path: &std::path::Path) -> Result<ModelCard, ModelAdminError>;

    /// Stop serving `id`: new requests for it fail with [`BackendError::UnknownModel`]. The
    /// generations it runs finish first (`cancel: false`) or end now with a
    /// [`GenerateEvent::Error`] (`cancel: true`); either way its memory (weights, KV cache)
    /// is freed once the last one has ended.
    fn unload(&self, id: &str, cancel: bool) -> Result<(), ModelAdminError>;

    /// Make `id` the default model: first in [`Backend::models`].
    fn set_default(&self, id: &str) -> Result<(), ModelAdminError>;
}
