//! Building blocks written once and composed by the architecture files in `models/`.
pub mod attention;
pub mod ffn;
pub mod moe;

pub use attention::{AttentionParams, AttentionWeights, AttnScratch};
pub use ffn::{FfnScratch, FfnWeights};
pub use moe::{ExpertAct, Gating, MoeOptions, MoeScratch, MoeWeights};
