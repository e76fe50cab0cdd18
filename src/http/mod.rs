//! The HTTP server: accept loop admitting connections in two budgets
//! (`admission`), one hyper HTTP/1.1 connection task each until a `/stream`
//! hands its socket to the fan-out (fanout.rs), graceful shutdown (stop
//! accepting, let requests finish, end SSE streams) bounded by
//! `SHUTDOWN_GRACE`.

pub mod admission;
pub mod attention;
pub mod body;
pub mod error;
pub mod fanout;
pub mod guard;
pub mod handlers;
pub mod router;
pub mod sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::actors::Actors;
use crate::config::Config;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::poll::CountsView;
use admission::{Admission, Admitted, IDLE_GRACE, Pending, Slot};
use attention::{EVICTED, FLUSHED, SHUTDOWN, Watched};
use fanout::{Fanout, Handover, Tap};

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
    /// The projector page's QR codes, drawn once per host.
    pub qr_codes: crate::views::qr::QrCache,
    /// Signs and checks screen tickets and device cookies (the key every replica shares).
    pub signer: crate::signing::Signer,
}

/// Serves until `shutdown` is cancelled, then drains connections.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    let own = state.clone();
    let (fanout, loops) = Fanout::spawn(
        &state.actors.broadcaster,
        state.metrics.clone(),
        shutdown.clone(),
    );
    accept_loop(
        listener,
        state,
        &own.admission,
        router::handle,
        Some(fanout),
        shutdown,
    )
    .await;
    // The loops end every stream as soon as shutdown begins.
    for writer in loops {
        if tokio::time::timeout(SHUTDOWN_GRACE, writer).await.is_err() {
            warn!("a fan-out loop still running after {SHUTDOWN_GRACE:?}");
        }
    }
}

/// Connections the metrics listener serves at once: Prometheus needs one or two.
const METRICS_CONNECTIONS: usize = 8;
/// Connections the probe listener serves at once: the kubelet's three
/// probes, compose's healthcheck, a human with curl.
const PROBE_CONNECTIONS: usize = 16;
/// How long a refused connection may take to send its request head.
const REFUSAL_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// The whole life of a refused connection at most.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);

/// What an operational listener serves besides nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operational {
    /// `METRICS_ADDR`: `/metrics`.
    Metrics,
    /// `PROBE_ADDR`: `/health`, `/ready`, `/ready/votes`.
    Probes,
    /// Both on one address.
    Both,
}

/// An operational listener (`METRICS_ADDR`, `PROBE_ADDR` or both): its own
/// small budget, so no public traffic can starve Prometheus or the kubelet,
/// and the public port never shows queue depths and process figures.
pub async fn serve_operational(
    listener: TcpListener,
    state: Arc<AppState>,
    serves: Operational,
    shutdown: CancellationToken,
) {
    let others = match serves {
        Operational::Metrics => METRICS_CONNECTIONS,
        Operational::Probes => PROBE_CONNECTIONS,
        Operational::Both => METRICS_CONNECTIONS + PROBE_CONNECTIONS,
    };
    let admission = Admission::with_pending(admission::Budgets { streams: 0, others }, others);
    match serves {
        Operational::Metrics => {
            accept_loop(
                listener,
                state,
                &admission,
                router::metrics_only,
                None,
                shutdown,
            )
            .await
        }
        Operational::Probes => {
            accept_loop(
                listener,
                state,
                &admission,
                router::probes_only,
                None,
                shutdown,
            )
            .await
        }
        Operational::Both => {
            accept_loop(
                listener,
                state,
                &admission,
                router::metrics_and_probes,
                None,
                shutdown,
            )
            .await
        }
    }
}

/// Accepts every connection at once and serves it with `handler` within
/// `admission`'s general budget (see admission.rs: eviction, `503`) until
/// `shutdown`, then drains connections. Streams go to `fanout` (the
/// operational listeners serve none).
async fn accept_loop<H, F>(
    listener: TcpListener,
    state: Arc<AppState>,
    admission: &Admission,
    handler: H,
    fanout: Option<Fanout>,
    shutdown: CancellationToken,
) where
    H: Fn(Arc<AppState>, hyper::Request<hyper::body::Incoming>) -> F + Copy + Send + 'static,
    F: Future<Output = Result<hyper::Response<body::Body>, std::convert::Infallible>>
        + Send
        + 'static,
{
    let mut registry = admission.registry();
    // Every connection task holds a sender and never sends: the drain is
    // over when the channel reports all of them gone.
    let (alive, mut drained) = mpsc::channel::<()>(1);
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
            _ = shutdown.cancelled() => {
                registry.shut_all();
                break;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            stream,
            peer,
            state: state.clone(),
            fanout: fanout.clone(),
            _alive: alive.clone(),
        };
        match admission.admit(&mut registry, peer.ip()) {
            Admitted::Now(slot) => {
                tokio::spawn(conn.serve(slot, handler));
            }
            Admitted::Waiting(waiter, evicted) => {
                if evicted {
                    state.metrics.connections_evicted.inc();
                }
                tokio::spawn(async move {
                    match waiter.wait().await {
                        Ok(slot) => conn.serve(slot, handler).await,
                        Err(pending) => conn.refuse(pending).await,
                    }
                });
            }
            Admitted::Refused => conn.refuse_at_once(),
        }
    }
    drop(listener);
    drop(alive);
    tokio::select! {
        _ = drained.recv() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("connections still open after {SHUTDOWN_GRACE:?}, closing"),
    }
}

