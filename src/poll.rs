//! The poll itself: the five choices, a count snapshot and the shared view of
//! the latest snapshot. VoteTally offers snapshots of its own batches and
//! rebuilds, the ResultsBroadcaster offers other replicas' snapshots from
//! Redis pub/sub, and readers (`/votes`, `/stream`) only ever see the newest
//! one. Nothing replaces the view unconditionally: a rebuild wins because its
//! sequence is above every one seen before.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The question shown above the buttons.
pub const QUESTION: &str = "What's your go-to debugging strategy?";

/// One answer of the poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    Print,
    Stare,
    Ai,
    Revert,
    Restart,
}

impl Choice {
    /// All choices in display order.
    pub const ALL: [Choice; 5] = [
        Choice::Print,
        Choice::Stare,
        Choice::Ai,
        Choice::Revert,
        Choice::Restart,
    ];

    /// The key used in URLs, JSON, Redis and PostgreSQL.
    pub fn key(self) -> &'static str {
        match self {
            Choice::Print => "print",
            Choice::Stare => "stare",
            Choice::Ai => "ai",
            Choice::Revert => "revert",
            Choice::Restart => "restart",
        }
    }

    /// The human label.
    pub fn label(self) -> &'static str {
        match self {
            Choice::Print => "Add more print statements",
            Choice::Stare => "Stare at the code until it confesses",
            Choice::Ai => "Ask an AI to explain it",
            Choice::Revert => "Revert and pretend it never happened",
            Choice::Restart => "Turn it off and on again",
        }
    }

    /// Position in `ALL`, used to index `Counts`.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl Serialize for Choice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

/// An unknown choice key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownChoice;

impl FromStr for Choice {
    type Err = UnknownChoice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Choice::ALL
            .into_iter()
            .find(|c| c.key() == s)
            .ok_or(UnknownChoice)
    }
}

/// Vote counts per choice, indexed by `Choice::index`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "[u64; 5]")]
pub struct Counts(pub [u64; 5]);

impl From<[u64; 5]> for Counts {
    fn from(value: [u64; 5]) -> Self {
        Counts(value)
    }
}

impl Counts {
    pub fn get(&self, choice: Choice) -> u64 {
        self.0[choice.index()]
    }

    pub fn add(&mut self, choice: Choice, n: u64) {
        self.0[choice.index()] += n;
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Serialises as the `/votes` body: every choice, in order, with its label.
impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry {
            count: u64,
            label: &'static str,
        }
        let mut map = serializer.serialize_map(Some(Choice::ALL.len()))?;
        for choice in Choice::ALL {
            map.serialize_entry(
                choice.key(),
                &Entry {
                    count: self.get(choice),
                    label: choice.label(),
                },
            )?;
        }
        map.end()
    }
}

/// Counts plus their position in the global order of changes.
///
/// `seq` comes from Redis (`INCR` in the same transaction as the counts), so
/// snapshots from every replica are totally ordered. While Redis is down a
/// replica can only bump `local`, which orders its own offline changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub counts: Counts,
    pub seq: u64,
    pub local: u64,
}

impl Snapshot {
    fn newer_than(&self, other: &Snapshot) -> bool {
        (self.seq, self.local) > (other.seq, other.local)
    }
}

/// The newest known snapshot, shared by writers (tally, pub/sub) and readers.
///
/// A `watch` channel rather than a queue: readers only want the latest value,
/// so a burst of changes coalesces for free and nobody can fall behind.
#[derive(Clone)]
pub struct CountsView {
    tx: Arc<watch::Sender<Snapshot>>,
}

impl Default for CountsView {
    fn default() -> Self {
        Self::new()
    }
}

impl CountsView {
    pub fn new() -> Self {
        CountsView {
            tx: Arc::new(watch::Sender::new(Snapshot::default())),
        }
    }

    /// Publishes `snapshot` if it is newer than the current one.
    pub fn offer(&self, snapshot: Snapshot) -> bool {
        self.tx.send_if_modified(|current| {
            let newer = snapshot.newer_than(current);
            if newer {
                *current = snapshot;
            }
            newer
        })
    }

    /// The newest snapshot.
    pub fn current(&self) -> Snapshot {
        *self.tx.borrow()
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_index_in_order() {
        for (i, choice) in Choice::ALL.into_iter().enumerate() {
            assert_eq!(choice.index(), i);
            assert_eq!(choice.key().parse::<Choice>(), Ok(choice));
        }
        assert_eq!("PRINT".parse::<Choice>(), Err(UnknownChoice));
    }

    #[test]
    fn counts_serialise_all_five_in_order() {
        let mut counts = Counts::default();
        counts.add(Choice::Ai, 3);
        let json = serde_json::to_string(&counts).expect("serialises");
        assert!(
            json.starts_with(r#"{"print":{"count":0,"label":"Add more print statements"},"stare""#)
        );
        assert!(json.contains(r#""ai":{"count":3,"label":"Ask an AI to explain it"}"#));
        assert!(json.ends_with(r#""restart":{"count":0,"label":"Turn it off and on again"}}"#));
    }

    #[test]
    fn view_keeps_only_newer_snapshots() {
        let view = CountsView::new();
        let snap = |seq, local, n| Snapshot {
            counts: Counts([n, 0, 0, 0, 0]),
            seq,
            local,
        };
        assert!(view.offer(snap(5, 0, 5)));
        assert!(!view.offer(snap(4, 0, 4)), "older remote snapshot ignored");
        assert!(view.offer(snap(5, 1, 6)), "local offline change accepted");
        assert!(view.offer(snap(6, 0, 7)));
        assert_eq!(view.current().counts.get(Choice::Print), 7);
        assert!(view.offer(snap(8, 0, 0)), "a rebuild wins by its sequence");
        assert_eq!(view.current().counts.total(), 0);
    }
}
