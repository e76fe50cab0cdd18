//! Hand-written routing: match the path to a route, then the method; unknown
//! paths are 404, known paths with a wrong method are 405 with `Allow`.
//! Also the one place that records metrics and the access log line.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};
use tracing::info;

use super::AppState;
use super::body::{self, Body};
use super::error::ApiError;
use super::handlers::vote::Answered;
use super::{guard, handlers};
use crate::metrics::{self, method_label};
use crate::timeline::Outcome;

/// Every route, named by its `endpoint` metric label (an unknown path is
/// `None`, labelled `other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Index,
    Vote,
    Thanks,
    Votes,
    Stream,
    Results,
    Admin,
    AdminReset,
    AdminResults,
    AdminScreen,
    AdminExport,
    AdminTimelineCsv,
    Timeline,
    TimelineJson,
    Health,
    Ready,
    ReadyVotes,
    Version,
    Metrics,
    Static,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Index => "/",
            Endpoint::Vote => metrics::VOTE_ENDPOINT,
            Endpoint::Thanks => "/thanks",
            Endpoint::Votes => "/votes",
            Endpoint::Stream => "/stream",
            Endpoint::Results => "/results",
            Endpoint::Admin => "/admin",
            Endpoint::AdminReset => "/admin/reset",
            Endpoint::AdminResults => "/admin/results",
            Endpoint::AdminScreen => "/admin/screen",
            Endpoint::AdminExport => "/admin/export.csv",
            Endpoint::AdminTimelineCsv => "/admin/timeline.csv",
            Endpoint::Timeline => "/timeline",
            Endpoint::TimelineJson => "/timeline.json",
            Endpoint::Health => "/health",
            Endpoint::Ready => "/ready",
            Endpoint::ReadyVotes => "/ready/votes",
            Endpoint::Version => "/version",
            Endpoint::Metrics => "/metrics",
            Endpoint::Static => "/static",
        }
    }
}

/// Which methods a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    Get,
    Post,
}

impl Allowed {
    fn permits(self, method: &Method) -> bool {
        match self {
            Allowed::Get => method == Method::GET || method == Method::HEAD,
            Allowed::Post => method == Method::POST,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Allowed::Get => "GET, HEAD",
            Allowed::Post => "POST",
        }
    }
}

/// The route for `path`, or `None` for an unknown path.
pub fn resolve(path: &str) -> Option<(Endpoint, Allowed)> {
    let route = match path {
        "/" => (Endpoint::Index, Allowed::Get),
        "/vote" => (Endpoint::Vote, Allowed::Post),
        "/thanks" => (Endpoint::Thanks, Allowed::Get),
        "/votes" => (Endpoint::Votes, Allowed::Get),
        "/stream" => (Endpoint::Stream, Allowed::Get),
        "/results" => (Endpoint::Results, Allowed::Get),
        "/admin" => (Endpoint::Admin, Allowed::Get),
        "/admin/reset" => (Endpoint::AdminReset, Allowed::Post),
        "/admin/results" => (Endpoint::AdminResults, Allowed::Post),
        "/admin/screen" => (Endpoint::AdminScreen, Allowed::Post),
        "/admin/export.csv" => (Endpoint::AdminExport, Allowed::Get),
        "/admin/timeline.csv" => (Endpoint::AdminTimelineCsv, Allowed::Get),
        "/timeline" => (Endpoint::Timeline, Allowed::Get),
        "/timeline.json" => (Endpoint::TimelineJson, Allowed::Get),
        "/health" => (Endpoint::Health, Allowed::Get),
        "/ready" => (Endpoint::Ready, Allowed::Get),
        "/ready/votes" => (Endpoint::ReadyVotes, Allowed::Get),
        "/version" => (Endpoint::Version, Allowed::Get),
        "/metrics" => (Endpoint::Metrics, Allowed::Get),
        p if p.starts_with("/static/") => (Endpoint::Static, Allowed::Get),
        _ => return None,
    };
    Some(route)
}

/// The metrics label of an answer's endpoint: an unknown path is one label,
/// whatever the path.
fn label(endpoint: Option<Endpoint>) -> &'static str {
    endpoint.map_or("other", Endpoint::label)
}

