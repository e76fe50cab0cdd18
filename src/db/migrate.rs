//! Applies the SQL files of `db/migrations` once each, in order, recording
//! them in `schema_migrations`. An advisory lock makes concurrent replicas
//! starting together take turns instead of racing.

use deadpool_postgres::Pool;
use tracing::info;

use super::DbError;

/// (version, SQL) in the order they must run. Append, never edit.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../db/migrations/0001_init.sql"),
    ),
    (
        "0002_timeline",
        include_str!("../../db/migrations/0002_timeline.sql"),
    ),
    (
        "0003_idempotency",
        include_str!("../../db/migrations/0003_idempotency.sql"),
    ),
    (
        "0004_totals",
        include_str!("../../db/migrations/0004_totals.sql"),
    ),
    (
        "0005_app_schema",
        include_str!("../../db/migrations/0005_app_schema.sql"),
    ),
    (
        "0006_poll_keys",
        include_str!("../../db/migrations/0006_poll_keys.sql"),
    ),
    (
        "0007_devices",
        include_str!("../../db/migrations/0007_devices.sql"),
    ),
    (
        "0008_choice_form",
        include_str!("../../db/migrations/0008_choice_form.sql"),
    ),
];

/// The app's schema first (0005 moves every table there; the chart's init
/// script creates it beforehand for a role that may not create in
/// `public`), `public` for an install from before 0005. A schema that does
/// not exist yet is skipped, so a fresh database starts in `public`.
const SEARCH_PATH: &str = "SET search_path = vote_api, public";

/// Arbitrary constant naming our advisory lock.
const MIGRATION_LOCK_KEY: i64 = 0x766f_7465_2d61_7069; // "vote-api"

/// Applies every pending migration; returns how many ran.
pub async fn run(pool: &Pool) -> Result<usize, DbError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = apply_pending(&mut client).await;
    // Unlock even when a migration failed, so a fixed replica can retry at once.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn apply_pending(client: &mut deadpool_postgres::Object) -> Result<usize, DbError> {
    client.batch_execute(SEARCH_PATH).await?;
    // Looked up along the path, not only where a new table would go: an
    // existing history in public must be found, not started afresh.
    client
        .batch_execute(
            "DO $$ BEGIN
                 IF to_regclass('schema_migrations') IS NULL THEN
                     CREATE TABLE schema_migrations (
                         version    TEXT PRIMARY KEY,
                         applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                     );
                 END IF;
             END $$",
        )
        .await?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS {
        let done = client
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tx.commit().await?;
        info!(version, "applied migration");
        applied += 1;
    }
    Ok(applied)
}
