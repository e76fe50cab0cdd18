//! The HTTP server: accept loop admitting connections in two budgets
//! (`admission`), one hyper HTTP/1.1 connection task each, graceful shutdown
//! (stop accepting, let requests finish, end SSE streams) bounded by
//! `SHUTDOWN_GRACE`.

pub mod admission;
pub mod body;
pub mod error;
pub mod guard;
pub mod handlers;
pub mod router;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::actors::Actors;
use crate::config::Config;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::poll::CountsView;
use admission::Admission;

/// A client must finish sending its headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request head (request line and headers) read; a longer one
/// gets `431`. hyper's default, ~400 KiB, is memory a slow flood could pin
/// per connection.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long in-flight requests may run after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(7);
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What handlers can reach: configuration, actor handles, shared views.
pub struct AppState {
    pub config: Config,
    pub actors: Actors,
    pub view: CountsView,
    /// Shared by referral lookups, pages and admin (`DB_POOL_SIZE`).
    pub pool: Pool,
    /// The readiness check's own connection.
    pub probe_pool: Pool,
    pub live: Live,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub admission: Admission,
    pub readiness: handlers::probes::Readiness,
}

/// Serves until `shutdown` is cancelled, then drains connections.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    let own = state.clone();
    accept_loop(listener, state, &own.admission, router::handle, shutdown).await;
}

/// Connections the metrics listener serves at once: Prometheus needs one or two.
const METRICS_CONNECTIONS: usize = 8;

/// The `METRICS_ADDR` listener: `GET /metrics` and nothing else, so the
/// public port never shows queue depths and process figures.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) {
    let admission = Admission::new(admission::Budgets {
        streams: 0,
        others: METRICS_CONNECTIONS,
    });
    accept_loop(listener, state, &admission, router::metrics_only, shutdown).await;
}

/// Accepts within `admission`'s general budget and serves each connection
/// with `handler` until `shutdown`, then drains connections.
async fn accept_loop<H, F>(
    listener: TcpListener,
    state: Arc<AppState>,
    admission: &Admission,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Arc<AppState>, hyper::Request<hyper::body::Incoming>) -> F + Copy + Send + 'static,
    F: Future<Output = Result<hyper::Response<body::Body>, std::convert::Infallible>>
        + Send
        + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // With the general budget full this one waits and the loop accepts no
        // more: later connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = admission.connection() => Arc::new(slot),
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        // The service lives as long as the connection, and the slot with it;
        // a `/stream` request gives the general slot back early (sse.rs).
        // Boxed per request: hyper keeps room for one service future per
        // connection for as long as it lives, and the router's is 4.6 KiB,
        // which every idle screen would hold.
        let service = service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(guard::Peer(peer));
            req.extensions_mut().insert(slot.clone());
            Box::pin(handler(state.clone(), req))
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("connections still open after {SHUTDOWN_GRACE:?}, closing"),
    }
}
