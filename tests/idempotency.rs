//! Exactly-once votes (docs/contract.md, exactly-once votes): `Idempotency-Key` and the form's
//! `vote_id` against the real stack — repeats, concurrent repeats, another
//! replica, a PostgreSQL stall held by another session, reset; and the bad
//! bodies that must be 400.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vote_api::actors::writer;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
const REPLAYED: &str = "idempotent-replayed";

/// Posts a JSON vote with an `Idempotency-Key`.
async fn keyed_vote(app: &TestApp, choice: &str, key: &str) -> Resp {
    let body = json!({ "choice": choice }).to_string();
    app.post_with("/vote", JSON, body, &[("idempotency-key", key)])
        .await
}

fn replayed(resp: &Resp) -> bool {
    resp.headers.get(REPLAYED).is_some_and(|v| v == "true")
}

/// Every idempotency key stored in `votes`, and the number of rows.
async fn stored_keys(database_url: &str) -> (HashSet<String>, i64) {
    let db = pg_connect(database_url).await;
    let keys = db
        .query(
            "SELECT idempotency_key FROM votes WHERE idempotency_key IS NOT NULL",
            &[],
        )
        .await
        .expect("keys")
        .iter()
        .map(|row| row.get(0))
        .collect();
    (keys, vote_rows(database_url).await)
}

