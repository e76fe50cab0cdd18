//! The speaker's console (docs/contract.md, the speaker's console): hiding and revealing the results
//! (`/votes` then tells only the total), the incident timeline (counted by
//! `count_vote`, drawn by `/timeline`, served by `/timeline.json`) and the
//! CSV exports. Admin actions use the same check as the reset
//! (`Credentials`); a form posted by the admin page gets a page back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::actors::broadcaster::hidden_json;
use crate::db;
use crate::http::AppState;
use crate::http::body::{self, Body, Encoding, Strings};
use crate::http::error::ApiError;
use crate::http::guard::Credentials;
use crate::http::handlers::{pages, vote};
use crate::timeline::{Outcome, Timeline, rfc3339};
use crate::views;

/// How long reading the timeline may take.
pub const TIMELINE_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /votes`: the v1 counts, or `{"hidden":true,"total":N}` while hidden.
pub fn votes(state: &Arc<AppState>) -> Response<Body> {
    if state.actors.reveal.hidden() {
        let counts = state.view.current().counts;
        return body::with_type(StatusCode::OK, "application/json", hidden_json(&counts));
    }
    vote::votes(state)
}

#[derive(Debug, Default, Deserialize)]
struct VisibilityQuery {
    visible: Option<String>,
    /// Branding of the admin page, so its outcome page keeps it.
    conf: Option<String>,
}

/// What the admin page's forms post (a browser cannot set `Authorization`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct AdminForm {
    pub(super) token: Option<String>,
}

impl AdminForm {
    /// The form of an admin page's `POST`.
    pub(super) async fn read(req: Request<Incoming>) -> Result<AdminForm, ApiError> {
        let bytes = body::read(req).await?;
        body::decode(Encoding::Form, &bytes)
    }
}

impl Strings for AdminForm {
    fn strings(&self) -> impl Iterator<Item = &str> {
        self.token.as_deref().into_iter()
    }
}

/// `POST /admin/results?visible=no|yes`.
pub async fn results_visibility(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query: VisibilityQuery = body::query(req.uri().query());
    let credentials = Credentials::of(&req);
    let from_page = pages::Answer::of(&req) == pages::Answer::Page;
    if !from_page {
        let (visible, message) = set_visibility(state, &credentials, None, &query).await?;
        return Ok(body::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "success", "visible": visible, "message": message }),
        ));
    }
    let result = match AdminForm::read(req).await {
        Ok(form) => set_visibility(state, &credentials, form.token.as_deref(), &query).await,
        Err(e) => Err(e),
    };
    let page = pages::page_with(state, None, query.conf.as_deref());
    let (status, ok, message) = match result {
        Ok((_, message)) => (StatusCode::OK, true, message.to_owned()),
        Err(e) => (e.status(), false, e.to_string()),
    };
    let view = views::admin::Done {
        page: &page,
        ok,
        title: if ok { "Done" } else { "Not changed" },
        message,
    };
    Ok(body::html(status, views::admin::done(&view)))
}

/// Checks the token and the query, then flips the flag on every replica.
async fn set_visibility(
    state: &AppState,
    credentials: &Credentials,
    form_token: Option<&str>,
    query: &VisibilityQuery,
) -> Result<(bool, &'static str), ApiError> {
    credentials.authorize(&state.config, form_token)?;
    let hidden = match query.visible.as_deref() {
        Some("yes") => false,
        Some("no") => true,
        _ => return Err(ApiError::Malformed("Add ?visible=yes or ?visible=no")),
    };
    state.actors.reveal.set(hidden).await.map_err(|e| {
        warn!(error = %e, "cannot change the results visibility");
        ApiError::DbUnavailable
    })?;
    Ok(if hidden {
        (false, "Results hidden: the projector shows the total only.")
    } else {
        (true, "Results visible.")
    })
}

/// What follows a session reset here: the reset's own transaction already
/// emptied the stored timeline and made the results visible; this drops the
/// timeline's unsent counts and shows (and announces) the visible results.
/// The reset happened, so a failure here is logged, not reported.
pub async fn after_reset(state: &AppState) {
    if let Err(e) = state.actors.timeline.reset().await {
        warn!(error = %e, "reset could not drop the timeline's unsent counts");
    }
    state.actors.reveal.changed(false).await;
}

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
    Ok(attachment(body::full(csv), "timeline.csv"))
}

/// A CSV download.
fn attachment(body: Body, filename: &'static str) -> Response<Body> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Every vote, oldest first, as PostgreSQL writes it: RFC 3339 in UTC.
const EXPORT_SQL: &str = "COPY (SELECT to_char(created_at AT TIME ZONE 'UTC', \
    'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at, choice, referral_code \
    FROM votes ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)";
/// Longest an export may wait for PostgreSQL's next chunk before it ends.
pub const EXPORT_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest an export waits for its client to take the next chunk: a paused
/// download would otherwise keep its connection and its lock on `votes`.
pub const EXPORT_IDLE_READER: Duration = Duration::from_secs(30);
/// The `application_name` of an export's connection: how a reset, on any
/// replica, finds the exports to cut.
pub const EXPORT_APPLICATION: &str = "vote-api export";
/// How often a running reset looks again for exports to cut (one may start
/// between a look and the TRUNCATE).
const EXPORT_CUT_EVERY: Duration = Duration::from_millis(200);
/// How long one look may take.
const EXPORT_CUT_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /admin/export.csv`: streamed straight from `COPY … TO STDOUT`, chunk
/// by chunk as the client reads, so memory stays flat however many votes.
/// It uses a connection of its own, never one of the pool's: a slow download
/// must not hold back votes or referral lookups. An export that cannot
/// finish (PostgreSQL fails or stalls, a reset cuts it, its client reads
/// nothing for `EXPORT_IDLE_READER`) ends with a body error, so hyper aborts
/// the connection and the client sees an incomplete transfer, never a short
/// file that looks whole.
pub async fn export_csv<B>(
    state: &Arc<AppState>,
    req: &Request<B>,
) -> Result<Response<Body>, ApiError> {
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    Credentials::of(req).authorize(&state.config, None)?;
    let unavailable = |e: &dyn std::fmt::Display| {
        warn!(error = %e, "export failed to start");
        ApiError::DbUnavailable
    };
    let mut pg: tokio_postgres::Config = state
        .config
        .database_url
        .parse()
        .map_err(|e| unavailable(&e))?;
    pg.application_name(EXPORT_APPLICATION);
    pg.connect_timeout(db::CONNECT_TIMEOUT);
    let (client, connection) =
        tokio::time::timeout(db::CONNECT_TIMEOUT, pg.connect(tokio_postgres::NoTls))
            .await
            .map_err(|_| unavailable(&"connect timed out"))?
            .map_err(|e| unavailable(&e))?;
    // The connection task ends when `client` (kept by the body) is dropped;
    // aborting it closes the socket, which ends the COPY and frees its lock.
    let connection = tokio::spawn(connection).abort_handle();
    let rows = tokio::time::timeout(EXPORT_CHUNK_TIMEOUT, client.copy_out(EXPORT_SQL))
        .await
        .map_err(|_| unavailable(&"COPY timed out"))?
        .map_err(|e| unavailable(&e))?;
    let (taken, idle) = tokio::sync::watch::channel(());
    tokio::spawn(cut_when_idle(idle, connection));
    let chunks = futures_util::stream::unfold(
        Some((client, Box::pin(rows), taken)),
        |running| async move {
            let (client, mut rows, taken) = running?;
            let cut = |why: String| -> Option<(Result<Frame<Bytes>, body::BodyError>, _)> {
                warn!("export cut short: {why}");
                Some((Err(why.into()), None))
            };
            match tokio::time::timeout(EXPORT_CHUNK_TIMEOUT, rows.next()).await {
                Ok(Some(Ok(chunk))) => {
                    taken.send_replace(());
                    Some((Ok(Frame::data(chunk)), Some((client, rows, taken))))
                }
                Ok(None) => None,
                Ok(Some(Err(e))) => cut(e.to_string()),
                Err(_) => cut("PostgreSQL stalled".to_owned()),
            }
        },
    );
    let body = StreamBody::new(chunks);
    Ok(attachment(BodyExt::boxed_unsync(body), "votes.csv"))
}

