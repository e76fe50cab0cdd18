//! Connection budgets (docs/contract.md, connection budgets): every accepted connection takes a slot
//! of the general budget; a connection whose request turns out to be
//! `GET /stream` trades it for a slot of the stream budget. So screens can
//! never hold the connections that votes, pages and probes need, and a
//! full stream budget costs a screen a quick `503`, never a vote.
//!
//! A full general budget never leaves a new connection in the kernel's
//! backlog (docs/contract.md, eviction): the accept loop admits it at once
//! and asks an old connection to give its slot up — the least recently used
//! one idle for at least `IDLE_GRACE`, else the one admitted longest ago,
//! which answers its current request with `Connection: close`. A connection
//! that still has no slot after `ADMISSION_WAIT` is answered `503`. The
//! accept loop alone owns the `Registry` of admitted connections; each
//! connection shares only its `Slot` (atomics and one short lock) with it.
//!
//! The stream budget keeps a share for the projector (`STREAM_RESERVE`):
//! only a screen with a signed screen ticket may take those slots, so a flood
//! of anonymous streams never locks the speaker's screen out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::{Config, DEFAULT_STREAM_RESERVE};

/// Open files kept for everything that is not a client connection: the
/// listener, PostgreSQL and Redis connections, the runtime, log files.
pub const FD_HEADROOM: u64 = 256;
/// General connections at most when `MAX_CONNECTIONS` is unset: plenty for
/// votes and pages (oha's 256 connections, a crowd of phones between two
/// votes), while the rest of the open files go to screens. With eviction a
/// larger budget would only delay the churn a bigger flood causes, and
/// 1,024 idle connections cost about 9 MiB (docs/contract.md, connection budgets).
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
/// An idle keep-alive connection is closed to admit a new one only after it
/// has been idle this long: a proxy whose upstream keep-alive timeout is
/// shorter (nginx's `keepalive_timeout` in the `upstream` block) has closed
/// it first, so it never sends a request into a connection being closed.
pub const IDLE_GRACE: Duration = Duration::from_secs(2);
/// How long a new connection waits for a slot given up by an old one
/// before it is answered `503` + `Retry-After`.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(50);

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

/// The two budgets of one server, and the connections waiting for the
/// general one.
pub struct Admission {
    pub budgets: Budgets,
    others: Arc<Semaphore>,
    /// The stream budget but the reserve: any screen.
    streams: Arc<Semaphore>,
    /// The reserve: screens with a valid screen ticket only. Two semaphores,
    /// not one with a threshold, so that concurrent anonymous screens can
    /// never take a reserved slot between a check and an acquire.
    reserve: Arc<Semaphore>,
    reserved: usize,
    pending: Arc<Semaphore>,
    pending_places: usize,
    /// Zero of every `Slot`'s clock.
    epoch: Instant,
}

/// What became of a new connection in the accept loop.
pub enum Admitted {
    /// It holds a general slot.
    Now(Arc<Slot>),
    /// The budget is full: wait for a slot; `true` when an old connection
    /// was asked to give its slot up.
    Waiting(Waiter, bool),
    /// Even the pending places are taken: answer at once and close.
    Refused,
}

/// A connection waiting for a general slot, holding a pending place.
pub struct Waiter {
    pub slot: Arc<Slot>,
    others: Arc<Semaphore>,
    pending: OwnedSemaphorePermit,
}

impl Waiter {
    /// Waits up to `ADMISSION_WAIT` for a general slot. `Err` when none
    /// came: answer `503` while keeping the pending place.
    pub async fn wait(self) -> Result<Arc<Slot>, Pending> {
        let permit = tokio::time::timeout(ADMISSION_WAIT, self.others.acquire_owned());
        match permit.await {
            Ok(Ok(permit)) => {
                self.slot.fill(permit);
                Ok(self.slot)
            }
            Ok(Err(_)) | Err(_) => {
                self.slot.leave();
                Err(Pending(self.pending))
            }
        }
    }
}