/// One accepted connection, before it is served or refused.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    fanout: Option<Fanout>,
    _alive: mpsc::Sender<()>,
}

/// Gives a connection's general slot back when its task ends, however.
struct Ends(Arc<Slot>);

impl Drop for Ends {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl Connection {
    /// Serves the connection holding `slot` until the client closes it, it
    /// is evicted (admission.rs), or shutdown.
    async fn serve<H, F>(self, slot: Arc<Slot>, handler: H)
    where
        H: Fn(Arc<AppState>, hyper::Request<hyper::body::Incoming>) -> F + Copy + Send + 'static,
        F: Future<Output = Result<hyper::Response<body::Body>, std::convert::Infallible>>
            + Send
            + 'static,
    {
        let _ends = Ends(slot.clone());
        let (peer, state, own) = (self.peer, self.state, slot.clone());
        let attention = slot.attention().clone();
        let handover = Handover::new(attention.clone());
        let tap = Tap::new(self.stream, handover.clone());
        let ticket_out = handover.clone();
        // The service lives as long as the connection, and the slot with it;
        // a `/stream` request gives the general slot back early (sse.rs).
        // Boxed per request: hyper keeps room for one service future per
        // connection for as long as it lives, and the router's is 4.6 KiB,
        // which every idle screen would hold.
        let service = service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(guard::Peer(peer));
            req.extensions_mut().insert(own.clone());
            // `/stream` arms it (sse.rs); the flush of that head hands the
            // socket to the fan-out (`hand_over`).
            req.extensions_mut().insert(ticket_out.clone());
            let busy = own.busy();
            let state = state.clone();
            // The handler's future is made inside the boxed one, not moved
            // into it: each move of a request's future is a memcpy of KiBs.
            Box::pin(async move {
                let mut resp = handler(state, req).await?;
                // Evicted while busy: this answer is the last one.
                if busy.slot().is_evicted() {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                drop(busy);
                Ok::<_, std::convert::Infallible>(resp)
            })
        });
        let mut conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(tap), service);
        match attention
            .watch(&mut conn, EVICTED | FLUSHED | SHUTDOWN)
            .await
        {
            Watched::Ended(ended) => return log_end(ended),
            Watched::Raised(raised) if raised & FLUSHED != 0 => {
                return hand_over(conn, &handover, self.fanout).await;
            }
            Watched::Raised(_) => {}
        }
        // Asked to give the slot up (or shutting down): the next answer says
        // `Connection: close`; an idle connection closes once idle for
        // `IDLE_GRACE`, never while a proxy may still send into it.
        while !attention.is_raised(SHUTDOWN) {
            let wait = match slot.idle_for() {
                Some(idle) if idle >= IDLE_GRACE => break,
                Some(idle) => IDLE_GRACE - idle,
                None => IDLE_GRACE,
            };
            let watched = attention.watch(&mut conn, FLUSHED | SHUTDOWN);
            match tokio::time::timeout(wait, watched).await {
                Ok(Watched::Ended(ended)) => return log_end(ended),
                Ok(Watched::Raised(raised)) if raised & FLUSHED != 0 => {
                    return hand_over(conn, &handover, self.fanout).await;
                }
                Ok(Watched::Raised(_)) | Err(_) => {}
            }
        }
        std::pin::Pin::new(&mut conn).graceful_shutdown();
        log_end(conn.await);
    }

    /// No slot came in time: `503` + `Retry-After` to the connection's
    /// request, counted like any other answer, then close.
    async fn refuse(self, pending: Pending) {
        let state = self.state;
        let service = service_fn(move |req| router::refuse(state.clone(), req));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(REFUSAL_HEADER_TIMEOUT)
            .keep_alive(false)
            .serve_connection(TokioIo::new(self.stream), service);
        match tokio::time::timeout(REFUSAL_DEADLINE, conn).await {
            Ok(ended) => log_end(ended),
            Err(_) => debug!("refused connection cut at its deadline"),
        }
        drop(pending);
    }

    /// Even the connections being refused fill their budget: answer with
    /// what the socket can take now, without reading the request, and close.
    fn refuse_at_once(self) {
        self.state.metrics.connections_dropped.inc();
        let _ = self.stream.try_write(router::REFUSED_AT_ONCE);
    }
}

/// A stream's head is out: its socket leaves hyper (with it the
/// connection's buffers and this task) for the fan-out. Whatever the
/// client sent after its request is dropped: the stream said
/// `Connection: close`.
async fn hand_over<S>(
    conn: http1::Connection<TokioIo<Tap>, S>,
    handover: &Handover,
    fanout: Option<Fanout>,
) where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = body::Body>,
{
    let stream = conn.into_parts().io.into_inner().into_inner();
    match (handover.take(), fanout) {
        (Some(ticket), Some(fanout)) => fanout.join(stream, ticket).await,
        // No fan-out on this listener: the stream ends here.
        _ => debug!("stream closed at handover"),
    }
}

fn log_end(ended: Result<(), hyper::Error>) {
    if let Err(e) = ended {
        debug!(error = %e, "connection ended with an error");
    }
}
