//! The reveal switch (docs/contract.md, the speaker's console): whether the
//! projector shows the bars or RESULTS HIDDEN. PostgreSQL holds the flag
//! (db/session.rs), so a Redis restart never reveals hidden results; Redis
//! pub/sub announces each change so other replicas follow at once. A
//! follower task mirrors the flag into a local `watch`, so `/votes`, the
//! ResultsBroadcaster and the pages read it without a round trip.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::db::{self, DbError};
use crate::live::Live;

/// Pause before resubscribing after the pub/sub connection dropped.
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
/// How often the follower reads the flag from PostgreSQL, which catches a
/// change announced while this replica's subscription was down.
pub const REREAD_INTERVAL: Duration = Duration::from_secs(5);

/// Cloneable handle: read the flag, watch it, or change it for every replica.
#[derive(Clone)]
pub struct RevealHandle {
    tx: Arc<watch::Sender<bool>>,
    live: Live,
    pool: Pool,
}

impl RevealHandle {
    /// Starts visible (the v1 default) until PostgreSQL says otherwise.
    pub fn spawn(live: Live, pool: Pool, shutdown: CancellationToken) -> (Self, JoinHandle<()>) {
        let tx = Arc::new(watch::Sender::new(false));
        let task = tokio::spawn(follow(live.clone(), pool.clone(), tx.clone(), shutdown));
        (RevealHandle { tx, live, pool }, task)
    }

    /// Reads the flag once before the first request is served, so a restarted
    /// replica never shows counts that its peers hide. PostgreSQL down:
    /// visible, until the follower reads it.
    pub async fn load(&self) {
        match db::session::hidden(&self.pool).await {
            Ok(hidden) => {
                self.tx.send_replace(hidden);
            }
            Err(e) => warn!(error = %e, "cannot read the reveal flag at start-up"),
        }
    }

    /// True while the results are hidden.
    pub fn hidden(&self) -> bool {
        *self.tx.borrow()
    }

    /// A receiver that wakes on every change of the flag.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Hides or shows the results on every replica: stored in PostgreSQL
    /// first (a change that is not stored is refused), then announced.
    pub async fn set(&self, hidden: bool) -> Result<(), DbError> {
        db::session::set_hidden(&self.pool, hidden).await?;
        self.changed(hidden).await;
        info!(hidden, "results visibility changed");
        Ok(())
    }

    /// Shows a change already stored (the reset makes the results visible
    /// in its own transaction) here and announces it to the other replicas.
    /// Without Redis they follow within `REREAD_INTERVAL`.
    pub async fn changed(&self, hidden: bool) {
        self.tx.send_replace(hidden);
        if let Err(e) = self.live.announce_hidden(hidden).await {
            warn!(error = %e, "could not announce the reveal change; replicas re-read it");
        }
    }
}

/// Mirrors the stored flag: reads it after each (re)subscription and every
/// `REREAD_INTERVAL`, and follows announcements in between.
async fn follow(live: Live, pool: Pool, tx: Arc<watch::Sender<bool>>, shutdown: CancellationToken) {
    let apply = |hidden: bool| {
        tx.send_if_modified(|current| std::mem::replace(current, hidden) != hidden);
    };
    let reread = || async {
        match db::session::hidden(&pool).await {
            Ok(hidden) => apply(hidden),
            Err(e) => debug!(error = %e, "cannot read the reveal flag"),
        }
    };
    let mut every = tokio::time::interval(REREAD_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shutdown.is_cancelled() {
        match live.subscribe_reveal().await {
            Ok(changes) => {
                // Read at once: a change may have been announced while unsubscribed.
                every.reset_immediately();
                let mut changes = std::pin::pin!(changes);
                loop {
                    tokio::select! {
                        next = changes.next() => match next {
                            Some(hidden) => apply(hidden),
                            None => break,
                        },
                        _ = every.tick() => reread().await,
                        _ = shutdown.cancelled() => return,
                    }
                }
                warn!("Redis reveal subscription closed, resubscribing");
            }
            Err(e) => debug!(error = %e, "Redis pub/sub unavailable for the reveal flag"),
        }
        let pause = tokio::time::sleep(RESUBSCRIBE_DELAY);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                _ = every.tick() => reread().await,
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
