use super::*;
use crate::config::{Config, DEFAULT_STREAM_RESERVE};

use std::net::Ipv4Addr;

use futures_util::FutureExt;

/// Where the test connections come from; `OTHER` is another client.
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

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

/// An admission of `others` general and `streams` stream slots with
/// `pending` waiting places, and its registry.
fn admission(others: usize, streams: usize, pending: usize) -> (Admission, Registry) {
    let admission = Admission::with_pending(Budgets { streams, others }, pending);
    let registry = admission.registry();
    (admission, registry)
}

/// `n` connections admitted, in order.
fn admit_all(admission: &Admission, registry: &mut Registry, n: usize) -> Vec<Arc<Slot>> {
    (0..n).map(|_| admitted(admission, registry)).collect()
}

/// A general budget of three, all three admitted, in order.
fn three_admitted() -> (Admission, Registry, Vec<Arc<Slot>>) {
    let (admission, mut registry) = admission(3, 1, 2);
    let slots = admit_all(&admission, &mut registry, 3);
    (admission, registry, slots)
}

/// A connection from `peer` that finds the budget full and waits.
fn waiting(admission: &Admission, registry: &mut Registry, peer: IpAddr) -> Waiter {
    match admission.admit(registry, peer) {
        Admitted::Waiting(waiter, _) => waiter,
        _ => panic!("the budget is full: wait"),
    }
}

fn admitted(admission: &Admission, registry: &mut Registry) -> Arc<Slot> {
    match admission.admit(registry, PEER) {
        Admitted::Now(slot) => slot,
        _ => panic!("the budget has room"),
    }
}

/// Whether the next connection asked to leave is `slot`.
fn evicts(registry: &mut Registry, now_ms: u64, slot: &Arc<Slot>) -> bool {
    registry
        .evict_one(now_ms)
        .is_some_and(|victim| Arc::ptr_eq(victim, slot))
}

#[test]
fn an_idle_connection_past_the_grace_goes_first_least_recently_used() {
    let (_admission, mut registry, slots) = three_admitted();
    let grace = millis(IDLE_GRACE);
    // The oldest is busy; the two others idle, the third for longest.
    let _busy = slots[0].busy();
    slots[1].idle_since.store(500, Ordering::Release);
    slots[2].idle_since.store(100, Ordering::Release);
    let now = grace + 600;
    assert!(evicts(&mut registry, now, &slots[2]));
    assert!(evicts(&mut registry, now, &slots[1]));
    // No idle one left: the oldest, busy as it is.
    assert!(evicts(&mut registry, now, &slots[0]));
    assert!(registry.evict_one(now).is_none(), "each is asked once");
    assert!(slots.iter().all(|s| s.is_evicted()));
}

#[test]
fn within_the_grace_the_oldest_admitted_goes() {
    let (admission, mut registry, slots) = three_admitted();
    let now = millis(IDLE_GRACE) - 1;
    assert!(evicts(&mut registry, now, &slots[0]));
    // A connection that gave its slot to a stream is no candidate.
    assert!(admission.stream(Some(&slots[1]), false).is_some());
    assert!(evicts(&mut registry, now, &slots[2]));
}

#[tokio::test]
async fn a_full_budget_waits_for_a_slot_then_refuses() {
    let (admission, mut registry) = admission(1, 1, 1);
    let first = admitted(&admission, &mut registry);
    let Admitted::Waiting(waiter, evicted) = admission.admit(&mut registry, PEER) else {
        panic!("the budget is full: wait");
    };
    assert!(evicted && first.is_evicted());
    assert!(
        matches!(admission.admit(&mut registry, PEER), Admitted::Refused),
        "the one pending place is taken"
    );
    first.end();
    let second = waiter.wait().await.expect("the evicted slot");
    assert_eq!(admission.in_use().others, 1);
    let waiter = waiting(&admission, &mut registry, PEER);
    assert!(second.is_evicted(), "the next oldest was asked");
    let started = tokio::time::Instant::now();
    assert!(waiter.wait().await.is_err(), "nobody gave a slot up");
    assert!(started.elapsed() >= ADMISSION_WAIT);
}

