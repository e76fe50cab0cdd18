//! The devices of `ONE_VOTE_PER_DEVICE`: one row of `votes` each, changed
//! in place, the change moving one count between shards in the batch's
//! transaction; and the choice a device holds, for the vote page.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Object;
use tokio::time::Instant;
use tokio_postgres::types::Type;

use super::{BatchRows, KeyedVote, LOOKUP_TIMEOUT, Writer, cancel_after, keyed_votes, shard_copy};
use crate::db::DbError;
use crate::totals::ShardCopy;

/// One device's vote in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceVote<'a> {
    pub device: &'a str,
    pub choice: &'a str,
    pub referral: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// What a device's vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOutcome {
    /// The device's first vote: stored and counted.
    New,
    /// The device voted for the same choice again: nothing changed.
    Same,
    /// The device's vote moved from this choice (its key as stored).
    Changed(String),
    /// Its idempotency key is stored with this choice already.
    Replayed,
    /// Its idempotency key is stored with another choice.
    KeyReused,
}

/// What the device votes of a committed batch did, and the totals of the
/// other shards they changed (a change takes its old choice off the shard
/// that counted it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    pub outcomes: HashMap<String, DeviceOutcome>,
    pub copies: Vec<ShardCopy>,
}

/// Stores the batch's device votes inside its transaction (one device
/// vote is one row of `votes`, so `SELECT choice, count(*)` stays equal to
/// the totals): a new device inserts its row, counted in this writer's
/// shard; a change rewrites the row and moves one from the old choice on
/// the shard that counted it to the new one on this shard. Device rows are
/// locked in device order, then the shards in shard order, so two replicas
/// changing devices never wait on each other in a cycle. A device inserted
/// meanwhile by another replica makes the insert fail, and the retried
/// batch then finds it: a change, never a second row.
pub(super) async fn store_devices(
    client: &Object,
    writer: Writer,
    batch_id: i64,
    rows: &BatchRows<'_>,
    deadline: Instant,
) -> Result<Devices, DbError> {
    let mut out = Devices::default();
    if rows.devices.is_empty() {
        return Ok(out);
    }
    let live = answer_known_keys(client, rows, deadline, &mut out.outcomes).await?;
    if live.is_empty() {
        return Ok(out);
    }
    let found = lock_devices(client, writer, &live, deadline).await?;
    let changes = changes(writer, live, &found, &mut out.outcomes);
    if changes.deltas.is_empty() {
        return Ok(out);
    }
    lock_shards(client, &changes.deltas, deadline).await?;
    write_rows(client, writer, batch_id, &changes, deadline).await?;
    out.copies = apply_deltas(client, &changes.deltas, deadline).await?;
    Ok(out)
}

/// Answers the device votes whose idempotency key is known, from its
/// stored vote as for any vote; returns the others, still to be stored.
async fn answer_known_keys<'v, 'a>(
    client: &Object,
    rows: &'v BatchRows<'a>,
    deadline: Instant,
    outcomes: &mut HashMap<String, DeviceOutcome>,
) -> Result<Vec<&'v DeviceVote<'a>>, DbError> {
    let keys: Vec<&str> = rows.devices.iter().filter_map(|d| d.key).collect();
    let stored: HashMap<String, KeyedVote> = if keys.is_empty() {
        HashMap::new()
    } else {
        keyed_votes(client, &keys, deadline)
            .await?
            .into_iter()
            .collect()
    };
    let mut live = Vec::with_capacity(rows.devices.len());
    for vote in &rows.devices {
        // A known key is answered from its stored vote, as for any vote.
        match vote.key.and_then(|k| stored.get(k)) {
            Some(v) if v.choice == vote.choice => {
                outcomes.insert(vote.device.to_owned(), DeviceOutcome::Replayed);
            }
            Some(_) => {
                outcomes.insert(vote.device.to_owned(), DeviceOutcome::KeyReused);
            }
            None => live.push(vote),
        }
    }
    Ok(live)
}

/// The stored choice and shard of each device of `live` that has a row,
/// the rows locked in device order.
async fn lock_devices(
    client: &Object,
    writer: Writer,
    live: &[&DeviceVote<'_>],
    deadline: Instant,
) -> Result<HashMap<String, (String, i32)>, DbError> {
    let ids: Vec<&str> = live.iter().map(|d| d.device).collect();
    // Unprepared (an unnamed statement, planned for these ids): a cached
    // plan made while `votes` was empty scans the whole table for every
    // batch until something invalidates it, which made a fresh database
    // answer new devices at a tenth of the rate.
    let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 1] =
        [(&ids, Type::TEXT_ARRAY)];
    let lookup = client.query_typed(
        "SELECT device_id, choice, shard FROM votes
         WHERE device_id = ANY($1::text[]) ORDER BY device_id FOR UPDATE",
        &params,
    );
    let mut found = HashMap::new();
    for row in cancel_after(client, deadline, lookup).await? {
        let device: String = row.try_get(0)?;
        let choice: String = row.try_get(1)?;
        let shard: Option<i32> = row.try_get(2)?;
        // Every device row is stored with its shard; NULL would be a row
        // from outside the app, counted (if at all) nowhere in particular.
        found.insert(device, (choice, shard.unwrap_or(writer.shard)));
    }
    Ok(found)
}

/// shard -> choice key -> change of its count
type Deltas<'v> = BTreeMap<i32, BTreeMap<&'v str, i64>>;

/// What the device votes still to be stored change.
struct Changes<'v, 'a> {
    /// Devices without a row: inserted.
    new: Vec<&'v DeviceVote<'a>>,
    /// Devices whose row holds another choice: rewritten.
    changed: Vec<&'v DeviceVote<'a>>,
    deltas: Deltas<'v>,
}

