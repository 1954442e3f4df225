//! `LocalBackend`: models run in this process by Hearth's engine, one continuous-batching
//! scheduler per model. This is the only module of the server that knows the engine, and it
//! only uses the engine's public API (tokenizer, template, scheduler), never tensors.

use crate::backend::{
    Backend, BackendError, BackendStats, ChatFormat, FinishReason, GenerateEvent, GenerateRequest,
    KvStats, ModelAdmin, ModelAdminError, ModelCard, OutputConstraints, TokenLogprob, TopLogprob,
};
use arc_swap::ArcSwap;
use hearth_constrain::{ConstrainError, ConstraintFactory, ToolChoice};
use hearth_engine::sample::TokenConstraint;
use hearth_engine::scheduler::{
    Event, EventSink, Request, Scheduler, SchedulerConfig, SubmitError,
};
use hearth_engine::template::{Message, RenderOptions};
use hearth_engine::weights::Quantize;
use hearth_engine::LoadedModel;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc;

pub struct LocalModel {
    pub id: String,
    pub lm: Arc<LoadedModel>,
    pub scheduler: Scheduler,
    pub created: u64,
    /// Structured-output constraint builder for this model's tokenizer (see [`constraint_for`]).
    constrain: Arc<OnceLock<Result<ConstraintFactory, String>>>,
    /// Set by an unload with `cancel`: every sink of this model reports closed, so the
    /// scheduler drops (and frees the KV blocks of) its sequences at its next step.
    cancelled: Arc<AtomicBool>,
}

impl LocalModel {
    fn start(id: String, lm: Arc<LoadedModel>, cfg: &SchedulerConfig) -> Self {
        LocalModel {
            id,
            scheduler: Scheduler::start(lm.clone(), cfg.clone()),
            constrain: prebuild_constraints(&lm),
            created: crate::ids::unix_now(),
            cancelled: Arc::default(),
            lm,
        }
    }
}

/// The models, in order (the first is the default). Requests read the list through an
/// [`ArcSwap`] (no lock; a request keeps the `Arc<LocalModel>` it looked up, so a model
/// unloaded meanwhile serves it to the end); loading, unloading and reordering replace the
/// whole list, one change at a time (`admin`).
pub struct LocalBackend {
    models: ArcSwap<Vec<Arc<LocalModel>>>,
    cfg: SchedulerConfig,
    admin: Mutex<()>,
    /// How models loaded through the admin API are quantized (`hearth serve --quantize`).
    quantize: Option<Quantize>,
}

impl LocalBackend {
    /// Start a scheduler for each (id, model).
    pub fn new(models: Vec<(String, Arc<LoadedModel>)>, cfg: SchedulerConfig) -> Self {
        let models = models
            .into_iter()
            .map(|(id, lm)| Arc::new(LocalModel::start(id, lm, &cfg)))
            .collect();
        LocalBackend {
            models: ArcSwap::from_pointee(models),
            cfg,
            admin: Mutex::new(()),
            quantize: None,
        }
    }

    /// Quantize the models the admin API loads as the command line's models were.
    pub fn with_quantize(mut self, quantize: Option<Quantize>) -> Self {
        self.quantize = quantize;
        self
    }

    fn model(&self, id: &str) -> Result<Arc<LocalModel>, BackendError> {
        self.models
            .load()
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or_else(|| BackendError::UnknownModel(id.to_string()))
    }

    /// Replace the model list with `f(current)` (one admin change at a time).
    fn change<T>(
        &self,
        f: impl FnOnce(&[Arc<LocalModel>]) -> Result<(Vec<Arc<LocalModel>>, T), ModelAdminError>,
    ) -> Result<T, ModelAdminError> {
        let _one = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let (next, out) = f(&self.models.load())?;
        self.models.store(Arc::new(next));
        Ok(out)
    }
}

impl ModelAdmin for LocalBackend {
    fn load(&self, id: &str, path: &std::path::Path) -> Result<ModelCard, ModelAdminError> {
        if self.model(id).is_ok() {
            return Err(ModelAdminError::Exists(id.into()));
        }
        // Outside the admin lock: loading takes seconds, and unloads or other loads need not
        // wait for it (the id is checked again before the list changes).
        let lm = LoadedModel::load_quantized(path, self.quantize)
            .map_err(|e| ModelAdminError::Load(e.to_string()))?;
        tracing::info!(
            "model '{id}': {} ({}, {} layers, context {}) loaded in {:.2}s",
            lm.path.display(),
            lm.model.info().arch,
            lm.model.info().n_layer,
            lm.n_ctx(),
            lm.load_s
        );
        self.change(|cur| {
            if cur.iter().any(|m| m.id == id) {
                return Err(ModelAdminError::Exists(id.into()));
            }
            let m = Arc::new(LocalModel::start(id.into(), Arc::new(lm), &self.cfg));
            let card = card_of(&m);
            let mut next = cur.to_vec();
            next.push(m);
            Ok((next, card))
        })
    }

