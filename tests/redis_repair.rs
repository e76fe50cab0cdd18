//! Rebuilding Redis from a PostgreSQL count while other replicas commit and
//! mirror batches (live.rs): real PostgreSQL transactions give the
//! transaction ids and snapshots, real Redis runs the scripts.

mod common;

use common::*;
use vote_api::live::{CountedAt, Live, LiveError};
use vote_api::poll::Counts;

/// A PostgreSQL transaction standing in for another replica's batch.
struct Batch {
    client: tokio_postgres::Client,
    xid: u64,
}

impl Batch {
    async fn begin(database_url: &str) -> Batch {
        let client = pg_connect(database_url).await;
        client.batch_execute("BEGIN").await.expect("BEGIN");
        let row = client
            .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
            .await
            .expect("xid");
        let xid = u64::try_from(row.get::<_, i64>(0)).expect("positive");
        Batch { client, xid }
    }

    async fn commit(self) -> u64 {
        self.client.batch_execute("COMMIT").await.expect("COMMIT");
        self.xid
    }
}

/// What a recount would see now.
async fn snapshot(database_url: &str) -> String {
    pg_connect(database_url)
        .await
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await
        .expect("snapshot")
        .get(0)
}

fn counted(counts: [u64; 5], snapshot: &str) -> CountedAt {
    CountedAt {
        counts: Counts(counts),
        snapshot: snapshot.to_string(),
    }
}

#[tokio::test]
async fn rebuilds_count_every_batch_once_whatever_lands_between_count_and_rebuild() {
    let stack = Stack::fresh().await;
    let db = &stack.database_url;
    let live = Live::connect(&stack.redis_url, "test".into()).expect("valid URL");

    // A batch still running when the count is read, mirrored before the
    // rebuild lands: the count lacks it, so the rebuild adds it.
    let running = Batch::begin(db).await;
    let count_1 = snapshot(db).await;
    let late = running.commit().await;
    live.apply(&Counts([1, 0, 0, 0, 0]), Some(late))
        .await
        .expect("mirror");
    let rebuilt = live
        .rebuild(&counted([10, 0, 0, 0, 0], &count_1), 0)
        .await
        .expect("rebuild");
    assert_eq!(
        rebuilt.counts,
        Counts([11, 0, 0, 0, 0]),
        "the late batch kept"
    );

    // A batch committed before the next count but mirrored after its rebuild:
    // the count holds it, so its mirror adds nothing.
    let early = Batch::begin(db).await.commit().await;
    let count_2 = snapshot(db).await;
    live.rebuild(&counted([0, 20, 0, 0, 0], &count_2), rebuilt.seq)
        .await
        .expect("rebuild");
    let mirrored = live
        .apply(&Counts([0, 2, 0, 0, 0]), Some(early))
        .await
        .expect("mirror");
    assert_eq!(
        mirrored.counts,
        Counts([0, 20, 0, 0, 0]),
        "counted by the rebuild, not again"
    );
    assert!(
        mirrored.seq > rebuilt.seq,
        "still a change every replica takes"
    );

    // A batch after that count is added as usual.
    let after = Batch::begin(db).await.commit().await;
    let mirrored = live
        .apply(&Counts([0, 0, 3, 0, 0]), Some(after))
        .await
        .expect("mirror");
    assert_eq!(mirrored.counts, Counts([0, 20, 3, 0, 0]));

    // A rebuild from a count older than the stored one could drop batches
    // only that one saw: refused.
    assert!(matches!(
        live.rebuild(&counted([0, 0, 0, 0, 0], &count_1), mirrored.seq)
            .await,
        Err(LiveError::Stale)
    ));

    // A batch whose transaction id is unknown is never taken as counted.
    let unknown = live
        .apply(&Counts([0, 0, 0, 4, 0]), None)
        .await
        .expect("mirror");
    assert_eq!(unknown.counts, Counts([0, 20, 3, 4, 0]));
    let count_3 = snapshot(db).await;
    let rebuilt = live
        .rebuild(&counted([0, 20, 3, 0, 0], &count_3), unknown.seq)
        .await
        .expect("rebuild");
    assert_eq!(
        rebuilt.counts,
        Counts([0, 20, 3, 4, 0]),
        "the batch 'after' is in the count; the unknown one is added"
    );
}
