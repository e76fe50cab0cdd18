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

/// A screen as the wire sees it: the raw bytes of one `/stream` connection.
async fn raw_screen(app: &TestApp, request: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(app.addr))
        .await
        .expect("connects in time")
        .expect("connect");
    conn.write_all(request.as_bytes()).await.expect("request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the opening's votes event: head, retry hint, counts.
    while !seen.windows(12).any(|w| w == b"event: votes") {
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("the opening in time")
            .expect("read");
        assert!(n > 0, "closed before the opening");
        seen.extend_from_slice(&buf[..n]);
    }
    (conn, seen)
}

#[tokio::test]
async fn the_bytes_on_the_wire_are_a_chunked_http_response() {
    let app = TestApp::start().await;
    // A stream after another request on the same connection, as a browser
    // or nginx sends it: hyper answers the first, the fan-out the stream.
    let (_conn, seen) = raw_screen(
        &app,
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let text = String::from_utf8(seen).expect("UTF-8");
    let stream = &text[text
        .find("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream")
        .expect("the stream's head")..];
    let (head, body) = stream.split_once("\r\n\r\n").expect("a head");
    for line in [
        "cache-control: no-cache",
        "x-accel-buffering: no",
        "connection: close",
        "transfer-encoding: chunked",
    ] {
        assert!(head.contains(line), "{line} in {head}");
    }
    // The retry hint, then the counts and status, each one chunk.
    assert!(body.starts_with("D\r\nretry: 2000\n\n\r\n"), "{body}");
    let rest = &body["D\r\nretry: 2000\n\n\r\n".len()..];
    let (size, data) = rest.split_once("\r\n").expect("a chunk size");
    let size = usize::from_str_radix(size, 16).expect("hex");
    assert!(data[..size].starts_with("event: votes\ndata: "), "{data}");
    assert!(data[..size].contains("event: status\ndata: "), "{data}");
    app.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_ends_every_stream_with_the_last_chunk() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::start().await;
    let mut screens = Vec::new();
    for _ in 0..5 {
        screens.push(raw_screen(&app, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await);
    }
    let mut sse = app.stream().await;
    tokio::time::timeout(WAIT, app.stop())
        .await
        .expect("shutdown completes with screens connected");
    for (mut conn, mut seen) in screens {
        let ended = tokio::time::timeout(WAIT, conn.read_to_end(&mut seen)).await;
        assert!(matches!(ended, Ok(Ok(_))), "closed: {ended:?}");
        assert!(
            seen.ends_with(b"\r\n0\r\n\r\n"),
            "the stream ends as a chunked body ends: {:?}",
            String::from_utf8_lossy(&seen[seen.len().saturating_sub(40)..])
        );
    }
    let ended = tokio::time::timeout(WAIT, async {
        while sse.next_event(WAIT).await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the client's stream ends too");
}
