//! The speaker's console (SPEC §10.3): hiding and revealing the results on
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
    assert!(
        eventually(WAIT, || async {
            is_hidden_total(&second.get("/votes").await.json(), 1)
        })
        .await,
        "a restarted process must keep the results hidden"
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
    config.admin_token = Some("s3cret".into());
    let app = TestApp::start_on(&stack, config).await;

    let resp = set_visible(&app, "no").await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let with_token =
        |path: &'static str| app.send_with(Method::POST, path, ("authorization", "Bearer s3cret"));
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
