//! `glm4`: GLM-4-9B-0414 / GLM-4-32B-0414 (transformers' Glm4ForCausalLM), as llama.cpp's
//! src/models/glm4.cpp: the ChatGLM block (partial interleaved RoPE, fused gate/up `ffn_up`,
//! Q/K/V with bias, separate or fused) plus an RMSNorm on the attention output
//! (`post_attention_norm`) and on the FFN output (`post_ffw_norm`) before each residual add.
//! NextN layers after `block_count - nextn_predict_layers` are not run (as llama.cpp).
//! M-RoPE files (the vision GLM-4V, `rope.dimension_sections`) are refused.

use super::chatglm::load_glm;
use super::Model;
use crate::error::EngineError;
use crate::weights::WeightLoader;

pub fn load(l: &WeightLoader) -> Result<Box<dyn Model>, EngineError> {
    let mrope = match l.file.get("glm4.rope.dimension_sections") {
        Some(hearth_formats::Value::Array(a)) => a.iter().any(|v| v.as_u64() != Some(0)),
        Some(v) => v.as_u64() != Some(0),
        None => false,
    };
    if mrope {
        return Err(EngineError::Invalid {
            path: l.file.path.display().to_string(),
            message: "glm4 with M-RoPE (rope.dimension_sections, GLM-4V) is not supported".into(),
        });
    }
    load_glm(l, "glm4", true)
}
