//! ResultsBroadcaster: turns changes into ready-made SSE frames and fans them
//! out to every `/stream` client over one `broadcast` channel, so no client
//! costs a serialisation. Two kinds of frame:
//! - `votes`: the `/votes` JSON, bursts coalesced to one per `FRAME_INTERVAL`;
//! - `status`: failing votes in the last minute (the projector's SERVICE
//!   DEGRADED sign), watchers and version, on change and every `STATUS_REFRESH`.
//!
//! It also listens on Redis pub/sub and offers other replicas' snapshots to
//! the shared `CountsView`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::live::{Announcement, Live, Rejected};
use crate::metrics::Metrics;
use crate::poll::{Counts, CountsView, Poll, Snapshot, hidden_json};

/// Minimum gap between two votes frames: at most ~10 frames/s whatever the vote rate.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(100);
/// Frames kept for slow clients. Lag policy: a client that falls further
/// behind skips to the newest frames, which are full snapshots anyway.
pub const FRAME_BUFFER: usize = 16;
/// Failure reports waiting. Notification policy: `try_send`; when full the
/// report is dropped and counted (the sign is lit already at that rate).
pub const FAILURE_QUEUE: usize = 1024;
/// How far back the degraded status looks.
pub const DEGRADED_WINDOW: Duration = Duration::from_secs(60);
/// How often the status is re-evaluated (window expiry, watcher count).
pub const STATUS_TICK: Duration = Duration::from_secs(1);
/// A status frame goes out at least this often, changed or not.
pub const STATUS_REFRESH: Duration = Duration::from_secs(5);
/// Pause before resubscribing after the pub/sub connection dropped.
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Cloneable handle: how `/stream` connections get their frames and how
/// the HTTP layer reports failed votes.
#[derive(Clone)]
pub struct BroadcasterHandle {
    frames: broadcast::Sender<Bytes>,
    status: watch::Receiver<Bytes>,
    failures: mpsc::Sender<String>,
    view: CountsView,
    /// The reveal flag: while true, votes frames carry the total only.
    hidden: watch::Receiver<bool>,
    poll: Arc<Poll>,
    metrics: Arc<Metrics>,
}

impl BroadcasterHandle {
    pub fn spawn(
        view: CountsView,
        live: Live,
        hidden: watch::Receiver<bool>,
        version: String,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        // Every reason's series from the start, so an alert can use increase() from zero.
        for reason in crate::live::Rejected::ALL {
            metrics.pubsub_rejected.with_label_values(&[reason.label()]);
        }
        let (frames, _) = broadcast::channel(FRAME_BUFFER);
        let (failures, failures_rx) = mpsc::channel(FAILURE_QUEUE);
        let status = Status {
            version,
            ..Status::default()
        };
        let (status_tx, status_rx) = watch::channel(status.frame());
        let actor = ResultsBroadcaster {
            updates: view.subscribe(),
            view: view.clone(),
            hidden: hidden.clone(),
            live: live.clone(),
            frames: frames.clone(),
            failures: failures_rx,
            window: FailureWindow::default(),
            status,
            status_tx,
            metrics: metrics.clone(),
            shutdown,
        };
        let handle = BroadcasterHandle {
            frames,
            status: status_rx,
            failures,
            view,
            hidden,
            poll: live.poll().clone(),
            metrics,
        };
        (handle, tokio::spawn(actor.run()))
    }

    /// The frames a new client needs first, and a receiver for later ones.
    pub fn subscribe(&self) -> (Bytes, broadcast::Receiver<Bytes>) {
        let rx = self.frames.subscribe();
        (self.latest(), rx)
    }

    /// The newest votes and status frames: on connect, and for a client that
    /// lagged. Votes come from the view rather than the last broadcast, so a
    /// client that connects right after its own vote already sees it.
    pub fn latest(&self) -> Bytes {
        let mut out = self.votes_now().to_vec();
        out.extend_from_slice(&self.status.borrow());
        Bytes::from(out)
    }

    /// A votes frame with the counts as they are now: what a pass of the
    /// fan-out writes when its frame waited (a grown frame gap).
    pub fn votes_now(&self) -> Bytes {
        let hidden = *self.hidden.borrow();
        votes_frame(&self.poll, &self.view.current().counts, hidden)
    }

    /// Reports a vote answered with a 5xx, for the degraded sign.
    pub fn report_failure(&self, detail: String) {
        if self.failures.try_send(detail).is_err() {
            self.metrics.failure_reports_dropped.inc();
        }
    }

    /// Failure reports waiting.
    pub fn queue_depth(&self) -> usize {
        super::mailbox::depth(&self.failures)
    }
}

/// The SSE frame for `counts`: `event: votes` with the `/votes` JSON, or
/// only the total while the results are hidden (docs/contract.md, the speaker's console).
pub fn votes_frame(poll: &Poll, counts: &Counts, hidden: bool) -> Bytes {
    let json = if hidden {
        hidden_json(counts)
    } else {
        serde_json::to_string(&poll.show(counts)).expect("counts always serialise")
    };
    Bytes::from(format!("event: votes\ndata: {json}\n\n"))
}

