//! Every route of docs/contract.md, on the real stack.

mod common;

use common::*;
use hyper::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn vote_page_is_html_with_security_headers_and_keeps_its_query() {
    let app = TestApp::start().await;
    let resp = app.get("/?referral=conf-partner-2026&conf=kubecon").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.header("content-type").starts_with("text/html"));
    assert!(
        resp.header("content-security-policy")
            .contains("default-src 'self'")
    );
    assert_eq!(resp.header("x-content-type-options"), "nosniff");
    let html = resp.text();
    assert!(
        html.contains("What&#39;s your go-to debugging strategy?")
            || html.contains("What's your go-to debugging strategy?")
    );
    assert!(html.contains(r#"name="referral" value="conf-partner-2026""#));
    assert!(html.contains(r#"name="conf" value="kubecon""#));
    for choice in CHOICES {
        assert!(
            html.contains(&format!(r#"value="{choice}""#)),
            "{choice} button"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn json_vote_is_answered_counted_and_stored() {
    let app = TestApp::start().await;
    let resp = app.vote("ai", None).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json(), json!({"status": "ok", "choice": "ai"}));
    assert_eq!(app.get("/votes").await.json()["ai"]["count"], 1);
    assert_eq!(vote_rows(&app.stack.database_url).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn form_vote_redirects_to_thanks_keeping_referral_and_conf() {
    let app = TestApp::start().await;
    let resp = app
        .post(
            "/vote",
            "application/x-www-form-urlencoded",
            "choice=revert&referral=conf-partner-2026&conf=sreday",
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    let location = resp.header("location").to_owned();
    assert_eq!(
        location,
        "/thanks?choice=revert&referral=conf-partner-2026&conf=sreday"
    );
    let thanks = app.get(&location).await;
    assert_eq!(thanks.status, StatusCode::OK);
    assert!(
        thanks
            .text()
            .contains("Revert and pretend it never happened")
    );
    assert_eq!(app.get("/votes").await.json()["revert"]["count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn votes_always_lists_all_five_choices_in_order() {
    let app = TestApp::start().await;
    let resp = app.get("/votes").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-type"), "application/json");
    let text = resp.text();
    let mut last = 0;
    for choice in CHOICES {
        let at = text.find(&format!("\"{choice}\"")).expect("key present");
        assert!(at >= last, "order of {choice}");
        last = at;
    }
    assert_eq!(
        resp.json()["print"],
        json!({"count": 0, "label": "Add more print statements"})
    );
    assert_eq!(resp.json()["restart"]["label"], "Turn it off and on again");
    app.stop().await;
}

#[tokio::test]
async fn stream_has_sse_headers_and_sends_counts_first() {
    let app = TestApp::start().await;
    app.vote("stare", None).await;
    let mut sse = app.stream().await;
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    let first = sse.next_event(WAIT).await.expect("first event");
    assert_eq!(first.name, "votes");
    let counts: serde_json::Value = serde_json::from_str(&first.data).expect("JSON");
    assert_eq!(counts, app.get("/votes").await.json());
    assert_eq!(counts["stare"]["count"], 1);
    drop(sse);
    app.stop().await;
}

#[tokio::test]
async fn results_and_admin_pages_render() {
    let app = TestApp::start().await;
    app.vote("print", None).await;
    let results = app.get("/results").await;
    assert_eq!(results.status, StatusCode::OK);
    assert!(results.header("content-security-policy").contains("'self'"));
    // The script comes from its long-cached, content-hash URL.
    assert!(results.text().contains("src=\"/static/results."));
    let admin = app.get("/admin").await;
    assert_eq!(admin.status, StatusCode::OK);
    assert!(admin.text().contains("RESET SESSION"));
    app.stop().await;
}

#[tokio::test]
async fn reset_needs_confirmation_and_deletes_votes_but_not_partners() {
    let app = TestApp::start().await;
    app.vote("print", None).await;
    app.vote("ai", Some("conf-partner-2026")).await;

    let refused = app.post("/admin/reset", "application/json", "").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.total().await, 2, "nothing deleted without confirm=yes");

    let done = app
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.json()["status"], "success");
    assert!(
        done.json()["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(app.total().await, 0);
    assert_eq!(vote_rows(&app.stack.database_url).await, 0);
    assert_eq!(redis_totals(&app.stack.redis_url).await, Some([0; 5]));
    // Partners stay: a referral vote still validates.
    assert_eq!(
        app.vote("ai", Some("conf-partner-2026")).await.status,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn reset_with_admin_token_requires_bearer() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.admin_token = Some("s3cret-s3cret-s3cret-s3cr".into());
    let app = TestApp::start_on(&stack, config).await;
    app.vote("print", None).await;

    let none = app
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let wrong = app
        .send_with(
            Method::POST,
            "/admin/reset?confirm=yes",
            ("authorization", "Bearer nope"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.total().await, 1);

    let right = app
        .send_with(
            Method::POST,
            "/admin/reset?confirm=yes",
            ("authorization", "Bearer s3cret-s3cret-s3cret-s3cr"),
        )
        .await;
    assert_eq!(right.status, StatusCode::OK);
    assert_eq!(app.total().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn probes_and_version() {
    let app = TestApp::start().await;
    let health = app.get("/health").await;
    assert_eq!(
        (health.status, health.json()),
        (StatusCode::OK, json!({"status": "healthy"}))
    );
    let ready = app.get("/ready").await;
    assert_eq!(
        (ready.status, ready.json()),
        (StatusCode::OK, json!({"status": "ready"}))
    );
    let version = app.get("/version").await;
    assert_eq!(version.json(), json!({"version": "test", "conference": ""}));
    app.stop().await;
}

#[tokio::test]
async fn metrics_expose_spec_names_with_bounded_labels() {
    let app = TestApp::start().await;
    app.vote("print", None).await;
    app.get("/no/such/path/1").await;
    app.get("/no/such/path/2").await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.header("content-type").starts_with("text/plain"));
    let text = metrics.text();
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "referral_cache_exhausted_total",
        "db_pool_checked_out",
        "db_pool_size 5",
        "votes_total{choice=\"print\"} 1",
        "sse_clients",
        "actor_queue_depth",
        "vote_batch_size",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    assert!(text.contains(r#"http_requests_total{endpoint="other",method="GET",status="404"} 2"#));
    assert!(
        !text.contains("/no/such/path"),
        "unknown paths never become labels"
    );
    app.stop().await;
}

#[tokio::test]
async fn static_assets_have_cache_headers_and_etag() {
    let app = TestApp::start().await;
    let css = app.get("/static/app.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
    assert!(css.header("cache-control").contains("max-age"));
    let etag = css.header("etag").to_owned();
    let again = app
        .send_with(Method::GET, "/static/app.css", ("if-none-match", &etag))
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(
        app.get("/static/nope.css").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/static/../Cargo.toml").await.status,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
    let app = TestApp::start().await;
    let missing = app.get("/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.detail(), "Not found");

    let get_vote = app.get("/vote").await;
    assert_eq!(get_vote.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get_vote.header("allow"), "POST");
    let post_votes = app.post("/votes", "application/json", "{}").await;
    assert_eq!(post_votes.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post_votes.header("allow"), "GET, HEAD");
    let delete = app
        .send_with(Method::DELETE, "/admin/reset", ("accept", "*/*"))
        .await;
    assert_eq!(delete.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(delete.header("allow"), "POST");
    app.stop().await;
}

#[tokio::test]
async fn bad_votes_get_clear_errors_and_leave_nothing_behind() {
    let app = TestApp::start().await;
    let json_ct = "application/json";
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            json_ct,
            br#"{"choice":"tabs"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "Invalid choice. Must be one of: print, stare, ai, revert, restart",
        ),
        (
            json_ct,
            br#"{"choice":"ai","referral":"nobody"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "Invalid referral code",
        ),
        (
            json_ct,
            br#"{"referral":"x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "Malformed JSON body",
        ),
        (
            json_ct,
            br#"{"choice":5}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "Malformed JSON body",
        ),
        (
            json_ct,
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "Malformed JSON body",
        ),
        (
            json_ct,
            b"{\"choice\":\"ai\xff\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "Malformed JSON body",
        ),
        (
            "application/x-www-form-urlencoded",
            b"choice=ai%FF".to_vec(),
            StatusCode::BAD_REQUEST,
            "Body is not valid UTF-8",
        ),
        (
            "application/x-www-form-urlencoded",
            b"referral=x".to_vec(),
            StatusCode::BAD_REQUEST,
            "Malformed form body",
        ),
        (
            json_ct,
            format!(r#"{{"choice":"ai","referral":"{}"}}"#, "x".repeat(65)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "Referral code too long (at most 64 characters)",
        ),
        (
            json_ct,
            format!(r#"{{"choice":"{}"}}"#, "a".repeat(10_000)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "Invalid choice. Must be one of: print, stare, ai, revert, restart",
        ),
        (
            "text/plain",
            b"choice=ai".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported content type: send application/json or application/x-www-form-urlencoded",
        ),
        (
            json_ct,
            vec![b' '; 16 * 1024 + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large (at most 16384 bytes)",
        ),
    ];
    for (content_type, body, status, detail) in cases {
        let resp = app.post("/vote", content_type, body).await;
        assert_eq!(resp.status, status, "{detail}");
        assert_eq!(resp.detail(), detail);
    }
    assert_eq!(app.total().await, 0);
    assert_eq!(vote_rows(&app.stack.database_url).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn empty_referral_is_the_same_as_none() {
    let app = TestApp::start().await;
    let json_empty = app
        .post_json("/vote", json!({"choice": "print", "referral": ""}))
        .await;
    assert_eq!(json_empty.status, StatusCode::OK);
    let form_empty = app
        .post(
            "/vote",
            "application/x-www-form-urlencoded",
            "choice=print&referral=",
        )
        .await;
    assert_eq!(form_empty.status, StatusCode::SEE_OTHER);
    assert_eq!(form_empty.header("location"), "/thanks?choice=print");
    assert_eq!(app.total().await, 2);
    let rows = pg_connect(&app.stack.database_url)
        .await
        .query_one(
            "SELECT count(*) FROM votes WHERE referral_code IS NULL",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(rows.get::<_, i64>(0), 2);
    app.stop().await;
}
