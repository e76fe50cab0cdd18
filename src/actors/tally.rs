//! VoteTally: owns this replica's view of the live counts and keeps Redis in
//! step. The PersistenceWriter hands it every committed batch (its shard's
//! totals as committed, and what it added), and every read of all totals
//! (a recount, a reset) in commit order. A batch is shown at once, then its
//! copy goes to Redis, whose sum of copies is shown next; a rebuild writes
//! every shard's copy. Copies never add (totals.rs), so nothing here can
//! count a vote twice. `RedisSync` decides when to rebuild (no I/O); this
//! file acts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::mailbox;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::poll::{Counts, CountsView, Snapshot};
use crate::totals::{self, ShardCopy};
use redis_sync::{Check, Decision, Reading, RedisSync};

mod redis_sync;

/// Mailbox size. Only the writer sends here and it awaits room, which slows
/// commits down instead of dropping a count.
pub const TALLY_QUEUE: usize = 256;
/// How often the tally checks that Redis still holds the copies.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Upper bound for the writer waiting on the tally.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Recount requests waiting. Notification policy: `try_send`; a full queue
/// means a recount is pending already, and the next check asks again if needed.
pub const RECOUNT_QUEUE: usize = 4;

/// Asks the PersistenceWriter to read every shard's totals and hand them
/// back through `TallyHandle::rebuild`, in commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recount;

/// The tally's end of the recount channel. It runs against the graph
/// (tally → writer), so it can only `try_send`: the tally never waits on the writer.
pub struct RecountRequests(mpsc::Sender<Recount>);

impl RecountRequests {
    /// Queues a recount; false when the queue is full (one is pending already).
    pub fn try_request(&self) -> bool {
        self.0.try_send(Recount).is_ok()
    }
}

/// The recount channel: the tally's sending end and the writer's receiving end.
pub fn recount_channel() -> (RecountRequests, mpsc::Receiver<Recount>) {
    let (tx, rx) = mpsc::channel(RECOUNT_QUEUE);
    (RecountRequests(tx), rx)
}

enum TallyMsg {
    Apply {
        /// Every shard the batch changed (empty: not known, recount).
        copies: Vec<ShardCopy>,
        delta: Counts,
        /// What changed votes took off their old choices.
        removed: Counts,
        done: oneshot::Sender<()>,
    },
    Rebuild {
        copies: Vec<ShardCopy>,
        done: oneshot::Sender<()>,
    },
}

/// Cloneable handle to the VoteTally.
#[derive(Clone)]
pub struct TallyHandle {
    tx: mpsc::Sender<TallyMsg>,
}

impl TallyHandle {
    pub fn spawn(
        live: Live,
        view: CountsView,
        recounts: RecountRequests,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(TALLY_QUEUE);
        let actor = VoteTally {
            rx,
            live,
            view,
            recounts,
            metrics,
            sync: RedisSync::new(),
        };
        (TallyHandle { tx }, tokio::spawn(actor.run()))
    }

    /// A committed batch: `delta` it added, `copy` its shard's totals after
    /// it (`None`: not known, a recount follows). Returns once the counts
    /// are visible on this replica.
    pub async fn apply(&self, copy: Option<ShardCopy>, delta: Counts) {
        self.apply_batch(copy.into_iter().collect(), delta, Counts::default())
            .await;
    }

    /// A committed batch that may have changed votes (`ONE_VOTE_PER_DEVICE`):
    /// `removed` came off the old choices, on the shards among `copies`
    /// that counted them (empty `copies`: not known, a recount follows).
    pub async fn apply_batch(&self, copies: Vec<ShardCopy>, delta: Counts, removed: Counts) {
        self.send(|done| TallyMsg::Apply {
            copies,
            delta,
            removed,
            done,
        })
        .await;
    }

    /// Every shard's totals, read from PostgreSQL: written to Redis as they are.
    pub async fn rebuild(&self, copies: Vec<ShardCopy>) {
        self.send(|done| TallyMsg::Rebuild { copies, done }).await;
    }

