//! ReferralValidator: checks `?referral=` codes against `referral_partners`.
//! Owns the referral cache (THE DELIBERATE BUG, docs/contract.md). Called by the vote
//! handler before a referral vote reaches the PersistenceWriter; the
//! PostgreSQL lookups run in their own tasks so they never queue behind one
//! another, at most `MAX_LOOKUPS` at a time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use thiserror::Error;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

use super::mailbox;
use crate::db::{self, DbError};
use crate::metrics::Metrics;

/// Mailbox size. Request path: callers wait up to `ENQUEUE_TIMEOUT`, then 503.
pub const REFERRAL_QUEUE: usize = 1024;
/// How long a caller waits for room in the mailbox.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound for one lookup, pool wait included.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Lookups in flight at most (they share the `DB_POOL_SIZE` pool with
/// probes and pages, never the writer's). Policy when all are busy: the
/// vote is refused at once with 503 + Retry-After, rather than queueing
/// tasks without bound.
pub const MAX_LOOKUPS: usize = 64;

/// Why a referral was not accepted.
#[derive(Debug, Error)]
pub enum ReferralError {
    #[error("Invalid referral code")]
    Unknown,
    #[error(
        "Service degraded: referral cache exhausted ({0} entries). \
         This simulates memory pressure from an unbounded cache."
    )]
    CacheExhausted(usize),
    #[error("referral lookup failed: {0}")]
    Db(#[from] DbError),
    #[error("referral validator unavailable")]
    Unavailable,
}

type Reply<T> = oneshot::Sender<Result<T, ReferralError>>;

enum ReferralMsg {
    Validate { code: String, reply: Reply<()> },
    ClearCache { reply: Reply<usize> },
}

/// Cloneable handle to the ReferralValidator.
#[derive(Clone)]
pub struct ReferralHandle {
    tx: mpsc::Sender<ReferralMsg>,
}

impl ReferralHandle {
    pub fn spawn(pool: Pool, metrics: Arc<Metrics>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(REFERRAL_QUEUE);
        let actor = ReferralValidator {
            rx,
            pool,
            lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
            metrics,
            cache: Vec::new(),
        };
        (ReferralHandle { tx }, tokio::spawn(actor.run()))
    }

    /// Ok when `code` belongs to a referral partner.
    pub async fn validate(&self, code: &str) -> Result<(), ReferralError> {
        self.ask(|reply| ReferralMsg::Validate {
            code: code.to_owned(),
            reply,
        })
        .await
    }

    /// Empties the referral cache (between talks); returns how many entries it held.
    pub async fn clear_cache(&self) -> Result<usize, ReferralError> {
        self.ask(|reply| ReferralMsg::ClearCache { reply }).await
    }

    /// Messages waiting in the mailbox.
    pub fn queue_depth(&self) -> usize {
        super::mailbox::depth(&self.tx)
    }

    async fn ask<T>(&self, msg: impl FnOnce(Reply<T>) -> ReferralMsg) -> Result<T, ReferralError> {
        mailbox::ask(&self.tx, ENQUEUE_TIMEOUT, None, msg)
            .await
            .unwrap_or(Err(ReferralError::Unavailable))
    }
}

/// One remembered validation.
#[allow(dead_code)] // Kept like the original: written, never read.
struct CacheEntry {
    code: String,
    timestamp: SystemTime,
    validated: bool,
}

struct ReferralValidator {
    rx: mpsc::Receiver<ReferralMsg>,
    pool: Pool,
    lookups: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    cache: Vec<CacheEntry>,
}

impl ReferralValidator {
    async fn run(mut self) {
        while let Some(msg) = self.rx.recv().await {
            match msg {
                ReferralMsg::Validate { code, reply } => self.validate(code, reply),
                ReferralMsg::ClearCache { reply } => {
                    let entries = self.cache.len();
                    self.cache.clear();
                    self.metrics.referral_cache_entries.set(0);
                    let _ = reply.send(Ok(entries));
                }
            }
        }
    }

    fn validate(&mut self, code: String, reply: Reply<()>) {
        // ====================================================================
        // 🐛 THE BUG: an unbounded cache. Every referral validation appends
        // an entry — valid code or not — and nothing ever removes one.
        // After 10 entries every referral vote fails, while /health and
        // /ready stay green. THE FIX: delete this cache and validate
        // straight against PostgreSQL.
        // ====================================================================
        self.cache.push(CacheEntry {
            code: code.clone(),
            timestamp: SystemTime::now(),
            validated: true,
        });
        self.metrics
            .referral_cache_entries
            .set(self.cache.len() as i64);
        if self.cache.len() > 10 {
            self.metrics.referral_cache_exhausted.inc();
            warn!(entries = self.cache.len(), "referral cache exhausted");
            let _ = reply.send(Err(ReferralError::CacheExhausted(self.cache.len())));
            return;
        }
        // ==================== end of the bug ====================

        // The lookup runs beside the actor so that lookups never wait for each other.
        let Ok(slot) = self.lookups.clone().try_acquire_owned() else {
            let _ = reply.send(Err(ReferralError::Unavailable));
            return;
        };
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let _ = reply.send(lookup(&pool, &code).await);
            drop(slot);
        });
    }
}

async fn lookup(pool: &Pool, code: &str) -> Result<(), ReferralError> {
    match db::within(LOOKUP_TIMEOUT, db::partners::exists(pool, code)).await? {
        true => Ok(()),
        false => Err(ReferralError::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_full_mailbox_answers_unavailable_after_enqueue_timeout() {
        let (tx, _mailbox) = mpsc::channel(1);
        let referrals = ReferralHandle { tx };
        let (reply, _) = oneshot::channel();
        referrals
            .tx
            .try_send(ReferralMsg::ClearCache { reply })
            .unwrap_or_else(|_| panic!("room for one"));
        let started = Instant::now();
        let answer = referrals.validate("conf-partner-2026").await;
        assert!(matches!(answer, Err(ReferralError::Unavailable)));
        assert_eq!(started.elapsed(), ENQUEUE_TIMEOUT);
        assert_eq!(referrals.queue_depth(), 1, "nothing was squeezed in");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_reply_is_unavailable_at_once() {
        let (tx, mut mailbox) = mpsc::channel(REFERRAL_QUEUE);
        let referrals = ReferralHandle { tx };
        // The validator takes the request and dies without answering.
        tokio::spawn(async move { drop(mailbox.recv().await) });
        let started = Instant::now();
        let answer = referrals.validate("conf-partner-2026").await;
        assert!(matches!(answer, Err(ReferralError::Unavailable)));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
