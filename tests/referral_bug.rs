//! The deliberate bug (docs/contract.md#the-deliberate-bug), exactly as the talk needs it.

mod common;

use std::sync::Arc;

use common::*;
use hyper::StatusCode;

const DETAIL_11: &str = "Service degraded: referral cache exhausted (11 entries). \
    This simulates memory pressure from an unbounded cache.";

#[tokio::test]
async fn referral_votes_fail_from_the_eleventh_while_probes_stay_green() {
    let app = TestApp::start().await;
    for i in 1..=10 {
        let resp = app.vote("ai", Some("conf-partner-2026")).await;
        assert_eq!(resp.status, StatusCode::OK, "referral vote {i}");
    }
    for i in 11..=15 {
        let resp = app.vote("ai", Some("conf-partner-2026")).await;
        assert_eq!(
            resp.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "referral vote {i}"
        );
        let expected = DETAIL_11.replace("(11 entries)", &format!("({i} entries)"));
        assert_eq!(resp.detail(), expected);
    }
    assert_eq!(app.vote("print", None).await.status, StatusCode::OK);
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);

    // One per refused vote: the alert's counter, exactly.
    assert_eq!(app.metric("referral_cache_exhausted_total").await, 5.0);
    // Refused votes are neither counted nor stored.
    assert_eq!(app.total().await, 11);
    assert_eq!(vote_rows(&app.stack.database_url).await, 11);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifteen_referral_votes_at_once_give_exactly_ten_successes() {
    let app = Arc::new(TestApp::start().await);
    let votes: Vec<_> = (0..15)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.vote("ai", Some("conf-partner-2026")).await })
        })
        .collect();
    let mut ok = 0;
    let mut sizes = Vec::new();
    for vote in votes {
        let resp = vote.await.expect("vote");
        match resp.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => sizes.push(resp.detail()),
            other => panic!("unexpected {other}: {}", resp.text()),
        }
    }
    assert_eq!(ok, 10, "referral votes that succeeded");
    // The five refusals name the cache sizes 11 to 15, each once.
    sizes.sort();
    let want: Vec<String> = (11..=15)
        .map(|n| DETAIL_11.replace("(11 entries)", &format!("({n} entries)")))
        .collect();
    assert_eq!(sizes, want);
    assert_eq!(app.total().await, 10);
    assert_eq!(vote_rows(&app.stack.database_url).await, 10);
    assert_eq!(app.metric("referral_cache_exhausted_total").await, 5.0);
    Arc::into_inner(app).expect("no other owner").stop().await;
}

#[tokio::test]
async fn unknown_codes_fill_the_cache_too() {
    let app = TestApp::start().await;
    for _ in 0..10 {
        let resp = app.vote("stare", Some("no-such-partner")).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    }
    let resp = app.vote("stare", Some("conf-partner-2026")).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.detail(), DETAIL_11);
    app.stop().await;
}

#[tokio::test]
async fn reset_with_referral_cache_empties_this_replicas_cache() {
    let app = TestApp::start().await;
    for _ in 0..11 {
        app.vote("ai", Some("conf-partner-2026")).await;
    }
    assert_eq!(
        app.vote("ai", Some("conf-partner-2026")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let reset = app
        .post(
            "/admin/reset?confirm=yes&referral_cache=yes",
            "application/json",
            "",
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    assert!(
        reset.json()["message"]
            .as_str()
            .expect("message")
            .contains("12 entries")
    );
    for i in 1..=10 {
        let resp = app.vote("ai", Some("conf-partner-2026")).await;
        assert_eq!(resp.status, StatusCode::OK, "referral vote {i} after reset");
    }
    assert_eq!(app.total().await, 10);
    app.stop().await;
}

#[tokio::test]
async fn failing_votes_light_the_degraded_status_on_the_stream() {
    let app = TestApp::start().await;
    let mut sse = app.stream().await;
    let initial = sse
        .until_status(WAIT, |_| true)
        .await
        .expect("the initial status");
    assert_eq!(initial["degraded"], false);
    assert_eq!(initial["version"], "test");

    for _ in 0..15 {
        app.vote("ai", Some("conf-partner-2026")).await;
    }
    let lit = sse
        .until_status(WAIT, |v| v["failed_last_minute"] == 5)
        .await
        .expect("the degraded status");
    assert_eq!(lit["degraded"], true);
    assert_eq!(
        lit["detail"],
        DETAIL_11.replace("(11 entries)", "(15 entries)")
    );
    assert!(lit["watching"].as_u64().is_some_and(|n| n >= 1));
    drop(sse);
    app.stop().await;
}
