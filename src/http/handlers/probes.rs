//! The probes and `/version`: `/health`, `/ready`, `/ready/votes`. Both
//! readiness answers come from one dependency check shared by every probe
//! within `READY_CACHE`, so a flood of probes costs nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::http::AppState;
use crate::http::body::{self, Body};
use crate::live::Live;

/// How long `/ready` waits for each dependency.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one dependency check answers every probe.
pub const READY_CACHE: Duration = Duration::from_secs(1);

/// Which dependencies answered.
#[derive(Debug, Clone, Copy)]
struct Deps {
    postgres: bool,
    redis: bool,
}

type Check = Shared<BoxFuture<'static, Deps>>;

/// The latest dependency check, shared by the probes that arrive while it
/// runs and for `READY_CACHE` after it started.
#[derive(Default)]
pub struct Readiness(Mutex<Option<(Instant, Check)>>);

impl Readiness {
    async fn check(&self, pool: &Pool, live: &Live) -> Deps {
        let check = {
            // Never held across an await.
            let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match &*last {
                Some((started, check)) if started.elapsed() < READY_CACHE => check.clone(),
                _ => {
                    let (pool, live) = (pool.clone(), live.clone());
                    let check = async move {
                        let (postgres, redis) =
                            tokio::join!(crate::db::ping(&pool, READY_TIMEOUT), live.ping());
                        Deps { postgres, redis }
                    }
                    .boxed()
                    .shared();
                    *last = Some((Instant::now(), check.clone()));
                    check
                }
            }
        };
        check.await
    }
}

/// Liveness: answers whenever the process serves, degraded referrals included.
pub fn health() -> Response<Body> {
    body::json(StatusCode::OK, &json!({ "status": "healthy" }))
}

/// Readiness for humans (v1): both PostgreSQL and Redis answer.
pub async fn ready(state: &Arc<AppState>) -> Response<Body> {
    let deps = state.readiness.check(&state.probe_pool, &state.live).await;
    let down: Vec<&str> = [
        (!deps.postgres).then_some("PostgreSQL not available"),
        (!deps.redis).then_some("Redis not available"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if down.is_empty() {
        body::json(StatusCode::OK, &json!({ "status": "ready" }))
    } else {
        not_ready(down.join("; "))
    }
}

/// Readiness for the load balancer: votes are accepted, which takes
/// PostgreSQL only. While Redis is down votes stay durable and count
/// locally, so a Redis restart must not take every replica out of service.
pub async fn ready_votes(state: &Arc<AppState>) -> Response<Body> {
    let deps = state.readiness.check(&state.probe_pool, &state.live).await;
    if !deps.postgres {
        return not_ready("PostgreSQL not available".into());
    }
    let redis = if deps.redis { "up" } else { "down" };
    body::json(
        StatusCode::OK,
        &json!({ "status": "ready", "redis": redis }),
    )
}

fn not_ready(detail: String) -> Response<Body> {
    body::json(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "status": "not ready", "detail": detail }),
    )
}

pub fn version(state: &Arc<AppState>) -> Response<Body> {
    body::json(
        StatusCode::OK,
        &json!({
            "version": state.config.app_version,
            "conference": state.config.conference.map(|c| c.key()).unwrap_or(""),
        }),
    )
}
