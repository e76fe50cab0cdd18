//! `/stream`: one SSE connection. Takes a slot of the stream budget (or
//! answers `503` + `Retry-After` at once), sends the current frame, then
//! every broadcast frame; a client that lags skips to the newest frame; a
//! comment keeps idle proxies from closing the connection; ends on shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::admission::{Slot, StreamSlot};
use super::body::{self, Body};
use crate::actors::broadcaster::BroadcasterHandle;
use crate::metrics::Metrics;

/// Longest silence before a keep-alive comment (docs/contract.md#get-stream).
pub const SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Tells EventSource how long to wait before reconnecting.
const RETRY_FRAME: &[u8] = b"retry: 2000\n\n";
const KEEPALIVE_FRAME: &[u8] = b": keep-alive\n\n";
/// Seconds a refused screen waits before it tries again (`Retry-After`).
pub const STREAM_RETRY_AFTER_SECS: u32 = 5;

/// Counts this connection in `sse_clients` for as long as it lives.
struct ClientGuard(Arc<Metrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.sse_clients.dec();
    }
}

struct State {
    frames: tokio::sync::broadcast::Receiver<Bytes>,
    broadcaster: BroadcasterHandle,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    _guard: ClientGuard,
    _slot: StreamSlot,
}

/// `GET /stream` for one client, or `503` when the stream budget is full.
/// `HEAD /stream` answers whether a screen would be admitted now, without
/// taking a slot: the results page asks it before reconnecting.
pub fn serve<B>(state: &Arc<AppState>, req: &Request<B>) -> Response<Body> {
    if req.method() == Method::HEAD {
        return match state.admission.has_stream_room() {
            true => with_sse_headers(Response::new(body::full(""))),
            false => refused(&state.metrics),
        };
    }
    let conn = req.extensions().get::<Arc<Slot>>().map(Arc::as_ref);
    match state.admission.stream(conn) {
        Some(slot) => response(
            &state.actors.broadcaster,
            state.metrics.clone(),
            state.shutdown.clone(),
            slot,
        ),
        None => refused(&state.metrics),
    }
}

/// The stream budget is full: a quick answer that costs no slot.
fn refused(metrics: &Metrics) -> Response<Body> {
    metrics.streams_refused.inc();
    let mut resp = body::json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "detail": "Too many screens connected, retry later" }),
    );
    let h = resp.headers_mut();
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from(STREAM_RETRY_AFTER_SECS),
    );
    // The connection still holds a general slot: free it now.
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The streaming response for one client holding `slot`.
fn response(
    broadcaster: &BroadcasterHandle,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    slot: StreamSlot,
) -> Response<Body> {
    let (current, frames) = broadcaster.subscribe();
    metrics.sse_clients.inc();
    let state = State {
        frames,
        broadcaster: broadcaster.clone(),
        shutdown,
        metrics: metrics.clone(),
        _guard: ClientGuard(metrics),
        _slot: slot,
    };
    let first = stream::iter([Bytes::from_static(RETRY_FRAME), current]);
    let rest = stream::unfold(state, next_frame);
    let body = StreamBody::new(
        first
            .chain(rest)
            .map(|b| Ok::<_, super::body::BodyError>(Frame::data(b))),
    );

    with_sse_headers(Response::new(BodyExt::boxed_unsync(body)))
}

fn with_sse_headers(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The connection gave its general slot to the stream: it ends with it.
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn next_frame(mut s: State) -> Option<(Bytes, State)> {
    let frame = tokio::select! {
        received = s.frames.recv() => match received {
            Ok(frame) => frame,
            Err(RecvError::Lagged(_)) => {
                s.metrics.sse_lagged.inc();
                // Skip the backlog: the newest frames are full snapshots.
                s.frames = s.frames.resubscribe();
                s.broadcaster.latest()
            }
            Err(RecvError::Closed) => return None,
        },
        _ = tokio::time::sleep(SSE_KEEPALIVE) => Bytes::from_static(KEEPALIVE_FRAME),
        _ = s.shutdown.cancelled() => return None,
    };
    Some((frame, s))
}
