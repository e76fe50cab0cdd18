//! `votes`, `vote_batches` and `vote_totals`: the group-commit insert with
//! its idempotency keys and the totals it changes in the same transaction,
//! the fence that settles a batch given up on, the totals' copies and the
//! reset, and the devices of `ONE_VOTE_PER_DEVICE` (one row each, changed
//! in place, the change moving one count between shards in the same
//! transaction; in `votes/devices.rs`). Only the PersistenceWriter writes
//! here.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use deadpool_postgres::{Object, PoolError, TimeoutType};
use tokio::time::Instant;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{DbError, MeteredPool};
use crate::totals::ShardCopy;
use devices::store_devices;
pub use devices::{DeviceOutcome, DeviceVote, Devices, device_choice};

/// The columns `shard_copy` reads, for a `vote_totals` row named `counts`
/// (a macro, so statements built with `concat!` stay `&'static str`).
macro_rules! shard_columns {
    () => {
        "shard, epoch, version,
         ARRAY(SELECT key FROM jsonb_each_text(counts) ORDER BY key),
         ARRAY(SELECT value::bigint FROM jsonb_each_text(counts) ORDER BY key)"
    };
}

/// A `vote_totals` row's counts (`s.counts`) with `$added`'s `(k, n)` rows
/// added, computed inside the UPDATE so a concurrent writer of the same
/// row is re-read, never overwritten.
macro_rules! merged_counts {
    ($added:literal) => {
        concat!(
            "(SELECT coalesce(jsonb_object_agg(k, n), '{}')
              FROM (SELECT k, sum(n)::bigint AS n
                    FROM (SELECT key AS k, value::bigint AS n
                          FROM jsonb_each_text(s.counts)
                          UNION ALL ",
            $added,
            ") AS u
                    GROUP BY k) AS g)"
        )
    };
}

/// The `shard` CTE: this writer's `vote_totals` row (shard `$shard`) with
/// `$added`'s `(k, n)` rows added and its version moved on.
macro_rules! shard_update {
    ($shard:literal, $added:literal) => {
        concat!(
            "shard AS (
                 UPDATE vote_totals AS s
                 SET version = s.version + 1,
                     counts = ",
            merged_counts!($added),
            "
                 WHERE s.shard = ",
            $shard,
            "
                 RETURNING s.shard, s.epoch, s.version, s.counts
             )"
        )
    };
}

// After the macros: the device statements use them too.
mod devices;

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
    /// Votes of devices (`ONE_VOTE_PER_DEVICE`): one per device, sorted by
    /// device id so that replicas lock device rows in the same order.
    pub devices: Vec<DeviceVote<'a>>,
}

/// What an insert attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The batch committed now. `copy` is its shard's totals as that commit
    /// left them; `keys` the stored vote of each of the batch's keys, read
    /// before COMMIT when some key already had a vote (`None`: every key was new).
    Now {
        copy: ShardCopy,
        keys: Option<Vec<(String, KeyedVote)>>,
        devices: Devices,
    },
    /// An earlier attempt of this batch had committed.
    Before,
}

/// Where this process's batches go: its shard of the totals, and the
/// lowest of its batch ids that may still be stored. A batch prunes its
/// writer's ids from there up to its own, and once it committed the next
/// one starts from it: the range stays a batch or two wide instead of
/// scanning every id (dead until vacuumed) since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writer {
    pub shard: i32,
    pub prune_from: i64,
}

/// Inserts a whole batch, its `vote_batches` row and its totals with one
/// statement in an explicit transaction (one commit). A repeated attempt
/// conflicts with, or waits for, the first one's batch row, so a batch is
/// never stored twice. Past `deadline` the server is asked to cancel the
/// statement and its own answer is awaited. Any failure before COMMIT was
/// sent closes the connection (`DbError::Abandoned`): even a server frozen
/// mid-statement can then never commit the batch after its votes were
/// answered 503. Only a COMMIT without an answer leaves the outcome unknown.
pub async fn insert_batch(
    client: Object,
    writer: Writer,
    batch_id: i64,
    rows: &BatchRows<'_>,
    deadline: Instant,
) -> Result<Inserted, DbError> {
    match insert_in_transaction(&client, writer, batch_id, rows, deadline).await {
        Err(Step::BeforeCommit(DbError::Query(ref e))) if is_batch_conflict(e) => {
            drop(Object::take(client));
            Ok(Inserted::Before)
        }
        result => finish(client, result).map(|stored| match stored {
            Some((copy, keys, devices)) => Inserted::Now {
                copy,
                keys,
                devices,
            },
            // Stored outside a transaction: its keys and totals are read back.
            None => Inserted::Before,
        }),
    }
}

