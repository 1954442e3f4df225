//! `gemma3`: Gemma 3 text models. Differences from llama, as in llama.cpp's gemma3 graph and
//! Google's gemma_pytorch config: embeddings scaled by sqrt(n_embd); per-head RMSNorm on Q and K;
//! NEOX RoPE; five sliding-window layers (window from metadata, RoPE base 10,000) for each global
//! layer (RoPE base from metadata); post-attention and post-FFN norms; GeGLU (tanh GELU);
//! attention scale 1/sqrt(head_dim) (1/sqrt(n_embd/n_head) for the 62-layer 27B).

use super::{embed, lm_head, output_or_tied, vocab_size, Ctx, HParams, Model, ModelInfo};
use crate::batch::Batch;
use crate::blocks::{AttentionParams, AttentionWeights, FfnWeights};
use crate::error::EngineError;
use crate::kv::{KvBatch, LayerKvSpec};
use crate::ops::{add_into, rms_norm_rows, GluAct, Rope};
use crate::trace;
use crate::weights::{Weight, WeightLoader};

struct Layer {
    attn_norm: Vec<f32>,
    attn: AttentionWeights,
    attn_post_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    ffn: FfnWeights,
    ffn_post_norm: Vec<f32>,
    params: AttentionParams,
    window: Option<usize>,
}

pub struct Gemma3 {
    info: ModelInfo,
    eps: f32,
    tok_embd: Weight,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Weight,
    softcap: Option<f32>,
}

/// Gemma 3 interleaves 5 local (sliding-window) layers with 1 global layer.
const SWA_PATTERN: usize = 6;

pub fn load(l: &WeightLoader) -> Result<Box<dyn Model>, EngineError> {
    let hp = HParams {
        file: &l.file,
        arch: "gemma3",
    };
    let d = hp.usize("embedding_length")?;
    let n_layer = hp.usize("block_count")?;
    let n_head = hp.usize("attention.head_count")?;
    let n_kv_head = hp.usize_opt("attention.head_count_kv").unwrap_or(n_head);
    let head_dim = hp.usize_opt("attention.key_length").unwrap_or(d / n_head);
    let n_ff = hp.usize("feed_forward_length")?;
    let eps = hp
        .f32_opt("attention.layer_norm_rms_epsilon")
        .unwrap_or(1e-6);
    let window = hp.usize_opt("attention.sliding_window").filter(|&w| w > 0);
    let global_scale = match l.file.get_str("gemma3.rope.scaling.type") {
        Some("linear") => 1.0 / hp.f32_opt("rope.scaling.factor").unwrap_or(1.0),
        _ => 1.0,
    };
    let global_rope = Rope {
        n_rot: head_dim,
        base: hp.f32_opt("rope.freq_base").unwrap_or(1_000_000.0),
        freq_scale: global_scale,
        neox: true,
        yarn: None,
    };
    let local_rope = Rope {
        n_rot: head_dim,
        base: hp.f32_opt("rope.freq_base_swa").unwrap_or(10_000.0),
        freq_scale: 1.0,
        neox: true,
        yarn: None,
    };
    let scale = if n_layer == 62 {
        1.0 / ((d / n_head) as f32).sqrt()
    } else {
        1.0 / (head_dim as f32).sqrt()
    };
    let n_vocab = vocab_size(l)?;
    let mut layers = Vec::with_capacity(n_layer);
    for i in 0..n_layer {
        let t = |n: &str| format!("blk.{i}.{n}");
        let is_swa = window.is_some() && i % SWA_PATTERN < SWA_PATTERN - 1;
        layers.push(Layer {
            attn_norm: l.vector(&t("attn_norm.weight"), d)?,
            attn: AttentionWeights::load(l, i, d, n_head, n_kv_head, head_dim, true)?,
            attn_post_norm: l.vector(&t("post_attention_norm.weight"), d)?,
            ffn_norm: l.vector(&t("ffn_norm.weight"), d)?,
            ffn: FfnWeights::load(l, i, d, n_ff, GluAct::Gelu)?,
            ffn_post_norm: l.vector(&t("post_ffw_norm.weight"), d)?,
            params: AttentionParams {
                n_head,
                n_kv_head,
                head_dim,
                rope: if is_swa { local_rope } else { global_rope },
                scale,
                scale_q: true,
                norm_eps: eps,
            },
            window: if is_swa { window } else { None },
        });
    }
    Ok(Box::new(Gemma3 {
        info: ModelInfo {
            arch: "gemma3".into(),
            n_vocab,
            n_ctx_train: hp.usize_opt("context_length").unwrap_or(32768),
            n_embd: d,
            n_layer,
            n_params: super::count_params(&l.file),
        },
        eps,
        tok_embd: l.matrix("token_embd.weight", d, n_vocab)?,
        layers,
        output_norm: l.vector("output_norm.weight", d)?,
        output: output_or_tied(l, d, n_vocab)?,
        softcap: hp.f32_opt("final_logit_softcapping").filter(|&c| c > 0.0),
    }))
}

impl Model for Gemma3 {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn kv_specs(&self) -> Vec<LayerKvSpec> {
        self.layers
            .iter()
            .map(|l| LayerKvSpec {
                n_kv_head: l.params.n_kv_head,
                head_dim: l.params.head_dim,
                window: l.window,
            })
            .collect()
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
        embed(
            &self.tok_embd,
            &batch.tokens,
            (d as f32).sqrt(),
            &mut ctx.s.x,
        );
        trace::row("inp_scaled", None, &ctx.s.x[..n * d]);
        for (il, layer) in self.layers.iter().enumerate() {
            let s = &mut ctx.s;
            rms_norm_rows(&mut s.h, &s.x, &layer.attn_norm, self.eps, n);
            trace::row("attn_norm", Some(il), &s.h[..n * d]);
            layer.attn.forward(
                &layer.params,
                &ctx.pool,
                &mut s.attn,
                &s.h[..n * d],
                batch,
                kv,
                il,
                &mut s.y,
            );
            trace::row("attn_out", Some(il), &s.y[..n * d]);
            rms_norm_rows(&mut s.h, &s.y, &layer.attn_post_norm, self.eps, n);
            add_into(&mut s.x, &s.h, n * d);
            trace::row("sa_out", Some(il), &s.x[..n * d]);
            rms_norm_rows(&mut s.h, &s.x, &layer.ffn_norm, self.eps, n);
            trace::row("ffn_norm", Some(il), &s.h[..n * d]);
            layer
                .ffn
                .forward(&ctx.pool, &mut s.ffn, &s.h[..n * d], n, &mut s.y);
            trace::row("ffn_out", Some(il), &s.y[..n * d]);
            rms_norm_rows(&mut s.h, &s.y, &layer.ffn_post_norm, self.eps, n);
            add_into(&mut s.x, &s.h, n * d);
            trace::row("l_out", Some(il), &s.x[..n * d]);
        }
        let start = logits.len();
        lm_head(
            ctx,
            &self.output_norm,
            self.eps,
            &self.output,
            batch,
            logits,
        );
        if let Some(c) = self.softcap {
            logits[start..]
                .iter_mut()
                .for_each(|v| *v = (*v / c).tanh() * c);
        }
    }
}
