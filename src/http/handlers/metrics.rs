//! `GET /metrics`: the Prometheus exposition, with the gauges that are read
//! when scraped (pools, queues, allocator, connection budgets) refreshed first.

use std::sync::Arc;

use hyper::{Response, StatusCode};

use crate::http::AppState;
use crate::http::body::{self, Body};

/// The exposition of every metric, as of now.
pub fn metrics(state: &Arc<AppState>) -> Response<Body> {
    let pool = state.pool.status();
    let m = &state.metrics;
    m.db_pool_size.set(pool.max_size as i64);
    m.db_pool_checked_out
        .set(pool.size.saturating_sub(pool.available) as i64);
    state.actors.export_queue_depths(m);
    // jemalloc's statistics are refreshed by advancing its epoch.
    if tikv_jemalloc_ctl::epoch::advance().is_ok() {
        let read = |r: tikv_jemalloc_ctl::Result<usize>| r.map_or(0, |n| n as i64);
        m.allocator_allocated
            .set(read(tikv_jemalloc_ctl::stats::allocated::read()));
        m.allocator_resident
            .set(read(tikv_jemalloc_ctl::stats::resident::read()));
    }
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
