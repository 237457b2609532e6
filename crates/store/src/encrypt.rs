//! `amal db encrypt`: an encrypted copy of a plaintext SQLite database,
//! checked table by table before it is used (the key handling is
//! [`crate::cipher`]'s).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use crate::cipher::{with_key, SqliteKey};
use crate::db::{Result, StoreError};

/// What [`encrypt_file`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    pub tables: usize,
    pub rows: i64,
}

fn plain_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_millis(500))
}

/// Row counts of every table of `conn`'s main database, by name.
async fn table_rows(conn: &mut SqliteConnection) -> Result<BTreeMap<String, i64>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut counts = BTreeMap::new();
    for n in names {
        let sql = format!("SELECT count(*) FROM \"{}\"", n.replace('"', "\"\""));
        let c: i64 = sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?;
        counts.insert(n, c);
    }
    Ok(counts)
}

/// Write an encrypted copy of the plaintext SQLite database `plain` to
/// `out` (which must not exist) with `sqlcipher_export`, and check that the
/// copy opens with `key` and holds the same tables and row counts. Refuses
/// when `plain` is in use (switching it out of WAL mode needs the only
/// connection) or is not a plaintext database (already encrypted?).
pub async fn encrypt_file(plain: &Path, out: &Path, key: &SqliteKey) -> Result<Encrypted> {
    let mut src = plain_options(plain)
        .connect()
        .await
        .map_err(|e| refused(e, "cannot open it"))?;
    let before = match table_rows(&mut src).await {
        Ok(c) => c,
        Err(StoreError::Unreadable(_)) => {
            return Err(StoreError::Unreadable(
                "it is not a plaintext SQLite database (already encrypted?)".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    // Fold the WAL into the file and prove nothing else has it open.
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = DELETE")
        .fetch_one(&mut src)
        .await
        .map_err(|e| refused(e, "it is in use"))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::Conflict(
            "it is in use by another process; stop `amal serve` first".into(),
        ));
    }
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut src)
        .await?;
    // The connection may not create files: the copy starts as an empty
    // file (which SQLite takes as a new database), private from the start.
    create_private(out)?;
    sqlx::query("ATTACH DATABASE $1 AS encrypted KEY $2")
        .bind(out.to_string_lossy().into_owned())
        .bind(key.key_string())
        .execute(&mut src)
        .await?;
    sqlx::query("SELECT sqlcipher_export('encrypted')")
        .execute(&mut src)
        .await?;
    sqlx::query(&format!("PRAGMA encrypted.user_version = {version}"))
        .execute(&mut src)
        .await?;
    sqlx::query("DETACH DATABASE encrypted")
        .execute(&mut src)
        .await?;
    src.close().await?;

    let mut copy = with_key(plain_options(out), key).connect().await?;
    let after = table_rows(&mut copy).await?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut copy)
        .await?;
    copy.close().await?;
    if after != before || check != "ok" {
        return Err(StoreError::Conflict(format!(
            "the encrypted copy does not match the original (check: {check}); the original is unchanged"
        )));
    }
    Ok(Encrypted {
        tables: after.len(),
        rows: after.values().sum(),
    })
}

fn create_private(path: &Path) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map(drop).map_err(|e| {
        StoreError::Conflict(format!(
            "cannot create {}: {}",
            path.display(),
            crate::db::io_cause(&e)
        ))
    })
}

fn refused(e: sqlx::Error, what: &str) -> StoreError {
    match e {
        sqlx::Error::Database(_) => StoreError::Conflict(format!(
            "{what}; stop `amal serve` (and any other `amal` command using it) first"
        )),
        e => e.into(),
    }
}