/// Entry point for every request: route, answer, measure, log.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = method_label(req.method());
    let path = req.uri().path().to_owned();
    // With METRICS_ADDR, /metrics lives on its own listener only.
    let metrics_apart = state.config.metrics_addr.is_some();
    let route = resolve(&path).filter(|(e, _)| !(metrics_apart && *e == Endpoint::Metrics));
    let (endpoint, answered) = match route {
        None => (None, Answered::not_a_vote(Err(ApiError::NotFound))),
        Some((endpoint, allowed)) if !allowed.permits(req.method()) => (
            Some(endpoint),
            Answered::not_a_vote(Err(ApiError::MethodNotAllowed(allowed.header()))),
        ),
        Some((endpoint, allowed)) => {
            // Every POST changes state: none may come from another site's page.
            let allowed_here = match allowed {
                Allowed::Post => guard::same_origin(&req, state.config.public_url.as_deref()),
                Allowed::Get => Ok(()),
            };
            let answered = match allowed_here {
                Ok(()) => dispatch(&state, endpoint, req).await,
                Err(e) if endpoint == Endpoint::Vote => Answered::refused(&e),
                Err(e) => Answered::not_a_vote(Err(e)),
            };
            (Some(endpoint), answered)
        }
    };
    let Answered {
        response: resp,
        outcome,
    } = answered;
    let status = resp.status().as_u16();
    if let Some(outcome) = outcome {
        count_vote(&state, outcome, &resp);
    }
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request(method, label(endpoint), status, elapsed.as_secs_f64());
    info!(
        target: "vote_api::access",
        method,
        path = %path,
        status,
        latency_ms = millis(elapsed),
    );
    Ok(resp)
}

/// A latency for the access log, to the microsecond: `0.016`, where the
/// full float printed `0.015753999999999997` (longer to write, and to read).
fn millis(elapsed: Duration) -> f64 {
    elapsed.as_micros() as f64 / 1000.0
}

/// Tells the timeline what a vote came to, and the degraded sign of a vote
/// the service refused (with the detail the phone got).
fn count_vote<B>(state: &AppState, outcome: Outcome, resp: &Response<B>) {
    if state.config.timeline {
        state.actors.timeline.record(outcome);
    }
    if outcome.is_unavailable() {
        let detail = resp.extensions().get::<body::ErrorDetail>();
        let detail = detail.map_or_else(|| format!("HTTP {}", resp.status()), |d| d.0.clone());
        state.actors.broadcaster.report_failure(detail);
    }
}

/// Entry point of the `METRICS_ADDR` listener: `/metrics` and nothing else.
pub async fn metrics_only(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(operational(&state, &req, &[Endpoint::Metrics]).await)
}

/// The probes, as the kubelet and compose ask them.
const PROBES: [Endpoint; 3] = [Endpoint::Health, Endpoint::Ready, Endpoint::ReadyVotes];

/// Entry point of the `PROBE_ADDR` listener: the probes and nothing else.
pub async fn probes_only(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(operational(&state, &req, &PROBES).await)
}

/// Entry point of one listener at both `METRICS_ADDR` and `PROBE_ADDR`.
pub async fn metrics_and_probes(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let both = [Endpoint::Metrics, PROBES[0], PROBES[1], PROBES[2]];
    Ok(operational(&state, &req, &both).await)
}

