//! When Redis must be rebuilt from PostgreSQL, without any I/O. Redis only
//! holds copies of PostgreSQL's totals (totals.rs), and a copy never adds, so
//! sending one is always safe; the one question left is whether Redis may
//! lack a copy that no later copy will replace: after a failed call (our
//! copy may be missing), or when Redis lost everything (a restart or a
//! flush). Then a rebuild writes every shard's copy again. VoteTally
//! reports what happened and carries out the decision it gets back.

use crate::poll::Snapshot;

/// Whether Redis is known to hold every copy this replica sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSync {
    /// False until a rebuild succeeded, and again after any failure.
    in_step: bool,
}

/// What Redis answered when a copy was stored, or when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Stored(Snapshot),
    /// Redis holds no copies (new, emptied or restarted).
    Lost,
    Failed,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Redis holds the copies: show its sum.
    Show(Snapshot),
    /// Ask for a rebuild from PostgreSQL now.
    Rebuild,
    /// Redis did not answer (counted in `redis_sync_failures_total`); the
    /// periodic check pings it and asks for a rebuild once it answers.
    Wait,
}

/// What the periodic check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Out of step: ping Redis and, when it answers, ask for a rebuild.
    Ping,
    /// In step: read Redis, to catch missed announcements and a lost Redis.
    Read,
}

impl Default for RedisSync {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisSync {
    /// Out of step until the start-up rebuild lands.
    pub fn new() -> Self {
        RedisSync { in_step: false }
    }

    /// Redis's answer to a stored copy, or to the periodic read.
    pub fn answered(&mut self, reading: Reading) -> Decision {
        match reading {
            Reading::Stored(snapshot) => Decision::Show(snapshot),
            Reading::Lost => {
                self.in_step = false;
                Decision::Rebuild
            }
            Reading::Failed => {
                self.in_step = false;
                Decision::Wait
            }
        }
    }

    /// A rebuild was stored (`ok`) or could not be.
    pub fn rebuilt(&mut self, ok: bool) {
        self.in_step = ok;
    }

    /// What the periodic check does now.
    pub fn check(&self) -> Check {
        if self.in_step {
            Check::Read
        } else {
            Check::Ping
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::Counts;

    const SNAP: Snapshot = Snapshot {
        counts: Counts([3, 0, 2, 0, 1, 0, 0, 0]),
        seq: 9,
        local: 0,
    };

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum In {
        Answered(Reading),
        Rebuilt(bool),
        Check,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Out {
        Decision(Decision),
        Check(Check),
        Nothing,
    }

    fn step(sync: &mut RedisSync, input: In) -> Out {
        match input {
            In::Answered(reading) => Out::Decision(sync.answered(reading)),
            In::Rebuilt(ok) => {
                sync.rebuilt(ok);
                Out::Nothing
            }
            In::Check => Out::Check(sync.check()),
        }
    }

    /// Every input in both states.
    #[test]
    fn every_input_in_every_state() {
        let out = RedisSync { in_step: false };
        let inn = RedisSync { in_step: true };
        let stored = In::Answered(Reading::Stored(SNAP));
        let lost = In::Answered(Reading::Lost);
        let failed = In::Answered(Reading::Failed);
        let show = Out::Decision(Decision::Show(SNAP));
        let rebuild = Out::Decision(Decision::Rebuild);
        let wait = Out::Decision(Decision::Wait);
        // (state before, input, decision, state after)
        let table = [
            (out, stored, show, out),
            (out, lost, rebuild, out),
            (out, failed, wait, out),
            (out, In::Rebuilt(true), Out::Nothing, inn),
            (out, In::Rebuilt(false), Out::Nothing, out),
            (out, In::Check, Out::Check(Check::Ping), out),
            (inn, stored, show, inn),
            (inn, lost, rebuild, out),
            (inn, failed, wait, out),
            (inn, In::Rebuilt(true), Out::Nothing, inn),
            (inn, In::Rebuilt(false), Out::Nothing, out),
            (inn, In::Check, Out::Check(Check::Read), inn),
        ];
        for (row, (before, input, decision, after)) in table.into_iter().enumerate() {
            let mut sync = before;
            assert_eq!(
                step(&mut sync, input),
                decision,
                "row {row}: {before:?} + {input:?}"
            );
            assert_eq!(sync, after, "row {row}: {before:?} + {input:?}");
        }
        assert_eq!(RedisSync::new(), out, "out of step until the first rebuild");
    }
}