/// The outcome of a transaction on `client`. After any failure the
/// connection is dropped outside the pool: the socket closes and the server
/// rolls an open transaction back whenever it gets to it.
fn finish<T>(client: Object, result: Result<T, Step>) -> Result<T, DbError> {
    match result {
        Ok(value) => Ok(value),
        Err(Step::BeforeCommit(e)) => {
            drop(Object::take(client));
            Err(DbError::Abandoned(Box::new(e)))
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

/// What both batch statements begin with: the batch's `vote_batches` row
/// (pruning this writer's older ones, from `$4`) and its plain votes. The
/// parameters they share come first ($1-$7), so the keyless statement's
/// parameters are the first seven of the keyed one's.
macro_rules! batch_head {
    () => {
        "WITH batch AS (
                 INSERT INTO vote_batches (batch_id) VALUES ($1)
             ), pruned AS (
                 DELETE FROM vote_batches WHERE batch_id >= $4 AND batch_id < $1
             ), plain AS (
                 INSERT INTO votes (choice, referral_code, batch_id)
                 SELECT c, r, $1 FROM unnest($2::text[], $3::text[]) AS t(c, r)
             ), "
    };
}

/// The batch's statement: its `vote_batches` row (pruning this writer's
/// older ones), its votes (a keyed vote whose key is stored already is left
/// out) and its shard's totals. Plain votes are all stored, so their counts
/// come counted ($6, $7) rather than returned row by row and grouped:
/// that was PostgreSQL's largest cost per vote beyond the INSERT itself.
/// The shard's new counts are computed in the UPDATE itself, so a
/// concurrent writer of the same shard is re-read, never overwritten.
/// Returns how many keyed votes were new, then the shard's totals
/// (`shard_copy` from column 1).
const INSERT_BATCH: &str = concat!(
    batch_head!(),
    "keyed AS (
                 INSERT INTO votes (choice, referral_code, idempotency_key, batch_id)
                 SELECT c, r, k, $1 FROM unnest($8::text[], $9::text[], $10::text[]) AS t(c, r, k)
                 ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                 RETURNING choice
             ), added AS (
                 SELECT k, n FROM unnest($6::text[], $7::bigint[]) AS p(k, n)
                 UNION ALL
                 SELECT choice, count(*) FROM keyed GROUP BY choice
             ), ",
    shard_update!("$5", "SELECT k, n FROM added"),
    " SELECT (SELECT count(*) FROM keyed), ",
    shard_columns!(),
    " FROM shard"
);

/// `INSERT_BATCH` for a batch without keys (a load tester's votes): the
/// same rows and answer, without the empty keyed INSERT and its grouping.
/// Alternating runs of oha at 256 connections answered 1.7-5.2 % more votes
/// with it (docs/benchmarks.md, "The access log").
const INSERT_PLAIN_BATCH: &str = concat!(
    batch_head!(),
    shard_update!(
        "$5",
        "SELECT k, n FROM unnest($6::text[], $7::bigint[]) AS p(k, n)"
    ),
    " SELECT 0::bigint, ",
    shard_columns!(),
    " FROM shard"
);

/// A committed batch: its shard's totals, the stored vote of each key when
/// some key had one already, and what its devices did.
type Stored = (ShardCopy, Option<Vec<(String, KeyedVote)>>, Devices);

/// Everything the answers need is read before COMMIT, so that nothing but
/// the COMMIT's own answer can fail once the votes are stored. `None`: the
/// statement committed outside the transaction (`begin_with`).
async fn insert_in_transaction(
    client: &Object,
    writer: Writer,
    batch_id: i64,
    rows: &BatchRows<'_>,
    deadline: Instant,
) -> Result<Option<Stored>, Step> {
    let (plain_keys, plain_counts) = counted(&rows.choices);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
        &batch_id,
        &rows.choices,
        &rows.referrals,
        &writer.prune_from,
        &writer.shard,
        &plain_keys,
        &plain_counts,
        &rows.keyed_choices,
        &rows.keyed_referrals,
        &rows.keys,
    ];
    let (sql, params) = if rows.keys.is_empty() {
        (INSERT_PLAIN_BATCH, &params[..7])
    } else {
        (INSERT_BATCH, &params[..])
    };
    let stmt = cancel_after(client, deadline, client.prepare_cached(sql))
        .await
        .map_err(Step::BeforeCommit)?;
    let (row, devices) = if rows.devices.is_empty() {
        let Some(row) = begin_with(client, &stmt, params, deadline).await? else {
            return Ok(None);
        };
        (row, Devices::default())
    } else {
        cancel_after(client, deadline, client.batch_execute("BEGIN"))
            .await
            .map_err(Step::BeforeCommit)?;
        // Devices first: the batch's own statement then returns this shard's
        // totals with their changes in it. A repeated attempt of a committed
        // batch finds its devices stored with their choices (nothing to do),
        // then conflicts on its batch row below, as any batch does.
        let mut devices = store_devices(client, writer, batch_id, rows, deadline)
            .await
            .map_err(Step::BeforeCommit)?;
        devices.copies.retain(|c| c.shard != writer.shard);
        let row = cancel_after(client, deadline, client.query_one(&stmt, params))
            .await
            .map_err(Step::BeforeCommit)?;
        (row, devices)
    };
    let new_keys = row
        .try_get::<_, i64>(0)
        .map_err(|e| Step::BeforeCommit(e.into()))?;
    let copy = shard_copy(&row, 1).map_err(Step::BeforeCommit)?;
    let keys = if rows.keys.is_empty() || new_keys == rows.keys.len() as i64 {
        None
    } else {
        // A new statement sees keys that other transactions committed while
        // this one waited on them: the vote each key is stored with now.
        Some(
            keyed_votes(client, &rows.keys, deadline)
                .await
                .map_err(Step::BeforeCommit)?,
        )
    };
    cancel_after(client, deadline, client.batch_execute("COMMIT"))
        .await
        .map_err(Step::Commit)?;
    Ok(Some((copy, keys, devices)))
}

