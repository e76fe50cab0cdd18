//! `/stream`: one SSE connection. Sends the current frame at once, then every
//! broadcast frame; a client that lags skips to the newest frame; a comment
//! keeps idle proxies from closing the connection; ends on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::body::Body;
use crate::actors::broadcaster::BroadcasterHandle;
use crate::metrics::Metrics;

/// Longest silence before a keep-alive comment (docs/contract.md#get-stream).
pub const SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Tells EventSource how long to wait before reconnecting.
const RETRY_FRAME: &[u8] = b"retry: 2000\n\n";
const KEEPALIVE_FRAME: &[u8] = b": keep-alive\n\n";

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
}

/// The streaming response for one client.
pub fn response(
    broadcaster: &BroadcasterHandle,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Response<Body> {
    let (current, frames) = broadcaster.subscribe();
    metrics.sse_clients.inc();
    let state = State {
        frames,
        broadcaster: broadcaster.clone(),
        shutdown,
        metrics: metrics.clone(),
        _guard: ClientGuard(metrics),
    };
    let first = stream::iter([Bytes::from_static(RETRY_FRAME), current]);
    let rest = stream::unfold(state, next_frame);
    let body = StreamBody::new(
        first
            .chain(rest)
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );

    let mut resp = Response::new(BodyExt::boxed_unsync(body));
    *resp.status_mut() = StatusCode::OK;
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
