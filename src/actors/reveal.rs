//! The reveal switch (docs/contract.md, the speaker's console): whether the projector shows the bars or
//! RESULTS HIDDEN. Redis holds the flag for every replica and announces each
//! change; a follower task mirrors it into a local `watch`, so `/votes`, the
//! ResultsBroadcaster and the pages read it without a round trip.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::live::{Live, LiveError};

/// Pause before resubscribing after the pub/sub connection dropped.
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Cloneable handle: read the flag, watch it, or change it for every replica.
#[derive(Clone)]
pub struct RevealHandle {
    tx: Arc<watch::Sender<bool>>,
    live: Live,
}

impl RevealHandle {
    /// Starts visible (the v1 default) until Redis says otherwise.
    pub fn spawn(live: Live, shutdown: CancellationToken) -> (Self, JoinHandle<()>) {
        let tx = Arc::new(watch::Sender::new(false));
        let task = tokio::spawn(follow(live.clone(), tx.clone(), shutdown));
        (RevealHandle { tx, live }, task)
    }

    /// Reads the flag once before the first request is served, so a restarted
    /// replica never shows counts that its peers hide. Redis down: visible,
    /// until the follower reads it.
    pub async fn load(&self) {
        match self.live.hidden().await {
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

    /// Hides or shows the results on every replica. Redis first: a change
    /// that other replicas would not see is refused rather than half-made.
    pub async fn set(&self, hidden: bool) -> Result<(), LiveError> {
        self.live.set_hidden(hidden).await?;
        self.tx.send_replace(hidden);
        info!(hidden, "results visibility changed");
        Ok(())
    }
}

/// Mirrors the Redis flag: read it after each (re)subscription, so a change
/// announced while disconnected is not missed, then follow announcements.
async fn follow(live: Live, tx: Arc<watch::Sender<bool>>, shutdown: CancellationToken) {
    let apply = |hidden: bool| {
        tx.send_if_modified(|current| std::mem::replace(current, hidden) != hidden);
    };
    while !shutdown.is_cancelled() {
        match live.subscribe_reveal().await {
            Ok(changes) => {
                match live.hidden().await {
                    Ok(hidden) => apply(hidden),
                    Err(e) => debug!(error = %e, "cannot read the reveal flag"),
                }
                let mut changes = std::pin::pin!(changes);
                loop {
                    tokio::select! {
                        next = changes.next() => match next {
                            Some(hidden) => apply(hidden),
                            None => break,
                        },
                        _ = shutdown.cancelled() => return,
                    }
                }
                warn!("Redis reveal subscription closed, resubscribing");
            }
            Err(e) => debug!(error = %e, "Redis pub/sub unavailable for the reveal flag"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
