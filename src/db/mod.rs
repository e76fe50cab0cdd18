//! PostgreSQL access: the pools, migrations and one module per table.
//! SQL text lives in the top-level `db/` folder and is embedded at build time.
//! Connections are budgeted per use: the PersistenceWriter has a pool of its
//! own (`WRITER_CONNECTIONS`), so it never waits behind referral lookups,
//! probes or pages; the readiness check has one too (`PROBE_CONNECTIONS`);
//! referral lookups and the rest share the `DB_POOL_SIZE` pool.

pub mod export;
pub mod migrate;
pub mod partners;
pub mod session;
pub mod timeline;
pub mod votes;

use std::ops::Deref;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use prometheus::IntCounter;
use thiserror::Error;
use tokio_postgres::NoTls;

/// How long a caller waits for a pooled connection before giving up.
pub const POOL_WAIT: Duration = Duration::from_secs(2);
/// How long opening one PostgreSQL connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The writer's own connections: one batch at a time uses one; the second
/// stands by while a broken one is replaced.
pub const WRITER_CONNECTIONS: usize = 2;
/// The readiness probes' own connection, so that a flood of referral
/// lookups never makes PostgreSQL look down to the load balancer.
pub const PROBE_CONNECTIONS: usize = 1;

/// A PostgreSQL failure, kept for logs; clients only see "PostgreSQL not available".
#[derive(Debug, Error)]
pub enum DbError {
    #[error("PostgreSQL pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    /// A transaction given up before its COMMIT was sent: its connection was
    /// closed, so the server rolls it back whenever it gets to it.
    #[error("transaction abandoned before COMMIT: {0}")]
    Abandoned(Box<DbError>),
}

/// Why `pool` could not build a pool. Displayed as its cause alone.
#[derive(Debug, Error)]
pub enum PoolBuildError {
    /// The database URL is not a valid PostgreSQL connection string.
    #[error(transparent)]
    Url(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Build(#[from] deadpool_postgres::BuildError),
}

/// Builds the pool; connections are opened lazily.
pub fn pool(database_url: &str, size: usize) -> Result<Pool, PoolBuildError> {
    let mut pg = tokio_postgres::Config::from_str(database_url)?;
    pg.connect_timeout(CONNECT_TIMEOUT);
    if pg.get_application_name().is_none() {
        pg.application_name("vote-api");
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()?)
}

/// A pool that counts the checkouts that found no idle connection and had
/// to wait: what its user saw of the contention. Derefs to the pool.
#[derive(Clone)]
pub struct MeteredPool {
    pool: Pool,
    waits: IntCounter,
}

impl MeteredPool {
    pub fn new(pool: Pool, waits: IntCounter) -> Self {
        MeteredPool { pool, waits }
    }

    /// A connection; counts a wait when none was free at once.
    pub async fn get(&self) -> Result<Object, PoolError> {
        let at_once = Timeouts {
            wait: Some(Duration::ZERO),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        };
        match self.pool.timeout_get(&at_once).await {
            Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => {
                self.waits.inc();
                self.pool.get().await
            }
            other => other,
        }
    }
}

impl Deref for MeteredPool {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        &self.pool
    }
}

/// Runs `fut` under `limit`, turning expiry into `DbError::Timeout`.
pub async fn within<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(DbError::Timeout(limit)))
}

/// True when PostgreSQL answers a trivial query within `limit`.
pub async fn ping(pool: &Pool, limit: Duration) -> bool {
    within(limit, async {
        let client = pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    })
    .await
    .is_ok()
}

/// How often the database's size is read for `postgresql_database_size_bytes`.
pub const SIZE_EVERY: Duration = Duration::from_secs(30);

/// Keeps the disk gauges current until `shutdown`: the database's size and
/// `max_wal_size`, which share the volume the disk-filling alert watches
/// (the chart's Prometheus scrapes the app, not the kubelet).
pub async fn watch_size(
    pool: Pool,
    size: prometheus::IntGauge,
    wal_max: prometheus::IntGauge,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let read = within(CONNECT_TIMEOUT, async {
            let client = pool.get().await?;
            let row = client
                .query_one(
                    "SELECT pg_database_size(current_database()), \
                     pg_size_bytes(current_setting('max_wal_size'))",
                    &[],
                )
                .await?;
            Ok((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?))
        })
        .await;
        match read {
            Ok((bytes, wal)) => {
                size.set(bytes);
                wal_max.set(wal);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the database size"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SIZE_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
