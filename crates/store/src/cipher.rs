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

use std::sync::RwLock;

use sqlx::error::DatabaseError;
use sqlx::sqlite::SqliteConnectOptions;

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
    pub(crate) fn key_string(&self) -> String {
        if self.is_raw() {
            format!("x'{}'", self.0)
        } else {
            self.0.clone()
        }
    }

    /// `PRAGMA key = …;` with this key, the statement sqlx sends first.
    pub(crate) fn pragma(&self) -> String {
        format!("PRAGMA key = {};", self.sql_literal())
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

/// The statement that keys a new connection with this process's key, as
/// sqlx sends it for [`keyed`] options (for connections opened without
/// sqlx: [`crate::fastread`]). `None` without a key.
pub(crate) fn key_pragma() -> Option<String> {
    KEY.read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(SqliteKey::pragma)
}

/// `opts` with `key` (for a file whose key is not the process's: the new
/// file of `amal db encrypt`).
pub fn with_key(opts: SqliteConnectOptions, key: &SqliteKey) -> SqliteConnectOptions {
    opts.pragma("key", key.sql_literal())
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
            .is_some_and(is_not_a_database_code),
        _ => false,
    }
}

/// Whether a SQLite result code is SQLITE_NOTADB (sqlx's errors and
/// [`crate::fastread`]'s).
pub(crate) fn is_not_a_database_code(code: i32) -> bool {
    // Extended result codes carry the primary code in the low byte.
    code & 0xff == 26
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
