//! Connection budgets (docs/contract.md, connection budgets): every accepted connection takes a slot
//! of the general budget; a connection whose request turns out to be
//! `GET /stream` trades it for a slot of the stream budget. So screens can
//! never hold the connections that votes, pages and probes need, and a
//! full stream budget costs a screen a quick `503`, never a vote.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::config::Config;

/// Open files kept for everything that is not a client connection: the
/// listener, PostgreSQL and Redis connections, the runtime, log files.
pub const FD_HEADROOM: u64 = 256;
/// General connections at most when `MAX_CONNECTIONS` is unset: plenty for
/// votes and pages (oha's 256 connections, a crowd of phones between two
/// votes), while the rest of the open files go to screens.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// What one idle stream may cost in memory (docs/contract.md, connection budgets), for the default
/// stream budget under a memory limit.
pub const STREAM_MEMORY_BYTES: u64 = 12 * 1024;
/// Memory kept for everything but streams under a memory limit.
pub const BASE_MEMORY_BYTES: u64 = 32 * 1024 * 1024;

/// How many connections each budget admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    pub streams: usize,
    pub others: usize,
}

impl Budgets {
    /// The configured budgets, or defaults derived from the open-file limit
    /// and, when the process has one, its memory limit.
    pub fn derive(config: &Config, open_files: u64, memory_limit: Option<u64>) -> Budgets {
        let sockets =
            usize::try_from(open_files.saturating_sub(FD_HEADROOM).max(2)).unwrap_or(usize::MAX);
        let others = config
            .max_connections
            .unwrap_or_else(|| DEFAULT_MAX_CONNECTIONS.min(sockets / 4).max(1));
        let streams = config.max_streams.unwrap_or_else(|| {
            let by_files = sockets.saturating_sub(others).max(1);
            let by_memory = memory_limit.map_or(usize::MAX, |limit| {
                let n = limit.saturating_sub(BASE_MEMORY_BYTES) / STREAM_MEMORY_BYTES;
                usize::try_from(n).unwrap_or(usize::MAX)
            });
            by_files.min(by_memory).max(1)
        });
        Budgets { streams, others }
    }
}

/// The two budgets of one server.
pub struct Admission {
    pub budgets: Budgets,
    others: Arc<Semaphore>,
    streams: Arc<Semaphore>,
}

impl Admission {
    pub fn new(budgets: Budgets) -> Admission {
        Admission {
            budgets,
            others: Arc::new(Semaphore::new(budgets.others)),
            streams: Arc::new(Semaphore::new(budgets.streams)),
        }
    }

    /// Waits for a general slot for a new connection.
    pub async fn connection(&self) -> Slot {
        let permit = self
            .others
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Slot(Mutex::new(Some(permit)))
    }

    /// Moves `slot`'s connection into the stream budget. `None` when the
    /// stream budget is full: the connection keeps its general slot.
    pub fn stream(&self, slot: Option<&Slot>) -> Option<StreamSlot> {
        let permit = match self.streams.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => return None,
        };
        if let Some(slot) = slot {
            slot.release();
        }
        Some(StreamSlot(permit))
    }

    /// Whether a stream would be admitted right now (for `HEAD /stream`).
    pub fn has_stream_room(&self) -> bool {
        self.streams.available_permits() > 0
    }

    /// Connections held in the general and the stream budget.
    pub fn in_use(&self) -> Budgets {
        Budgets {
            streams: self.budgets.streams - self.streams.available_permits(),
            others: self.budgets.others - self.others.available_permits(),
        }
    }
}

/// A connection's general slot, reachable by its requests (a request
/// extension) so that a stream can give it back. Released on drop.
pub struct Slot(Mutex<Option<OwnedSemaphorePermit>>);

impl Slot {
    fn release(&self) {
        // Never held across an await; a poisoned lock still holds a permit.
        let mut permit = self.0.lock().unwrap_or_else(|e| e.into_inner());
        permit.take();
    }
}

/// A stream's place in the stream budget, held by its response body.
pub struct StreamSlot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Raises the soft open-file limit to the hard one; returns the limit now
/// in force, or `None` where it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own and pass by pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit only reads the struct we pass.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        Some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    None
}

/// The cgroup (v2) memory limit of this process, when it has one.
pub fn memory_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(streams: Option<usize>, others: Option<usize>) -> Config {
        let mut config = Config::from_lookup(|_| None).expect("defaults are valid");
        config.max_streams = streams;
        config.max_connections = others;
        config
    }

    #[test]
    fn defaults_leave_headroom_under_the_open_file_limit() {
        let b = Budgets::derive(&config(None, None), 20_000, None);
        assert_eq!(b.others, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(b.streams + b.others, 20_000 - FD_HEADROOM as usize);
        let small = Budgets::derive(&config(None, None), 1024, None);
        assert_eq!(small.others, (1024 - 256) / 4);
        assert_eq!(small.streams + small.others, 1024 - 256);
    }

    #[test]
    fn a_memory_limit_caps_the_default_stream_budget() {
        let b = Budgets::derive(&config(None, None), 1 << 20, Some(256 << 20));
        assert_eq!(b.streams, (224 << 20) / 12 / 1024);
        assert!(b.streams >= 18_000, "18,000 screens fit in 256 MiB");
    }

    #[test]
    fn configured_budgets_win() {
        let b = Budgets::derive(&config(Some(3), Some(7)), 20_000, Some(1 << 20));
        assert_eq!(
            b,
            Budgets {
                streams: 3,
                others: 7
            }
        );
    }

    #[tokio::test]
    async fn a_stream_trades_its_general_slot_and_a_full_budget_refuses() {
        let admission = Admission::new(Budgets {
            streams: 1,
            others: 2,
        });
        let first = admission.connection().await;
        let second = admission.connection().await;
        assert_eq!(
            admission.in_use(),
            Budgets {
                streams: 0,
                others: 2
            }
        );

        let stream = admission.stream(Some(&first)).expect("room for one stream");
        assert_eq!(
            admission.in_use(),
            Budgets {
                streams: 1,
                others: 1
            }
        );
        assert!(!admission.has_stream_room());
        assert!(admission.stream(Some(&second)).is_none());
        assert_eq!(
            admission.in_use(),
            Budgets {
                streams: 1,
                others: 1
            }
        );

        drop(stream);
        drop(first);
        drop(second);
        assert_eq!(
            admission.in_use(),
            Budgets {
                streams: 0,
                others: 0
            }
        );
    }
}
