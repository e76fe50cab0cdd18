//! Prometheus metrics (docs/contract.md#get-metrics), one registry per app instance so that tests
//! can run several instances in one process. Label values come from closed
//! sets (the router's endpoint labels, `method_label`, the statuses we
//! produce), so no client can grow the label cardinality. A leaf: callers
//! hand in `&'static str` labels, and nothing here imports the rest of the crate.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The endpoint label of `POST /vote` (the router's `Endpoint::Vote`).
pub const VOTE_ENDPOINT: &str = "/vote";

/// Latency buckets of HTTP answers, in seconds.
const HTTP_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];
/// Latency buckets of one group commit, in seconds.
const COMMIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Votes per group commit.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Maps a request method to a bounded label value.
pub fn method_label(method: &hyper::Method) -> &'static str {
    use hyper::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric")
}

fn float_gauge(name: &str, help: &str) -> Gauge {
    Gauge::new(name, help).expect("valid metric")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric")
}

fn histogram_vec(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric")
}

/// Registers `metric` and hands it back: one line of the table below each.
fn registered<C: Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

/// The struct of every metric and its registration, from one table: a
/// field, its type, and how it is made (name, help, labels).
macro_rules! metrics {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $make:expr;)*) => {
        /// All metrics of one app instance.
        pub struct Metrics {
            registry: Registry,
            $($(#[$doc])* pub $field: $ty,)*
        }

        impl Metrics {
            fn register_all(registry: Registry) -> Self {
                Metrics {
                    $($field: registered(&registry, $make),)*
                    registry,
                }
            }
        }
    };
}

metrics! {
    http_requests: IntCounterVec = counter_vec("http_requests_total", "HTTP requests by method, endpoint and status", &["method", "endpoint", "status"]);
    http_duration: HistogramVec = histogram_vec("http_request_duration_seconds", "HTTP request latency", &HTTP_BUCKETS, &["method", "endpoint"]);
    referral_cache_exhausted: IntCounter = counter("referral_cache_exhausted_total", "Referral votes refused because the referral cache is exhausted");
    referral_cache_entries: IntGauge = gauge("referral_cache_entries", "Entries held by the referral validator's cache");
    db_pool_checked_out: IntGauge = gauge("db_pool_checked_out", "PostgreSQL connections in use");
    db_pool_size: IntGauge = gauge("db_pool_size", "PostgreSQL pool size");
    votes: IntCounterVec = counter_vec("votes_total", "Votes committed by this replica, by choice", &["choice"]);
    timeline_dropped: IntCounter = counter("timeline_dropped_total", "Vote outcomes left out of the incident timeline (queue or buffer full)");
    sse_clients: IntGauge = gauge("sse_clients", "Connected /stream clients");
    queue_depth: IntGaugeVec = gauge_vec("actor_queue_depth", "Messages waiting in an actor's mailbox", &["actor"]);
    batch_size: Histogram = histogram("vote_batch_size", "Votes per group commit", &BATCH_BUCKETS);
    commit_seconds: Histogram = histogram("vote_commit_duration_seconds", "Latency of one group commit", &COMMIT_BUCKETS);
    write_failures: IntCounter = counter("vote_write_failures_total", "Votes answered 503 because PostgreSQL stayed unreachable");
    vote_replays: IntCounter = counter("vote_replays_total", "Votes answered from an earlier vote with the same idempotency key");
    batches_fenced: IntCounter = counter("vote_batches_fenced_total", "Batches whose commit outcome was unknown, settled by claiming their id");
    redis_sync_failures: IntCounter = counter("redis_sync_failures_total", "Batches that could not be mirrored to Redis (repaired later)");
    redis_rebuilds: IntCounter = counter("redis_rebuilds_total", "Times the Redis counts were rebuilt from PostgreSQL");
    sse_frames: IntCounter = counter("sse_frames_total", "Vote frames broadcast to /stream clients");
    sse_lagged: IntCounter = counter("sse_lagged_total", "Times a slow /stream client skipped frames");
    /// The fan-out's gap between frame passes (fanout/writer.rs, the write budget).
    sse_frame_gap: Gauge = float_gauge("sse_frame_gap_seconds", "Gap between two frame passes to /stream clients: grows past 0.1 when screens need more writes than the budget allows");
    failure_reports_dropped: IntCounter = counter("failure_reports_dropped_total", "Failed-vote reports dropped because the broadcaster's queue was full");
    pubsub_rejected: IntCounterVec = counter_vec("pubsub_rejected_total", "Redis pub/sub messages ignored because they failed validation, by reason", &["reason"]);
    connections_open: IntGaugeVec = gauge_vec("connections_open", "Open connections by budget (stream or other; other includes stream slots it borrowed)", &["budget"]);
    connections_max: IntGaugeVec = gauge_vec("connections_max", "Connection budget sizes", &["budget"]);
    streams_refused: IntCounter = counter("streams_refused_total", "GET /stream answered 503 because the stream budget was full");
    connections_evicted: IntCounter = counter("connections_evicted_total", "Connections asked to close to admit a new one (the general budget was full)");
    connections_dropped: IntCounter = counter("connections_dropped_total", "Connections answered 503 unread and closed: the general budget and its waiting places were full");
    db_pool_waits: IntCounterVec = counter_vec("db_pool_waits_total", "PostgreSQL checkouts that found no idle connection, by pool", &["pool"]);
    allocator_allocated: IntGauge = gauge("allocator_allocated_bytes", "Bytes the program holds, as jemalloc counts them");
    allocator_resident: IntGauge = gauge("allocator_resident_bytes", "Bytes of jemalloc's pages resident in memory (compare process_resident_memory_bytes)");
    db_size: IntGauge = gauge("postgresql_database_size_bytes", "Size of the app's database on disk (pg_database_size)");
    db_wal_max: IntGauge = gauge("postgresql_wal_max_bytes", "PostgreSQL's max_wal_size: what the WAL may take on the same volume");
    db_volume: IntGauge = gauge("postgresql_volume_size_bytes", "Size of PostgreSQL's volume (DB_VOLUME_SIZE; 0 when not set)");
    /// 1, labelled with `APP_VERSION`: the dashboard shows which build serves
    /// (the mirrord take-over turns `deployed` into `dev-mirrord`).
    build_info: IntGaugeVec = gauge_vec("build_info", "Always 1; its label names the version serving", &["version"]);
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self::register_all(Registry::new());
        // The SLO's vote series exist from the start (docs/observability.md): a
        // status first exported with a burst already counted (the demo's referral
        // 503s) would begin at that count, and rate() would never see the burst.
        for status in [200, 303, 500, 503] {
            metrics
                .http_requests
                .with_label_values(&["POST", VOTE_ENDPOINT, status_label(status)]);
        }
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique and valid");
        metrics
    }

    /// Names the version serving. The label comes from the operator's
    /// `APP_VERSION`, one value per process, so it cannot grow the cardinality.
    pub fn set_version(&self, version: &str) {
        self.build_info.with_label_values(&[version]).set(1);
    }

    /// Records one answered request; `endpoint` is the route's label, or
    /// `other` for an unknown path (one label, whatever the path).
    pub fn observe_request(
        &self,
        method: &'static str,
        endpoint: &'static str,
        status: u16,
        seconds: f64,
    ) {
        self.http_requests
            .with_label_values(&[method, endpoint, status_label(status)])
            .inc();
        self.http_duration
            .with_label_values(&[method, endpoint])
            .observe(seconds);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Status codes as static strings so the hot path never allocates a label.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        415 => "415",
        422 => "422",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_spec_names() {
        let metrics = Metrics::new();
        metrics.observe_request("POST", VOTE_ENDPOINT, 503, 0.01);
        metrics.referral_cache_exhausted.inc();
        metrics.set_version("dev-mirrord");
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        assert!(
            text.contains(r#"http_requests_total{endpoint="/vote",method="POST",status="503"} 1"#)
        );
        assert!(text.contains("http_request_duration_seconds_bucket"));
        assert!(text.contains("referral_cache_exhausted_total 1"));
        assert!(text.contains("db_pool_size"));
        assert!(text.contains(r#"build_info{version="dev-mirrord"} 1"#));
    }

    #[test]
    fn vote_outcomes_start_at_zero() {
        let text = String::from_utf8(Metrics::new().render()).expect("utf-8");
        for status in ["200", "303", "500", "503"] {
            let series = format!(
                r#"http_requests_total{{endpoint="/vote",method="POST",status="{status}"}} 0"#
            );
            assert!(text.contains(&series), "{series} missing");
        }
    }
}