/// Closes an export's PostgreSQL connection once its client has taken
/// nothing for `EXPORT_IDLE_READER`; the body then fails on its next read.
/// Ends with the body (the sender is dropped with it).
async fn cut_when_idle(
    mut taken: tokio::sync::watch::Receiver<()>,
    connection: tokio::task::AbortHandle,
) {
    loop {
        match tokio::time::timeout(EXPORT_IDLE_READER, taken.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                warn!("export cut: its client read nothing for {EXPORT_IDLE_READER:?}");
                connection.abort();
                return;
            }
        }
    }
}

/// Runs `reset` while cutting every running export, on every replica, until
/// it is done: the TRUNCATE needs the table to itself, and an export's COPY
/// holds a lock on it for as long as its client takes to read.
pub async fn cutting_exports<T>(state: &AppState, reset: impl Future<Output = T>) -> T {
    let cutter = async {
        loop {
            match cut_exports(state).await {
                Ok(0) => {}
                Ok(n) => info!(exports = n, "reset cut running exports"),
                Err(e) => warn!(error = %e, "reset could not look for running exports"),
            }
            tokio::time::sleep(EXPORT_CUT_EVERY).await;
        }
    };
    tokio::select! {
        done = reset => done,
        () = cutter => unreachable!("the cutter loops until the reset is done"),
    }
}

/// Terminates the PostgreSQL sessions of running exports; returns how many.
async fn cut_exports(state: &AppState) -> Result<i64, db::DbError> {
    db::within(EXPORT_CUT_TIMEOUT, async {
        let client = state.pool.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = $1 \
                 AND pid <> pg_backend_pid()",
                &[&EXPORT_APPLICATION],
            )
            .await?;
        Ok(row.try_get(0)?)
    })
    .await
}