/// `serves` and nothing else (404), measured like every other answer.
async fn operational(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
    serves: &[Endpoint],
) -> Response<Body> {
    let started = Instant::now();
    let route = resolve(req.uri().path()).filter(|(e, _)| serves.contains(e));
    let (endpoint, resp) = match route {
        Some((endpoint, allowed)) if allowed.permits(req.method()) => {
            let resp = match endpoint {
                Endpoint::Metrics => handlers::metrics::metrics(state),
                Endpoint::Health => handlers::probes::health(),
                Endpoint::Ready => handlers::probes::ready(state).await,
                _ => handlers::probes::ready_votes(state).await,
            };
            (Some(endpoint), resp)
        }
        Some((endpoint, allowed)) => (
            Some(endpoint),
            body::error(&ApiError::MethodNotAllowed(allowed.header())),
        ),
        None => (None, body::error(&ApiError::NotFound)),
    };
    state.metrics.observe_request(
        method_label(req.method()),
        label(endpoint),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// The answer to a connection that got no slot in time
/// (admission.rs): `503` + `Retry-After`, then the connection closes.
/// Counted like any other answer: request metrics, and a vote is an
/// `overloaded` outcome on the timeline.
pub async fn refuse(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = method_label(req.method());
    let endpoint = resolve(req.uri().path()).map(|(e, _)| e);
    let path = req.uri().path().to_owned();
    // Read what little the request carries (a vote), so closing the socket
    // does not reset it before the client reads the answer.
    let body = http_body_util::Limited::new(req.into_body(), REFUSED_BODY_BYTES);
    let _ = tokio::time::timeout(REFUSED_BODY_WAIT, body.collect()).await;
    let mut resp = body::error(&ApiError::Overloaded);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    // Only the timeline hears of it: the degraded sign is for votes this
    // process read and refused, not for connections it had no room for.
    if endpoint == Some(Endpoint::Vote) && state.config.timeline {
        state.actors.timeline.record(Outcome::Overloaded);
    }
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request(method, label(endpoint), 503, elapsed.as_secs_f64());
    info!(
        target: "vote_api::access",
        method,
        path = %path,
        status = 503,
        latency_ms = millis(elapsed),
        "no connection slot"
    );
    Ok(resp)
}

/// The most of a refused request's body read before answering.
const REFUSED_BODY_BYTES: usize = 16 * 1024;
/// How long a refused request's body may take.
const REFUSED_BODY_WAIT: Duration = Duration::from_millis(200);

/// Written as is to a connection accepted while even the refusals are full.
pub const REFUSED_AT_ONCE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 46\r\n\
\r\n\
{\"detail\":\"Service overloaded, please retry\"}\n";

async fn dispatch(state: &Arc<AppState>, endpoint: Endpoint, req: Request<Incoming>) -> Answered {
    use handlers::*;
    // The vote is awaited in place; every other awaited arm is boxed, so the
    // future of every request (copied into hyper's service box) is as small
    // as the vote's rather than as large as the largest admin handler's.
    let answer = match endpoint {
        Endpoint::Vote => return vote::vote(state, req).await,
        Endpoint::Index => Ok(Box::pin(pages::index(state, &req)).await),
        Endpoint::Thanks => Ok(pages::thanks(state, &req)),
        Endpoint::Votes => Ok(vote::votes(state)),
        Endpoint::Stream => Ok(super::sse::serve(state, &req)),
        Endpoint::Results => Ok(pages::results(state, &req)),
        Endpoint::Admin => Ok(pages::admin(state, &req)),
        Endpoint::AdminReset => Box::pin(admin::reset(state, req)).await,
        Endpoint::AdminResults => Box::pin(admin::results_visibility(state, req)).await,
        Endpoint::AdminScreen => Box::pin(admin::screen(state, req)).await,
        Endpoint::AdminExport => Box::pin(export::export_csv(state, &req)).await,
        Endpoint::AdminTimelineCsv => Box::pin(timeline::timeline_csv(state, &req)).await,
        Endpoint::Timeline => Box::pin(timeline::timeline_page(state, &req)).await,
        Endpoint::TimelineJson => Box::pin(timeline::timeline_json(state)).await,
        Endpoint::Health => Ok(probes::health()),
        Endpoint::Ready => Ok(Box::pin(probes::ready(state)).await),
        Endpoint::ReadyVotes => Ok(Box::pin(probes::ready_votes(state)).await),
        Endpoint::Version => Ok(probes::version(state)),
        Endpoint::Metrics => {
            // Without METRICS_ADDR the public port serves it, and
            // votes_total{choice} would tell hidden results to anyone.
            let peer = req.extensions().get::<super::guard::Peer>().map(|p| p.0);
            if super::guard::is_local(peer, req.headers()) {
                Ok(handlers::metrics::metrics(state))
            } else {
                Err(ApiError::MetricsNotLocal)
            }
        }
        Endpoint::Static => Ok(assets::serve(&req)),
    };
    Answered::not_a_vote(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's future is moved (copied) as hyper's service boxes it: at
    /// 11.8 KiB, the referral and replay paths carried inside every vote's
    /// future, the copies cost a fifth of the votes/s (scripts/bench).
    #[test]
    fn a_request_future_stays_small() {
        fn size<F, Fut>(_: F) -> usize
        where
            F: FnOnce(Arc<AppState>, Request<Incoming>) -> Fut,
        {
            std::mem::size_of::<Fut>()
        }
        let bytes = size(handle);
        assert!(bytes <= 4096, "router::handle's future is {bytes} bytes");
    }

    #[test]
    fn known_paths_resolve_and_unknown_do_not() {
        assert_eq!(resolve("/vote"), Some((Endpoint::Vote, Allowed::Post)));
        assert_eq!(
            resolve("/static/app.css"),
            Some((Endpoint::Static, Allowed::Get))
        );
        assert_eq!(resolve("/votes/"), None);
        assert_eq!(resolve("/nope"), None);
    }

    #[test]
    fn the_answer_at_once_is_well_formed() {
        let text = std::str::from_utf8(REFUSED_AT_ONCE).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("retry-after: 1") && head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let detail = ApiError::Overloaded.to_string();
        assert_eq!(
            body,
            format!("{}\n", serde_json::json!({ "detail": detail }))
        );
    }

    #[test]
    fn get_routes_accept_head_and_advertise_it() {
        assert!(Allowed::Get.permits(&Method::HEAD));
        assert!(!Allowed::Get.permits(&Method::POST));
        assert!(!Allowed::Post.permits(&Method::GET));
        assert_eq!(Allowed::Get.header(), "GET, HEAD");
    }
}
