//! The actor graph (docs/how-it-works.md), spawned in dependency order:
//! HTTP → ReferralValidator; HTTP → PersistenceWriter → VoteTally →
//! (CountsView) → ResultsBroadcaster → `/stream`. The only back edge is the
//! tally's recount request (`tally::RecountRequests`), `try_send` only.

pub mod broadcaster;
pub mod mailbox;
pub mod referral;
pub mod reveal;
pub mod session;
pub mod tally;
pub mod timeline;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::db::MeteredPool;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::poll::CountsView;
use broadcaster::BroadcasterHandle;
use referral::ReferralHandle;
use reveal::RevealHandle;
use tally::TallyHandle;
use timeline::TimelineHandle;
use writer::WriterHandle;

/// Handles to every actor; cloning is cheap.
#[derive(Clone)]
pub struct Actors {
    pub referral: ReferralHandle,
    pub writer: WriterHandle,
    pub tally: TallyHandle,
    pub broadcaster: BroadcasterHandle,
    pub reveal: RevealHandle,
    pub timeline: TimelineHandle,
}

/// The actors' tasks, awaited at shutdown.
pub struct ActorTasks(Vec<(&'static str, JoinHandle<()>)>);

impl Actors {
    /// `writer_pool` is the PersistenceWriter's alone; `pool` is shared by the rest.
    pub fn spawn(
        pool: Pool,
        writer_pool: MeteredPool,
        live: Live,
        view: CountsView,
        version: String,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (Actors, ActorTasks) {
        let process = process_name(live.origin());
        let poll = live.poll().clone();
        let (recount_tx, recount_rx) = tally::recount_channel();
        let (reveal, v_task) = RevealHandle::spawn(live.clone(), pool.clone(), shutdown.clone());
        let (broadcaster, b_task) = BroadcasterHandle::spawn(
            view.clone(),
            live.clone(),
            reveal.subscribe(),
            version.clone(),
            metrics.clone(),
            shutdown,
        );
        let (tally, t_task) = TallyHandle::spawn(live, view, recount_tx, metrics.clone());
        let (writer, w_task) = WriterHandle::spawn(
            writer_pool,
            tally.clone(),
            recount_rx,
            poll,
            metrics.clone(),
        );
        let (timeline, l_task) =
            TimelineHandle::spawn(pool.clone(), process, version, metrics.clone());
        let (referral, r_task) = ReferralHandle::spawn(pool, metrics);
        let tasks = ActorTasks(vec![
            ("ReferralValidator", r_task),
            ("PersistenceWriter", w_task),
            ("VoteTally", t_task),
            ("ResultsBroadcaster", b_task),
            ("Reveal", v_task),
            ("IncidentTimeline", l_task),
        ]);
        (
            Actors {
                referral,
                writer,
                tally,
                broadcaster,
                reveal,
                timeline,
            },
            tasks,
        )
    }

    /// Refreshes the queue-depth gauges (called when /metrics is scraped).
    pub fn export_queue_depths(&self, metrics: &Metrics) {
        for (actor, depth) in [
            ("referral", self.referral.queue_depth()),
            ("writer", self.writer.queue_depth()),
            ("tally", self.tally.queue_depth()),
            ("broadcaster", self.broadcaster.queue_depth()),
            ("timeline", self.timeline.queue_depth()),
        ] {
            metrics
                .queue_depth
                .with_label_values(&[actor])
                .set(depth as i64);
        }
    }
}

impl ActorTasks {
    /// Waits for the actors to drain, in graph order, until `deadline`.
    /// The handles must have been dropped, or the mailboxes never close.
    pub async fn join(self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        for (name, task) in self.0 {
            match tokio::time::timeout_at(until, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(actor = name, error = %e, "actor died"),
                Err(_) => {
                    warn!(actor = name, "actor still busy at shutdown deadline");
                    return;
                }
            }
        }
    }
}

/// This process among replicas and restarts, for the timeline's version
/// markers: the replica name plus the start time, because test instances
/// (and a quick restart in a reused PID) share a replica name.
fn process_name(origin: &str) -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{origin}@{started:x}")
}
