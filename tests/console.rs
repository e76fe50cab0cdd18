//! The speaker's console (docs/contract.md, the speaker's console): hiding and revealing the results on
//! every replica, the incident timeline and the CSV exports, on the real
//! PostgreSQL and Redis.

mod common;

use common::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

fn is_hidden_total(v: &Value, total: u64) -> bool {
    v == &json!({ "hidden": true, "total": total })
}

async fn set_visible(app: &TestApp, visible: &str) -> Resp {
    app.post(
        &format!("/admin/results?visible={visible}"),
        "application/json",
        "",
    )
    .await
}

#[tokio::test]
async fn hidden_results_carry_the_total_only_on_every_replica_until_revealed() {
    let stack = Stack::fresh().await;
    let a = TestApp::start_on(&stack, stack.config()).await;
    let b = TestApp::start_on(&stack, stack.config()).await;
    let mut sse_a = a.stream().await;
    let mut sse_b = b.stream().await;
    for sse in [&mut sse_a, &mut sse_b] {
        sse.until_votes(WAIT, |v| total_of(v) == 0)
            .await
            .expect("initial counts");
    }
    assert_eq!(a.vote("ai", None).await.status, StatusCode::OK);
    assert_eq!(a.vote("print", None).await.status, StatusCode::OK);

    let resp = set_visible(&a, "no").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["visible"], false);
    assert!(is_hidden_total(&a.get("/votes").await.json(), 2));
    // The other replica learns it over Redis pub/sub.
    assert!(
        eventually(WAIT, || async {
            is_hidden_total(&b.get("/votes").await.json(), 2)
        })
        .await,
        "replica b still shows counts: {}",
        b.get("/votes").await.text()
    );
    for sse in [&mut sse_a, &mut sse_b] {
        sse.until_votes(WAIT, |v| is_hidden_total(v, 2))
            .await
            .expect("a hidden frame with the total only");
    }
    // New votes still move the total, and only the total.
    assert_eq!(b.vote("stare", None).await.status, StatusCode::OK);
    for sse in [&mut sse_a, &mut sse_b] {
        let frame = sse
            .until_votes(WAIT, |v| v.get("total") == Some(&json!(3)))
            .await
            .expect("hidden frame with the new total");
        assert!(is_hidden_total(&frame, 3), "{frame}");
    }
    let page = b.get("/results").await.text();
    assert!(page.contains("Results hidden"));
    assert!(page.contains(r#"<dd id="total">3</dd>"#));
    assert!(
        !page.contains(r#"data-count="1""#),
        "a count leaked: {page}"
    );

    // Revealed from the other replica: counts everywhere again.
    let resp = set_visible(&b, "yes").await;
    assert_eq!(resp.json()["visible"], true);
    for sse in [&mut sse_a, &mut sse_b] {
        let frame = sse
            .until_votes(WAIT, |v| v.get("hidden").is_none())
            .await
            .expect("a counts frame after the reveal");
        assert_eq!(frame["stare"]["count"], 1);
        assert_eq!(total_of(&frame), 3);
    }
    assert!(
        eventually(WAIT, || async {
            a.get("/votes").await.json()["ai"]["count"] == 1
        })
        .await
    );
    drop((sse_a, sse_b));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn hidden_survives_a_restart_and_reset_makes_results_visible() {
    let stack = Stack::fresh().await;
    let first = TestApp::start_on(&stack, stack.config()).await;
    assert_eq!(first.vote("revert", None).await.status, StatusCode::OK);
    assert_eq!(set_visible(&first, "no").await.status, StatusCode::OK);
    first.stop().await;

    let second = TestApp::start_on(&stack, stack.config()).await;
    // From its very first answer: a restarted replica never leaks the counts.
    // (The total itself arrives with the tally's first rebuild from Redis.)
    let votes = second.get("/votes").await.json();
    assert_eq!(
        votes["hidden"], true,
        "a restarted process must keep the results hidden: {votes}"
    );
    assert!(
        eventually(WAIT, || async {
            is_hidden_total(&second.get("/votes").await.json(), 1)
        })
        .await,
        "hidden, with the total of the earlier vote"
    );
    let admin = second.get("/admin").await.text();
    assert!(admin.contains("SHOW RESULTS"), "{admin}");

    let reset = second
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    let votes = second.get("/votes").await.json();
    assert_eq!(
        votes["revert"]["count"], 0,
        "reset makes the results visible: {votes}"
    );
    second.stop().await;
}

#[tokio::test]
async fn reveal_needs_a_valid_value_and_the_admin_token() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.admin_token = Some("s3cret-s3cret-s3cret-s3cr".into());
    let app = TestApp::start_on(&stack, config).await;

    let resp = set_visible(&app, "no").await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let with_token = |path: &'static str| {
        app.send_with(
            Method::POST,
            path,
            ("authorization", "Bearer s3cret-s3cret-s3cret-s3cr"),
        )
    };
    let resp = with_token("/admin/results?visible=maybe").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.detail(), "Add ?visible=yes or ?visible=no");
    assert_eq!(
        with_token("/admin/results?visible=no").await.status,
        StatusCode::OK
    );
    assert!(is_hidden_total(&app.get("/votes").await.json(), 0));
    assert_eq!(
        app.get("/admin/results").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    app.stop().await;
}

const OUTCOMES: [&str; 5] = [
    "accepted",
    "referral_cache_exhausted",
    "invalid",
    "db_unavailable",
    "overloaded",
];

/// Totals per outcome over every bucket of `/timeline.json`.
fn timeline_totals(timeline: &Value) -> [u64; 5] {
    let mut totals = [0; 5];
    for bucket in timeline["buckets"].as_array().expect("buckets") {
        for (i, key) in OUTCOMES.iter().enumerate() {
            totals[i] += bucket[key]
                .as_u64()
                .unwrap_or_else(|| panic!("bucket without {key}: {bucket}"));
        }
    }
    totals
}

/// Waits until the timeline shows `want` (each process flushes about once a
/// second); then the timeline, which nothing changes meanwhile.
async fn await_totals(app: &TestApp, want: [u64; 5]) -> Value {
    let shown = eventually(WAIT, || async {
        timeline_totals(&app.get("/timeline.json").await.json()) == want
    })
    .await;
    let timeline = app.get("/timeline.json").await.json();
    assert!(shown, "timeline never showed {want:?}: {timeline}");
    timeline
}

#[tokio::test]
async fn the_timeline_counts_what_was_sent_survives_a_restart_and_marks_a_new_version() {
    let stack = Stack::fresh().await;
    let first = TestApp::start_on(&stack, stack.config()).await;
    for _ in 0..7 {
        assert_eq!(first.vote("ai", None).await.status, StatusCode::OK);
    }
    // Any 4xx refusal of a vote is `invalid`.
    assert_eq!(
        first.vote("nope", None).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        first.vote("ai", Some("no-such-partner")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        first.post("/vote", "text/plain", "choice=ai").await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // The bug: referral votes 1–10 pass (the unknown code above was the 1st
    // entry), then 503.
    let mut exhausted = 0;
    for _ in 0..12 {
        if first.vote("stare", Some("conf-partner-2026")).await.status
            == StatusCode::SERVICE_UNAVAILABLE
        {
            exhausted += 1;
        }
    }
    assert_eq!(exhausted, 3);
    // Not a vote: no outcome.
    assert_eq!(
        first.get("/vote").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let want = [7 + 9, 3, 3, 0, 0];
    let timeline = await_totals(&first, want).await;
    let versions = timeline["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1, "{timeline}");
    assert_eq!(versions[0]["version"], "test");

    // Votes answered right before a stop are flushed on the way out.
    assert_eq!(first.vote("print", None).await.status, StatusCode::OK);
    first.stop().await;
    let mut config = stack.config();
    config.app_version = "dev-mirrord".into();
    let second = TestApp::start_on(&stack, config).await;
    let after_restart = second.get("/timeline.json").await.json();
    assert_eq!(timeline_totals(&after_restart), [17, 3, 3, 0, 0]);

    // The fixed build takes over: a marker, and referral votes pass.
    for _ in 0..3 {
        let resp = second.vote("ai", Some("conf-partner-2026")).await;
        assert_eq!(resp.status, StatusCode::OK);
    }
    let timeline = await_totals(&second, [20, 3, 3, 0, 0]).await;
    let versions = timeline["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{timeline}");
    assert_eq!(versions[1]["version"], "dev-mirrord");
    let first_seen = |i: usize| versions[i]["first_seen"].as_str().expect("time").to_owned();
    assert!(first_seen(0) < first_seen(1), "{timeline}");
    assert!(first_seen(1).ends_with('Z'));
    let buckets = timeline["buckets"].as_array().expect("buckets");
    assert!(buckets.len() <= 300);
    assert!(
        buckets.iter().all(|b| b["seconds"] == 1),
        "a young session has 1 s buckets"
    );

    // The page draws the same: bars, the marker, the table.
    let page = second.get("/timeline").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(
        html.contains("<svg") && html.contains("dev-mirrord"),
        "{html}"
    );
    assert!(html.contains(r#"<strong id="tl-total-accepted">20</strong>"#));
    assert!(html.contains("<table"));
    let chart = second.get("/timeline?part=chart").await.text();
    assert!(chart.starts_with(r#"<div id="timeline-chart""#), "{chart}");

    // The CSV: same buckets, a download.
    let csv = second.get("/admin/timeline.csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(
        csv.header("content-disposition"),
        r#"attachment; filename="timeline.csv""#
    );
    let text = csv.text();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("start,seconds,accepted,referral_cache_exhausted,invalid,db_unavailable,overloaded")
    );
    assert_eq!(lines.count(), buckets.len());

    // Reset empties it.
    let reset = second
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(
        second.get("/timeline.json").await.json(),
        json!({ "buckets": [], "versions": [] })
    );
    assert!(
        second
            .get("/timeline")
            .await
            .text()
            .contains("No votes since the last reset")
    );
    second.stop().await;
}

#[tokio::test]
async fn exports_need_the_admin_token() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.admin_token = Some("s3cret-s3cret-s3cret-s3cr".into());
    let app = TestApp::start_on(&stack, config).await;
    for path in ["/admin/export.csv", "/admin/timeline.csv"] {
        assert_eq!(
            app.get(path).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        let wrong = app
            .send_with(Method::GET, path, ("authorization", "Bearer nope"))
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(
        app.vote("restart", Some("conf-partner-2026")).await.status,
        StatusCode::OK
    );
    let csv = app
        .send_with(
            Method::GET,
            "/admin/export.csv",
            ("authorization", "Bearer s3cret-s3cret-s3cret-s3cr"),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(
        csv.header("content-disposition"),
        r#"attachment; filename="votes.csv""#
    );
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "created_at,choice,referral_code");
    assert_eq!(lines.len(), 2, "{text}");
    let (created_at, rest) = lines[1].split_once(',').expect("three columns");
    assert_eq!(rest, "restart,conf-partner-2026");
    assert!(
        created_at.len() == 27 && created_at.as_bytes()[10] == b'T' && created_at.ends_with('Z'),
        "RFC 3339 in UTC: {created_at}"
    );
    app.stop().await;
}
