//! Redis: the live counts every replica shares and the pub/sub channel that
//! tells replicas about each other's votes. Each change is one Lua script, so
//! the counts, the global sequence number and the announcement move together
//! in one round trip. (Named `live`: a module named `redis` would shadow the crate.)

use std::sync::LazyLock;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use thiserror::Error;

use crate::poll::{Choice, Counts, Snapshot};

/// Hash of count per choice.
pub const COUNTS_KEY: &str = "vote-api:counts";
/// Global change sequence; its absence means Redis lost our data.
pub const SEQ_KEY: &str = "vote-api:seq";
/// Pub/sub channel announcing every change as `origin seq c1 c2 c3 c4 c5`.
/// Pub/sub ignores logical databases, so the database number is appended:
/// deployments sharing one Redis on different databases stay apart.
pub const CHANNEL_PREFIX: &str = "vote-api:changes:";
/// Upper bound for any single Redis call; Redis answers in microseconds when healthy.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

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

/// Adds ARGV[1..5] to the counts, bumps the sequence and announces the result.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seq = redis.call('INCR', KEYS[2])
local out = {}
local fields = {'print', 'stare', 'ai', 'revert', 'restart'}
for i, field in ipairs(fields) do
  out[i] = redis.call('HINCRBY', KEYS[1], field, ARGV[i])
end
redis.call('PUBLISH', KEYS[3], ARGV[6] .. ' ' .. seq .. ' ' .. table.concat(out, ' '))
out[6] = seq
return out
",
    )
});

/// Replaces the counts with ARGV[1..5]; the new sequence is above both the
/// stored one and ARGV[7] (the caller's newest known), so every replica accepts it.
static REBUILD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seq = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[7])) + 1
redis.call('SET', KEYS[2], seq)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'print', ARGV[1], 'stare', ARGV[2], 'ai', ARGV[3], 'revert', ARGV[4], 'restart', ARGV[5])
redis.call('PUBLISH', KEYS[3], ARGV[6] .. ' ' .. seq .. ' ' .. ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
return seq
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

    /// True when Redis answers PING in time.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        bounded(async move { Ok(redis::cmd("PING").query_async::<String>(&mut conn).await?) })
            .await
            .is_ok()
    }

    /// Adds `delta` to the shared counts and returns the resulting global snapshot.
    pub async fn apply(&self, delta: &Counts) -> Result<Snapshot, LiveError> {
        let mut conn = self.conn.clone();
        let mut call = APPLY.key(COUNTS_KEY);
        call.key(SEQ_KEY).key(&self.channel);
        for n in delta.0 {
            call.arg(n);
        }
        call.arg(&self.origin);
        let out: Vec<u64> = bounded(async { Ok(call.invoke_async(&mut conn).await?) }).await?;
        let [c0, c1, c2, c3, c4, seq] = out[..] else {
            return Err(LiveError::Malformed);
        };
        Ok(Snapshot {
            counts: Counts([c0, c1, c2, c3, c4]),
            seq,
            local: 0,
        })
    }

    /// Overwrites the shared counts with `counts` (from PostgreSQL).
    pub async fn rebuild(&self, counts: &Counts, newest_seq: u64) -> Result<Snapshot, LiveError> {
        let mut conn = self.conn.clone();
        let mut call = REBUILD.key(COUNTS_KEY);
        call.key(SEQ_KEY).key(&self.channel);
        for n in counts.0 {
            call.arg(n);
        }
        call.arg(&self.origin).arg(newest_seq);
        let seq: u64 = bounded(async { Ok(call.invoke_async(&mut conn).await?) }).await?;
        Ok(Snapshot {
            counts: *counts,
            seq,
            local: 0,
        })
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

    /// Subscribes to change announcements. The stream ends when the
    /// connection drops; the caller resubscribes.
    pub async fn subscribe(&self) -> Result<impl Stream<Item = Announcement> + use<>, LiveError> {
        let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| LiveError::Timeout)??;
        bounded(async { Ok(pubsub.subscribe(&self.channel).await?) }).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|msg| async move { Announcement::parse(msg.get_payload_bytes()) }))
    }
}

/// One change announced on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub origin: String,
    pub snapshot: Snapshot,
}

impl Announcement {
    /// Parses `origin seq c1 c2 c3 c4 c5`; anything else is ignored.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.split(' ');
        let origin = parts.next()?.to_owned();
        let mut numbers = [0u64; 6];
        for slot in &mut numbers {
            *slot = parts.next()?.parse().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        let [seq, c0, c1, c2, c3, c4] = numbers;
        Some(Announcement {
            origin,
            snapshot: Snapshot {
                counts: Counts([c0, c1, c2, c3, c4]),
                seq,
                local: 0,
            },
        })
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
        assert!(Announcement::parse(b"pod-a 7 1 2 3 4").is_none());
        assert!(Announcement::parse(b"pod-a 7 1 2 3 4 5 6").is_none());
        assert!(Announcement::parse(b"pod-a x 1 2 3 4 5").is_none());
        assert!(Announcement::parse(&[0xff, 0xfe]).is_none());
    }
}
