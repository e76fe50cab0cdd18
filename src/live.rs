//! Redis: the live counts every replica shares and the pub/sub channel that
//! tells replicas about each other's votes. (Named `live`: a module named
//! `redis` would shadow the crate.)
//!
//! Redis holds copies of PostgreSQL's totals, one per shard (totals.rs), and
//! nothing else about the counts: a copy replaces an older copy of its shard
//! (by epoch, then version) and never adds, so a copy that arrives late,
//! twice or after a rebuild cannot count a vote twice or drop one. Each
//! change is one Lua script, so the copies, the global sequence number and
//! the announcement of the new sum move together in one round trip.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use thiserror::Error;

use crate::poll::{Counts, MAX_CHOICES, Poll, Snapshot};
use crate::totals::{Copies, ShardCopy};

/// Hash of the newest copy per shard: `shard` -> `version key=n key=n …`.
pub const COPIES_KEY: &str = "vote-api:copies";
/// The epoch of the copies held; its absence means Redis lost our data (new,
/// emptied or restarted) and only a rebuild from PostgreSQL may fill it.
pub const EPOCH_KEY: &str = "vote-api:epoch";
/// Global change sequence, which orders every replica's snapshots.
pub const SEQ_KEY: &str = "vote-api:seq";
/// Pub/sub channel announcing every change as `origin seq c1 … cn`, one
/// count per choice of the poll, in its order.
/// Pub/sub ignores logical databases, so the database number is appended:
/// deployments sharing one Redis on different databases stay apart.
pub const CHANNEL_PREFIX: &str = "vote-api:changes:";
/// Upper bound for any single Redis call; Redis answers in microseconds when healthy.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest replica name accepted in an announcement (ours: host name and PID).
pub const MAX_ORIGIN_BYTES: usize = 128;
/// Largest count accepted in an announcement: far beyond any audience, far
/// below an overflow when eight of them are summed.
pub const MAX_ANNOUNCED_COUNT: u64 = 1 << 40;
/// How far an announced sequence may run ahead of the newest one this replica
/// knows before it is checked against Redis's own sequence.
pub const MAX_SEQ_STEP: u64 = 1 << 16;

/// A Redis failure (kept for logs; clients see "Redis not available").
#[derive(Debug, Error)]
pub enum LiveError {
    #[error("Redis: {0}")]
    Redis(#[from] RedisError),
    #[error("Redis did not answer within {REDIS_TIMEOUT:?}")]
    Timeout,
    #[error("Redis returned an unexpected reply")]
    Malformed,
}

/// Stores copies (the same rule as `totals::Copies::offer`), then sums the
/// copies for the poll's keys, bumps the sequence above both the stored one
/// and the caller's newest known (so every replica accepts the result, also
/// after Redis restarted) and announces the sum. Without an epoch stored,
/// Redis lost the copies: only a rebuild (ARGV[3] = 1, every shard) may
/// fill it, anything else returns -1.
/// KEYS: copies, epoch, seq, channel. ARGV: origin, newest seq, rebuild,
/// n, the n keys, then (shard, epoch, copy) per copy. Epochs are compared
/// as numbers (exact below 2^53) but stored as given.
static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(ARGV[4])
local stored = redis.call('GET', KEYS[2])
if not stored and ARGV[3] ~= '1' then return -1 end
local epoch = tonumber(stored)
for i = 5 + n, #ARGV, 3 do
  local shard, e, copy = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if not epoch or e > epoch then
    redis.call('DEL', KEYS[1])
    redis.call('SET', KEYS[2], ARGV[i + 1])
    epoch = e
  end
  if e == epoch then
    local old = redis.call('HGET', KEYS[1], shard)
    local held, given = tonumber(string.match(old or '', '^%d+')), tonumber(string.match(copy, '^%d+'))
    -- One version is one committed state: the same version with other
    -- counts was never PostgreSQL's, and is overwritten.
    if not held or held < given or (held == given and old ~= copy) then
      redis.call('HSET', KEYS[1], shard, copy)
    end
  end
end
local index, sums = {}, {}
for i = 1, n do
  index[ARGV[4 + i]] = i
  sums[i] = 0
end
for _, copy in ipairs(redis.call('HVALS', KEYS[1])) do
  for key, c in string.gmatch(copy, ' ([%w-]+)=(%d+)') do
    local i = index[key]
    if i then sums[i] = sums[i] + tonumber(c) end
  end
end
local seq = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(ARGV[2])) + 1
redis.call('SET', KEYS[3], seq)
redis.call('PUBLISH', KEYS[4], ARGV[1] .. ' ' .. seq .. ' ' .. table.concat(sums, ' '))
sums[n + 1] = seq
return sums
",
    )
});

