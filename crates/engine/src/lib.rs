//! Hearth's inference engine: architectures built from shared blocks, a KV cache, sampling, a
//! persistent thread pool, and single-sequence generation. Knows nothing about HTTP.

pub mod batch;
pub mod blocks;
pub mod error;
pub mod hf;
pub mod kv;
pub mod linear;
pub mod models;
pub mod ops;
pub mod pool;
pub mod sample;
pub mod scheduler;
pub mod session;
pub mod source;
pub mod trace;
pub mod weights;

pub use error::EngineError;
pub use hearth_formats as formats;
pub use hearth_kernels as kernels;
pub use hearth_template as template;
pub use hearth_tokenizer as tokenizer;
pub use sample::SamplingParams;
pub use session::{FinishReason, Generation, Generator, LoadedModel};
pub use source::ModelSource;