#[tokio::test]
async fn a_displaced_slot_goes_to_the_connection_that_displaced_it() {
    let (admission, mut registry, slots) = three_admitted();
    let first = waiting(&admission, &mut registry, PEER);
    let second = waiting(&admission, &mut registry, OTHER);
    assert!(slots[0].is_evicted() && slots[1].is_evicted());
    // The first is in line for the budget when the second one's victim
    // leaves: the slot is the second's all the same.
    let first = first.wait();
    tokio::pin!(first);
    assert!((&mut first).now_or_never().is_none(), "no slot yet");
    slots[1].end();
    let second = tokio::time::timeout(ADMISSION_WAIT / 2, second.wait())
        .await
        .expect("the heir does not wait for the budget")
        .expect("a slot");
    assert!(!second.is_evicted());
    assert!(first.await.is_err(), "its victim is still there");
    assert_eq!(admission.in_use().others, 3);
}

#[test]
fn one_peer_holds_at_most_half_the_pending_places() {
    let (admission, mut registry) = admission(1, 1, 4);
    let _first = admitted(&admission, &mut registry);
    let mut waiting: Vec<_> = (0..2)
        .map(|_| waiting(&admission, &mut registry, PEER))
        .collect();
    assert!(
        matches!(admission.admit(&mut registry, PEER), Admitted::Refused),
        "the flood's share is taken"
    );
    assert!(
        matches!(admission.admit(&mut registry, OTHER), Admitted::Waiting(..)),
        "another client still finds a place"
    );
    drop(waiting.pop());
    assert!(
        matches!(admission.admit(&mut registry, PEER), Admitted::Waiting(..)),
        "a place given back can be taken again"
    );
}

/// One general slot and sixteen stream slots, lent while more than two
/// (an eighth) stay free; fifteen connections admitted, fourteen of them
/// on lent slots.
fn lending() -> (Admission, Registry, Vec<Arc<Slot>>) {
    let (admission, _) = admission(1, 16, 2);
    let admission = admission.with_lending(true);
    let mut registry = admission.registry();
    let slots = admit_all(&admission, &mut registry, 15);
    (admission, registry, slots)
}

/// The two stream slots lending leaves free, taken by screens.
fn screens_fill(admission: &Admission) -> [StreamSlot; 2] {
    [(); 2].map(|_| admission.stream(None, false).expect("a free stream slot"))
}

#[test]
fn without_max_connections_the_general_budget_borrows_free_stream_slots() {
    let (admission, mut registry, admitted) = lending();
    assert!(admitted.iter().all(|s| !s.is_evicted()), "nobody rotated");
    assert_eq!(
        admission.in_use(),
        Budgets {
            streams: 0,
            others: 15
        },
        "lent slots count as general ones"
    );
    assert!(
        matches!(admission.admit(&mut registry, PEER), Admitted::Waiting(..)),
        "two stream slots stay free for screens"
    );
    assert!(admission.stream(None, false).is_some());
    admitted.iter().for_each(|s| s.end());
    assert_eq!(admission.in_use().others, 0, "lent slots come back");
}

#[test]
fn a_borrower_turning_into_a_screen_keeps_its_slot() {
    let (admission, _registry, slots) = lending();
    let _screens = screens_fill(&admission);
    // No stream slot is free, but the last one is its own.
    let stream = admission.stream(Some(&slots[14]), false);
    assert!(stream.is_some());
    assert_eq!(
        admission.in_use(),
        Budgets {
            streams: 3,
            others: 14
        }
    );
}

#[test]
fn a_screen_refused_while_slots_are_lent_takes_one_back() {
    let (admission, mut registry, slots) = lending();
    let _screens = screens_fill(&admission);
    assert!(admission.stream(None, false).is_none(), "all are taken");
    // The next connection asks the oldest borrower to leave for the
    // screens, and lending stops: it waits, displacing the oldest of all
    // for itself.
    let Admitted::Waiting(waiter, _) = admission.admit(&mut registry, PEER) else {
        panic!("no lending after a screen was refused");
    };
    assert!(slots[1].is_evicted(), "the oldest borrower");
    assert!(slots[0].is_evicted(), "the newcomer's own victim");
    assert!(slots[2..].iter().all(|s| !s.is_evicted()));
    slots[1].end();
    drop(waiter);
    assert!(
        admission.stream(None, false).is_some(),
        "the screen's retry finds it"
    );
}
