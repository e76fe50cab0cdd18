//! ResultsBroadcaster: turns count changes into one ready-made SSE frame and
//! fans it out to every `/stream` client over a `broadcast` channel, so no
//! client costs a serialisation. Bursts coalesce to at most one frame per
//! `FRAME_INTERVAL`. It also listens on Redis pub/sub and offers other
//! replicas' snapshots to the shared `CountsView`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::live::Live;
use crate::metrics::Metrics;
use crate::poll::{Counts, CountsView};

/// Minimum gap between two frames: at most ~10 frames/s whatever the vote rate.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(100);
/// Frames kept for slow clients. Lag policy: a client that falls further
/// behind skips to the newest frame, which is a full snapshot anyway.
pub const FRAME_BUFFER: usize = 16;
/// Pause before resubscribing after the pub/sub connection dropped.
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Cloneable handle: how `/stream` connections get their frames.
#[derive(Clone)]
pub struct BroadcasterHandle {
    frames: broadcast::Sender<Bytes>,
    view: CountsView,
}

impl BroadcasterHandle {
    pub fn spawn(
        view: CountsView,
        live: Live,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (frames, _) = broadcast::channel(FRAME_BUFFER);
        let actor = ResultsBroadcaster {
            updates: view.subscribe(),
            view: view.clone(),
            live,
            frames: frames.clone(),
            metrics,
            shutdown,
        };
        (
            BroadcasterHandle { frames, view },
            tokio::spawn(actor.run()),
        )
    }

    /// The current frame (sent first on connect) and a receiver for later ones.
    pub fn subscribe(&self) -> (Bytes, broadcast::Receiver<Bytes>) {
        let rx = self.frames.subscribe();
        (self.latest(), rx)
    }

    /// A frame of the newest counts: on connect, and for a client that lagged.
    /// Built from the view rather than the last broadcast, so a client that
    /// connects right after its own vote already sees it.
    pub fn latest(&self) -> Bytes {
        votes_frame(&self.view.current().counts)
    }
}

/// The SSE frame for `counts`: `event: votes` with the `/votes` JSON.
pub fn votes_frame(counts: &Counts) -> Bytes {
    let json = serde_json::to_string(counts).expect("counts always serialise");
    Bytes::from(format!("event: votes\ndata: {json}\n\n"))
}

struct ResultsBroadcaster {
    view: CountsView,
    updates: watch::Receiver<crate::poll::Snapshot>,
    live: Live,
    frames: broadcast::Sender<Bytes>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl ResultsBroadcaster {
    async fn run(mut self) {
        let listener = tokio::spawn(listen(
            self.live.clone(),
            self.view.clone(),
            self.shutdown.clone(),
        ));
        let mut next_frame = Instant::now();
        loop {
            tokio::select! {
                changed = self.updates.changed() => if changed.is_err() { break },
                _ = self.shutdown.cancelled() => break,
            }
            // Coalesce: whatever arrives during the pause goes into one frame.
            tokio::select! {
                _ = tokio::time::sleep_until(next_frame) => {}
                _ = self.shutdown.cancelled() => break,
            }
            let counts = self.updates.borrow_and_update().counts;
            let frame = votes_frame(&counts);
            // No receivers is fine: nobody is watching right now.
            let _ = self.frames.send(frame);
            self.metrics.sse_frames.inc();
            next_frame = Instant::now() + FRAME_INTERVAL;
        }
        listener.abort();
    }
}

/// Feeds other replicas' announcements into the view, resubscribing after drops.
async fn listen(live: Live, view: CountsView, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match live.subscribe().await {
            Ok(announcements) => {
                let mut announcements = std::pin::pin!(announcements);
                loop {
                    tokio::select! {
                        next = announcements.next() => match next {
                            Some(a) => {
                                if view.offer(a.snapshot) {
                                    debug!(origin = %a.origin, seq = a.snapshot.seq, "counts from pub/sub");
                                }
                            }
                            None => break,
                        },
                        _ = shutdown.cancelled() => return,
                    }
                }
                warn!("Redis pub/sub connection closed, resubscribing");
            }
            Err(e) => debug!(error = %e, "Redis pub/sub unavailable"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
