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
//! which answers its current request with `Connection: close`. The slot
//! it gives up goes to the connection that asked (its heir), not to the
//! first in line: so a new phone waits for one request of the connection
//! it displaced, never behind every connection a flood has waiting. A
//! connection that still has no slot after `ADMISSION_WAIT` is answered
//! `503`; one peer address holds at most half of the places for waiting
//! connections (peers.rs). The accept loop alone owns the `Registry` of
//! admitted connections; each connection shares only its `Slot` (atomics
//! and one short lock) with it.
//!
//! Without `MAX_CONNECTIONS` the general budget also borrows: with its own
//! slots taken, a connection may take a free slot of the stream budget
//! while more than an eighth of that budget stays free. Files the screens
//! do not use serve a crowd of keep-alive clients, so a load tester's two
//! thousand connections are served, not rotated. The screens keep their
//! claim: a screen refused while slots are lent stops the lending for
//! `LEND_PAUSE` and asks the oldest borrower to give its slot up.
//!
//! The stream budget keeps a share for the projector (`STREAM_RESERVE`):
//! only a screen with a signed screen ticket may take those slots, so a flood
//! of anonymous streams never locks the speaker's screen out.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::http::attention;

pub use budgets::{
    BASE_MEMORY_BYTES, Budgets, DEFAULT_MAX_CONNECTIONS, FD_HEADROOM, PENDING_CONNECTIONS,
    STREAM_MEMORY_BYTES, memory_limit, raise_open_file_limit, stream_reserve,
};

mod budgets;
mod peers;
mod slot;

use peers::{PeerShare, PeerShares};
pub use slot::{Busy, Slot};
use slot::{GONE, Lease, millis};

/// An idle keep-alive connection is closed to admit a new one only after it
/// has been idle this long: a proxy whose upstream keep-alive timeout is
/// shorter (nginx's `keepalive_timeout` in the `upstream` block) has closed
/// it first, so it never sends a request into a connection being closed.
pub const IDLE_GRACE: Duration = Duration::from_secs(2);
/// How long a new connection waits for a slot given up by an old one
/// before it is answered `503` + `Retry-After`.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(50);
/// How long the general budget stops borrowing stream slots once a screen
/// was refused: its retry (`Retry-After: 5`) finds the slot a borrower gave up.
pub const LEND_PAUSE: Duration = Duration::from_secs(10);

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
    /// Who holds the pending places.
    peers: PeerShares,
    /// Whether general connections may borrow stream slots.
    lending: bool,
    /// Stream slots lent to general connections now.
    lent: Arc<AtomicUsize>,
    /// No lending before this (ms from `epoch`).
    lend_paused_until: AtomicU64,
    /// Borrowers to ask to leave at the next admission.
    reclaims: AtomicUsize,
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
    /// The slot of the connection this one displaced, when it gives it up.
    heir: oneshot::Receiver<Lease>,
    pending: Pending,
}

impl Waiter {
    /// Waits up to `ADMISSION_WAIT` for a general slot. `Err` when none
    /// came: answer `503` while keeping the pending place.
    pub async fn wait(self) -> Result<Arc<Slot>, Pending> {
        let (mut heir, others) = (self.heir, self.others);
        // The displaced connection's slot, or any that comes free first. A
        // slot sent after this returns drops with the receiver, back into
        // the budget.
        let lease = async {
            tokio::select! {
                Ok(lease) = &mut heir => Some(lease),
                permit = others.acquire_owned() => permit.ok().map(Lease::own),
            }
        };
        match tokio::time::timeout(ADMISSION_WAIT, lease).await {
            Ok(Some(lease)) => {
                self.slot.fill(lease);
                Ok(self.slot)
            }
            Ok(None) | Err(_) => {
                self.slot.leave();
                Err(self.pending)
            }
        }
    }
}

/// A place among the connections being refused.
#[derive(Debug)]
pub struct Pending {
    _permit: OwnedSemaphorePermit,
    _share: PeerShare,
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
            peers: PeerShares::new(pending),
            lending: false,
            lent: Arc::default(),
            lend_paused_until: AtomicU64::new(0),
            reclaims: AtomicUsize::new(0),
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

    /// Lets general connections borrow free stream slots (an unset
    /// `MAX_CONNECTIONS`).
    pub fn with_lending(self, lending: bool) -> Admission {
        Admission { lending, ..self }
    }

    /// Stream slots kept for screen tickets.
    pub fn stream_reserve(&self) -> usize {
        self.reserved
    }

    /// The registry of one accept loop using this admission.
    pub fn registry(&self) -> Registry {
        Registry {
            slots: VecDeque::new(),
            limit: 2 * (self.budgets.others + self.pending_places + self.lendable()),
        }
    }

