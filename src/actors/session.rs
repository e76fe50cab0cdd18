//! A session reset, in one place (docs/contract.md, `POST /admin/reset`):
//! the votes go (PostgreSQL and Redis, on every replica) while running
//! exports are cut, then the timeline's unsent counts, the results shown
//! again, and, if asked, this process's referral cache.

use std::time::Duration;

use deadpool_postgres::Pool;
use tracing::{info, warn};

use super::Actors;
use super::referral::ReferralError;
use super::writer::WriteError;
use crate::db;

/// How often a running reset looks again for exports to cut (one may start
/// between a look and the TRUNCATE).
const EXPORT_CUT_EVERY: Duration = Duration::from_millis(200);

/// Why a session reset did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The votes were not deleted.
    #[error("votes not reset: {0}")]
    Votes(#[from] WriteError),
    /// The votes were deleted; this process's referral cache was not emptied.
    #[error("referral cache not emptied: {0}")]
    ReferralCache(ReferralError),
}

/// What a finished reset did besides deleting the votes.
#[derive(Debug)]
pub struct SessionReset {
    /// Entries dropped from this process's referral cache, when asked.
    pub referral_entries: Option<usize>,
}

impl Actors {
    /// Deletes every vote and starts the session afresh; `pool` looks for
    /// exports to cut.
    pub async fn reset_session(
        &self,
        pool: &Pool,
        clear_referral_cache: bool,
    ) -> Result<SessionReset, ResetError> {
        cutting_exports(pool, self.writer.reset()).await?;
        // The reset's own transaction already emptied the stored timeline and
        // made the results visible. It happened, so what follows is logged
        // rather than reported when it fails.
        if let Err(e) = self.timeline.reset().await {
            warn!(error = %e, "reset could not drop the timeline's unsent counts");
        }
        self.reveal.changed(false).await;
        // Only this process's cache: with several replicas, restart the deployment.
        let referral_entries = if clear_referral_cache {
            let entries = self.referral.clear_cache().await;
            Some(entries.map_err(ResetError::ReferralCache)?)
        } else {
            None
        };
        Ok(SessionReset { referral_entries })
    }
}

/// Runs `reset` while cutting every running export, on every replica, until
/// it is done: the TRUNCATE needs the table to itself, and an export's COPY
/// holds a lock on it for as long as its client takes to read.
async fn cutting_exports<T>(pool: &Pool, reset: impl Future<Output = T>) -> T {
    let cutter = async {
        loop {
            match db::export::cut_running(pool).await {
                Ok(0) => {}
                Ok(n) => info!(exports = n, "reset cut running exports"),
                Err(e) => warn!(error = %e, "reset could not look for running exports"),
            }
            tokio::time::sleep(EXPORT_CUT_EVERY).await;
        }
    };
    tokio::select! {
        done = reset => done,
        () = cutter => unreachable!("the cutter loops until the reset is done"),
    }
}
