//! PersistenceWriter: the only writer of `votes`. Group commit: every vote
//! that arrives while one INSERT is in flight goes into the next single
//! INSERT, and each caller is answered only after its batch committed. It
//! also serialises resets and recounts with the commits, so VoteTally sees
//! batches, recounts and resets in exactly the order PostgreSQL applied them.
//! Exactly once (docs/contract.md, exactly-once votes): a batch's id and its votes' idempotency keys
//! are unique in PostgreSQL, so a retry, a repeat or another replica
//! conflicts instead of storing twice, and no caller is answered before the
//! writer knows whether its vote is stored.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, warn};

use super::mailbox::{self, Unanswered};
use super::tally::{Recount, TallyHandle};
use crate::db::{self, DbError, MeteredPool as Pool};
use crate::metrics::Metrics;
use crate::poll::{Choice, Counts, Poll};
use crate::totals::{self, ShardCopy};

/// Mailbox size. Request path: callers wait up to `ENQUEUE_TIMEOUT` for room,
/// then get 503 — the queue never grows without bound.
pub const WRITER_QUEUE: usize = 16_384;
/// How long a caller waits for room in the mailbox.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(2);
/// A vote that waited longer in the mailbox (PostgreSQL stalled meanwhile)
/// is answered 503 unstored, which bounds how long a caller can wait.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Most votes in one INSERT.
pub const MAX_BATCH: usize = 4096;
/// How long one INSERT (or check) may take before it is cancelled.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a batch keeps retrying a lost PostgreSQL before answering 503.
pub const RETRY_BUDGET: Duration = Duration::from_secs(3);
/// Everything one batch may take: retries (the last one starting within
/// `RETRY_BUDGET`), then settling an uncertain outcome.
pub const COMMIT_BUDGET: Duration = Duration::from_secs(9);
/// Safety net for a caller waiting on its answer (the writer answers well before).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a write was refused. Nothing refused was stored.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error("PostgreSQL not available")]
    Unavailable,
    #[error("vote writer overloaded")]
    Overloaded,
    #[error("idempotency key already used for another vote")]
    KeyReused,
}

/// How an accepted vote was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Committed now, and counted.
    Stored,
    /// A vote with the same idempotency key and choice was stored before;
    /// nothing was counted again.
    Replayed,
    /// The device's vote moved from this choice (its key) to the new one:
    /// one less there, one more here, the total unchanged.
    Changed(String),
    /// The device voted for the same choice again: nothing changed.
    Unchanged,
}

/// One vote for the writer.
#[derive(Debug, Clone)]
pub struct NewVote {
    pub choice: Choice,
    pub referral: Option<String>,
    /// The client's idempotency key, already validated.
    pub key: Option<String>,
    /// The voting device (`ONE_VOTE_PER_DEVICE`), from a verified cookie or
    /// just issued: its later votes change its choice.
    pub device: Option<String>,
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

enum WriterMsg {
    Vote {
        vote: NewVote,
        enqueued: Instant,
        reply: Reply<Recorded>,
    },
    Reset {
        reply: Reply<()>,
    },
}

/// Cloneable handle to the PersistenceWriter.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriterMsg>,
}

impl WriterHandle {
    pub fn spawn(
        pool: Pool,
        tally: TallyHandle,
        recounts: mpsc::Receiver<Recount>,
        poll: Arc<Poll>,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let first_batch = batch_id_base();
        let actor = PersistenceWriter {
            rx,
            recounts,
            pool,
            tally,
            poll,
            metrics,
            at: db::votes::Writer {
                shard: (first_batch % i64::from(totals::SHARDS)) as i32,
                first_batch,
            },
            next_batch_id: first_batch,
        };
        (WriterHandle { tx }, tokio::spawn(actor.run()))
    }