/// The data of a `status` frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
struct Status {
    degraded: bool,
    failed_last_minute: u64,
    detail: Option<String>,
    watching: usize,
    version: String,
}

impl Status {
    fn frame(&self) -> Bytes {
        let json = serde_json::to_string(self).expect("status always serialises");
        Bytes::from(format!("event: status\ndata: {json}\n\n"))
    }
}

/// Failures per second over the last `DEGRADED_WINDOW`: at most one entry
/// per second, so memory stays bounded whatever the failure rate.
#[derive(Default)]
struct FailureWindow {
    seconds: VecDeque<(Instant, u64)>,
    last_detail: Option<String>,
}

impl FailureWindow {
    fn record(&mut self, now: Instant, detail: String) {
        match self.seconds.back_mut() {
            Some((start, n)) if now.duration_since(*start) < Duration::from_secs(1) => *n += 1,
            _ => self.seconds.push_back((now, 1)),
        }
        self.last_detail = Some(detail);
    }

    fn expire(&mut self, now: Instant) {
        while let Some((start, _)) = self.seconds.front() {
            if now.duration_since(*start) < DEGRADED_WINDOW {
                break;
            }
            self.seconds.pop_front();
        }
        if self.seconds.is_empty() {
            self.last_detail = None;
        }
    }

    fn count(&self) -> u64 {
        self.seconds.iter().map(|(_, n)| n).sum()
    }
}

