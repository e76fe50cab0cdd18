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
    assert!(
        eventually(WAIT, || async {
            redis_totals(&redis.url()).await == Some([2, 0, 1, 0, 0])
        })
        .await,
        "Redis rebuilt from PostgreSQL: {:?}",
        redis_totals(&redis.url()).await
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

    let rebuilt = eventually(WAIT, || async {
        redis_totals(&app.stack.redis_url).await == Some([2, 1, 0, 0, 0])
    })
    .await;
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
    // Redis was changed while no replica ran: its copy of the shard now
    // claims 99 `revert` votes at the version PostgreSQL holds with 1.
    let mut conn = redis_conn(&stack.redis_url).await;
    let copies: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(vote_api::live::COPIES_KEY)
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    let (shard, copy) = copies
        .into_iter()
        .find(|(_, copy)| copy.contains("revert=1"))
        .expect("the shard that holds the vote");
    let _: () = redis::cmd("HSET")
        .arg(vote_api::live::COPIES_KEY)
        .arg(&shard)
        .arg(copy.replace("revert=1", "revert=99"))
        .query_async(&mut conn)
        .await
        .expect("HSET");
    assert_eq!(redis_totals(&stack.redis_url).await, Some([0, 0, 0, 99, 0]));
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
