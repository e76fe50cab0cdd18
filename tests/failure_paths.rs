//! The paths where a vote could be lost or an answer never come, on the real
//! stack: a stop while votes are in flight, a PostgreSQL or Redis that hangs
//! (SIGSTOP: connections stay open, nothing answers), replicas starting while
//! votes flow, a stream client that stops reading.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use tokio::io::AsyncWriteExt;
use vote_api::actors::writer;

const BIN: &str = env!("CARGO_BIN_EXE_vote-api");

/// The longest a vote may wait for its answer: the writer's stated safety net.
fn vote_bound() -> Duration {
    writer::VOTE_REPLY_TIMEOUT + Duration::from_secs(1)
}

/// A JSON vote sent with `limit` for the whole answer; None when no answer
/// came (connection refused or reset): such a vote may or may not be stored.
async fn vote_within(addr: &str, choice: &str, limit: Duration) -> Option<StatusCode> {
    let req = hyper::Request::post(format!("http://{addr}/vote"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(format!(
            r#"{{"choice":"{choice}"}}"#
        ))))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    match tokio::time::timeout(limit, client.request(req)).await {
        Ok(Ok(resp)) => Some(resp.status()),
        Ok(Err(_)) => None,
        Err(_) => panic!("no answer to a vote within {limit:?}"),
    }
}

