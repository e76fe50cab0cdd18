//! Counts exact by construction (docs/contract.md): PostgreSQL keeps the
//! totals in the transaction that stores a batch, and Redis only holds
//! copies of them that never add. Real PostgreSQL transactions, real Redis
//! scripts, and the real application for the end-to-end cases: a lost
//! COMMIT answer, a keyed referral replay, hidden results across a Redis
//! restart, a reset with Redis hung.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use deadpool_postgres::{Object, Pool};
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use vote_api::db::votes::{self, BatchRows, Inserted, Writer};
use vote_api::live::Live;
use vote_api::totals::ShardCopy;

const CHOICES: [&str; 5] = ["print", "stare", "ai", "revert", "restart"];

/// A migrated database and a pool on it.
async fn database(stack: &Stack) -> Pool {
    let pool = vote_api::db::pool(&stack.database_url, 4).expect("pool");
    vote_api::db::migrate::run(&pool).await.expect("migrations");
    pool
}

async fn client(pool: &Pool) -> Object {
    pool.get().await.expect("a connection")
}

fn deadline() -> Instant {
    Instant::now() + WAIT
}

/// Commits `choices` as one batch of `writer`; returns its shard's copy.
async fn commit(pool: &Pool, writer: Writer, batch_id: i64, choices: &[&str]) -> ShardCopy {
    let rows = BatchRows {
        choices: choices.to_vec(),
        referrals: vec![None; choices.len()],
        ..BatchRows::default()
    };
    match votes::insert_batch(client(pool).await, writer, batch_id, &rows, deadline()).await {
        Ok(Inserted::Now { copy, .. }) => copy,
        other => panic!("batch {batch_id} not committed now: {other:?}"),
    }
}

async fn totals(pool: &Pool) -> Vec<ShardCopy> {
    votes::totals(&client(pool).await, deadline())
        .await
        .expect("read totals")
}

/// Redis's sum equals `SELECT choice, count(*) FROM votes`.
async fn assert_agree(stack: &Stack, context: &str) {
    let stored = stored_counts(&stack.database_url).await;
    assert_eq!(
        redis_totals(&stack.redis_url).await,
        Some(stored),
        "{context}: Redis vs PostgreSQL"
    );
}

#[tokio::test]
async fn rebuilds_read_around_one_commit_agree_in_every_order() {
    let stack = Stack::fresh().await;
    let pool = database(&stack).await;
    let live = Live::connect(&stack.redis_url, "test".into()).expect("valid URL");
    let writer = Writer {
        shard: 3,
        prune_from: 1,
    };
    commit(&pool, writer, 1, &["print", "ai"]).await;
    // Two reads of every shard around one commit, and that commit's copy.
    let before = totals(&pool).await;
    let batch = commit(&pool, writer, 2, &["ai"]).await;
    let after = totals(&pool).await;
    enum Lands {
        Rebuild(Vec<ShardCopy>),
        Copy(ShardCopy),
    }
    let parts = [
        Lands::Rebuild(before),
        Lands::Copy(batch),
        Lands::Rebuild(after),
    ];
    for order in [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ] {
        let _: () = redis::cmd("FLUSHDB")
            .query_async(&mut redis_conn(&stack.redis_url).await)
            .await
            .expect("FLUSHDB");
        for &i in &order {
            match &parts[i] {
                Lands::Rebuild(copies) => {
                    live.rebuild(copies, 0).await.expect("rebuild");
                }
                // Before any rebuild Redis holds nothing and refuses a lone copy.
                Lands::Copy(copy) => {
                    live.apply(copy, 0).await.expect("apply");
                }
            }
        }
        assert_agree(&stack, &format!("order {order:?}")).await;
    }
}

#[tokio::test]
async fn a_lone_copy_does_not_fill_a_redis_that_lost_the_others() {
    let stack = Stack::fresh().await;
    let pool = database(&stack).await;
    let live = Live::connect(&stack.redis_url, "test".into()).expect("valid URL");
    let a = Writer {
        shard: 0,
        prune_from: 1,
    };
    let b = Writer {
        shard: 1,
        prune_from: 1_000,
    };
    commit(&pool, a, 1, &["print"]).await;
    live.rebuild(&totals(&pool).await, 0)
        .await
        .expect("rebuild");
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut redis_conn(&stack.redis_url).await)
        .await
        .expect("FLUSHDB");
    let copy = commit(&pool, b, 1_000, &["stare"]).await;
    assert_eq!(
        live.apply(&copy, 0).await.expect("apply"),
        None,
        "Redis lost shard 0's copy: only a rebuild may fill it"
    );
    assert_eq!(redis_totals(&stack.redis_url).await, None);
    live.rebuild(&totals(&pool).await, 0)
        .await
        .expect("rebuild");
    assert_agree(&stack, "after the rebuild").await;
}

