//! `llama`: Llama 2/3, Mistral, SmolLM2 and other plain pre-norm decoders.
//! x += attn(rmsnorm(x)); x += swiglu_ffn(rmsnorm(x)); logits = output(rmsnorm(x)).

use super::{embed, lm_head, output_or_tied, vocab_size, Ctx, HParams, Model, ModelInfo};
use crate::batch::Batch;
use crate::blocks::{AttentionParams, AttentionWeights, FfnWeights};
use crate::error::EngineError;
use crate::kv::{KvBatch, LayerKvSpec};
use crate::ops::{add_into, rms_norm_rows, GluAct, Rope};
use crate::source::KEY_ROPE_NEOX;
use crate::weights::{Weight, WeightLoader};

struct Layer {
    attn_norm: Vec<f32>,
    attn: AttentionWeights,
    ffn_norm: Vec<f32>,
    ffn: FfnWeights,
}

pub struct Llama {
    info: ModelInfo,
    eps: f32,
    attn: AttentionParams,
    tok_embd: Weight,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Weight,
}

pub fn load(l: &WeightLoader) -> Result<Box<dyn Model>, EngineError> {
    let hp = HParams {
        file: &l.file,
        arch: "llama",
    };
    let d = hp.usize("embedding_length")?;
    let n_layer = hp.usize("block_count")?;
    let n_head = hp.usize("attention.head_count")?;
    let n_kv_head = hp.usize_opt("attention.head_count_kv").unwrap_or(n_head);
    let head_dim = hp.usize_opt("attention.key_length").unwrap_or(d / n_head);
    let n_ff = hp.usize("feed_forward_length")?;
    let eps = hp
        .f32_opt("attention.layer_norm_rms_epsilon")
        .unwrap_or(1e-5);
    // Linear RoPE scaling divides positions by the factor (ggml freq_scale = 1/factor).
    let freq_scale = match l.file.get_str("llama.rope.scaling.type") {
        Some("linear") => 1.0 / hp.f32_opt("rope.scaling.factor").unwrap_or(1.0),
        _ => 1.0,
    };
    let rope = Rope {
        n_rot: hp.usize_opt("rope.dimension_count").unwrap_or(head_dim),
        base: hp.f32_opt("rope.freq_base").unwrap_or(10000.0),
        freq_scale,
        // GGUF llama Q/K rows are permuted for interleaved pairs; a Hugging Face directory
        // keeps the original rows, which rotate in halves (source::KEY_ROPE_NEOX).
        neox: l.file.get_bool(KEY_ROPE_NEOX).unwrap_or(false),
        yarn: None,
    };
    let n_vocab = vocab_size(l)?;
    let mut layers = Vec::with_capacity(n_layer);
    for i in 0..n_layer {
        let t = |n: &str| format!("blk.{i}.{n}");
        layers.push(Layer {
            attn_norm: l.vector(&t("attn_norm.weight"), d)?,
            attn: AttentionWeights::load(l, i, d, n_head, n_kv_head, head_dim, false)?,
            ffn_norm: l.vector(&t("ffn_norm.weight"), d)?,
            ffn: FfnWeights::load(l, i, d, n_ff, GluAct::Silu)?,
        });
    }
    Ok(Box::new(Llama {
        info: ModelInfo {
            arch: "llama".into(),
            n_vocab,
            n_ctx_train: hp.usize_opt("context_length").unwrap_or(2048),
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
        },
        tok_embd: l.matrix("token_embd.weight", d, n_vocab)?,
        layers,
        output_norm: l.vector("output_norm.weight", d)?,
        output: output_or_tied(l, d, n_vocab)?,
    }))
}

impl Model for Llama {
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
            layer
                .ffn
                .forward(&ctx.pool, &mut s.ffn, &s.h[..n * d], n, &mut s.y);
            add_into(&mut s.x, &s.y, n * d);
        }
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