/// Each device vote's outcome (into `outcomes`) against the rows `found`,
/// and the rows and counts it changes.
fn changes<'v, 'a: 'v>(
    writer: Writer,
    live: Vec<&'v DeviceVote<'a>>,
    found: &'v HashMap<String, (String, i32)>,
    outcomes: &mut HashMap<String, DeviceOutcome>,
) -> Changes<'v, 'a> {
    let mut deltas: Deltas<'v> = BTreeMap::new();
    let (mut new, mut changed) = (Vec::new(), Vec::new());
    for vote in live {
        let outcome = match found.get(vote.device) {
            None => {
                new.push(vote);
                DeviceOutcome::New
            }
            Some((old, _)) if old == vote.choice => DeviceOutcome::Same,
            Some((old, shard)) => {
                changed.push(vote);
                *deltas.entry(*shard).or_default().entry(old).or_default() -= 1;
                DeviceOutcome::Changed(old.clone())
            }
        };
        if outcome != DeviceOutcome::Same {
            *deltas
                .entry(writer.shard)
                .or_default()
                .entry(vote.choice)
                .or_default() += 1;
        }
        outcomes.insert(vote.device.to_owned(), outcome);
    }
    Changes {
        new,
        changed,
        deltas,
    }
}

/// Locks the `vote_totals` rows of the shards `deltas` changes, in shard
/// order.
async fn lock_shards(
    client: &Object,
    deltas: &Deltas<'_>,
    deadline: Instant,
) -> Result<(), DbError> {
    let shards: Vec<i32> = deltas.keys().copied().collect();
    let stmt = cancel_after(
        client,
        deadline,
        client.prepare_cached(
            "SELECT shard FROM vote_totals WHERE shard = ANY($1::int[]) ORDER BY shard FOR UPDATE",
        ),
    )
    .await?;
    cancel_after(client, deadline, client.query(&stmt, &[&shards])).await?;
    Ok(())
}

/// Inserts the new devices' rows and rewrites the changed ones, counted in
/// this writer's shard.
async fn write_rows(
    client: &Object,
    writer: Writer,
    batch_id: i64,
    changes: &Changes<'_, '_>,
    deadline: Instant,
) -> Result<(), DbError> {
    for (votes, sql) in [
        (
            &changes.new,
            "INSERT INTO votes (choice, referral_code, idempotency_key, device_id, batch_id, shard)
             SELECT c, r, k, d, $5, $6 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(c, r, k, d)",
        ),
        (
            &changes.changed,
            "UPDATE votes AS v
             SET choice = t.c, referral_code = t.r,
                 idempotency_key = coalesce(t.k, v.idempotency_key),
                 batch_id = $5, shard = $6
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(c, r, k, d)
             WHERE v.device_id = t.d",
        ),
    ] {
        if votes.is_empty() {
            continue;
        }
        let (choices, referrals, keys, devices) = device_columns(votes);
        // Unprepared, as the lookup above: the change joins `votes` on
        // `device_id`, and a plan cached while the table was empty scans it.
        let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 6] = [
            (&choices, Type::TEXT_ARRAY),
            (&referrals, Type::TEXT_ARRAY),
            (&keys, Type::TEXT_ARRAY),
            (&devices, Type::TEXT_ARRAY),
            (&batch_id, Type::INT8),
            (&writer.shard, Type::INT4),
        ];
        cancel_after(client, deadline, client.execute_typed(sql, &params)).await?;
    }
    Ok(())
}

/// Adds `deltas` to their shards' counts; the shards' totals after it.
async fn apply_deltas(
    client: &Object,
    deltas: &Deltas<'_>,
    deadline: Instant,
) -> Result<Vec<ShardCopy>, DbError> {
    let (mut at, mut keys, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (shard, changes) in deltas {
        for (key, n) in changes {
            at.push(*shard);
            keys.push(*key);
            counts.push(*n);
        }
    }
    let stmt = cancel_after(
        client,
        deadline,
        client.prepare_cached(concat!(
            "WITH d AS (
                 SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[]) AS t(sh, k, n)
             ), changed AS (
                 UPDATE vote_totals AS s
                 SET version = s.version + 1,
                     counts = ",
            merged_counts!("SELECT d.k, d.n FROM d WHERE d.sh = s.shard"),
            "
                 WHERE s.shard IN (SELECT sh FROM d)
                 RETURNING s.shard, s.epoch, s.version, s.counts
             )
             SELECT ",
            shard_columns!(),
            " FROM changed"
        )),
    )
    .await?;
    let changed = cancel_after(
        client,
        deadline,
        client.query(&stmt, &[&at, &keys, &counts]),
    )
    .await?;
    changed.iter().map(|row| shard_copy(row, 0)).collect()
}

/// Device votes as columns for `unnest`: choices, referrals, keys, devices.
type DeviceColumns<'a> = (
    Vec<&'a str>,
    Vec<Option<&'a str>>,
    Vec<Option<&'a str>>,
    Vec<&'a str>,
);

fn device_columns<'a>(votes: &[&DeviceVote<'a>]) -> DeviceColumns<'a> {
    (
        votes.iter().map(|d| d.choice).collect(),
        votes.iter().map(|d| d.referral).collect(),
        votes.iter().map(|d| d.key).collect(),
        votes.iter().map(|d| d.device).collect(),
    )
}

/// The choice stored for `device` (its key as stored), if it voted.
pub async fn device_choice(
    pool: &deadpool_postgres::Pool,
    device: &str,
) -> Result<Option<String>, DbError> {
    crate::db::within(LOOKUP_TIMEOUT, async {
        let client = pool.get().await?;
        let stmt = client
            .prepare_cached("SELECT choice FROM votes WHERE device_id = $1")
            .await?;
        let row = client.query_opt(&stmt, &[&device]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    })
    .await
}
