//! Typed configuration read once from the environment (docs/operate.md#configuration).
//! `Config::from_env` is the only reader of process variables; everything
//! else receives the parsed values, so tests build a `Config` by hand.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::brand::Conference;
use crate::poll::{MAX_POLL_BYTES, Poll};
use redact::redact_password;

mod redact;

/// A variable that could not be parsed; the message names it.
#[derive(Debug, Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub redis_url: String,
    pub bind_addr: SocketAddr,
    pub app_version: String,
    pub conference: Option<Conference>,
    pub public_url: Option<String>,
    pub db_pool_size: usize,
    /// `DB_MAX_OVERFLOW`: accepted and validated for compatibility, without
    /// effect (the pool has a fixed size); start-up says so when it is set.
    pub db_max_overflow: Option<usize>,
    pub admin_token: Option<AdminToken>,
    /// When set, `/metrics` is served there only (not on `bind_addr`).
    pub metrics_addr: Option<SocketAddr>,
    /// When set, `/health`, `/ready` and `/ready/votes` are also served
    /// there, outside the public connection budgets (one listener with
    /// `metrics_addr` when both are the same address).
    pub probe_addr: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// `MAX_STREAMS`: open `/stream` connections at most (unset: derived at start-up).
    pub max_streams: Option<usize>,
    /// `MAX_CONNECTIONS`: all other connections at most (unset: derived at start-up).
    pub max_connections: Option<usize>,
    /// Count vote outcomes for the incident timeline (`TIMELINE=off` measures its cost).
    pub timeline: bool,
    /// `DB_VOLUME_SIZE`: bytes of PostgreSQL's volume, exported for the
    /// disk-filling alert (the chart sets it from `storage.size`).
    pub db_volume_bytes: Option<u64>,
    /// The question and choices: `POLL`, else `POLL_FILE`, else the seed's.
    pub poll: Arc<Poll>,
    /// `STREAM_RESERVE`: stream slots only a signed screen ticket may use
    /// (unset: `DEFAULT_STREAM_RESERVE`, at most a quarter of the budget).
    pub stream_reserve: Option<usize>,
    /// `ONE_VOTE_PER_DEVICE=yes`: a device cookie, and a later vote changes
    /// the device's choice instead of adding one.
    pub one_vote_per_device: bool,
    /// `DEVICE_KEY`: the shared signing key (unset: kept in PostgreSQL).
    pub device_key: Option<DeviceKey>,
}

/// The projector's share of the stream budget when `STREAM_RESERVE` is unset.
pub const DEFAULT_STREAM_RESERVE: usize = 16;

/// The `DEVICE_KEY` bytes; `Debug` cannot print them.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey(pub Vec<u8>);

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKey(***)")
    }
}

/// The shortest `ADMIN_TOKEN` that starts (the chart's schema asks the same).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 24;

/// The `ADMIN_TOKEN`, kept only as its SHA-256 digest: comparing two
/// fixed-size digests takes the same time whatever the token's length or
/// content, and `Debug` cannot print the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    pub fn new(token: &str) -> Self {
        AdminToken(Sha256::digest(token.as_bytes()).into())
    }

    /// True when `presented` is the token, in time independent of both.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // No early exit: every byte is compared; black_box keeps the
        // optimiser from turning the fold back into a short-circuit.
        let diff = self
            .0
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | std::hint::black_box(a ^ b));
        diff == 0
    }
}

