//! Redis: the live counts every replica shares and the pub/sub channel that
//! tells replicas about each other's votes. Each change is one Lua script, so
//! the counts, the global sequence number and the announcement move together
//! in one round trip. (Named `live`: a module named `redis` would shadow the crate.)
//!
//! A batch reaches Redis after its PostgreSQL commit, so with several
//! replicas a rebuild from a PostgreSQL count can land while another
//! replica's batch is committed but not mirrored yet, or mirrored after the
//! count was taken. Rebuilds are made exact with PostgreSQL's own
//! visibility: a rebuild carries the snapshot its count was read in, and
//! every mirrored batch carries its transaction id. A batch visible in the
//! newest rebuild's snapshot is already counted by it, so its mirror adds
//! nothing; a batch mirrored since that rebuild is kept in a log, and a
//! rebuild adds the logged batches its own snapshot does not see.

use std::sync::LazyLock;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use thiserror::Error;

use crate::poll::{Choice, Counts, Snapshot};

/// Counts read from PostgreSQL and the snapshot (`pg_current_snapshot()`,
/// `xmin:xmax:xip,…`) they were read in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CountedAt {
    pub counts: Counts,
    pub snapshot: String,
}

/// Hash of count per choice.
pub const COUNTS_KEY: &str = "vote-api:counts";
/// Global change sequence; its absence means Redis lost our data.
pub const SEQ_KEY: &str = "vote-api:seq";
/// The snapshot (`xmin:xmax:xip,…`) of the newest rebuild's count.
pub const SNAPSHOT_KEY: &str = "vote-api:rebuilt-snapshot";
/// Batches mirrored since the newest rebuild, newest first, as `xid d1 … d5`
/// (`-` for a batch whose transaction id is unknown).
pub const LOG_KEY: &str = "vote-api:mirrored";
/// Log entries kept. A rebuild that may need a dropped one refuses (`Stale`).
pub const LOG_LEN: usize = 10_000;
/// Pub/sub channel announcing every change as `origin seq c1 c2 c3 c4 c5`.
/// Pub/sub ignores logical databases, so the database number is appended:
/// deployments sharing one Redis on different databases stay apart.
pub const CHANNEL_PREFIX: &str = "vote-api:changes:";
/// Upper bound for any single Redis call; Redis answers in microseconds when healthy.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest replica name accepted in an announcement (ours: host name and PID).
pub const MAX_ORIGIN_BYTES: usize = 128;
/// Largest count accepted in an announcement: far beyond any audience, far
/// below an overflow when five of them are summed.
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
    /// Another rebuild with a newer count landed first, or the log no longer
    /// reaches back to this count: a rebuild now could lose votes.
    #[error("the recount is older than what Redis holds; recount again")]
    Stale,
}

/// Lua helpers for PostgreSQL snapshots `xmin:xmax:xip,…`: `xmax(snapshot)`,
/// its first unassigned transaction id (nil if malformed), and
/// `visible(xid, snapshot)`, whether transaction `xid` had committed in it
/// (pg_visible_in_snapshot).
const SNAPSHOT_LUA: &str = r"
local function xmax(snap)
  return tonumber(string.match(snap, '^%d+:(%d+):'))
end
local function visible(xid, snap)
  local xmin, xmax, xip = string.match(snap, '^(%d+):(%d+):(.*)$')
  if not xmin then return false end
  if xid < tonumber(xmin) then return true end
  if xid >= tonumber(xmax) then return false end
  for x in string.gmatch(xip, '%d+') do
    if tonumber(x) == xid then return false end
  end
  return true
end
";

/// Adds ARGV[1..5] (a batch of transaction ARGV[7], `-` if unknown) to the
/// counts unless the newest rebuild counted it already, logs it, bumps the
/// sequence and announces the result. KEYS: counts, seq, channel, snapshot, log.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{SNAPSHOT_LUA}
local xid = tonumber(ARGV[7])
local snap = redis.call('GET', KEYS[4])
local counted = xid ~= nil and snap and visible(xid, snap)
local seq = redis.call('INCR', KEYS[2])
local out = {{}}
local fields = {{'print', 'stare', 'ai', 'revert', 'restart'}}
for i, field in ipairs(fields) do
  if counted then
    out[i] = tonumber(redis.call('HGET', KEYS[1], field) or '0')
  else
    out[i] = redis.call('HINCRBY', KEYS[1], field, ARGV[i])
  end
