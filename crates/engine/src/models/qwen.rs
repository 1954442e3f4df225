//! The Qwen family, as llama.cpp's src/models/{qwen2,qwen3,qwen3moe}.cpp build them:
//! - `qwen2` (Qwen1.5, Qwen2, Qwen2.5): the llama block with Q/K/V biases and NEOX RoPE.
//! - `qwen3`: no biases; per-head RMSNorm on Q and K before RoPE; head_dim from metadata
//!   (`attention.key_length`, which need not be n_embd / n_head).
//! - `qwen3moe`: qwen3 attention; the FFN is a mixture of experts (softmax router over all
//!   experts, top-k, chosen probabilities renormalized: llama.cpp hard-codes that for this
//!   architecture, as Qwen3-MoE checkpoints set norm_topk_prob).
//!
//! x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)); logits = output(rmsnorm(x)); the output matrix
//! falls back to the token embeddings when the file has none (tied, the small models).

use super::{embed, lm_head, output_or_tied, vocab_size, Ctx, HParams, Model, ModelInfo};
use crate::batch::Batch;
use crate::blocks::{
    AttentionParams, AttentionWeights, ExpertAct, FfnWeights, Gating, MoeOptions, MoeScratch,
    MoeWeights,
};
use crate::error::EngineError;
use crate::kv::{KvBatch, LayerKvSpec};
use crate::ops::{add_into, rms_norm_rows, GluAct, Rope};
use crate::weights::{Weight, WeightLoader};
use std::sync::Mutex;

enum Ffn {
    Dense(FfnWeights),
    Moe(MoeWeights),
}

struct Layer {
    attn_norm: Vec<f32>,
    attn: AttentionWeights,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
}

pub struct Qwen {
    info: ModelInfo,
    eps: f32,
    attn: AttentionParams,
    tok_embd: Weight,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Weight,
    /// The MoE block's buffers. The shared `Scratch` has no slot for them; one engine thread
    /// drives a model at a time, so this lock is never contended.
    moe_scratch: Mutex<MoeScratch>,
}

pub fn load_qwen2(l: &WeightLoader) -> Result<Box<dyn Model>, EngineError> {
    load(l, "qwen2")
}

pub fn load_qwen3(l: &WeightLoader) -> Result<Box<dyn Model>, EngineError> {
    load(l, "qwen3")
}

pub fn load_qwen3moe(l: &WeightLoader) -> Result<Box<dyn Model>, EngineError> {
    load(l, "qwen3moe")
}

