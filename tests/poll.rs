//! Your own poll (docs/contract.md): a poll file reaches every surface, a
//! bad one stops start-up naming it, votes for keys no longer in the poll
//! stay stored and are not shown, and a label is escaped wherever it is shown.

mod common;

use std::process::Command;
use std::sync::Arc;

use hyper::StatusCode;
use vote_api::config::Config;
use vote_api::poll::Poll;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_vote-api");

/// Two options in an order the seed's never had, a label that needs escaping.
const OWN: &str = r#"
question = "Tabs & <spaces>: which \"one\"?"

[[option]]
key = "spaces-4"
label = "Four <spaces> & \"more\""

[[option]]
key = "tabs"
label = "Tabs"

[[option]]
key = "zz-last"
label = "Neither"
"#;

/// A poll file on disk (POLL_FILE reads a path).
fn poll_file(name: &str, content: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&path, content).expect("write the poll file");
    path.to_string_lossy().into_owned()
}

/// `stack.config()` with the poll read the way start-up reads it.
fn config_with_poll(stack: &Stack, vars: &[(&str, &str)]) -> Config {
    let read = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("a valid poll");
    Config {
        poll: read.poll,
        ..stack.config()
    }
}

/// Byte offsets of `needles` in `text`, asserting each is there.
fn positions(text: &str, needles: &[&str]) -> Vec<usize> {
    needles
        .iter()
        .map(|n| {
            text.find(n)
                .unwrap_or_else(|| panic!("{n:?} missing in {text}"))
        })
        .collect()
}

fn in_order(text: &str, needles: &[&str]) -> bool {
    positions(text, needles).is_sorted()
}

#[tokio::test]
async fn a_poll_file_reaches_every_surface() {
    let stack = Stack::fresh().await;
    let path = poll_file("own", OWN);
    let app = TestApp::start_on(&stack, config_with_poll(&stack, &[("POLL_FILE", &path)])).await;
    let mut stream = app.stream().await;

    // The vote page: question, buttons in file order, labels escaped.
    let page = app.get("/").await.text();
    assert!(
        page.contains("Tabs &amp; &lt;spaces&gt;: which &quot;one&quot;?"),
        "{page}"
    );
    assert!(page.contains("Four &lt;spaces&gt; &amp; &quot;more&quot;"));
    assert!(!page.contains("<spaces>"), "no label reaches the page raw");
    assert!(in_order(
        &page,
        &[
            r#"value="spaces-4""#,
            r#"value="tabs""#,
            r#"value="zz-last""#
        ]
    ));
    assert!(
        !page.contains(r#"value="print""#),
        "the seed's poll is gone"
    );

    // Votes: the file's keys count, anything else is refused naming them.
    for choice in ["tabs", "tabs", "zz-last"] {
        let resp = app.vote(choice, None).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.json()["choice"], choice);
    }
    let refused = app.vote("print", None).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.detail(),
        "Invalid choice. Must be one of: spaces-4, tabs, zz-last"
    );

    // /votes and the stream: keys in file order, labels as written.
    let votes = app.get("/votes").await;
    let text = votes.text();
    assert!(in_order(
        &text,
        &[r#""spaces-4""#, r#""tabs""#, r#""zz-last""#]
    ));
    let json = votes.json();
    assert_eq!(json.as_object().map(|o| o.len()), Some(3));
    assert_eq!(json["tabs"]["count"], 2);
    assert_eq!(json["zz-last"]["count"], 1);
    assert_eq!(json["spaces-4"]["label"], "Four <spaces> & \"more\"");
    let framed = stream
        .until_votes(WAIT, |v| {
            v["tabs"]["count"] == 2 && v["zz-last"]["count"] == 1
        })
        .await
        .expect("the stream shows the file's keys");
    assert_eq!(framed, json);

    // Pages after a vote: /thanks, /results, /admin.
    let thanks = app.get("/thanks?choice=spaces-4").await.text();
    assert!(thanks.contains("Four &lt;spaces&gt; &amp; &quot;more&quot;"));
    let unknown = app.get("/thanks?choice=print").await;
    assert_eq!(
        unknown.status,
        StatusCode::SEE_OTHER,
        "not a choice of this poll"
    );
    let results = app.get("/results").await.text();
    assert!(
        results.contains(r#"data-choice="tabs" data-count="2""#),
        "{results}"
    );
    assert!(in_order(
        &results,
        &[
            r#"data-choice="spaces-4""#,
            r#"data-choice="tabs""#,
            r#"data-choice="zz-last""#
        ]
    ));
    let admin = app.get("/admin").await.text();
    assert!(admin.contains("<code>zz-last</code> Neither"), "{admin}");
    assert!(admin.contains("Tabs &amp; &lt;spaces&gt;"));

    // Metrics, CSV, PostgreSQL and Redis name the file's keys.
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"votes_total{choice="tabs"} 2"#),
        "{metrics}"
    );
    let csv = app.get("/admin/export.csv").await.text();
    assert_eq!(
        csv.lines().filter(|l| l.contains(",tabs,")).count(),
        2,
        "{csv}"
    );
    let rows = pg_connect(&stack.database_url)
        .await
        .query(
            "SELECT choice, count(*) FROM votes GROUP BY choice ORDER BY choice",
            &[],
        )
        .await
        .expect("count by choice");
    let stored: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(stored, [("tabs".to_owned(), 2), ("zz-last".to_owned(), 1)]);
    let own = Arc::new(Poll::parse(OWN).expect("valid"));
    let live = vote_api::live::Live::connect(&stack.redis_url, "test".into())
        .expect("valid URL")
        .for_poll(own);
    assert!(
        eventually(WAIT, || async {
            live.read()
                .await
                .ok()
                .flatten()
                .map(|s| s.counts.0[..3].to_vec())
                == Some(vec![0, 2, 1])
        })
        .await,
        "Redis sums the file's keys in file order"
    );
    // Redis's own sums (the Lua script) were taken for the file's keys: no
    // store came back in another shape.
    assert_eq!(app.metric("redis_sync_failures_total").await, 0.0);
    app.stop().await;
}

