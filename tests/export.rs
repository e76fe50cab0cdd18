//! `GET /admin/export.csv` streams: 100,000 votes leave the real binary with
//! its memory flat (its own process, so the measure is its RSS alone).

mod common;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};

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

#[tokio::test]
async fn the_export_streams_every_vote_without_holding_them() {
    let stack = Stack::fresh().await;
    let served = Served::start(&stack, &[]).await;
    let pid = served.child.id();
    let get = |path: &str| {
        Request::builder()
            .method(Method::GET)
            .uri(served.url(path))
            .body(Full::default())
            .expect("request")
    };
    assert_eq!(served.get("/ready").await.status, StatusCode::OK);

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
    let before = rss_kb(pid);

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
                peak = peak.max(rss_kb(pid));
            }
        }
    }
    peak = peak.max(rss_kb(pid));
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
