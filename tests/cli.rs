//! The `vote-api` binary: configuration errors, migrate/seed, SIGTERM.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn a_bad_variable_stops_start_up_with_one_line_naming_it() {
    for (var, value) in [
        ("DB_POOL_SIZE", "many"),
        ("BIND_ADDR", "nowhere"),
        ("REDIS_URL", "tcp://x"),
    ] {
        let out = Command::new(BIN)
            .env(var, value)
            .output()
            .expect("run vote-api");
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("vote-api: invalid {var}=")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
}

#[tokio::test]
async fn migrate_and_seed_are_idempotent_and_serve_stops_on_sigterm() {
    let stack = Stack::fresh().await;
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", &stack.database_url)
            .env("REDIS_URL", &stack.redis_url)
            .output()
            .expect("run vote-api")
    };
    for _ in 0..2 {
        assert!(run(&["migrate"]).status.success());
        assert!(run(&["seed", "--partners", "2000"]).status.success());
    }
    let partners: i64 = pg_connect(&stack.database_url)
        .await
        .query_one("SELECT count(*) FROM referral_partners", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(partners, 2001, "2,000 generated + conf-partner-2026, once");

    // Text lines into a pipe, as a log collector reads them: no colours.
    let mut served = Served::start(&stack, &[("LOG_FORMAT", "text")]).await;
    served.child.signal("TERM");
    // The stated bound: requests get SHUTDOWN_GRACE, the actors ACTOR_DRAIN.
    let bound = vote_api::http::SHUTDOWN_GRACE + vote_api::ACTOR_DRAIN + Duration::from_secs(1);
    let status = served.child.exit_within(bound).await;
    let text = served.log();
    let status = status.unwrap_or_else(|| panic!("no exit within {bound:?} of SIGTERM: {text}"));
    // A default SIGTERM (no handler yet) would kill it: no success, no drain.
    assert!(status.success(), "clean exit: {status}: {text}");
    // The last line too: it is logged just before the process ends.
    assert!(
        text.contains("shutting down") && text.contains("vote-api stopped"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no terminal colour codes: {text:?}");
}
