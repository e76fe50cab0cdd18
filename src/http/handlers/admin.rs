//! `POST /admin/reset?confirm=yes[&referral_cache=yes]`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tracing::info;

use crate::http::AppState;
use crate::http::body::{self, Body};
use crate::http::error::ApiError;

#[derive(Debug, Default, Deserialize)]
struct ResetQuery {
    confirm: Option<String>,
    referral_cache: Option<String>,
}

pub async fn reset(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if let Some(expected) = &state.config.admin_token {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::Unauthorized);
        }
    }
    let query: ResetQuery = body::query(req.uri().query());
    if query.confirm.as_deref() != Some("yes") {
        return Err(ApiError::ConfirmRequired);
    }
    state.actors.writer.reset().await?;
    let mut message = String::from("Session reset: all votes deleted, referral partners kept.");
    if query.referral_cache.as_deref() == Some("yes") {
        // Only this process's cache: with several replicas, restart the deployment.
        let entries = state
            .actors
            .referral
            .clear_cache()
            .await
            .map_err(|_| ApiError::Overloaded)?;
        message.push_str(&format!(
            " Referral cache of this replica emptied ({entries} entries)."
        ));
    }
    info!("{message}");
    Ok(body::json(
        StatusCode::OK,
        &serde_json::json!({ "status": "success", "message": message }),
    ))
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cres"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
