//! A pre-norm decoder layer stack with optional post-norms, shared by the architectures whose
//! only differences are in how their tensors are stored and their RoPE (`llama`, `qwen`,
//! `chatglm`, `glm4`):
//!
//! x += post_attn_norm?(attn(rmsnorm(x))); x += post_ffn_norm?(ffn(rmsnorm(x)));
//! logits = output(rmsnorm(x)).
//!
//! The post-norms are GLM-4's (`blk.N.post_attention_norm`, `blk.N.post_ffw_norm`, applied to
//! the block output before the residual add, as llama.cpp's src/models/glm4.cpp).

use super::{embed, lm_head, Ctx, Model, ModelInfo};
use crate::batch::Batch;
use crate::blocks::{AttentionParams, AttentionWeights, FfnWeights};
use crate::kv::{KvBatch, LayerKvSpec};
use crate::ops::{add_into, rms_norm_rows};
use crate::trace;
use crate::weights::Weight;

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub attn: AttentionWeights,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub ffn: FfnWeights,
    pub post_ffn_norm: Option<Vec<f32>>,
}

pub struct Decoder {
    pub info: ModelInfo,
    pub eps: f32,
    pub attn: AttentionParams,
    pub tok_embd: Weight,
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>,
    pub output: Weight,
}

impl Model for Decoder {
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
        trace::row("embd", None, &ctx.s.x[..n * d]);
        for (il, layer) in self.layers.iter().enumerate() {
            let s = &mut ctx.s;
            rms_norm_rows(&mut s.h, &s.x, &layer.attn_norm, self.eps, n);
            trace::row("attn_norm", Some(il), &s.h[..n * d]);
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
            trace::row("attn_out", Some(il), &s.y[..n * d]);
            match &layer.post_attn_norm {
                Some(w) => {
                    rms_norm_rows(&mut s.h, &s.y, w, self.eps, n);
                    add_into(&mut s.x, &s.h, n * d);
                }
                None => add_into(&mut s.x, &s.y, n * d),
            }
            trace::row("ffn_inp", Some(il), &s.x[..n * d]);
            rms_norm_rows(&mut s.h, &s.x, &layer.ffn_norm, self.eps, n);
            trace::row("ffn_norm", Some(il), &s.h[..n * d]);
            layer
                .ffn
                .forward(&ctx.pool, &mut s.ffn, &s.h[..n * d], n, &mut s.y);
            trace::row("ffn_out", Some(il), &s.y[..n * d]);
            match &layer.post_ffn_norm {
                Some(w) => {
                    rms_norm_rows(&mut s.h, &s.y, w, self.eps, n);
                    add_into(&mut s.x, &s.h, n * d);
                }
                None => add_into(&mut s.x, &s.y, n * d),
            }
            trace::row("l_out", Some(il), &s.x[..n * d]);
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

/// The hyper-parameters every file of these architectures has, read the way llama.cpp's
/// llama_model::load_hparams does (head size n_embd / n_head unless `attention.key_length`,
/// n_rot the head size unless `rope.dimension_count`, RoPE base 10000 unless
/// `rope.freq_base`, linear scaling from `rope.scaling.factor`).
pub struct Common {
    pub d: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub eps: f32,
    pub rope: crate::ops::Rope,
    pub n_ctx_train: usize,
}

pub fn common(
    l: &crate::weights::WeightLoader,
    arch: &str,
    neox: bool,
    default_ctx: usize,
) -> Result<Common, crate::error::EngineError> {
    use crate::error::EngineError;
    let hp = super::HParams {
        file: &l.file,
        arch,
    };
    let path = || l.file.path.display().to_string();
    let d = hp.usize("embedding_length")?;
    // GLM-4.5-style files may carry NextN (multi-token prediction) layers after the main
    // ones; llama.cpp loads and skips them.
    let n_layer_all = hp.usize("block_count")?;
    let n_nextn = hp.usize_opt("nextn_predict_layers").unwrap_or(0);
    let n_head = hp.usize("attention.head_count")?;
    let n_kv_head = hp.usize_opt("attention.head_count_kv").unwrap_or(n_head);
    let head_dim = hp
        .usize_opt("attention.key_length")
        .unwrap_or(d / n_head.max(1));
    if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || head_dim == 0 {
        return Err(EngineError::Invalid {
            path: path(),
            message: format!(
                "{arch}: attention.head_count {n_head} must be a positive multiple of attention.head_count_kv {n_kv_head}, head size {head_dim} positive"
            ),
        });
    }
    if hp
        .usize_opt("attention.value_length")
        .is_some_and(|v| v != head_dim)
    {
        return Err(EngineError::Invalid {
            path: path(),
            message: format!("{arch}.attention.value_length differs from key_length (unsupported)"),
        });
    }
    if n_nextn >= n_layer_all {
        return Err(EngineError::Invalid {
            path: path(),
            message: format!("{arch}: nextn_predict_layers {n_nextn} >= block_count {n_layer_all}"),
        });
    }
    let freq_scale = match l.file.get_str(&format!("{arch}.rope.scaling.type")) {
        None | Some("linear") | Some("none") => {
            let f = hp.f32_opt("rope.scaling.factor").unwrap_or(0.0);
            if f == 0.0 {
                1.0
            } else {
                1.0 / f
            }
        }
        Some(t) => {
            return Err(EngineError::Invalid {
                path: path(),
                message: format!("{arch}.rope.scaling.type '{t}' is not supported"),
            })
        }
    };
    let n_rot = hp.usize_opt("rope.dimension_count").unwrap_or(head_dim);
    if n_rot > head_dim || !n_rot.is_multiple_of(2) {
        return Err(EngineError::Invalid {
            path: path(),
            message: format!(
                "{arch}.rope.dimension_count {n_rot} must be even and <= head size {head_dim}"
            ),
        });
    }
    Ok(Common {
        d,
        n_layer: n_layer_all - n_nextn,
        n_head,
        n_kv_head,
        head_dim,
        n_ff: hp.usize("feed_forward_length")?,
        eps: hp.f32("attention.layer_norm_rms_epsilon")?,
        rope: crate::ops::Rope {
            n_rot,
            base: hp.f32_opt("rope.freq_base").unwrap_or(10000.0),
            freq_scale,
            neox,
            yarn: None,
        },
        n_ctx_train: hp.usize_opt("context_length").unwrap_or(default_ctx),
    })
}

impl Common {
    pub fn attention(&self) -> AttentionParams {
        AttentionParams {
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
            rope: self.rope,
            scale: 1.0 / (self.head_dim as f32).sqrt(),
            norm_eps: self.eps,
            scale_q: false,
        }
    }

    pub fn info(&self, l: &crate::weights::WeightLoader, arch: &str, n_vocab: usize) -> ModelInfo {
        ModelInfo {
            arch: arch.into(),
            n_vocab,
            n_ctx_train: self.n_ctx_train,
            n_embd: self.d,
            n_layer: self.n_layer,
            n_params: super::count_params(&l.file),
        }
    }
}
