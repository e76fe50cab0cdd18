//! The poll itself: the active question and its 2–8 choices (the seed's, or
//! a poll file: docs/contract.md, your own poll), a count snapshot and the
//! shared view of the latest snapshot. VoteTally offers snapshots of its own
//! batches and rebuilds, the ResultsBroadcaster offers other replicas'
//! snapshots from Redis pub/sub, and readers (`/votes`, `/stream`) only ever
//! see the newest one. Nothing replaces the view unconditionally: a rebuild
//! wins because its sequence is above every one seen before.

use std::ops::Range;
use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

/// Fewest choices a poll may have.
pub const MIN_CHOICES: usize = 2;
/// Most choices a poll may have; `Counts` holds this many.
pub const MAX_CHOICES: usize = 8;
/// Longest choice key (characters of `[a-z0-9-]`).
pub const MAX_KEY_CHARS: usize = 32;
/// Longest choice label, in characters.
pub const MAX_LABEL_CHARS: usize = 120;
/// Longest question, in characters.
pub const MAX_QUESTION_CHARS: usize = 200;
/// Largest poll file read: far above 8 full options, comments included.
pub const MAX_POLL_BYTES: usize = 64 * 1024;

/// The seed's question, shown when no poll file is given.
const SEED_QUESTION: &str = "What's your go-to debugging strategy?";
/// The seed's choices: (key, label) in display order.
const SEED_CHOICES: [(&str, &str); 5] = [
    ("print", "Add more print statements"),
    ("stare", "Stare at the code until it confesses"),
    ("ai", "Ask an AI to explain it"),
    ("revert", "Revert and pretend it never happened"),
    ("restart", "Turn it off and on again"),
];

/// One answer of the active poll: its position in the poll's order, which
/// indexes `Counts`. Only `Poll` makes them, so a `Choice` is always one of
/// the poll's; its key and label come from the poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Choice(u8);

impl Choice {
    /// Position in the poll, used to index `Counts`.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One option of a poll: its key (URLs, JSON, Redis, PostgreSQL, metrics)
/// and the label people read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollOption {
    pub key: String,
    pub label: String,
}

/// The active poll: a question and 2–8 options with distinct keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    question: String,
    options: Vec<PollOption>,
}

/// Why a poll file was refused: what is wrong, and where when known.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{reason}", line.map(|n| format!("line {n}: ")).unwrap_or_default())]
pub struct PollError {
    /// 1-based line of the offending part of the file.
    pub line: Option<usize>,
    pub reason: String,
}

/// The file's shape; spans give the line of a bad value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollFile {
    question: toml::Spanned<String>,
    #[serde(default)]
    option: Vec<toml::Spanned<OptionFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionFile {
    key: toml::Spanned<String>,
    label: toml::Spanned<String>,
}

impl Default for Poll {
    fn default() -> Self {
        Poll::seed()
    }
}

impl Poll {
    /// The seed's poll: what every surface shows without a poll file.
    pub fn seed() -> Poll {
        Poll {
            question: SEED_QUESTION.to_owned(),
            options: SEED_CHOICES
                .iter()
                .map(|(key, label)| PollOption {
                    key: (*key).to_owned(),
                    label: (*label).to_owned(),
                })
                .collect(),
        }
    }

