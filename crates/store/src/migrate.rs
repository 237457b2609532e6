//! Schema migrations: the same versions for both engines, every one
//! reversible (`NNNN_name.up.sql` / `.down.sql`).

use sqlx::migrate::Migrator;

use crate::db::{Db, Result, StoreError};

static SQLITE: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../../migrations/postgres");

fn migrator(db: &Db) -> &'static Migrator {
    match db {
        Db::Sqlite(_) => &SQLITE,
        Db::Postgres(_) => &POSTGRES,
    }
}

/// One known migration and whether the database has it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// The newest schema version this binary knows.
pub fn latest_known(db: &Db) -> i64 {
    migrator(db).iter().map(|m| m.version).max().unwrap_or(0)
}

/// The versions this binary knows (for the folder-parity test).
pub fn known_versions(db: &Db) -> Vec<i64> {
    let mut v: Vec<i64> = migrator(db)
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    v.dedup();
    v
}

/// Versions applied to the database, ascending (empty on a new database).
pub async fn applied_versions(db: &Db) -> Result<Vec<i64>> {
    let sql = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
    let exists = table_exists(db, "_sqlx_migrations").await?;
    if !exists {
        return Ok(vec![]);
    }
    let rows: Vec<(i64,)> = crate::on_read!(db, c => sqlx::query_as(sql).fetch_all(c).await)?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

async fn table_exists(db: &Db, name: &str) -> Result<bool> {
    let n: (i64,) = match db {
        Db::Sqlite(s) => {
            sqlx::query_as("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1")
                .bind(name)
                .fetch_one(&s.write)
                .await?
        }
        Db::Postgres(p) => {
            sqlx::query_as(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind(name)
            .fetch_one(p)
            .await?
        }
    };
    Ok(n.0 > 0)
}

/// The schema version of the database (0 when nothing is applied).
pub async fn current_version(db: &Db) -> Result<i64> {
    Ok(applied_versions(db).await?.last().copied().unwrap_or(0))
}

/// Every known migration with its applied state.
pub async fn status(db: &Db) -> Result<Vec<MigrationState>> {
    let applied = applied_versions(db).await?;
    Ok(migrator(db)
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationState {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains(&m.version),
        })
        .collect())
}

/// Refuse to touch a database whose schema is newer than this binary knows.
pub async fn guard_not_newer(db: &Db) -> Result<()> {
    let current = current_version(db).await?;
    let known = latest_known(db);
    if current > known {
        return Err(StoreError::Conflict(format!(
            "the database schema is at version {current}, newer than this release knows \
             (version {known}). Run the newer release, or roll the schema back with \
             `amal migrate down --to {known}` using the newer release's binary."
        )));
    }
    Ok(())
}

/// Apply every pending migration.
pub async fn up(db: &Db) -> Result<()> {
    guard_not_newer(db).await?;
    crate::on_write!(db, c => migrator(db).run(c).await)?;
    Ok(())
}

/// Revert migrations newer than `target` (0 reverts everything).
pub async fn down(db: &Db, target: i64) -> Result<()> {
    guard_not_newer(db).await?;
    crate::on_write!(db, c => migrator(db).undo(c, target).await)?;
    Ok(())
}

/// The newest schema version this binary knows (both engines share versions).
pub fn latest_known_static() -> i64 {
    SQLITE.iter().map(|m| m.version).max().unwrap_or(0)
}
