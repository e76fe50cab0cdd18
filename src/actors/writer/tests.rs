use std::collections::HashMap;
use std::net::IpAddr;

use super::batch::KeyOwners;
use super::*;

/// A choice of the seed's poll.
fn c(key: &str) -> Choice {
    Poll::seed().choice(key).expect("a seed key")
}

fn pending(choice: Choice, key: Option<&str>) -> PendingVote {
    PendingVote {
        vote: NewVote {
            choice,
            referral: None,
            key: key.map(str::to_owned),
            device: None,
            peer: None,
        },
        enqueued: Instant::now(),
        reply: oneshot::channel().0,
    }
}

fn from_device(choice: Choice, device: &str) -> PendingVote {
    let mut vote = pending(choice, None);
    vote.vote.device = Some(device.to_owned());
    vote
}

#[test]
fn a_device_votes_once_per_round_in_the_order_it_came() {
    let mut votes = vec![
        from_device(c("ai"), "d1"),
        pending(c("print"), None),
        from_device(c("print"), "d1"),
        from_device(c("stare"), "d2"),
        from_device(c("revert"), "d1"),
    ];
    let later = next_round(&mut votes, PEER_SHARE);
    let keys = |votes: &[PendingVote]| -> Vec<(String, Option<String>)> {
        votes
            .iter()
            .map(|p| {
                (
                    Poll::seed().key(p.vote.choice).to_owned(),
                    p.vote.device.clone(),
                )
            })
            .collect()
    };
    assert_eq!(keys(&votes).len(), 3);
    assert_eq!(
        keys(&later),
        [
            ("print".to_owned(), Some("d1".to_owned())),
            ("revert".to_owned(), Some("d1".to_owned()))
        ]
    );
    let poll = Poll::seed();
    let (rows, leaders) = batch_rows(&poll, &votes);
    assert_eq!(rows.choices, ["print"], "devices are not plain votes");
    let devices: Vec<_> = rows.devices.iter().map(|d| (d.device, d.choice)).collect();
    assert_eq!(devices, [("d1", "ai"), ("d2", "stare")], "sorted by device");
    assert_eq!(leaders, [true, true, true]);
}

fn from_peer(peer: [u8; 4], key: &str) -> PendingVote {
    let mut vote = pending(c("ai"), Some(key));
    vote.vote.peer = Some(IpAddr::from(peer));
    vote
}

fn keys_of(votes: &[PendingVote]) -> Vec<&str> {
    votes.iter().filter_map(|p| p.vote.key.as_deref()).collect()
}

#[test]
fn one_address_has_its_share_of_a_round_and_another_rides_in_it() {
    let mut votes = vec![
        from_peer([10, 0, 0, 1], "a1"),
        from_peer([10, 0, 0, 1], "a2"),
        from_peer([10, 0, 0, 1], "a3"),
        from_peer([10, 0, 0, 1], "a4"),
        from_peer([10, 0, 0, 2], "b1"),
        pending(c("ai"), Some("none")),
    ];
    let later = next_round(&mut votes, 2);
    assert_eq!(keys_of(&votes), ["a1", "a2", "b1", "none"]);
    assert_eq!(keys_of(&later), ["a3", "a4"], "in the order they came");
}

#[test]
fn a_round_holds_at_most_one_batch() {
    let mut votes: Vec<_> = (0..=MAX_BATCH)
        .map(|n| from_peer((n as u32).to_be_bytes(), "k"))
        .collect();
    let later = next_round(&mut votes, PEER_SHARE);
    assert_eq!((votes.len(), later.len()), (MAX_BATCH, 1));
}

#[test]
fn a_device_behind_its_address_share_keeps_its_later_votes_behind_too() {
    let mut first = from_peer([10, 0, 0, 1], "a2");
    first.vote.device = Some("d1".to_owned());
    // The same device's next vote from another network must not overtake it.
    let mut second = from_peer([10, 0, 0, 2], "b1");
    second.vote.device = Some("d1".to_owned());
    let mut votes = vec![from_peer([10, 0, 0, 1], "a1"), first, second];
    let later = next_round(&mut votes, 1);
    assert_eq!(keys_of(&votes), ["a1"]);
    assert_eq!(keys_of(&later), ["a2", "b1"]);
}

#[test]
fn a_batch_sends_each_key_once_in_key_order() {
    let votes = [
        pending(c("ai"), Some("b")),
        pending(c("print"), None),
        pending(c("stare"), Some("a")),
        pending(c("ai"), Some("b")),
        pending(c("revert"), Some("b")),
        pending(c("print"), None),
    ];
    let poll = Poll::seed();
    let (rows, leaders) = batch_rows(&poll, &votes);
    assert_eq!(rows.choices, ["print", "print"]);
    assert_eq!(
        rows.keys,
        ["a", "b"],
        "sorted: replicas lock keys in one order"
    );
    assert_eq!(
        rows.keyed_choices,
        ["stare", "ai"],
        "the first vote of a key leads"
    );
    assert_eq!(leaders, [true, true, true, false, false, true]);
}

#[test]
fn outcomes_follow_the_stored_vote_of_each_key() {
    let votes = [
        pending(c("ai"), None),
        pending(c("ai"), Some("new")),
        pending(c("ai"), Some("new")),
        pending(c("stare"), Some("new")),
        pending(c("print"), Some("old")),
        pending(c("revert"), Some("old")),
        pending(c("print"), Some("reset")),
    ];
    let poll = Poll::seed();
    let (_, leaders) = batch_rows(&poll, &votes);
    let found = KeyOwners::Found(HashMap::from([
        (
            "new".to_owned(),
            db::votes::KeyedVote {
                choice: "ai".to_owned(),
                batch_id: Some(7),
            },
        ),
        (
            "old".to_owned(),
            db::votes::KeyedVote {
                choice: "print".to_owned(),
                batch_id: Some(3),
            },
        ),
    ]));
    let answers: Vec<String> = outcomes(&poll, &votes, &leaders, &found, None, 7)
        .iter()
        .map(|o| format!("{o:?}"))
        .collect();
    assert_eq!(
        answers,
        [
            "Ok(Stored)",
            "Ok(Stored)",
            "Ok(Replayed)",
            "Err(KeyReused)",
            "Ok(Replayed)",
            "Err(KeyReused)",
            "Err(Unavailable)",
        ]
    );
    let unknown = outcomes(&poll, &votes, &leaders, &KeyOwners::Unknown, None, 7);
    assert!(
        matches!(unknown[0], Ok(Recorded::Stored)),
        "unkeyed votes are stored"
    );
    assert!(
        unknown[1..]
            .iter()
            .all(|o| matches!(o, Err(WriteError::Unavailable)))
    );
}

#[test]
fn batch_ids_start_at_random_non_negative_values() {
    let (a, b) = (batch_id_base(), batch_id_base());
    assert_ne!(a, b);
    assert!(a >= 0 && b >= 0);
}
