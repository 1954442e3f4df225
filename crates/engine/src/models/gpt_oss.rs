//! `gpt-oss`: OpenAI's gpt-oss-20b / gpt-oss-120b (Hugging Face `GptOssForCausalLM`), as
//! llama.cpp's `LLM_ARCH_OPENAI_MOE` graph (src/models/openai-moe.cpp) builds it:
//!
//! x += o(attn(rope(q(rmsnorm(x))), rope(k(..)), v(..)))   Q/K/V/O with biases, GQA
//! x += moe(rmsnorm(x))                                    `post_attention_norm` is the FFN norm
//! logits = output(rmsnorm(x))
//!
//! - Attention: head_dim 64 (`attention.key_length`), scale 1/sqrt(head_dim), learned sinks
//!   (`attn_sinks.weight`, one logit per query head joining the softmax denominator), NEOX RoPE
//!   with YaRN (`rope.scaling.type` "yarn", factor 32 over 4,096 original positions, beta_fast
//!   32, beta_slow 1: see `ops::Yarn`).
//! - Layers alternate sliding-window and full attention. llama.cpp's `load_swa_pattern(ml, 2)`:
//!   without a `attention.sliding_window_pattern` key layer il is SWA when il % 2 == 0 (layer 0
//!   is SWA; transformers' `layer_types` agree). A window of w lets the query at p see keys in
//!   (p - w, p] (LLAMA_SWA_TYPE_STANDARD). A u32 pattern n makes il SWA when il % n < n - 1; a
//!   bool array names each layer (as llama.cpp).
//! - MoE: router with bias, top-k of the logits, softmax over the chosen ones (llama.cpp
//!   `SOFTMAX_WEIGHT` gating), experts with biases and the clamped SwiGLU (`swiglu_oai`, alpha
//!   1.702, limit 7); shared `blocks::moe` groups tokens by expert, so only chosen experts are
//!   read. Experts are MXFP4 in the released GGUFs.
//!
//! llama.cpp's gpt-oss loader takes YaRN's beta_fast/beta_slow from its defaults (32, 1) and
//! ignores `rope.scaling.yarn_beta_*`; we read those keys when present (the converter writes the
//! checkpoint's values, which are the same 32 and 1) and use the same defaults otherwise.
//! Transformers' gpt-oss config sets YaRN `truncate: false` (correction range not rounded);
//! llama.cpp always rounds (floor/ceil), and so do we for GGUF files; a Hugging Face directory
//! passes its setting through `hearth.rope.yarn_truncate` (`source::KEY_YARN_TRUNCATE`).

use super::{embed, lm_head, vocab_size, Ctx, HParams, Model, ModelInfo};
use crate::batch::Batch;
use crate::blocks::{
    AttentionParams, AttentionWeights, ExpertAct, Gating, MoeOptions, MoeScratch, MoeWeights,
};
use crate::error::EngineError;
use crate::kv::{KvBatch, LayerKvSpec};
use crate::ops::{add_into, rms_norm_rows, Rope, Yarn};
use crate::source::KEY_YARN_TRUNCATE;
use crate::weights::{Weight, WeightLoader};
use hearth_formats::Value;
use std::sync::Mutex;

const ARCH: &str = "gpt-oss";

/// gpt-oss's expert activation constants (llama.cpp hard-codes the same for this graph;
/// transformers' `swiglu_alpha` / `swiglu_limit`).
const SWIGLU_ALPHA: f32 = 1.702;
const SWIGLU_LIMIT: f32 = 7.0;

struct Layer {
    attn_norm: Vec<f32>,
    attn: AttentionWeights,
    ffn_norm: Vec<f32>,
    moe: MoeWeights,
    window: Option<usize>,
}

pub struct GptOss {
    info: ModelInfo,
    eps: f32,
    attn: AttentionParams,
    tok_embd: Weight,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Weight,
    /// The MoE block's buffers (see `qwen.rs`: one engine thread drives a model at a time).
    moe_scratch: Mutex<MoeScratch>,
}