impl From<&str> for AdminToken {
    fn from(token: &str) -> Self {
        AdminToken::new(token)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl Config {
    /// Reads and validates every variable of docs/operate.md#configuration.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as `from_env`, reading variables through `lookup` (for tests).
    /// A variable's checks come in this order: the first failing one is
    /// the error.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        let (database_url, redis_url, bind_addr) = servers(&vars)?;
        let conference = vars.parsed("CONFERENCE", |key| {
            Conference::from_key(key)
                .ok_or_else(|| format!("expected one of {}", Conference::KEYS.join(", ")))
        })?;
        let public_url = vars.parsed("PUBLIC_URL", public_url)?;

        let pool = vars.get("DB_POOL_SIZE", "5");
        let db_pool_size = whole_in(&pool, 1..=1000).ok_or_else(|| {
            invalid(
                "DB_POOL_SIZE",
                &pool,
                "expected a whole number from 1 to 1000",
            )
        })?;
        // DB_MAX_OVERFLOW: accepted for compatibility with the original's
        // settings (docs/operate.md#configuration) and validated as before, but
        // without effect: the pool has a fixed size. Kept in `Config` so
        // that start-up (main.rs) can say so.
        let db_max_overflow = vars.parsed("DB_MAX_OVERFLOW", str::parse::<usize>)?;
        let admin_token = admin_token(vars.raw("ADMIN_TOKEN"))?;
        let (metrics_addr, probe_addr) = operational_addrs(&vars, bind_addr)?;

        let log_format = vars.one_of(
            "LOG_FORMAT",
            "text",
            [("text", LogFormat::Text), ("json", LogFormat::Json)],
            "expected text or json",
        )?;
        let timeline = vars.one_of(
            "TIMELINE",
            "on",
            [("on", true), ("off", false)],
            "expected on or off",
        )?;
        let db_volume_bytes = vars.parsed("DB_VOLUME_SIZE", |size| {
            parse_quantity(size.trim())
                .ok_or("expected bytes or a Kubernetes quantity such as 1Gi or 500M")
        })?;
        let limit = "expected a whole number from 1 to 1000000";
        let max_streams = vars.number("MAX_STREAMS", 1..=1_000_000, limit)?;
        let max_connections = vars.number("MAX_CONNECTIONS", 1..=1_000_000, limit)?;
        let poll = Arc::new(poll(vars.optional("POLL"), vars.optional("POLL_FILE"))?);
        let stream_reserve = vars.parsed("STREAM_RESERVE", |v| stream_reserve(v, max_streams))?;
        let one_vote_per_device = vars.one_of(
            "ONE_VOTE_PER_DEVICE",
            "no",
            [("yes", true), ("no", false)],
            "expected yes or no",
        )?;
        let device_key = device_key(vars.optional("DEVICE_KEY"))?;

        Ok(Config {
            database_url,
            redis_url,
            bind_addr,
            app_version: vars
                .optional("APP_VERSION")
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            conference,
            public_url,
            db_pool_size,
            db_max_overflow,
            admin_token,
            metrics_addr,
            probe_addr,
            log_format,
            timeline,
            max_streams,
            max_connections,
            db_volume_bytes,
            poll,
            stream_reserve,
            one_vote_per_device,
            device_key,
        })
    }
}

/// The variables as `Config::from_lookup` reads them.
struct Vars<L>(L);

impl<L: Fn(&str) -> Option<String>> Vars<L> {
    /// The value as set, blank included.
    fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// The value, `default` when unset.
    fn get(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    /// The value; unset and blank are the same.
    fn optional(&self, name: &str) -> Option<String> {
        self.raw(name).filter(|v| !v.trim().is_empty())
    }

    /// `var` read by `parse` when set (not blank); its error names the
    /// value with `parse`'s reason.
    fn parsed<T, R: ToString>(
        &self,
        var: &'static str,
        parse: impl FnOnce(&str) -> Result<T, R>,
    ) -> Result<Option<T>, ConfigError> {
        self.optional(var)
            .map(|v| parse(&v).map_err(|reason| invalid(var, &v, reason)))
            .transpose()
    }

    /// `var` as a whole number in `range` when set (blanks around it
    /// allowed); anything else is refused with `reason`.
    fn number(
        &self,
        var: &'static str,
        range: RangeInclusive<usize>,
        reason: &str,
    ) -> Result<Option<usize>, ConfigError> {
        self.parsed(var, |v| whole_in(v.trim(), range).ok_or(reason))
    }

    /// The value named by `var` (`default` when unset) among `options`;
    /// anything else is refused with `reason`.
    fn one_of<T: Copy, const N: usize>(
        &self,
        var: &'static str,
        default: &str,
        options: [(&str, T); N],
        reason: &str,
    ) -> Result<T, ConfigError> {
        let value = self.get(var, default);
        options
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, v)| *v)
            .ok_or_else(|| invalid(var, &value, reason))
    }
}

/// `value` as a whole number, when it is one in `range`.
fn whole_in(value: &str, range: RangeInclusive<usize>) -> Option<usize> {
    value.parse().ok().filter(|n| range.contains(n))
}

/// `DATABASE_URL` and `REDIS_URL` (each checked for its client) and
/// `BIND_ADDR`.
fn servers<L: Fn(&str) -> Option<String>>(
    vars: &Vars<L>,
) -> Result<(String, String, SocketAddr), ConfigError> {
    let database_url = vars.get(
        "DATABASE_URL",
        "postgresql://postgres:postgres@localhost:5432/conference",
    );
    tokio_postgres::Config::from_str(&database_url)
        .map_err(|e| invalid("DATABASE_URL", &database_url, e))?;

    let redis_url = vars.get("REDIS_URL", "redis://localhost:6379/0");
    redis::Client::open(redis_url.as_str()).map_err(|e| invalid("REDIS_URL", &redis_url, e))?;

    let bind = vars.get("BIND_ADDR", "0.0.0.0:8000");
    let bind_addr = bind.parse().map_err(|e| invalid("BIND_ADDR", &bind, e))?;
    Ok((database_url, redis_url, bind_addr))
}

