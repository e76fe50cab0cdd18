//! VoteTally: owns this replica's view of the live counts and keeps Redis in
//! step. The PersistenceWriter hands it every committed batch, recount and
//! reset in commit order; it mirrors each to Redis in one round trip, offers
//! the result to the shared `CountsView`, and rebuilds Redis from a recount
//! when Redis was down or emptied. `RedisSync` decides (no I/O); this file acts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::mailbox;
use tracing::{info, warn};

use crate::live::{CountedAt, Live, LiveError};
use crate::metrics::Metrics;
use crate::poll::{Counts, CountsView, Snapshot};
use redis_sync::{Check, Checked, Fault, Mirrored, Reading, Recounted, RedisSync};

mod redis_sync;

/// Mailbox size. Only the writer sends here and it awaits room, which slows
/// commits down instead of dropping a count.
pub const TALLY_QUEUE: usize = 256;
/// How often the tally checks that Redis still holds the counts.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Upper bound for the writer waiting on the tally.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Recount requests waiting. Notification policy: `try_send`; a full queue
/// means a recount is pending already, and the next check asks again if needed.
pub const RECOUNT_QUEUE: usize = 4;

/// Asks the PersistenceWriter to count `votes` and hand the result back
/// through `TallyHandle::rebuild`, in commit order. `force` rebuilds Redis
/// even when it looks in step.
#[derive(Debug, Clone, Copy)]
pub struct Recount {
    pub force: bool,
}

/// The tally's end of the recount channel. It runs against the graph
/// (tally → writer), so it can only `try_send`: the tally never waits on the writer.
pub struct RecountRequests(mpsc::Sender<Recount>);

impl RecountRequests {
    /// Queues a recount; false when the queue is full (one is pending already).
    pub fn try_request(&self, force: bool) -> bool {
        self.0.try_send(Recount { force }).is_ok()
    }
}

/// The recount channel: the tally's sending end and the writer's receiving end.
pub fn recount_channel() -> (RecountRequests, mpsc::Receiver<Recount>) {
    let (tx, rx) = mpsc::channel(RECOUNT_QUEUE);
    (RecountRequests(tx), rx)
}