    /// Stores one vote; returns once the writer knows it is committed.
    pub async fn record(&self, vote: NewVote) -> Result<Recorded, WriteError> {
        let enqueued = Instant::now();
        let msg = |reply| WriterMsg::Vote {
            vote,
            enqueued,
            reply,
        };
        self.ask(VOTE_REPLY_TIMEOUT, msg).await
    }

    /// Deletes every vote and resets the live counts.
    pub async fn reset(&self) -> Result<(), WriteError> {
        self.ask(REPLY_TIMEOUT, |reply| WriterMsg::Reset { reply })
            .await
    }

    /// Messages waiting in the mailbox.
    pub fn queue_depth(&self) -> usize {
        super::mailbox::depth(&self.tx)
    }

    async fn ask<T>(
        &self,
        limit: Duration,
        msg: impl FnOnce(Reply<T>) -> WriterMsg,
    ) -> Result<T, WriteError> {
        match mailbox::ask(&self.tx, ENQUEUE_TIMEOUT, Some(limit), msg).await {
            Ok(result) => result,
            Err(Unanswered::Full) => Err(WriteError::Overloaded),
            Err(Unanswered::Gone) => Err(WriteError::Unavailable),
            Err(Unanswered::Late) => {
                error!("vote writer did not answer within {limit:?}");
                Err(WriteError::Unavailable)
            }
        }
    }
}

/// Safety net for a vote's caller, past the writer's own bound (mailbox,
/// batch, tally): the writer always answers first, so a caller is never told
/// 503 here about a vote that could still commit.
pub const VOTE_REPLY_TIMEOUT: Duration = QUEUE_WAIT
    .saturating_add(COMMIT_BUDGET)
    .saturating_add(super::tally::APPLY_TIMEOUT)
    .saturating_add(Duration::from_secs(1));

struct PendingVote {
    vote: NewVote,
    reply: Reply<Recorded>,
}

/// What a committed batch did: who holds its keys, this writer's shard's
/// totals after it (`None`: not known, the tally recounts), and what its
/// device votes did (`None`: not known, they are answered 503).
struct Settled {
    owners: KeyOwners,
    copy: Option<ShardCopy>,
    devices: Option<db::votes::Devices>,
}

/// Who holds each idempotency key of a committed batch.
enum KeyOwners {
    /// Every key was new: this batch stored each key's first vote.
    AllNew,
    /// The stored vote of each key; a missing key was deleted by a reset since.
    Found(HashMap<String, db::votes::KeyedVote>),
    /// Could not be read: the keyed votes are answered 503 and their clients
    /// retry with the same keys, which settles them.
    Unknown,
}

struct PersistenceWriter {
    rx: mpsc::Receiver<WriterMsg>,
    recounts: mpsc::Receiver<Recount>,
    pool: Pool,
    tally: TallyHandle,
    /// Names the choices in PostgreSQL and in the `votes_total` labels.
    poll: Arc<Poll>,
    metrics: Arc<Metrics>,
    /// This process's shard of the totals and first batch id.
    at: db::votes::Writer,
    next_batch_id: i64,
}

