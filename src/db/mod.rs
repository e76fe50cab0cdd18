//! PostgreSQL access: the pool, migrations and one module per table.
//! SQL text lives in the top-level `db/` folder and is embedded at build time.

pub mod migrate;
pub mod partners;
pub mod timeline;
pub mod votes;

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use thiserror::Error;
use tokio_postgres::NoTls;

/// How long a caller waits for a pooled connection before giving up.
pub const POOL_WAIT: Duration = Duration::from_secs(2);
/// How long opening one PostgreSQL connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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

/// Builds the pool; connections are opened lazily.
pub fn pool(database_url: &str, size: usize) -> anyhow::Result<Pool> {
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