    /// Admits a new connection from `peer`: a free slot, else a victim from
    /// `registry` is asked to close and the connection waits for its slot.
    /// Never waits.
    pub fn admit(&self, registry: &mut Registry, peer: IpAddr) -> Admitted {
        let slot = Arc::new(Slot::new(self.epoch));
        for _ in 0..self.reclaims.swap(0, Ordering::AcqRel) {
            registry.evict_borrower();
        }
        if let Some(lease) = self.general_lease() {
            slot.fill(lease);
            registry.push(slot.clone());
            return Admitted::Now(slot);
        }
        // The semaphore first: under a flood most connections get no
        // place, and it costs no lock to say so.
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            return Admitted::Refused;
        };
        let Some(share) = self.peers.take(peer) else {
            return Admitted::Refused;
        };
        let (bequeath, heir) = oneshot::channel();
        let evicted = registry
            .evict_one(self.now_ms())
            .is_some_and(|victim| victim.bequeath(bequeath));
        registry.push(slot.clone());
        Admitted::Waiting(
            Waiter {
                slot,
                others: self.others.clone(),
                heir,
                pending: Pending {
                    _permit: permit,
                    _share: share,
                },
            },
            evicted,
        )
    }

    /// Stream slots the general budget may borrow at most.
    fn lendable(&self) -> usize {
        match self.lending {
            true => self.budgets.streams - self.lend_spare(),
            false => 0,
        }
    }

    /// Stream slots never lent: screens arriving during a flood take them at once.
    fn lend_spare(&self) -> usize {
        self.budgets.streams / 8
    }

    /// A free general slot, or a stream slot lent while lending is on and
    /// more than an eighth of the stream budget is free.
    fn general_lease(&self) -> Option<Lease> {
        if let Ok(permit) = self.others.clone().try_acquire_owned() {
            return Some(Lease::own(permit));
        }
        if !self.lending
            || self.now_ms() < self.lend_paused_until.load(Ordering::Acquire)
            || self.streams.available_permits() <= self.lend_spare()
        {
            return None;
        }
        let permit = self.streams.clone().try_acquire_owned().ok()?;
        Some(Lease::lent(permit, &self.lent))
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
        let slot = Slot::new(self.epoch);
        slot.fill(Lease::own(permit));
        slot
    }

    /// Moves `slot`'s connection into the stream budget; a screen with a
    /// valid ticket (`ticketed`) takes a reserved slot first, then any.
    /// `None` when no slot it may use is free: the connection keeps its
    /// general slot.
    pub fn stream(&self, slot: Option<&Slot>, ticketed: bool) -> Option<StreamSlot> {
        let take = |budget: &Arc<Semaphore>| budget.clone().try_acquire_owned().ok();
        // A connection on a lent stream slot keeps it as a screen.
        let lent = slot.and_then(Slot::take_lent);
        let permit = match ticketed {
            true => take(&self.reserve).or(lent).or_else(|| take(&self.streams)),
            false => lent.or_else(|| take(&self.streams)),
        };
        let Some(permit) = permit else {
            if self.lent.load(Ordering::Acquire) > 0 {
                let until = self.now_ms() + millis(LEND_PAUSE);
                self.lend_paused_until.fetch_max(until, Ordering::AcqRel);
                self.reclaims.fetch_add(1, Ordering::AcqRel);
            }
            return None;
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
    /// Lent stream slots count as general ones.
    pub fn in_use(&self) -> Budgets {
        let lent = self.lent.load(Ordering::Acquire);
        Budgets {
            streams: (self.budgets.streams
                - self.streams.available_permits()
                - self.reserve.available_permits())
            .saturating_sub(lent),
            others: self.budgets.others - self.others.available_permits() + lent,
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }
}

/// The connections one accept loop admitted, oldest first; owned by that
/// loop alone. Entries of connections that left the general budget are
/// dropped as the loop passes them, so it stays within twice the budget
/// plus the pending places.
pub struct Registry {
    slots: VecDeque<Arc<Slot>>,
    /// Entries kept before a full pass drops the gone ones.
    limit: usize,
}

impl Registry {
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
    /// idle for `IDLE_GRACE`, else the one admitted longest ago. Returns it,
    /// or `None` when every admitted connection already was.
    fn evict_one(&mut self, now_ms: u64) -> Option<&Arc<Slot>> {
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
        Some(victim)
    }

    /// Tells every connection still in the budget (serving, or waiting
    /// for a slot) that the server is shutting down.
    pub fn shut_all(&self) {
        for slot in &self.slots {
            slot.attention().raise(attention::SHUTDOWN);
        }
    }

    /// Asks the oldest connection on a lent stream slot to give it up.
    fn evict_borrower(&mut self) {
        let borrower = self
            .slots
            .iter()
            .find(|s| s.candidate() && s.borrower.load(Ordering::Acquire));
        if let Some(victim) = borrower {
            victim.evict();
        }
    }
}

/// A stream's place in the stream budget, held by its screen's ticket:
/// the permit goes back when it is dropped.
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests;
