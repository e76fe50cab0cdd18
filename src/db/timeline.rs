//! `timeline_counts` and `timeline_processes`: the incident timeline's
//! flush (one upsert per flush, whatever the vote rate), its read in at most
//! `MAX_BUCKETS` buckets, and its reset. Times are Unix seconds (buckets) and
//! milliseconds (markers); `crate::timeline::rfc3339` formats them for clients.

use deadpool_postgres::Object;

use super::DbError;
use crate::timeline::{Bucket, Marker, Outcome, Timeline};

/// Most buckets a read returns: 1 s while the session is young, coarser after.
pub const MAX_BUCKETS: i64 = 300;
/// Bucket widths in seconds, finest first; beyond the last one it doubles.
const WIDTHS: [i64; 17] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400,
];

/// Adds one flush: per-second counts of one process, and the process's first
/// answer if it is new to this session. One statement, one round trip.
pub async fn add(
    client: &Object,
    process: &str,
    version: &str,
    first_seen_ms: i64,
    seconds: &[i64],
    outcomes: &[&str],
    counts: &[i64],
) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "WITH process AS (
                 INSERT INTO timeline_processes (process, version, first_seen_ms)
                 VALUES ($1, $2, $3) ON CONFLICT (process) DO NOTHING
             )
             INSERT INTO timeline_counts (second, version, outcome, n)
             SELECT s, $2, o, c FROM unnest($4::bigint[], $5::text[], $6::bigint[]) AS t(s, o, c)
             ON CONFLICT (second, version, outcome) DO UPDATE SET n = timeline_counts.n + EXCLUDED.n",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &process,
                &version,
                &first_seen_ms,
                &seconds,
                &outcomes,
                &counts,
            ],
        )
        .await?;
    Ok(())
}

/// The timeline in at most `MAX_BUCKETS` buckets, and its version markers.
pub async fn read(client: &Object) -> Result<Timeline, DbError> {
    let span = client
        .query_one("SELECT min(second), max(second) FROM timeline_counts", &[])
        .await?;
    let (Some(lo), Some(hi)) = (span.try_get::<_, Option<i64>>(0)?, span.try_get(1)?) else {
        return Ok(Timeline::default());
    };
    let width = bucket_width(lo, hi);
    let first = lo.div_euclid(width) * width;
    let count = hi.div_euclid(width) - lo.div_euclid(width) + 1;
    let mut buckets: Vec<Bucket> = (0..count)
        .map(|i| Bucket {
            start: first + i * width,
            seconds: width,
            counts: [0; 5],
        })
        .collect();
    let rows = client
        .query(
            "SELECT second / $1 * $1, outcome, sum(n)::bigint FROM timeline_counts GROUP BY 1, 2",
            &[&width],
        )
        .await?;
    for row in rows {
        let start: i64 = row.try_get(0)?;
        let outcome: &str = row.try_get(1)?;
        let n: i64 = row.try_get(2)?;
        let slot = usize::try_from((start - first) / width).ok();
        // The CHECK constraint keeps unknown outcomes out; skip rather than panic.
        if let (Some(bucket), Some(outcome)) = (
            slot.and_then(|i| buckets.get_mut(i)),
            Outcome::from_key(outcome),
        ) {
            bucket.counts[outcome.index()] += u64::try_from(n).unwrap_or(0);
        }
    }
    let rows = client
        .query(
            "SELECT version, first_seen_ms FROM timeline_processes ORDER BY first_seen_ms, process",
            &[],
        )
        .await?;
    let mut versions: Vec<Marker> = Vec::new();
    for row in rows {
        let version: String = row.try_get(0)?;
        // Another replica of the version already answering is no marker.
        if versions.last().is_some_and(|m| m.version == version) {
            continue;
        }
        versions.push(Marker {
            version,
            first_seen_ms: row.try_get(1)?,
        });
    }
    Ok(Timeline { buckets, versions })
}

/// Empties the timeline (session reset).
pub async fn clear(client: &Object) -> Result<(), DbError> {
    client
        .batch_execute("TRUNCATE timeline_counts, timeline_processes")
        .await?;
    Ok(())
}

/// The finest width that draws `lo..=hi` in at most `MAX_BUCKETS` buckets.
pub fn bucket_width(lo: i64, hi: i64) -> i64 {
    let fits = |w: i64| hi.div_euclid(w) - lo.div_euclid(w) < MAX_BUCKETS;
    if let Some(w) = WIDTHS.into_iter().find(|&w| fits(w)) {
        return w;
    }
    let mut w = WIDTHS[WIDTHS.len() - 1];
    while !fits(w) {
        w *= 2;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_one_second_while_young_then_coarsen() {
        assert_eq!(bucket_width(1_000, 1_000), 1);
        assert_eq!(bucket_width(1_000, 1_299), 1);
        assert_eq!(bucket_width(1_000, 1_300), 2);
        assert_eq!(bucket_width(0, 3_600), 15);
        assert_eq!(bucket_width(0, 86_400 * 400), 172_800);
        for span in [0, 299, 300, 4_000, 100_000, 10_000_000] {
            let w = bucket_width(1_700_000_001, 1_700_000_001 + span);
            let n = (1_700_000_001 + span) / w - 1_700_000_001 / w + 1;
            assert!(n <= MAX_BUCKETS, "{span} s in {n} buckets of {w} s");
        }
    }
}