    /// Messages waiting in the mailbox.
    pub fn queue_depth(&self) -> usize {
        super::mailbox::depth(&self.tx)
    }

    async fn send(&self, msg: impl FnOnce(oneshot::Sender<()>) -> TallyMsg) {
        let delivered = mailbox::ask(&self.tx, APPLY_TIMEOUT, None, msg);
        // Votes are already durable here; a stuck tally only delays the mirror.
        // One bound for room in the mailbox and the confirmation together.
        if !matches!(
            tokio::time::timeout(APPLY_TIMEOUT, delivered).await,
            Ok(Ok(()))
        ) {
            warn!("vote tally did not confirm within {APPLY_TIMEOUT:?}");
        }
    }
}

struct VoteTally {
    rx: mpsc::Receiver<TallyMsg>,
    live: Live,
    view: CountsView,
    recounts: RecountRequests,
    metrics: Arc<Metrics>,
    sync: RedisSync,
}

impl VoteTally {
    async fn run(mut self) {
        self.recounts.try_request();
        let start = tokio::time::Instant::now() + CHECK_INTERVAL;
        let mut check = tokio::time::interval_at(start, CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(TallyMsg::Apply { copies, delta, removed, done }) => {
                        self.apply(copies, delta, removed, done).await;
                    }
                    Some(TallyMsg::Rebuild { copies, done }) => {
                        self.rebuild(copies).await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                _ = check.tick() => self.check().await,
            }
        }
    }

    /// Shows the batch on this replica and confirms before any Redis call,
    /// so a voter's answer never precedes its vote in `/votes`, whatever
    /// Redis does; then stores the copy and shows Redis's sum.
    async fn apply(
        &mut self,
        copies: Vec<ShardCopy>,
        delta: Counts,
        removed: Counts,
        done: oneshot::Sender<()>,
    ) {
        if delta.total() > 0 || removed.total() > 0 {
            self.view
                .offer(counted_locally(self.view.current(), &delta, &removed));
        }
        let _ = done.send(());
        if copies.is_empty() {
            self.recounts.try_request();
            return;
        }
        let answer = self.live.apply_all(&copies, self.view.current().seq).await;
        let reading = match answer {
            Ok(Some(snapshot)) => Reading::Stored(snapshot),
            Ok(None) => Reading::Lost,
            Err(e) => {
                warn!(error = %e, "could not store the totals' copy in Redis");
                Reading::Failed
            }
        };
        self.decide(reading);
    }

    /// Writes every shard's copy to Redis; if Redis is down, shows
    /// PostgreSQL's totals on this replica meanwhile.
    async fn rebuild(&mut self, copies: Vec<ShardCopy>) {
        let newest = self.view.current();
        match self.live.rebuild(&copies, newest.seq).await {
            Ok(snapshot) => {
                info!(
                    total = snapshot.counts.total(),
                    "rebuilt Redis from PostgreSQL's totals"
                );
                self.metrics.redis_rebuilds.inc();
                self.sync.rebuilt(true);
                self.view.offer(snapshot);
            }
            Err(e) => {
                warn!(error = %e, "could not rebuild Redis from PostgreSQL's totals");
                self.metrics.redis_sync_failures.inc();
                self.sync.rebuilt(false);
                let counts = totals::sum(self.live.poll(), &copies);
                self.view.offer(local_change(newest, counts));
            }
        }
    }

    /// Periodic repair: catches up with missed announcements, notices a
    /// Redis that lost the copies, and asks for a rebuild once Redis is back.
    async fn check(&mut self) {
        match self.sync.check() {
            Check::Ping => {
                if self.live.ping().await {
                    self.recounts.try_request();
                }
            }
            Check::Read => {
                let reading = match self.live.read().await {
                    Ok(Some(stored)) => Reading::Stored(stored),
                    Ok(None) => {
                        warn!("Redis lost the counts, rebuilding from PostgreSQL");
                        Reading::Lost
                    }
                    Err(e) => {
                        warn!(error = %e, "Redis unavailable");
                        Reading::Failed
                    }
                };
                self.decide(reading);
            }
        }
    }

