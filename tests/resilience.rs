//! Outages: Redis stopped or emptied, PostgreSQL unreachable.

mod common;

use common::*;
use hyper::StatusCode;

#[tokio::test]
async fn ready_follows_redis_and_votes_stay_durable_meanwhile() {
    let mut redis = OwnRedis::up().await;
    let stack = Stack {
        redis_url: redis.url(),
        ..Stack::fresh().await
    };
    let app = TestApp::start_on(&stack, stack.config()).await;
    assert_eq!(app.vote("print", None).await.status, StatusCode::OK);
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);

    redis.stop().await;
    // Probes share one check for a second (docs/contract.md, connection budgets).
    assert!(
        eventually(WAIT, || async {
            let ready = app.get("/ready").await;
            ready.status == StatusCode::SERVICE_UNAVAILABLE
                && ready.json()["detail"] == "Redis not available"
        })
        .await,
        "/ready reports Redis down"
    );
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    // The chart's readiness probe stays green: votes are accepted.
    let probe = app.get("/ready/votes").await;
    assert_eq!(probe.status, StatusCode::OK);
    assert_eq!(probe.json()["redis"], "down");
    // Votes still commit to PostgreSQL and count locally.
    assert_eq!(app.vote("print", None).await.status, StatusCode::OK);
    assert_eq!(app.vote("ai", None).await.status, StatusCode::OK);
    assert_eq!(app.total().await, 3);

    // A restarted Redis is empty: the app notices and rebuilds it from PostgreSQL.
    redis.restart().await;
    assert!(
        eventually(WAIT, || async {
            app.get("/ready").await.status == StatusCode::OK
        })
        .await,
        "/ready recovers"
    );
    // All five fields, exactly PostgreSQL's counts (print 2, ai 1).
    let want = [Some(2), Some(0), Some(1), Some(0), Some(0)];
    assert!(
        eventually(WAIT, || async {
            redis_counts(&redis.url()).await == Some(want)
        })
        .await,
        "Redis rebuilt from PostgreSQL: {:?}",
        redis_counts(&redis.url()).await
    );
    assert_eq!(app.vote("ai", None).await.status, StatusCode::OK);
    assert_eq!(app.total().await, 4);
    app.stop().await;
}

#[tokio::test]
async fn emptied_redis_is_rebuilt_from_postgres() {
    let app = TestApp::start().await;
    for choice in ["print", "print", "stare"] {
        assert_eq!(app.vote(choice, None).await.status, StatusCode::OK);
    }
    let mut conn = redis_conn(&app.stack.redis_url).await;
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut conn)
        .await
        .expect("FLUSHDB");

    let url = &app.stack.redis_url;
    let want = [Some(2), Some(1), Some(0), Some(0), Some(0)];
    let rebuilt = eventually(WAIT, || async { redis_counts(url).await == Some(want) }).await;
    assert!(rebuilt, "Redis counts rebuilt from PostgreSQL");
    assert_eq!(app.vote("ai", None).await.status, StatusCode::OK);
    let votes = app.get("/votes").await.json();
    assert_eq!(
        (
            votes["print"]["count"].as_u64(),
            votes["ai"]["count"].as_u64()
        ),
        (Some(2), Some(1))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_stale_redis_is_corrected_at_start_up() {
    let stack = Stack::fresh().await;
    let first = TestApp::start_on(&stack, stack.config()).await;
    first.vote("revert", None).await;
    first.stop().await;
    // Someone tampered with Redis while no replica ran.
    let mut conn = redis_conn(&stack.redis_url).await;
    let _: () = redis::cmd("HSET")
        .arg("vote-api:counts")
        .arg("revert")
        .arg(99)
        .query_async(&mut conn)
        .await
        .expect("HSET");
    let second = TestApp::start_on(&stack, stack.config()).await;
    assert!(
        eventually(WAIT, || async {
            second.get("/votes").await.json()["revert"]["count"] == 1
        })
        .await,
        "counts match PostgreSQL after start-up"
    );
    second.stop().await;
}

#[tokio::test]
async fn lost_postgres_gives_503_after_a_bounded_retry_and_nothing_is_stored() {
    let app = TestApp::start().await;
    assert_eq!(app.vote("print", None).await.status, StatusCode::OK);

    let db = app
        .stack
        .database_url
        .rsplit('/')
        .next()
        .expect("name")
        .to_owned();
    let admin = pg_connect(&std::env::var("TEST_DATABASE_URL").expect("set")).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}';"
        ))
        .await
        .expect("cut the app off");

    // The retry is bounded: without that, the answer would never come and
    // send()'s timeout would fail the test.
    let refused = app.vote("stare", None).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.detail(), "PostgreSQL not available");
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["detail"], "PostgreSQL not available");

    admin
        .batch_execute(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
        .await
        .expect("let the app back in");
    assert!(
        eventually(WAIT, || async {
            app.vote("ai", None).await.status == StatusCode::OK
        })
        .await,
        "votes succeed again"
    );
    assert_eq!(
        vote_rows(&app.stack.database_url).await,
        2,
        "the refused vote was not stored"
    );
    assert_eq!(app.total().await, 2);
    app.stop().await;
}