#[tokio::test]
async fn a_repeated_key_answers_like_the_first_and_is_stored_once() {
    let app = TestApp::start().await;
    let first = keyed_vote(&app, "ai", "phone-1-vote-1").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(!replayed(&first), "the first request is a normal vote");
    let again = keyed_vote(&app, "ai", "phone-1-vote-1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header(REPLAYED), "true");
    assert_eq!(again.json(), first.json());
    assert_eq!(again.json(), json!({"status": "ok", "choice": "ai"}));

    // The form's hidden vote_id does the same for a page without JavaScript.
    let form = "choice=stare&referral=conf-partner-2026&vote_id=form-vote-1";
    let posted = app.post("/vote", FORM, form).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER);
    assert!(!replayed(&posted));
    let reposted = app.post("/vote", FORM, form).await;
    assert_eq!(reposted.status, StatusCode::SEE_OTHER);
    assert_eq!(reposted.header(REPLAYED), "true");
    assert_eq!(reposted.header("location"), posted.header("location"));

    assert_eq!(vote_rows(&app.stack.database_url).await, 2);
    let votes = app.get("/votes").await.json();
    assert_eq!(
        (
            votes["ai"]["count"].as_u64(),
            votes["stare"]["count"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(app.metric("vote_replays_total").await, 2.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_with_one_key_store_one_row() {
    let app = Arc::new(TestApp::start().await);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { keyed_vote(&app, "revert", "one-key-50-times").await })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        let resp = task.await.expect("task");
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        assert_eq!(resp.json()["choice"], "revert");
        if !replayed(&resp) {
            fresh += 1;
        }
    }
    assert_eq!(
        fresh, 1,
        "exactly one answer is the stored vote, 49 are replays"
    );
    assert_eq!(vote_rows(&app.stack.database_url).await, 1);
    assert_eq!(app.total().await, 1);
    Arc::into_inner(app).expect("no other owner").stop().await;
}

#[tokio::test]
async fn a_key_reused_for_another_choice_is_422_and_changes_nothing() {
    let app = TestApp::start().await;
    assert_eq!(
        keyed_vote(&app, "print", "k-422").await.status,
        StatusCode::OK
    );
    let other = keyed_vote(&app, "restart", "k-422").await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        other.detail(),
        "Idempotency key already used for another vote"
    );

    // A browser's form gets a page saying so, without a retry that would fail again.
    let page = app
        .post_with(
            "/vote",
            FORM,
            "choice=ai&vote_id=k-422",
            &[("accept", "text/html")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text()
            .contains("Idempotency key already used for another vote")
    );
    assert!(!page.text().contains("Try again"));

    assert_eq!(vote_rows(&app.stack.database_url).await, 1);
    let votes = app.get("/votes").await.json();
    assert_eq!(votes["print"]["count"], 1);
    assert_eq!(total_of(&votes), 1);
    app.stop().await;
}

#[tokio::test]
async fn keys_are_forgotten_by_reset() {
    let app = TestApp::start().await;
    assert_eq!(
        keyed_vote(&app, "ai", "before-reset").await.status,
        StatusCode::OK
    );
    let reset = app
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    let (keys, _) = stored_keys(&app.stack.database_url).await;
    assert!(keys.is_empty(), "reset deleted the keys with the votes");
    // The same key is a new vote now, even for another choice.
    let after = keyed_vote(&app, "stare", "before-reset").await;
    assert_eq!(after.status, StatusCode::OK);
    assert!(!replayed(&after));
    assert_eq!(vote_rows(&app.stack.database_url).await, 1);
    assert_eq!(app.total().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn malformed_keys_are_400_and_store_nothing() {
    let app = TestApp::start().await;
    let long = "k".repeat(65);
    for key in [
        "",
        " ",
        "has space",
        "tab\there",
        long.as_str(),
        "caf\u{e9}",
    ] {
        let resp = keyed_vote(&app, "ai", key).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{key:?}");
        assert_eq!(
            resp.detail(),
            "Idempotency-Key must be 1 to 64 visible ASCII characters"
        );
    }
    let two = app
        .post_with(
            "/vote",
            JSON,
            r#"{"choice":"ai"}"#,
            &[("idempotency-key", "a"), ("idempotency-key", "b")],
        )
        .await;
    assert_eq!(two.status, StatusCode::BAD_REQUEST);
    let form = app.post("/vote", FORM, "choice=ai&vote_id=").await;
    assert_eq!(form.status, StatusCode::BAD_REQUEST);
    // 64 visible characters are fine.
    let max = "~".repeat(64);
    assert_eq!(keyed_vote(&app, "ai", &max).await.status, StatusCode::OK);
    assert_eq!(vote_rows(&app.stack.database_url).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn non_object_json_and_control_characters_in_referrals_are_400() {
    let app = TestApp::start().await;
    for body in [r#"["ai"]"#, r#""ai""#, "42", "null", r#"[{"choice":"ai"}]"#] {
        let resp = app.post("/vote", "application/json", body).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(resp.detail(), "JSON body must be an object");
    }
    for referral in ["conf-partner-2026\u{0}", "conf\npartner"] {
        let resp = app
            .post_json("/vote", json!({"choice": "ai", "referral": referral}))
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{referral:?}");
        assert_eq!(resp.detail(), "Referral code contains control characters");
    }
    let form = app.post("/vote", FORM, "choice=ai&referral=x%00y").await;
    assert_eq!(form.status, StatusCode::BAD_REQUEST);

    // Bad input is not an outage: PostgreSQL stays "available".
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);
    assert_eq!(
        app.metric("referral_cache_entries").await,
        0.0,
        "refused before the referral validator"
    );
    assert_eq!(vote_rows(&app.stack.database_url).await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_given_the_same_key_at_once_store_one_row() {
    let stack = Stack::fresh().await;
    let a = TestApp::start_on(&stack, stack.config()).await;
    let b = TestApp::start_on(&stack, stack.config()).await;
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let key = format!("both-replicas-{round}");
        let (x, y) = tokio::join!(keyed_vote(&a, "stare", &key), keyed_vote(&b, "stare", &key));
        assert_eq!((x.status, y.status), (StatusCode::OK, StatusCode::OK));
        assert_eq!(
            usize::from(replayed(&x)) + usize::from(replayed(&y)),
            1,
            "round {round}: one stored, one replayed"
        );
    }
    let (keys, rows) = stored_keys(&stack.database_url).await;
    assert_eq!((keys.len(), rows), (ROUNDS, ROUNDS as i64));
    // Both replicas agree on the count (Redis is shared).
    for app in [&a, &b] {
        assert!(
            eventually(WAIT, || async { app.total().await == ROUNDS as u64 }).await,
            "each replica shows {ROUNDS} votes"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// What the phones of one stall test saw: every key a phone used ends in
/// one of the two (a key without any answer fails the test).
#[derive(Default)]
struct Outcomes {
    /// Answered 200, at some try.
    acknowledged: HashSet<String>,
    /// Last answered 503: the phone gave the key up and voted with a new one.
    refused: HashSet<String>,
}

/// Phones vote with fresh keys while another PostgreSQL session holds an
/// exclusive lock on `votes` for `stall`. Half of them are impatient: they
/// give up on an answer after `CLIENT_TIMEOUT` (shorter than the stall) and
/// retry with the same key. The other half wait for the answer as long as
/// the server promises to take (`writer::REPLY_TIMEOUT`). A phone answered
/// 503 gives that key up, as a person shown the error votes again from a
/// fresh page. Afterwards the keys in `votes` are exactly the acknowledged
/// ones: none lost, none doubled, none answered 503 and stored later.
/// `refusals`: whether the stall outlasts the writer's retries, so that
/// some votes must have been answered 503.
async fn stall_with_retrying_phones(stall: Duration, refusals: bool) {
    const PHONES: usize = 12;
    const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
    const TRIES: usize = 12;
    let patient = writer::REPLY_TIMEOUT + Duration::from_secs(1);
    let app = Arc::new(TestApp::start().await);
    let stop = Arc::new(AtomicBool::new(false));
    let timeouts = Arc::new(AtomicUsize::new(0));

    let locker = pg_connect(&app.stack.database_url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE votes IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock votes");

    let phone = |phone: usize| {
        let (app, stop, timeouts) = (app.clone(), stop.clone(), timeouts.clone());
        let limit = if phone.is_multiple_of(2) {
            CLIENT_TIMEOUT
        } else {
            patient
        };
        tokio::spawn(async move {
            let mut seen = Outcomes::default();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("phone-{phone}-vote-{n}");
                let mut answer = None;
                for _ in 0..TRIES {
                    match tokio::time::timeout(limit, keyed_vote(&app, "ai", &key)).await {
                        Err(_) => {
                            assert_eq!(limit, CLIENT_TIMEOUT, "{key}: no answer in {limit:?}");
                            timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => {
                            answer = Some(resp.status);
                            break;
                        }
                    }
                }
                match answer {
                    Some(StatusCode::OK) => seen.acknowledged.insert(key),
                    Some(StatusCode::SERVICE_UNAVAILABLE) => seen.refused.insert(key),
                    Some(other) => panic!("{key}: answered {other}"),
                    None => panic!("{key}: no answer in {TRIES} tries"),
                };
            }
            seen
        })
    };
    // The patient phones vote first, and the impatient ones only once a
    // batch waits on the lock: the batch caught by the stall then holds
    // patient votes only, whose callers see how it ends. Otherwise the race
    // for the first batch decides whether anyone is there to be refused.
    // Its own session: inside the locker's transaction pg_stat_activity
    // stays as it was when first read.
    let watcher = pg_connect(&app.stack.database_url).await;
    let mut phones: Vec<_> = (0..PHONES)
        .filter(|p| !p.is_multiple_of(2))
        .map(phone)
        .collect();
    assert!(
        eventually(WAIT, || async {
            inserts_waiting_on_a_lock(&watcher).await > 0
        })
        .await,
        "a batch waits on the lock"
    );
    phones.extend((0..PHONES).filter(|p| p.is_multiple_of(2)).map(phone));

    // The stall is the scenario itself, not a synchronisation.
    tokio::time::sleep(stall).await;
    locker
        .batch_execute("COMMIT")
        .await
        .expect("release the lock");
    // Let every phone get votes through after the stall, then stop them.
    let before = vote_rows(&app.stack.database_url).await;
    assert!(
        eventually(WAIT, || async {
            vote_rows(&app.stack.database_url).await >= before + PHONES as i64
        })
        .await,
        "votes flow again after the stall"
    );
    stop.store(true, Ordering::Relaxed);

    let mut all = Outcomes::default();
    for phone in phones {
        let seen = phone.await.expect("phone task");
        all.acknowledged.extend(seen.acknowledged);
        all.refused.extend(seen.refused);
    }
    assert!(
        timeouts.load(Ordering::Relaxed) > 0,
        "the stall outlasted the impatient phones' timeout"
    );
    if refusals {
        assert!(
            !all.refused.is_empty(),
            "a stall past the writer's retries refuses votes"
        );
    }
    assert!(
        eventually(WAIT, || async {
            app.total().await == vote_rows(&app.stack.database_url).await as u64
        })
        .await,
        "the live count matches the rows"
    );
    // Stopped, the writer has settled every batch: what a request the
    // impatient phones gave up on did is in the rows now, or never.
    let database_url = app.stack.database_url.clone();
    Arc::into_inner(app).expect("no other owner").stop().await;
    let (stored, rows) = stored_keys(&database_url).await;
    let missing: Vec<_> = all.acknowledged.difference(&stored).collect();
    let refused_but_stored: Vec<_> = all.refused.intersection(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert!(
        refused_but_stored.is_empty(),
        "answered 503, yet stored: {refused_but_stored:?}"
    );
    assert_eq!(
        rows as usize,
        all.acknowledged.len(),
        "one row per acknowledged key, nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stall_of_two_and_a_half_seconds_stores_each_acknowledged_key_once() {
    stall_with_retrying_phones(Duration::from_millis(2500), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stall_of_six_seconds_stores_each_acknowledged_key_once() {
    // Longer than an attempt and the retry budget together.
    let stall = Duration::from_secs(6);
    assert!(stall > writer::ATTEMPT_TIMEOUT + writer::RETRY_BUDGET);
    stall_with_retrying_phones(stall, true).await;
}

/// Sessions whose INSERT waits for a lock (the stall's `LOCK TABLE`).
async fn inserts_waiting_on_a_lock(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query ILIKE '%insert%'",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

/// A TCP proxy in front of PostgreSQL that can hold everything in transit
/// (a congested or partitioned network) and deliver it late. It keeps
/// reading while it holds, so it sees the app close a connection at once,
/// and it tells when a connection the app closed was closed by the server
/// too: the server closes only after the backend has read (and run)
/// everything delivered before the app's end of stream.
struct HoldingProxy {
    addr: std::net::SocketAddr,
    held: watch::Sender<bool>,
    /// Connections the app closed.
    app_closed: Arc<AtomicUsize>,
    /// Of those, the ones the server closed afterwards.
    settled: Arc<AtomicUsize>,
}

/// Chunks read but not yet delivered, per direction of one connection.
const PROXY_CHUNKS: usize = 1024;

impl HoldingProxy {
    async fn start(target: String) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (held, watching) = watch::channel(false);
        let app_closed = Arc::new(AtomicUsize::new(0));
        let settled = Arc::new(AtomicUsize::new(0));
        let (closed, done) = (app_closed.clone(), settled.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                let up = tokio::spawn(Self::pipe(in_read, out_write, watching.clone()));
                let down = tokio::spawn(Self::pipe(out_read, in_write, watching.clone()));
                let (closed, done) = (closed.clone(), done.clone());
                tokio::spawn(async move {
                    let _ = up.await;
                    closed.fetch_add(1, Ordering::SeqCst);
                    let _ = down.await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        HoldingProxy {
            addr,
            held,
            app_closed,
            settled,
        }
    }

    /// Copies `from` to `to` until `from` ends; while held, reads on and
    /// delivers later. Once `to` is gone, reads on to the end: the end is
    /// what the caller waits for.
    async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, held: watch::Receiver<bool>) {
        let (chunks, mut queue) = tokio::sync::mpsc::channel::<Vec<u8>>(PROXY_CHUNKS);
        let writer = tokio::spawn(async move {
            let mut held = held;
            let mut open = true;
            while let Some(chunk) = queue.recv().await {
                if held.wait_for(|held| !*held).await.is_err() {
                    break;
                }
                open = open && to.write_all(&chunk).await.is_ok();
            }
            let _ = to.shutdown().await;
        });
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if chunks.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
        drop(chunks);
        let _ = writer.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_given_up_in_a_stalled_network_is_never_stored_later() {
    let stack = Stack::fresh().await;
    let (server, _) = stack
        .database_url
        .rsplit_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .expect("postgresql://user@host:port/db");
    let proxy = HoldingProxy::start(server.to_owned()).await;
    let mut config = stack.config();
    config.database_url = stack.database_url.replace(server, &proxy.addr.to_string());
    let app = Arc::new(TestApp::start_on(&stack, config).await);
    assert_eq!(
        keyed_vote(&app, "ai", "warm-up").await.status,
        StatusCode::OK
    );

    // BEGIN, the INSERT, the cancel request and the answers all stall in the
    // network: the writer cannot hear from PostgreSQL. It gives the batch up
    // before sending COMMIT and closes the connection, so the vote is
    // answered 503 while everything is still held.
    proxy.held.send_replace(true);
    let answer = keyed_vote(&app, "print", "answer-lost").await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text()
    );
    assert!(
        eventually(WAIT, || async {
            proxy.app_closed.load(Ordering::SeqCst) >= 1
        })
        .await,
        "the writer closed the connection it gave up"
    );
    // The network recovers: the held statements reach PostgreSQL late. The
    // transaction they open can never commit: its COMMIT was never sent.
    // Once the server has closed every connection the app closed, each such
    // backend has run all it was sent and is gone.
    proxy.held.send_replace(false);
    assert!(
        eventually(WAIT, || async {
            proxy.settled.load(Ordering::SeqCst) == proxy.app_closed.load(Ordering::SeqCst)
        })
        .await,
        "the server closed the abandoned connections ({} of {})",
        proxy.settled.load(Ordering::SeqCst),
        proxy.app_closed.load(Ordering::SeqCst)
    );
    let (keys, rows) = stored_keys(&stack.database_url).await;
    assert_eq!(
        keys,
        HashSet::from(["warm-up".to_owned()]),
        "answered 503, so never stored"
    );
    assert_eq!(rows, 1);
    Arc::into_inner(app).expect("no other owner").stop().await;
}