/// A rollout of a new poll: for a while two replicas serve different polls.
/// Each refuses keys outside its own and shows only its own keys; an
/// announcement carrying another poll's counts is refused, not misread.
#[tokio::test]
async fn while_two_polls_overlap_each_replica_keeps_to_its_own() {
    let stack = Stack::fresh().await;
    let path = poll_file("overlap", OWN);
    let new = TestApp::start_on(&stack, config_with_poll(&stack, &[("POLL_FILE", &path)])).await;
    let old = TestApp::start_on(&stack, stack.config()).await;
    assert_eq!(
        new.vote("print", None).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(old.vote("tabs", None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(new.vote("tabs", None).await.status, StatusCode::OK);
    assert_eq!(old.vote("print", None).await.status, StatusCode::OK);
    let rejected = |text: &str| {
        text.contains(r#"pubsub_rejected_total{reason="malformed"} "#)
            && !text.contains(r#"pubsub_rejected_total{reason="malformed"} 0"#)
    };
    assert!(
        eventually(WAIT, || async {
            rejected(&old.get("/metrics").await.text())
                && rejected(&new.get("/metrics").await.text())
        })
        .await,
        "each refuses the other's announcements"
    );
    let (a, b) = (
        new.get("/votes").await.json(),
        old.get("/votes").await.json(),
    );
    assert_eq!(
        (a["tabs"]["count"].as_u64(), total_of(&a)),
        (Some(1), 1),
        "{a}"
    );
    assert_eq!(
        (b["print"]["count"].as_u64(), total_of(&b)),
        (Some(1), 1),
        "{b}"
    );
    old.stop().await;
    new.stop().await;
}

#[tokio::test]
async fn poll_content_in_the_environment_wins_over_the_file() {
    let stack = Stack::fresh().await;
    // Under mirrord the pod's POLL_FILE path does not exist locally; POLL does.
    let config = config_with_poll(
        &stack,
        &[("POLL", OWN), ("POLL_FILE", "/nowhere/poll.toml")],
    );
    let app = TestApp::start_on(&stack, config).await;
    assert_eq!(app.vote("tabs", None).await.status, StatusCode::OK);
    assert_eq!(app.get("/votes").await.json()["tabs"]["count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn votes_for_keys_no_longer_in_the_poll_stay_stored_and_are_not_shown() {
    let stack = Stack::fresh().await;
    let seed = TestApp::start_on(&stack, stack.config()).await;
    for choice in ["print", "print", "ai"] {
        assert_eq!(seed.vote(choice, None).await.status, StatusCode::OK);
    }
    let with_key = |app: &TestApp, choice: &str| {
        let req = app
            .request(hyper::Method::POST, "/vote")
            .header("content-type", "application/json")
            .header("idempotency-key", "k-1")
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                r#"{{"choice":"{choice}"}}"#
            ))))
            .expect("request");
        send(req)
    };
    assert_eq!(with_key(&seed, "stare").await.status, StatusCode::OK);
    seed.stop().await;

    let path = poll_file("after", OWN);
    let own = TestApp::start_on(&stack, config_with_poll(&stack, &[("POLL_FILE", &path)])).await;
    let votes = own.get("/votes").await.json();
    assert_eq!(votes.as_object().map(|o| o.len()), Some(3), "{votes}");
    assert_eq!(total_of(&votes), 0, "the old keys are not shown: {votes}");
    assert_eq!(vote_rows(&stack.database_url).await, 4, "and stay stored");
    // The old key's stored vote is another choice: the key cannot vote again.
    assert_eq!(
        with_key(&own, "tabs").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(own.vote("tabs", None).await.status, StatusCode::OK);
    assert_eq!(own.total().await, 1);
    // After a rebuild from PostgreSQL too (a new replica), only the poll's keys count.
    let again = TestApp::start_on(&stack, config_with_poll(&stack, &[("POLL_FILE", &path)])).await;
    assert_eq!(again.get("/votes").await.json()["tabs"]["count"], 1);
    assert_eq!(again.total().await, 1);
    again.stop().await;
    own.stop().await;
}

#[tokio::test]
async fn postgresql_stores_only_choices_of_the_key_form() {
    let stack = Stack::fresh().await;
    let app = TestApp::start_on(&stack, stack.config()).await;
    let db = pg_connect(&stack.database_url).await;
    let insert = |choice: String| {
        let db = &db;
        async move {
            db.execute("INSERT INTO votes (choice) VALUES ($1)", &[&choice])
                .await
                .map_err(|e| e.code().cloned())
        }
    };
    for choice in ["a", "tabs", "a-b-9", "-", &"z".repeat(32)] {
        assert_eq!(insert(choice.to_string()).await, Ok(1), "{choice:?}");
    }
    for choice in ["", "A", "ab c", "a_b", "a\nb", "é", "aé", &"z".repeat(33)] {
        assert_eq!(
            insert(choice.to_string()).await,
            Err(Some(tokio_postgres::error::SqlState::CHECK_VIOLATION)),
            "{choice:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn without_a_poll_file_the_seed_poll_is_served_unchanged() {
    let app = TestApp::start().await;
    let votes = app.get("/votes").await.text();
    assert_eq!(
        votes,
        concat!(
            r#"{"print":{"count":0,"label":"Add more print statements"},"#,
            r#""stare":{"count":0,"label":"Stare at the code until it confesses"},"#,
            r#""ai":{"count":0,"label":"Ask an AI to explain it"},"#,
            r#""revert":{"count":0,"label":"Revert and pretend it never happened"},"#,
            r#""restart":{"count":0,"label":"Turn it off and on again"}}"#
        )
    );
    let page = app.get("/").await.text();
    assert!(
        page.contains(">What's your go-to debugging strategy?</h1>"),
        "{page}"
    );
    assert!(in_order(
        &page,
        &[
            r#"value="print""#,
            r#"value="stare""#,
            r#"value="ai""#,
            r#"value="revert""#,
            r#"value="restart""#
        ]
    ));
    assert_eq!(
        app.vote("tabs", None).await.detail(),
        "Invalid choice. Must be one of: print, stare, ai, revert, restart"
    );
    app.stop().await;
}

/// Each kind of bad file stops the binary with one line naming the variable,
/// the line and what is wrong.
#[test]
fn a_bad_poll_file_stops_start_up_naming_the_line() {
    let good_two =
        "[[option]]\nkey = \"a\"\nlabel = \"A\"\n[[option]]\nkey = \"b\"\nlabel = \"B\"\n";
    let cases = [
        (
            format!("question = \"Q\"\n{good_two}[[option]]\nkey = \"Bad Key\"\nlabel = \"x\"\n"),
            "line 9: key \"Bad Key\": expected 1–32 characters of a-z, 0-9 and -",
        ),
        (
            format!("question = \"Q\"\n{good_two}[[option]]\nkey = \"a\"\nlabel = \"again\"\n"),
            "line 9: key \"a\" is used twice",
        ),
        (
            format!(
                "question = \"Q\"\n{good_two}[[option]]\nkey = \"c\"\nlabel = \"{}\"\n",
                "x".repeat(121)
            ),
            "line 10: key \"c\": label expected 1–120 characters",
        ),
        (
            "question = \"Q\"\n[[option]]\nkey = \"a\"\nlabel = \"A\"\n".to_owned(),
            "expected 2–8 [[option]] tables, found 1",
        ),
        (
            format!("question = \"Q\"\nquestion = \"R\"\n{good_two}"),
            "line 2: ",
        ),
        (good_two.to_owned(), "missing field `question`"),
    ];
    for (i, (content, says)) in cases.iter().enumerate() {
        let path = poll_file(&format!("bad-{i}"), content);
        let out = Command::new(BIN)
            .env("POLL_FILE", &path)
            .output()
            .expect("run vote-api");
        assert_eq!(out.status.code(), Some(2), "{content}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("vote-api: invalid POLL_FILE={path:?}: ")),
            "{stderr}"
        );
        assert!(stderr.contains(says), "{stderr} should say {says}");
    }
    let out = Command::new(BIN)
        .env("POLL_FILE", "/nowhere/poll.toml")
        .output()
        .expect("run vote-api");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid POLL_FILE=\"/nowhere/poll.toml\"")
    );
    let out = Command::new(BIN)
        .env("POLL", "question = 1")
        .output()
        .expect("run vote-api");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("vote-api: invalid POLL=\"12 bytes\": line 1: "),
        "{stderr}"
    );
}
