//! Exports that cannot finish end so the client sees it (docs/contract.md,
//! the speaker's console): curl, the speaker's tool, must report an
//! incomplete transfer, never a clean end. A paused download never holds
//! up a reset, and one that reads nothing for 30 s is cut.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use common::*;
use vote_api::db::export::EXPORT_APPLICATION;
use vote_api::http::handlers::export::EXPORT_IDLE_READER;

/// curl's exit code for "transfer closed with outstanding read data remaining".
const CURL_PARTIAL_FILE: i32 = 18;

/// Enough votes that the CSV (~30 bytes a line) outgrows every socket and
/// channel buffer between PostgreSQL and a client that stopped reading.
const VOTES: i64 = 1_500_000;

async fn app_with_many_votes() -> TestApp {
    let app = TestApp::start().await;
    pg_connect(&app.stack.database_url)
        .await
        .execute(
            "INSERT INTO votes (choice) SELECT 'ai' FROM generate_series(1, $1::bigint)",
            &[&VOTES],
        )
        .await
        .expect("insert votes");
    app
}

/// curl downloading the export, frozen (SIGSTOP) once the export runs: a
/// reader that reads nothing more.
async fn paused_download(app: &TestApp) -> Child {
    let child = Command::new("curl")
        // A slow reader from the start: had curl read most of the file before
        // it stops, the rest could fit in the socket buffers, PostgreSQL
        // would finish the COPY, and no cut could make the transfer incomplete.
        .args(["-sS", "--limit-rate", "1M", "-o", "/dev/null"])
        .arg(app.url("/admin/export.csv"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl on PATH");
    assert!(
        eventually(WAIT, || async { running_exports(app).await > 0 }).await,
        "the export never started"
    );
    signal(child.id(), "STOP");
    child
}

/// The pids of this app's running exports (its database only: tests run in
/// parallel); with `ClientWrite`, only those whose COPY waits for its client.
async fn exports(app: &TestApp, wait_event: Option<&str>) -> Vec<i32> {
    pg_connect(&app.stack.database_url)
        .await
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
             AND datname = current_database() AND ($2::text IS NULL OR wait_event = $2)",
            &[&EXPORT_APPLICATION, &wait_event],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn blocked_exports(app: &TestApp) -> Vec<i32> {
    exports(app, Some("ClientWrite")).await
}

async fn running_exports(app: &TestApp) -> usize {
    exports(app, None).await.len()
}

/// An app with many votes and a curl whose export's COPY waits for it to read.
async fn blocked_download() -> (TestApp, Child) {
    let app = app_with_many_votes().await;
    let curl = paused_download(&app).await;
    assert!(
        eventually(WAIT, || async { !blocked_exports(&app).await.is_empty() }).await,
        "the export never filled the buffers"
    );
    (app, curl)
}

/// Lets curl read again: it must report an incomplete transfer.
fn assert_incomplete(mut curl: Child) {
    signal(curl.id(), "CONT");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = curl.try_wait().expect("curl") {
            break status;
        }
        assert!(Instant::now() < deadline, "curl never finished");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = curl.wait_with_output().expect("curl output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(CURL_PARTIAL_FILE), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_cut_by_postgresql_is_an_incomplete_transfer() {
    let (app, curl) = blocked_download().await;
    let admin = pg_connect(&app.stack.database_url).await;
    // Every export of this app, not only those waiting at this instant: a
    // COPY that is still filling the buffers leaves `ClientWrite` now and then.
    let running = exports(&app, None).await;
    assert!(!running.is_empty(), "the export is running");
    for pid in &running {
        admin
            .execute("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .expect("terminate");
    }
    assert_incomplete(curl);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_cuts_a_paused_export_and_proceeds() {
    let (app, curl) = blocked_download().await;
    let started = Instant::now();
    let reset = app
        .post("/admin/reset?confirm=yes", "application/json", "")
        .await;
    let took = started.elapsed();
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text());
    assert!(took < Duration::from_secs(5), "reset took {took:?}");
    assert_eq!(vote_rows(&app.stack.database_url).await, 0);
    assert_incomplete(curl);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_whose_client_reads_nothing_is_cut_after_30_s() {
    let (app, curl) = blocked_download().await;
    let paused = Instant::now();
    assert!(
        eventually(EXPORT_IDLE_READER + WAIT, || async {
            running_exports(&app).await == 0
        })
        .await,
        "the paused export kept its PostgreSQL session"
    );
    let after = paused.elapsed();
    assert!(
        after >= EXPORT_IDLE_READER - Duration::from_secs(2),
        "cut after {after:?}, before the reader was idle for {EXPORT_IDLE_READER:?}"
    );
    assert_incomplete(curl);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_export_ends_cleanly() {
    let app = TestApp::start().await;
    pg_connect(&app.stack.database_url)
        .await
        .execute(
            "INSERT INTO votes (choice) SELECT 'stare' FROM generate_series(1, 20000)",
            &[],
        )
        .await
        .expect("insert votes");
    let out = Command::new("curl")
        .args(["-sS", &app.url("/admin/export.csv")])
        .output()
        .expect("curl");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        out.stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        20_001
    );
    app.stop().await;
}
