//! The incident timeline's domain (docs/contract.md, the speaker's console):
//! what happened to a vote (`Outcome`), counts per time bucket, the version
//! markers, and the RFC 3339 times clients see. The actor counts outcomes,
//! `db::timeline` stores and reads them, the views and handlers draw and
//! serve them; all of them import from here.

/// What happened to one vote (docs/contract.md, the speaker's console); `Invalid` is any 4xx refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Accepted,
    ReferralCacheExhausted,
    Invalid,
    DbUnavailable,
    Overloaded,
}

impl Outcome {
    /// Every outcome, in the order of `/timeline.json` and the CSV columns.
    pub const ALL: [Outcome; 5] = [
        Outcome::Accepted,
        Outcome::ReferralCacheExhausted,
        Outcome::Invalid,
        Outcome::DbUnavailable,
        Outcome::Overloaded,
    ];

    /// The key in JSON, CSV and PostgreSQL.
    pub fn key(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::ReferralCacheExhausted => "referral_cache_exhausted",
            Outcome::Invalid => "invalid",
            Outcome::DbUnavailable => "db_unavailable",
            Outcome::Overloaded => "overloaded",
        }
    }

    /// Position in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A refusal the service caused (answered with a 5xx), which the
    /// projector's degraded sign counts; the others are the voter's.
    pub fn is_unavailable(self) -> bool {
        matches!(
            self,
            Outcome::ReferralCacheExhausted | Outcome::DbUnavailable | Outcome::Overloaded
        )
    }

    pub fn from_key(key: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.key() == key)
    }
}

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
    fn formats_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_987_997_123), "2026-11-29T21:33:17.123Z");
        assert_eq!(rfc3339(-1_000), "1969-12-31T23:59:59Z");
    }
}
