//! Bind, serve, and shut down gracefully.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::future::IntoFuture as _;

use anyhow::Context as _;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;

use crate::api;
use crate::backend::Backend;
use crate::config::ServerConfig;
use crate::state::AppState;

/// After the drain deadline, how long aborted requests get to write their
/// final bytes before the server future is dropped.
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serve the API on `config.addr` until SIGINT/SIGTERM. On a signal the
/// listener closes, `/health` and new generations answer 503, in-flight
/// requests get up to `config.drain_timeout` to finish, then this returns
/// (dropping whatever is left, which cancels those generations).
pub async fn serve(backend: Arc<dyn Backend>, config: ServerConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    serve_on(listener, backend, config, shutdown_signal()).await
}

/// [`serve`] on an already-bound listener, stopping when `shutdown`
/// resolves (tests pass a channel instead of a signal).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let drain = config.drain_timeout;
    let state = Arc::new(AppState::new(backend, config));
    let app = api::router_with_state(state.clone());
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "hearth server listening");

    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let flag = state.clone();
    let graceful = async move {
        shutdown.await;
        flag.draining.store(true, Ordering::Relaxed);
        tracing::info!(?drain, "shutting down: draining in-flight requests");
        let _ = began_tx.send(());
    };
    if let Some(store) = &state.gateway.sql {
        // Replies a previous run was writing when it stopped cannot resume.
        match store.mark_interrupted_messages().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!("{n} replies were cut off by the last shutdown: marked stopped")
            }
            Err(e) => tracing::error!("cannot check for interrupted replies: {e}"),
        }
    }
    let r = match state.config.tls.clone() {
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(listener, tls)
                .context("cannot start the TLS listener")?;
            drive(listener, app, graceful, began_rx, drain, state.clone()).await
        }
        None => drive(listener, app, graceful, began_rx, drain, state.clone()).await,
    };
    // The web UI's generations run on their own tasks, outside any connection: stop what is
    // left and save it (status `stopped`) before returning.
    state.draining.store(true, Ordering::Relaxed);
    state
        .generations
        .stop_all(std::time::Duration::from_secs(5))
        .await;
    r
}

/// Serve until the graceful shutdown began, then drain (for plain TCP and TLS listeners).
async fn drive<L>(
    listener: L,
    app: axum::Router,
    graceful: impl std::future::Future<Output = ()> + Send + 'static,
    began_rx: tokio::sync::oneshot::Receiver<()>,
    drain: std::time::Duration,
    state: Arc<AppState>,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    ClientAddr: for<'a> Connected<IncomingStream<'a, L>>,
{
    // Client addresses for the audit log.
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(graceful)
    .into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return r.context("server error"),
        _ = began_rx => {}
    }
    if let Ok(r) = tokio::time::timeout(drain, &mut server).await {
        return r.context("server error");
    }
    tracing::warn!(
        ?drain,
        "drain deadline passed; ending the remaining requests"
    );
    state.abort.send_replace(true);
    // Aborted handlers answer at once; give them a moment to flush.
    match tokio::time::timeout(ABORT_GRACE, server).await {
        Ok(r) => r.context("server error"),
        Err(_) => Ok(()),
    }
}

/// The peer address of a connection, for any listener (axum provides `SocketAddr` connect
/// info for its own TCP listener only).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Resolves on SIGINT or SIGTERM (SIGINT only off Unix).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