fn load(l: &WeightLoader, arch: &str) -> Result<Box<dyn Model>, EngineError> {
    let hp = HParams {
        file: &l.file,
        arch,
    };
    let d = hp.usize("embedding_length")?;
    let n_layer = hp.usize("block_count")?;
    let n_head = hp.usize("attention.head_count")?;
    let n_kv_head = hp.usize_opt("attention.head_count_kv").unwrap_or(n_head);
    let head_dim = hp.usize_opt("attention.key_length").unwrap_or(d / n_head);
    let eps = hp
        .f32_opt("attention.layer_norm_rms_epsilon")
        .unwrap_or(1e-6);
    let path = || l.file.path.display().to_string();
    if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || head_dim == 0 {
        return Err(EngineError::Invalid {
            path: path(),
            message: format!(
                "{arch}: attention.head_count {n_head} must be a positive multiple of attention.head_count_kv {n_kv_head}, head size {head_dim} positive"
            ),
        });
    }
    if let Some(v) = hp.usize_opt("attention.value_length") {
        if v != head_dim {
            return Err(EngineError::Invalid {
                path: path(),
                message: format!(
                    "{arch}.attention.value_length {v} differs from key_length {head_dim} (unsupported)"
                ),
            });
        }
    }
    let freq_scale = match l.file.get_str(&format!("{arch}.rope.scaling.type")) {
        Some("linear") => 1.0 / hp.f32_opt("rope.scaling.factor").unwrap_or(1.0),
        // YaRN long-context scaling (Qwen2.5 with rope_scaling) changes short-context results
        // little but not exactly; refuse rather than silently differ from llama.cpp.
        Some("yarn") => {
            return Err(EngineError::Invalid {
                path: path(),
                message: format!("{arch}.rope.scaling.type 'yarn' is not supported yet"),
            })
        }
        _ => 1.0,
    };
    let n_rot = hp.usize_opt("rope.dimension_count").unwrap_or(head_dim);
    let rope = Rope {
        n_rot,
        base: hp.f32_opt("rope.freq_base").unwrap_or(10000.0),
        freq_scale,
        neox: true,
        yarn: None,
    };
    if l.has("output.bias") {
        return Err(EngineError::Invalid {
            path: path(),
            message: format!("{arch}: an output.bias tensor is not supported"),
        });
    }
    let qk_norm = arch != "qwen2";
    let moe = if arch == "qwen3moe" {
        let n_expert = hp.usize("expert_count")?;
        let n_used = hp.usize("expert_used_count")?;
        let n_ff_exp = match hp.usize_opt("expert_feed_forward_length") {
            Some(v) => v,
            // llama.cpp's fallback for files without the key.
            None => hp.usize("feed_forward_length")? / n_used.max(1),
        };
        Some(MoeOptions {
            n_expert,
            n_used,
            n_ff_exp,
            gating: Gating::SoftmaxAll { norm_topk: true },
            act: ExpertAct::Glu(GluAct::Silu),
            // 0 in the metadata means "no scaling", as in llama.cpp.
            weight_scale: hp
                .f32_opt("expert_weights_scale")
                .filter(|&s| s != 0.0)
                .unwrap_or(1.0),
        })
    } else {
        None
    };
    let n_ff = if moe.is_none() {
        hp.usize("feed_forward_length")?
    } else {
        0
    };
    let n_vocab = vocab_size(l)?;
    let mut layers = Vec::with_capacity(n_layer);
    for i in 0..n_layer {
        let t = |n: &str| format!("blk.{i}.{n}");
        layers.push(Layer {
            attn_norm: l.vector(&t("attn_norm.weight"), d)?,
            attn: AttentionWeights::load(l, i, d, n_head, n_kv_head, head_dim, qk_norm)?,
            ffn_norm: l.vector(&t("ffn_norm.weight"), d)?,
            ffn: match moe {
                Some(o) => Ffn::Moe(MoeWeights::load(l, i, d, o)?),
                None => Ffn::Dense(FfnWeights::load(l, i, d, n_ff, GluAct::Silu)?),
            },
        });
    }
    Ok(Box::new(Qwen {
        info: ModelInfo {
            arch: arch.into(),
            n_vocab,
            n_ctx_train: hp.usize_opt("context_length").unwrap_or(32768),
            n_embd: d,
            n_layer,
            n_params: super::count_params(&l.file),
        },
        eps,
        attn: AttentionParams {
            n_head,
            n_kv_head,
            head_dim,
            rope,
            scale: 1.0 / (head_dim as f32).sqrt(),
            norm_eps: eps,
            scale_q: false,
        },
        tok_embd: l.matrix("token_embd.weight", d, n_vocab)?,
        layers,
        output_norm: l.vector("output_norm.weight", d)?,
        output: output_or_tied(l, d, n_vocab)?,
        moe_scratch: Mutex::new(MoeScratch::default()),
    }))
}

impl Model for Qwen {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn kv_specs(&self) -> Vec<LayerKvSpec> {
        vec![
            LayerKvSpec {
                n_kv_head: self.attn.n_kv_head,
                head_dim: self.attn.head_dim,
                window: None
            };
            self.layers.len()
        ]
    }

    fn forward_ubatch(
        &self,
        ctx: &mut Ctx,
        batch: &Batch,
        kv: &mut KvBatch,
        logits: &mut Vec<f32>,
    ) {
        let (n, d) = (batch.len(), self.info.n_embd);
        ctx.s.prepare(n, d);
        embed(&self.tok_embd, &batch.tokens, 1.0, &mut ctx.s.x);
        let mut moe_scratch = self.moe_scratch.lock().unwrap_or_else(|e| e.into_inner());
        for (il, layer) in self.layers.iter().enumerate() {
            let s = &mut ctx.s;
            rms_norm_rows(&mut s.h, &s.x, &layer.attn_norm, self.eps, n);
            layer.attn.forward(
                &self.attn,
                &ctx.pool,
                &mut s.attn,
                &s.h[..n * d],
                batch,
                kv,
                il,
                &mut s.y,
            );
            add_into(&mut s.x, &s.y, n * d);
            rms_norm_rows(&mut s.h, &s.x, &layer.ffn_norm, self.eps, n);
            match &layer.ffn {
                Ffn::Dense(f) => f.forward(&ctx.pool, &mut s.ffn, &s.h[..n * d], n, &mut s.y),
                Ffn::Moe(m) => m.forward(&ctx.pool, &mut moe_scratch, &s.h[..n * d], n, &mut s.y),
            }
            add_into(&mut s.x, &s.y, n * d);
        }
        drop(moe_scratch);
        lm_head(
            ctx,
            &self.output_norm,
            self.eps,
            &self.output,
            batch,
            logits,
        );
    }
}
