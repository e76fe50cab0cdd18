//! When Redis may be trusted: the rules that keep it in step with PostgreSQL,
//! without any I/O. VoteTally reports what happened (a batch mirrored, a
//! recount from PostgreSQL, a Redis reading, a rebuild) and carries out the
//! decision it gets back, so every rule is tested here without Redis.

use crate::poll::{Counts, Snapshot};

/// Recounts that must show the same Redis/PostgreSQL mismatch before Redis
/// is overwritten without being asked to (see `RedisSync::recounted`).
pub const MISMATCH_CONFIRMATIONS: u8 = 2;

/// Whether Redis holds every batch this replica committed, and a mismatch
/// that is waiting for confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSync {
    /// False while Redis may lack some of our batches; set by a rebuild or a
    /// recount that found Redis in step.
    in_step: bool,
    /// A mismatch seen by an unforced recount, waiting for confirmation.
    suspect: Option<Mismatch>,
}

/// Redis minus PostgreSQL per choice, and how often it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mismatch {
    diff: [i64; 5],
    seen: u8,
}

/// What Redis answered when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Stored(Snapshot),
    /// Redis holds no counts (new, emptied or restarted).
    Empty,
    Failed,
}

/// Why Redis fell out of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The global sequence went backwards: Redis was emptied meanwhile.
    Emptied,
    /// Redis did not answer (counted in `redis_sync_failures_total`).
    Failed,
}

/// What to do with Redis's answer to a mirrored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirrored {
    /// Redis holds the batch: show its snapshot.
    Show(Snapshot),
    /// Count the batch locally; a rebuild will catch Redis up.
    CountLocally(Fault),
}

/// What to do with a recount from PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recounted {
    /// Redis is trusted as it is: show what it holds.
    Keep(Snapshot),
    /// Overwrite Redis with the PostgreSQL counts; `mismatch` is the
    /// confirmed Redis-minus-PostgreSQL difference, if one was measured.
    Rebuild { mismatch: Option<[i64; 5]> },
}

/// What the periodic check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Out of step: ping Redis and, when it answers, ask for a forced recount.
    Ping,
    /// In step: read Redis (to catch missed announcements), after asking for
    /// an unforced recount when a mismatch awaits confirmation.
    Read { recount: bool },
}

/// What to do with the periodic reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Show(Snapshot),
    /// Redis lost the counts: ask for a forced recount.
    Lost,
    Failed,
}

impl Default for RedisSync {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisSync {
    /// Out of step until proven otherwise: the start-up recount compares
    /// Redis with PostgreSQL.
    pub fn new() -> Self {
        RedisSync {
            in_step: false,
            suspect: None,
        }
    }

    /// Whether a committed batch goes to Redis; otherwise it is counted locally.
    pub fn mirrors(&self) -> bool {
        self.in_step
    }

    /// Redis's answer to a mirrored batch (`None`: it failed), given the
    /// sequence shown before the batch was sent.
    pub fn mirrored(&mut self, shown_seq: u64, answer: Option<Snapshot>) -> Mirrored {
        match answer {
            // A fresh view (seq 0) cannot tell; otherwise the sequence must grow.
            Some(snapshot) if snapshot.seq > shown_seq || shown_seq == 0 => {
                Mirrored::Show(snapshot)
            }
            Some(_) => self.fall_out(Fault::Emptied),
            None => self.fall_out(Fault::Failed),
        }
    }

    fn fall_out(&mut self, fault: Fault) -> Mirrored {
        self.in_step = false;
        Mirrored::CountLocally(fault)
    }

    /// A recount of PostgreSQL, with what Redis held just after it; `None`
    /// for a forced recount, which rebuilds without looking.
    ///
    /// Unforced (start-up, or confirming a suspect), a mismatch must be seen
    /// again before Redis is overwritten: another replica may have committed
    /// between our recount and our read of Redis, and overwriting then would
    /// drop its votes from the live counts.
    pub fn recounted(&mut self, postgres: &Counts, redis: Option<Reading>) -> Recounted {
        let Some(Reading::Stored(stored)) = redis else {
            self.suspect = None;
            return Recounted::Rebuild { mismatch: None };
        };
        let diff = difference(&stored.counts, postgres);
        let seen = match self.suspect {
            _ if diff == [0; 5] => 0,
            Some(m) if m.diff == diff => m.seen + 1,
            _ => 1,
        };
        if seen >= MISMATCH_CONFIRMATIONS {
            self.suspect = None;
            return Recounted::Rebuild {
                mismatch: Some(diff),
            };
        }
        self.suspect = (seen > 0).then_some(Mismatch { diff, seen });
        self.in_step = true;
        Recounted::Keep(stored)
    }

