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
    let ticketed = has_screen_ticket(state, req);
    if req.method() == Method::HEAD {
        return match state.admission.has_stream_room(ticketed) {
            true => with_sse_headers(Response::new(body::full(""))),
            false => refused(&state.metrics),
        };
    }
    let conn = req.extensions().get::<Arc<Slot>>().map(Arc::as_ref);
    match state.admission.stream(conn, ticketed) {
        Some(slot) => response(
            &state.actors.broadcaster,
            state.metrics.clone(),
            state.shutdown.clone(),
            slot,
        ),
        None => refused(&state.metrics),
    }
}

/// Whether the request carries a valid, unexpired screen ticket
/// (`?screen=`): it may use the stream reserve. Anything else is an
/// anonymous screen.
fn has_screen_ticket<B>(state: &AppState, req: &Request<B>) -> bool {
    #[derive(serde::Deserialize, Default)]
    struct Query {
        screen: Option<String>,
    }
    let query: Query = body::query(req.uri().query());
    query.screen.is_some_and(|t| {
        state
            .signer
            .valid_screen_ticket(&t, std::time::SystemTime::now())
    })
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

#[cfg(test)]
mod tests {
    //! The cadence of one `/stream` body against a real broadcaster (its
    //! Redis unreachable, so only this test's changes reach it), in paused
    //! time: the keep-alive, the status refresh and the lag policy.

    use tokio::sync::watch;
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    use super::*;
    use crate::actors::broadcaster::{FRAME_BUFFER, FRAME_INTERVAL, STATUS_REFRESH, STATUS_TICK};
    use crate::http::admission::{Admission, Budgets};
    use crate::live::Live;
    use crate::poll::{Counts, CountsView, Snapshot};

    struct Screen {
        body: Body,
        view: CountsView,
        metrics: Arc<Metrics>,
        broadcaster: JoinHandle<()>,
        stop_broadcaster: CancellationToken,
    }

    /// One stream body, subscribed to a broadcaster of its own.
    fn screen() -> Screen {
        let view = CountsView::new();
        let live = Live::connect("redis://127.0.0.1:1/0", "test".into()).expect("valid URL");
        let metrics = Arc::new(Metrics::new());
        let stop_broadcaster = CancellationToken::new();
        let (_hidden_tx, hidden) = watch::channel(false);
        let (handle, broadcaster) = BroadcasterHandle::spawn(
            view.clone(),
            live,
            hidden,
            "test".into(),
            metrics.clone(),
            stop_broadcaster.clone(),
        );
        let slot = Admission::new(Budgets {
            streams: 1,
            others: 1,
        })
        .stream(None, false)
        .expect("a free slot");
        let body = response(&handle, metrics.clone(), CancellationToken::new(), slot).into_body();
        Screen {
            body,
            view,
            metrics,
            broadcaster,
            stop_broadcaster,
        }
    }

    /// The body's next chunk as text, within `limit` (of paused time).
    async fn next_chunk(body: &mut Body, limit: Duration) -> Option<String> {
        let frame = tokio::time::timeout(limit, body.frame()).await.ok()??;
        let data = frame
            .expect("infallible")
            .into_data()
            .expect("a data frame");
        Some(String::from_utf8(data.to_vec()).expect("UTF-8"))
    }

    /// The `print` count of the `votes` event in `chunk`, if it has one.
    fn print_count(chunk: &str) -> Option<u64> {
        let data = chunk.strip_prefix("event: votes\ndata: ")?.lines().next()?;
        let json: serde_json::Value = serde_json::from_str(data).expect("JSON");
        json["print"]["count"].as_u64()
    }

    fn snapshot(n: u64) -> Snapshot {
        Snapshot {
            counts: Counts([n, 0, 0, 0, 0, 0, 0, 0]),
            seq: n,
            local: 0,
        }
    }

    /// The retry hint, then the current counts and status, at once.
    async fn opening(body: &mut Body) -> String {
        let retry = next_chunk(body, Duration::ZERO).await.expect("retry first");
        assert_eq!(retry.as_bytes(), RETRY_FRAME);
        next_chunk(body, Duration::ZERO)
            .await
            .expect("the current frame")
    }

    #[tokio::test(start_paused = true)]
    async fn silence_gets_a_keep_alive_comment_every_sse_keepalive() {
        let mut s = screen();
        let current = opening(&mut s.body).await;
        assert_eq!(print_count(&current), Some(0));
        let counted = next_chunk(&mut s.body, STATUS_TICK).await;
        assert!(counted.is_some_and(|c| c.contains(r#""watching":1"#)));
        // Nothing to broadcast any more: the stream is silent from here on.
        s.stop_broadcaster.cancel();
        s.broadcaster.await.expect("broadcaster stopped");
        for _ in 0..2 {
            let silent_since = Instant::now();
            let chunk = next_chunk(&mut s.body, SSE_KEEPALIVE * 2)
                .await
                .expect("a keep-alive within twice the interval");
            assert_eq!(chunk.as_bytes(), KEEPALIVE_FRAME);
            assert_eq!(
                silent_since.elapsed(),
                SSE_KEEPALIVE,
                "after exactly SSE_KEEPALIVE of silence"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unchanged_status_is_sent_every_status_refresh_and_no_keep_alive_is_needed() {
        let mut s = screen();
        opening(&mut s.body).await;
        // The broadcaster's first tick sees this screen: `watching` 0 → 1.
        let first = next_chunk(&mut s.body, STATUS_TICK)
            .await
            .expect("the status with this screen counted");
        assert!(first.starts_with("event: status\n"), "{first}");
        assert!(first.contains(r#""watching":1"#), "{first}");
        // Two keep-alive intervals: the refreshed status fills every silence.
        let start = Instant::now();
        let mut last = start;
        while start.elapsed() < SSE_KEEPALIVE * 2 {
            let chunk = next_chunk(&mut s.body, STATUS_REFRESH + STATUS_TICK)
                .await
                .expect("a status within STATUS_REFRESH");
            assert_eq!(chunk, first, "the same status, refreshed");
            let gap = last.elapsed();
            assert!(
                gap >= STATUS_REFRESH && gap < STATUS_REFRESH + STATUS_TICK,
                "a status {gap:?} after the one before"
            );
            last = Instant::now();
        }
        assert_eq!(s.metrics.sse_lagged.get(), 0);
        s.stop_broadcaster.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_screen_that_lags_skips_to_the_newest_counts() {
        let mut s = screen();
        // More frames than the channel keeps, while this screen reads nothing.
        let newest = FRAME_BUFFER as u64 + 4;
        for n in 1..=newest {
            s.view.offer(snapshot(n));
            tokio::time::sleep(FRAME_INTERVAL).await;
        }
        assert!(s.metrics.sse_frames.get() > FRAME_BUFFER as u64);
        let current = opening(&mut s.body).await;
        assert_eq!(print_count(&current), Some(0), "as it was on connect");
        // The backlog is skipped: the very next frame has the newest counts
        // (and the current status), not the oldest frame still buffered.
        let next = next_chunk(&mut s.body, Duration::ZERO)
            .await
            .expect("a frame");
        assert_eq!(print_count(&next), Some(newest), "{next}");
        assert!(next.contains("event: status\n"), "{next}");
        assert_eq!(s.metrics.sse_lagged.get(), 1);
        // Then the stream goes on with new frames only.
        s.view.offer(snapshot(newest + 1));
        let later = next_chunk(&mut s.body, FRAME_INTERVAL * 2)
            .await
            .expect("a new frame");
        assert_eq!(print_count(&later), Some(newest + 1), "{later}");
        s.stop_broadcaster.cancel();
    }
}
