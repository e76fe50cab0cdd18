//! `poll_state`: the session every replica shares. Its hidden flag lives
//! here, not in Redis, so a Redis restart never reveals hidden results;
//! Redis only announces changes (actors/reveal.rs). The epoch is changed by
//! the reset (db/votes.rs).

use std::time::Duration;

use deadpool_postgres::Pool;

use super::{DbError, within};

/// Upper bound for reading or changing the flag, waiting for a connection included.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the speaker hides the results now.
pub async fn hidden(pool: &Pool) -> Result<bool, DbError> {
    within(SESSION_TIMEOUT, async {
        let client = pool.get().await?;
        let row = client
            .query_one("SELECT hidden FROM poll_state", &[])
            .await?;
        Ok(row.try_get(0)?)
    })
    .await
}

/// Hides or shows the results for every replica.
pub async fn set_hidden(pool: &Pool, hidden: bool) -> Result<(), DbError> {
    within(SESSION_TIMEOUT, async {
        let client = pool.get().await?;
        client
            .execute("UPDATE poll_state SET hidden = $1", &[&hidden])
            .await?;
        Ok(())
    })
    .await
}