    fn unload(&self, id: &str, cancel: bool) -> Result<(), ModelAdminError> {
        let gone = self.change(|cur| {
            let i = cur
                .iter()
                .position(|m| m.id == id)
                .ok_or_else(|| ModelAdminError::NotFound(id.into()))?;
            let mut next = cur.to_vec();
            let gone = next.remove(i);
            Ok((next, gone))
        })?;
        if cancel {
            gone.cancelled.store(true, Ordering::Relaxed);
        }
        tracing::info!(
            "model '{id}' unloaded{}",
            if cancel {
                " (its generations cancelled)"
            } else {
                ""
            }
        );
        // Dropping the last `Arc` drops the scheduler's channel: its engine thread finishes
        // what it runs, then ends and frees the weights and the KV cache.
        Ok(())
    }

    fn set_default(&self, id: &str) -> Result<(), ModelAdminError> {
        self.change(|cur| {
            let i = cur
                .iter()
                .position(|m| m.id == id)
                .ok_or_else(|| ModelAdminError::NotFound(id.into()))?;
            let mut next = cur.to_vec();
            let m = next.remove(i);
            next.insert(0, m);
            Ok((next, ()))
        })
    }
}

fn card_of(m: &LocalModel) -> ModelCard {
    ModelCard {
        id: m.id.clone(),
        context_length: m.lm.n_ctx(),
        created: m.created,
        owned_by: "hearth".into(),
    }
}

/// Build the model's [`ConstraintFactory`] on a background thread at load: it walks the whole
/// vocabulary (0.2-0.5 s for SmolLM2's 49k tokens, ~3 s for Gemma 3's 262k), which must not
/// stall the async worker that handles the first structured request. A request that arrives
/// earlier waits in `OnceLock::get_or_init` for this thread to finish, then shares its result.
fn prebuild_constraints(lm: &Arc<LoadedModel>) -> Arc<OnceLock<Result<ConstraintFactory, String>>> {
    let cell = Arc::new(OnceLock::new());
    let (c, lm) = (cell.clone(), lm.clone());
    let spawned = std::thread::Builder::new()
        .name("hearth-constrain-init".into())
        .spawn(move || {
            c.get_or_init(|| build_factory(&lm));
        });
    if let Err(e) = spawned {
        tracing::warn!("structured output: no thread to prebuild the token trie ({e}); building it on first use");
    }
    cell
}

fn build_factory(lm: &LoadedModel) -> Result<ConstraintFactory, String> {
    let t0 = std::time::Instant::now();
    let r = ConstraintFactory::new(&lm.tokenizer).map_err(|e| e.to_string());
    tracing::debug!(
        elapsed_ms = t0.elapsed().as_secs_f64() * 1e3,
        ok = r.is_ok(),
        "structured output: token trie built"
    );
    r
}

