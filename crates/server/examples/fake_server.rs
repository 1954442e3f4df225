//! Serve the fake backend, for client-compatibility tests (the Python test
//! drives it with the official `openai` SDK) and for trying the API by hand.
//!
//! ```text
//! cargo run -p hearth-server --example fake_server -- --port 8080 \
//!     [--script TEXT] [--eos-after N] [--delay-ms N] [--capacity N] [--context N] [--harmony]
//!     [--guardrails FILE]
//! ```
//! Prints `listening on http://ADDR` once bound (`--port 0` picks a free port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hearth_server::fake::{FakeBackend, FakeConfig};
use hearth_server::ServerConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut cfg = FakeConfig::default();
    let mut port: u16 = 8080;
    let mut guardrails = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => port = value()?.parse().context("--port")?,
            "--script" => cfg.script = Some(value()?),
            "--eos-after" => cfg.eos_after = Some(value()?.parse().context("--eos-after")?),
            "--delay-ms" => {
                cfg.token_delay = Duration::from_millis(value()?.parse().context("--delay-ms")?)
            }
            "--capacity" => cfg.capacity = value()?.parse().context("--capacity")?,
            "--context" => cfg.context_length = value()?.parse().context("--context")?,
            // Report the harmony (gpt-oss) chat format: the script is harmony output.
            "--harmony" => cfg.chat_format = hearth_server::backend::ChatFormat::Harmony,
            "--guardrails" => {
                let p = std::path::PathBuf::from(value()?);
                let g = hearth_server::guard::Guardrails::from_file(&p)
                    .with_context(|| format!("--guardrails {}", p.display()))?;
                guardrails = Some(Arc::new(g));
            }
            other => bail!("unknown flag {other}"),
        }
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    let config = ServerConfig {
        addr,
        drain_timeout: Duration::from_secs(2),
        guardrails,
        ..ServerConfig::default()
    };
    let backend = Arc::new(FakeBackend::new(cfg));
    hearth_server::serve_on(listener, backend, config, hearth_server::shutdown_signal()).await
}
