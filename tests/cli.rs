//! The `vote-api` binary: configuration errors, migrate/seed, SIGTERM.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_vote-api");

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

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = std::env::temp_dir().join(format!("vote-api-cli-{}.log", std::process::id()));
    let out = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new(BIN)
        .env("DATABASE_URL", &stack.database_url)
        .env("REDIS_URL", &stack.redis_url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("start vote-api");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // The start-up line, not merely an open port: the server is fully up.
    let up = eventually(WAIT, || async { read_log().contains("vote-api listening") }).await;
    assert!(up, "vote-api logs that it listens: {}", read_log());
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    // The stated bound: requests get SHUTDOWN_GRACE, the actors ACTOR_DRAIN.
    let bound = vote_api::http::SHUTDOWN_GRACE + vote_api::ACTOR_DRAIN + Duration::from_secs(1);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            panic!("no exit within {bound:?} of SIGTERM: {}", read_log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = read_log();
    let _ = std::fs::remove_file(&log);
    // A default SIGTERM (no handler yet) would kill it: no success, no drain.
    assert!(status.success(), "clean exit: {status}: {text}");
    assert!(
        text.contains("shutting down") && text.contains("vote-api stopped"),
        "{text}"
    );
}