/// A cloneable Redis handle; reconnects by itself after an outage.
#[derive(Clone)]
pub struct Live {
    client: redis::Client,
    conn: ConnectionManager,
    channel: String,
    origin: String,
    /// Whose keys the sums are taken for; announcements carry its counts.
    poll: Arc<Poll>,
}

impl Live {
    /// Prepares the connection without waiting for Redis, so the service can
    /// start (and stay durable in PostgreSQL) while Redis is still down.
    pub fn connect(url: &str, origin: String) -> Result<Self, LiveError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let channel = format!(
            "{CHANNEL_PREFIX}{}",
            client.get_connection_info().redis_settings().db()
        );
        Ok(Live {
            client,
            conn,
            channel,
            origin,
            poll: Arc::new(Poll::seed()),
        })
    }

    /// The same connection, summing and announcing `poll`'s choices (the
    /// seed's until this is called).
    pub fn for_poll(self, poll: Arc<Poll>) -> Self {
        Live { poll, ..self }
    }

    /// The poll whose choices this handle sums and announces.
    pub fn poll(&self) -> &Arc<Poll> {
        &self.poll
    }

    /// This replica's name in pub/sub messages (also names its timeline process).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// True when Redis answers PING in time.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        bounded(async move { Ok(redis::cmd("PING").query_async::<String>(&mut conn).await?) })
            .await
            .is_ok()
    }

    /// Stores one shard's copy and returns the resulting global snapshot;
    /// `None` when Redis lost the copies and must be rebuilt first.
    pub async fn apply(
        &self,
        copy: &ShardCopy,
        newest_seq: u64,
    ) -> Result<Option<Snapshot>, LiveError> {
        self.store(std::slice::from_ref(copy), newest_seq, false)
            .await
    }

    /// Stores the copies of every shard one batch changed (a changed vote
    /// takes its old choice off another shard) and returns the resulting
    /// global snapshot; `None` as for `apply`.
    pub async fn apply_all(
        &self,
        copies: &[ShardCopy],
        newest_seq: u64,
    ) -> Result<Option<Snapshot>, LiveError> {
        self.store(copies, newest_seq, false).await
    }

    /// Stores every shard's copy from a read of PostgreSQL (copies never
    /// add, so a rebuild can land in any order with batches and other
    /// rebuilds), marking Redis as holding them all.
    pub async fn rebuild(
        &self,
        copies: &[ShardCopy],
        newest_seq: u64,
    ) -> Result<Snapshot, LiveError> {
        self.store(copies, newest_seq, true)
            .await?
            .ok_or(LiveError::Malformed)
    }

    async fn store(
        &self,
        copies: &[ShardCopy],
        newest_seq: u64,
        rebuild: bool,
    ) -> Result<Option<Snapshot>, LiveError> {
        let mut call = STORE.prepare_invoke();
        call.key(COPIES_KEY)
            .key(EPOCH_KEY)
            .key(SEQ_KEY)
            .key(&self.channel)
            .arg(&self.origin)
            .arg(newest_seq)
            .arg(if rebuild { "1" } else { "0" })
            .arg(self.poll.len());
        for choice in self.poll.choices() {
            call.arg(self.poll.key(choice));
        }
        for copy in copies {
            call.arg(copy.shard).arg(copy.epoch).arg(copy.encode());
        }
        let mut conn = self.conn.clone();
        let out: redis::Value = bounded(async { Ok(call.invoke_async(&mut conn).await?) }).await?;
        if out == redis::Value::Int(-1) {
            return Ok(None);
        }
        let out: Vec<u64> = redis::from_redis_value(out).map_err(|_| LiveError::Malformed)?;
        let Some((&seq, sums)) = out.split_last() else {
            return Err(LiveError::Malformed);
        };
        let counts = counts_of(sums, self.poll.len()).ok_or(LiveError::Malformed)?;
        Ok(Some(Snapshot {
            counts,
            seq,
            local: 0,
        }))
    }

    /// The stored sum of the copies, or `None` when Redis lost them (new or emptied).
    pub async fn read(&self) -> Result<Option<Snapshot>, LiveError> {
        let mut conn = self.conn.clone();
        let (epoch, seq, copies): (Option<i64>, Option<u64>, Vec<(i32, String)>) = bounded(async {
            Ok(redis::pipe()
                .get(EPOCH_KEY)
                .get(SEQ_KEY)
                .hgetall(COPIES_KEY)
                .query_async(&mut conn)
                .await?)
        })
        .await?;
        let Some(epoch) = epoch else { return Ok(None) };
        let mut held = Copies::default();
        for (shard, text) in copies {
            held.offer(ShardCopy::decode(shard, epoch, &text).ok_or(LiveError::Malformed)?);
        }
        Ok(Some(Snapshot {
            counts: held.sum(&self.poll),
            seq: seq.unwrap_or(0),
            local: 0,
        }))
    }

    /// The global change sequence Redis holds (`None` when it holds none).
    pub async fn stored_seq(&self) -> Result<Option<u64>, LiveError> {
        let mut conn = self.conn.clone();
        bounded(async {
            Ok(redis::cmd("GET")
                .arg(SEQ_KEY)
                .query_async(&mut conn)
                .await?)
        })
        .await
    }

    /// Subscribes to change announcements, each parsed or rejected. The
    /// stream ends when the connection drops; the caller resubscribes.
    pub async fn subscribe(
        &self,
    ) -> Result<impl Stream<Item = Result<Announcement, Rejected>> + use<>, LiveError> {
        let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| LiveError::Timeout)??;
        bounded(async { Ok(pubsub.subscribe(&self.channel).await?) }).await?;
        let choices = self.poll.len();
        Ok(pubsub
            .into_on_message()
            .map(move |msg| Announcement::parse(msg.get_payload_bytes(), choices)))
    }

    /// Whether `announced` may move the counts: newer than what this replica
    /// knows (`Ok(false)` for a stale one, a normal race), and not beyond the
    /// sequence Redis itself holds. Anyone who can publish on the channel
    /// could otherwise send `seq = u64::MAX` and freeze every replica's view.
    pub async fn check_seq(&self, announced: u64, known: u64) -> Result<bool, Rejected> {
        if announced <= known {
            return Ok(false);
        }
        if announced - known <= MAX_SEQ_STEP {
            return Ok(true);
        }
        // A long jump (this replica missed many changes) must be real: every
        // genuine announcement carries a sequence Redis has already issued.
        match self.stored_seq().await {
            Ok(Some(stored)) if announced <= stored => Ok(true),
            _ => Err(Rejected::SeqOutOfBounds),
        }
    }
}

