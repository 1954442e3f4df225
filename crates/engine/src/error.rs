//! Engine errors: each names the file, tensor, parameter or limit involved.

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] hearth_formats::GgufError),
    #[error(transparent)]
    Hf(#[from] crate::hf::HfError),
    #[error("{path}: missing tensor '{tensor}'")]
    MissingTensor { path: String, tensor: String },
    #[error("{path}: tensor '{tensor}' has shape {found:?}, expected {expected:?}")]
    BadShape {
        path: String,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: missing or invalid metadata '{key}'")]
    MissingMetadata { path: String, key: String },
    #[error("{path}: unsupported architecture '{arch}' (supported: {supported})")]
    UnsupportedArchitecture {
        path: String,
        arch: String,
        supported: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("prompt of {prompt} tokens plus {max_tokens} new tokens exceeds the context length of {context}")]
    ContextOverflow {
        prompt: usize,
        max_tokens: usize,
        context: usize,
    },
}
