//! IncidentTimeline: counts what happened to every vote this process
//! answered (accepted, or refused and why) per second, in memory, and adds
//! the counts to PostgreSQL about once a second in one statement — never a
//! write per request. The router tells it each vote's outcome; `/timeline`
//! reads PostgreSQL, where every replica's (and mirrord's) counts meet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::mailbox;
use tracing::warn;

use crate::db::{self, DbError};
use crate::metrics::Metrics;
use crate::timeline::Outcome;

/// Outcome notifications waiting. Notification policy: `try_send`; when full
/// the outcome is dropped and counted in `timeline_dropped_total`, because
/// a vote must never wait for its own statistics.
pub const TIMELINE_QUEUE: usize = 8192;
/// How often the counts go to PostgreSQL.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long one flush (or reset) may take before it counts as failed.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// (second, outcome) pairs kept while PostgreSQL is unreachable (over an hour
/// of a busy session); beyond it new outcomes are dropped and counted.
pub const MAX_PENDING: usize = 20_000;
/// How long a reset waits for the timeline to be emptied.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(5);

enum TimelineMsg {
    Record {
        outcome: Outcome,
        at_ms: i64,
    },
    Reset {
        reply: oneshot::Sender<Result<(), DbError>>,
    },
}

/// Why the timeline could not be reset.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("timeline not reset: {0}")]
    Db(#[from] DbError),
    #[error("timeline actor unavailable")]
    Unavailable,
}

/// Cloneable handle to the IncidentTimeline.
#[derive(Clone)]
pub struct TimelineHandle {
    tx: mpsc::Sender<TimelineMsg>,
    metrics: Arc<Metrics>,
}

impl TimelineHandle {
    /// `process` names this process among replicas and restarts; `version`
    /// is its `APP_VERSION`.
    pub fn spawn(
        pool: Pool,
        process: String,
        version: String,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(TIMELINE_QUEUE);
        let actor = IncidentTimeline {
            rx,
            pool,
            process,
            version,
            pending: Pending::default(),
            metrics: metrics.clone(),
        };
        (TimelineHandle { tx, metrics }, tokio::spawn(actor.run()))
    }

    /// Counts one answered vote, now. Never waits.
    pub fn record(&self, outcome: Outcome) {
        let msg = TimelineMsg::Record {
            outcome,
            at_ms: now_ms(),
        };
        if self.tx.try_send(msg).is_err() {
            self.metrics.timeline_dropped.inc();
        }
    }

    /// Empties the timeline of every process (PostgreSQL) and this one's
    /// unsent counts. Other processes' unsent counts (under a second) follow.
    pub async fn reset(&self) -> Result<(), TimelineError> {
        // One bound for room in the mailbox and the answer together.
        let asked = mailbox::ask(&self.tx, RESET_TIMEOUT, None, |reply| TimelineMsg::Reset {
            reply,
        });
        match tokio::time::timeout(RESET_TIMEOUT, asked).await {
            Ok(Ok(result)) => Ok(result?),
            _ => Err(TimelineError::Unavailable),
        }
    }

