//! `votes` and `vote_batches`: the group-commit insert with its idempotency
//! keys, the fence that settles a batch given up on, per-choice counts and
//! the reset. Only the PersistenceWriter writes here.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Object, PoolError, TimeoutType};
use tokio::time::Instant;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{DbError, MeteredPool};
use crate::live::CountedAt;
use crate::poll::{Choice, Counts};

/// How long a statement may keep running past its deadline while the server
/// is asked to cancel it and the statement's own answer is awaited.
pub const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// A connection of the writer's own pool (waits are metered), if one comes
/// before `deadline`.
pub async fn client(pool: &MeteredPool, deadline: Instant) -> Result<Object, DbError> {
    tokio::time::timeout_at(deadline, pool.get())
        .await
        .unwrap_or(Err(PoolError::Timeout(TimeoutType::Wait)))
        .map_err(DbError::from)
}

/// The votes of one group commit, as columns for `unnest`.
#[derive(Debug, Default)]
pub struct BatchRows<'a> {
    pub choices: Vec<&'a str>,
    pub referrals: Vec<Option<&'a str>>,
    /// Votes with an idempotency key: one per key, sorted by key so that
    /// replicas inserting overlapping keys take row locks in the same order.
    pub keyed_choices: Vec<&'a str>,
    pub keyed_referrals: Vec<Option<&'a str>>,
    pub keys: Vec<&'a str>,
}

/// What an insert attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The batch committed now, in transaction `xid`; `keyed` of its keyed
    /// votes were new keys (the others already had a vote).
    Now { keyed: u64, xid: u64 },
    /// An earlier attempt of this batch had committed.
    Before,
}

/// Inserts a whole batch and its `vote_batches` row with one statement in
/// an explicit transaction (one commit). A repeated attempt conflicts with,
/// or waits for, the first one's batch row, so a batch is never stored twice.
/// Past `deadline` the server is asked to cancel the statement and its own
/// answer is awaited. Any failure before COMMIT was sent closes the
/// connection (`DbError::Abandoned`): even a server frozen mid-statement can
/// then never commit the batch after its votes were answered 503. Only a
/// COMMIT without an answer leaves the outcome unknown.
pub async fn insert_batch(
    client: Object,
    batch_id: i64,
    rows: &BatchRows<'_>,
    deadline: Instant,
) -> Result<Inserted, DbError> {
    match insert_in_transaction(&client, batch_id, rows, deadline).await {
        Ok((keyed, xid)) => Ok(Inserted::Now { keyed, xid }),
        Err(Step::BeforeCommit(e)) => {
            // Dropped outside the pool: the socket closes and the server
            // rolls the open transaction back.
            drop(Object::take(client));
            match e {
                DbError::Query(e) if is_batch_conflict(&e) => Ok(Inserted::Before),
                e => Err(DbError::Abandoned(Box::new(e))),
            }
        }
        Err(Step::Commit(e)) => {
            drop(Object::take(client));
            Err(e)
        }
    }
}

/// Where a transactional insert failed.
enum Step {
    BeforeCommit(DbError),
    Commit(DbError),
}

/// The new keyed votes and the transaction id (Redis uses it to tell
/// whether a rebuild's count already holds this batch; see live.rs).
async fn insert_in_transaction(
    client: &Object,
    batch_id: i64,
    rows: &BatchRows<'_>,
    deadline: Instant,
) -> Result<(u64, u64), Step> {
    let prepare = client.prepare_cached(
        "WITH batch AS (
                 INSERT INTO vote_batches (batch_id) VALUES ($1)
             ), plain AS (
                 INSERT INTO votes (choice, referral_code, batch_id)
                 SELECT c, r, $1 FROM unnest($2::text[], $3::text[]) AS t(c, r)
             ), keyed AS (
                 INSERT INTO votes (choice, referral_code, idempotency_key, batch_id)
                 SELECT c, r, k, $1 FROM unnest($4::text[], $5::text[], $6::text[]) AS t(c, r, k)
                 ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                 RETURNING 1
             )
             SELECT count(*), pg_current_xact_id()::text::bigint FROM keyed",
    );
    let stmt = cancel_after(client, deadline, prepare)
        .await
        .map_err(Step::BeforeCommit)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &batch_id,
        &rows.choices,
        &rows.referrals,
        &rows.keyed_choices,
        &rows.keyed_referrals,
        &rows.keys,
    ];
    cancel_after(client, deadline, client.batch_execute("BEGIN"))
        .await
        .map_err(Step::BeforeCommit)?;
    let row = cancel_after(client, deadline, client.query_one(&stmt, &params))
        .await
        .map_err(Step::BeforeCommit)?;
    let read = |i| {
        row.try_get::<_, i64>(i)
            .map(|n| u64::try_from(n).unwrap_or(0))
    };
    let inserted = read(0)
        .and_then(|keyed| Ok((keyed, read(1)?)))
        .map_err(|e| Step::BeforeCommit(e.into()))?;
    cancel_after(client, deadline, client.batch_execute("COMMIT"))
        .await
        .map_err(Step::Commit)?;
    Ok(inserted)
}

