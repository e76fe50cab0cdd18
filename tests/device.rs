//! One vote per phone (docs/contract.md, one vote per device): with
//! `ONE_VOTE_PER_DEVICE=yes` the first vote sets a signed device cookie and
//! a later vote from that device changes its choice, on any replica, with
//! the counts exact in PostgreSQL, Redis and every replica.

mod common;

use std::sync::Arc;

use common::*;
use hyper::StatusCode;
use vote_api::poll::Poll;

const PRINT: usize = 0;
const STARE: usize = 1;
const AI: usize = 2;

fn config(stack: &Stack) -> vote_api::config::Config {
    let mut config = stack.config();
    config.one_vote_per_device = true;
    config
}

/// A JSON vote with extra headers.
async fn vote(app: &TestApp, choice: &str, headers: &[(&str, &str)]) -> Resp {
    let body = serde_json::json!({ "choice": choice }).to_string();
    app.post_with("/vote", "application/json", body, headers)
        .await
}

/// The `name=value` part of the answer's device cookie.
fn device_cookie(resp: &Resp) -> String {
    let set = resp.header("set-cookie");
    set.split(';').next().expect("name=value").to_owned()
}

/// `/votes` of `app` as counts in the seed poll's order.
async fn counts(app: &TestApp) -> [u64; 5] {
    let votes = app.get("/votes").await.json();
    ["print", "stare", "ai", "revert", "restart"]
        .map(|k| votes[k]["count"].as_u64().expect("a count"))
}

/// Waits until PostgreSQL's rows, Redis's copies and each replica agree on `want`.
async fn all_agree(apps: &[&TestApp], want: [u64; 5]) {
    let stack = &apps[0].stack;
    assert_eq!(
        stored_counts(&stack.database_url).await,
        want,
        "rows in PostgreSQL"
    );
    let agreed = eventually(WAIT, || async {
        let mut ok = redis_totals(&stack.redis_url).await == Some(want);
        for app in apps {
            ok &= counts(app).await == want;
        }
        ok
    })
    .await;
    assert!(agreed, "Redis and every replica show {want:?}");
}

