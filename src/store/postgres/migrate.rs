//! Applying the embedded migrations at start, exactly once however many
//! replicas start together.
//!
//! The migrations run on one dedicated connection holding a session-level
//! advisory lock ([`MIGRATION_LOCK_KEY`]): a second replica waits on the lock,
//! then finds nothing pending. diesel's migration harness is synchronous, so
//! it runs on the blocking thread pool over an [`AsyncConnectionWrapper`]
//! (which drives the async connection from there), and the service's runtime
//! threads never block, whatever runtime flavour the caller uses.

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};

use crate::domain::port::{StoreError as Error, StoreResult as Result};

/// The PostgreSQL migrations, compiled into the binary and applied at start.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The `pg_advisory_lock` key that serialises migrations between replicas
/// (the bytes of `"inventor"`; any constant no other application uses).
pub const MIGRATION_LOCK_KEY: i64 = 0x696e_7665_6e74_6f72;

/// Connects to `url` (waiting at most `connect_timeout`), takes the migration
/// lock, applies what is pending and lets the lock go. Returns how many
/// migrations were applied.
pub(super) async fn run_pending_migrations(url: &str, connect_timeout: Duration) -> Result<usize> {
    let mut conn = tokio::time::timeout(connect_timeout, super::connect(url))
        .await
        .map_err(|_| {
            Error::NotConnected(format!(
                "no connection to PostgreSQL within {connect_timeout:?}"
            ))
        })??;
    // Waits for as long as another replica migrates: that is not a connection
    // problem, so no timeout.
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut conn)
        .await?;
    let (mut conn, applied) = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        let applied = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.len())
            .map_err(|e| Error::Internal(format!("applying migrations: {e}")));
        (harness.into_inner(), applied)
    })
    .await
    .map_err(|e| Error::Internal(format!("migration task failed: {e}")))?;
    // Closing the session would release the lock as well; unlocking says so.
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut conn)
        .await;
    let applied = applied?;
    unlocked?;
    Ok(applied)
}
