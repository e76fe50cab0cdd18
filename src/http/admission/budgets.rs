//! How many connections each budget admits: `MAX_STREAMS` and
//! `MAX_CONNECTIONS` when set, else derived from the open-file limit and,
//! under a memory limit, from memory; and the projector's reserve.

use crate::config::{Config, DEFAULT_STREAM_RESERVE};

/// Open files kept for everything that is not a client connection: the
/// listener, PostgreSQL and Redis connections, the runtime, log files.
pub const FD_HEADROOM: u64 = 256;
/// General connections when `MAX_CONNECTIONS` is unset: plenty for votes
/// and pages (oha's 256 connections, a crowd of phones between two votes),
/// while the rest of the open files go to screens. Beyond it the general
/// budget borrows the stream slots no screen uses (admission.rs), so a
/// bigger fixed share would only take files from the screens; 1,024 idle
/// connections cost about 9 MiB (docs/contract.md, connection budgets).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Connections accepted beyond the general budget at once: waiting at most
/// `ADMISSION_WAIT` for a slot, or being answered `503`. Their files are
/// kept out of the default stream budget.
pub const PENDING_CONNECTIONS: usize = 512;
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
            let pending = PENDING_CONNECTIONS.min(sockets / 8);
            let by_files = sockets.saturating_sub(others + pending).max(1);
            let by_memory = memory_limit.map_or(usize::MAX, |limit| {
                let n = limit.saturating_sub(BASE_MEMORY_BYTES) / STREAM_MEMORY_BYTES;
                usize::try_from(n).unwrap_or(usize::MAX)
            });
            by_files.min(by_memory).max(1)
        });
        Budgets { streams, others }
    }
}

/// The stream slots kept for screen tickets: `STREAM_RESERVE` when set
/// (config.rs keeps it below `MAX_STREAMS`; below a derived budget here),
/// else `DEFAULT_STREAM_RESERVE` but at most a quarter of the budget, so a
/// small budget (a laptop, a test) still leaves most slots to anyone.
pub fn stream_reserve(config: &Config, budgets: Budgets) -> usize {
    match config.stream_reserve {
        Some(n) => n.min(budgets.streams.saturating_sub(1)),
        None => DEFAULT_STREAM_RESERVE.min(budgets.streams / 4),
    }
}

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
