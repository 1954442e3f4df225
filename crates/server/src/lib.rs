//! Hearth's OpenAI-compatible HTTP API, as a library over a [`Backend`].
//!
//! ```text
//! POST /v1/chat/completions   POST /v1/completions
//! GET  /v1/models             GET  /v1/models/{id}
//! POST /tokenize              POST /detokenize       (llama-server bodies)
//! GET  /health                GET  /metrics          (Prometheus text)
//! ```
//!
//! The server validates and tokenizes, then hands a [`GenerateRequest`] to the
//! backend and turns its [`GenerateEvent`]s into OpenAI JSON or SSE. See
//! [`backend`] for who owns which rule (stop strings: the server; EOS and
//! `max_tokens`: the backend) and `README.md` for the developer notes.

pub mod api;
pub mod backend;
pub mod config;
pub mod conformance;
pub mod error;
pub mod fake;
pub mod gateway;
pub mod generation;
pub mod generations;
pub mod guard;
pub mod ids;
pub mod json;
pub mod local;
pub mod metrics;
pub mod pycall;
pub mod serve;
pub mod state;
pub mod stop;
pub mod tls;
pub mod toolcall;
pub mod ui;
pub mod upstream;

pub use api::router;
pub use backend::{
    Backend, BackendError, BackendStats, FinishReason, GenerateEvent, GenerateRequest, ModelCard,
    OutputConstraints, SamplingParams, TokenLogprob, TopLogprob,
};
pub use config::ServerConfig;
pub use error::ApiError;
pub use serve::{serve, serve_on, shutdown_signal};