/// The token constraint a request asks for, if any: a forced tool call (`tool_choice`
/// `"required"` or a named function, as vLLM enforces them) takes precedence over
/// `response_format` (`json_object`, `json_schema`). The server has already checked the
/// shapes of these fields; schema contents are checked here, when the grammar is compiled, and
/// a bad one is a 400 naming the field.
fn constraint_for(
    m: &LocalModel,
    c: &OutputConstraints,
) -> Result<Option<Box<dyn TokenConstraint>>, BackendError> {
    let forced = match &c.tool_choice {
        Some(Value::String(s)) if s == "required" => Some(ToolChoice::Required),
        Some(Value::Object(o)) => match o.get("function").and_then(|f| f.get("name")) {
            Some(Value::String(name)) => Some(ToolChoice::Named(name.clone())),
            _ => {
                return Err(BackendError::BadRequest(
                    "Invalid `tool_choice.function.name`: a named tool choice needs \
                     {\"type\": \"function\", \"function\": {\"name\": ...}}."
                        .into(),
                ))
            }
        },
        _ => None,
    };
    enum Want<'a> {
        Tool(&'a [Value], ToolChoice),
        Schema(&'a Value),
        Object,
    }
    let want = if let Some(choice) = forced {
        match c.tools.as_ref().and_then(Value::as_array) {
            Some(tools) if !tools.is_empty() => Want::Tool(tools, choice),
            _ => {
                return Err(BackendError::BadRequest(
                    "Invalid `tool_choice`: a required or named tool choice needs `tools`.".into(),
                ))
            }
        }
    } else {
        let Some(rf) = &c.response_format else {
            return Ok(None);
        };
        match rf.get("type").and_then(Value::as_str) {
            Some("json_object") => Want::Object,
            // OpenAI makes `schema` optional: without one, any JSON object.
            Some("json_schema") => match rf.pointer("/json_schema/schema") {
                Some(s) => Want::Schema(s),
                None => Want::Object,
            },
            _ => return Ok(None),
        }
    };
    let f = m
        .constrain
        .get_or_init(|| build_factory(&m.lm))
        .as_ref()
        .map_err(|e| {
            BackendError::BadRequest(format!(
                "structured output is not available for the model `{}`: {e}",
                m.id
            ))
        })?;
    // gpt-oss: the constrained text must be a harmony message for the harmony parser.
    let harmony = chat_format_of(&m.lm) == ChatFormat::Harmony;
    let built = match (want, harmony) {
        (Want::Tool(tools, choice), false) => f.tool_call(tools, &choice),
        (Want::Tool(tools, choice), true) => f.tool_call_harmony(tools, &choice),
        (Want::Schema(s), false) => f.json_schema(s),
        (Want::Schema(s), true) => f.json_schema_harmony(s),
        (Want::Object, false) => f.json_object(),
        (Want::Object, true) => f.json_schema_harmony(&serde_json::json!({"type": "object"})),
    };
    built.map(Some).map_err(|e| match e {
        ConstrainError::InvalidSchema(msg) => BackendError::BadRequest(format!(
            "Invalid `response_format.json_schema.schema`: {msg}"
        )),
        ConstrainError::InvalidTool { index, reason } => {
            BackendError::BadRequest(format!("Invalid `tools[{index}]`: {reason}"))
        }
        ConstrainError::UnknownTool(_) => {
            BackendError::BadRequest(format!("Invalid `tool_choice`: {e}"))
        }
        other => BackendError::Internal(format!("structured output: {other}")),
    })
}

/// A null `content` becomes the message's tool calls as Hermes blocks
/// (`<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>`, one per line), or "".
fn tool_calls_as_content(mut m: Message) -> Message {
    if m.0.get("content") != Some(&Value::Null) {
        return m;
    }
    let calls = m.0.get("tool_calls").and_then(Value::as_array);
    let text = calls
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let f = c.get("function")?;
            let call = serde_json::json!({
                "name": f.get("name")?,
                "arguments": f.get("arguments").cloned().unwrap_or(Value::Null),
            });
            Some(format!(
                "{}\n{call}\n{}",
                crate::toolcall::OPEN,
                crate::toolcall::CLOSE
            ))
        })
        .collect::<Vec<_>>()
        .join("\n");
    m.0.insert("content".into(), Value::String(text));
    m
}

struct Sink {
    tx: mpsc::UnboundedSender<GenerateEvent>,
    lm: Arc<LoadedModel>,
    /// Harmony models: the engine's stream decoder skips special tokens, but the server's
    /// harmony parser reads the message structure from them, so their text is put back here.
    harmony: bool,
    /// The model's unload-with-cancel flag ([`LocalModel::cancelled`]), and whether this
    /// sequence was told (one `Error` event, then the channel closes).
    cancelled: Arc<AtomicBool>,
    told: AtomicBool,
    model: String,
}

impl Sink {
    /// Whether the model was unloaded with `cancel`; the first call that sees it sends the
    /// client its error.
    fn unloaded(&self) -> bool {
        if !self.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        if !self.told.swap(true, Ordering::Relaxed) {
            let _ = self.tx.send(GenerateEvent::Error(format!(
                "the model `{}` was unloaded",
                self.model
            )));
        }
        true
    }
}

/// [`ChatFormat::Harmony`] for gpt-oss (by architecture, or a template that writes harmony's
/// `<|channel|>` token, e.g. a fine-tune under another architecture name); [`ChatFormat::Glm4`]
/// for GLM-4 and ChatGLM3 (by architecture `glm4` / `chatglm`, or their `[gMASK]<sop>` /
/// `[gMASK]sop` templates): both answer after a bare `<|assistant|>` and name a called tool on
/// the turn's first line.
pub fn chat_format_of(lm: &LoadedModel) -> ChatFormat {
    let arch = lm.file.architecture().unwrap_or("");
    let template = lm.template_source.as_deref().unwrap_or("");
    if arch == "gpt-oss" || template.contains(hearth_harmony::tokens::CHANNEL) {
        ChatFormat::Harmony
    } else if matches!(arch, "glm4" | "chatglm")
        || template.contains("[gMASK]<sop>")
        || template.contains("[gMASK]sop")
    {
        ChatFormat::Glm4
    } else {
        ChatFormat::Jinja
    }
}

