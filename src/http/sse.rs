//! `/stream`: admits one screen into the stream budget (or answers `503` +
//! `Retry-After` at once) and answers with the stream's head; the socket then
//! leaves hyper for the fan-out (fanout.rs), which writes the retry hint,
//! the current frame, every broadcast frame and the keep-alive comments, and
//! ends the stream on shutdown.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::error;

use super::AppState;
use super::admission::{Slot, StreamSlot};
use super::body::{self, Body};
use super::fanout::{Handover, Ticket};
use crate::metrics::Metrics;

/// Seconds a refused screen waits before it tries again (`Retry-After`).
pub const STREAM_RETRY_AFTER_SECS: u32 = 5;

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
        Some(slot) => response(req, &state.metrics, slot),
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

/// The stream's head for a screen holding `slot`: the connection hands its
/// socket to the fan-out once hyper has written it, so the body never
/// yields (hyper would frame its data, and keep a task for it).
fn response<B>(req: &Request<B>, metrics: &Arc<Metrics>, slot: StreamSlot) -> Response<Body> {
    let Some(handover) = req.extensions().get::<Arc<Handover>>() else {
        // Only the public listener routes `/stream`, and it always can.
        error!("a stream request on a connection that cannot hand over");
        return refused(metrics);
    };
    handover.arm(Ticket::new(slot, metrics.clone()));
    with_sse_headers(Response::new(never()))
}

/// A body of unknown length that never yields: hyper writes the head with
/// `Transfer-Encoding: chunked` and waits; the fan-out writes the chunks.
fn never() -> Body {
    let frames = futures_util::stream::pending::<Result<Frame<Bytes>, body::BodyError>>();
    BodyExt::boxed_unsync(StreamBody::new(frames))
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
