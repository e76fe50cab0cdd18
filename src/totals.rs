//! Running totals as PostgreSQL keeps them (docs/contract.md, counts exact by
//! construction): one row per shard, changed by the transaction that stores a
//! batch, with a version that only grows and the session's epoch (a reset
//! starts a new one). Redis and each replica hold *copies* of these rows: a
//! copy replaces an older copy of the same shard and never adds, so copies
//! can arrive late, twice or in any order and the sum stays a sum of
//! committed states. `Copies` is that rule, without I/O; live.rs's Lua
//! script applies the same rule inside Redis.

use std::collections::BTreeMap;

use crate::poll::{Counts, Poll};

/// Shards of the totals. A process writes to one of them (picked at random
/// when it starts), so replicas rarely queue on one hot row; the public
/// totals are the sum over all shards. Must match `db/migrations/0004`.
pub const SHARDS: i32 = 32;

/// One shard's totals as committed: counts by choice key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardCopy {
    pub shard: i32,
    pub epoch: i64,
    pub version: i64,
    pub counts: BTreeMap<String, u64>,
}

impl ShardCopy {
    /// Whether this copy may replace `other` (same shard): a later epoch,
    /// or the same epoch and a higher version.
    pub fn newer_than(&self, other: &ShardCopy) -> bool {
        (self.epoch, self.version) > (other.epoch, other.version)
    }

    /// The copy as Redis stores it: `version key=n key=n …` (keys are
    /// `[a-z0-9-]`, so spaces and `=` cannot occur in them).
    pub fn encode(&self) -> String {
        let mut out = self.version.to_string();
        for (key, n) in &self.counts {
            out.push_str(&format!(" {key}={n}"));
        }
        out
    }

    /// Parses `encode`'s form back (counts only; a malformed part is skipped,
    /// a malformed version gives `None`).
    pub fn decode(shard: i32, epoch: i64, text: &str) -> Option<ShardCopy> {
        let mut parts = text.split(' ');
        let version = parts.next()?.parse().ok()?;
        let counts = parts
            .filter_map(|part| {
                let (key, n) = part.split_once('=')?;
                Some((key.to_owned(), n.parse().ok()?))
            })
            .collect();
        Some(ShardCopy {
            shard,
            epoch,
            version,
            counts,
        })
    }
}

/// The newest known copy of every shard, in the newest epoch seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copies {
    epoch: i64,
    shards: BTreeMap<i32, ShardCopy>,
}

impl Copies {
    /// Takes `copy` if it is newer than what is held for its shard; a copy
    /// from a later epoch drops every copy of the earlier one (a reset
    /// zeroed them all). True when it changed anything.
    pub fn offer(&mut self, copy: ShardCopy) -> bool {
        if copy.epoch < self.epoch {
            return false;
        }
        if copy.epoch > self.epoch {
            self.epoch = copy.epoch;
            self.shards.clear();
        }
        match self.shards.get(&copy.shard) {
            Some(held) if !copy.newer_than(held) => false,
            _ => {
                self.shards.insert(copy.shard, copy);
                true
            }
        }
    }

    /// The public totals: the sum over shards, for the poll's choices
    /// (keys outside the poll stay in PostgreSQL and are not shown).
    pub fn sum(&self, poll: &Poll) -> Counts {
        sum(poll, self.shards.values())
    }
}

/// The sum of `copies` for the poll's choices.
pub fn sum<'a>(poll: &Poll, copies: impl IntoIterator<Item = &'a ShardCopy>) -> Counts {
    let mut counts = Counts::default();
    for copy in copies {
        for choice in poll.choices() {
            let n = copy.counts.get(poll.key(choice)).copied().unwrap_or(0);
            counts.add(choice, n);
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(shard: i32, epoch: i64, version: i64, print: u64) -> ShardCopy {
        ShardCopy {
            shard,
            epoch,
            version,
            counts: BTreeMap::from([("print".to_owned(), print), ("gone".to_owned(), 7)]),
        }
    }

    /// (copy offered, taken?, print total after), starting from nothing.
    #[test]
    fn a_copy_replaces_an_older_one_and_never_adds() {
        let poll = Poll::seed();
        let print_key = poll.choice("print").expect("seed key");
        let mut copies = Copies::default();
        let table = [
            (copy(1, 5, 1, 3), true, 3),
            (copy(1, 5, 1, 3), false, 3), // the same copy twice: nothing added
            (copy(2, 5, 4, 10), true, 13),
            (copy(1, 5, 3, 4), true, 14),
            (copy(1, 5, 2, 9), false, 14),  // late and older: ignored
            (copy(2, 4, 9, 99), false, 14), // an earlier epoch: ignored
            (copy(2, 6, 1, 0), true, 0),    // a reset: shard 1's old copy goes
            (copy(1, 6, 1, 2), true, 2),
            (copy(1, 5, 8, 50), false, 2), // pre-reset copy arriving late
        ];
        for (i, (offered, taken, print)) in table.into_iter().enumerate() {
            assert_eq!(copies.offer(offered), taken, "row {i}");
            assert_eq!(copies.sum(&poll).get(print_key), print, "row {i}");
            assert_eq!(
                copies.sum(&poll).total(),
                print,
                "keys outside the poll are not shown"
            );
        }
    }

    #[test]
    fn copies_round_trip_through_their_redis_form() {
        let original = copy(3, 9, 12, 41);
        let text = original.encode();
        assert_eq!(text, "12 gone=7 print=41");
        assert_eq!(ShardCopy::decode(3, 9, &text), Some(original));
        assert_eq!(ShardCopy::decode(3, 9, "x print=1"), None);
    }
}
