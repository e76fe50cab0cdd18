//! PersistenceWriter: the only writer of `votes`. Group commit: every vote
//! that arrives while one INSERT is in flight goes into the next single
//! INSERT, and each caller is answered only after its batch committed. It
//! also serialises resets and recounts with the commits, so VoteTally sees
//! batches, recounts and resets in exactly the order PostgreSQL applied them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, warn};

use super::tally::{Recount, TallyHandle};
use crate::db::{self, DbError};
use crate::metrics::Metrics;
use crate::poll::{Choice, Counts};

/// Mailbox size. Request path: callers wait up to `ENQUEUE_TIMEOUT` for room,
/// then get 503 — the queue never grows without bound.
pub const WRITER_QUEUE: usize = 16_384;
/// How long a caller waits for room in the mailbox.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most votes in one INSERT.
pub const MAX_BATCH: usize = 4096;
/// How long one INSERT (or check) may take before it counts as failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a batch keeps retrying a lost PostgreSQL before answering 503.
pub const RETRY_BUDGET: Duration = Duration::from_secs(3);
/// Safety net for a caller waiting on its answer (the writer answers well before).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a write was refused. Nothing refused was stored.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error("PostgreSQL not available")]
    Unavailable,
    #[error("vote writer overloaded")]
    Overloaded,
}

type Reply = oneshot::Sender<Result<(), WriteError>>;

enum WriterMsg {
    Vote {
        choice: Choice,
        referral: Option<String>,
        reply: Reply,
    },
    Reset {
        reply: Reply,
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
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let actor = PersistenceWriter {
            rx,
            recounts,
            pool,
            tally,
            metrics,
            next_batch_id: batch_id_base(),
        };
        (WriterHandle { tx }, tokio::spawn(actor.run()))
    }

    /// Stores one vote; returns once it is committed.
    pub async fn record(&self, choice: Choice, referral: Option<String>) -> Result<(), WriteError> {
        self.ask(|reply| WriterMsg::Vote {
            choice,
            referral,
            reply,
        })
        .await
    }

    /// Deletes every vote and resets the live counts.
    pub async fn reset(&self) -> Result<(), WriteError> {
        self.ask(|reply| WriterMsg::Reset { reply }).await
    }

    /// Messages waiting in the mailbox.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    async fn ask(&self, msg: impl FnOnce(Reply) -> WriterMsg) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send_timeout(msg(reply), ENQUEUE_TIMEOUT)
            .await
            .map_err(|_| WriteError::Overloaded)?;
        match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(WriteError::Unavailable),
            Err(_) => {
                error!("vote writer did not answer within {REPLY_TIMEOUT:?}");
                Err(WriteError::Unavailable)
            }
        }
    }
}

struct PendingVote {
    choice: Choice,
    referral: Option<String>,
    reply: Reply,
}

struct PersistenceWriter {
    rx: mpsc::Receiver<WriterMsg>,
    recounts: mpsc::Receiver<Recount>,
    pool: Pool,
    tally: TallyHandle,
    metrics: Arc<Metrics>,
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
                            WriterMsg::Vote { choice, referral, reply } => {
                                votes.push(PendingVote { choice, referral, reply });
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
                Some(recount) = self.recounts.recv() => self.recount(recount).await,
            }
        }
    }

    /// Commits `votes` as one INSERT, tells the tally, then answers every caller.
    async fn commit(&mut self, votes: &mut Vec<PendingVote>) {
        if votes.is_empty() {
            return;
        }
        let batch_id = self.next_batch_id;
        self.next_batch_id = self.next_batch_id.wrapping_add(1);
        let started = Instant::now();
        let result = self.insert_with_retry(batch_id, votes).await;
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(votes.len() as f64);

        match result {
            Ok(()) => {
                let mut delta = Counts::default();
                for vote in votes.iter() {
                    delta.add(vote.choice, 1);
                }
                for choice in Choice::ALL {
                    let n = delta.get(choice);
                    if n > 0 {
                        self.metrics
                            .votes
                            .with_label_values(&[choice.key()])
                            .inc_by(n);
                    }
                }
                // Wait for the tally so that a caller who reads /votes after
                // its 200 sees its own vote.
                self.tally.apply(delta).await;
                for vote in votes.drain(..) {
                    let _ = vote.reply.send(Ok(()));
                }
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

    /// Retries a lost connection for `RETRY_BUDGET`. Before re-sending a batch
    /// that may have reached the server, it checks whether the batch landed,
    /// so a vote is never stored twice.
    async fn insert_with_retry(&self, batch_id: i64, votes: &[PendingVote]) -> Result<(), DbError> {
        let choices: Vec<&str> = votes.iter().map(|v| v.choice.key()).collect();
        let referrals: Vec<Option<&str>> = votes.iter().map(|v| v.referral.as_deref()).collect();
        let deadline = Instant::now() + RETRY_BUDGET;
        let mut backoff = Duration::from_millis(50);
        let mut maybe_sent = false;
        loop {
            let attempt = db::within(ATTEMPT_TIMEOUT, async {
                let client = self.pool.get().await?;
                if maybe_sent && db::votes::batch_committed(&client, batch_id).await? {
                    return Ok(());
                }
                maybe_sent = true;
                db::votes::insert_batch(&client, batch_id, &choices, &referrals).await
            })
            .await;
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() + backoff < deadline => {
                    warn!(error = %e, ?backoff, "vote batch failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn reset(&mut self) -> Result<(), WriteError> {
        let result = db::within(ATTEMPT_TIMEOUT, async {
            let client = self.pool.get().await?;
            db::votes::delete_all(&client).await
        })
        .await;
        match result {
            Ok(()) => {
                self.tally.rebuild(Counts::default(), true).await;
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "reset failed");
                Err(WriteError::Unavailable)
            }
        }
    }

    async fn recount(&mut self, recount: Recount) {
        let result = db::within(ATTEMPT_TIMEOUT, async {
            let client = self.pool.get().await?;
            db::votes::counts(&client).await
        })
        .await;
        match result {
            Ok(counts) => self.tally.rebuild(counts, recount.force).await,
            // The tally asks again on its next tick while it is out of step.
            Err(e) => warn!(error = %e, "recount failed"),
        }
    }
}

/// A starting batch id unlikely to collide with another replica's: batch ids
/// only have to be unique among batches whose commit outcome was uncertain.
fn batch_id_base() -> i64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos ^ (u64::from(std::process::id()) << 40);
    (mixed >> 1) as i64
}