enum TallyMsg {
    Apply {
        delta: Counts,
        xid: Option<u64>,
        done: oneshot::Sender<()>,
    },
    Rebuild {
        recount: CountedAt,
        force: bool,
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

    /// Adds a batch committed by transaction `xid` (`None`: not known);
    /// returns once the counts are visible.
    pub async fn apply(&self, delta: Counts, xid: Option<u64>) {
        self.send(|done| TallyMsg::Apply { delta, xid, done }).await;
    }

    /// Replaces the counts with a recount from PostgreSQL.
    pub async fn rebuild(&self, recount: CountedAt, force: bool) {
        self.send(|done| TallyMsg::Rebuild {
            recount,
            force,
            done,
        })
        .await;
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
        self.recounts.try_request(false);
        // The first check waits a full interval so the start-up recount (which
        // keeps Redis when it is in step) lands before a forced one could.
        let start = tokio::time::Instant::now() + CHECK_INTERVAL;
        let mut check = tokio::time::interval_at(start, CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(TallyMsg::Apply { delta, xid, done }) => {
                        self.apply(delta, xid).await;
                        let _ = done.send(());
                    }
                    Some(TallyMsg::Rebuild { recount, force, done }) => {
                        self.rebuild(recount, force).await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                _ = check.tick() => self.check().await,
            }
        }
    }

    async fn apply(&mut self, delta: Counts, xid: Option<u64>) {
        if self.sync.mirrors() {
            let shown_seq = self.view.current().seq;
            let answer = self.live.apply(&delta, xid).await.inspect_err(|e| {
                warn!(error = %e, "could not mirror votes to Redis");
            });
            match self.sync.mirrored(shown_seq, answer.ok()) {
                Mirrored::Show(snapshot) => {
                    self.view.offer(snapshot);
                    return;
                }
                Mirrored::CountLocally(fault) => self.fell_out(fault),
            }
        }
        let local = redis_sync::counted_locally(self.view.current(), &delta);
        self.view.offer(local);
    }

    /// Takes a recount from PostgreSQL: keeps Redis or rebuilds it.
    async fn rebuild(&mut self, recount: CountedAt, force: bool) {
        let counts = recount.counts;
        let redis = if force { None } else { Some(self.read().await) };
        match self.sync.recounted(&counts, redis) {
            Recounted::Keep(stored) => {
                self.view.offer(stored);
                return;
            }
            Recounted::Rebuild {
                mismatch: Some(diff),
            } => warn!(?diff, "Redis and PostgreSQL disagree, rebuilding Redis"),
            Recounted::Rebuild { mismatch: None } => {}
        }
        let newest = self.view.current();
        match self.live.rebuild(&recount, newest.seq).await {
            Ok(snapshot) => {
                info!(
                    total = snapshot.counts.total(),
                    "rebuilt Redis counts from PostgreSQL"
                );
                self.metrics.redis_rebuilds.inc();
                self.sync.rebuilt(true);
                self.view.offer(snapshot);
            }
            // Out of step either way: the next check asks for a forced recount.
            Err(LiveError::Stale) => {
                info!("another replica rebuilt Redis from a newer count; recounting");
                self.out_of_step_with(newest, counts);
            }
            Err(e) => {
                warn!(error = %e, "could not rebuild Redis counts");
                self.metrics.redis_sync_failures.inc();
                self.out_of_step_with(newest, counts);
            }
        }
    }

    /// Redis was not rebuilt: show the recount as a local change.
    fn out_of_step_with(&mut self, newest: Snapshot, counts: Counts) {
        self.sync.rebuilt(false);
        self.view.offer(redis_sync::local_change(newest, counts));
    }

    /// Periodic repair: catches up with missed announcements, notices an
    /// emptied Redis, and asks for a rebuild once Redis is back.
    async fn check(&mut self) {
        match self.sync.check() {
            Check::Ping => {
                if self.live.ping().await {
                    self.recounts.try_request(true);
                }
            }
            Check::Read { recount } => {
                if recount {
                    self.recounts.try_request(false);
                }
                let reading = self.read().await;
                match self.sync.checked(reading) {
                    Checked::Show(stored) => {
                        self.view.offer(stored);
                    }
                    Checked::Lost => {
                        warn!("Redis lost the counts, rebuilding from PostgreSQL");
                        self.recounts.try_request(true);
                    }
                    Checked::Failed => self.fell_out(Fault::Failed),
                }
            }
        }
    }

    async fn read(&self) -> Reading {
        match self.live.read().await {
            Ok(Some(stored)) => Reading::Stored(stored),
            Ok(None) => Reading::Empty,
            Err(e) => {
                warn!(error = %e, "Redis unavailable");
                Reading::Failed
            }
        }
    }

    fn fell_out(&self, fault: Fault) {
        match fault {
            Fault::Emptied => {
                warn!("Redis sequence went backwards: Redis was emptied, rebuilding");
            }
            Fault::Failed => self.metrics.redis_sync_failures.inc(),
        }
    }
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
        tally.apply(Counts([1, 0, 0, 0, 0]), Some(7)).await;
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
                delta,
                xid: None,
                done,
            })
            .unwrap_or_else(|_| panic!("room for one"));
        let started = Instant::now();
        tally.rebuild(CountedAt::default(), true).await;
        assert_eq!(started.elapsed(), APPLY_TIMEOUT);
        assert_eq!(tally.queue_depth(), 1, "nothing was squeezed in");
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_goes_on_as_soon_as_the_tally_confirms() {
        let (tally, mut mailbox) = stuck_tally(TALLY_QUEUE);
        let confirm = tokio::spawn(async move {
            match mailbox.recv().await {
                Some(TallyMsg::Apply { delta, xid, done }) => {
                    let _ = done.send(());
                    (delta, xid)
                }
                _ => panic!("expected the batch"),
            }
        });
        let started = Instant::now();
        tally.apply(Counts([0, 0, 2, 0, 0]), Some(7)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(confirm.await.ok(), Some((Counts([0, 0, 2, 0, 0]), Some(7))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_gone_tally_does_not_hold_the_writer() {
        let (tally, mailbox) = stuck_tally(TALLY_QUEUE);
        drop(mailbox);
        let started = Instant::now();
        tally.apply(Counts([1, 0, 0, 0, 0]), Some(7)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn recount_requests_never_wait_and_a_full_queue_drops_them() {
        let (requests, mut writer) = recount_channel();
        for _ in 0..RECOUNT_QUEUE {
            assert!(requests.try_request(false));
        }
        assert!(!requests.try_request(true), "full: one is pending already");
        assert!(writer.try_recv().is_ok_and(|r| !r.force));
        assert!(
            requests.try_request(true),
            "room again once the writer took one"
        );
        drop(writer);
        assert!(!requests.try_request(true), "a gone writer is no panic");
    }
}