async fn rows_by_choice(database_url: &str) -> serde_json::Value {
    let rows = pg_connect(database_url)
        .await
        .query("SELECT choice, count(*) FROM votes GROUP BY choice", &[])
        .await
        .expect("count votes");
    let mut counts = serde_json::Map::new();
    for row in rows {
        let choice: String = row.get(0);
        let n: i64 = row.get(1);
        counts.insert(choice, n.into());
    }
    serde_json::Value::Object(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_votes_in_flight_loses_no_acknowledged_vote() {
    let stack = Stack::fresh().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .env("DATABASE_URL", &stack.database_url)
        .env("REDIS_URL", &stack.redis_url)
        .env("BIND_ADDR", &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vote-api");
    let ready = eventually(WAIT, || async {
        vote_within(&addr, "print", WAIT).await == Some(StatusCode::OK)
    })
    .await;
    assert!(ready, "vote-api answers votes");

    // Voters that keep voting until the server is gone.
    let acked = Arc::new(AtomicUsize::new(1));
    let refused = Arc::new(AtomicUsize::new(0));
    let unanswered = Arc::new(AtomicUsize::new(0));
    let mut voters = Vec::new();
    for i in 0..64 {
        let (addr, acked, refused, unanswered) = (
            addr.clone(),
            acked.clone(),
            refused.clone(),
            unanswered.clone(),
        );
        voters.push(tokio::spawn(async move {
            let choice = ["print", "stare", "ai", "revert", "restart"][i % 5];
            loop {
                match vote_within(&addr, choice, vote_bound()).await {
                    Some(StatusCode::OK) => acked.fetch_add(1, Ordering::SeqCst),
                    Some(status) => {
                        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a refused vote");
                        refused.fetch_add(1, Ordering::SeqCst)
                    }
                    // Refused connections: the listener is closed. One more
                    // counts the request that was cut, if any.
                    None => {
                        unanswered.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
            }
        }));
    }
    // Votes are flowing (and queued behind commits) when the signal comes.
    assert!(
        eventually(WAIT, || async { acked.load(Ordering::SeqCst) > 200 }).await,
        "votes flow"
    );
    signal(child.id(), "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "clean exit: {status}");
    for voter in voters {
        voter.await.expect("voter");
    }

    let acked = acked.load(Ordering::SeqCst) as i64;
    let unanswered = unanswered.load(Ordering::SeqCst) as i64;
    let rows = vote_rows(&stack.database_url).await;
    // Every acknowledged vote is stored; a refused one never is; a request
    // cut without an answer may be, once at most.
    assert!(
        rows >= acked && rows <= acked + unanswered,
        "{rows} rows for {acked} acknowledged votes ({} refused, {unanswered} unanswered)",
        refused.load(Ordering::SeqCst)
    );
}

/// Three votes, then PostgreSQL frozen: two votes and the probes are
/// answered within their bounds; then it wakes up and votes succeed again.
/// The rows per choice once it is over ("stare" was refused twice).
async fn hung_postgres_round() -> serde_json::Value {
    let pg = OwnPostgres::start("hung");
    let stack = Stack {
        database_url: pg.url(),
        ..Stack::fresh().await
    };
    let app = TestApp::start_on(&stack, stack.config()).await;
    for _ in 0..3 {
        assert_eq!(app.vote("print", None).await.status, StatusCode::OK);
    }

    pg.pause();
    let addr = app.addr.to_string();
    let refused = vote_within(&addr, "stare", vote_bound()).await;
    assert_eq!(refused, Some(StatusCode::SERVICE_UNAVAILABLE));
    let resp = app.vote("stare", None).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.detail(), "PostgreSQL not available");
    assert_eq!(resp.header("retry-after"), "1");
    // A referral vote waits on its lookup, which is bounded too.
    let resp = app.vote("stare", Some("conf-partner-2026")).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.detail(), "PostgreSQL not available");
    assert_eq!(resp.header("retry-after"), "1");
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["detail"], "PostgreSQL not available");
    assert_eq!(app.get("/health").await.status, StatusCode::OK);

    pg.resume();
    assert!(
        eventually(WAIT, || async {
            app.vote("ai", None).await.status == StatusCode::OK
        })
        .await,
        "votes succeed again"
    );
    let rows = rows_by_choice(&stack.database_url).await;
    app.stop().await;
    rows
}

#[tokio::test]
async fn a_hung_postgres_gets_503_within_the_bound_and_loses_no_acknowledged_vote() {
    let rows = hung_postgres_round().await;
    assert_eq!(rows["print"], 3, "{rows}");
    assert_eq!(rows["ai"], 1, "{rows}");
}

// "A vote answered 503 must not be stored later": the INSERT the frozen
// server was running must not commit when it wakes up (the writer cancels
// it, or fences its batch id before answering).
#[tokio::test]
async fn a_hung_postgres_stores_no_vote_it_answered_503() {
    let rows = hung_postgres_round().await;
    assert_eq!(
        rows.get("stare"),
        None,
        "votes answered 503 were stored: {rows}"
    );
}

#[tokio::test]
async fn a_hung_redis_does_not_stop_votes_and_the_counts_catch_up() {
    let redis = OwnRedis::up().await;
    let stack = Stack {
        redis_url: redis.url(),
        ..Stack::fresh().await
    };
    let app = TestApp::start_on(&stack, stack.config()).await;
    assert_eq!(app.vote("print", None).await.status, StatusCode::OK);

    redis.pause();
    // Votes are durable in PostgreSQL: they are answered and acknowledged.
    let addr = app.addr.to_string();
    for choice in ["ai", "ai", "revert"] {
        assert_eq!(
            vote_within(&addr, choice, vote_bound()).await,
            Some(StatusCode::OK)
        );
    }
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["detail"], "Redis not available");
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    // Counted at once, with Redis still hung: the tally shows a batch and
    // confirms it before any Redis call, so no answer precedes its count.
    assert_eq!(app.get("/votes").await.json()["ai"]["count"], 2);
    assert_eq!(app.total().await, 4);

    redis.resume();
    assert!(
        eventually(WAIT, || async {
            redis_totals(&redis.url()).await == Some([1, 0, 2, 1, 0])
        })
        .await,
        "Redis catches up with PostgreSQL"
    );
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);
    assert_eq!(vote_rows(&stack.database_url).await, 4);
    app.stop().await;
}

/// Votes from 32 clients on `app` until `flowing` is cleared; the number acknowledged.
fn flow(app: &Arc<TestApp>, flowing: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..32)
        .map(|i| {
            let (app, flowing) = (app.clone(), flowing.clone());
            tokio::spawn(async move {
                let choice = ["print", "stare", "ai", "revert", "restart"][i % 5];
                let mut acked = 0u64;
                while flowing.load(Ordering::Relaxed) {
                    assert_eq!(app.vote(choice, None).await.status, StatusCode::OK);
                    acked += 1;
                }
                acked
            })
        })
        .collect()
}

