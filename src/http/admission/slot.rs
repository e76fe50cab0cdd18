//! One admitted connection's general slot (`Slot`): its lease, who
//! inherits it, and what eviction reads of it (admission.rs).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::http::attention::{self, Attention};

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where a connection stands in the general budget.
pub(super) const WAITING: u8 = 0;
pub(super) const ADMITTED: u8 = 1;
/// It gave its general slot to a stream, or never got one, or ended.
pub(super) const GONE: u8 = 2;

/// A connection's general slot and what eviction needs to know of it,
/// shared by the accept loop, the connection's task and its requests (a
/// request extension, so that a stream can give the slot back). The slot
/// is released on drop.
pub struct Slot {
    epoch: Instant,
    held: Mutex<Held>,
    pub(super) state: AtomicU8,
    /// It holds a lent stream slot: the lease says so too, but the registry
    /// scans every slot and reads this without taking each one's lock.
    pub(super) borrower: AtomicBool,
    in_flight: AtomicU32,
    /// Milliseconds from `epoch` when the last request ended (or the
    /// connection was admitted).
    pub(super) idle_since: AtomicU64,
    /// Eviction and shutdown are raised here for the connection's task.
    attention: Arc<Attention>,
}

impl Slot {
    pub(super) fn new(epoch: Instant) -> Slot {
        Slot {
            epoch,
            held: Mutex::new(Held::default()),
            state: AtomicU8::new(WAITING),
            borrower: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(millis(epoch.elapsed())),
            attention: Arc::default(),
        }
    }

    pub(super) fn fill(&self, lease: Lease) {
        self.borrower.store(lease.lent.is_some(), Ordering::Release);
        self.lock().lease = Some(lease);
        self.idle_since
            .store(millis(self.epoch.elapsed()), Ordering::Relaxed);
        self.state.store(ADMITTED, Ordering::Release);
    }

    /// Gives the slot back: to the heir when one waits for it, else to the
    /// budget.
    pub(super) fn release(&self) {
        self.leave();
        let held = std::mem::take(&mut *self.lock());
        if let (Some(lease), Some(heir)) = (held.lease, held.heir) {
            // A heir that stopped waiting drops it, back into the budget.
            let _ = heir.send(lease);
        }
    }

    /// The stream slot this connection borrowed, if it did.
    pub(super) fn take_lent(&self) -> Option<OwnedSemaphorePermit> {
        let mut held = self.lock();
        match held.lease.as_ref()?.lent {
            Some(_) => held.lease.take().map(|lease| lease.permit),
            None => None,
        }
    }

    /// Names the connection that gets this slot when it is given up;
    /// `false` when it was given up already.
    pub(super) fn bequeath(&self, heir: oneshot::Sender<Lease>) -> bool {
        let mut held = self.lock();
        if held.lease.is_none() {
            return false;
        }
        held.heir = Some(heir);
        true
    }

    /// Not (or no longer) a connection of the general budget.
    pub(super) fn leave(&self) {
        self.state.store(GONE, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Never held across an await; a poisoned lock still holds a permit.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a request in progress until the returned guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Whether this connection was asked to give its slot up: its answers
    /// carry `Connection: close`.
    pub fn is_evicted(&self) -> bool {
        self.attention.is_raised(attention::EVICTED)
    }

    /// What the connection's task watches while it serves.
    pub fn attention(&self) -> &Arc<Attention> {
        &self.attention
    }

    /// How long the connection has had no request in progress; `None`
    /// while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        self.idle_at(millis(self.epoch.elapsed()))
            .map(Duration::from_millis)
    }

    pub(super) fn idle_at(&self, now_ms: u64) -> Option<u64> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(now_ms.saturating_sub(self.idle_since.load(Ordering::Acquire)))
    }

    pub(super) fn candidate(&self) -> bool {
        self.state.load(Ordering::Acquire) == ADMITTED && !self.is_evicted()
    }

    pub(super) fn evict(&self) {
        self.attention.raise(attention::EVICTED);
    }

    /// Gives the slot back: the connection ended (the registry may still
    /// hold this entry for a while).
    pub fn end(&self) {
        self.release();
    }
}

/// A slot's lease, and who inherits it.
#[derive(Default)]
struct Held {
    lease: Option<Lease>,
    heir: Option<oneshot::Sender<Lease>>,
}

/// A general slot: a permit of the general budget, or one lent by the
/// stream budget.
pub(super) struct Lease {
    permit: OwnedSemaphorePermit,
    lent: Option<Lent>,
}

impl Lease {
    pub(super) fn own(permit: OwnedSemaphorePermit) -> Lease {
        Lease { permit, lent: None }
    }

    /// A stream slot lent, counted in `lent` while it is.
    pub(super) fn lent(permit: OwnedSemaphorePermit, lent: &Arc<AtomicUsize>) -> Lease {
        lent.fetch_add(1, Ordering::AcqRel);
        Lease {
            permit,
            lent: Some(Lent(lent.clone())),
        }
    }
}

/// Counts a lent stream slot until it is given back or becomes a screen's.
struct Lent(Arc<AtomicUsize>);

impl Drop for Lent {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
