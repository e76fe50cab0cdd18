//! The votes export (`GET /admin/export.csv`): every vote as CSV, straight
//! from `COPY … TO STDOUT` on a connection of its own, never one of the
//! pool's (a slow download must not hold back votes or referral lookups);
//! and the reset's cut of running exports on every replica.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::{Client, CopyOutStream, NoTls};

use super::{CONNECT_TIMEOUT, DbError, within};

/// Every vote, oldest first, as PostgreSQL writes it: RFC 3339 in UTC.
const VOTES_CSV: &str = "COPY (SELECT to_char(created_at AT TIME ZONE 'UTC', \
    'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at, choice, referral_code \
    FROM votes ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)";
/// The `application_name` of an export's connection: how a reset, on any
/// replica, finds the exports to cut.
pub const EXPORT_APPLICATION: &str = "vote-api export";
/// Longest an export may wait for PostgreSQL's next chunk before it ends.
pub const EXPORT_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one look for exports to cut may take.
const CUT_TIMEOUT: Duration = Duration::from_secs(1);

/// A running export. The connection task ends when `client` is dropped;
/// aborting `connection` closes the socket, which ends the COPY and frees
/// its lock on `votes`.
pub struct Export {
    pub client: Client,
    pub rows: CopyOutStream,
    pub connection: tokio::task::AbortHandle,
}

/// Connects as `EXPORT_APPLICATION` and starts the COPY.
pub async fn start(database_url: &str) -> Result<Export, DbError> {
    let mut pg: tokio_postgres::Config = database_url.parse()?;
    pg.application_name(EXPORT_APPLICATION);
    pg.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, pg.connect(NoTls))
        .await
        .map_err(|_| DbError::Timeout(CONNECT_TIMEOUT))??;
    let connection = tokio::spawn(connection).abort_handle();
    let rows = tokio::time::timeout(EXPORT_CHUNK_TIMEOUT, client.copy_out(VOTES_CSV))
        .await
        .map_err(|_| DbError::Timeout(EXPORT_CHUNK_TIMEOUT))??;
    Ok(Export {
        client,
        rows,
        connection,
    })
}

/// Terminates the PostgreSQL sessions of running exports, on every
/// replica; returns how many.
pub async fn cut_running(pool: &Pool) -> Result<i64, DbError> {
    within(CUT_TIMEOUT, async {
        let client = pool.get().await?;
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