/// xorshift64*: a seeded, reproducible sequence without another crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// What a simulated replica still has to do, as its tally would.
enum Pending {
    /// A committed batch's copy on its way to Redis.
    Copy(ShardCopy),
    /// A read of every shard (a recount or a reset) on its way to Redis.
    Rebuild(Vec<ShardCopy>),
    /// The periodic read that notices a Redis that lost the copies.
    Check,
    /// A failed Redis call: ping until Redis answers, then recount.
    Ping,
}

struct Replica {
    writer: Writer,
    next_batch: i64,
    live: Live,
    newest_seq: u64,
    pending: Vec<Pending>,
}

impl Replica {
    /// Carries out one pending step, adding what the tally would do next.
    async fn deliver(&mut self, at: usize, pool: &Pool) {
        let step = self.pending.remove(at);
        let answer = match step {
            Pending::Copy(copy) => self.live.apply(&copy, self.newest_seq).await,
            Pending::Rebuild(copies) => self.live.rebuild(&copies, self.newest_seq).await.map(Some),
            Pending::Check => self.live.read().await,
            Pending::Ping => {
                let next = if self.live.ping().await {
                    Pending::Rebuild(totals(pool).await)
                } else {
                    Pending::Ping
                };
                self.pending.push(next);
                return;
            }
        };
        match answer {
            Ok(Some(snapshot)) => self.newest_seq = self.newest_seq.max(snapshot.seq),
            Ok(None) => self.pending.push(Pending::Rebuild(totals(pool).await)),
            Err(_) => self.pending.push(Pending::Ping),
        }
    }
}

/// Several replicas commit batches to their shards (two share one), and
/// their copies, recounts, resets, Redis flushes and Redis restarts
/// interleave at random, copies landing in any order. Whenever nothing is
/// in flight, Redis holds exactly what the votes count.
#[tokio::test]
async fn random_interleavings_of_batches_rebuilds_flushes_and_restarts_keep_redis_exact() {
    let stack = Stack::fresh().await;
    let pool = database(&stack).await;
    let mut redis = OwnRedis::up().await;
    let seed = std::env::var("EXACT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de_u64);
    let mut rng = Rng(seed);
    let mut replicas: Vec<Replica> = [0, 1, 1]
        .into_iter()
        .enumerate()
        .map(|(i, shard)| Replica {
            writer: Writer {
                shard,
                prune_from: 1 + 1_000_000 * i as i64,
            },
            next_batch: 1 + 1_000_000 * i as i64,
            live: Live::connect(&redis.url(), format!("replica-{i}")).expect("valid URL"),
            newest_seq: 0,
            pending: vec![Pending::Check],
        })
        .collect();
    let (mut checked, mut restarts, mut resets) = (0, 0, 0);
    for step in 0..400 {
        let r = rng.below(replicas.len());
        let busy: Vec<usize> = (0..replicas.len())
            .filter(|&i| !replicas[i].pending.is_empty())
            .collect();
        match rng.below(100) {
            // Quiet for a moment: every replica finishes what it has in hand.
            0..=7 => {
                while let Some(i) = (0..replicas.len()).find(|&i| !replicas[i].pending.is_empty()) {
                    let at = rng.below(replicas[i].pending.len());
                    replicas[i].deliver(at, &pool).await;
                }
            }
            8..=29 => {
                let n = 1 + rng.below(4);
                let choices: Vec<&str> = (0..n).map(|_| CHOICES[rng.below(5)]).collect();
                let replica = &mut replicas[r];
                let copy = commit(&pool, replica.writer, replica.next_batch, &choices).await;
                replica.next_batch += 1;
                replica.pending.push(Pending::Copy(copy));
            }
            30..=79 if !busy.is_empty() => {
                let replica = &mut replicas[busy[rng.below(busy.len())]];
                let at = rng.below(replica.pending.len());
                replica.deliver(at, &pool).await;
            }
            80..=86 => {
                let copies = totals(&pool).await;
                replicas[r].pending.push(Pending::Rebuild(copies));
            }
            87..=91 => {
                let _: () = redis::cmd("FLUSHDB")
                    .query_async(&mut redis_conn(&redis.url()).await)
                    .await
                    .expect("FLUSHDB");
                replicas[r].pending.push(Pending::Check);
            }
            92..=95 => {
                redis.stop().await;
                redis.restart().await;
                restarts += 1;
                replicas[r].pending.push(Pending::Check);
            }
            96..=97 => {
                let copies = votes::reset(client(&pool).await, deadline())
                    .await
                    .expect("reset");
                resets += 1;
                replicas[r].pending.push(Pending::Rebuild(copies));
            }
            _ => {
                // A Redis call that failed: this replica's copy may be missing.
                replicas[r].pending.push(Pending::Ping);
            }
        }
        if replicas.iter().all(|r| r.pending.is_empty()) {
            let stored = stored_counts(&stack.database_url).await;
            assert_eq!(
                redis_totals(&redis.url()).await,
                Some(stored),
                "seed {seed:#x}, step {step}: Redis vs PostgreSQL"
            );
            checked += 1;
        }
    }
    // Drain what is left, then the final check.
    while let Some(replica) = replicas.iter_mut().find(|r| !r.pending.is_empty()) {
        replica.deliver(0, &pool).await;
    }
    let stored = stored_counts(&stack.database_url).await;
    assert_eq!(redis_totals(&redis.url()).await, Some(stored), "at the end");
    assert!(
        checked >= 20 && restarts >= 5 && resets >= 3,
        "the walk must reach quiet points, restarts and resets: {checked} checks, {restarts} restarts, {resets} resets"
    );
}

/// A TCP proxy in front of PostgreSQL that, once armed, swallows the next
/// `CommandComplete "COMMIT"` reply and everything after it on that
/// connection: the COMMIT happened, its answer never arrives.
struct CommitEater {
    port: u16,
    armed: Arc<AtomicBool>,
    eaten: Arc<AtomicBool>,
}

impl CommitEater {
    async fn start(upstream_port: u16) -> CommitEater {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let armed = Arc::new(AtomicBool::new(false));
        let eaten = Arc::new(AtomicBool::new(false));
        let (a, e) = (armed.clone(), eaten.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (a, e) = (a.clone(), e.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await {
                        proxy(client, server, a, e).await;
                    }
                });
            }
        });
        CommitEater { port, armed, eaten }
    }
}