/// BEGIN and the batch's statement sent together: one round trip where
/// they were two (each of the writer's round trips waits for a busy
/// runtime to poll its socket; one fewer took ~0.45 ms off a commit under
/// 256 connections). Were BEGIN to fail, the statement would run and
/// commit on its own, so its answer decides (`sent_together`), and with
/// no answer the batch is in doubt (fenced). Only a cancel request can
/// fail a BEGIN, so none is sent before BEGIN's answer is in: a server
/// that has not answered BEGIN by the deadline runs both whenever it gets
/// to them, in a transaction that rolls back once it finds the connection
/// closed.
async fn begin_with(
    client: &Object,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    deadline: Instant,
) -> Result<Option<tokio_postgres::Row>, Step> {
    let started = Instant::now();
    let begun = AtomicU8::new(UNANSWERED);
    let begin = async {
        let answer = client.batch_execute("BEGIN").await;
        begun.store(
            if answer.is_ok() { BEGUN } else { REFUSED },
            Ordering::Release,
        );
        answer
    };
    // join! polls `begin` first: BEGIN goes out before the statement.
    let mut both = std::pin::pin!(async { tokio::join!(begin, client.query_one(stmt, params)) });
    let answers = match tokio::time::timeout_at(deadline, &mut both).await {
        Ok(answers) => answers,
        Err(_) if begun.load(Ordering::Acquire) == UNANSWERED => {
            let waited = deadline.saturating_duration_since(started);
            return Err(Step::BeforeCommit(DbError::Timeout(waited)));
        }
        // BEGIN answered: the statement is cancelled as any is.
        Err(_) => match cancel_after(client, Instant::now(), async { Ok((&mut both).await) }).await
        {
            Ok(answers) => answers,
            Err(e) if begun.load(Ordering::Acquire) == REFUSED => return Err(Step::Commit(e)),
            Err(e) => return Err(Step::BeforeCommit(e)),
        },
    };
    let (begin, insert) = answers;
    match sent_together(begin, insert, |e| e.as_db_error().is_some()) {
        Together::InTransaction(row) => Ok(Some(row)),
        Together::Failed(e) => Err(Step::BeforeCommit(e.into())),
        Together::StoredAlone => Ok(None),
        Together::InDoubt(e) => Err(Step::Commit(e.into())),
    }
}

