//! Embedded migrations, run on a direct connection (never through PgBouncer:
//! DDL and the migration lock want one session).

use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Applies pending migrations; returns the versions applied.
pub async fn run_pending(direct_url: &str) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let conn = AsyncPgConnection::establish(direct_url).await?;
    // The harness blocks; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let applied = harness.run_pending_migrations(MIGRATIONS)?;
        Ok(applied.into_iter().map(|v| v.to_string()).collect())
    })
    .await?
}
