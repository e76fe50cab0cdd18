//! `votes`: the group-commit insert, per-choice counts and the reset.

use deadpool_postgres::Object;

use super::DbError;
use crate::poll::{Choice, Counts};

/// Inserts a whole batch with one statement (one round trip, one commit).
pub async fn insert_batch(
    client: &Object,
    batch_id: i64,
    choices: &[&str],
    referrals: &[Option<&str>],
) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO votes (choice, referral_code, batch_id)
             SELECT c, r, $3 FROM unnest($1::text[], $2::text[]) AS t(c, r)",
        )
        .await?;
    client
        .execute(&stmt, &[&choices, &referrals, &batch_id])
        .await?;
    Ok(())
}

/// True when a batch with this id was committed (used after an ambiguous failure).
pub async fn batch_committed(client: &Object, batch_id: i64) -> Result<bool, DbError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM votes WHERE batch_id = $1 LIMIT 1",
            &[&batch_id],
        )
        .await?;
    Ok(row.is_some())
}

/// Counts per choice, straight from the source of truth.
pub async fn counts(client: &Object) -> Result<Counts, DbError> {
    let rows = client
        .query("SELECT choice, count(*) FROM votes GROUP BY choice", &[])
        .await?;
    let mut counts = Counts::default();
    for row in rows {
        let key: &str = row.try_get(0)?;
        let n: i64 = row.try_get(1)?;
        // The CHECK constraint keeps unknown keys out; ignore rather than panic.
        if let Ok(choice) = key.parse::<Choice>() {
            counts.add(choice, u64::try_from(n).unwrap_or(0));
        }
    }
    Ok(counts)
}

/// Deletes every vote (referral partners stay).
pub async fn delete_all(client: &Object) -> Result<(), DbError> {
    client.batch_execute("TRUNCATE votes").await?;
    Ok(())
}