end
if not counted then
  redis.call('LPUSH', KEYS[5], ARGV[7] .. ' ' .. ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
  redis.call('LTRIM', KEYS[5], 0, {last})
end
redis.call('PUBLISH', KEYS[3], ARGV[6] .. ' ' .. seq .. ' ' .. table.concat(out, ' '))
out[6] = seq
return out
",
        last = LOG_LEN - 1
    ))
});

/// Replaces the counts with ARGV[1..5], counted in snapshot ARGV[8], plus
/// every logged batch that snapshot does not see; refuses (returns -1) when
/// the stored rebuild is newer or the log may have lost such a batch. The
/// new sequence is above both the stored one and ARGV[7] (the caller's
/// newest known), so every replica accepts it. KEYS as APPLY's.
static REBUILD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{SNAPSHOT_LUA}
local snap = ARGV[8]
local mine = xmax(snap)
local stored = redis.call('GET', KEYS[4])
if not mine or (stored and (xmax(stored) or 0) > mine) then
  return -1
end
local counts = {{}}
for i = 1, 5 do counts[i] = tonumber(ARGV[i]) end
local log = redis.call('LRANGE', KEYS[5], 0, -1)
for n, entry in ipairs(log) do
  local parts = {{}}
  for word in string.gmatch(entry, '%S+') do parts[#parts + 1] = word end
  local xid = tonumber(parts[1])
  if xid == nil or not visible(xid, snap) then
    if n == {full} then return -1 end
    for i = 1, 5 do counts[i] = counts[i] + tonumber(parts[i + 1]) end
  end
end
local seq = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[7])) + 1
redis.call('SET', KEYS[2], seq)
redis.call('DEL', KEYS[1], KEYS[5])
redis.call('HSET', KEYS[1], 'print', counts[1], 'stare', counts[2], 'ai', counts[3], 'revert', counts[4], 'restart', counts[5])
redis.call('SET', KEYS[4], snap)
redis.call('PUBLISH', KEYS[3], ARGV[6] .. ' ' .. seq .. ' ' .. table.concat(counts, ' '))
counts[6] = seq
return counts
",
        full = LOG_LEN
    ))
});

