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
        "0005_app_schema",
        include_str!("../../db/migrations/0005_app_schema.sql"),
    ),
];

/// Pins the session to the schema holding the migration history, so that
/// `schema_migrations` is found, not created anew: `public` on an install
/// from before 0005 (which moves everything to `vote_api`), else `vote_api`
/// once it exists (0005 made it, or the chart's init script did for a role
/// that may not create in `public`), else the default path (a fresh database).
const PIN_SEARCH_PATH: &str = "SELECT set_config('search_path', coalesce(
    (SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = 'schema_migrations' AND c.relkind = 'r'
        AND n.nspname IN ('vote_api', 'public')
      ORDER BY n.nspname = 'vote_api' DESC LIMIT 1),
    (SELECT nspname::text FROM pg_namespace WHERE nspname = 'vote_api'),
    current_setting('search_path')), false)";

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
    client.batch_execute(PIN_SEARCH_PATH).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    TEXT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
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