    /// Redis was overwritten (`ok`) or could not be: in step exactly when it was.
    pub fn rebuilt(&mut self, ok: bool) {
        self.suspect = None;
        self.in_step = ok;
    }

    /// What the periodic check does now.
    pub fn check(&self) -> Check {
        if self.in_step {
            Check::Read {
                recount: self.suspect.is_some(),
            }
        } else {
            Check::Ping
        }
    }

    /// The periodic reading of Redis.
    pub fn checked(&mut self, redis: Reading) -> Checked {
        match redis {
            Reading::Stored(snapshot) => Checked::Show(snapshot),
            Reading::Empty => {
                self.in_step = false;
                Checked::Lost
            }
            Reading::Failed => {
                self.in_step = false;
                Checked::Failed
            }
        }
    }
}

/// A change this replica made on its own (Redis out of step): the counts
/// `counts`, ordered after `newest` by the local counter alone.
pub fn local_change(newest: Snapshot, counts: Counts) -> Snapshot {
    Snapshot {
        counts,
        seq: newest.seq,
        local: newest.local + 1,
    }
}

/// `newest` plus a committed batch, as a local change.
pub fn counted_locally(newest: Snapshot, delta: &Counts) -> Snapshot {
    let mut counts = newest.counts;
    for (n, d) in counts.0.iter_mut().zip(delta.0) {
        *n += d;
    }
    local_change(newest, counts)
}

fn difference(redis: &Counts, postgres: &Counts) -> [i64; 5] {
    let mut diff = [0i64; 5];
    for (d, (r, p)) in diff.iter_mut().zip(redis.0.iter().zip(postgres.0)) {
        *d = *r as i64 - p as i64;
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the tally can report, as one type for the tables.
    #[derive(Debug, Clone, Copy)]
    enum In {
        Batch,
        Mirrored(u64, Option<Snapshot>),
        Recounted(Option<Reading>),
        Rebuilt(bool),
        Check,
        Checked(Reading),
    }

    /// Every decision it can get back.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Out {
        Mirrors(bool),
        Mirrored(Mirrored),
        Recounted(Recounted),
        Rebuilt,
        Check(Check),
        Checked(Checked),
    }

    /// What PostgreSQL holds in every recount below.
    const PG: Counts = Counts([3, 0, 2, 0, 1]);
    const D: [i64; 5] = [1, 0, 0, 0, 0];
    const E: [i64; 5] = [0, 0, -2, 0, 0];

    fn snap(counts: [u64; 5], seq: u64) -> Snapshot {
        Snapshot {
            counts: Counts(counts),
            seq,
            local: 0,
        }
    }

    const AGREES: Snapshot = Snapshot {
        counts: PG,
        seq: 9,
        local: 0,
    };
    /// Redis holds one `print` more than PostgreSQL (difference `D`).
    const MORE: Snapshot = Snapshot {
        counts: Counts([4, 0, 2, 0, 1]),
        seq: 9,
        local: 0,
    };
    /// Redis lacks the two `ai` votes (difference `E`).
    const LESS: Snapshot = Snapshot {
        counts: Counts([3, 0, 0, 0, 1]),
        seq: 9,
        local: 0,
    };

    fn state(in_step: bool, suspect: Option<[i64; 5]>) -> RedisSync {
        RedisSync {
            in_step,
            suspect: suspect.map(|diff| Mismatch { diff, seen: 1 }),
        }
    }

    fn step(sync: &mut RedisSync, input: In) -> Out {
        match input {
            In::Batch => Out::Mirrors(sync.mirrors()),
            In::Mirrored(shown, answer) => Out::Mirrored(sync.mirrored(shown, answer)),
            In::Recounted(redis) => Out::Recounted(sync.recounted(&PG, redis)),
            In::Rebuilt(ok) => {
                sync.rebuilt(ok);
                Out::Rebuilt
            }
            In::Check => Out::Check(sync.check()),
            In::Checked(redis) => Out::Checked(sync.checked(redis)),
        }
    }

    /// Every input in each of the four states: out of step or in step, with
    /// or without a suspected mismatch (`D`).
    #[test]
    fn every_input_in_every_state() {
        use Out::*;
        let out = state(false, None);
        let inn = state(true, None);
        let out_d = state(false, Some(D));
        let in_d = state(true, Some(D));
        let ahead = In::Mirrored(5, Some(snap([1; 5], 6)));
        let fresh = In::Mirrored(0, Some(snap([1; 5], 3)));
        let behind = In::Mirrored(5, Some(snap([1; 5], 2)));
        let same = In::Mirrored(5, Some(snap([1; 5], 5)));
        let failed = In::Mirrored(5, None);
        let forced = In::Recounted(None);
        let agrees = In::Recounted(Some(Reading::Stored(AGREES)));
        let more = In::Recounted(Some(Reading::Stored(MORE)));
        let less = In::Recounted(Some(Reading::Stored(LESS)));
        let empty = In::Recounted(Some(Reading::Empty));
        let unreadable = In::Recounted(Some(Reading::Failed));
        let stored = In::Checked(Reading::Stored(AGREES));
        let lost = In::Checked(Reading::Empty);
        let down = In::Checked(Reading::Failed);
        let show = |s| Mirrored(super::Mirrored::Show(s));
        let local = |f| Mirrored(super::Mirrored::CountLocally(f));
        let keep = |s| Recounted(super::Recounted::Keep(s));
        let rebuild = |m| Recounted(super::Recounted::Rebuild { mismatch: m });
        let read = |recount| Check(super::Check::Read { recount });
        let ping = Check(super::Check::Ping);

        // (state before, input, decision, state after)
        let table: Vec<(RedisSync, In, Out, RedisSync)> = vec![
            // Out of step: batches are counted locally until a rebuild.
            (out, In::Batch, Mirrors(false), out),
            (out, ahead, show(snap([1; 5], 6)), out),
            (out, fresh, show(snap([1; 5], 3)), out),
            (out, behind, local(Fault::Emptied), out),
            (out, same, local(Fault::Emptied), out),
            (out, failed, local(Fault::Failed), out),
            (out, forced, rebuild(None), out),
            (out, agrees, keep(AGREES), inn),
            (out, more, keep(MORE), state(true, Some(D))),
            (out, less, keep(LESS), state(true, Some(E))),
            (out, empty, rebuild(None), out),
            (out, unreadable, rebuild(None), out),
            (out, In::Rebuilt(true), Rebuilt, inn),
            (out, In::Rebuilt(false), Rebuilt, out),
            (out, In::Check, ping, out),
            (out, stored, Checked(super::Checked::Show(AGREES)), out),
            (out, lost, Checked(super::Checked::Lost), out),
            (out, down, Checked(super::Checked::Failed), out),
            // In step: batches go to Redis, whose sequence must keep growing.
            (inn, In::Batch, Mirrors(true), inn),
            (inn, ahead, show(snap([1; 5], 6)), inn),
            (inn, fresh, show(snap([1; 5], 3)), inn),
            (inn, behind, local(Fault::Emptied), out),
            (inn, same, local(Fault::Emptied), out),
            (inn, failed, local(Fault::Failed), out),
            (inn, forced, rebuild(None), inn),
            (inn, agrees, keep(AGREES), inn),
            (inn, more, keep(MORE), in_d),
            (inn, less, keep(LESS), state(true, Some(E))),
            (inn, empty, rebuild(None), inn),
            (inn, unreadable, rebuild(None), inn),
            (inn, In::Rebuilt(true), Rebuilt, inn),
            (inn, In::Rebuilt(false), Rebuilt, out),
            (inn, In::Check, read(false), inn),
            (inn, stored, Checked(super::Checked::Show(AGREES)), inn),
            (inn, lost, Checked(super::Checked::Lost), out),
            (inn, down, Checked(super::Checked::Failed), out),
            // Out of step with a suspect: a rebuild is coming anyway.
            (out_d, In::Batch, Mirrors(false), out_d),
            (out_d, ahead, show(snap([1; 5], 6)), out_d),
            (out_d, fresh, show(snap([1; 5], 3)), out_d),
            (out_d, behind, local(Fault::Emptied), out_d),
            (out_d, same, local(Fault::Emptied), out_d),
            (out_d, failed, local(Fault::Failed), out_d),
            (out_d, forced, rebuild(None), out),
            (out_d, agrees, keep(AGREES), inn),
            (out_d, more, rebuild(Some(D)), out),
            (out_d, less, keep(LESS), state(true, Some(E))),
            (out_d, empty, rebuild(None), out),
            (out_d, unreadable, rebuild(None), out),
            (out_d, In::Rebuilt(true), Rebuilt, inn),
            (out_d, In::Rebuilt(false), Rebuilt, out),
            (out_d, In::Check, ping, out_d),
            (out_d, stored, Checked(super::Checked::Show(AGREES)), out_d),
            (out_d, lost, Checked(super::Checked::Lost), out_d),
            (out_d, down, Checked(super::Checked::Failed), out_d),
            // In step with a suspect: only the same mismatch seen again
            // overwrites Redis; another one starts counting afresh.
            (in_d, In::Batch, Mirrors(true), in_d),
            (in_d, ahead, show(snap([1; 5], 6)), in_d),
            (in_d, fresh, show(snap([1; 5], 3)), in_d),
            (in_d, behind, local(Fault::Emptied), out_d),
            (in_d, same, local(Fault::Emptied), out_d),
            (in_d, failed, local(Fault::Failed), out_d),
            (in_d, forced, rebuild(None), inn),
            (in_d, agrees, keep(AGREES), inn),
            (in_d, more, rebuild(Some(D)), inn),
            (in_d, less, keep(LESS), state(true, Some(E))),
            (in_d, empty, rebuild(None), inn),
            (in_d, unreadable, rebuild(None), inn),
            (in_d, In::Rebuilt(true), Rebuilt, inn),
            (in_d, In::Rebuilt(false), Rebuilt, out),
            (in_d, In::Check, read(true), in_d),
            (in_d, stored, Checked(super::Checked::Show(AGREES)), in_d),
            (in_d, lost, Checked(super::Checked::Lost), out_d),
            (in_d, down, Checked(super::Checked::Failed), out_d),
        ];

        let inputs = 18;
        assert_eq!(table.len(), 4 * inputs, "every state meets every input");
        for (row, (before, input, decision, after)) in table.into_iter().enumerate() {
            let mut sync = before;
            let got = step(&mut sync, input);
            assert_eq!(got, decision, "row {row}: {before:?} + {input:?}");
            assert_eq!(sync, after, "row {row}: {before:?} + {input:?}");
        }
    }

    /// Whole stories, as the tally lives them: (input, decision) in order.
    #[test]
    fn stories() {
        let stories: Vec<(&str, Vec<(In, Out)>)> = vec![
            (
                "start-up with Redis in step: mirror from the first batch",
                vec![
                    (In::Batch, Out::Mirrors(false)),
                    (
                        In::Recounted(Some(Reading::Stored(AGREES))),
                        Out::Recounted(Recounted::Keep(AGREES)),
                    ),
                    (In::Batch, Out::Mirrors(true)),
                    (In::Check, Out::Check(Check::Read { recount: false })),
                ],
            ),
            (
                "start-up with a stale Redis: the mismatch must repeat",
                vec![
                    (
                        In::Recounted(Some(Reading::Stored(MORE))),
                        Out::Recounted(Recounted::Keep(MORE)),
                    ),
                    (In::Check, Out::Check(Check::Read { recount: true })),
                    (
                        In::Recounted(Some(Reading::Stored(MORE))),
                        Out::Recounted(Recounted::Rebuild { mismatch: Some(D) }),
                    ),
                    (In::Rebuilt(true), Out::Rebuilt),
                    (In::Check, Out::Check(Check::Read { recount: false })),
                ],
            ),
            (
                "another replica's commit explains the mismatch: Redis is kept",
                vec![
                    (
                        In::Recounted(Some(Reading::Stored(MORE))),
                        Out::Recounted(Recounted::Keep(MORE)),
                    ),
                    (
                        In::Recounted(Some(Reading::Stored(AGREES))),
                        Out::Recounted(Recounted::Keep(AGREES)),
                    ),
                    (In::Check, Out::Check(Check::Read { recount: false })),
                ],
            ),
            (
                "Redis emptied while running: counted locally, then rebuilt",
                vec![
                    (
                        In::Recounted(Some(Reading::Stored(AGREES))),
                        Out::Recounted(Recounted::Keep(AGREES)),
                    ),
                    (In::Checked(Reading::Empty), Out::Checked(Checked::Lost)),
                    (In::Batch, Out::Mirrors(false)),
                    (In::Check, Out::Check(Check::Ping)),
                    (
                        In::Recounted(None),
                        Out::Recounted(Recounted::Rebuild { mismatch: None }),
                    ),
                    (In::Rebuilt(true), Out::Rebuilt),
                    (In::Batch, Out::Mirrors(true)),
                ],
            ),
            (
                "Redis down during a rebuild: stay out of step and keep pinging",
                vec![
                    (
                        In::Recounted(Some(Reading::Failed)),
                        Out::Recounted(Recounted::Rebuild { mismatch: None }),
                    ),
                    (In::Rebuilt(false), Out::Rebuilt),
                    (In::Batch, Out::Mirrors(false)),
                    (In::Check, Out::Check(Check::Ping)),
                ],
            ),
        ];
        for (story, steps) in stories {
            let mut sync = RedisSync::new();
            for (at, (input, decision)) in steps.into_iter().enumerate() {
                assert_eq!(step(&mut sync, input), decision, "{story}, step {at}");
            }
        }
    }

    #[test]
    fn local_changes_keep_the_global_sequence_and_bump_the_local_one() {
        let newest = Snapshot {
            counts: Counts([1, 2, 3, 4, 5]),
            seq: 7,
            local: 2,
        };
        assert_eq!(
            counted_locally(newest, &Counts([1, 0, 0, 0, 2])),
            Snapshot {
                counts: Counts([2, 2, 3, 4, 7]),
                seq: 7,
                local: 3,
            }
        );
        assert_eq!(local_change(newest, PG).counts, PG);
        assert_eq!(local_change(newest, PG).local, 3);
    }
}
