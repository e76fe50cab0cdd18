//! How a batch is stored exactly once: attempts retried while PostgreSQL
//! is lost, a batch in doubt fenced, and the keys and totals of a batch an
//! earlier attempt committed read back.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, warn};

use super::batch::KeyOwners;
use super::{ATTEMPT_TIMEOUT, COMMIT_BUDGET, PersistenceWriter, RETRY_BUDGET};
use crate::db::{self, DbError};
use crate::totals::ShardCopy;

/// What a committed batch did: who holds its keys, this writer's shard's
/// totals after it (`None`: not known, the tally recounts), and what its
/// device votes did (`None`: not known, they are answered 503).
pub(super) struct Settled {
    pub(super) owners: KeyOwners,
    pub(super) copy: Option<ShardCopy>,
    pub(super) devices: Option<db::votes::Devices>,
}

impl PersistenceWriter {
    /// Stores a batch exactly once and finds out who holds its keys. Retries
    /// a lost PostgreSQL for `RETRY_BUDGET`; a retry conflicts with, or waits
    /// for, an earlier attempt of the same batch. When an attempt's outcome
    /// stayed unknown, the batch is fenced before it is answered as failed,
    /// so it cannot commit later. With the owners come the shard's totals
    /// after the commit; when an earlier attempt made it (its answer was
    /// lost), both are read afterwards, and the totals as they are by then
    /// (any committed state is a valid copy).
    pub(super) async fn store(
        &self,
        batch_id: i64,
        rows: &db::votes::BatchRows<'_>,
    ) -> Result<Settled, DbError> {
        let started = Instant::now();
        let settle_by = started + COMMIT_BUDGET - db::votes::CANCEL_GRACE;
        // Set by any attempt that may have reached the server and committed.
        let in_doubt = &AtomicBool::new(false);
        let at = self.at;
        let inserted = retry(
            "vote batch",
            started + RETRY_BUDGET,
            started + RETRY_BUDGET + ATTEMPT_TIMEOUT,
            |deadline| async move {
                let client = db::votes::client(&self.pool, deadline).await?;
                let inserted = db::votes::insert_batch(client, at, batch_id, rows, deadline).await;
                if inserted.as_ref().is_err_and(db::votes::may_have_committed) {
                    in_doubt.store(true, Ordering::Relaxed);
                }
                inserted
            },
        )
        .await;
        let inserted = match inserted {
            Ok(inserted) => inserted,
            Err(e) if !in_doubt.load(Ordering::Relaxed) => return Err(e),
            Err(e) => {
                self.metrics.batches_fenced.inc();
                let fenced = retry("batch fence", settle_by, settle_by, |deadline| async move {
                    let client = db::votes::client(&self.pool, deadline).await?;
                    db::votes::fence_batch(&client, batch_id, deadline).await
                })
                .await
                .inspect_err(|_| error!(batch_id, "batch outcome unknown: it may be stored"))?;
                if fenced {
                    return Err(e);
                }
                db::votes::Inserted::Before
            }
        };
        match inserted {
            db::votes::Inserted::Now {
                copy,
                keys,
                devices,
            } => Ok(Settled {
                owners: match keys {
                    None => KeyOwners::AllNew,
                    Some(found) => KeyOwners::Found(found.into_iter().collect()),
                },
                copy: Some(copy),
                devices: Some(devices),
            }),
            db::votes::Inserted::Before => {
                let (owners, copy) = self.read_back(rows, settle_by).await;
                Ok(Settled {
                    owners,
                    // What the devices changed on other shards is not known
                    // here: the tally recounts every shard instead.
                    copy: copy.filter(|_| rows.devices.is_empty()),
                    // Their outcomes are not known either: their clients
                    // retry, and find their vote stored (unchanged or replayed).
                    devices: None,
                })
            }
        }
    }

    /// Who holds the keys of a batch that an earlier attempt committed, and
    /// its shard's totals now. A failure here is not the batch's: its
    /// unkeyed votes are answered as stored, its keyed ones 503 (their
    /// clients retry with the same keys, which settles them), and without
    /// totals the tally asks for a recount.
    async fn read_back(
        &self,
        rows: &db::votes::BatchRows<'_>,
        settle_by: Instant,
    ) -> (KeyOwners, Option<ShardCopy>) {
        let shard = self.at.shard;
        let copy = retry(
            "totals read-back",
            settle_by,
            settle_by,
            |deadline| async move {
                let client = db::votes::client(&self.pool, deadline).await?;
                db::votes::shard(&client, shard, deadline).await
            },
        )
        .await
        .inspect_err(|e| warn!(error = %e, "committed batch: could not read its totals"))
        .ok();
        if rows.keys.is_empty() {
            return (KeyOwners::AllNew, copy);
        }
        let found = retry("key lookup", settle_by, settle_by, |deadline| async move {
            let client = db::votes::client(&self.pool, deadline).await?;
            db::votes::keyed_votes(&client, &rows.keys, deadline).await
        })
        .await;
        let owners = match found {
            Ok(found) => KeyOwners::Found(found.into_iter().collect()),
            Err(e) => {
                error!(error = %e, "committed batch: could not read its idempotency keys");
                KeyOwners::Unknown
            }
        };
        (owners, copy)
    }
}

/// Runs `attempt` with backoff until it succeeds or no retry can start
/// before `start_by`. Each attempt gets `ATTEMPT_TIMEOUT`, cut at `end_by`.
async fn retry<T, F, Fut>(
    what: &str,
    start_by: Instant,
    end_by: Instant,
    mut attempt: F,
) -> Result<T, DbError>
where
    F: FnMut(Instant) -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        let deadline = (Instant::now() + ATTEMPT_TIMEOUT).min(end_by);
        match attempt(deadline).await {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() + backoff < start_by => {
                warn!(error = %e, ?backoff, "{what} failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}
