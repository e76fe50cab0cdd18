//! VoteTally: owns this replica's view of the live counts and keeps Redis in
//! step. The PersistenceWriter hands it every committed batch, recount and
//! reset in commit order; it mirrors each to Redis in one round trip and
//! offers the result to the shared `CountsView`. When Redis was down or
//! emptied it asks the writer for a recount and rebuilds Redis from PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::writer::Recount;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::poll::{Counts, CountsView, Snapshot};

/// Mailbox size. Only the writer sends here and it awaits room, which slows
/// commits down instead of dropping a count.
pub const TALLY_QUEUE: usize = 256;
/// How often the tally checks that Redis still holds the counts.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Recounts that must show the same Redis/PostgreSQL mismatch before Redis
/// is overwritten without being asked to (see `VoteTally::rebuild`).
pub const MISMATCH_CONFIRMATIONS: u8 = 2;
/// Upper bound for the writer waiting on the tally.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

enum TallyMsg {
    Apply {
        delta: Counts,
        done: oneshot::Sender<()>,
    },
    Rebuild {
        counts: Counts,
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
        recounts: mpsc::Sender<Recount>,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(TALLY_QUEUE);
        let actor = VoteTally {
            rx,
            live,
            view,
            recounts,
            metrics,
            // Out of step until proven otherwise: the first recount compares
            // Redis with PostgreSQL at start-up.
            in_step: false,
            suspect: None,
        };
        (TallyHandle { tx }, tokio::spawn(actor.run()))
    }

    /// Adds a committed batch; returns once the counts are visible.
    pub async fn apply(&self, delta: Counts) {
        self.send(|done| TallyMsg::Apply { delta, done }).await;
    }

    /// Replaces the counts with `counts` read from PostgreSQL.
    pub async fn rebuild(&self, counts: Counts, force: bool) {
        self.send(|done| TallyMsg::Rebuild {
            counts,
            force,
            done,
        })
        .await;
    }

    /// Messages waiting in the mailbox.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    async fn send(&self, msg: impl FnOnce(oneshot::Sender<()>) -> TallyMsg) {
        let (done, wait) = oneshot::channel();
        let delivered = async {
            self.tx.send(msg(done)).await.ok()?;
            wait.await.ok()
        };
        // Votes are already durable here; a stuck tally only delays the mirror.
        if tokio::time::timeout(APPLY_TIMEOUT, delivered)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            warn!("vote tally did not confirm within {APPLY_TIMEOUT:?}");
        }
    }
}

struct VoteTally {
    rx: mpsc::Receiver<TallyMsg>,
    live: Live,
    view: CountsView,
    recounts: mpsc::Sender<Recount>,
    metrics: Arc<Metrics>,
    /// False while Redis may lack some of our batches; cleared by a rebuild.
    in_step: bool,
    /// A mismatch seen by an unforced recount, waiting for confirmation.
    suspect: Option<Mismatch>,
}

/// Redis minus PostgreSQL per choice, and how often it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mismatch {
    diff: [i64; 5],
    seen: u8,
}

fn difference(redis: &Counts, postgres: &Counts) -> [i64; 5] {
    let mut diff = [0i64; 5];
    for (d, (r, p)) in diff.iter_mut().zip(redis.0.iter().zip(postgres.0)) {
        *d = *r as i64 - p as i64;
    }
    diff
}

impl VoteTally {
    async fn run(mut self) {
        self.request_recount(false);
        // The first check waits a full interval so the start-up recount (which
        // keeps Redis when it is in step) lands before a forced one could.
        let start = tokio::time::Instant::now() + CHECK_INTERVAL;
        let mut check = tokio::time::interval_at(start, CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(TallyMsg::Apply { delta, done }) => {
                        self.apply(delta).await;
                        let _ = done.send(());
                    }
                    Some(TallyMsg::Rebuild { counts, force, done }) => {
                        self.rebuild(counts, force).await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                _ = check.tick() => self.check().await,
            }
        }
    }

    async fn apply(&mut self, delta: Counts) {
        if self.in_step {
            let before = self.view.current();
            match self.live.apply(&delta).await {
                Ok(snapshot) if snapshot.seq > before.seq || before.seq == 0 => {
                    self.view.offer(snapshot);
                    return;
                }
                Ok(_) => {
                    warn!("Redis sequence went backwards: Redis was emptied, rebuilding");
                    self.out_of_step(false);
                }
                Err(e) => {
                    warn!(error = %e, "could not mirror votes to Redis");
                    self.out_of_step(true);
                }
            }
        }
        // Out of step: keep counting locally; the rebuild will catch Redis up.
        let mut local = self.view.current();
        for (n, d) in local.counts.0.iter_mut().zip(delta.0) {
            *n += d;
        }
        local.local += 1;
        self.view.offer(local);
    }

    /// Replaces Redis with `counts` from PostgreSQL. Unforced (start-up), a
    /// mismatch must be seen again before Redis is overwritten: another
    /// replica may have committed between our recount and our read of Redis,
    /// and overwriting then would drop its votes from the live counts.
    async fn rebuild(&mut self, counts: Counts, force: bool) {
        if !force && let Ok(Some(stored)) = self.live.read().await {
            let diff = difference(&stored.counts, &counts);
            let seen = match self.suspect {
                _ if diff == [0; 5] => 0,
                Some(m) if m.diff == diff => m.seen + 1,
                _ => 1,
            };
            if seen < MISMATCH_CONFIRMATIONS {
                self.suspect = (seen > 0).then_some(Mismatch { diff, seen });
                self.view.offer(stored);
                self.in_step = true;
                return;
            }
            warn!(?diff, "Redis and PostgreSQL disagree, rebuilding Redis");
        }
        self.suspect = None;
        let newest = self.view.current();
        match self.live.rebuild(&counts, newest.seq).await {
            Ok(snapshot) => {
                info!(
                    total = counts.total(),
                    "rebuilt Redis counts from PostgreSQL"
                );
                self.metrics.redis_rebuilds.inc();
                self.view.offer(snapshot);
                self.in_step = true;
            }
            Err(e) => {
                warn!(error = %e, "could not rebuild Redis counts");
                self.view.offer(Snapshot {
                    counts,
                    seq: newest.seq,
                    local: newest.local + 1,
                });
                self.out_of_step(true);
            }
        }
    }

    /// Periodic repair: catches up with missed announcements, notices an
    /// emptied Redis, and asks for a rebuild once Redis is back.
    async fn check(&mut self) {
        if !self.in_step {
            if self.live.ping().await {
                self.request_recount(true);
            }
            return;
        }
        if self.suspect.is_some() {
            self.request_recount(false);
        }
        match self.live.read().await {
            Ok(Some(stored)) => {
                self.view.offer(stored);
            }
            Ok(None) => {
                warn!("Redis lost the counts, rebuilding from PostgreSQL");
                self.out_of_step(false);
                self.request_recount(true);
            }
            Err(e) => {
                warn!(error = %e, "Redis unavailable");
                self.out_of_step(true);
            }
        }
    }

    fn out_of_step(&mut self, redis_failed: bool) {
        if redis_failed {
            self.metrics.redis_sync_failures.inc();
        }
        self.in_step = false;
    }

    fn request_recount(&self, force: bool) {
        // Full queue: a recount is pending already; the next tick asks again if needed.
        let _ = self.recounts.try_send(Recount { force });
    }
}
