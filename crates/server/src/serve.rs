//! Bind, serve, and shut down gracefully.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;

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
///
/// Our own accept loop over hyper-util's connection builder rather than `axum::serve`, which
/// sets no timer: without one hyper cannot time out a client that never finishes its request
/// head (slowloris) or idles on a kept-alive connection forever. Here every connection gets
/// `header_read_timeout` for each request head (which also bounds idle keep-alive time) and a
/// bounded head size (`max_header_bytes`: HTTP/1 read buffer, HTTP/2 header list; hyper
/// answers 431 past it, and more than 100 header lines in HTTP/1).
async fn drive<L>(
    mut listener: L,
    app: axum::Router,
    graceful: impl std::future::Future<Output = ()> + Send + 'static,
    began_rx: tokio::sync::oneshot::Receiver<()>,
    drain: std::time::Duration,
    state: Arc<AppState>,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::Service as _;

    let head_timeout = state.config.header_read_timeout;
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
    let head_bytes = state.config.max_header_bytes.max(8192);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(head_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head_bytes).unwrap_or(u32::MAX));
    let watcher = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::spawn(graceful);
    tokio::pin!(began_rx);
    loop {
        tokio::select! {
            (io, addr) = listener.accept() => {
                let app = app.clone();
                // Client addresses for the audit log, as axum's ConnectInfo.
                let service = hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(axum::extract::ConnectInfo(ClientAddr(addr)));
                    let mut app = app.clone();
                    async move { app.call(req.map(axum::body::Body::new)).await }
                });
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                let conn = watcher.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::trace!("connection ended: {e}");
                    }
                });
            }
            _ = &mut began_rx => break,
        }
    }
    // Stop accepting; open connections finish their requests (idle ones close now).
    drop(listener);
    let all_done = watcher.shutdown();
    tokio::pin!(all_done);
    if tokio::time::timeout(drain, &mut all_done).await.is_ok() {
        return Ok(());
    }
    tracing::warn!(
        ?drain,
        "drain deadline passed; ending the remaining requests"
    );
    state.abort.send_replace(true);
    // Aborted handlers answer at once; give them a moment to flush.
    let _ = tokio::time::timeout(ABORT_GRACE, all_done).await;
    Ok(())
}

/// The peer address of a connection, for any listener (axum provides `SocketAddr` connect
/// info for its own TCP listener only).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::SocketAddr);

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
