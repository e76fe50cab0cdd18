//! The incident timeline (docs/contract.md, the speaker's console):
//! `/timeline` (the projector page, or its chart alone), `/timeline.json`,
//! and its CSV download for the speaker.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::db;
use crate::http::AppState;
use crate::http::body::{self, Body};
use crate::http::error::ApiError;
use crate::http::guard::Credentials;
use crate::http::handlers::pages;
use crate::timeline::{Outcome, Timeline, rfc3339};
use crate::views;

/// How long reading the timeline may take.
pub const TIMELINE_READ_TIMEOUT: Duration = Duration::from_secs(3);

async fn read_timeline(state: &AppState) -> Result<Timeline, ApiError> {
    db::within(TIMELINE_READ_TIMEOUT, async {
        let client = state.pool.get().await?;
        db::timeline::read(&client).await
    })
    .await
    .map_err(|e| {
        warn!(error = %e, "cannot read the timeline");
        ApiError::DbUnavailable
    })
}

/// One bucket of `/timeline.json`: all five outcome keys, always.
#[derive(Serialize)]
struct BucketJson {
    start: String,
    seconds: i64,
    accepted: u64,
    referral_cache_exhausted: u64,
    invalid: u64,
    db_unavailable: u64,
    overloaded: u64,
}

#[derive(Serialize)]
struct VersionJson<'a> {
    version: &'a str,
    first_seen: String,
}

#[derive(Serialize)]
struct TimelineJson<'a> {
    buckets: Vec<BucketJson>,
    versions: Vec<VersionJson<'a>>,
}

fn timeline_json_value(timeline: &Timeline) -> TimelineJson<'_> {
    let buckets = timeline
        .buckets
        .iter()
        .map(|b| BucketJson {
            start: rfc3339(b.start * 1000),
            seconds: b.seconds,
            accepted: b.get(Outcome::Accepted),
            referral_cache_exhausted: b.get(Outcome::ReferralCacheExhausted),
            invalid: b.get(Outcome::Invalid),
            db_unavailable: b.get(Outcome::DbUnavailable),
            overloaded: b.get(Outcome::Overloaded),
        })
        .collect();
    let versions = timeline
        .versions
        .iter()
        .map(|m| VersionJson {
            version: &m.version,
            first_seen: rfc3339(m.first_seen_ms),
        })
        .collect();
    TimelineJson { buckets, versions }
}

/// `GET /timeline.json`.
pub async fn timeline_json(state: &Arc<AppState>) -> Result<Response<Body>, ApiError> {
    let timeline = read_timeline(state).await?;
    Ok(body::json(StatusCode::OK, &timeline_json_value(&timeline)))
}

#[derive(Debug, Default, Deserialize)]
struct TimelineQuery {
    conf: Option<String>,
    /// `chart`: only the live part, which `timeline.js` swaps in.
    part: Option<String>,
    /// A screen ticket: renewed on the page, for its `/stream`.
    screen: Option<String>,
}

/// `GET /timeline`: the projector page, or its chart alone (`?part=chart`).
pub async fn timeline_page<B>(
    state: &Arc<AppState>,
    req: &Request<B>,
) -> Result<Response<Body>, ApiError> {
    let query: TimelineQuery = body::query(req.uri().query());
    let timeline = read_timeline(state).await?;
    if query.part.as_deref() == Some("chart") {
        return Ok(body::html(
            StatusCode::OK,
            views::timeline::chart(&timeline),
        ));
    }
    let mut page = pages::page_with(state, None, query.conf.as_deref());
    page.screen = pages::renewed_ticket(state, query.screen.as_deref());
    let view = views::timeline::TimelinePage {
        page: &page,
        timeline: &timeline,
    };
    Ok(body::html(StatusCode::OK, views::timeline::page(&view)))
}

/// `GET /admin/timeline.csv`: the buckets of `/timeline.json`.
pub async fn timeline_csv<B>(
    state: &Arc<AppState>,
    req: &Request<B>,
) -> Result<Response<Body>, ApiError> {
    Credentials::of(req).authorize(&state.config, None)?;
    let timeline = read_timeline(state).await?;
    let mut csv = String::from("start,seconds");
    for outcome in Outcome::ALL {
        csv.push(',');
        csv.push_str(outcome.key());
    }
    csv.push('\n');
    for b in &timeline.buckets {
        csv.push_str(&format!("{},{}", rfc3339(b.start * 1000), b.seconds));
        for n in b.counts {
            csv.push_str(&format!(",{n}"));
        }
        csv.push('\n');
    }
    Ok(body::attachment(body::full(csv), "timeline.csv"))
}
