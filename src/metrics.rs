//! Prometheus metrics (docs/contract.md#get-metrics), one registry per app instance so that tests
//! can run several instances in one process. Label values come from closed
//! sets (`Endpoint`, `method_label`, the statuses we produce), so no client
//! can grow the label cardinality.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::http::router::Endpoint;

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

/// All metrics of one app instance.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub referral_cache_exhausted: IntCounter,
    pub referral_cache_entries: IntGauge,
    pub db_pool_checked_out: IntGauge,
    pub db_pool_size: IntGauge,
    pub votes: IntCounterVec,
    pub timeline_dropped: IntCounter,
    pub sse_clients: IntGauge,
    pub queue_depth: IntGaugeVec,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub write_failures: IntCounter,
    pub vote_replays: IntCounter,
    pub batches_fenced: IntCounter,
    pub redis_sync_failures: IntCounter,
    pub redis_rebuilds: IntCounter,
    pub sse_frames: IntCounter,
    pub sse_lagged: IntCounter,
    /// The fan-out's gap between frame passes (fanout.rs, the write budget).
    pub sse_frame_gap: Gauge,
    pub failure_reports_dropped: IntCounter,
    pub pubsub_rejected: IntCounterVec,
    pub connections_open: IntGaugeVec,
    pub connections_max: IntGaugeVec,
    pub streams_refused: IntCounter,
    pub connections_evicted: IntCounter,
    pub connections_dropped: IntCounter,
    pub db_pool_waits: IntCounterVec,
    pub allocator_allocated: IntGauge,
    pub allocator_resident: IntGauge,
    pub db_size: IntGauge,
    pub db_wal_max: IntGauge,
    pub db_volume: IntGauge,
    /// 1, labelled with `APP_VERSION`: the dashboard shows which build serves
    /// (the mirrord take-over turns `deployed` into `dev-mirrord`).
    pub build_info: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry
                .register(c)
                .expect("metric names are unique and valid");
        };

        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, endpoint and status",
            ),
            &["method", "endpoint", "status"],
        )
        .expect("valid metric");
        reg(Box::new(http_requests.clone()));
        // The SLO's vote series exist from the start (docs/observability.md): a
        // status first exported with a burst already counted (the demo's referral
        // 503s) would begin at that count, and rate() would never see the burst.
        for status in [200, 303, 500, 503] {
            http_requests.with_label_values(&[
                "POST",
                Endpoint::Vote.label(),
                status_label(status),
            ]);
        }
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
                    10.0,
                ],
            ),
            &["method", "endpoint"],
        )
        .expect("valid metric");
        reg(Box::new(http_duration.clone()));

        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };

        let votes = IntCounterVec::new(
            Opts::new("votes_total", "Votes committed by this replica, by choice"),
            &["choice"],
        )
        .expect("valid metric");
        reg(Box::new(votes.clone()));
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "actor_queue_depth",
                "Messages waiting in an actor's mailbox",
            ),
            &["actor"],
        )
        .expect("valid metric");
        reg(Box::new(queue_depth.clone()));
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("vote_batch_size", "Votes per group commit").buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )
        .expect("valid metric");
        reg(Box::new(batch_size.clone()));
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "vote_commit_duration_seconds",
                "Latency of one group commit",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .expect("valid metric");
        reg(Box::new(commit_seconds.clone()));

        let pubsub_rejected = IntCounterVec::new(
            Opts::new(
                "pubsub_rejected_total",
                "Redis pub/sub messages ignored because they failed validation, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        reg(Box::new(pubsub_rejected.clone()));
        // Both series from the start, so an alert can use increase() from zero.
        for reason in crate::live::Rejected::ALL {
            pubsub_rejected.with_label_values(&[reason.label()]);
        }
        let budget_gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["budget"]).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let connections_open = budget_gauge(
            "connections_open",
            "Open connections by budget (stream or other)",
        );
        let connections_max = budget_gauge("connections_max", "Connection budget sizes");
        let db_pool_waits = IntCounterVec::new(
            Opts::new(
                "db_pool_waits_total",
                "PostgreSQL checkouts that found no idle connection, by pool",
            ),
            &["pool"],
        )
        .expect("valid metric");
        reg(Box::new(db_pool_waits.clone()));

        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "Always 1; its label names the version serving",
            ),
            &["version"],
        )
        .expect("valid metric");
        reg(Box::new(build_info.clone()));

        Metrics {
            http_requests,
            http_duration,
            referral_cache_exhausted: counter(
                "referral_cache_exhausted_total",
                "Referral votes refused because the referral cache is exhausted",
            ),
            referral_cache_entries: gauge(
                "referral_cache_entries",
                "Entries held by the referral validator's cache",
            ),
            db_pool_checked_out: gauge("db_pool_checked_out", "PostgreSQL connections in use"),
            db_pool_size: gauge("db_pool_size", "PostgreSQL pool size"),
            db_size: gauge(
                "postgresql_database_size_bytes",
                "Size of the app's database on disk (pg_database_size)",
            ),
            db_wal_max: gauge(
                "postgresql_wal_max_bytes",
                "PostgreSQL's max_wal_size: what the WAL may take on the same volume",
            ),
            db_volume: gauge(
                "postgresql_volume_size_bytes",
                "Size of PostgreSQL's volume (DB_VOLUME_SIZE; 0 when not set)",
            ),
            votes,
            timeline_dropped: counter(
                "timeline_dropped_total",
                "Vote outcomes left out of the incident timeline (queue or buffer full)",
            ),
            sse_clients: gauge("sse_clients", "Connected /stream clients"),
            queue_depth,
            batch_size,
            commit_seconds,
            write_failures: counter(
                "vote_write_failures_total",
                "Votes answered 503 because PostgreSQL stayed unreachable",
            ),
            vote_replays: counter(
                "vote_replays_total",
                "Votes answered from an earlier vote with the same idempotency key",
            ),
            batches_fenced: counter(
                "vote_batches_fenced_total",
                "Batches whose commit outcome was unknown, settled by claiming their id",
            ),
            redis_sync_failures: counter(
                "redis_sync_failures_total",
                "Batches that could not be mirrored to Redis (repaired later)",
            ),
            redis_rebuilds: counter(
                "redis_rebuilds_total",
                "Times the Redis counts were rebuilt from PostgreSQL",
            ),
            sse_frames: counter(
                "sse_frames_total",
                "Vote frames broadcast to /stream clients",
            ),
            sse_lagged: counter(
                "sse_lagged_total",
                "Times a slow /stream client skipped frames",
            ),
            sse_frame_gap: {
                let g = Gauge::new(
                    "sse_frame_gap_seconds",
                    "Gap between two frame passes to /stream clients: grows past 0.1 when screens need more writes than the budget allows",
                )
                .expect("valid metric");
                reg(Box::new(g.clone()));
                g
            },
            failure_reports_dropped: counter(
                "failure_reports_dropped_total",
                "Failed-vote reports dropped because the broadcaster's queue was full",
            ),
            pubsub_rejected,
            connections_open,
            connections_max,
            streams_refused: counter(
                "streams_refused_total",
                "GET /stream answered 503 because the stream budget was full",
            ),
            connections_evicted: counter(
                "connections_evicted_total",
                "Connections asked to close to admit a new one (the general budget was full)",
            ),
            connections_dropped: counter(
                "connections_dropped_total",
                "Connections answered 503 unread and closed: the general budget and its waiting places were full",
            ),
            db_pool_waits,
            allocator_allocated: gauge(
                "allocator_allocated_bytes",
                "Bytes the program holds, as jemalloc counts them",
            ),
            allocator_resident: gauge(
                "allocator_resident_bytes",
                "Bytes of jemalloc's pages resident in memory (compare process_resident_memory_bytes)",
            ),
            build_info,
            registry,
        }
    }

    /// Names the version serving. The label comes from the operator's
    /// `APP_VERSION`, one value per process, so it cannot grow the cardinality.
    pub fn set_version(&self, version: &str) {
        self.build_info.with_label_values(&[version]).set(1);
    }

    /// Records one answered request.
    pub fn observe_request(
        &self,
        method: &'static str,
        endpoint: Option<Endpoint>,
        status: u16,
        seconds: f64,
    ) {
        // An unknown path is one label, whatever the path.
        let endpoint = endpoint.map_or("other", Endpoint::label);
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
        metrics.observe_request("POST", Some(Endpoint::Vote), 503, 0.01);
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
