//! `ApiError`: every way a request can fail, mapped to one status and a fixed
//! `{"detail": ...}` sentence. Internal causes go to the log, never to clients.

use hyper::StatusCode;
use thiserror::Error;
use tracing::warn;

use crate::actors::referral::ReferralError;
use crate::actors::session::ResetError;
use crate::actors::writer::WriteError;
use crate::timeline::Outcome;

/// An error answered to the client.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The active poll's keys, comma-separated (`Poll::key_list`).
    #[error("Invalid choice. Must be one of: {0}")]
    InvalidChoice(String),
    #[error("Invalid referral code")]
    InvalidReferral,
    #[error("Referral code too long (at most {0} characters)")]
    ReferralTooLong(usize),
    #[error("{0}")]
    Malformed(&'static str),
    #[error("Idempotency-Key must be 1 to 64 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("Idempotency key already used for another vote")]
    IdempotencyKeyReused,
    #[error("Unsupported content type: send application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("Request body too large (at most {0} bytes)")]
    PayloadTooLarge(usize),
    #[error("Request body not received in time")]
    BodyTimeout,
    #[error(transparent)]
    CacheExhausted(ReferralError),
    #[error("PostgreSQL not available")]
    DbUnavailable,
    #[error("Redis not available")]
    RedisUnavailable,
    #[error("Service overloaded, please retry")]
    Overloaded,
    #[error("Add ?confirm=yes to reset the session")]
    ConfirmRequired,
    #[error("Missing or wrong admin token (ADMIN_TOKEN): send it as Authorization: Bearer <token>")]
    Unauthorized,
    #[error(
        "Admin actions from another machine need ADMIN_TOKEN: this server has none set, so it accepts them only from loopback"
    )]
    AdminTokenUnset,
    #[error(
        "/metrics answers this machine only: set METRICS_ADDR to serve it on a port of its own"
    )]
    MetricsNotLocal,
    #[error(
        "Cross-site request refused: POST only from this site's own pages (Origin or Sec-Fetch-Site names another site)"
    )]
    CrossSite,
    #[error("Not found")]
    NotFound,
    #[error("Method not allowed")]
    MethodNotAllowed(&'static str),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidChoice(_)
            | ApiError::InvalidReferral
            | ApiError::ReferralTooLong(_)
            | ApiError::Malformed(_)
            | ApiError::InvalidIdempotencyKey
            | ApiError::ConfirmRequired => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RedisUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::CacheExhausted(_) | ApiError::DbUnavailable | ApiError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Unauthorized | ApiError::AdminTokenUnset => StatusCode::UNAUTHORIZED,
            ApiError::CrossSite | ApiError::MetricsNotLocal => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl ApiError {
    /// What a `POST /vote` refused with this error counts as on the incident
    /// timeline (docs/contract.md, the speaker's console). Exhaustive, so a
    /// new error is placed here when it is added. `None`: no vote was made
    /// (another method than `POST`).
    pub fn vote_outcome(&self) -> Option<Outcome> {
        Some(match self {
            ApiError::CacheExhausted(_) => Outcome::ReferralCacheExhausted,
            ApiError::DbUnavailable => Outcome::DbUnavailable,
            ApiError::RedisUnavailable | ApiError::Overloaded => Outcome::Overloaded,
            ApiError::InvalidChoice(_)
            | ApiError::InvalidReferral
            | ApiError::ReferralTooLong(_)
            | ApiError::Malformed(_)
            | ApiError::InvalidIdempotencyKey
            | ApiError::IdempotencyKeyReused
            | ApiError::UnsupportedMediaType
            | ApiError::PayloadTooLarge(_)
            | ApiError::BodyTimeout
            | ApiError::ConfirmRequired
            | ApiError::Unauthorized
            | ApiError::AdminTokenUnset
            | ApiError::MetricsNotLocal
            | ApiError::CrossSite
            | ApiError::NotFound => Outcome::Invalid,
            ApiError::MethodNotAllowed(_) => return None,
        })
    }
}

impl From<ReferralError> for ApiError {
    fn from(e: ReferralError) -> Self {
        match e {
            ReferralError::Unknown => ApiError::InvalidReferral,
            ReferralError::CacheExhausted(_) => ApiError::CacheExhausted(e),
            ReferralError::Db(cause) => {
                warn!(error = %cause, "referral lookup failed");
                ApiError::DbUnavailable
            }
            ReferralError::Unavailable => ApiError::Overloaded,
        }
    }
}

impl From<ResetError> for ApiError {
    fn from(e: ResetError) -> Self {
        match e {
            ResetError::Votes(e) => e.into(),
            ResetError::ReferralCache(_) => ApiError::Overloaded,
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Unavailable => ApiError::DbUnavailable,
            WriteError::Overloaded => ApiError::Overloaded,
            WriteError::KeyReused => ApiError::IdempotencyKeyReused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_votes_map_to_timeline_outcomes() {
        let of = |e: ApiError| e.vote_outcome();
        assert_eq!(
            of(ApiError::InvalidChoice(String::new())),
            Some(Outcome::Invalid)
        );
        assert_eq!(of(ApiError::PayloadTooLarge(1)), Some(Outcome::Invalid));
        assert_eq!(of(ApiError::UnsupportedMediaType), Some(Outcome::Invalid));
        assert_eq!(of(ApiError::CrossSite), Some(Outcome::Invalid));
        assert_eq!(
            of(ReferralError::CacheExhausted(11).into()),
            Some(Outcome::ReferralCacheExhausted)
        );
        assert_eq!(of(ApiError::DbUnavailable), Some(Outcome::DbUnavailable));
        assert_eq!(of(ApiError::Overloaded), Some(Outcome::Overloaded));
        assert_eq!(of(ApiError::RedisUnavailable), Some(Outcome::Overloaded));
        assert_eq!(
            of(ApiError::MethodNotAllowed("POST")),
            None,
            "GET /vote is no vote"
        );
    }

    #[test]
    fn every_refusal_the_service_caused_is_a_5xx_outcome() {
        // The degraded sign hears of exactly the votes answered with a 5xx.
        for e in [
            ApiError::DbUnavailable,
            ApiError::Overloaded,
            ApiError::RedisUnavailable,
            ReferralError::CacheExhausted(11).into(),
            ApiError::InvalidReferral,
            ApiError::BodyTimeout,
            ApiError::IdempotencyKeyReused,
        ] {
            let outcome = e.vote_outcome().expect("a vote");
            assert_eq!(
                outcome.is_unavailable(),
                e.status().is_server_error(),
                "{e}"
            );
        }
    }

    #[test]
    fn cache_exhaustion_keeps_the_spec_detail() {
        let e = ApiError::from(ReferralError::CacheExhausted(11));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            e.to_string(),
            "Service degraded: referral cache exhausted (11 entries). \
             This simulates memory pressure from an unbounded cache."
        );
    }
}
