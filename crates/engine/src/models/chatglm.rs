//! `chatglm`: ChatGLM2/3-6B and GLM-4-9B-Chat (the first GLM-4 release), as llama.cpp's
//! src/models/chatglm.cpp: RMSNorm pre-norm blocks; Q/K/V fused in `attn_qkv` with bias
//! (or separate, as llama.cpp's create_tensor_qkv accepts), grouped (multi-query) KV heads;
//! RoPE on the first `rope.dimension_count` values of each head only (half the head for
//! these models) in the interleaved GPT-J pair layout (llama.cpp's "normal" rope type);
//! SwiGLU whose gate and up halves are one `ffn_up` of 2·n_ff rows; output tied to the
//! token embeddings when the file has no `output.weight`.

use super::decoder::{common, Decoder, Layer};
use super::{output_or_tied, vocab_size, Model};
use crate::blocks::{AttentionWeights, FfnWeights};
use crate::error::EngineError;
use crate::weights::WeightLoader;

pub fn load(l: &WeightLoader) -> Result<Box<dyn Model>, EngineError> {
    load_glm(l, "chatglm", false)
}

/// ChatGLM and GLM-4 (`glm4` adds the post-attention and post-FFN norms).
pub(super) fn load_glm(
    l: &WeightLoader,
    arch: &str,
    post_norms: bool,
) -> Result<Box<dyn Model>, EngineError> {
    let c = common(l, arch, false, 8192)?;
    let d = c.d;
    let n_vocab = vocab_size(l)?;
    let mut layers = Vec::with_capacity(c.n_layer);
    for i in 0..c.n_layer {
        let t = |n: &str| format!("blk.{i}.{n}");
        let post = |n: &str| {
            if post_norms {
                l.vector(&t(n), d).map(Some)
            } else {
                Ok(None)
            }
        };
        layers.push(Layer {
            attn_norm: l.vector(&t("attn_norm.weight"), d)?,
            attn: AttentionWeights::load(l, i, d, c.n_head, c.n_kv_head, c.head_dim, false)?,
            post_attn_norm: post("post_attention_norm.weight")?,
            ffn_norm: l.vector(&t("ffn_norm.weight"), d)?,
            ffn: FfnWeights::load_fused_up(l, i, d, c.n_ff)?,
            post_ffn_norm: post("post_ffw_norm.weight")?,
        });
    }
    Ok(Box::new(Decoder {
        info: c.info(l, arch, n_vocab),
        eps: c.eps,
        attn: c.attention(),
        tok_embd: l.matrix("token_embd.weight", d, n_vocab)?,
        layers,
        output_norm: l.vector("output_norm.weight", d)?,
        output: output_or_tied(l, d, n_vocab)?,
    }))
}