/// Which layers use the sliding window, as llama.cpp's `load_swa_pattern(ml, 2)`.
fn swa_layers(hp: &HParams, n_layer: usize) -> Result<Vec<bool>, EngineError> {
    let key = format!("{ARCH}.attention.sliding_window_pattern");
    match hp.file.get(&key) {
        None => Ok((0..n_layer).map(|il| il % 2 == 0).collect()),
        Some(Value::Array(a)) => {
            let v: Option<Vec<bool>> = a.iter().map(|x| x.as_bool()).collect();
            match v {
                Some(v) if v.len() >= n_layer => Ok(v[..n_layer].to_vec()),
                _ => Err(EngineError::Invalid {
                    path: hp.file.path.display().to_string(),
                    message: format!("{key}: expected {n_layer} booleans"),
                }),
            }
        }
        Some(v) => match v.as_u64() {
            Some(n) => {
                let n = n as usize;
                Ok((0..n_layer).map(|il| n == 0 || il % n < n - 1).collect())
            }
            None => Err(EngineError::Invalid {
                path: hp.file.path.display().to_string(),
                message: format!("{key}: expected an integer or an array of booleans"),
            }),
        },
    }
}

pub fn load(l: &WeightLoader) -> Result<Box<dyn Model>, EngineError> {
    let hp = HParams {
        file: &l.file,
        arch: ARCH,
    };
    let path = || l.file.path.display().to_string();
    let invalid = |message: String| EngineError::Invalid {
        path: path(),
        message,
    };
    let d = hp.usize("embedding_length")?;
    let n_layer = hp.usize("block_count")?;
    let n_head = hp.usize("attention.head_count")?;
    let n_kv_head = hp.usize_opt("attention.head_count_kv").unwrap_or(n_head);
    let head_dim = hp
        .usize_opt("attention.key_length")
        .unwrap_or(d / n_head.max(1));
    let eps = hp.f32("attention.layer_norm_rms_epsilon")?;
    if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || head_dim == 0 {
        return Err(invalid(format!(
            "{ARCH}: attention.head_count {n_head} must be a positive multiple of attention.head_count_kv {n_kv_head}, head size {head_dim} positive"
        )));
    }
    if let Some(v) = hp.usize_opt("attention.value_length") {
        if v != head_dim {
            return Err(invalid(format!(
                "{ARCH}.attention.value_length {v} differs from key_length {head_dim} (unsupported)"
            )));
        }
    }
    let n_rot = hp.usize_opt("rope.dimension_count").unwrap_or(head_dim);
    if n_rot != head_dim {
        // llama.cpp sizes the Q/K/V tensors of this graph with n_rot: they must agree.
        return Err(invalid(format!(
            "{ARCH}.rope.dimension_count {n_rot} differs from the head size {head_dim}"
        )));
    }
    let window = hp.usize("attention.sliding_window")?;
    if window == 0 {
        return Err(invalid(format!(
            "{ARCH}.attention.sliding_window must be positive"
        )));
    }
    let is_swa = swa_layers(&hp, n_layer)?;
    let n_ctx_train = hp.usize_opt("context_length").unwrap_or(131072);
    let base = hp.f32_opt("rope.freq_base").unwrap_or(10000.0);
    if let Some(b) = hp.f32_opt("rope.freq_base_swa") {
        if b != base {
            return Err(invalid(format!(
                "{ARCH}.rope.freq_base_swa {b} differs from rope.freq_base {base} (unsupported)"
            )));
        }
    }
    let factor = hp
        .f32_opt("rope.scaling.factor")
        .filter(|&f| f != 0.0)
        .unwrap_or(1.0);
    let scaling = l
        .file
        .get_str(&format!("{ARCH}.rope.scaling.type"))
        .unwrap_or("linear");
    let (freq_scale, yarn) = match scaling {
        "none" => (1.0, None),
        "linear" => (1.0 / factor, None),
        "yarn" => {
            let n_ctx_orig = hp
                .usize_opt("rope.scaling.original_context_length")
                .unwrap_or(n_ctx_train);
            let y = Yarn::new(
                n_rot,
                n_ctx_orig,
                base,
                1.0 / factor,
                hp.f32_opt("rope.scaling.yarn_beta_fast").unwrap_or(32.0),
                hp.f32_opt("rope.scaling.yarn_beta_slow").unwrap_or(1.0),
                hp.f32_opt("rope.scaling.attn_factor").unwrap_or(1.0),
                l.file.get_bool(KEY_YARN_TRUNCATE).unwrap_or(true),
            );
            (1.0 / factor, Some(y))
        }
        other => {
            return Err(invalid(format!(
                "{ARCH}.rope.scaling.type '{other}' is not supported (none, linear, yarn)"
            )))
        }
    };
    let rope = Rope {
        n_rot,
        base,
        freq_scale,
        neox: true,
        yarn,
    };
    let opts = MoeOptions {
        n_expert: hp.usize("expert_count")?,
        n_used: hp.usize("expert_used_count")?,
        n_ff_exp: hp.usize("expert_feed_forward_length")?,
        gating: Gating::SoftmaxChosen,
        act: ExpertAct::SwigluOai {
            alpha: SWIGLU_ALPHA,
            limit: SWIGLU_LIMIT,
        },
        weight_scale: hp
            .f32_opt("expert_weights_scale")
            .filter(|&s| s != 0.0)
            .unwrap_or(1.0),
    };
    let n_vocab = vocab_size(l)?;
    let mut layers = Vec::with_capacity(n_layer);
    for (i, &swa) in is_swa.iter().enumerate() {
        let t = |n: &str| format!("blk.{i}.{n}");
        let attn = AttentionWeights::load(l, i, d, n_head, n_kv_head, head_dim, false)?;
        // Every gpt-oss layer has sinks and biases; a file without them is not this model.
        for (name, present) in [
            ("attn_sinks.weight", attn.sinks.is_some()),
            ("attn_q.bias", attn.bq.is_some()),
            ("attn_k.bias", attn.bk.is_some()),
            ("attn_v.bias", attn.bv.is_some()),
            ("attn_output.bias", attn.bo.is_some()),
        ] {
            if !present {
                return Err(EngineError::MissingTensor {
                    path: path(),
                    tensor: t(name),
                });
            }
        }
        let moe = MoeWeights::load(l, i, d, opts)?;
        if moe.router_bias.is_none()
            || moe.gate_bias.is_none()
            || moe.up_bias.is_none()
            || moe.down_bias.is_none()
        {
            return Err(EngineError::MissingTensor {
                path: path(),
                tensor: t("ffn_{gate_inp,gate_exps,up_exps,down_exps}.bias"),
            });
        }
        layers.push(Layer {
            attn_norm: l.vector(&t("attn_norm.weight"), d)?,
            attn,
            ffn_norm: l.vector(&t("post_attention_norm.weight"), d)?,
            moe,
            window: swa.then_some(window),
        });
    }
    if l.has("output.bias") {
        return Err(invalid(format!(
            "{ARCH}: an output.bias tensor is not supported"
        )));
    }
    Ok(Box::new(GptOss {
        info: ModelInfo {
            arch: ARCH.into(),
            n_vocab,
            n_ctx_train,
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
        // gpt-oss always ships an untied output matrix (llama.cpp requires it).
        output: l.matrix("output.weight", d, n_vocab)?,
        moe_scratch: Mutex::new(MoeScratch::default()),
    }))
}

impl Model for GptOss {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn kv_specs(&self) -> Vec<LayerKvSpec> {
        self.layers
            .iter()
            .map(|l| LayerKvSpec {
                n_kv_head: self.attn.n_kv_head,
                head_dim: self.attn.head_dim,
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
            layer
                .moe
                .forward(&ctx.pool, &mut moe_scratch, &s.h[..n * d], n, &mut s.y);
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