impl PersistenceWriter {
    async fn run(mut self) {
        let mut inbox = Vec::with_capacity(MAX_BATCH);
        let mut votes = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                // Votes first: a recount can wait for the batch in hand.
                biased;
                n = self.rx.recv_many(&mut inbox, MAX_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for msg in inbox.drain(..) {
                        match msg {
                            WriterMsg::Vote { vote, enqueued, reply } => {
                                self.admit(&mut votes, PendingVote { vote, reply }, enqueued);
                            }
                            WriterMsg::Reset { reply } => {
                                // Votes queued before the reset are committed first, then deleted.
                                self.commit(&mut votes).await;
                                let _ = reply.send(self.reset().await);
                            }
                        }
                    }
                    self.commit(&mut votes).await;
                }
                Some(Recount) = self.recounts.recv() => self.recount().await,
            }
        }
    }

    /// Takes a vote into the next batch, unless its caller has gone or has
    /// waited so long that it could give up before the batch is settled.
    fn admit(&self, votes: &mut Vec<PendingVote>, pending: PendingVote, enqueued: Instant) {
        if pending.reply.is_closed() {
            return;
        }
        if enqueued.elapsed() > QUEUE_WAIT {
            self.metrics.write_failures.inc();
            let _ = pending.reply.send(Err(WriteError::Unavailable));
            return;
        }
        votes.push(pending);
    }

    /// Commits `votes` as one transaction per round, tells the tally, then
    /// answers every caller. A device voting twice in one batch (two taps
    /// in quick succession) has its later vote in the next round, so each
    /// is applied in the order it came.
    async fn commit(&mut self, votes: &mut Vec<PendingVote>) {
        while !votes.is_empty() {
            let later = repeated_devices(votes);
            self.commit_round(votes).await;
            *votes = later;
        }
    }

    async fn commit_round(&mut self, votes: &mut Vec<PendingVote>) {
        if votes.is_empty() {
            return;
        }
        let batch_id = self.next_batch_id;
        self.next_batch_id = self.next_batch_id.wrapping_add(1);
        let started = Instant::now();
        let (rows, leaders) = batch_rows(&self.poll, votes);
        let result = self.store(batch_id, &rows).await;
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(votes.len() as f64);

        match result {
            Ok(settled) => self.answer(votes, &leaders, settled, batch_id).await,
            Err(e) => {
                error!(error = %e, votes = votes.len(), "batch not committed, answering 503");
                self.metrics.write_failures.inc_by(votes.len() as u64);
                for vote in votes.drain(..) {
                    let _ = vote.reply.send(Err(WriteError::Unavailable));
                }
            }
        }
    }

    /// Answers every vote of a committed batch (with its shard's totals
    /// after it, when known); counts only the stored ones.
    async fn answer(
        &mut self,
        votes: &mut Vec<PendingVote>,
        leaders: &[bool],
        settled: Settled,
        batch_id: i64,
    ) {
        let Settled {
            owners,
            copy,
            devices,
        } = settled;
        let outcomes = outcomes(
            &self.poll,
            votes,
            leaders,
            &owners,
            devices.as_ref(),
            batch_id,
        );
        let mut delta = Counts::default();
        // Changes: what they add and take off (a choice no longer in the
        // poll is not shown, so taking from it shows nothing).
        let (mut moved_in, mut moved_out) = (Counts::default(), Counts::default());
        for (pending, outcome) in votes.iter().zip(&outcomes) {
            match outcome {
                Ok(Recorded::Stored) => delta.add(pending.vote.choice, 1),
                Ok(Recorded::Replayed) => self.metrics.vote_replays.inc(),
                Ok(Recorded::Changed(old)) => {
                    moved_in.add(pending.vote.choice, 1);
                    if let Some(old) = self.poll.choice(old) {
                        moved_out.add(old, 1);
                    }
                }
                Ok(Recorded::Unchanged) | Err(_) => {}
            }
        }
        for choice in self.poll.choices() {
            let n = delta.get(choice);
            if n > 0 {
                self.metrics
                    .votes
                    .with_label_values(&[self.poll.key(choice)])
                    .inc_by(n);
            }
        }
        // votes_total (above) counts votes cast, and a change is none; this
        // replica's view shows what changes moved in, and out below.
        for choice in self.poll.choices() {
            delta.add(choice, moved_in.get(choice));
        }
        // The shards a change took its old choice off, then this writer's.
        let copies = match copy {
            Some(own) => {
                let mut copies = devices.map(|d| d.copies).unwrap_or_default();
                copies.push(own);
                copies
            }
            None => Vec::new(),
        };
        // Wait for the tally so that a caller who reads /votes after
        // its 200 sees its own vote.
        self.tally.apply_batch(copies, delta, moved_out).await;
        for (pending, outcome) in votes.drain(..).zip(outcomes) {
            let _ = pending.reply.send(outcome);
        }
    }

    /// Stores a batch exactly once and finds out who holds its keys. Retries
    /// a lost PostgreSQL for `RETRY_BUDGET`; a retry conflicts with, or waits
    /// for, an earlier attempt of the same batch. When an attempt's outcome
    /// stayed unknown, the batch is fenced before it is answered as failed,
    /// so it cannot commit later. With the owners come the shard's totals
    /// after the commit; when an earlier attempt made it (its answer was
    /// lost), both are read afterwards, and the totals as they are by then
    /// (any committed state is a valid copy).
    async fn store(
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

    /// Starts a new session (db::votes::reset) and writes its zeroed totals
    /// to the tally. A reset whose COMMIT answer was lost is settled by the
    /// epoch: moved on means it happened, and it is reported done.
    async fn reset(&mut self) -> Result<(), WriteError> {
        let deadline = Instant::now() + ATTEMPT_TIMEOUT;
        let mut before = None;
        let result = async {
            let client = db::votes::client(&self.pool, deadline).await?;
            before = Some(db::votes::epoch(&client, deadline).await?);
            db::votes::reset(client, deadline).await
        }
        .await;
        let copies = match (result, before) {
            (Ok(copies), _) => Ok(copies),
            (Err(e), Some(before)) if db::votes::may_have_committed(&e) => {
                self.settle_reset(before).await.ok_or(e)
            }
            (Err(e), _) => Err(e),
        };
        match copies {
            Ok(copies) => {
                self.tally.rebuild(copies).await;
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "reset failed");
                Err(WriteError::Unavailable)
            }
        }
    }

    /// The new totals if a reset in doubt happened (the epoch moved on).
    async fn settle_reset(&self, before: i64) -> Option<Vec<ShardCopy>> {
        let deadline = Instant::now() + ATTEMPT_TIMEOUT;
        let settled = async {
            let client = db::votes::client(&self.pool, deadline).await?;
            let now = db::votes::epoch(&client, deadline).await?;
            if now == before {
                return Ok(None);
            }
            db::votes::totals(&client, deadline).await.map(Some)
        }
        .await;
        settled
            .inspect_err(|e| error!(error = %e, "reset outcome unknown"))
            .ok()
            .flatten()
    }

    async fn recount(&mut self) {
        let deadline = Instant::now() + ATTEMPT_TIMEOUT;
        let result = async {
            let client = db::votes::client(&self.pool, deadline).await?;
            db::votes::totals(&client, deadline).await
        }
        .await;
        match result {
            Ok(copies) => self.tally.rebuild(copies).await,
            // The tally asks again on its next check while it is out of step.
            Err(e) => warn!(error = %e, "recount failed"),
        }
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

/// Each vote's answer once its batch committed. An unkeyed vote was stored;
/// a keyed one was stored if it led its key in this batch and the key's
/// stored vote is this batch's, replayed if the stored vote has its choice,
/// and refused if it has another.
fn outcomes<'a>(
    poll: &'a Poll,
    votes: &'a [PendingVote],
    leaders: &[bool],
    owners: &'a KeyOwners,
    devices: Option<&db::votes::Devices>,
    batch_id: i64,
) -> Vec<Result<Recorded, WriteError>> {
    // The stored choice's key of each key and whether this batch stored it.
    let mut held: HashMap<&str, Option<(&str, bool)>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(votes.len());
    for (pending, &leader) in votes.iter().zip(leaders) {
        let choice = pending.vote.choice;
        if let Some(device) = pending.vote.device.as_deref() {
            use db::votes::DeviceOutcome;
            let outcome = devices.and_then(|d| d.outcomes.get(device));
            outcomes.push(match outcome {
                Some(DeviceOutcome::New) => Ok(Recorded::Stored),
                Some(DeviceOutcome::Same) => Ok(Recorded::Unchanged),
                Some(DeviceOutcome::Changed(old)) => Ok(Recorded::Changed(old.clone())),
                Some(DeviceOutcome::Replayed) => Ok(Recorded::Replayed),
                Some(DeviceOutcome::KeyReused) => Err(WriteError::KeyReused),
                None => Err(WriteError::Unavailable),
            });
            continue;
        }
        let Some(key) = pending.vote.key.as_deref() else {
            outcomes.push(Ok(Recorded::Stored));
            continue;
        };
        let owner = if leader {
            let owner = match owners {
                KeyOwners::AllNew => Some((poll.key(choice), true)),
                KeyOwners::Found(found) => found
                    .get(key)
                    .map(|v| (v.choice.as_str(), v.batch_id == Some(batch_id))),
                KeyOwners::Unknown => None,
            };
            held.insert(key, owner);
            owner
        } else {
            held.get(key).copied().flatten()
        };
        outcomes.push(match owner {
            None => Err(WriteError::Unavailable),
            Some((stored, _)) if stored != poll.key(choice) => Err(WriteError::KeyReused),
            Some((_, ours)) if ours && leader => Ok(Recorded::Stored),
            Some(_) => Ok(Recorded::Replayed),
        });
    }
    outcomes
}