// It found a real race about once in seven runs while Redis added batches to
// rebuilt counts: a rebuild landed between another replica's commit and its
// mirror, and Redis stayed one batch short. Redis now holds copies of
// PostgreSQL's totals that never add (tests/exact_counts.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_while_votes_flow_keep_redis_equal_to_postgres() {
    let stack = Stack::fresh().await;
    let first = Arc::new(TestApp::start_on(&stack, stack.config()).await);
    let mut acked = 0;
    // A new replica rebuilds Redis from PostgreSQL at start-up while the
    // first one commits batches and stores their copies: a rebuild that
    // added or overwrote blindly would lose or double votes for good.
    for round in 1..=6 {
        let flowing = Arc::new(AtomicBool::new(true));
        let voters = flow(&first, &flowing);
        let replica = TestApp::start_on(&stack, stack.config()).await;
        // The replica's start-up rebuild lands while the first one commits.
        assert!(
            eventually(WAIT, || async {
                replica.metric("redis_rebuilds_total").await >= 1.0
            })
            .await,
            "round {round}: the replica rebuilt Redis at start-up"
        );
        flowing.store(false, Ordering::Relaxed);
        for voter in voters {
            acked += voter.await.expect("voter");
        }
        let rows = stored_counts(&stack.database_url).await;
        assert_eq!(
            rows.iter().sum::<u64>(),
            acked,
            "every acknowledged vote stored once"
        );
        // Quiet now: Redis must hold exactly what PostgreSQL holds.
        let settled = eventually(WAIT, || async {
            redis_totals(&stack.redis_url).await == Some(rows)
        })
        .await;
        assert!(
            settled,
            "round {round}: Redis {:?} vs PostgreSQL {rows:?}",
            redis_totals(&stack.redis_url).await
        );
        for app in [&replica, first.as_ref()] {
            assert!(
                eventually(WAIT, || async { app.total().await == acked }).await,
                "round {round}: a replica shows {} of {acked} votes",
                app.total().await
            );
        }
        replica.stop().await;
    }
    Arc::into_inner(first).expect("no other owner").stop().await;
}

#[tokio::test]
async fn a_stream_client_that_stops_reading_holds_up_nothing() {
    let app = TestApp::start().await;
    // A screen that asks for the stream and then never reads a byte, with the
    // smallest receive buffer the kernel allows so the server's writes block.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
    let mut stuck = socket.connect(app.addr).await.expect("connect");
    stuck
        .write_all(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("request");
    let mut watcher = app.stream().await;
    watcher
        .until_votes(WAIT, |_| true)
        .await
        .expect("initial frame");

    // Votes, so frames, until the kernel holds bytes for the stuck client
    // that it cannot deliver: its window is shut, the server's writes back up.
    let client_port = stuck.local_addr().expect("local address").port();
    let mut votes = 0;
    let backed_up = eventually(WAIT, || {
        votes += 5;
        let app = &app;
        async move {
            for choice in ["print", "stare", "ai", "revert", "restart"] {
                assert_eq!(app.vote(choice, None).await.status, StatusCode::OK);
            }
            // More than the stuck client's whole receive buffer.
            unsent_bytes(app.addr.port(), client_port) > 4096
        }
    })
    .await;
    assert!(
        backed_up,
        "the server never had to hold bytes for the stuck client"
    );
    let last = watcher
        .until_votes(WAIT, |v| total_of(v) == votes)
        .await
        .expect("a reading client still gets every update");
    assert_eq!(last["print"]["count"], votes / 5);
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);
    drop(watcher);
    // Shutdown does not wait forever on a client that never reads.
    app.stop().await;
    drop(stuck);
}

/// Bytes the kernel holds, unsent or unacknowledged, on the server's side of
/// the connection between `server_port` and `client_port` (/proc/net/tcp).
fn unsent_bytes(server_port: u16, client_port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, queues) = (cols.get(1)?, cols.get(2)?, cols.get(4)?);
            (port(local)? == server_port && port(remote)? == client_port)
                .then(|| u64::from_str_radix(queues.split(':').next()?, 16).ok())?
        })
        .sum()
}