struct ResultsBroadcaster {
    view: CountsView,
    updates: watch::Receiver<Snapshot>,
    hidden: watch::Receiver<bool>,
    live: Live,
    frames: broadcast::Sender<Bytes>,
    failures: mpsc::Receiver<String>,
    window: FailureWindow,
    status: Status,
    status_tx: watch::Sender<Bytes>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl ResultsBroadcaster {
    async fn run(mut self) {
        let listener = tokio::spawn(listen(
            self.live.clone(),
            self.view.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        ));
        let mut tick = tokio::time::interval(STATUS_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_votes = Instant::now();
        let mut votes_pending = false;
        let mut last_status = Instant::now();
        loop {
            tokio::select! {
                // Never closed: the actor holds the view, and with it the sender.
                Ok(()) = self.updates.changed(), if !votes_pending => votes_pending = true,
                // Hiding or revealing re-sends the counts in the new form.
                Ok(()) = self.hidden.changed(), if !votes_pending => votes_pending = true,
                // Coalesce: whatever arrived since the last frame goes into one.
                _ = tokio::time::sleep_until(next_votes), if votes_pending => {
                    let counts = self.updates.borrow_and_update().counts;
                    let hidden = *self.hidden.borrow_and_update();
                    self.send(votes_frame(self.live.poll(), &counts, hidden));
                    self.metrics.sse_frames.inc();
                    votes_pending = false;
                    next_votes = Instant::now() + FRAME_INTERVAL;
                }
                Some(detail) = self.failures.recv() => {
                    self.window.record(Instant::now(), detail);
                    if self.refresh_status() {
                        last_status = Instant::now();
                    }
                }
                _ = tick.tick() => {
                    self.window.expire(Instant::now());
                    let changed = self.refresh_status();
                    if changed || last_status.elapsed() >= STATUS_REFRESH {
                        if !changed {
                            self.send(self.status.frame());
                        }
                        last_status = Instant::now();
                    }
                }
                _ = self.shutdown.cancelled() => break,
            }
        }
        listener.abort();
    }

    /// Recomputes the status; sends a frame and returns true when it changed.
    fn refresh_status(&mut self) -> bool {
        let failed = self.window.count();
        let next = Status {
            degraded: failed > 0,
            failed_last_minute: failed,
            detail: self.window.last_detail.clone(),
            // Screens, not receivers: the fan-out's loops hold the receivers.
            watching: usize::try_from(self.metrics.sse_clients.get()).unwrap_or(0),
            version: self.status.version.clone(),
        };
        if next == self.status {
            return false;
        }
        self.status = next;
        let frame = self.status.frame();
        self.status_tx.send_replace(frame.clone());
        self.send(frame);
        true
    }

    fn send(&self, frame: Bytes) {
        // No receivers is fine: nobody is watching right now.
        let _ = self.frames.send(frame);
    }
}

/// Feeds other replicas' announcements into the view, resubscribing after
/// drops. Only validated ones reach the counts; the rest are counted.
async fn listen(live: Live, view: CountsView, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match live.subscribe().await {
            Ok(announcements) => {
                let mut announcements = std::pin::pin!(announcements);
                loop {
                    tokio::select! {
                        next = announcements.next() => match next {
                            Some(announced) => {
                                if let Err(why) = take(&live, &view, announced).await {
                                    let rejected = metrics.pubsub_rejected.with_label_values(&[why.label()]);
                                    rejected.inc();
                                    // Logged at 1, 2, 4, 8…: a flood of forgeries cannot flood the log.
                                    if rejected.get().is_power_of_two() {
                                        warn!(reason = why.label(), total = rejected.get(), "ignored pub/sub messages that fail validation");
                                    }
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

/// Offers a valid announcement to the view.
async fn take(
    live: &Live,
    view: &CountsView,
    announced: Result<Announcement, Rejected>,
) -> Result<(), Rejected> {
    let a = announced?;
    if live.check_seq(a.snapshot.seq, view.current().seq).await? && view.offer(a.snapshot) {
        debug!(origin = %a.origin, seq = a.snapshot.seq, "counts from pub/sub");
    }
    Ok(())
}

/// A broadcaster whose Redis is unreachable (nothing listens on port 1),
/// so only the test's own changes reach it.
#[cfg(test)]
pub(crate) struct Offline {
    pub handle: BroadcasterHandle,
    pub view: CountsView,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

#[cfg(test)]
pub(crate) fn spawn_offline() -> Offline {
    let view = CountsView::new();
    let live = Live::connect("redis://127.0.0.1:1/0", "test".into()).expect("valid URL");
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let (_hidden_tx, hidden) = watch::channel(false);
    let (handle, task) = BroadcasterHandle::spawn(
        view.clone(),
        live,
        hidden,
        "test".into(),
        metrics.clone(),
        shutdown.clone(),
    );
    Offline {
        handle,
        view,
        metrics,
        shutdown,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next `votes` frame's `print` count, skipping status frames.
    async fn next_print_count(frames: &mut broadcast::Receiver<Bytes>) -> u64 {
        loop {
            let frame = frames.recv().await.expect("broadcaster running");
            let text = std::str::from_utf8(&frame).expect("UTF-8");
            if let Some(data) = text.strip_prefix("event: votes\ndata: ") {
                let json: serde_json::Value = serde_json::from_str(data.trim()).expect("JSON");
                return json["print"]["count"].as_u64().expect("a count");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_becomes_one_frame_with_the_newest_counts_after_frame_interval() {
        let Offline {
            handle,
            view,
            metrics,
            shutdown,
            ..
        } = spawn_offline();
        let (_, mut frames) = handle.subscribe();
        let snap = |n| Snapshot {
            counts: Counts([n, 0, 0, 0, 0, 0, 0, 0]),
            seq: n,
            local: 0,
        };
        view.offer(snap(1));
        assert_eq!(
            next_print_count(&mut frames).await,
            1,
            "a lone change goes out at once"
        );
        let first = Instant::now();
        for n in 2..=50 {
            view.offer(snap(n));
        }
        assert_eq!(next_print_count(&mut frames).await, 50);
        assert_eq!(
            first.elapsed(),
            FRAME_INTERVAL,
            "the burst waited for the interval"
        );
        assert_eq!(metrics.sse_frames.get(), 2, "49 changes, one frame");
        assert_eq!(view.current().counts.0[0], 50);
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn failure_reports_beyond_the_queue_are_dropped_and_counted() {
        let Offline {
            handle,
            metrics,
            shutdown,
            ..
        } = spawn_offline();
        // The actor cannot run in between: the test holds the only thread.
        for _ in 0..FAILURE_QUEUE + 3 {
            handle.report_failure("PostgreSQL not available".into());
        }
        assert_eq!(handle.queue_depth(), FAILURE_QUEUE);
        assert_eq!(metrics.failure_reports_dropped.get(), 3);
        shutdown.cancel();
    }

    #[test]
    fn failure_window_counts_the_last_minute_then_goes_quiet() {
        let mut window = FailureWindow::default();
        let start = Instant::now();
        window.record(start, "first".into());
        window.record(start + Duration::from_millis(500), "second".into());
        window.record(start + Duration::from_secs(30), "third".into());
        assert_eq!(window.seconds.len(), 2, "one entry per second");
        assert_eq!(window.count(), 3);

        window.expire(start + Duration::from_secs(61));
        assert_eq!(window.count(), 1);
        assert_eq!(window.last_detail.as_deref(), Some("third"));

        window.expire(start + Duration::from_secs(91));
        assert_eq!(window.count(), 0);
        assert_eq!(window.last_detail, None);
    }

    #[test]
    fn status_frame_is_an_sse_event() {
        let status = Status {
            degraded: true,
            failed_last_minute: 5,
            detail: Some("boom".into()),
            watching: 2,
            version: "1.0.0".into(),
        };
        let frame = String::from_utf8(status.frame().to_vec()).expect("UTF-8");
        assert_eq!(
            frame,
            "event: status\ndata: {\"degraded\":true,\"failed_last_minute\":5,\
             \"detail\":\"boom\",\"watching\":2,\"version\":\"1.0.0\"}\n\n"
        );
    }
}