/// Why an announcement was ignored (the label of `pubsub_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not `origin seq c1 … cn` (one count per choice of this replica's
    /// poll) with bounded, non-negative numbers.
    Malformed,
    /// A sequence Redis never issued.
    SeqOutOfBounds,
}

impl Rejected {
    pub const ALL: [Rejected; 2] = [Rejected::Malformed, Rejected::SeqOutOfBounds];

    pub fn label(self) -> &'static str {
        match self {
            Rejected::Malformed => "malformed",
            Rejected::SeqOutOfBounds => "seq_out_of_bounds",
        }
    }
}

/// One change announced on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub origin: String,
    pub snapshot: Snapshot,
}

impl Announcement {
    /// Parses `origin seq c1 … cn` strictly: a short visible origin, exactly
    /// `choices` counts (a replica still on another poll is refused),
    /// decimal digits only (no sign), counts within `MAX_ANNOUNCED_COUNT`.
    pub fn parse(payload: &[u8], choices: usize) -> Result<Self, Rejected> {
        Self::parse_parts(payload, choices).ok_or(Rejected::Malformed)
    }

    fn parse_parts(payload: &[u8], choices: usize) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.split(' ');
        let origin = parts.next()?;
        let origin_ok = (1..=MAX_ORIGIN_BYTES).contains(&origin.len())
            && origin.bytes().all(|b| b.is_ascii_graphic());
        if !origin_ok {
            return None;
        }
        let mut numbers = [0u64; MAX_CHOICES + 1];
        let mut n = 0;
        for part in parts {
            // u64::from_str accepts a leading '+'; only plain digits are ours.
            if n > choices
                || n == numbers.len()
                || part.is_empty()
                || !part.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            numbers[n] = part.parse().ok()?;
            n += 1;
        }
        let (&seq, sums) = numbers[..n].split_first()?;
        if seq == 0 || sums.iter().any(|&c| c > MAX_ANNOUNCED_COUNT) {
            return None;
        }
        Some(Announcement {
            origin: origin.to_owned(),
            snapshot: Snapshot {
                counts: counts_of(sums, choices)?,
                seq,
                local: 0,
            },
        })
    }
}

