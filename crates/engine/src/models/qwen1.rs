//! `qwen`: Qwen-7B/14B(-Chat), the first Qwen generation, as llama.cpp's src/models/qwen.cpp:
//! the llama block with a fused `attn_qkv` (with bias; no GQA, head size n_embd / n_head),
//! NEOX RoPE, SwiGLU FFN and an untied output. Its `feed_forward_length` is the Hugging Face
//! `intermediate_size`, twice the width of each of ffn_gate / ffn_up (llama.cpp loads n_ff/2).

use super::decoder::{common, Decoder, Layer};
use super::{vocab_size, Model};
use crate::blocks::{AttentionWeights, FfnWeights};
use crate::error::EngineError;
use crate::ops::GluAct;
use crate::weights::WeightLoader;

pub fn load(l: &WeightLoader) -> Result<Box<dyn Model>, EngineError> {
    let c = common(l, "qwen", true, 8192)?;
    let d = c.d;
    let n_vocab = vocab_size(l)?;
    let mut layers = Vec::with_capacity(c.n_layer);
    for i in 0..c.n_layer {
        let t = |n: &str| format!("blk.{i}.{n}");
        layers.push(Layer {
            attn_norm: l.vector(&t("attn_norm.weight"), d)?,
            attn: AttentionWeights::load(l, i, d, c.n_head, c.n_kv_head, c.head_dim, false)?,
            post_attn_norm: None,
            ffn_norm: l.vector(&t("ffn_norm.weight"), d)?,
            ffn: FfnWeights::load(l, i, d, c.n_ff / 2, GluAct::Silu)?,
            post_ffn_norm: None,
        });
    }
    Ok(Box::new(Decoder {
        info: c.info(l, "qwen", n_vocab),
        eps: c.eps,
        attn: c.attention(),
        tok_embd: l.matrix("token_embd.weight", d, n_vocab)?,
        layers,
        output_norm: l.vector("output_norm.weight", d)?,
        output: l.matrix("output.weight", d, n_vocab)?,
    }))
}
