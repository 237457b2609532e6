//! The database layer of Dr Amal Clinical OS.
//!
//! One code path for both engines: [`Db`] is an enum over a SQLite pair of
//! pools (one writer, a read pool) and a PostgreSQL pool. Queries are written
//! once with `$1` placeholders, which both dialects accept, and the
//! [`on_read!`]/[`on_write!`]/[`on_tx!`] macros run the same body against
//! whichever pool is live. Only where the dialects really differ (locking,
//! search) are two arms written by hand.

pub mod audit;
pub mod backup;
pub mod care;
pub mod checkpoint;
pub mod cipher;
pub mod db;
pub mod decode;
pub mod encrypt;
pub mod export;
pub mod fastread;
pub mod fhir;
pub mod hl7;
pub mod identity;
pub mod key_file;
pub mod labs;
pub mod migrate;
pub mod notes;
pub mod patients;
pub mod pgurl;
pub mod prescriptions;
pub mod ratelimit;
pub mod sessions;
pub mod users;
pub mod vitals;
pub mod worklist;

pub use db::{Db, DbOptions, Engine, FaultKind, StoreError, Tx};

/// Current time truncated to microseconds: both engines store microsecond
/// precision, and the audit hash chain must hash exactly what is stored.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// The calling-thread read pool, when the database has one (SQLite on a
/// file): the few hot point reads go through it ([`fastread`]).
pub(crate) fn fast_read(db: &Db) -> Option<&fastread::FastRead> {
    match db {
        Db::Sqlite(s) => s.fast.as_ref(),
        Db::Postgres(_) => None,
    }
}

/// Runs `$body` with `$conn` bound to a connection pool suitable for reads.
#[macro_export]
macro_rules! on_read {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite(s) => {
                let $conn = &s.read;
                $body
            }
            $crate::Db::Postgres(p) => {
                let $conn = p;
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the pool that may write (on SQLite the
/// single writer connection).
#[macro_export]
macro_rules! on_write {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite(s) => {
                let $conn = &s.write;
                $body
            }
            $crate::Db::Postgres(p) => {
                let $conn = p;
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the open transaction's connection
/// (`&mut Connection`; reborrow it with `&mut *$conn` for each query).
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(t) => {
                let $conn: &mut sqlx::SqliteConnection = &mut *t;
                $body
            }
            $crate::Tx::Postgres(t) => {
                let $conn: &mut sqlx::PgConnection = &mut *t;
                $body
            }
        }
    };
}
