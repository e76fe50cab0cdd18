//! `timeline_counts` and `timeline_processes`: the incident timeline's
//! flush (one upsert per flush, whatever the vote rate), its read in at most
//! `MAX_BUCKETS` buckets, and its reset. Times are Unix seconds (buckets) and
//! milliseconds (markers); `rfc3339` formats them for clients.

use deadpool_postgres::Object;

use super::DbError;
use crate::actors::timeline::Outcome;

/// Most buckets a read returns: 1 s while the session is young, coarser after.
pub const MAX_BUCKETS: i64 = 300;
/// Bucket widths in seconds, finest first; beyond the last one it doubles.
const WIDTHS: [i64; 17] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400,
];

/// One time bucket: counts indexed by `Outcome::index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub start: i64,
    pub seconds: i64,
    pub counts: [u64; 5],
}

impl Bucket {
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.counts[outcome.index()]
    }

    /// Refused votes of any reason.
    pub fn refused(&self) -> u64 {
        self.counts.iter().sum::<u64>() - self.get(Outcome::Accepted)
    }
}

/// Where a process with another version started answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub version: String,
    pub first_seen_ms: i64,
}

/// The whole timeline since the last reset, ready to draw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Contiguous, oldest first (empty buckets included).
    pub buckets: Vec<Bucket>,
    pub versions: Vec<Marker>,
}

impl Timeline {
    /// Sum over every bucket for `outcome`.
    pub fn total(&self, outcome: Outcome) -> u64 {
        self.buckets.iter().map(|b| b.get(outcome)).sum()
    }
}

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

/// `ms` since the Unix epoch as RFC 3339 in UTC (`…T…Z`, milliseconds when
/// not whole seconds).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    if millis == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
    }
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

    #[test]
    fn formats_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_987_997_123), "2026-11-29T21:33:17.123Z");
        assert_eq!(rfc3339(-1_000), "1969-12-31T23:59:59Z");
    }
}