impl EventSink for Sink {
    fn send(&mut self, e: Event) -> bool {
        if self.unloaded() {
            return false;
        }
        let ev = match e {
            Event::Token {
                id,
                mut text,
                logprob,
            } => GenerateEvent::Token {
                id,
                text: {
                    // The decoder appended nothing for a special token (pending UTF-8 bytes
                    // it flushes come first), and the EOG token (`<|return|>`/`<|call|>`)
                    // too: the parser needs it to tell a final answer from a tool call.
                    if self.harmony && self.lm.tokenizer.is_special(id) {
                        text.push_str(self.lm.tokenizer.token_text(id));
                    }
                    text
                },
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
        self.tx.is_closed() || self.unloaded()
    }
}

impl Backend for LocalBackend {
    fn models(&self) -> Vec<ModelCard> {
        self.models.load().iter().map(|m| card_of(m)).collect()
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

    fn tokenize_chat(
        &self,
        model: &str,
        text: &str,
        literal: &[std::ops::Range<usize>],
    ) -> Result<Vec<u32>, BackendError> {
        Ok(self
            .model(model)?
            .lm
            .tokenizer
            .encode_with_literals(text, false, literal))
    }

    fn has_special_text(&self, model: &str, text: &str) -> Result<bool, BackendError> {
        let m = self.model(model)?;
        let tk = &m.lm.tokenizer;
        Ok(tk.encode(text, false, true) != tk.encode(text, false, false))
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
        let first = m.lm.template.render(&msgs, &opts);
        match first {
            Err(e)
                if msgs
                    .iter()
                    .any(|m| m.0.get("content") == Some(&Value::Null)) =>
            {
                // Templates without tool support (SmolLM2's, plain ChatML) concatenate
                // `content` and fail on the null content of an assistant tool-call turn, which
                // OpenAI clients send back verbatim. Retry with the calls written into the
                // content in the Hermes format the model was constrained to (vLLM gives such
                // templates "" instead; the calls keep the model aware of what it asked for).
                let msgs: Vec<Message> = msgs.into_iter().map(tool_calls_as_content).collect();
                m.lm.template
                    .render(&msgs, &opts)
                    .map_err(|_| BackendError::BadRequest(format!("chat template: {e}")))
            }
            r => r.map_err(|e| BackendError::BadRequest(format!("chat template: {e}"))),
        }
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
        let constraint = constraint_for(&m, &req.constraints)?;
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
            constraint,
            sink: Box::new(Sink {
                tx,
                lm: m.lm.clone(),
                harmony: chat_format_of(&m.lm) == ChatFormat::Harmony,
                cancelled: m.cancelled.clone(),
                told: AtomicBool::new(false),
                model: m.id.clone(),
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

    fn chat_format(&self, model: &str) -> ChatFormat {
        self.model(model)
            .map(|m| chat_format_of(&m.lm))
            .unwrap_or_default()
    }

    fn model_details(&self, model: &str) -> Option<crate::backend::ModelDetails> {
        let m = self.model(model).ok()?;
        let src = &m.lm.file;
        let mut by_type: std::collections::BTreeMap<String, usize> = Default::default();
        for t in src.tensors() {
            *by_type.entry(t.dtype.to_string()).or_default() += t.n_bytes;
        }
        // The file's own name for its quantization ("Q4_K_M") when it has one; else the
        // tensor type holding the most bytes.
        let quantization = src
            .get_u64(hearth_engine::formats::ftype::KEY)
            .and_then(hearth_engine::formats::ftype::name)
            .map(String::from)
            .or_else(|| by_type.into_iter().max_by_key(|(_, n)| *n).map(|(t, _)| t));
        let mem = src.memory();
        let st = &m.scheduler.stats;
        let block = st.kv_block_bytes.load(Ordering::Relaxed) as u64;
        let blocks = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
        let memory = crate::backend::ModelMemory {
            weights_mapped: mem.mapped as u64,
            weights_resident: mem.resident.map(|r| r as u64),
            weights_owned: (mem.owned + m.lm.quantized_bytes) as u64,
            kv_cache: blocks(&st.kv_blocks_total) * block,
            kv_cache_used: (blocks(&st.kv_blocks_used) + blocks(&st.kv_blocks_cached)) * block,
        };
        Some(crate::backend::ModelDetails {
            path: Some(m.lm.path.display().to_string()),
            architecture: src.architecture().map(String::from),
            file_size: Some(src.file_len() as u64),
            quantization,
            memory: Some(memory),
        })
    }

    fn model_admin(&self) -> Option<&dyn ModelAdmin> {
        Some(self)
    }

    fn stats(&self) -> BackendStats {
        let (mut running, mut waiting) = (0, 0);
        let mut kv = KvStats::default();
        for m in self.models.load().iter() {
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
