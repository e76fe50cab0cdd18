//! `GET /admin/export.csv` streams: 100,000 votes leave the real binary with
//! its memory flat (its own process, so the measure is its RSS alone).

mod common;

use std::process::{Command, Stdio};

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};

const BIN: &str = env!("CARGO_BIN_EXE_vote-api");
const VOTES: i64 = 100_000;
/// "A few MB": the CSV itself is about 5 MB.
const MAX_RSS_GROWTH_KB: u64 = 3 * 1024;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_export_streams_every_vote_without_holding_them() {
    let stack = Stack::fresh().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Child(
        Command::new(BIN)
            .env("DATABASE_URL", &stack.database_url)
            .env("REDIS_URL", &stack.redis_url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vote-api"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| {
        Request::builder()
            .method(Method::GET)
            .uri(format!("{base}{path}"))
            .body(Full::default())
            .expect("request")
    };
    let up = eventually(WAIT, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "vote-api listens");
    assert_eq!(send(get("/ready")).await.status, StatusCode::OK);

    let db = pg_connect(&stack.database_url).await;
    db.execute(
        "INSERT INTO votes (choice, referral_code, created_at)
         SELECT (ARRAY['print','stare','ai','revert','restart'])[1 + i % 5],
                CASE WHEN i % 3 = 0 THEN 'conf-partner-2026' END,
                now() - i * interval '1 ms'
         FROM generate_series(1, $1::bigint) AS i",
        &[&VOTES],
    )
    .await
    .expect("insert votes");
    // A first small export warms up what every export allocates once.
    assert_eq!(send(get("/admin/export.csv")).await.status, StatusCode::OK);
    let before = rss_kb(child.0.id());

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let resp = tokio::time::timeout(WAIT, client.request(get("/admin/export.csv")))
        .await
        .expect("answer in time")
        .expect("export");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let (mut lines, mut peak, mut chunks) = (0i64, before, 0u64);
    while let Some(frame) = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("next chunk in time")
    {
        if let Ok(data) = frame.expect("chunk").into_data() {
            lines += data.iter().filter(|b| **b == b'\n').count() as i64;
            chunks += 1;
            if chunks % 64 == 0 {
                peak = peak.max(rss_kb(child.0.id()));
            }
        }
    }
    peak = peak.max(rss_kb(child.0.id()));
    let rows: i64 = db
        .query_one("SELECT count(*) FROM votes", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(lines - 1, rows, "one line per vote after the header");
    assert_eq!(rows, VOTES);
    let growth = peak.saturating_sub(before);
    eprintln!("export of {rows} votes: RSS {before} kB before, peak {peak} kB (+{growth} kB)");
    assert!(
        growth <= MAX_RSS_GROWTH_KB,
        "RSS grew by {growth} kB while exporting"
    );
}
