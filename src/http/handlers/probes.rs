//! Operational routes: `/health`, `/ready`, `/version`, `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::http::AppState;
use crate::http::body::{self, Body};

/// How long `/ready` waits for each dependency.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// Liveness: answers whenever the process serves, degraded referrals included.
pub fn health() -> Response<Body> {
    body::json(StatusCode::OK, &json!({ "status": "healthy" }))
}

/// Readiness: both PostgreSQL and Redis answer.
pub async fn ready(state: &Arc<AppState>) -> Response<Body> {
    let (pg, redis) = tokio::join!(
        crate::db::ping(&state.pool, READY_TIMEOUT),
        state.live.ping()
    );
    let down: Vec<&str> = [
        (!pg).then_some("PostgreSQL not available"),
        (!redis).then_some("Redis not available"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if down.is_empty() {
        body::json(StatusCode::OK, &json!({ "status": "ready" }))
    } else {
        body::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "not ready", "detail": down.join("; ") }),
        )
    }
}

pub fn version(state: &Arc<AppState>) -> Response<Body> {
    body::json(
        StatusCode::OK,
        &json!({
            "version": state.config.app_version,
            "conference": state.config.conference.map(|c| c.key()).unwrap_or(""),
        }),
    )
}

pub fn metrics(state: &Arc<AppState>) -> Response<Body> {
    let pool = state.pool.status();
    let m = &state.metrics;
    m.db_pool_size.set(pool.max_size as i64);
    m.db_pool_checked_out
        .set(pool.size.saturating_sub(pool.available) as i64);
    state.actors.export_queue_depths(m);
    let open = state.admission.in_use();
    let max = state.admission.budgets;
    for (budget, open, max) in [
        ("stream", open.streams, max.streams),
        ("other", open.others, max.others),
    ] {
        m.connections_open
            .with_label_values(&[budget])
            .set(open as i64);
        m.connections_max
            .with_label_values(&[budget])
            .set(max as i64);
    }
    body::with_type(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        m.render(),
    )
}