/// Pub/sub channel announcing reveal changes as `hidden` / `visible`
/// (database number appended, as for the counts channel). The flag itself
/// lives in PostgreSQL (db/session.rs).
pub const REVEAL_CHANNEL_PREFIX: &str = "vote-api:reveal:";

/// Announcements of the reveal switch.
impl Live {
    fn reveal_channel(&self) -> String {
        let db = self.client.get_connection_info().redis_settings().db();
        format!("{REVEAL_CHANNEL_PREFIX}{db}")
    }

    /// Tells every replica that the results are now hidden or visible.
    pub async fn announce_hidden(&self, hidden: bool) -> Result<(), LiveError> {
        let mut conn = self.conn.clone();
        let payload = if hidden { "hidden" } else { "visible" };
        bounded(async {
            Ok(redis::cmd("PUBLISH")
                .arg(self.reveal_channel())
                .arg(payload)
                .query_async::<()>(&mut conn)
                .await?)
        })
        .await
    }

    /// Subscribes to reveal announcements (`true` = hidden); ends when the
    /// connection drops, and unknown payloads are ignored.
    pub async fn subscribe_reveal(&self) -> Result<impl Stream<Item = bool> + use<>, LiveError> {
        let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| LiveError::Timeout)??;
        let channel = self.reveal_channel();
        bounded(async { Ok(pubsub.subscribe(&channel).await?) }).await?;
        Ok(pubsub.into_on_message().filter_map(|msg| async move {
            match msg.get_payload_bytes() {
                b"hidden" => Some(true),
                b"visible" => Some(false),
                _ => None,
            }
        }))
    }
}

/// Counts from exactly `choices` sums in poll order.
fn counts_of(sums: &[u64], choices: usize) -> Option<Counts> {
    if sums.len() != choices || choices > MAX_CHOICES {
        return None;
    }
    let mut counts = Counts::default();
    counts.0[..choices].copy_from_slice(sums);
    Some(counts)
}

async fn bounded<T>(fut: impl Future<Output = Result<T, LiveError>>) -> Result<T, LiveError> {
    tokio::time::timeout(REDIS_TIMEOUT, fut)
        .await
        .unwrap_or(Err(LiveError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_parse_strictly() {
        let a = Announcement::parse(b"pod-a 7 1 2 3 4 5", 5).expect("valid");
        assert_eq!(a.origin, "pod-a");
        assert_eq!(a.snapshot.seq, 7);
        assert_eq!(a.snapshot.counts, Counts([1, 2, 3, 4, 5, 0, 0, 0]));
        let two = Announcement::parse(b"pod-a 8 4 9", 2).expect("a two-choice poll");
        assert_eq!(two.snapshot.counts, Counts([4, 9, 0, 0, 0, 0, 0, 0]));
        let eight = Announcement::parse(b"pod-a 9 1 2 3 4 5 6 7 8", 8).expect("eight choices");
        assert_eq!(eight.snapshot.counts, Counts([1, 2, 3, 4, 5, 6, 7, 8]));
        // A replica on another poll (a rollout) announces another number of counts.
        for (other, choices) in [
            (&b"pod-a 7 1 2 3 4 5"[..], 2),
            (b"pod-a 8 4 9", 5),
            (b"pod-a 9 1 2 3 4 5 6 7 8 9", 8),
        ] {
            assert_eq!(
                Announcement::parse(other, choices),
                Err(Rejected::Malformed)
            );
        }
        let long_origin = format!("{} 7 1 2 3 4 5", "a".repeat(MAX_ORIGIN_BYTES + 1));
        let too_big = format!("pod-a 7 {} 0 0 0 0", MAX_ANNOUNCED_COUNT + 1);
        for bad in [
            &b"pod-a 7 1 2 3 4"[..],
            b"pod-a 7 1 2 3 4 5 6",
            b"pod-a x 1 2 3 4 5",
            b"pod-a 7 -1 2 3 4 5",
            b"pod-a 7 +1 2 3 4 5",
            b"pod-a 0 1 2 3 4 5",
            b"pod-a 7 1  2 3 4 5",
            b"pod-a 18446744073709551616 1 2 3 4 5",
            b" 7 1 2 3 4 5",
            long_origin.as_bytes(),
            too_big.as_bytes(),
            &[0xff, 0xfe],
        ] {
            assert_eq!(
                Announcement::parse(bad, 5),
                Err(Rejected::Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