/// `begin_with`'s BEGIN: no answer yet, done, refused.
const UNANSWERED: u8 = 0;
const BEGUN: u8 = 1;
const REFUSED: u8 = 2;

/// What BEGIN and a statement sent with it came to.
#[derive(Debug, PartialEq)]
enum Together<T, E> {
    /// The statement ran in the transaction: COMMIT decides.
    InTransaction(T),
    /// Nothing is stored: the statement failed in the transaction, or the
    /// server refused it on its own.
    Failed(E),
    /// BEGIN failed, and the statement committed on its own.
    StoredAlone,
    /// BEGIN failed, and the statement's answer is lost: it may have
    /// committed on its own.
    InDoubt(E),
}

/// `answered`: the error is the server's answer (it refused the statement).
fn sent_together<T, E>(
    begin: Result<(), E>,
    insert: Result<T, E>,
    answered: impl Fn(&E) -> bool,
) -> Together<T, E> {
    match (begin, insert) {
        (Ok(()), Ok(row)) => Together::InTransaction(row),
        (Ok(()), Err(e)) => Together::Failed(e),
        (Err(_), Ok(_)) => Together::StoredAlone,
        (Err(_), Err(e)) if answered(&e) => Together::Failed(e),
        (Err(_), Err(e)) => Together::InDoubt(e),
    }
}

/// Each choice of `choices` once, with how often it occurs.
fn counted<'a>(choices: &[&'a str]) -> (Vec<&'a str>, Vec<i64>) {
    let (mut keys, mut counts): (Vec<&str>, Vec<i64>) = (Vec::new(), Vec::new());
    for choice in choices {
        match keys.iter().position(|k| k == choice) {
            Some(at) => counts[at] += 1,
            None => {
                keys.push(choice);
                counts.push(1);
            }
        }
    }
    (keys, counts)
}

/// A `vote_totals` row read as (shard, epoch, version, keys[], counts[])
/// from column `at` on.
fn shard_copy(row: &tokio_postgres::Row, at: usize) -> Result<ShardCopy, DbError> {
    let keys: Vec<String> = row.try_get(at + 3)?;
    let counts: Vec<i64> = row.try_get(at + 4)?;
    Ok(ShardCopy {
        shard: row.try_get(at)?,
        epoch: row.try_get(at + 1)?,
        version: row.try_get(at + 2)?,
        counts: keys
            .into_iter()
            .zip(counts)
            .map(|(key, n)| (key, u64::try_from(n).unwrap_or(0)))
            .collect(),
    })
}

/// Every shard of the totals, as one consistent read.
pub async fn totals(client: &Object, deadline: Instant) -> Result<Vec<ShardCopy>, DbError> {
    let sql = format!("SELECT {SHARD_COLUMNS} FROM vote_totals");
    let stmt = cancel_after(client, deadline, client.prepare_cached(&sql)).await?;
    let rows = cancel_after(client, deadline, client.query(&stmt, &[])).await?;
    rows.iter().map(|row| shard_copy(row, 0)).collect()
}

/// One shard of the totals as it is now.
pub async fn shard(client: &Object, shard: i32, deadline: Instant) -> Result<ShardCopy, DbError> {
    let sql = format!("SELECT {SHARD_COLUMNS} FROM vote_totals WHERE shard = $1");
    let stmt = cancel_after(client, deadline, client.prepare_cached(&sql)).await?;
    let row = cancel_after(client, deadline, client.query_one(&stmt, &[&shard])).await?;
    shard_copy(&row, 0)
}

