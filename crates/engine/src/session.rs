//! A loaded model (weights, tokenizer, chat template) and a single-sequence generator on top of
//! it, used by `hearth run` and `hearth bench`. The server's scheduler drives the same `Model`
//! with batches of many sequences.

use crate::batch::Batch;
use crate::error::EngineError;
use crate::hf;
use crate::kv::{KvBatch, KvStore, KvType, BLOCK_SIZE};
use crate::models::{self, Ctx, Model};
use crate::sample::{Sampler, SamplingParams};
use crate::source::ModelSource;
use hearth_template::{ChatTemplate, Fallback};
use hearth_tokenizer::{StreamDecoder, Tokenizer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub struct LoadedModel {
    /// The `.gguf` file, or the Hugging Face directory.
    pub path: PathBuf,
    pub file: Arc<ModelSource>,
    pub model: Box<dyn Model>,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// The template's Jinja source, or None when the built-in fallback is used.
    pub template_source: Option<String>,
    pub load_s: f64,
    /// Bytes of weight matrices quantized into memory at load (`--quantize`).
    pub quantized_bytes: usize,
}

/// Give freed heap pages back to the OS. glibc's `free` returns only the top of the heap, so the
/// thousands of small vocabulary strings freed by `release_vocab` would stay resident below
/// the tokenizer's newer allocations; `malloc_trim` releases every whole free page.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own allocator state; no Rust invariant involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl LoadedModel {
    /// Load a `.gguf` file, a Hugging Face directory (config.json + safetensors), or a
    /// directory holding exactly one `.gguf` file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, EngineError> {
        Self::load_quantized(path, None)
    }

    /// [`LoadedModel::load`], quantizing F32/F16/BF16 weight matrices once while loading
    /// (`crate::weights::Quantize`); already quantized tensors are kept as they are.
    pub fn load_quantized(
        path: impl AsRef<Path>,
        quantize: Option<crate::weights::Quantize>,
    ) -> Result<Self, EngineError> {
        let t0 = Instant::now();
        let path = path.as_ref().to_path_buf();
        let mut src = open_source(&path)?;
        let mut tokenizer = match src.gguf() {
            Some(g) => Tokenizer::from_gguf(g),
            // tokenizer.json, with BOS/EOS and the end-of-generation set from
            // tokenizer_config.json and generation_config.json beside it.
            None => Tokenizer::from_tokenizer_json(&src.path),
        }
        .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", src.path.display())))?;
        // Before the weights are touched, so the parsed vocabulary's pages are given back
        // before the mapped weights become resident (peak RSS, not just final RSS).
        src.release_vocab();
        trim_heap();
        let file = Arc::new(src);
        let (model, quantized_bytes) = models::load(file.clone(), quantize)?;
        let arch = model.info().arch.clone();
        for t in models::extra_stop_tokens(&arch) {
            if let Some(id) = tokenizer.token_id(t) {
                tokenizer.add_eog(id);
            }
        }
        let tok_text = |id: Option<u32>| {
            id.map(|i| tokenizer.token_text(i).to_string())
                .unwrap_or_default()
        };
        let (bos, eos) = (tok_text(tokenizer.bos()), tok_text(tokenizer.eos()));
        // For a directory, source::ModelSource put tokenizer_config.json's chat_template (or
        // chat_template.jinja) under this key.
        let template_source = file.get_str("tokenizer.chat_template").map(str::to_string);
        let template = match &template_source {
            Some(src) => ChatTemplate::new(src, &bos, &eos)
                .map_err(|e| EngineError::Template(format!("{}: {e}", file.path.display())))?,
            None => {
                let which = Fallback::for_arch(&arch);
                tracing::warn!(
                    "{}: no chat template in the model; using the built-in {} fallback",
                    file.path.display(),
                    which.name()
                );
                ChatTemplate::builtin(which, &bos, &eos)
            }
        };
        Ok(LoadedModel {
            path: file.path.clone(),
            file,
            model,
            tokenizer,
            template,
            template_source,
            load_s: t0.elapsed().as_secs_f64(),
            quantized_bytes,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.model.info().n_ctx_train
    }
}

/// A `.gguf` file; a directory with config.json and safetensors (Hugging Face); or a directory
/// holding exactly one `.gguf` file.
pub fn open_source(path: &Path) -> Result<ModelSource, EngineError> {
    if !path.is_dir() {
        return ModelSource::open_gguf(path);
    }
    if hf::is_hf_dir(path) {
        return ModelSource::open_hf_dir(path);
    }
    ModelSource::open_gguf(find_gguf(path)?)
}

fn find_gguf(dir: &Path) -> Result<PathBuf, EngineError> {
    let invalid = |m: String| EngineError::Invalid {
        path: dir.display().to_string(),
        message: m,
    };
    let mut ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| invalid(format!("cannot read directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    ggufs.sort();
    match ggufs.len() {
        1 => Ok(ggufs.remove(0)),
        0 => Err(invalid("neither a Hugging Face model directory (config.json and *.safetensors) nor a directory with a .gguf file".into())),
        n => Err(invalid(format!(
            "{n} .gguf files, name one: {:?}{}",
            &ggufs[..n.min(4)],
            if n > 4 { ", …" } else { "" }
        ))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    Cancelled,
}

#[derive(Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    pub n_prompt: usize,
    /// Prompt tokens actually computed (the rest came from the cache).
    pub n_prompt_computed: usize,
    pub prefill_s: f64,
    pub decode_s: f64,
}

/// One sequence with its own KV cache; prompt prefixes already in the cache are reused.
pub struct Generator<'a> {
    pub lm: &'a LoadedModel,
    pub ctx: Ctx,
    /// Blocks for the whole context, in order: position p is in block p / BLOCK_SIZE. Pages
    /// are zeroed by the allocator and only touched (counted in RSS) when written.
    kv: KvStore,
    table: Vec<u32>,
    /// Tokens whose K/V are in the cache, in order.
    pub cached: Vec<u32>,
    logits: Vec<f32>,
    batch: Batch,
}

impl<'a> Generator<'a> {
    pub fn new(lm: &'a LoadedModel, n_threads: usize) -> Self {
        Self::with_kv_type(lm, n_threads, KvType::F16)
    }

    pub fn with_kv_type(lm: &'a LoadedModel, n_threads: usize, kv_type: KvType) -> Self {
        let n_blocks = lm.n_ctx().div_ceil(BLOCK_SIZE);
        Generator {
            lm,
            ctx: Ctx::new(n_threads),
            kv: KvStore::new(&lm.model.kv_specs(), kv_type, n_blocks),
            table: (0..n_blocks as u32).collect(),
            cached: Vec::new(),
            logits: Vec::new(),
            batch: Batch::default(),
        }
    }

    /// Forget the cached tokens: the next prefill computes its whole prompt.
    pub fn reset(&mut self) {
        self.cached.clear();
    }

    fn run_batch(&mut self) {
        models::forward(
            self.lm.model.as_ref(),
            &mut self.ctx,
            &self.batch,
            &mut KvBatch {
                store: &mut self.kv,
                tables: &[&self.table],
            },
            &mut self.logits,
        );
    }

    /// Bring the cache to exactly `tokens`, computing what is not cached, and return the logits
    /// of the last token (or of every token computed, when `all_logits`).
    pub fn prefill(&mut self, tokens: &[u32], all_logits: bool) -> Result<&[f32], EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::Invalid {
                path: self.lm.path.display().to_string(),
                message: "empty prompt".into(),
            });
        }
        if tokens.len() > self.lm.n_ctx() {
            return Err(EngineError::ContextOverflow {
                prompt: tokens.len(),
                max_tokens: 0,
                context: self.lm.n_ctx(),
            });
        }
        let mut common = self
            .cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // Recompute at least the last token to get its logits.
        common = common.min(tokens.len() - 1);
        if all_logits {
            common = 0;
        }
        self.cached.truncate(common);
        self.batch = Batch::single(&tokens[common..], common, all_logits);
        self.run_batch();
        self.cached.extend_from_slice(&tokens[common..]);
        Ok(&self.logits)
    }

    /// Append one token and return its logits.
    pub fn step(&mut self, token: u32) -> &[f32] {
        let pos = self.cached.len();
        self.batch.clear();
        self.batch.push(token, pos, 0, true);
        self.run_batch();
        self.cached.push(token);
        &self.logits
    }

    /// Generate up to `max_tokens` after `prompt`. `on_text` receives text as it becomes final
    /// (never broken UTF-8, never part of a stop string) and returns false to cancel.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &SamplingParams,
        max_tokens: usize,
        stop: &[String],
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation, EngineError> {
        let n_ctx = self.lm.n_ctx();
        if prompt.len() + max_tokens > n_ctx {
            return Err(EngineError::ContextOverflow {
                prompt: prompt.len(),
                max_tokens,
                context: n_ctx,
            });
        }
        let t0 = Instant::now();
        let before = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let mut logits = self.prefill(prompt, false)?.to_vec();
        let n_prompt_computed = prompt.len() - before.min(prompt.len() - 1);
        let prefill_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut sampler = Sampler::new(params.clone());
        let mut out = Vec::new();
        let mut text = String::new();
        let mut dec = StreamDecoder::new(true);
        let mut stops = StopMatcher::new(stop);
        let mut finish = FinishReason::Length;
        let mut history: Vec<u32> = Vec::with_capacity(max_tokens);
        while out.len() < max_tokens {
            let tok = sampler.sample(&mut logits, &history);
            history.push(tok);
            out.push(tok);
            if self.lm.tokenizer.is_eog(tok) {
                finish = FinishReason::Stop;
                break;
            }
            let piece = dec.push(&self.lm.tokenizer, tok);
            let (emit, hit) = stops.push(&piece);
            text.push_str(&emit);
            if !emit.is_empty() && !on_text(&emit) {
                finish = FinishReason::Cancelled;
                break;
            }
            if hit {
                finish = FinishReason::Stop;
                break;
            }
            if out.len() == max_tokens {
                break;
            }
            logits.clear();
            logits.extend_from_slice(self.step(tok));
        }
        if finish != FinishReason::Cancelled && !stops.hit {
            let rest = dec.flush();
            let (mut emit, _) = stops.push(&rest);
            if !stops.hit {
                emit.push_str(&stops.flush());
            }
            text.push_str(&emit);
            if !emit.is_empty() {
                on_text(&emit);
            }
        }
        Ok(Generation {
            tokens: out,
            text,
            finish,
            n_prompt: prompt.len(),
            n_prompt_computed,
            prefill_s,
            decode_s: t1.elapsed().as_secs_f64(),
        })
    }
}

/// Finds stop strings in streamed text, holding back any suffix that could begin one.
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
    pub hit: bool,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
            hit: false,
        }
    }

    /// Add text; returns (text safe to emit, whether a stop string was found).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.hit {
            return (String::new(), true);
        }
        self.pending.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            self.hit = true;
            return (out, true);
        }
        // Keep the longest suffix of pending that is a prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for l in (1..s.len().min(self.pending.len() + 1)).rev() {
                if s.is_char_boundary(l) && self.pending.ends_with(&s[..l]) {
                    keep = keep.max(l);
                    break;
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_split_across_pieces() {
        let mut m = StopMatcher::new(&["END".to_string()]);
        let mut out = String::new();
        for p in ["hello E", "N", "x and E", "ND more"] {
            let (e, hit) = m.push(p);
            out.push_str(&e);
            if hit {
                break;
            }
        }
        assert_eq!(out, "hello ENx and ");
        assert!(m.hit);
    }

    #[test]
    fn no_stop_passes_everything() {
        let mut m = StopMatcher::new(&[]);
        assert_eq!(m.push("abc").0, "abc");
        assert_eq!(m.flush(), "");
    }
}
