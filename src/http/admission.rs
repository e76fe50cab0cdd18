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

pub use budgets::{
    BASE_MEMORY_BYTES, Budgets, DEFAULT_MAX_CONNECTIONS, FD_HEADROOM, PENDING_CONNECTIONS,
    STREAM_MEMORY_BYTES, memory_limit, raise_open_file_limit, stream_reserve,
};

mod budgets;

/// An idle keep-alive connection is closed to admit a new one only after it
/// has been idle this long: a proxy whose upstream keep-alive timeout is
/// shorter (nginx's `keepalive_timeout` in the `upstream` block) has closed
/// it first, so it never sends a request into a connection being closed.
pub const IDLE_GRACE: Duration = Duration::from_secs(2);
/// How long a new connection waits for a slot given up by an old one
/// before it is answered `503` + `Retry-After`.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(50);

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
                Err(Pending {
                    _permit: self.pending,
                })
            }
        }
    }
}

/// A place among the connections being refused.
#[derive(Debug)]
pub struct Pending {
    _permit: OwnedSemaphorePermit,
}

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
        Some(StreamSlot { _permit: permit })
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

/// A stream's place in the stream budget, held by its screen's ticket:
/// the permit goes back when it is dropped.
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests;