async fn proxy(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<AtomicBool>,
    eaten: Arc<AtomicBool>,
) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
    });
    // Server to client, one message at a time: a type byte, a length
    // (itself included), the body.
    loop {
        let mut head = [0u8; 5];
        if server_rx.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        if server_rx.read_exact(&mut body).await.is_err() {
            return;
        }
        if head[0] == b'C' && body.starts_with(b"COMMIT\0") && armed.swap(false, Ordering::SeqCst) {
            eaten.store(true, Ordering::SeqCst);
            // Hold the connection open and silent until the server drops it.
            let _ = tokio::io::copy(&mut server_rx, &mut tokio::io::sink()).await;
            return;
        }
        if client_tx.write_all(&head).await.is_err() || client_tx.write_all(&body).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_answer_is_answered_as_stored_and_counted_once() {
    let stack = Stack::fresh().await;
    let (base, db) = stack.database_url.rsplit_once('/').expect("a database");
    let upstream: u16 = base
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("a port");
    let eater = CommitEater::start(upstream).await;
    let mut config = stack.config();
    config.database_url = format!("postgresql://postgres@127.0.0.1:{}/{db}", eater.port);
    let app = TestApp::start_on(&stack, config).await;
    assert_eq!(app.vote("print", None).await.status, StatusCode::OK);

    eater.armed.store(true, Ordering::SeqCst);
    let keyed = app
        .request(Method::POST, "/vote")
        .header("content-type", "application/json")
        .header("idempotency-key", "lost-commit-1")
        .body(r#"{"choice":"ai"}"#.into())
        .expect("request");
    let resp = send(keyed).await;
    assert!(
        eater.eaten.load(Ordering::SeqCst),
        "the COMMIT answer was held back"
    );
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(vote_rows(&stack.database_url).await, 2, "stored once");
    // Redis, /votes and PostgreSQL agree: the batch is counted once, for good.
    assert!(
        eventually(WAIT, || async {
            redis_totals(&stack.redis_url).await == Some([1, 0, 1, 0, 0]) && app.total().await == 2
        })
        .await,
        "Redis {:?}, /votes {}",
        redis_totals(&stack.redis_url).await,
        app.total().await
    );
    assert_eq!(stored_counts(&stack.database_url).await, [1, 0, 1, 0, 0]);
    // The retry of the same key is a replay, not a second vote.
    let again = app
        .request(Method::POST, "/vote")
        .header("content-type", "application/json")
        .header("idempotency-key", "lost-commit-1")
        .body(r#"{"choice":"ai"}"#.into())
        .expect("request");
    let again = send(again).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(app.total().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_keyed_referral_replay_after_the_tenth_referral_vote_is_answered_from_the_stored_vote() {
    let app = TestApp::start().await;
    let referral_vote = |key: String| {
        app.request(Method::POST, "/vote")
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(r#"{"choice":"stare","referral":"conf-partner-2026"}"#.into())
            .expect("request")
    };
    for i in 1..=10 {
        let resp = send(referral_vote(format!("ref-{i}"))).await;
        assert_eq!(resp.status, StatusCode::OK, "referral vote {i}");
    }
    // The 10th key again: the cache is full (the next new referral vote gets
    // 503), but a replay is answered from the stored vote.
    let replay = send(referral_vote("ref-10".into())).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text());
    assert_eq!(replay.header("idempotent-replayed"), "true");
    let fresh = send(referral_vote("ref-11".into())).await;
    assert_eq!(
        fresh.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the demo's bug stays"
    );
    assert_eq!(vote_rows(&app.stack.database_url).await, 10);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_results_stay_hidden_across_a_redis_restart() {
    let mut redis = OwnRedis::up().await;
    let stack = Stack {
        redis_url: redis.url(),
        ..Stack::fresh().await
    };
    let app = TestApp::start_on(&stack, stack.config()).await;
    app.vote("print", None).await;
    let hide = app
        .post("/admin/results?visible=no", "application/json", "")
        .await;
    assert_eq!(hide.status, StatusCode::OK, "{}", hide.text());
    assert_eq!(app.get("/votes").await.json()["hidden"], true);

    redis.stop().await;
    redis.restart().await;
    assert!(
        eventually(WAIT, || async {
            app.get("/ready").await.status == StatusCode::OK
        })
        .await,
        "the app is back on the restarted Redis"
    );
    // Over a whole re-read interval, with the subscription back: still hidden.
    let until = Instant::now() + vote_api::actors::reveal::REREAD_INTERVAL * 2;
    while Instant::now() < until {
        assert_eq!(app.get("/votes").await.json()["hidden"], true, "revealed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A replica starting now reads the flag where it lives.
    let second = TestApp::start_on(&stack, stack.config()).await;
    assert_eq!(second.get("/votes").await.json()["hidden"], true);
    second.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_with_redis_hung_is_done_and_leaves_everything_reset() {
    let redis = OwnRedis::up().await;
    let stack = Stack {
        redis_url: redis.url(),
        ..Stack::fresh().await
    };
    let app = TestApp::start_on(&stack, stack.config()).await;
    for choice in ["print", "ai", "ai"] {
        assert_eq!(app.vote(choice, None).await.status, StatusCode::OK);
    }
    let hide = app
        .post("/admin/results?visible=no", "application/json", "")
        .await;
    assert_eq!(hide.status, StatusCode::OK);

    redis.pause();
    let reset = app
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text());
    // Reset here at once: visible, zero, no votes, an empty timeline.
    assert_eq!(app.get("/votes").await.json()["print"]["count"], 0);
    assert_eq!(app.total().await, 0);
    assert_eq!(vote_rows(&stack.database_url).await, 0);
    let timeline = app.get("/timeline.json").await.json();
    assert_eq!(timeline["buckets"].as_array().map(Vec::len), Some(0));

    redis.resume();
    assert!(
        eventually(WAIT, || async {
            redis_totals(&stack.redis_url).await == Some([0; 5])
        })
        .await,
        "Redis follows the reset: {:?}",
        redis_totals(&stack.redis_url).await
    );
    assert_eq!(app.vote("stare", None).await.status, StatusCode::OK);
    assert!(
        eventually(WAIT, || async {
            redis_totals(&stack.redis_url).await == Some([0, 1, 0, 0, 0])
        })
        .await
    );
    // A replica starting now finds the session reset where it is stored.
    let second = TestApp::start_on(&stack, stack.config()).await;
    let first_answer = second.get("/votes").await.json();
    assert!(
        first_answer.get("hidden").is_none(),
        "visible: {first_answer}"
    );
    assert!(
        eventually(WAIT, || async {
            second.get("/votes").await.json()["stare"]["count"] == 1
        })
        .await,
        "the new replica shows the session's one vote once it has read the totals"
    );
    second.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn batch_ids_are_pruned_as_batches_go() {
    let app = TestApp::start().await;
    for _ in 0..5 {
        assert_eq!(app.vote("restart", None).await.status, StatusCode::OK);
    }
    let kept: i64 = pg_connect(&app.stack.database_url)
        .await
        .query_one("SELECT count(*) FROM vote_batches", &[])
        .await
        .expect("count batch ids")
        .get(0);
    assert_eq!(
        kept, 1,
        "only the newest batch's id is kept (a retry of it needs it)"
    );
    assert_eq!(vote_rows(&app.stack.database_url).await, 5);
    app.stop().await;
}
