//! Encryption at rest of the SQLite database with SQLCipher
//! (docs/ops/ENCRYPTION_AT_REST.md).
//!
//! The bundled SQLite *is* SQLCipher (the store crate enables
//! `libsqlite3-sys/bundled-sqlcipher-vendored-openssl`): with no key it
//! reads and writes ordinary SQLite files; with a key every page is
//! AES-256 encrypted and authenticated (SQLCipher 4 defaults: HMAC-SHA512,
//! PBKDF2-HMAC-SHA512 with 256 000 iterations for a passphrase).
//!
//! The key is one per process, set once by whoever resolved the
//! configuration ([`use_key`]): every SQLite file this process opens — the
//! live database, a backup image, a restore scratch copy — belongs to the
//! one deployment and carries its key. A process-wide setting keeps the
//! many places that open SQLite files (connect, backup, verify, restore)
//! from each having to pass it along. `PRAGMA key` is sent as the first
//! statement on every new connection: sqlx orders its pragma list with
//! `key` first, before `journal_mode` or anything else touches the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use crate::db::{Result, StoreError};

/// Shortest passphrase accepted (a raw key is 64 hex digits).
pub const MIN_PASSPHRASE_CHARS: usize = 16;

/// A SQLCipher key: a passphrase, or a raw 256-bit key given as 64 hex
/// digits (no key derivation, so connections open faster). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SqliteKey(String);

impl std::fmt::Debug for SqliteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteKey(…)")
    }
}

impl SqliteKey {
    /// Check a key as given (surrounding whitespace and a trailing newline
    /// of a key file are not part of it).
    pub fn parse(given: &str) -> Result<SqliteKey, String> {
        let k = given.trim();
        if k.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(format!(
                "must be at least {MIN_PASSPHRASE_CHARS} characters (or 64 hex digits); generate one with `amal secrets generate`"
            ));
        }
        if k.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(SqliteKey(k.to_string()))
    }

    fn is_raw(&self) -> bool {
        self.0.len() == 64 && self.0.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// The key string SQLCipher reads: the passphrase, or `x'<hex>'` for a
    /// raw key.
    fn key_string(&self) -> String {
        if self.is_raw() {
            format!("x'{}'", self.0)
        } else {
            self.0.clone()
        }
    }

    /// The key string as a SQL literal, for `PRAGMA key = …` (sqlx writes
    /// the value into the statement as is).
    fn sql_literal(&self) -> String {
        format!("'{}'", self.key_string().replace('\'', "''"))
    }
}

static KEY: RwLock<Option<SqliteKey>> = RwLock::new(None);

/// Set (or clear) the key of the SQLite files this process opens.
pub fn use_key(key: Option<SqliteKey>) {
    let mut k = KEY.write().unwrap_or_else(|p| p.into_inner());
    *k = key;
}

/// Whether a key is set for this process.
pub fn has_key() -> bool {
    KEY.read().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// `opts` with this process's key, when one is set.
pub fn keyed(opts: SqliteConnectOptions) -> SqliteConnectOptions {
    match &*KEY.read().unwrap_or_else(|p| p.into_inner()) {
        Some(k) => opts.pragma("key", k.sql_literal()),
        None => opts,
    }
}

/// `opts` with `key` (for a file whose key is not the process's: the new
/// file of `amal db encrypt`).
pub fn with_key(opts: SqliteConnectOptions, key: &SqliteKey) -> SqliteConnectOptions {
    opts.pragma("key", key.sql_literal())
}

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

/// Whether `e` is SQLite's "file is not a database" (SQLITE_NOTADB): what
/// SQLCipher answers for a wrong key, a missing key on an encrypted file,
/// or a key on a plaintext one.
pub fn is_not_a_database(e: &sqlx::Error) -> bool {
    match e {
        // SQLite's only: a PostgreSQL SQLSTATE is numeric-looking too.
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<sqlx::sqlite::SqliteError>()
            .and_then(|s| s.code())
            .and_then(|c| c.parse::<i32>().ok())
            // Extended result codes carry the primary code in the low byte.
            .is_some_and(|c| c & 0xff == 26),
        _ => false,
    }
}

/// What to tell the operator when a SQLite file cannot be read.
pub fn unreadable_message() -> String {
    if has_key() {
        "the file cannot be decrypted with the key given (AMAL_DB_KEY / AMAL_DB_KEY_FILE): \
         the key is wrong, the file is not encrypted yet (run `amal db encrypt` with the \
         server stopped), or it is not a SQLite database"
            .into()
    } else {
        "the file is not a readable SQLite database: it is encrypted (set AMAL_DB_KEY or \
         AMAL_DB_KEY_FILE to its key) or it is not a database"
            .into()
    }
}

/// SQLCipher's version (`PRAGMA cipher_version`), `None` on a plain SQLite
/// build: proves which library is linked.
pub async fn cipher_version(pool: &sqlx::SqlitePool) -> Option<String> {
    sqlx::query_scalar::<_, String>("PRAGMA cipher_version")
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_linked_sqlite_is_sqlcipher() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let v = cipher_version(&pool).await;
        assert!(
            v.is_some_and(|v| v.starts_with('4')),
            "SQLCipher 4 is linked"
        );
    }

    #[test]
    fn keys_are_checked_and_quoted() {
        assert!(SqliteKey::parse("short").is_err());
        assert!(SqliteKey::parse("sixteen chars ok\n").is_ok());
        assert!(SqliteKey::parse("sixteen\u{7}chars ok").is_err());
        let k = SqliteKey::parse("it's a long passphrase").unwrap();
        assert_eq!(k.sql_literal(), "'it''s a long passphrase'");
        let raw = "ab".repeat(32);
        let r = SqliteKey::parse(&raw).unwrap();
        assert_eq!(r.sql_literal(), format!("'x''{raw}'''"));
        assert_eq!(format!("{k:?}"), "SqliteKey(…)");
    }
}
