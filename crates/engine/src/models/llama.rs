//! `llama`: Llama 2/3, Mistral, SmolLM2 and other plain pre-norm decoders.
//! x += attn(rmsnorm(x)); x += swiglu_ffn(rmsnorm(x)); logits = output(rmsnorm(x)).
//!
//! The layer stack is the shared pre-norm [`Decoder`] (no post-norms).

use super::decoder::{Decoder, Layer};
use super::{output_or_tied, vocab_size, HParams, Model, ModelInfo};
use crate::blocks::{AttentionParams, AttentionWeights, FfnWeights};
use crate::error::EngineError;
use crate::ops::{GluAct, Rope};
use crate::source::KEY_ROPE_NEOX;
use crate::weights::WeightLoader;

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
            post_attn_norm: None,
            ffn_norm: l.vector(&t("ffn_norm.weight"), d)?,
            ffn: FfnWeights::load(l, i, d, n_ff, GluAct::Silu)?,
            post_ffn_norm: None,
        });
    }
    Ok(Box::new(Decoder {
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
            scale_q: false,
        },
        tok_embd: l.matrix("token_embd.weight", d, n_vocab)?,
        layers,
        output_norm: l.vector("output_norm.weight", d)?,
        output: output_or_tied(l, d, n_vocab)?,
    }))
}