/// `PUBLIC_URL` without its trailing slashes.
fn public_url(url: &str) -> Result<String, &'static str> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(char::is_whitespace);
    if ok {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err("expected an http:// or https:// URL")
    }
}

/// `METRICS_ADDR` and `PROBE_ADDR`; the probes need a listener of their own.
fn operational_addrs<L: Fn(&str) -> Option<String>>(
    vars: &Vars<L>,
    bind_addr: SocketAddr,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), ConfigError> {
    let metrics_addr = vars.parsed("METRICS_ADDR", str::parse::<SocketAddr>)?;
    let probe_addr = vars.parsed("PROBE_ADDR", str::parse::<SocketAddr>)?;
    if let Some(probes) = probe_addr
        && probes == bind_addr
    {
        return Err(invalid(
            "PROBE_ADDR",
            &probes.to_string(),
            "the same as BIND_ADDR: unset it to serve the probes on the public port",
        ));
    }
    Ok((metrics_addr, probe_addr))
}

/// `STREAM_RESERVE`, smaller than `MAX_STREAMS` when that is set.
fn stream_reserve(value: &str, max_streams: Option<usize>) -> Result<usize, &'static str> {
    match value.trim().parse::<usize>() {
        // A reserve as large as the budget would refuse every anonymous screen.
        Ok(n) if max_streams.is_some_and(|max| n >= max) => {
            Err("must be smaller than MAX_STREAMS: anonymous screens get the rest")
        }
        Ok(n) if n <= 1_000_000 => Ok(n),
        _ => Err("expected a whole number from 0 to 1000000"),
    }
}

/// `DEVICE_KEY`, when set (not blank).
fn device_key(hex: Option<String>) -> Result<Option<DeviceKey>, ConfigError> {
    match hex {
        None => Ok(None),
        // The value is a secret: never echoed.
        Some(hex) => Ok(Some(DeviceKey(
            crate::signing::parse_hex_key(&hex).map_err(|e| invalid("DEVICE_KEY", "***", e))?,
        ))),
    }
}

/// `ADMIN_TOKEN` as set (blank included): unset switches authentication
/// off (admin from loopback only); a set token must be one that is hard to
/// guess.
fn admin_token(token: Option<String>) -> Result<Option<AdminToken>, ConfigError> {
    match token {
        None => Ok(None),
        // Set but blank used to switch authentication off silently.
        Some(token) if token.trim().is_empty() => Err(invalid(
            "ADMIN_TOKEN",
            &token,
            "set but empty: unset it (admin from loopback only) or give a token of at least 24 characters",
        )),
        Some(token) if !token.bytes().all(|b| b.is_ascii_graphic()) => Err(invalid(
            "ADMIN_TOKEN",
            "***",
            "only visible ASCII characters (no spaces): it is sent as a Bearer token",
        )),
        // Guessable tokens open the reset to anyone who can try them.
        Some(token) if token.len() < MIN_ADMIN_TOKEN_CHARS => Err(invalid(
            "ADMIN_TOKEN",
            "***",
            format!(
                "{} characters, at least {MIN_ADMIN_TOKEN_CHARS} needed (e.g. openssl rand -hex 24)",
                token.len()
            ),
        )),
        Some(token) => Ok(Some(AdminToken::new(&token))),
    }
}

/// A Kubernetes storage quantity (`1Gi`, `500M`, `1073741824`) in bytes.
fn parse_quantity(size: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (digits, unit) = UNITS
        .iter()
        .find_map(|(suffix, unit)| size.strip_suffix(suffix).map(|d| (d, *unit)))
        .unwrap_or((size, 1));
    let n: u64 = digits.parse().ok().filter(|n| *n > 0)?;
    n.checked_mul(unit)
}

/// The active poll. `POLL` (a poll file's content) wins over `POLL_FILE`:
/// under mirrord the pod's `POLL_FILE` path does not exist locally, while
/// `POLL` travels with the other variables.
fn poll(content: Option<String>, file: Option<String>) -> Result<Poll, ConfigError> {
    if let Some(text) = content {
        let size = format!("{} bytes", text.len());
        return Poll::parse(&text).map_err(|e| invalid("POLL", &size, e));
    }
    let Some(path) = file else {
        return Ok(Poll::seed());
    };
    let text = read_limited(&path, MAX_POLL_BYTES).map_err(|e| invalid("POLL_FILE", &path, e))?;
    Poll::parse(&text).map_err(|e| invalid("POLL_FILE", &path, e))
}

/// The file at `path` as UTF-8, refused past `limit` bytes without reading further.
fn read_limited(path: &str, limit: usize) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())
}

fn invalid(var: &'static str, value: &str, reason: impl ToString) -> ConfigError {
    ConfigError {
        var,
        value: redact_password(value),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
