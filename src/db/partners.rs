//! `referral_partners`: lookups for the ReferralValidator and the seed.

use deadpool_postgres::Pool;

use super::DbError;

/// How many generated partners `vote-api seed` inserts by default.
pub const DEFAULT_SEED_PARTNERS: u32 = 500_000;

/// True when `code` belongs to a referral partner.
pub async fn exists(pool: &Pool, code: &str) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT 1 FROM referral_partners WHERE code = $1")
        .await?;
    Ok(client.query_opt(&stmt, &[&code]).await?.is_some())
}

/// Inserts `partners` generated partners plus the conference partner; idempotent.
/// Returns how many rows were new.
pub async fn seed(pool: &Pool, partners: u32) -> Result<u64, DbError> {
    let client = pool.get().await?;
    let partners = i32::try_from(partners).unwrap_or(i32::MAX);
    let generated = client
        .execute(include_str!("../../db/seed_partners.sql"), &[&partners])
        .await?;
    let conference = client
        .execute(include_str!("../../db/seed_conference_partner.sql"), &[])
        .await?;
    Ok(generated + conference)
}
