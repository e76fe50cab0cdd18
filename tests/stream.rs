//! `/stream`: current counts on connect, pushed updates, several
//! replicas sharing one PostgreSQL and Redis.

mod common;

use common::*;
use hyper::StatusCode;
use vote_api::actors::broadcaster::FRAME_INTERVAL;

#[tokio::test]
async fn stream_pushes_an_update_after_a_vote() {
    let app = TestApp::start().await;
    let mut sse = app.stream().await;
    let first = sse
        .until_votes(WAIT, |_| true)
        .await
        .expect("initial frame");
    assert_eq!(total_of(&first), 0);

    // How fast is scripts/bench's business; here: the frame comes, unasked.
    assert_eq!(app.vote("restart", None).await.status, StatusCode::OK);
    let update = sse
        .until_votes(WAIT, |v| v["restart"]["count"] == 1)
        .await
        .expect("an update after the vote");
    assert_eq!(total_of(&update), 1);
    drop(sse);
    app.stop().await;
}

#[tokio::test]
async fn bursts_are_coalesced_to_one_frame_per_frame_interval() {
    let app = TestApp::start().await;
    let mut sse = app.stream().await;
    sse.until_votes(WAIT, |_| true)
        .await
        .expect("initial frame");
    let started = tokio::time::Instant::now();
    let before = app.metric("sse_frames_total").await;
    for _ in 0..50 {
        assert_eq!(app.vote("print", None).await.status, StatusCode::OK);
    }
    sse.until_votes(WAIT, |v| v["print"]["count"] == 50)
        .await
        .expect("final count arrives");
    let sent = app.metric("sse_frames_total").await - before;
    let elapsed = started.elapsed();
    // The first change goes out at once, each later frame FRAME_INTERVAL
    // after the one before: a ceiling of 1/FRAME_INTERVAL frames a second,
    // whatever the vote rate (50 votes, one frame each without it).
    let ceiling = (elapsed.as_secs_f64() / FRAME_INTERVAL.as_secs_f64()).floor() + 1.0;
    assert!(
        sent <= ceiling,
        "{sent} frames in {elapsed:?}: at most {ceiling} at one per {FRAME_INTERVAL:?}"
    );
    assert!(sent >= 1.0, "the counts went out");
    app.stop().await;
}

#[tokio::test]
async fn a_vote_on_one_replica_shows_on_the_others_stream() {
    let stack = Stack::fresh().await;
    let a = TestApp::start_on(&stack, stack.config()).await;
    let b = TestApp::start_on(&stack, stack.config()).await;
    let mut sse_b = b.stream().await;
    sse_b
        .until_votes(WAIT, |_| true)
        .await
        .expect("initial frame");

    assert_eq!(a.vote("stare", None).await.status, StatusCode::OK);
    let seen = sse_b
        .until_votes(WAIT, |v| v["stare"]["count"] == 1)
        .await
        .expect("replica B learns A's vote");
    assert_eq!(total_of(&seen), 1);

    assert_eq!(b.vote("ai", None).await.status, StatusCode::OK);
    assert!(
        eventually(WAIT, || async { a.total().await == 2 }).await,
        "replica A learns B's vote"
    );
    drop(sse_b);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn streams_end_when_the_server_shuts_down() {
    let app = TestApp::start().await;
    let mut sse = app.stream().await;
    sse.until_votes(WAIT, |_| true)
        .await
        .expect("initial frame");
    let stopping = tokio::spawn(app.stop());
    let ended = tokio::time::timeout(WAIT, async {
        // Frames already on the way may still arrive; then the stream must end.
        while sse.next_event(WAIT).await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "stream ends");
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("shutdown completes with a client connected")
        .expect("task");
}
