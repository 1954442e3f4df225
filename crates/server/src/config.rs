//! Server settings.

use std::net::SocketAddr;
use std::time::Duration;

use crate::backend::SamplingParams;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where [`crate::serve`] listens.
    pub addr: SocketAddr,
    /// After SIGTERM/SIGINT: stop accepting, let in-flight requests finish
    /// for at most this long, then exit anyway.
    pub drain_timeout: Duration,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Largest `n` (choices per request) accepted.
    pub max_n: usize,
    /// Largest number of stop strings accepted (OpenAI allows 4; vLLM and
    /// llama.cpp accept more, so the default is lenient).
    pub max_stop: usize,
    /// Interval of SSE comment lines that keep idle streams (long prompts)
    /// alive through proxies.
    pub sse_keep_alive: Duration,
    /// When set, every route but `/health` requires
    /// `Authorization: Bearer <key>` (401 otherwise), like llama-server's
    /// `--api-key`.
    pub api_key: Option<String>,
    /// Sampling settings used for what a request leaves out. The default is
    /// OpenAI's neutral set (temperature 1, no top-k/top-p/min-p, no
    /// penalties); an operator may prefer llama.cpp's (top-k 40, top-p 0.95,
    /// min-p 0.05) or a model's `generation_config.json`.
    pub default_sampling: SamplingParams,
    /// Keys, roles, limits and audit. `None`: no database; only `api_key` (if set) is checked.
    pub gateway: Option<std::sync::Arc<crate::gateway::Gateway>>,
    /// Serve HTTPS with this rustls config (`--tls-cert`/`--tls-key`; see [`crate::tls`]).
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Guardrails policy (`None`: the default policy).
    pub guardrails: Option<std::sync::Arc<crate::guard::Guardrails>>,
    /// Origins allowed to call the API from a browser (`*` for any); empty: CORS off, as
    /// browsers then refuse cross-origin calls.
    pub cors_origins: Vec<String>,
    /// How long a client may take to send a request head (also bounds how long a kept-alive
    /// connection may sit idle between requests).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) accepted; 431 above.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request body (408 past it).
    pub body_read_timeout: Duration,
    /// Most messages (or `input` items) in one request.
    pub max_messages: usize,
    /// The web UI at `/` (embedded files, off with `--no-ui`, or given files in tests).
    pub ui: crate::ui::UiMode,
    /// Model ids served by other OpenAI-compatible servers (see [`crate::upstream`]).
    pub upstreams: Option<std::sync::Arc<crate::upstream::Upstreams>>,
    /// What the admin API may change about the served models (`/admin/v1/models`).
    pub model_admin: ModelAdminPolicy,
}

/// Model management at run time. The default allows unloading and changing the default
/// model, and refuses loading until a models directory is named (docs/SECURITY.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelAdminPolicy {
    /// `--no-model-admin`: the list stays readable; loading, unloading and changing the
    /// default are refused (403 `model_admin_disabled`).
    pub disabled: bool,
    /// `--models-dir`: models can be loaded only from files and directories under it
    /// (relative paths are taken from it; symbolic links are followed before the check).
    /// `None`: loading is refused.
    pub models_dir: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            drain_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            max_n: 16,
            max_stop: 16,
            sse_keep_alive: Duration::from_secs(15),
            api_key: None,
            default_sampling: SamplingParams::default(),
            gateway: None,
            tls: None,
            guardrails: None,
            cors_origins: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(60),
            max_messages: 4096,
            ui: crate::ui::UiMode::Embedded,
            upstreams: None,
            model_admin: ModelAdminPolicy::default(),
        }
    }
}
