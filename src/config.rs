//! Typed configuration read once from the environment (README.md#configuration).
//! `Config::from_env` is the only reader of process variables; everything
//! else receives the parsed values, so tests build a `Config` by hand.

use std::net::SocketAddr;
use std::str::FromStr;

use thiserror::Error;

use crate::brand::Conference;

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
    pub admin_token: Option<String>,
    pub log_format: LogFormat,
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

        let format = get("LOG_FORMAT", "text");
        let log_format = match format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(invalid("LOG_FORMAT", &format, "expected text or json")),
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
            admin_token: optional("ADMIN_TOKEN"),
            log_format,
        })
    }
}

fn invalid(var: &'static str, value: &str, reason: impl ToString) -> ConfigError {
    ConfigError {
        var,
        value: redact_password(value),
        reason: reason.to_string(),
    }
}

/// Hides the password of `scheme://user:password@host` so that a start-up
/// error never prints a secret into the logs.
fn redact_password(value: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = parse(&[]).expect("defaults are valid");
        assert_eq!(config.bind_addr.port(), 8000);
        assert_eq!(config.db_pool_size, 5);
        assert_eq!(config.redis_url, "redis://localhost:6379/0");
        assert_eq!(config.log_format, LogFormat::Text);
        assert!(config.admin_token.is_none());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("BIND_ADDR", "0.0.0.0:http"),
            ("DB_POOL_SIZE", "many"),
            ("DB_POOL_SIZE", "0"),
            ("REDIS_URL", "tcp://nowhere"),
            ("DATABASE_URL", "postgresql://u@h:notaport/db"),
            ("LOG_FORMAT", "xml"),
            ("CONFERENCE", "woodstock"),
            ("PUBLIC_URL", "ftp://example.org"),
        ] {
            let err = parse(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var);
            assert!(
                err.to_string().starts_with(&format!("invalid {var}=")),
                "{err}"
            );
        }
    }

    #[test]
    fn errors_never_show_passwords() {
        let err = parse(&[("DATABASE_URL", "postgresql://app:hunter2@db:notaport/x")])
            .expect_err("bad port");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("app:***@db"), "{err}");
        assert_eq!(
            redact_password("redis://:pw@r:6379/0"),
            "redis://:***@r:6379/0"
        );
        assert_eq!(redact_password("redis://r:6379/0"), "redis://r:6379/0");
    }

    #[test]
    fn optional_values_are_read() {
        let config = parse(&[
            ("CONFERENCE", "kubecon"),
            ("PUBLIC_URL", "https://vote.example.org/"),
            ("ADMIN_TOKEN", "s3cret"),
            ("APP_VERSION", "dev-mirrord"),
        ])
        .expect("valid");
        assert_eq!(config.conference, Some(Conference::Kubecon));
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://vote.example.org")
        );
        assert_eq!(config.admin_token.as_deref(), Some("s3cret"));
        assert_eq!(config.app_version, "dev-mirrord");
    }
}