/// A cloneable Redis handle; reconnects by itself after an outage.
#[derive(Clone)]
pub struct Live {
    client: redis::Client,
    conn: ConnectionManager,
    channel: String,
    origin: String,
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
        })
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

    /// Adds `delta`, a batch committed by transaction `xid` (`None`: not
    /// known), to the shared counts and returns the resulting global snapshot.
    pub async fn apply(&self, delta: &Counts, xid: Option<u64>) -> Result<Snapshot, LiveError> {
        let mut call = APPLY.prepare_invoke();
        self.keys(&mut call);
        for n in delta.0 {
            call.arg(n);
        }
        call.arg(&self.origin);
        match xid {
            Some(xid) => call.arg(xid),
            None => call.arg("-"),
        };
        self.invoke(call).await?.ok_or(LiveError::Malformed)
    }

    /// Overwrites the shared counts with `recount` (from PostgreSQL) plus the
    /// batches mirrored since that its snapshot does not see.
    pub async fn rebuild(
        &self,
        recount: &CountedAt,
        newest_seq: u64,
    ) -> Result<Snapshot, LiveError> {
        let mut call = REBUILD.prepare_invoke();
        self.keys(&mut call);
        for n in recount.counts.0 {
            call.arg(n);
        }
        call.arg(&self.origin)
            .arg(newest_seq)
            .arg(&recount.snapshot);
        self.invoke(call).await?.ok_or(LiveError::Stale)
    }

    fn keys(&self, call: &mut redis::ScriptInvocation<'_>) {
        call.key(COUNTS_KEY)
            .key(SEQ_KEY)
            .key(&self.channel)
            .key(SNAPSHOT_KEY)
            .key(LOG_KEY);
    }

    /// Runs a script that answers the five counts and the sequence, or -1.
    async fn invoke(
        &self,
        call: redis::ScriptInvocation<'_>,
    ) -> Result<Option<Snapshot>, LiveError> {
        let mut conn = self.conn.clone();
        let out: redis::Value = bounded(async { Ok(call.invoke_async(&mut conn).await?) }).await?;
        if out == redis::Value::Int(-1) {
            return Ok(None);
        }
        let out: Vec<u64> = redis::from_redis_value(out).map_err(|_| LiveError::Malformed)?;
        let [c0, c1, c2, c3, c4, seq] = out[..] else {
            return Err(LiveError::Malformed);
        };
        Ok(Some(Snapshot {
            counts: Counts([c0, c1, c2, c3, c4]),
            seq,
            local: 0,
        }))
    }

    /// The stored snapshot, or `None` when Redis holds none (new or emptied).
    pub async fn read(&self) -> Result<Option<Snapshot>, LiveError> {
        let mut conn = self.conn.clone();
        let (seq, values): (Option<u64>, Vec<Option<u64>>) = bounded(async {
            Ok(redis::pipe()
                .get(SEQ_KEY)
                .cmd("HMGET")
                .arg(COUNTS_KEY)
                .arg(&Choice::ALL.map(Choice::key)[..])
                .query_async(&mut conn)
                .await?)
        })
        .await?;
        let Some(seq) = seq else { return Ok(None) };
        let mut counts = Counts::default();
        for (choice, n) in Choice::ALL.into_iter().zip(values) {
            counts.add(choice, n.unwrap_or(0));
        }
        Ok(Some(Snapshot {
            counts,
            seq,
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
        Ok(pubsub
            .into_on_message()
            .map(|msg| Announcement::parse(msg.get_payload_bytes())))
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
    /// Not `origin seq c1 c2 c3 c4 c5` with bounded, non-negative numbers.
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
    /// Parses `origin seq c1 c2 c3 c4 c5` strictly: a short visible origin,
    /// decimal digits only (no sign), counts within `MAX_ANNOUNCED_COUNT`.
    pub fn parse(payload: &[u8]) -> Result<Self, Rejected> {
        Self::parse_parts(payload).ok_or(Rejected::Malformed)
    }

    fn parse_parts(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.split(' ');
        let origin = parts.next()?;
        let origin_ok = (1..=MAX_ORIGIN_BYTES).contains(&origin.len())
            && origin.bytes().all(|b| b.is_ascii_graphic());
        if !origin_ok {
            return None;
        }
        let mut numbers = [0u64; 6];
        for slot in &mut numbers {
            let part = parts.next()?;
            // u64::from_str accepts a leading '+'; only plain digits are ours.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        let [seq, c0, c1, c2, c3, c4] = numbers;
        if seq == 0
            || [c0, c1, c2, c3, c4]
                .iter()
                .any(|&c| c > MAX_ANNOUNCED_COUNT)
        {
            return None;
        }
        Some(Announcement {
            origin: origin.to_owned(),
            snapshot: Snapshot {
                counts: Counts([c0, c1, c2, c3, c4]),
                seq,
                local: 0,
            },
        })
    }
}

/// Set while the speaker hides the results (docs/contract.md, the speaker's console); absent means visible.
pub const HIDDEN_KEY: &str = "vote-api:results-hidden";
/// Pub/sub channel announcing reveal changes as `hidden` / `visible`
/// (database number appended, as for the counts channel).
pub const REVEAL_CHANNEL_PREFIX: &str = "vote-api:reveal:";

/// The reveal switch: one flag every replica shares, announced on change.
impl Live {
    fn reveal_channel(&self) -> String {
        let db = self.client.get_connection_info().redis_settings().db();
        format!("{REVEAL_CHANNEL_PREFIX}{db}")
    }

    /// Stores and announces whether the results are hidden, atomically.
    pub async fn set_hidden(&self, hidden: bool) -> Result<(), LiveError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        if hidden {
            pipe.set(HIDDEN_KEY, 1).ignore();
        } else {
            pipe.del(HIDDEN_KEY).ignore();
        }
        pipe.publish(
            self.reveal_channel(),
            if hidden { "hidden" } else { "visible" },
        )
        .ignore();
        bounded(async { Ok(pipe.query_async::<()>(&mut conn).await?) }).await
    }

    /// Whether the results are hidden, as stored.
    pub async fn hidden(&self) -> Result<bool, LiveError> {
        let mut conn = self.conn.clone();
        let exists: bool = bounded(async {
            Ok(redis::cmd("EXISTS")
                .arg(HIDDEN_KEY)
                .query_async(&mut conn)
                .await?)
        })
        .await?;
        Ok(exists)
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
        let a = Announcement::parse(b"pod-a 7 1 2 3 4 5").expect("valid");
        assert_eq!(a.origin, "pod-a");
        assert_eq!(a.snapshot.seq, 7);
        assert_eq!(a.snapshot.counts, Counts([1, 2, 3, 4, 5]));
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
                Announcement::parse(bad),
                Err(Rejected::Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