/// A place among the connections being refused.
#[derive(Debug)]
pub struct Pending(#[allow(dead_code)] OwnedSemaphorePermit);

impl Admission {
    pub fn new(budgets: Budgets) -> Admission {
        Admission::with_pending(budgets, PENDING_CONNECTIONS)
    }

    pub fn with_pending(budgets: Budgets, pending: usize) -> Admission {
        Admission {
            budgets,
            others: Arc::new(Semaphore::new(budgets.others)),
            streams: Arc::new(Semaphore::new(budgets.streams)),
            reserve: Arc::new(Semaphore::new(0)),
            reserved: 0,
            pending: Arc::new(Semaphore::new(pending)),
            pending_places: pending,
            epoch: Instant::now(),
        }
    }

    /// Keeps `reserve` of the stream budget (capped to it) for screen tickets.
    pub fn with_stream_reserve(self, reserve: usize) -> Admission {
        let reserve = reserve.min(self.budgets.streams);
        Admission {
            streams: Arc::new(Semaphore::new(self.budgets.streams - reserve)),
            reserve: Arc::new(Semaphore::new(reserve)),
            reserved: reserve,
            ..self
        }
    }

    /// Stream slots kept for screen tickets.
    pub fn stream_reserve(&self) -> usize {
        self.reserved
    }

    /// The registry of one accept loop using this admission.
    pub fn registry(&self) -> Registry {
        Registry {
            slots: VecDeque::new(),
            seq: 0,
            limit: 2 * (self.budgets.others + self.pending_places),
        }
    }

    /// Admits a new connection: a free slot, else a victim from `registry`
    /// is asked to close and the connection waits for a slot. Never waits.
    pub fn admit(&self, registry: &mut Registry) -> Admitted {
        let slot = Arc::new(Slot::new(registry.next_seq(), self.epoch));
        if let Ok(permit) = self.others.clone().try_acquire_owned() {
            slot.fill(permit);
            registry.push(slot.clone());
            return Admitted::Now(slot);
        }
        let Ok(pending) = self.pending.clone().try_acquire_owned() else {
            return Admitted::Refused;
        };
        let evicted = registry.evict_one(self.now_ms()).is_some();
        registry.push(slot.clone());
        Admitted::Waiting(
            Waiter {
                slot,
                others: self.others.clone(),
                pending,
            },
            evicted,
        )
    }

    /// Waits for a general slot without evicting anyone (tests, and
    /// listeners whose clients are known).
    pub async fn connection(&self) -> Slot {
        let permit = self
            .others
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let slot = Slot::new(0, self.epoch);
        slot.fill(permit);
        slot
    }

    /// Moves `slot`'s connection into the stream budget; a screen with a
    /// valid ticket (`ticketed`) takes a reserved slot first, then any.
    /// `None` when no slot it may use is free: the connection keeps its
    /// general slot.
    pub fn stream(&self, slot: Option<&Slot>, ticketed: bool) -> Option<StreamSlot> {
        let take = |budget: &Arc<Semaphore>| budget.clone().try_acquire_owned().ok();
        let permit = match ticketed {
            true => take(&self.reserve).or_else(|| take(&self.streams))?,
            false => take(&self.streams)?,
        };
        if let Some(slot) = slot {
            slot.release();
        }
        Some(StreamSlot(permit))
    }

    /// Whether a stream would be admitted right now (for `HEAD /stream`),
    /// for a screen with (`ticketed`) or without a valid ticket.
    pub fn has_stream_room(&self, ticketed: bool) -> bool {
        self.streams.available_permits() > 0 || (ticketed && self.reserve.available_permits() > 0)
    }

    /// Connections held in the general and the stream budget (the reserve included).
    pub fn in_use(&self) -> Budgets {
        Budgets {
            streams: self.budgets.streams
                - self.streams.available_permits()
                - self.reserve.available_permits(),
            others: self.budgets.others - self.others.available_permits(),
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where a connection stands in the general budget.
const WAITING: u8 = 0;
const ADMITTED: u8 = 1;
/// It gave its general slot to a stream, or never got one, or ended.
const GONE: u8 = 2;

/// A connection's general slot and what eviction needs to know of it,
/// shared by the accept loop, the connection's task and its requests (a
/// request extension, so that a stream can give the slot back). The slot
/// is released on drop.
pub struct Slot {
    /// Admission order: the smallest live one is the oldest.
    seq: u64,
    epoch: Instant,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    state: AtomicU8,
    in_flight: AtomicU32,
    /// Milliseconds from `epoch` when the last request ended (or the
    /// connection was admitted).
    idle_since: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
}

impl Slot {
    fn new(seq: u64, epoch: Instant) -> Slot {
        Slot {
            seq,
            epoch,
            permit: Mutex::new(None),
            state: AtomicU8::new(WAITING),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(millis(epoch.elapsed())),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn fill(&self, permit: OwnedSemaphorePermit) {
        *self.lock() = Some(permit);
        self.idle_since
            .store(millis(self.epoch.elapsed()), Ordering::Relaxed);
        self.state.store(ADMITTED, Ordering::Release);
    }

    fn release(&self) {
        self.leave();
        self.lock().take();
    }

    /// Not (or no longer) a connection of the general budget.
    fn leave(&self) {
        self.state.store(GONE, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        // Never held across an await; a poisoned lock still holds a permit.
        self.permit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a request in progress until the returned guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Whether this connection was asked to give its slot up: its answers
    /// carry `Connection: close`.
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Resolves once this connection is asked to give its slot up.
    pub async fn evicted(&self) {
        let notified = self.evict.notified();
        if self.is_evicted() {
            return;
        }
        notified.await;
    }

    /// How long the connection has had no request in progress; `None`
    /// while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        self.idle_at(millis(self.epoch.elapsed()))
            .map(Duration::from_millis)
    }

    fn idle_at(&self, now_ms: u64) -> Option<u64> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(now_ms.saturating_sub(self.idle_since.load(Ordering::Acquire)))
    }

    fn candidate(&self) -> bool {
        self.state.load(Ordering::Acquire) == ADMITTED && !self.is_evicted()
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.evict.notify_one();
    }

    /// Gives the slot back: the connection ended (the registry may still
    /// hold this entry for a while).
    pub fn end(&self) {
        self.release();
    }
}

/// A request in progress on a connection (see `Slot::busy`).
pub struct Busy(Arc<Slot>);

impl Busy {
    pub fn slot(&self) -> &Slot {
        &self.0
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let slot = &self.0;
        slot.idle_since
            .store(millis(slot.epoch.elapsed()), Ordering::Release);
        slot.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connections one accept loop admitted, oldest first; owned by that
/// loop alone. Entries of connections that left the general budget are
/// dropped as the loop passes them, so it stays within twice the budget
/// plus the pending places.
pub struct Registry {
    slots: VecDeque<Arc<Slot>>,
    seq: u64,
    /// Entries kept before a full pass drops the gone ones.
    limit: usize,
}

impl Registry {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push(&mut self, slot: Arc<Slot>) {
        while self
            .slots
            .front()
            .is_some_and(|s| s.state.load(Ordering::Acquire) == GONE)
        {
            self.slots.pop_front();
        }
        // Streams and ended connections deeper in the queue.
        if self.slots.len() >= self.limit {
            self.prune();
        }
        self.slots.push_back(slot);
    }

    fn prune(&mut self) {
        self.slots
            .retain(|s| s.state.load(Ordering::Acquire) != GONE);
    }

    /// Asks one connection to give its slot up: the least recently used one
    /// idle for `IDLE_GRACE`, else the one admitted longest ago. Returns its
    /// admission order, or `None` when every admitted connection already was.
    fn evict_one(&mut self, now_ms: u64) -> Option<u64> {
        let grace = millis(IDLE_GRACE);
        let mut lru: Option<(u64, &Arc<Slot>)> = None;
        let mut oldest: Option<&Arc<Slot>> = None;
        for slot in self.slots.iter().filter(|s| s.candidate()) {
            oldest = oldest.or(Some(slot));
            if let Some(idle) = slot.idle_at(now_ms)
                && idle >= grace
                && lru.is_none_or(|(longest, _)| idle > longest)
            {
                lru = Some((idle, slot));
            }
        }
        let victim = lru.map(|(_, s)| s).or(oldest)?;
        victim.evict();
        Some(victim.seq)
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
        assert_eq!(
            b.streams + b.others + PENDING_CONNECTIONS,
            20_000 - FD_HEADROOM as usize
        );
        assert!(b.streams >= 18_000, "18,000 screens in 20,000 files");
        let small = Budgets::derive(&config(None, None), 1024, None);
        assert_eq!(small.others, (1024 - 256) / 4);
        assert_eq!(small.streams + small.others + (1024 - 256) / 8, 1024 - 256);
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

        let stream = admission
            .stream(Some(&first), false)
            .expect("room for one stream");
        assert_eq!(
            admission.in_use(),
            Budgets {
                streams: 1,
                others: 1
            }
        );
        assert!(!admission.has_stream_room(false));
        assert!(admission.stream(Some(&second), false).is_none());
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

    #[tokio::test]
    async fn the_reserve_admits_only_ticketed_screens() {
        let admission = Admission::new(Budgets {
            streams: 3,
            others: 1,
        })
        .with_stream_reserve(1);
        let anonymous: Vec<_> = (0..2)
            .map(|_| admission.stream(None, false).expect("the open share"))
            .collect();
        assert!(
            admission.stream(None, false).is_none(),
            "the reserve is kept"
        );
        assert!(!admission.has_stream_room(false));
        assert!(admission.has_stream_room(true));
        let projector = admission.stream(None, true).expect("the reserve");
        assert!(!admission.has_stream_room(true));
        assert!(admission.stream(None, true).is_none(), "all three in use");
        assert_eq!(admission.in_use().streams, 3);
        drop(anonymous);
        // A ticket may also use the open share once the reserve is taken.
        let second = admission.stream(None, true).expect("the open share");
        assert_eq!(admission.in_use().streams, 2);
        drop((projector, second));
        assert_eq!(admission.in_use().streams, 0);
    }

    #[test]
    fn the_default_reserve_is_at_most_a_quarter_of_the_budget() {
        let budgets = |streams| Budgets { streams, others: 1 };
        let mut config = config(None, None);
        assert_eq!(
            stream_reserve(&config, budgets(18_000)),
            DEFAULT_STREAM_RESERVE
        );
        assert_eq!(stream_reserve(&config, budgets(3)), 0);
        assert_eq!(stream_reserve(&config, budgets(40)), 10);
        config.stream_reserve = Some(5);
        assert_eq!(
            stream_reserve(&config, budgets(3)),
            2,
            "one stays open to all"
        );
        assert_eq!(stream_reserve(&config, budgets(100)), 5);
    }

    fn admitted(admission: &Admission, registry: &mut Registry) -> Arc<Slot> {
        match admission.admit(registry) {
            Admitted::Now(slot) => slot,
            _ => panic!("the budget has room"),
        }
    }

    #[test]
    fn an_idle_connection_past_the_grace_goes_first_least_recently_used() {
        let admission = Admission::with_pending(
            Budgets {
                streams: 1,
                others: 3,
            },
            2,
        );
        let mut registry = admission.registry();
        let slots: Vec<_> = (0..3)
            .map(|_| admitted(&admission, &mut registry))
            .collect();
        let grace = millis(IDLE_GRACE);
        // The oldest is busy; the two others idle, the third for longest.
        let _busy = slots[0].busy();
        slots[1].idle_since.store(500, Ordering::Release);
        slots[2].idle_since.store(100, Ordering::Release);
        let now = grace + 600;
        assert_eq!(registry.evict_one(now), Some(slots[2].seq));
        assert_eq!(registry.evict_one(now), Some(slots[1].seq));
        // No idle one left: the oldest, busy as it is.
        assert_eq!(registry.evict_one(now), Some(slots[0].seq));
        assert_eq!(registry.evict_one(now), None, "each is asked once");
        assert!(slots.iter().all(|s| s.is_evicted()));
    }

    #[test]
    fn within_the_grace_the_oldest_admitted_goes() {
        let admission = Admission::with_pending(
            Budgets {
                streams: 1,
                others: 3,
            },
            2,
        );
        let mut registry = admission.registry();
        let slots: Vec<_> = (0..3)
            .map(|_| admitted(&admission, &mut registry))
            .collect();
        let now = millis(IDLE_GRACE) - 1;
        assert_eq!(registry.evict_one(now), Some(slots[0].seq));
        // A connection that gave its slot to a stream is no candidate.
        assert!(admission.stream(Some(&slots[1]), false).is_some());
        assert_eq!(registry.evict_one(now), Some(slots[2].seq));
    }

    #[tokio::test]
    async fn a_full_budget_waits_for_a_slot_then_refuses() {
        let admission = Admission::with_pending(
            Budgets {
                streams: 1,
                others: 1,
            },
            1,
        );
        let mut registry = admission.registry();
        let first = admitted(&admission, &mut registry);
        let Admitted::Waiting(waiter, evicted) = admission.admit(&mut registry) else {
            panic!("the budget is full: wait");
        };
        assert!(evicted && first.is_evicted());
        assert!(
            matches!(admission.admit(&mut registry), Admitted::Refused),
            "the one pending place is taken"
        );
        first.end();
        let second = waiter.wait().await.expect("the evicted slot");
        assert_eq!(admission.in_use().others, 1);
        let Admitted::Waiting(waiter, _) = admission.admit(&mut registry) else {
            panic!("the budget is full: wait");
        };
        assert!(second.is_evicted(), "the next oldest was asked");
        let started = tokio::time::Instant::now();
        assert!(waiter.wait().await.is_err(), "nobody gave a slot up");
        assert!(started.elapsed() >= ADMISSION_WAIT);
    }
}
