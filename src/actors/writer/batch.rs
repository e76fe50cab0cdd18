//! The pure steps of a group commit: a round's votes as columns (one per
//! key, one per device), the devices that wait for the next round, each
//! vote's answer once the batch committed, and the first batch id.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;

use super::{MAX_BATCH, PendingVote, Recorded, WriteError};
use crate::db;
use crate::poll::Poll;

/// Who holds each idempotency key of a committed batch.
pub(super) enum KeyOwners {
    /// Every key was new: this batch stored each key's first vote.
    AllNew,
    /// The stored vote of each key; a missing key was deleted by a reset since.
    Found(HashMap<String, db::votes::KeyedVote>),
    /// Could not be read: the keyed votes are answered 503 and their clients
    /// retry with the same keys, which settles them.
    Unknown,
}

/// Each vote's answer once its batch committed. An unkeyed vote was stored;
/// a keyed one was stored if it led its key in this batch and the key's
/// stored vote is this batch's, replayed if the stored vote has its choice,
/// and refused if it has another.
pub(super) fn outcomes<'a>(
    poll: &'a Poll,
    votes: &'a [PendingVote],
    leaders: &[bool],
    owners: &'a KeyOwners,
    devices: Option<&db::votes::Devices>,
    batch_id: i64,
) -> Vec<Result<Recorded, WriteError>> {
    // The stored choice's key of each key and whether this batch stored it.
    let mut held: HashMap<&str, Option<(&str, bool)>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(votes.len());
    for (pending, &leader) in votes.iter().zip(leaders) {
        let choice = pending.vote.choice;
        if let Some(device) = pending.vote.device.as_deref() {
            use db::votes::DeviceOutcome;
            let outcome = devices.and_then(|d| d.outcomes.get(device));
            outcomes.push(match outcome {
                Some(DeviceOutcome::New) => Ok(Recorded::Stored),
                Some(DeviceOutcome::Same) => Ok(Recorded::Unchanged),
                Some(DeviceOutcome::Changed(old)) => Ok(Recorded::Changed(old.clone())),
                Some(DeviceOutcome::Replayed) => Ok(Recorded::Replayed),
                Some(DeviceOutcome::KeyReused) => Err(WriteError::KeyReused),
                None => Err(WriteError::Unavailable),
            });
            continue;
        }
        let Some(key) = pending.vote.key.as_deref() else {
            outcomes.push(Ok(Recorded::Stored));
            continue;
        };
        let owner = if leader {
            let owner = match owners {
                KeyOwners::AllNew => Some((poll.key(choice), true)),
                KeyOwners::Found(found) => found
                    .get(key)
                    .map(|v| (v.choice.as_str(), v.batch_id == Some(batch_id))),
                KeyOwners::Unknown => None,
            };
            held.insert(key, owner);
            owner
        } else {
            held.get(key).copied().flatten()
        };
        outcomes.push(match owner {
            None => Err(WriteError::Unavailable),
            Some((stored, _)) if stored != poll.key(choice) => Err(WriteError::KeyReused),
            Some((_, ours)) if ours && leader => Ok(Recorded::Stored),
            Some(_) => Ok(Recorded::Replayed),
        });
    }
    outcomes
}

/// The batch as columns: unkeyed votes, and the first vote of each key
/// (a "leader"; `true` in the returned flags). Later votes with a key
/// already in the batch are answered from their leader's outcome.
pub(super) fn batch_rows<'a>(
    poll: &'a Poll,
    votes: &'a [PendingVote],
) -> (db::votes::BatchRows<'a>, Vec<bool>) {
    let mut rows = db::votes::BatchRows::default();
    let mut leaders = Vec::with_capacity(votes.len());
    let mut seen = HashSet::new();
    let mut keyed = Vec::new();
    for pending in votes {
        let vote = &pending.vote;
        if let Some(device) = vote.device.as_deref() {
            // One per device in a round (see `next_round`).
            rows.devices.push(db::votes::DeviceVote {
                device,
                choice: poll.key(vote.choice),
                referral: vote.referral.as_deref(),
                key: vote.key.as_deref(),
            });
            leaders.push(true);
            continue;
        }
        let leader = match vote.key.as_deref() {
            None => {
                rows.choices.push(poll.key(vote.choice));
                rows.referrals.push(vote.referral.as_deref());
                true
            }
            Some(key) => {
                let first = seen.insert(key);
                if first {
                    keyed.push((key, vote));
                }
                first
            }
        };
        leaders.push(leader);
    }
    keyed.sort_unstable_by_key(|(key, _)| *key);
    rows.devices.sort_unstable_by_key(|d| d.device);
    for (key, vote) in keyed {
        rows.keys.push(key);
        rows.keyed_choices.push(poll.key(vote.choice));
        rows.keyed_referrals.push(vote.referral.as_deref());
    }
    (rows, leaders)
}

/// Splits `votes` (in the order they came) into this round, left in
/// `votes`, and the rest, returned in order for later rounds. A vote waits
/// when its peer address already has `share` votes in this round, so a load
/// tester's thousands of votes go in rounds and a phone's vote from
/// elsewhere rides in the next one instead of behind them all; or when its
/// device has an earlier vote in this round or waiting, so a device's
/// votes are applied in the order it cast them; or when the round holds
/// `MAX_BATCH` votes already.
pub(super) fn next_round(votes: &mut Vec<PendingVote>, share: usize) -> Vec<PendingVote> {
    if votes.len() <= share && votes.iter().all(|p| p.vote.device.is_none()) {
        return Vec::new();
    }
    let mut per_peer: HashMap<Option<IpAddr>, usize> = HashMap::new();
    let mut devices = HashSet::new();
    let (mut now, mut later) = (Vec::with_capacity(votes.len()), Vec::new());
    for pending in votes.drain(..) {
        let taken = per_peer.entry(pending.vote.peer).or_insert(0);
        // A device's first vote claims it whether it goes now or later.
        let device_free = pending
            .vote
            .device
            .as_deref()
            .is_none_or(|d| devices.insert(d.to_owned()));
        if *taken < share && device_free && now.len() < MAX_BATCH {
            *taken += 1;
            now.push(pending);
        } else {
            later.push(pending);
        }
    }
    *votes = now;
    later
}

/// A random starting batch id, so replicas started together (every container
/// is PID 1) do not share ids. `RandomState` is seeded from the OS's
/// randomness; hashing the clock only spreads it.
pub(super) fn batch_id_base() -> i64 {
    let seed = RandomState::new().hash_one(std::time::SystemTime::now());
    // Non-negative, with room to count up without wrapping.
    (seed >> 2) as i64
}
