//! vote-api: a live conference poll over raw Hyper and Tokio actors.
//! `start` wires PostgreSQL, Redis, the actors and the HTTP server and
//! returns a handle, so tests run the real application in-process.

pub mod actors;
pub mod assets;
pub mod brand;
pub mod config;
pub mod db;
pub mod http;
pub mod live;
pub mod logsink;
pub mod metrics;
pub mod poll;
pub mod signing;
pub mod timeline;
pub mod totals;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use actors::Actors;
use config::Config;
use http::AppState;
use live::Live;
use metrics::Metrics;
use poll::CountsView;

/// How long start-up waits for PostgreSQL before giving up.
pub const STARTUP_DB_WAIT: Duration = Duration::from_secs(30);
/// How long start-up waits for the first totals read from PostgreSQL (the
/// tally's first rebuild, milliseconds when healthy) before serving anyway.
pub const STARTUP_COUNTS_WAIT: Duration = Duration::from_secs(2);
/// How long actors may take to drain after the server stopped.
pub const ACTOR_DRAIN: Duration = Duration::from_secs(2);

/// Why the service could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot build the PostgreSQL pool: {0}")]
    Pool(#[from] db::PoolBuildError),
    #[error("PostgreSQL migrations failed: {0}")]
    Migrate(#[from] db::DbError),
    #[error("cannot read or store the shared signing key in PostgreSQL: {0}")]
    SigningKey(#[source] db::DbError),
    #[error("invalid REDIS_URL: {0}")]
    Redis(#[from] live::LiveError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running instance.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `METRICS_ADDR` is set (actually bound).
    pub metrics_addr: Option<SocketAddr>,
    /// Where the probes are served apart when `PROBE_ADDR` is set (actually bound).
    pub probe_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drains requests and actors, and waits for the end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the instance stopped (after `shutdown` was cancelled).
    /// A panic of the server task is raised again here: it must not pass for
    /// a clean stop.
    pub async fn wait(self) {
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Builds the PostgreSQL pool and applies migrations, waiting for
/// PostgreSQL to come up for at most `STARTUP_DB_WAIT`.
pub async fn prepare_db(config: &Config) -> Result<deadpool_postgres::Pool, StartError> {
    let pool = db::pool(&config.database_url, config.db_pool_size)?;
    let started = Instant::now();
    loop {
        match db::migrate::run(&pool).await {
            Ok(_) => return Ok(pool),
            Err(e) if started.elapsed() < STARTUP_DB_WAIT => {
                warn!(error = %e, "PostgreSQL not ready, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Starts the service; it runs until `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let pool = prepare_db(&config).await?;
    let signer = signing::load(&pool, config.device_key.clone().map(|k| k.0))
        .await
        .map_err(StartError::SigningKey)?;
    let live = Live::connect(&config.redis_url, replica_name())?.for_poll(config.poll.clone());
    let (listener, addr) = bind(config.bind_addr).await?;
    let operational = operational_listeners(&config).await?;
    let metrics_addr = bound(&operational, http::Operational::Metrics);
    let probe_addr = bound(&operational, http::Operational::Probes);

    let metrics = Arc::new(Metrics::new());
    metrics.db_pool_size.set(config.db_pool_size as i64);
    metrics.set_version(&config.app_version);
    let view = CountsView::new();
    let mut first_counts = view.subscribe();
    let (writer_pool, probe_pool) = own_pools(&config, &metrics)?;
    let (actors, tasks) = Actors::spawn(
        pool.clone(),
        writer_pool,
        live.clone(),
        view.clone(),
        config.app_version.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    actors.reveal.load().await;
    watch_db(&config, &pool, &metrics, &shutdown);
    // A new replica answers with the stored totals, not zeros: the tally
    // rebuilds from PostgreSQL as it starts (with Redis down, it shows
    // PostgreSQL's totals itself), so the view changes within milliseconds.
    if tokio::time::timeout(STARTUP_COUNTS_WAIT, first_counts.changed())
        .await
        .is_err()
    {
        warn!("no totals from PostgreSQL yet, serving anyway");
    }
    let state = Arc::new(AppState {
        admission: admission(&config),
        signer,
        readiness: Default::default(),
        qr_codes: Default::default(),
        config,
        actors,
        view,
        pool,
        probe_pool,
        live,
        metrics,
        shutdown: shutdown.clone(),
    });
    info!(%addr, version = %state.config.app_version, "vote-api listening");
    let operational_tasks = serve_operational(operational, &state, &shutdown);

    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        http::serve(listener, state, token).await;
        for task in operational_tasks {
            let _ = task.await;
        }
        // The last handles go with the state; the writer then drains and the
        // rest of the graph follows.
        tasks.join(ACTOR_DRAIN).await;
        info!("vote-api stopped");
    });
    Ok(Running {
        addr,
        metrics_addr,
        probe_addr,
        shutdown,
        task,
    })
}

/// The writer's pool (its waits metered) and the probes' pool, each of its
/// own size (`db::WRITER_CONNECTIONS`, `db::PROBE_CONNECTIONS`).
fn own_pools(
    config: &Config,
    metrics: &Metrics,
) -> Result<(db::MeteredPool, deadpool_postgres::Pool), StartError> {
    let writer_pool = db::pool(&config.database_url, db::WRITER_CONNECTIONS)?;
    let probe_pool = db::pool(&config.database_url, db::PROBE_CONNECTIONS)?;
    let writer_pool = db::MeteredPool::new(
        writer_pool,
        metrics.db_pool_waits.with_label_values(&["writer"]),
    );
    Ok((writer_pool, probe_pool))
}

/// The disk gauges: the volume's size when known, and the database's size
/// read until `shutdown`.
fn watch_db(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) {
    if let Some(bytes) = config.db_volume_bytes {
        metrics
            .db_volume
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    tokio::spawn(db::watch_size(
        pool.clone(),
        metrics.db_size.clone(),
        metrics.db_wal_max.clone(),
        shutdown.clone(),
    ));
}

/// The connection budgets, from the configuration and what this process
/// may open and use.
fn admission(config: &Config) -> http::admission::Admission {
    let open_files = http::admission::raise_open_file_limit().unwrap_or(1024);
    let budgets =
        http::admission::Budgets::derive(config, open_files, http::admission::memory_limit());
    let stream_reserve = http::admission::stream_reserve(config, budgets);
    info!(
        max_streams = budgets.streams,
        stream_reserve,
        max_connections = budgets.others,
        open_files,
        "connection budgets"
    );
    http::admission::Admission::new(budgets)
        .with_stream_reserve(stream_reserve)
        .with_lending(config.max_connections.is_none())
}

/// Serves the operational listeners until `shutdown`.
fn serve_operational(
    operational: Vec<(http::Operational, TcpListener, SocketAddr)>,
    state: &Arc<AppState>,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    operational
        .into_iter()
        .map(|(serves, listener, at)| {
            info!(addr = %at, ?serves, "operational listener");
            tokio::spawn(http::serve_operational(
                listener,
                state.clone(),
                serves,
                shutdown.clone(),
            ))
        })
        .collect()
}

/// Where `serves` is served: its own listener's address, or the one
/// listener serving both.
fn bound(
    operational: &[(http::Operational, TcpListener, SocketAddr)],
    serves: http::Operational,
) -> Option<SocketAddr> {
    operational
        .iter()
        .find(|(s, _, _)| *s == serves || *s == http::Operational::Both)
        .map(|(_, _, addr)| *addr)
}

/// The `METRICS_ADDR` and `PROBE_ADDR` listeners: one when both name the
/// same address.
async fn operational_listeners(
    config: &Config,
) -> Result<Vec<(http::Operational, TcpListener, SocketAddr)>, StartError> {
    use http::Operational::{Both, Metrics, Probes};
    let wanted = match (config.metrics_addr, config.probe_addr) {
        (Some(m), Some(p)) if m == p => vec![(Both, m)],
        (m, p) => [(Metrics, m), (Probes, p)]
            .into_iter()
            .filter_map(|(serves, at)| at.map(|at| (serves, at)))
            .collect(),
    };
    let mut listeners = Vec::new();
    for (serves, at) in wanted {
        let (listener, addr) = bind(at).await?;
        listeners.push((serves, listener, addr));
    }
    Ok(listeners)
}

/// Connections the kernel holds for the accept loop (the kernel caps it at
/// `net.core.somaxconn`, 4,096 by default). tokio's 1,024 overflows while a
/// flood's evicted connections reconnect by the thousand, and a dropped
/// `SYN` costs a new phone the client's 1 s retransmit.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(bind_error)?;
    // As TcpListener::bind does: a restart may bind while old connections
    // of the last process sit in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    let listener = socket.listen(LISTEN_BACKLOG).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// A name for this replica in pub/sub messages: the pod name when present.
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "vote-api".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    format!("{host}:{}", std::process::id())
}
