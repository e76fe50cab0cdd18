//! Group commit under load: every acknowledged vote is stored exactly once.

mod common;

use std::sync::Arc;

use common::*;
use hyper::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_concurrent_votes_are_all_counted_and_stored() {
    const VOTES: usize = 2000;
    // One connection per vote, all at once: the general budget is made to fit
    // them, so this test is about group commit alone. Connections beyond the
    // budget are tests/flood.rs's subject (evicted or refused with a 503).
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.max_connections = Some(VOTES + 64);
    let app = Arc::new(TestApp::start_on(&stack, config).await);
    let choices = ["print", "stare", "ai", "revert", "restart"];
    let mut tasks = Vec::with_capacity(VOTES);
    for i in 0..VOTES {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.vote(choices[i % 5], None).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), StatusCode::OK);
    }
    let votes = app.get("/votes").await.json();
    assert_eq!(total_of(&votes), VOTES as u64);
    for choice in choices {
        assert_eq!(votes[choice]["count"], (VOTES / 5) as u64, "{choice}");
    }
    assert_eq!(vote_rows(&app.stack.database_url).await, VOTES as i64);

    // Group commit really grouped: far fewer batches than votes.
    let batches = app.metric("vote_batch_size_count").await;
    assert!(
        batches < VOTES as f64,
        "{batches} batches for {VOTES} votes"
    );
    Arc::into_inner(app).expect("no other owner").stop().await;
}
