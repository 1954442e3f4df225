//! Architectures. Each file reads its hyper-parameters, loads its tensors and wires the shared
//! blocks into a forward pass; `REGISTRY` has one row per GGUF architecture name.

pub mod chatglm;
pub mod decoder;
pub mod gemma3;
pub mod glm4;
pub mod gpt_oss;
pub mod llama;
pub mod qwen;
pub mod qwen1;

use crate::batch::Batch;
use crate::blocks::{AttnScratch, FfnScratch};
use crate::error::EngineError;
use crate::kv::{KvBatch, LayerKvSpec, MAX_UBATCH};
use crate::linear::{matmul, QActs};
use crate::ops::rms_norm;
use crate::pool::Pool;
use crate::source::ModelSource;
use crate::weights::{Weight, WeightLoader};
use std::sync::Arc;

/// What callers need to know about a loaded model.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub arch: String,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_params: usize,
}

pub trait Model: Send + Sync {
    fn info(&self) -> &ModelInfo;
    fn kv_specs(&self) -> Vec<LayerKvSpec>;
    /// Run at most MAX_UBATCH tokens through the model, writing their K/V into `kv` and
    /// appending one row of `n_vocab` logits per token whose `batch.logits` is set to `logits`.
    fn forward_ubatch(&self, ctx: &mut Ctx, batch: &Batch, kv: &mut KvBatch, logits: &mut Vec<f32>);
}

/// Runs any batch, splitting it into micro-batches of at most MAX_UBATCH tokens.
pub fn forward(
    model: &dyn Model,
    ctx: &mut Ctx,
    batch: &Batch,
    kv: &mut KvBatch,
    logits: &mut Vec<f32>,
) {
    logits.clear();
    if batch.len() <= MAX_UBATCH {
        return model.forward_ubatch(ctx, batch, kv, logits);
    }
    let mut sub = Batch::default();
    for start in (0..batch.len()).step_by(MAX_UBATCH) {
        sub.clear();
        for i in start..(start + MAX_UBATCH).min(batch.len()) {
            sub.push(batch.tokens[i], batch.pos[i], batch.seq[i], batch.logits[i]);
        }
        model.forward_ubatch(ctx, &sub, kv, logits);
    }
}

/// Per-engine compute context: the thread pool and scratch buffers reused across steps.
pub struct Ctx {
    pub pool: Pool,
    pub s: Scratch,
}

impl Ctx {
    pub fn new(n_threads: usize) -> Self {
        Ctx {
            pool: Pool::new(n_threads),
            s: Scratch::default(),
        }
    }
}

#[derive(Default)]
pub struct Scratch {
    /// Residual stream, T × n_embd.
    pub x: Vec<f32>,
    /// Normalized input of the current block, T × n_embd.
    pub h: Vec<f32>,
    /// Output of the current block, T × n_embd.
    pub y: Vec<f32>,
    pub attn: AttnScratch,
    pub ffn: FfnScratch,
    pub head_acts: QActs,
    pub head_in: Vec<f32>,
}

impl Scratch {
    pub fn prepare(&mut self, n_tok: usize, d: usize) {
        for v in [&mut self.x, &mut self.h, &mut self.y] {
            if v.len() < n_tok * d {
                v.resize(n_tok * d, 0.0);
            }
        }
    }
}

/// Look up token embeddings (any quant type) into `x`, multiplied by `scale`.
pub fn embed(w: &Weight, tokens: &[u32], scale: f32, x: &mut [f32]) {
    let d = w.cols;
    for (t, &tok) in tokens.iter().enumerate() {
        let row = &mut x[t * d..(t + 1) * d];
        let tok = (tok as usize).min(w.rows - 1);
        hearth_kernels::dequantize_row(w.dtype, w.row(tok), row);
        if scale != 1.0 {
            row.iter_mut().for_each(|v| *v *= scale);
        }
    }
}

/// Final norm and output projection for the tokens that want logits.
pub fn lm_head(
    ctx: &mut Ctx,
    norm: &[f32],
    eps: f32,
    output: &Weight,
    batch: &Batch,
    logits: &mut Vec<f32>,
) {
    let d = output.cols;
    let s = &mut ctx.s;
    let n = batch.n_logits();
    if n == 0 {
        return;
    }
    if s.head_in.len() < n * d {
        s.head_in.resize(n * d, 0.0);
    }
    let mut j = 0;
    for t in 0..batch.len() {
        if batch.logits[t] {
            rms_norm(
                &mut s.head_in[j * d..(j + 1) * d],
                &s.x[t * d..(t + 1) * d],
                norm,
                eps,
            );
            j += 1;
        }
    }
    crate::trace::row("result_norm", None, &s.head_in[..n * d]);
    s.head_acts
        .quantize(&ctx.pool, output, &s.head_in[..n * d], n);
    let start = logits.len();
    logits.resize(start + n * output.rows, 0.0);
    matmul(&ctx.pool, &s.head_acts, output, &mut logits[start..]);
    crate::trace::row("result_output", None, &logits[logits.len() - output.rows..]);
}

