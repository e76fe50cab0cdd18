//! PersistenceWriter: the only writer of `votes`. Group commit: every vote
//! that arrives while one INSERT is in flight goes into the next single
//! INSERT, and each caller is answered only after its batch committed. It
//! also serialises resets and recounts with the commits, so VoteTally sees
//! batches, recounts and resets in exactly the order PostgreSQL applied them.
//! Exactly once (docs/contract.md, exactly-once votes): a batch's id and its votes' idempotency keys
//! are unique in PostgreSQL, so a retry, a repeat or another replica
//! conflicts instead of storing twice, and no caller is answered before the
//! writer knows whether its vote is stored.
//! The actor is here; the batch's pure steps (columns, rounds, answers)
//! are in `writer/batch.rs`, storing it exactly once in `writer/store.rs`.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, warn};

use super::mailbox::{self, Unanswered};
use super::tally::{Recount, TallyHandle};
use crate::db::{self, MeteredPool as Pool};
use crate::metrics::Metrics;
use crate::poll::{Choice, Counts, Poll};
use crate::totals::{self, ShardCopy};
use batch::{batch_id_base, batch_rows, next_round, outcomes};
use store::Settled;

mod batch;
mod store;

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
/// Most votes of one peer address in one round (`next_round`). A round's
/// votes wait for it to commit, so with one address's 5,000 votes in one
/// round a phone's vote waited ~150 ms behind it; in rounds of this many a
/// single address still fills the batches that keep PostgreSQL busy.
pub const PEER_SHARE: usize = 512;
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
    /// Where it came from: one address's votes go in rounds of `PEER_SHARE`.
    pub peer: Option<IpAddr>,
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

enum WriterMsg {
    Vote(PendingVote),
    Reset { reply: Reply<()> },
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
                prune_from: first_batch,
            },
            next_batch_id: first_batch,
        };
        (WriterHandle { tx }, tokio::spawn(actor.run()))
    }

    /// Stores one vote; returns once the writer knows it is committed.
    pub async fn record(&self, vote: NewVote) -> Result<Recorded, WriteError> {
        let enqueued = Instant::now();
        let msg = |reply| {
            WriterMsg::Vote(PendingVote {
                vote,
                enqueued,
                reply,
            })
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
    enqueued: Instant,
    reply: Reply<Recorded>,
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
    /// Commits the votes in the order they came, in rounds (`next_round`);
    /// between rounds it takes what came meanwhile, so a new address's vote
    /// joins the next round. A reset waits until every vote before it is
    /// committed, and every vote after it waits for the reset.
    async fn run(mut self) {
        let mut inbox = Vec::with_capacity(MAX_BATCH);
        // Taken from the mailbox, in order, up to a reset.
        let mut mail = VecDeque::new();
        let mut queued = Vec::new();
        loop {
            take_votes(&mut mail, &mut queued);
            if queued.is_empty() {
                if let Some(WriterMsg::Reset { reply }) = mail.pop_front() {
                    let _ = reply.send(self.reset().await);
                    continue;
                }
                tokio::select! {
                    // Votes first: a recount can wait for the batch in hand.
                    biased;
                    n = self.rx.recv_many(&mut inbox, MAX_BATCH) => {
                        if n == 0 {
                            break;
                        }
                        mail.extend(inbox.drain(..));
                    }
                    Some(Recount) = self.recounts.recv() => self.recount().await,
                }
                continue;
            }
            // Bounded: what waits here and in the mailbox stays within two
            // mailboxes; beyond that, callers wait for room (`ENQUEUE_TIMEOUT`).
            let room = WRITER_QUEUE.saturating_sub(queued.len() + mail.len());
            while inbox.len() < room.min(MAX_BATCH) {
                match self.rx.try_recv() {
                    Ok(msg) => inbox.push(msg),
                    Err(_) => break,
                }
            }
            mail.extend(inbox.drain(..));
            take_votes(&mut mail, &mut queued);
            let later = self.round(&mut queued);
            self.commit_round(&mut queued).await;
            queued = later;
        }
    }

    /// Leaves in `queued` the next round's votes and returns the rest. A
    /// vote whose caller has gone is dropped; one that waited so long that
    /// its caller could give up before the round is settled is answered
    /// 503 unstored.
    fn round(&self, queued: &mut Vec<PendingVote>) -> Vec<PendingVote> {
        let now = Instant::now();
        let gone_or_late = |p: &mut PendingVote| {
            p.reply.is_closed() || now.duration_since(p.enqueued) > QUEUE_WAIT
        };
        for pending in queued.extract_if(.., gone_or_late) {
            if !pending.reply.is_closed() {
                self.metrics.write_failures.inc();
                let _ = pending.reply.send(Err(WriteError::Unavailable));
            }
        }
        next_round(queued, PEER_SHARE)
    }

    /// Commits one round as one transaction, tells the tally, then answers
    /// every caller.
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
            Ok(settled) => {
                // Its statement pruned every id of ours below it.
                self.at.prune_from = batch_id;
                self.answer(votes, &leaders, settled, batch_id).await
            }
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

/// Moves the votes at the front of `mail` to `queued`, up to a reset.
fn take_votes(mail: &mut VecDeque<WriterMsg>, queued: &mut Vec<PendingVote>) {
    while let Some(msg) = mail.pop_front() {
        match msg {
            WriterMsg::Vote(pending) => queued.push(pending),
            reset @ WriterMsg::Reset { .. } => {
                mail.push_front(reset);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests;
