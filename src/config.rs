//! Typed configuration read once from the environment (README.md#configuration).
//! `Config::from_env` is the only reader of process variables; everything
//! else receives the parsed values, so tests build a `Config` by hand.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::brand::Conference;
use crate::poll::{MAX_POLL_BYTES, Poll};

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
    /// Reads and validates every variable of README.md#configuration.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as `from_env`, reading variables through `lookup` (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());
        let optional = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let database_url = get(
            "DATABASE_URL",
            "postgresql://postgres:postgres@localhost:5432/conference",
        );
        tokio_postgres::Config::from_str(&database_url)
            .map_err(|e| invalid("DATABASE_URL", &database_url, e))?;

        let redis_url = get("REDIS_URL", "redis://localhost:6379/0");
        redis::Client::open(redis_url.as_str()).map_err(|e| invalid("REDIS_URL", &redis_url, e))?;

        let bind = get("BIND_ADDR", "0.0.0.0:8000");
        let bind_addr = bind.parse().map_err(|e| invalid("BIND_ADDR", &bind, e))?;

        let conference = match optional("CONFERENCE") {
            None => None,
            Some(key) => Some(Conference::from_key(&key).ok_or_else(|| {
                invalid(
                    "CONFERENCE",
                    &key,
                    format!("expected one of {}", Conference::KEYS.join(", ")),
                )
            })?),
        };

        let public_url = match optional("PUBLIC_URL") {
            None => None,
            Some(url) => {
                let ok = (url.starts_with("http://") || url.starts_with("https://"))
                    && !url.contains(char::is_whitespace);
                if !ok {
                    return Err(invalid(
                        "PUBLIC_URL",
                        &url,
                        "expected an http:// or https:// URL",
                    ));
                }
                Some(url.trim_end_matches('/').to_owned())
            }
        };

        let pool = get("DB_POOL_SIZE", "5");
        let db_pool_size = match pool.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "DB_POOL_SIZE",
                    &pool,
                    "expected a whole number from 1 to 1000",
                ));
            }
        };
        // Accepted for compatibility with the original's settings; the pool has a fixed size.
        if let Some(overflow) = optional("DB_MAX_OVERFLOW") {
            overflow
                .parse::<usize>()
                .map_err(|e| invalid("DB_MAX_OVERFLOW", &overflow, e))?;
        }

        let admin_token = match lookup("ADMIN_TOKEN") {
            None => None,
            // Set but blank used to switch authentication off silently.
            Some(token) if token.trim().is_empty() => {
                return Err(invalid(
                    "ADMIN_TOKEN",
                    &token,
                    "set but empty: unset it (admin from loopback only) or give a token of at least 24 characters",
                ));
            }
            Some(token) if !token.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(invalid(
                    "ADMIN_TOKEN",
                    "***",
                    "only visible ASCII characters (no spaces): it is sent as a Bearer token",
                ));
            }
            // Guessable tokens open the reset to anyone who can try them.
            Some(token) if token.len() < MIN_ADMIN_TOKEN_CHARS => {
                return Err(invalid(
                    "ADMIN_TOKEN",
                    "***",
                    format!(
                        "{} characters, at least {MIN_ADMIN_TOKEN_CHARS} needed (e.g. openssl rand -hex 24)",
                        token.len()
                    ),
                ));
            }
            Some(token) => Some(AdminToken::new(&token)),
        };

        let addr = |var: &'static str| match optional(var) {
            None => Ok(None),
            Some(addr) => addr
                .parse::<SocketAddr>()
                .map(Some)
                .map_err(|e| invalid(var, &addr, e)),
        };
        let metrics_addr = addr("METRICS_ADDR")?;
        let probe_addr = addr("PROBE_ADDR")?;
        if let Some(probes) = probe_addr
            && probes == bind_addr
        {
            return Err(invalid(
                "PROBE_ADDR",
                &probes.to_string(),
                "the same as BIND_ADDR: unset it to serve the probes on the public port",
            ));
        }

        let format = get("LOG_FORMAT", "text");
        let log_format = match format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(invalid("LOG_FORMAT", &format, "expected text or json")),
        };

        let timeline = match get("TIMELINE", "on").as_str() {
            "on" => true,
            "off" => false,
            other => return Err(invalid("TIMELINE", other, "expected on or off")),
        };
        let limit = |var: &'static str| match optional(var) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(Some(n)),
                _ => Err(invalid(
                    var,
                    &v,
                    "expected a whole number from 1 to 1000000",
                )),
            },
        };
        let db_volume_bytes = match optional("DB_VOLUME_SIZE") {
            None => None,
            Some(size) => Some(parse_quantity(size.trim()).ok_or_else(|| {
                invalid(
                    "DB_VOLUME_SIZE",
                    &size,
                    "expected bytes or a Kubernetes quantity such as 1Gi or 500M",
                )
            })?),
        };
        let max_streams = limit("MAX_STREAMS")?;
        let max_connections = limit("MAX_CONNECTIONS")?;
        let poll = Arc::new(poll(optional("POLL"), optional("POLL_FILE"))?);
        let stream_reserve = match optional("STREAM_RESERVE") {
            None => None,
            Some(v) => match v.trim().parse::<usize>() {
                // A reserve as large as the budget would refuse every anonymous screen.
                Ok(n) if max_streams.is_some_and(|max| n >= max) => {
                    return Err(invalid(
                        "STREAM_RESERVE",
                        &v,
                        "must be smaller than MAX_STREAMS: anonymous screens get the rest",
                    ));
                }
                Ok(n) if n <= 1_000_000 => Some(n),
                _ => {
                    return Err(invalid(
                        "STREAM_RESERVE",
                        &v,
                        "expected a whole number from 0 to 1000000",
                    ));
                }
            },
        };
        let one_vote_per_device = match get("ONE_VOTE_PER_DEVICE", "no").as_str() {
            "yes" => true,
            "no" => false,
            other => {
                return Err(invalid("ONE_VOTE_PER_DEVICE", other, "expected yes or no"));
            }
        };
        let device_key = match optional("DEVICE_KEY") {
            None => None,
            // The value is a secret: never echoed.
            Some(hex) => Some(DeviceKey(
                crate::signing::parse_hex_key(&hex).map_err(|e| invalid("DEVICE_KEY", "***", e))?,
            )),
        };

        Ok(Config {
            database_url,
            redis_url,
            bind_addr,
            app_version: optional("APP_VERSION")
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            conference,
            public_url,
            db_pool_size,
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

/// Hides the password of `scheme://user:password@host`, and every
/// `password=...` (libpq's key=value form, or a URL query parameter), so that
/// a start-up error never prints a secret into the logs.
fn redact_password(value: &str) -> String {
    redact_password_keys(&redact_userinfo(value))
}

fn redact_userinfo(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return value.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => value.to_owned(),
    }
}

/// `password = 'it''s \' secret'` or `password=x&...`: the value ends at its
/// closing quote, or at whitespace or `&` when unquoted.
fn redact_password_keys(value: &str) -> String {
    const KEY: &str = "password";
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(found) = rest.to_ascii_lowercase().find(KEY) {
        out.push_str(&rest[..found + KEY.len()]);
        rest = &rest[found + KEY.len()..];
        let after_key = rest.trim_start();
        let Some(after_eq) = after_key.strip_prefix('=') else {
            continue;
        };
        out.push_str(&rest[..rest.len() - after_eq.len()]);
        let spaces = after_eq.len() - after_eq.trim_start().len();
        out.push_str(&after_eq[..spaces]);
        let val = &after_eq[spaces..];
        let end = if let Some(quoted) = val.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let mut end = val.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' => {
                        end = i + 2;
                        break;
                    }
                    _ => {}
                }
            }
            end
        } else {
            val.find(|c: char| c.is_whitespace() || c == '&')
                .unwrap_or(val.len())
        };
        out.push_str("***");
        rest = &val[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