/// Settles a batch whose last attempt may still be running on the server:
/// claims its id alone. True when the claim succeeded, so the batch was not
/// and never will be stored; false when the batch had committed. Waits for
/// an attempt still in flight to finish first.
pub async fn fence_batch(
    client: &Object,
    batch_id: i64,
    deadline: Instant,
) -> Result<bool, DbError> {
    let prepare = client.prepare_cached(
        "INSERT INTO vote_batches (batch_id) VALUES ($1) ON CONFLICT (batch_id) DO NOTHING",
    );
    let stmt = cancel_after(client, deadline, prepare).await?;
    let claimed = cancel_after(client, deadline, client.execute(&stmt, &[&batch_id])).await?;
    Ok(claimed == 1)
}

/// The vote stored under an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedVote {
    pub choice: Choice,
    pub batch_id: Option<i64>,
}

/// The stored votes of `keys` (keys without a vote are left out).
pub async fn keyed_votes(
    client: &Object,
    keys: &[&str],
    deadline: Instant,
) -> Result<Vec<(String, KeyedVote)>, DbError> {
    let prepare = client.prepare_cached(
        "SELECT idempotency_key, choice, batch_id FROM votes
         WHERE idempotency_key = ANY($1::text[])",
    );
    let stmt = cancel_after(client, deadline, prepare).await?;
    let rows = cancel_after(client, deadline, client.query(&stmt, &[&keys])).await?;
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        let choice: &str = row.try_get(1)?;
        // The CHECK constraint keeps unknown keys out; skip rather than panic.
        if let Ok(choice) = choice.parse() {
            let vote = KeyedVote {
                choice,
                batch_id: row.try_get(2)?,
            };
            found.push((row.try_get(0)?, vote));
        }
    }
    Ok(found)
}

/// False when a failed attempt certainly changed nothing (no connection, or
/// the server refused the statement); true when it may have committed.
pub fn may_have_committed(e: &DbError) -> bool {
    match e {
        DbError::Pool(_) => false,
        DbError::Query(e) => e.as_db_error().is_none(),
        DbError::Timeout(_) => true,
        DbError::Abandoned(_) => false,
    }
}

fn is_batch_conflict(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("vote_batches_pkey")
    })
}

/// Awaits `query` until `deadline`; then asks the server to cancel it and
/// waits up to `CANCEL_GRACE` for the statement's own answer: a result means
/// it completed (committed), an error (usually "canceling statement") that it
/// did not. Only when even that answer is missing is the outcome unknown.
///
/// A cancel request that arrives after the statement finished is ignored by
/// an idle server; one that races with the next statement on this connection
/// fails that statement cleanly, which its caller retries.
async fn cancel_after<T>(
    client: &Object,
    deadline: Instant,
    query: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, DbError> {
    let mut query = std::pin::pin!(query);
    if let Ok(answer) = tokio::time::timeout_at(deadline, &mut query).await {
        return Ok(answer?);
    }
    let cancel = client.cancel_token();
    let settled = tokio::time::timeout(CANCEL_GRACE, async {
        // A failed cancel request changes nothing: the answer decides.
        let _ = cancel.cancel_query(NoTls).await;
        query.await
    });
    match settled.await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(DbError::Timeout(CANCEL_GRACE)),
    }
}

/// Counts per choice, straight from the source of truth.
pub async fn counts(client: &Object) -> Result<CountedAt, DbError> {
    // One statement, one snapshot: the counts are exactly what it sees.
    let row = client
        .query_one(
            "SELECT pg_current_snapshot()::text,
                    coalesce(array_agg(choice), '{}'), coalesce(array_agg(n), '{}')
             FROM (SELECT choice, count(*) AS n FROM votes GROUP BY choice) AS c",
            &[],
        )
        .await?;
    let keys: Vec<&str> = row.try_get(1)?;
    let ns: Vec<i64> = row.try_get(2)?;
    let mut counts = Counts::default();
    for (key, n) in keys.into_iter().zip(ns) {
        // The CHECK constraint keeps unknown keys out; ignore rather than panic.
        if let Ok(choice) = key.parse::<Choice>() {
            counts.add(choice, u64::try_from(n).unwrap_or(0));
        }
    }
    Ok(CountedAt {
        counts,
        snapshot: row.try_get(0)?,
    })
}

/// Deletes every vote and with them their idempotency keys and batch ids
/// (referral partners stay).
/// Cancelled past `deadline`, so a reset answered as failed never happens later.
pub async fn delete_all(client: &Object, deadline: Instant) -> Result<(), DbError> {
    let truncate = client.batch_execute("TRUNCATE votes, vote_batches");
    cancel_after(client, deadline, truncate).await
}