    /// Parses and checks a poll file (TOML): `question = "…"` and 2–8
    /// `[[option]]` tables with `key` and `label`, nothing else.
    pub fn parse(text: &str) -> Result<Poll, PollError> {
        if text.len() > MAX_POLL_BYTES {
            return Err(PollError {
                line: None,
                reason: format!("larger than {MAX_POLL_BYTES} bytes"),
            });
        }
        let at = |span: Range<usize>| Some(line_of(text, span.start));
        let file: PollFile = toml::from_str(text).map_err(|e| PollError {
            line: e.span().and_then(at),
            // One line: start-up errors are one line (main.rs).
            reason: e.message().trim().replace('\n', "; "),
        })?;
        let fail = |span: Range<usize>, reason: String| PollError {
            line: at(span),
            reason,
        };
        let question = file.question.get_ref().trim();
        if !(1..=MAX_QUESTION_CHARS).contains(&question.chars().count()) {
            return Err(fail(
                file.question.span(),
                format!("question: expected 1–{MAX_QUESTION_CHARS} characters"),
            ));
        }
        if !(MIN_CHOICES..=MAX_CHOICES).contains(&file.option.len()) {
            return Err(PollError {
                line: file.option.get(MAX_CHOICES).and_then(|o| at(o.span())),
                reason: format!(
                    "expected {MIN_CHOICES}–{MAX_CHOICES} [[option]] tables, found {}",
                    file.option.len()
                ),
            });
        }
        let mut options: Vec<PollOption> = Vec::with_capacity(file.option.len());
        for option in file.option {
            let option = option.into_inner();
            let key = option.key.get_ref();
            if !valid_key(key) {
                return Err(fail(
                    option.key.span(),
                    format!("key {key:?}: expected 1–{MAX_KEY_CHARS} characters of a-z, 0-9 and -"),
                ));
            }
            if options.iter().any(|o| o.key == *key) {
                return Err(fail(
                    option.key.span(),
                    format!("key {key:?} is used twice"),
                ));
            }
            let label = option.label.get_ref().trim();
            if !(1..=MAX_LABEL_CHARS).contains(&label.chars().count()) {
                return Err(fail(
                    option.label.span(),
                    format!("key {key:?}: label expected 1–{MAX_LABEL_CHARS} characters"),
                ));
            }
            options.push(PollOption {
                key: key.clone(),
                label: label.to_owned(),
            });
        }
        Ok(Poll {
            question: question.to_owned(),
            options,
        })
    }

    pub fn question(&self) -> &str {
        &self.question
    }

    /// Every choice, in the poll's order.
    pub fn choices(&self) -> impl Iterator<Item = Choice> + use<> {
        // At most MAX_CHOICES, so every index fits in a u8.
        (0..self.options.len() as u8).map(Choice)
    }

    /// How many choices the poll has.
    pub fn len(&self) -> usize {
        self.options.len()
    }

    /// Never true for a checked poll (at least `MIN_CHOICES`).
    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }

    /// The choice with key `key`, if the poll has one.
    pub fn choice(&self, key: &str) -> Option<Choice> {
        self.choices().find(|&c| self.key(c) == key)
    }

    /// The key of `choice` (URLs, JSON, Redis, PostgreSQL, metric labels).
    pub fn key(&self, choice: Choice) -> &str {
        &self.options[choice.index()].key
    }

    /// The human label of `choice`.
    pub fn label(&self, choice: Choice) -> &str {
        &self.options[choice.index()].label
    }

    /// Every key in order, comma-separated (the invalid-choice answer).
    pub fn key_list(&self) -> String {
        let keys: Vec<&str> = self.options.iter().map(|o| o.key.as_str()).collect();
        keys.join(", ")
    }

    /// `counts` as the `/votes` body: every choice in order, with its label.
    pub fn show<'a>(&'a self, counts: &'a Counts) -> Shown<'a> {
        Shown { poll: self, counts }
    }
}

/// `{"hidden":true,"total":N}`: what `/votes` and the stream say while hidden.
pub fn hidden_json(counts: &Counts) -> String {
    serde_json::json!({ "hidden": true, "total": counts.total() }).to_string()
}

/// 1–32 characters of `[a-z0-9-]`: safe in URLs, metric labels, Redis
/// copies (`key=n`, space-separated) and the Lua pattern that reads them.
fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_CHARS).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Vote counts per choice, indexed by `Choice::index`; slots past the
/// poll's choices stay zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts(pub [u64; MAX_CHOICES]);

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

/// Serialises as the `/votes` body (see `Poll::show`).
pub struct Shown<'a> {
    poll: &'a Poll,
    counts: &'a Counts,
}

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry<'a> {
            count: u64,
            label: &'a str,
        }
        let mut map = serializer.serialize_map(Some(self.poll.len()))?;
        for choice in self.poll.choices() {
            map.serialize_entry(
                self.poll.key(choice),
                &Entry {
                    count: self.counts.get(choice),
                    label: self.poll.label(choice),
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
mod tests;
