//! Crowds (docs/contract.md, connection budgets): connection budgets for screens and for everything
//! else, readiness through a Redis outage, PostgreSQL budgeted per use.

mod common;

use common::*;
use http_body_util::Full;
use hyper::{Method, StatusCode};

/// `connections_open{budget="…"}` from `/metrics`.
async fn open_in(app: &TestApp, budget: &str) -> f64 {
    app.metric(&format!("connections_open{{budget=\"{budget}\"}}"))
        .await
}

#[tokio::test]
async fn a_full_stream_budget_refuses_screens_and_votes_still_pass() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.max_streams = Some(3);
    config.max_connections = Some(4);
    let app = TestApp::start_on(&stack, config).await;

    // More screens than general connections: they live in their own budget.
    let mut screens = Vec::new();
    for _ in 0..3 {
        screens.push(app.stream().await);
    }
    assert_eq!(open_in(&app, "stream").await, 3.0);

    let refused = app.get("/stream").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.header("retry-after"), "5");
    assert_eq!(refused.header("connection"), "close");
    let probe = app
        .send_with(Method::HEAD, "/stream", ("accept", "*/*"))
        .await;
    assert_eq!(probe.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.metric("streams_refused_total").await, 2.0);

    for choice in ["ai", "print", "ai", "stare", "ai", "revert"] {
        assert_eq!(app.vote(choice, None).await.status, StatusCode::OK);
    }
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    assert_eq!(app.get("/").await.status, StatusCode::OK);
    // The screens still get their frames.
    let seen = screens[0].until_votes(WAIT, |v| total_of(v) == 6).await;
    assert!(seen.is_some(), "a screen saw all six votes");

    // A screen leaves: its slot is free for the next one.
    screens.pop();
    assert!(
        eventually(WAIT, || async {
            app.send_with(Method::HEAD, "/stream", ("accept", "*/*"))
                .await
                .status
                == StatusCode::OK
        })
        .await,
        "HEAD /stream admits again"
    );
    screens.push(app.stream().await);
    assert_eq!(open_in(&app, "stream").await, 3.0);
    drop(screens);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screens_that_leave_leave_nothing_behind() {
    const SCREENS: usize = 300;
    let app = TestApp::start().await;
    let mut screens = Vec::with_capacity(SCREENS);
    for _ in 0..SCREENS {
        screens.push(app.stream().await);
    }
    assert_eq!(open_in(&app, "stream").await, SCREENS as f64);
    assert_eq!(app.metric("sse_clients").await, SCREENS as f64);
    drop(screens);

    // Every per-screen counter goes back to zero: the budget's slots, the
    // connection count, and the broadcaster's own subscriber count (the
    // `watching` figure of the status frame, seen by one new screen).
    assert!(
        eventually(WAIT, || async {
            open_in(&app, "stream").await == 0.0 && app.metric("sse_clients").await == 0.0
        })
        .await,
        "stream budget and sse_clients back to zero"
    );
    // Only the connection asking remains in the general budget.
    assert!(
        eventually(WAIT, || async { open_in(&app, "other").await == 1.0 }).await,
        "general budget back to the one connection asking"
    );
    let mut last = app.stream().await;
    let seen = last
        .until_status(WAIT, |status| status["watching"] == 1)
        .await;
    assert!(seen.is_some(), "the broadcaster counts only the new screen");
    drop(last);
    app.stop().await;
}

#[tokio::test]
async fn head_stream_takes_no_slot() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.max_streams = Some(1);
    let app = TestApp::start_on(&stack, config).await;
    for _ in 0..5 {
        let req = app
            .request(Method::HEAD, "/stream")
            .body(Full::default())
            .expect("request");
        let resp = send(req).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.header("content-type"), "text/event-stream");
    }
    let _screen = app.stream().await;
    assert_eq!(open_in(&app, "stream").await, 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_writer_never_waits_behind_referral_lookups_or_probes() {
    let app = std::sync::Arc::new(TestApp::start().await);
    let pool_size = app.metric("db_pool_size").await;

    // Every referral lookup blocks on a locked table, holding a connection
    // of the shared pool: more lookups than connections.
    let mut locker = pg_connect(&app.stack.database_url).await;
    let lock = locker.transaction().await.expect("BEGIN");
    lock.batch_execute("LOCK TABLE referral_partners IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("LOCK");
    let mut lookups = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        lookups.push(tokio::spawn(async move {
            app.vote("ai", Some("conf-partner-2026")).await.status
        }));
    }
    assert!(
        eventually(WAIT, || async {
            app.metric("db_pool_checked_out").await == pool_size
        })
        .await,
        "the lookups hold every shared connection"
    );

    // A flood of probes and plain votes meanwhile: the probes answer from
    // their own connection, every vote commits.
    let mut probes = Vec::new();
    for _ in 0..100 {
        let app = app.clone();
        probes.push(tokio::spawn(
            async move { app.get("/ready/votes").await.status },
        ));
    }
    let mut votes = Vec::new();
    for i in 0..200 {
        let app = app.clone();
        let choice = ["print", "stare", "revert", "restart"][i % 4];
        votes.push(tokio::spawn(
            async move { app.vote(choice, None).await.status },
        ));
    }
    for vote in votes {
        assert_eq!(vote.await.expect("vote task"), StatusCode::OK);
    }
    for probe in probes {
        assert_eq!(probe.await.expect("probe task"), StatusCode::OK);
    }
    assert_eq!(app.metric("db_pool_checked_out").await, pool_size);
    // What the writer saw: never a checkout that had to wait.
    assert_eq!(
        app.metric("db_pool_waits_total{pool=\"writer\"}").await,
        0.0
    );
    assert!(app.metric("vote_batch_size_count").await >= 1.0);

    lock.rollback().await.expect("ROLLBACK");
    let mut passed = 0;
    for lookup in lookups {
        // Past the pool's wait the lookups give up (503); none hangs.
        match lookup.await.expect("lookup task") {
            StatusCode::OK => passed += 1,
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("a referral vote answered {other}"),
        }
    }
    // Every acknowledged vote counted and stored at once, a refused one
    // never: the 200 plain votes and the lookups that passed.
    assert_eq!(app.total().await, 200 + passed);
    assert_eq!(
        vote_rows(&app.stack.database_url).await,
        200 + passed as i64
    );
    std::sync::Arc::into_inner(app)
        .expect("no other owner")
        .stop()
        .await;
}
