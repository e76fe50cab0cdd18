//! Safer defaults (docs/contract.md, safer defaults): admin without ADMIN_TOKEN from loopback only,
//! no state-changing POST from another site, /metrics on METRICS_ADDR only,
//! forged pub/sub messages ignored and counted. The non-loopback branch of
//! the admin decision is unit-tested in src/http/guard.rs: tests never send
//! traffic to the machine's other addresses.

mod common;

use std::process::Command;

use http_body_util::Full;
use hyper::StatusCode;
use serde_json::json;

use common::*;

/// A POST with a JSON body and extra headers.
async fn post_with(app: &TestApp, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
    app.post_with(path, "application/json", body.to_owned(), headers)
        .await
}

#[tokio::test]
async fn without_admin_token_a_loopback_peer_may_reset() {
    let app = TestApp::start().await;
    app.vote("print", None).await;
    let reset = app
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text());
    assert_eq!(reset.json()["status"], "success");
    assert_eq!(app.total().await, 0);
    assert_eq!(vote_rows(&app.stack.database_url).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn with_admin_token_loopback_needs_it_too_and_the_401_names_it() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.admin_token = Some("a-token-of-at-least-24-chars".into());
    let app = TestApp::start_on(&stack, config).await;
    app.vote("print", None).await;
    let refused = app
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.detail().contains("ADMIN_TOKEN"),
        "{}",
        refused.text()
    );
    assert_eq!(refused.header("www-authenticate"), "Bearer");
    assert_eq!(app.total().await, 1);
    let ok = post_with(
        &app,
        "/admin/reset?confirm=yes",
        "",
        &[("authorization", "Bearer a-token-of-at-least-24-chars")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(app.total().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn cross_site_posts_are_refused_and_change_nothing() {
    let app = TestApp::start().await;
    assert_eq!(app.vote("ai", None).await.status, StatusCode::OK);
    let vote = r#"{"choice":"print"}"#;
    let own = format!("http://{}", app.addr);

    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("origin", "http://localhost.evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", own.as_str()), ("sec-fetch-site", "cross-site")],
    ] {
        let refused = post_with(&app, "/vote", vote, &headers).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(
            refused.detail().starts_with("Cross-site request refused"),
            "{}",
            refused.text()
        );
        let reset = post_with(&app, "/admin/reset?confirm=yes", "", &headers).await;
        assert_eq!(reset.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    // The form a foreign page can post without CORS: text/plain, cross-site.
    let form = app
        .post_with(
            "/vote",
            "text/plain",
            r#"{"choice":"print"}"#,
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
    assert_eq!(app.total().await, 1, "nothing counted, nothing reset");
    assert_eq!(vote_rows(&app.stack.database_url).await, 1);

    // The page's own origin, the browser's own verdict, and no header at all pass.
    for headers in [
        vec![("origin", own.as_str())],
        vec![("origin", own.as_str()), ("sec-fetch-site", "same-origin")],
        vec![("sec-fetch-site", "same-origin")],
        vec![],
    ] {
        let ok = post_with(&app, "/vote", vote, &headers).await;
        assert_eq!(ok.status, StatusCode::OK, "{headers:?}: {}", ok.text());
    }
    assert_eq!(app.total().await, 5);
    let reset = post_with(
        &app,
        "/admin/reset?confirm=yes",
        "",
        &[("origin", own.as_str())],
    )
    .await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(app.total().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn metrics_are_served_on_metrics_addr_and_not_on_the_main_listener() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.metrics_addr = Some("127.0.0.1:0".parse().expect("address"));
    let app = TestApp::start_on(&stack, config).await;
    let metrics_addr = app.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics_addr.port(), app.addr.port());
    app.vote("stare", None).await;

    let main = app.get("/metrics").await;
    assert_eq!(main.status, StatusCode::NOT_FOUND);
    let get = |path: &str| {
        let req = hyper::Request::get(format!("http://{metrics_addr}{path}"))
            .body(Full::default())
            .expect("request");
        send(req)
    };
    let metrics = get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.header("content-type").starts_with("text/plain"));
    let text = metrics.text();
    assert!(text.contains(r#"votes_total{choice="stare"} 1"#), "{text}");
    // The main listener answered it as an unknown path.
    assert!(text.contains(r#"http_requests_total{endpoint="other",method="GET",status="404"} 1"#));
    // Nothing else on the metrics port: it is not a second way in.
    assert_eq!(get("/votes").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get("/").await.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn forged_pubsub_messages_are_ignored_and_counted() {
    let app = TestApp::start().await;
    assert_eq!(app.vote("ai", None).await.status, StatusCode::OK);
    let mut redis = redis_conn(&app.stack.redis_url).await;
    let db = app.stack.redis_url.rsplit('/').next().expect("database");
    let channel = format!("vote-api:changes:{db}");
    let subscribed = eventually(WAIT, || {
        let mut redis = redis.clone();
        let channel = channel.clone();
        async move {
            let (_, n): (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut redis)
                .await
                .expect("PUBSUB NUMSUB");
            n > 0
        }
    })
    .await;
    assert!(subscribed, "vote-api subscribes to {channel}");
    let known: u64 = redis::cmd("GET")
        .arg("vote-api:seq")
        .query_async(&mut redis)
        .await
        .expect("GET seq");

    let forged = [
        // Would freeze every replica's view for good.
        format!("mallory {} 0 0 999 0 0", u64::MAX),
        format!("mallory {} 0 0 999 0 0", known + 1_000_000),
        format!("mallory {} 0 0 -5 0 0", known + 1),
        format!("mallory {} 0 0 {} 0 0", known + 1, u64::MAX),
        "not an announcement".to_owned(),
    ];
    for message in &forged {
        let _: u64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(message)
            .query_async(&mut redis)
            .await
            .expect("PUBLISH");
    }
    let counted = eventually(WAIT, || async {
        app.metric(r#"pubsub_rejected_total{reason="seq_out_of_bounds"}"#)
            .await
            == 2.0
            && app
                .metric(r#"pubsub_rejected_total{reason="malformed"}"#)
                .await
                == 3.0
    })
    .await;
    assert!(counted, "five forged messages counted by reason");
    assert_eq!(app.total().await, 1, "the counts did not move");

    // Not frozen: the next real vote shows.
    assert_eq!(app.vote("print", None).await.status, StatusCode::OK);
    assert!(eventually(WAIT, || async { app.total().await == 2 }).await);

    // A long jump that Redis did issue (a replica that missed many changes) is taken.
    let far = known + 500_000;
    let _: () = redis::cmd("SET")
        .arg("vote-api:seq")
        .arg(far)
        .query_async(&mut redis)
        .await
        .expect("SET seq");
    let _: u64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(format!("other-replica {far} 1 0 1 0 5"))
        .query_async(&mut redis)
        .await
        .expect("PUBLISH");
    assert!(eventually(WAIT, || async { app.total().await == 7 }).await);
    assert_eq!(app.get("/votes").await.json()["restart"]["count"], json!(5));
    app.stop().await;
}

/// Runs the chart's app-role script as the superuser, as its init container does.
fn apply_app_role(database_url: &str, role: &str) {
    let db = database_url.rsplit('/').next().expect("database name");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/helm/conference-app/files/postgresql-app-role.sql"
    );
    let status = Command::new("psql")
        .args(["-X", "-q", database_url, "-f", script])
        .args(["-v", &format!("role={role}"), "-v", &format!("db={db}")])
        .env("APP_POSTGRES_PASSWORD", "app-role-password")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("psql on PATH (scripts/test installs PostgreSQL)");
    assert!(status.success(), "postgresql-app-role.sql failed");
}

#[tokio::test]
async fn the_charts_app_role_owns_its_tables_and_nothing_else() {
    let stack = Stack::fresh().await;
    // A v1 install: the superuser created the tables.
    vote_api::prepare_db(&stack.config())
        .await
        .expect("migrate as the superuser");
    let role = format!(
        "app_{}_{}",
        std::process::id(),
        stack.database_url.rsplit('_').next().expect("suffix")
    );
    // Idempotent: the init container runs before every start.
    apply_app_role(&stack.database_url, &role);
    apply_app_role(&stack.database_url, &role);

    let mut config = stack.config();
    config.database_url =
        stack
            .database_url
            .replacen("://postgres@", &format!("://{role}:app-role-password@"), 1);
    let app = TestApp::start_on(&stack, config.clone()).await;
    assert_eq!(
        app.vote("ai", Some("conf-partner-2026")).await.status,
        StatusCode::OK
    );
    assert_eq!(vote_rows(&stack.database_url).await, 1);
    app.stop().await;

    let admin = pg_connect(&stack.database_url).await;
    let powers = admin
        .query_one(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls \
             FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("role exists");
    for i in 0..5 {
        assert!(!powers.get::<_, bool>(i), "power {i} granted");
    }
    let foreign: Vec<String> = admin
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tableowner <> $1",
            &[&role],
        )
        .await
        .expect("owners")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        foreign.is_empty(),
        "tables not owned by the app role: {foreign:?}"
    );
    let as_app = pg_connect(&config.database_url).await;
    for forbidden in [
        format!("CREATE DATABASE {role}_other"),
        format!("CREATE ROLE {role}_other"),
        "ALTER SYSTEM SET work_mem = '1GB'".to_owned(),
    ] {
        assert!(
            as_app.batch_execute(&forbidden).await.is_err(),
            "{forbidden}"
        );
    }
}

#[test]
fn a_blank_admin_token_stops_start_up_with_one_line_naming_it() {
    for blank in ["", "   "] {
        let out = Command::new(env!("CARGO_BIN_EXE_vote-api"))
            .env("ADMIN_TOKEN", blank)
            .output()
            .expect("run vote-api");
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("vote-api: invalid ADMIN_TOKEN="),
            "{stderr}"
        );
    }
}