/// Reads `{arch}.{key}` hyper-parameters with errors that name the file and key.
pub struct HParams<'a> {
    pub file: &'a ModelSource,
    pub arch: &'a str,
}

impl HParams<'_> {
    fn err(&self, key: &str) -> EngineError {
        EngineError::MissingMetadata {
            path: self.file.path.display().to_string(),
            key: format!("{}.{key}", self.arch),
        }
    }
    pub fn usize(&self, key: &str) -> Result<usize, EngineError> {
        self.usize_opt(key).ok_or_else(|| self.err(key))
    }
    pub fn usize_opt(&self, key: &str) -> Option<usize> {
        self.file
            .get_u64(&format!("{}.{key}", self.arch))
            .map(|v| v as usize)
    }
    pub fn f32(&self, key: &str) -> Result<f32, EngineError> {
        self.f32_opt(key).ok_or_else(|| self.err(key))
    }
    pub fn f32_opt(&self, key: &str) -> Option<f32> {
        self.file
            .get_f64(&format!("{}.{key}", self.arch))
            .map(|v| v as f32)
    }
}

type Loader = fn(&WeightLoader) -> Result<Box<dyn Model>, EngineError>;

/// One row per architecture: GGUF `general.architecture` name → loader.
pub const REGISTRY: &[(&str, Loader)] = &[
    ("llama", llama::load),
    ("gemma3", gemma3::load),
    ("qwen2", qwen::load_qwen2),
    ("qwen3", qwen::load_qwen3),
    ("qwen3moe", qwen::load_qwen3moe),
    ("gpt-oss", gpt_oss::load),
    ("qwen", qwen1::load),
    ("chatglm", chatglm::load),
    ("glm4", glm4::load),
];

/// Turn markers an architecture's chats end with that its GGUFs may not list as
/// end-of-generation (ChatGLM3 files name only `</s>`; GLM-4 files name `<|user|>` as EOT but
/// not `<|observation|>`, which ends a turn that called a tool). Added to the tokenizer's EOG
/// set when the vocabulary has them; `<|im_end|>` / `<|endoftext|>` already are by text.
pub fn extra_stop_tokens(arch: &str) -> &'static [&'static str] {
    match arch {
        "chatglm" | "glm4" => &["<|user|>", "<|observation|>", "<|endoftext|>"],
        "qwen" => &["<|im_end|>", "<|endoftext|>"],
        _ => &[],
    }
}

pub fn supported_architectures() -> Vec<&'static str> {
    REGISTRY.iter().map(|(n, _)| *n).collect()
}

/// The model, and the bytes of the weight matrices quantized into memory at load.
pub fn load(
    file: Arc<ModelSource>,
    quantize: Option<crate::weights::Quantize>,
) -> Result<(Box<dyn Model>, usize), EngineError> {
    let path = file.path.display().to_string();
    let arch = file
        .architecture()
        .ok_or_else(|| EngineError::MissingMetadata {
            path: path.clone(),
            key: "general.architecture".into(),
        })?
        .to_string();
    let loader = REGISTRY
        .iter()
        .find(|(n, _)| *n == arch)
        .map(|(_, l)| l)
        .ok_or_else(|| EngineError::UnsupportedArchitecture {
            path,
            arch: arch.clone(),
            supported: supported_architectures().join(", "),
        })?;
    let mut l = WeightLoader::new(file);
    l.quantize = quantize;
    let model = loader(&l)?;
    if let Some(q) = quantize {
        let n = l.quantized_count();
        tracing::info!(
            "{}: {n} float weight matrices quantized to {q} at load",
            l.file.path.display()
        );
    }
    Ok((model, l.quantized_bytes()))
}

/// Total parameter count of the source's tensors.
pub fn count_params(file: &ModelSource) -> usize {
    file.tensors().iter().map(|t| t.n_elements()).sum()
}

/// The output projection: `output.weight` or, when absent, the tied token embeddings.
pub fn output_or_tied(l: &WeightLoader, d: usize, n_vocab: usize) -> Result<Weight, EngineError> {
    if l.has("output.weight") {
        l.matrix("output.weight", d, n_vocab)
    } else {
        l.matrix("token_embd.weight", d, n_vocab)
    }
}

pub fn vocab_size(l: &WeightLoader) -> Result<usize, EngineError> {
    let info =
        l.file
            .tensor_info("token_embd.weight")
            .ok_or_else(|| EngineError::MissingTensor {
                path: l.file.path.display().to_string(),
                tensor: "token_embd.weight".into(),
            })?;
    Ok(info.dims.get(1).copied().unwrap_or(1))
}
