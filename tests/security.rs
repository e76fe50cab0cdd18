//! Safer defaults (docs/contract.md, safer defaults): admin without ADMIN_TOKEN from loopback only,
//! no state-changing POST from another site, /metrics on METRICS_ADDR only,
//! forged pub/sub messages ignored and counted. The non-loopback branch of
//! the admin decision is unit-tested in src/http/guard.rs: tests never send
//! traffic to the machine's other addresses.

mod common;

use std::process::Command;

use http_body_util::Full;
use hyper::{Method, StatusCode};
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
async fn without_admin_token_a_tunnel_or_a_rebound_name_is_not_the_speaker() {
    let app = TestApp::start().await;
    app.vote("print", None).await;
    let own_host = format!("127.0.0.1:{}", app.addr.port());
    let refused: [&[(&str, &str)]; 4] = [
        // DNS rebinding: a foreign name resolving to 127.0.0.1, Origin == Host.
        &[
            ("host", "evil.example:8000"),
            ("origin", "http://evil.example:8000"),
        ],
        // A tunnel or a local proxy relays the visitor from loopback.
        &[("host", &own_host), ("x-forwarded-for", "203.0.113.7")],
        &[("host", &own_host), ("forwarded", "for=203.0.113.7")],
        &[("host", &own_host), ("via", "1.1 tunnel")],
    ];
    for headers in refused {
        let reset = post_with(&app, "/admin/reset?confirm=yes", "", headers).await;
        assert_eq!(reset.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(reset.detail().contains("ADMIN_TOKEN"), "{}", reset.text());
        let mut export = app.request(Method::GET, "/admin/export.csv");
        for (name, value) in headers {
            export = export.header(*name, *value);
        }
        let export = send(export.body(Full::default()).expect("request")).await;
        assert_eq!(export.status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    assert_eq!(app.total().await, 1, "nothing was reset");
    for host in ["localhost", &format!("localhost:{}", app.addr.port())] {
        let ok = post_with(&app, "/admin/reset?confirm=yes", "", &[("host", host)]).await;
        assert_eq!(ok.status, StatusCode::OK, "{host}");
    }
    assert_eq!(app.total().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn without_metrics_addr_metrics_answer_this_machine_only() {
    let app = TestApp::start().await;
    app.vote("stare", None).await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    assert!(text.contains(r#"votes_total{choice="stare"} 1"#), "{text}");
    for header in [
        ("host", "vote.example.org"),
        ("x-forwarded-for", "203.0.113.7"),
        ("via", "1.1 tunnel"),
    ] {
        let relayed = app.send_with(Method::GET, "/metrics", header).await;
        assert_eq!(relayed.status, StatusCode::FORBIDDEN, "{header:?}");
        assert!(!relayed.text().contains("votes_total"), "{header:?}");
        assert!(
            relayed.detail().contains("METRICS_ADDR"),
            "{}",
            relayed.text()
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn what_fills_the_database_volume_is_exported() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.db_volume_bytes = Some(1 << 30);
    let app = TestApp::start_on(&stack, config).await;
    assert_eq!(
        app.metric("postgresql_volume_size_bytes").await,
        f64::from(1u32 << 30)
    );
    assert!(
        eventually(WAIT, || async {
            app.metric("postgresql_database_size_bytes").await > 1_000_000.0
        })
        .await,
        "the database's size is never read"
    );
    let wal: f64 = pg_connect(&stack.database_url)
        .await
        .query_one(
            "SELECT pg_size_bytes(current_setting('max_wal_size'))::float8",
            &[],
        )
        .await
        .expect("max_wal_size")
        .get(0);
    assert_eq!(app.metric("postgresql_wal_max_bytes").await, wal);
    app.stop().await;
}

#[tokio::test]
async fn a_60_kb_request_head_gets_431() {
    let app = TestApp::start().await;
    let big = "a".repeat(60 * 1024);
    let refused = app.send_with(Method::GET, "/health", ("x-big", &big)).await;
    assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let fits = "a".repeat(12 * 1024);
    let ok = app
        .send_with(Method::GET, "/health", ("x-big", &fits))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "a head under the cap is served");
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
    let role = role_name(&stack);
    // Idempotent: the init container runs before every start.
    apply_app_role(&stack.database_url, &role);
    apply_app_role(&stack.database_url, &role);

    let mut config = stack.config();
    config.database_url = as_role(&stack, &role);
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
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'vote_api' AND tableowner <> $1",
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
    assert_eq!(tables_in(&admin, "public").await, Vec::<String>::new());
    let as_app = pg_connect(&config.database_url).await;
    for forbidden in [
        format!("CREATE DATABASE {role}_other"),
        format!("CREATE ROLE {role}_other"),
        "ALTER SYSTEM SET work_mem = '1GB'".to_owned(),
        "CREATE TABLE public.planted (x int)".to_owned(),
        "CREATE FUNCTION public.now() RETURNS int LANGUAGE sql AS 'SELECT 1'".to_owned(),
        format!("CREATE SCHEMA {role}_other"),
    ] {
        assert!(
            as_app.batch_execute(&forbidden).await.is_err(),
            "{forbidden}"
        );
    }
}

#[test]
fn a_blank_or_short_admin_token_stops_start_up_with_one_line_naming_it() {
    for blank in ["", "   ", "browser-test-token"] {
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

/// The tables of `schema`, by name.
async fn tables_in(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("pg_tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The URL of `stack`'s database as `role` (password of `apply_app_role`).
fn as_role(stack: &Stack, role: &str) -> String {
    stack
        .database_url
        .replacen("://postgres@", &format!("://{role}:app-role-password@"), 1)
}

fn role_name(stack: &Stack) -> String {
    format!(
        "app_{}_{}",
        std::process::id(),
        stack.database_url.rsplit('_').next().expect("suffix")
    )
}

#[tokio::test]
async fn a_fresh_chart_install_migrates_as_the_app_role_into_its_own_schema() {
    let stack = Stack::fresh().await;
    let role = role_name(&stack);
    // The chart: the init container runs before the app ever started.
    apply_app_role(&stack.database_url, &role);
    let mut config = stack.config();
    config.database_url = as_role(&stack, &role);
    let app = TestApp::start_on(&stack, config.clone()).await;
    assert_eq!(app.vote("print", None).await.status, StatusCode::OK);
    app.stop().await;
    // Every start migrates again: nothing left to do, nothing breaks.
    let app = TestApp::start_on(&stack, config.clone()).await;
    assert!(eventually(WAIT, || async { app.total().await == 1 }).await);
    app.stop().await;

    let admin = pg_connect(&stack.database_url).await;
    assert_eq!(tables_in(&admin, "public").await, Vec::<String>::new());
    let moved = tables_in(&admin, "vote_api").await;
    for table in [
        "schema_migrations",
        "votes",
        "referral_partners",
        "timeline_counts",
    ] {
        assert!(moved.iter().any(|t| t == table), "{table} in {moved:?}");
    }
    let can_create: bool = admin
        .query_one(
            "SELECT has_schema_privilege($1, 'public', 'CREATE')",
            &[&role],
        )
        .await
        .expect("privilege")
        .get(0);
    assert!(!can_create, "the app role may create in public");
    let as_app = pg_connect(&config.database_url).await;
    assert!(
        as_app
            .batch_execute("CREATE TABLE public.planted (x int)")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_older_install_moves_every_table_out_of_public_with_its_rows() {
    let stack = Stack::fresh().await;
    // An install from before 0005, with a table this test invents standing
    // for those later migrations add: 0005 must move whatever is there.
    let admin = pg_connect(&stack.database_url).await;
    for sql in [
        include_str!("../db/migrations/0001_init.sql"),
        include_str!("../db/migrations/0002_timeline.sql"),
        include_str!("../db/migrations/0003_idempotency.sql"),
        "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version)
             VALUES ('0001_init'), ('0002_timeline'), ('0003_idempotency');
         CREATE TABLE later_table (id BIGSERIAL PRIMARY KEY, note TEXT UNIQUE);
         INSERT INTO later_table (note) VALUES ('kept');
         CREATE SEQUENCE standalone_seq;
         INSERT INTO votes (choice) VALUES ('ai'), ('ai'), ('stare');
         -- PostgreSQL 14 and older grant this by default.
         GRANT CREATE ON SCHEMA public TO PUBLIC;",
    ] {
        admin.batch_execute(sql).await.expect("older install");
    }
    // The role as the earlier init script left it: free to create in public.
    let role = role_name(&stack);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT USAGE, CREATE ON SCHEMA public TO {role}"
        ))
        .await
        .expect("the earlier app role");
    drop(admin);
    apply_app_role(&stack.database_url, &role);
    let mut config = stack.config();
    config.database_url = as_role(&stack, &role);
    let app = TestApp::start_on(&stack, config.clone()).await;
    assert!(
        eventually(WAIT, || async { app.total().await == 3 }).await,
        "the votes moved with their table"
    );
    assert_eq!(app.vote("ai", None).await.status, StatusCode::OK);
    app.stop().await;

    let admin = pg_connect(&stack.database_url).await;
    assert_eq!(tables_in(&admin, "public").await, Vec::<String>::new());
    let moved = tables_in(&admin, "vote_api").await;
    assert!(moved.iter().any(|t| t == "later_table"), "{moved:?}");
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public'",
            &[],
        )
        .await
        .expect("public")
        .get(0);
    assert_eq!(left, 0, "indexes and sequences follow their tables");
    for grantee in [role.as_str(), "public"] {
        let can_create: bool = admin
            .query_one(
                "SELECT has_schema_privilege($1, 'public', 'CREATE')",
                &[&grantee],
            )
            .await
            .expect("privilege")
            .get(0);
        assert!(!can_create, "{grantee} may still create in public");
    }
    // Sequences keep counting where they were.
    let as_app = pg_connect(&config.database_url).await;
    let next: i64 = as_app
        .query_one(
            "INSERT INTO later_table (note) VALUES ('new') RETURNING id",
            &[],
        )
        .await
        .expect("insert as the app")
        .get(0);
    assert_eq!(next, 2);
    assert!(
        as_app
            .query_one("SELECT nextval('standalone_seq')", &[])
            .await
            .is_ok()
    );
    let votes: i64 = admin
        .query_one("SELECT count(*) FROM vote_api.votes", &[])
        .await
        .expect("votes")
        .get(0);
    assert_eq!(votes, 4);
}

#[tokio::test]
async fn a_superuser_install_moves_too_and_its_sessions_follow() {
    // Tests and compose connect as the superuser: 0005 runs as it.
    let stack = Stack::fresh().await;
    // PostgreSQL 14 and older grant this by default.
    pg_connect(&stack.database_url)
        .await
        .batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        .await
        .expect("grant");
    let app = TestApp::start_on(&stack, stack.config()).await;
    assert_eq!(app.vote("restart", None).await.status, StatusCode::OK);
    app.stop().await;
    let admin = pg_connect(&stack.database_url).await;
    assert_eq!(tables_in(&admin, "public").await, Vec::<String>::new());
    let count: i64 = admin
        .query_one("SELECT count(*) FROM votes", &[])
        .await
        .expect("a new session finds the tables unqualified")
        .get(0);
    assert_eq!(count, 1);
    let anyone_creates: bool = admin
        .query_one(
            "SELECT has_schema_privilege('public', 'public', 'CREATE')",
            &[],
        )
        .await
        .expect("privilege")
        .get(0);
    assert!(
        !anyone_creates,
        "CREATE on public is still granted to PUBLIC"
    );
}