    /// Notifications waiting.
    pub fn queue_depth(&self) -> usize {
        super::mailbox::depth(&self.tx)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Counts not yet in PostgreSQL.
#[derive(Debug, Default)]
struct Pending {
    counts: HashMap<(i64, Outcome), i64>,
    /// The earliest outcome among them: this process's marker if it is new.
    earliest_ms: Option<i64>,
}

impl Pending {
    /// Adds one outcome; false when the buffer is full and it was dropped.
    fn add(&mut self, outcome: Outcome, at_ms: i64) -> bool {
        let key = (at_ms.div_euclid(1000), outcome);
        if self.counts.len() >= MAX_PENDING && !self.counts.contains_key(&key) {
            return false;
        }
        *self.counts.entry(key).or_default() += 1;
        self.earliest_ms = Some(self.earliest_ms.map_or(at_ms, |e| e.min(at_ms)));
        true
    }

    /// The rows of one flush, as parallel arrays for `unnest`.
    fn rows(&self) -> (Vec<i64>, Vec<&'static str>, Vec<i64>) {
        let mut seconds = Vec::with_capacity(self.counts.len());
        let mut outcomes = Vec::with_capacity(self.counts.len());
        let mut counts = Vec::with_capacity(self.counts.len());
        for (&(second, outcome), &n) in &self.counts {
            seconds.push(second);
            outcomes.push(outcome.key());
            counts.push(n);
        }
        (seconds, outcomes, counts)
    }
}

struct IncidentTimeline {
    rx: mpsc::Receiver<TimelineMsg>,
    pool: Pool,
    process: String,
    version: String,
    pending: Pending,
    metrics: Arc<Metrics>,
}

impl IncidentTimeline {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(TimelineMsg::Record { outcome, at_ms }) => {
                        if !self.pending.add(outcome, at_ms) {
                            self.metrics.timeline_dropped.inc();
                        }
                    }
                    Some(TimelineMsg::Reset { reply }) => {
                        self.pending = Pending::default();
                        let _ = reply.send(self.clear().await);
                    }
                    None => break,
                },
                _ = tick.tick() => self.flush().await,
            }
        }
        // Shutdown: the last second's counts still go in.
        self.flush().await;
    }

    /// Adds the pending counts to PostgreSQL; on failure they stay pending
    /// and go with the next flush. (A flush whose COMMIT was lost in transit
    /// may be counted twice: statistics, not votes.)
    async fn flush(&mut self) {
        let Some(first_seen_ms) = self.pending.earliest_ms else {
            return;
        };
        let (seconds, outcomes, counts) = self.pending.rows();
        let result = db::within(FLUSH_TIMEOUT, async {
            let client = self.pool.get().await?;
            db::timeline::add(
                &client,
                &self.process,
                &self.version,
                first_seen_ms,
                &seconds,
                &outcomes,
                &counts,
            )
            .await
        })
        .await;
        match result {
            Ok(()) => self.pending = Pending::default(),
            Err(e) => {
                warn!(error = %e, rows = seconds.len(), "timeline flush failed, keeping the counts")
            }
        }
    }

    async fn clear(&self) -> Result<(), DbError> {
        db::within(FLUSH_TIMEOUT, async {
            let client = self.pool.get().await?;
            db::timeline::clear(&client).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_counts_per_second_and_outcome_and_keeps_the_earliest() {
        let mut pending = Pending::default();
        assert!(pending.add(Outcome::Accepted, 5_300));
        assert!(pending.add(Outcome::Accepted, 5_900));
        assert!(pending.add(Outcome::Invalid, 4_999));
        assert!(pending.add(Outcome::Accepted, 6_000));
        assert_eq!(pending.counts[&(5, Outcome::Accepted)], 2);
        assert_eq!(pending.counts[&(4, Outcome::Invalid)], 1);
        assert_eq!(pending.counts[&(6, Outcome::Accepted)], 1);
        assert_eq!(pending.earliest_ms, Some(4_999));
        let (seconds, outcomes, counts) = pending.rows();
        assert_eq!(seconds.len(), 3);
        assert_eq!(outcomes.len(), 3);
        assert_eq!(counts.iter().sum::<i64>(), 4);
    }

    #[test]
    fn a_full_buffer_drops_new_seconds_but_still_counts_known_ones() {
        let mut pending = Pending::default();
        for s in 0..MAX_PENDING as i64 {
            assert!(pending.add(Outcome::Accepted, s * 1000));
        }
        assert!(!pending.add(Outcome::Accepted, MAX_PENDING as i64 * 1000));
        assert!(pending.add(Outcome::Accepted, 0));
        assert_eq!(pending.counts[&(0, Outcome::Accepted)], 2);
    }

    #[test]
    fn outcome_keys_round_trip_in_order() {
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i);
            assert_eq!(Outcome::from_key(outcome.key()), Some(outcome));
        }
        assert_eq!(Outcome::from_key("teapot"), None);
    }
}