/// The columns `shard_copy` reads, for a `vote_totals` row.
const SHARD_COLUMNS: &str = shard_columns!();

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedVote {
    /// The choice's key as stored (it may be outside the active poll).
    pub choice: String,
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
        let vote = KeyedVote {
            choice: row.try_get(1)?,
            batch_id: row.try_get(2)?,
        };
        found.push((row.try_get(0)?, vote));
    }
    Ok(found)
}

/// Upper bound for looking up one key's stored vote, waiting for a
/// connection included.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// The vote stored under `key`, if any (from the shared pool, bounded).
pub async fn stored_vote(
    pool: &deadpool_postgres::Pool,
    key: &str,
) -> Result<Option<KeyedVote>, DbError> {
    super::within(LOOKUP_TIMEOUT, async {
        let client = pool.get().await?;
        let deadline = Instant::now() + LOOKUP_TIMEOUT;
        let found = keyed_votes(&client, &[key], deadline).await?;
        Ok(found.into_iter().next().map(|(_, vote)| vote))
    })
    .await
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

/// Starts a new session in one transaction: deletes every vote with its
/// idempotency keys and batch ids, and the incident timeline (referral
/// partners stay); zeroes the totals in a new epoch; shows the results
/// again. Returns the new totals. Cancelled past `deadline`, so a reset
/// answered as failed never happens later; when only the COMMIT's answer
/// is missing, the caller compares `epoch` with the one before.
pub async fn reset(client: Object, deadline: Instant) -> Result<Vec<ShardCopy>, DbError> {
    let result = reset_in_transaction(&client, deadline).await;
    finish(client, result)
}

/// The session's epoch now.
pub async fn epoch(client: &Object, deadline: Instant) -> Result<i64, DbError> {
    let row = cancel_after(
        client,
        deadline,
        client.query_one("SELECT epoch FROM poll_state", &[]),
    )
    .await?;
    Ok(row.try_get(0)?)
}

async fn reset_in_transaction(client: &Object, deadline: Instant) -> Result<Vec<ShardCopy>, Step> {
    // vote_batches before votes: the order in which a batch's statement
    // locks them, so a reset and a batch never deadlock.
    let statements = "BEGIN;
        TRUNCATE vote_batches, votes, timeline_counts, timeline_processes;
        UPDATE poll_state
        SET epoch = greatest(epoch + 1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint),
            hidden = false;
        UPDATE vote_totals SET epoch = (SELECT epoch FROM poll_state),
                               version = version + 1, counts = '{}'";
    cancel_after(client, deadline, client.batch_execute(statements))
        .await
        .map_err(Step::BeforeCommit)?;
    let copies = totals(client, deadline).await.map_err(Step::BeforeCommit)?;
    cancel_after(client, deadline, client.batch_execute("COMMIT"))
        .await
        .map_err(Step::Commit)?;
    Ok(copies)
}

#[cfg(test)]
mod tests {
    use super::{Together, sent_together};

    /// An error is the server's answer when it says what the server refused.
    fn answered(e: &&str) -> bool {
        e.starts_with("refused")
    }

    #[test]
    fn begin_and_a_statement_sent_together_come_to_what_the_server_did() {
        type Answers = (Result<(), &'static str>, Result<u8, &'static str>);
        let cases: [(Answers, Together<u8, &str>); 6] = [
            ((Ok(()), Ok(1)), Together::InTransaction(1)),
            // In the transaction, which never commits without its COMMIT.
            ((Ok(()), Err("refused")), Together::Failed("refused")),
            ((Ok(()), Err("cut")), Together::Failed("cut")),
            // BEGIN failed: the statement ran on its own.
            ((Err("refused"), Ok(1)), Together::StoredAlone),
            (
                (Err("refused"), Err("refused too")),
                Together::Failed("refused too"),
            ),
            ((Err("refused"), Err("cut")), Together::InDoubt("cut")),
        ];
        for ((begin, insert), expected) in cases {
            let what = format!("{begin:?}, {insert:?}");
            assert_eq!(sent_together(begin, insert, answered), expected, "{what}");
        }
    }
}