#[tokio::test]
async fn the_first_vote_sets_the_cookie_and_a_vote_on_another_replica_changes_it() {
    let stack = Stack::fresh().await;
    let a = TestApp::start_on(&stack, config(&stack)).await;
    let b = TestApp::start_on(&stack, config(&stack)).await;

    let first = vote(&a, "print", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.json().get("changed_from").is_none());
    let set = first.header("set-cookie").to_owned();
    for flag in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let cookie = device_cookie(&first);
    assert!(cookie.starts_with("vote_device=device."), "{cookie}");
    let mut want = [0; 5];
    want[PRINT] = 1;
    all_agree(&[&a, &b], want).await;

    // The other replica knows the device: its vote changes, the total stays.
    let changed = vote(&b, "ai", &[("cookie", &cookie)]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.json()["changed_from"], "print");
    assert_eq!(changed.json()["choice"], "ai");
    assert!(
        changed.headers.get("set-cookie").is_none(),
        "the device keeps its cookie"
    );
    want = [0; 5];
    want[AI] = 1;
    all_agree(&[&a, &b], want).await;
    // Replicas count in shards of their own: the change took "print" off
    // the shard that counted it, never below zero anywhere.
    let pg = pg_connect(&stack.database_url).await;
    let negative: i64 = pg
        .query_one(
            "SELECT count(*) FROM vote_totals, jsonb_each_text(counts) WHERE value::bigint < 0",
            &[],
        )
        .await
        .expect("read totals")
        .get(0);
    assert_eq!(negative, 0, "no shard holds a negative count");

    // Back on the first replica, from another shard's count.
    let again = vote(&a, "stare", &[("cookie", &format!("theme=dark; {cookie}"))]).await;
    assert_eq!(again.json()["changed_from"], "ai");
    want = [0; 5];
    want[STARE] = 1;
    all_agree(&[&a, &b], want).await;

    // The same choice again changes nothing.
    let same = vote(&b, "stare", &[("cookie", &cookie)]).await;
    assert_eq!(same.status, StatusCode::OK);
    assert!(same.json().get("changed_from").is_none());
    all_agree(&[&a, &b], want).await;
    assert_eq!(
        vote_rows(&stack.database_url).await,
        1,
        "one row per device"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn no_cookie_or_a_forged_one_is_a_new_device() {
    let stack = Stack::fresh().await;
    let app = TestApp::start_on(&stack, config(&stack)).await;
    let first = vote(&app, "print", &[]).await;
    let cookie = device_cookie(&first);

    // curl and oha send no cookie: each vote is a new device.
    for _ in 0..2 {
        let resp = vote(&app, "print", &[]).await;
        assert!(resp.json().get("changed_from").is_none());
    }
    // Another key's signature, a changed id, or a screen ticket instead.
    let other_key = vote_api::signing::Signer::new(vec![9; 32]).new_device().1;
    let (name, token) = cookie.split_once('=').expect("name=value");
    let flipped = {
        let mut t = token.to_owned();
        let at = "device.".len();
        let c = if &t[at..=at] == "0" { "1" } else { "0" };
        t.replace_range(at..=at, c);
        t
    };
    for forged in [other_key, flipped, "screen.1.00".to_owned()] {
        let resp = vote(&app, "ai", &[("cookie", &format!("{name}={forged}"))]).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert!(resp.json().get("changed_from").is_none(), "{forged}");
        assert_ne!(
            device_cookie(&resp),
            cookie,
            "a new device gets its own cookie"
        );
    }
    let mut want = [0; 5];
    want[PRINT] = 3;
    want[AI] = 3;
    all_agree(&[&app], want).await;
    app.stop().await;
}

#[tokio::test]
async fn idempotency_keys_still_apply_to_device_votes() {
    let stack = Stack::fresh().await;
    let app = TestApp::start_on(&stack, config(&stack)).await;
    let first = vote(&app, "print", &[("idempotency-key", "k-1")]).await;
    let cookie = device_cookie(&first);

    // A retry of the first vote (its answer lost) is a replay, not a change.
    let replay = vote(
        &app,
        "print",
        &[("idempotency-key", "k-1"), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.header("idempotent-replayed"), "true");
    let change = vote(
        &app,
        "ai",
        &[("idempotency-key", "k-2"), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(change.json()["changed_from"], "print");
    let replay = vote(
        &app,
        "ai",
        &[("idempotency-key", "k-2"), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(replay.header("idempotent-replayed"), "true");
    // A key already used for another choice is refused, as without devices.
    let reused = vote(
        &app,
        "stare",
        &[("idempotency-key", "k-2"), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut want = [0; 5];
    want[AI] = 1;
    all_agree(&[&app], want).await;
    app.stop().await;
}

#[tokio::test]
async fn a_reset_forgets_devices_and_the_page_says_what_the_device_voted() {
    let stack = Stack::fresh().await;
    let app = TestApp::start_on(&stack, config(&stack)).await;

    // The form, without JavaScript: 303 to the vote page, which reads the cookie.
    let form = app
        .post_with(
            "/vote",
            "application/x-www-form-urlencoded",
            "choice=stare&vote_id=f-1",
            &[("accept", "text/html")],
        )
        .await;
    assert_eq!(form.status, StatusCode::SEE_OTHER);
    assert_eq!(form.header("location"), "/");
    let cookie = device_cookie(&form);
    let page = app
        .send_with(hyper::Method::GET, "/", ("cookie", &cookie))
        .await;
    let html = page.text();
    assert!(
        html.contains("You voted: <strong id=\"you-voted-choice\">Stare at the code until it confesses</strong> — tap another to change"),
        "{html}"
    );
    assert!(
        !html.contains("<p id=\"you-voted\" class=\"referral\" hidden>"),
        "shown"
    );
    let plain = app.get("/").await.text();
    assert!(
        plain.contains("<p id=\"you-voted\" class=\"referral\" hidden>"),
        "no cookie, no vote shown"
    );

    let reset = app
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    let page = app
        .send_with(hyper::Method::GET, "/", ("cookie", &cookie))
        .await;
    assert!(
        page.text()
            .contains("<p id=\"you-voted\" class=\"referral\" hidden>"),
        "the reset forgot the device's vote"
    );
    let after = vote(&app, "ai", &[("cookie", &cookie)]).await;
    assert_eq!(after.status, StatusCode::OK);
    assert!(
        after.json().get("changed_from").is_none(),
        "a new vote, not a change"
    );
    let mut want = [0; 5];
    want[AI] = 1;
    all_agree(&[&app], want).await;
    app.stop().await;
}

#[tokio::test]
async fn labels_are_escaped_on_the_vote_page_and_the_cookie_is_secure_over_https() {
    let stack = Stack::fresh().await;
    let mut config = config(&stack);
    config.poll = Arc::new(
        Poll::parse(
            "question = \"Which?\"\n\
             [[option]]\nkey = \"tags\"\nlabel = \"<script> & \\\"quotes\\\" 'too'\"\n\
             [[option]]\nkey = \"plain\"\nlabel = \"Plain\"\n",
        )
        .expect("a valid poll"),
    );
    config.public_url = Some("https://vote.example.org".into());
    let app = TestApp::start_on(&stack, config).await;
    let resp = app
        .post_with(
            "/vote",
            "application/json",
            r#"{"choice":"tags"}"#,
            &[("origin", "https://vote.example.org")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert!(resp.header("set-cookie").contains("; Secure"));
    let page = app
        .send_with(hyper::Method::GET, "/", ("cookie", &device_cookie(&resp)))
        .await
        .text();
    assert!(
        page.contains("You voted: <strong id=\"you-voted-choice\">&lt;script&gt; &amp; &quot;quotes&quot; 'too'</strong>"),
        "{page}"
    );
    assert!(!page.contains("<script> &"), "no raw label");
    app.stop().await;
}

#[tokio::test]
async fn without_the_setting_every_vote_counts_and_no_cookie_is_set() {
    let app = TestApp::start().await;
    for _ in 0..2 {
        let resp = vote(&app, "print", &[("cookie", "vote_device=device.x.y")]).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert!(resp.headers.get("set-cookie").is_none());
    }
    assert_eq!(counts(&app).await[PRINT], 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_voting_at_once_on_two_replicas_stays_one_vote() {
    const VOTES: usize = 24;
    let stack = Stack::fresh().await;
    let mut config = config(&stack);
    let key = vec![5; 32];
    config.device_key = Some(vote_api::config::DeviceKey(key.clone()));
    let a = Arc::new(TestApp::start_on(&stack, config.clone()).await);
    let b = Arc::new(TestApp::start_on(&stack, config).await);
    // A device both replicas see for the first time at once: one of the two
    // inserts its row, the other's batch is retried and finds it.
    let (_, token) = vote_api::signing::Signer::new(key).new_device();
    let cookie = format!("vote_device={token}");
    let choices = ["print", "stare", "ai", "revert", "restart"];
    let mut tasks = Vec::new();
    for i in 0..VOTES {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            vote(&app, choices[i % choices.len()], &[("cookie", &cookie)])
                .await
                .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("vote task"), StatusCode::OK);
    }
    assert_eq!(
        vote_rows(&stack.database_url).await,
        1,
        "one row for the device"
    );
    let stored = stored_counts(&stack.database_url).await;
    assert_eq!(stored.iter().sum::<u64>(), 1);
    all_agree(&[&a, &b], stored).await;
    let a = Arc::try_unwrap(a).ok().expect("the tasks are done");
    let b = Arc::try_unwrap(b).ok().expect("the tasks are done");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_refused_vote_of_a_new_device_still_names_the_device_for_its_retry() {
    let stack = Stack::fresh().await;
    let app = TestApp::start_on(&stack, config(&stack)).await;
    // Any refusal (here a bad choice; in the field a 503 whose vote may have
    // landed) carries the new device's cookie, so the retry is that device.
    let refused = vote(&app, "nope", &[]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let cookie = device_cookie(&refused);
    let first = vote(&app, "print", &[("cookie", &cookie)]).await;
    assert!(
        first.json().get("changed_from").is_none(),
        "the device's first vote"
    );
    assert!(
        first.headers.get("set-cookie").is_none(),
        "it has its cookie"
    );
    let second = vote(&app, "ai", &[("cookie", &cookie)]).await;
    assert_eq!(second.json()["changed_from"], "print");
    let mut want = [0; 5];
    want[AI] = 1;
    all_agree(&[&app], want).await;
    app.stop().await;
}