    fn decide(&mut self, reading: Reading) {
        match self.sync.answered(reading) {
            Decision::Show(snapshot) => {
                self.view.offer(snapshot);
            }
            Decision::Rebuild => {
                self.recounts.try_request();
            }
            Decision::Wait => self.metrics.redis_sync_failures.inc(),
        }
    }
}

/// A change this replica made on its own (before or without Redis): the
/// counts `counts`, ordered after `newest` by the local counter alone. The
/// next snapshot from Redis has a higher sequence and replaces it.
fn local_change(newest: Snapshot, counts: Counts) -> Snapshot {
    Snapshot {
        counts,
        seq: newest.seq,
        local: newest.local + 1,
    }
}

/// `newest` plus a committed batch, as a local change.
fn counted_locally(newest: Snapshot, delta: &Counts, removed: &Counts) -> Snapshot {
    let mut counts = newest.counts;
    for ((n, d), r) in counts.0.iter_mut().zip(delta.0).zip(removed.0) {
        // Saturating: this replica's view may not have seen the vote being
        // changed yet; Redis's sum of PostgreSQL's copies follows at once.
        *n = (*n + d).saturating_sub(r);
    }
    local_change(newest, counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// A handle whose tally never answers: its mailbox is held but never read.
    fn stuck_tally(capacity: usize) -> (TallyHandle, mpsc::Receiver<TallyMsg>) {
        let (tx, rx) = mpsc::channel(capacity);
        (TallyHandle { tx }, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_tally_holds_the_writer_for_at_most_apply_timeout() {
        let (tally, _mailbox) = stuck_tally(TALLY_QUEUE);
        let started = Instant::now();
        tally.apply(None, Counts([1, 0, 0, 0, 0, 0, 0, 0])).await;
        assert_eq!(started.elapsed(), APPLY_TIMEOUT);
        assert_eq!(
            tally.queue_depth(),
            1,
            "the batch still waits in the mailbox"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_mailbox_holds_the_writer_for_at_most_apply_timeout() {
        let (tally, _mailbox) = stuck_tally(1);
        let (done, _) = oneshot::channel();
        let delta = Counts::default();
        tally
            .tx
            .try_send(TallyMsg::Apply {
                copies: Vec::new(),
                delta,
                removed: Counts::default(),
                done,
            })
            .unwrap_or_else(|_| panic!("room for one"));
        let started = Instant::now();
        tally.rebuild(Vec::new()).await;
        assert_eq!(started.elapsed(), APPLY_TIMEOUT);
        assert_eq!(tally.queue_depth(), 1, "nothing was squeezed in");
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_goes_on_as_soon_as_the_tally_confirms() {
        let (tally, mut mailbox) = stuck_tally(TALLY_QUEUE);
        let confirm = tokio::spawn(async move {
            match mailbox.recv().await {
                Some(TallyMsg::Apply {
                    delta,
                    copies,
                    done,
                    ..
                }) => {
                    let _ = done.send(());
                    (delta, copies)
                }
                _ => panic!("expected the batch"),
            }
        });
        let started = Instant::now();
        tally.apply(None, Counts([0, 0, 2, 0, 0, 0, 0, 0])).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(
            confirm.await.ok(),
            Some((Counts([0, 0, 2, 0, 0, 0, 0, 0]), Vec::new()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_gone_tally_does_not_hold_the_writer() {
        let (tally, mailbox) = stuck_tally(TALLY_QUEUE);
        drop(mailbox);
        let started = Instant::now();
        tally.apply(None, Counts([1, 0, 0, 0, 0, 0, 0, 0])).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn recount_requests_never_wait_and_a_full_queue_drops_them() {
        let (requests, mut writer) = recount_channel();
        for _ in 0..RECOUNT_QUEUE {
            assert!(requests.try_request());
        }
        assert!(!requests.try_request(), "full: one is pending already");
        assert_eq!(writer.try_recv().ok(), Some(Recount));
        assert!(
            requests.try_request(),
            "room again once the writer took one"
        );
        drop(writer);
        assert!(!requests.try_request(), "a gone writer is no panic");
    }
}