/// The batch as columns: unkeyed votes, and the first vote of each key
/// (a "leader"; `true` in the returned flags). Later votes with a key
/// already in the batch are answered from their leader's outcome.
fn batch_rows<'a>(
    poll: &'a Poll,
    votes: &'a [PendingVote],
) -> (db::votes::BatchRows<'a>, Vec<bool>) {
    let mut rows = db::votes::BatchRows::default();
    let mut leaders = Vec::with_capacity(votes.len());
    let mut seen = HashSet::new();
    let mut keyed = Vec::new();
    for pending in votes {
        let vote = &pending.vote;
        if let Some(device) = vote.device.as_deref() {
            // One per device in a round (see `repeated_devices`).
            rows.devices.push(db::votes::DeviceVote {
                device,
                choice: poll.key(vote.choice),
                referral: vote.referral.as_deref(),
                key: vote.key.as_deref(),
            });
            leaders.push(true);
            continue;
        }
        let leader = match vote.key.as_deref() {
            None => {
                rows.choices.push(poll.key(vote.choice));
                rows.referrals.push(vote.referral.as_deref());
                true
            }
            Some(key) => {
                let first = seen.insert(key);
                if first {
                    keyed.push((key, vote));
                }
                first
            }
        };
        leaders.push(leader);
    }
    keyed.sort_unstable_by_key(|(key, _)| *key);
    rows.devices.sort_unstable_by_key(|d| d.device);
    for (key, vote) in keyed {
        rows.keys.push(key);
        rows.keyed_choices.push(poll.key(vote.choice));
        rows.keyed_referrals.push(vote.referral.as_deref());
    }
    (rows, leaders)
}

/// Takes out of `votes` every vote of a device that already has one
/// earlier in `votes`, in order: they go into the next round.
fn repeated_devices(votes: &mut Vec<PendingVote>) -> Vec<PendingVote> {
    if votes.iter().all(|p| p.vote.device.is_none()) {
        return Vec::new();
    }
    let mut seen = HashSet::new();
    let (mut now, mut later) = (Vec::with_capacity(votes.len()), Vec::new());
    for pending in votes.drain(..) {
        match pending.vote.device.as_deref() {
            Some(device) if !seen.insert(device.to_owned()) => later.push(pending),
            _ => now.push(pending),
        }
    }
    *votes = now;
    later
}

/// A random starting batch id, so replicas started together (every container
/// is PID 1) do not share ids. `RandomState` is seeded from the OS's
/// randomness; hashing the clock only spreads it.
fn batch_id_base() -> i64 {
    let seed = RandomState::new().hash_one(std::time::SystemTime::now());
    // Non-negative, with room to count up without wrapping.
    (seed >> 2) as i64
}

#[cfg(test)]
mod tests;
