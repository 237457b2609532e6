//! Shared rate-limit counters for multi-instance deployments: one row per
//! key and fixed window; the server combines the current and previous window
//! into a sliding estimate.
//!
//! On PostgreSQL the counters use their own small pool whose sessions run with
//! `synchronous_commit = off`: a counter increment need not wait for the WAL
//! flush (a crash may forget the last fraction of a second of counts, which
//! only ever errs towards letting a request through), and so the limiter does
//! not put an fsync on every request.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::db::{Db, Result};
use crate::on_write;

/// The database the counters live in: the main one, or on PostgreSQL a
/// dedicated pool without synchronous commit.
pub fn counters_db(db: &Db, url: &str) -> Db {
    match db {
        Db::Postgres(main) => PgConnectOptions::from_str(url)
            .map(|o| {
                let o = o.options([("synchronous_commit", "off")]);
                // Fail as fast as the main pool when PostgreSQL is down.
                let acquire = main.options().get_acquire_timeout();
                Db::Postgres(
                    PgPoolOptions::new()
                        .max_connections(8)
                        .acquire_timeout(acquire)
                        .connect_lazy_with(o),
                )
            })
            .unwrap_or_else(|_| db.clone()),
        Db::Sqlite(_) => db.clone(),
    }
}

/// Count one hit for `key` in the window starting at `window_start` and
/// return (hits in this window, hits in the previous window).
pub async fn hit(db: &Db, key: &str, window_start: i64, window_len: i64) -> Result<(i64, i64)> {
    let upsert = "INSERT INTO rate_limit_counters (key, window_start, count) VALUES ($1, $2, 1) \
                  ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + 1 \
                  RETURNING count";
    match db {
        // One round trip: count this hit and read the previous window.
        Db::Postgres(p) => {
            let sql = format!(
                "WITH cur AS ({upsert}) SELECT (SELECT count FROM cur), \
                 COALESCE((SELECT count FROM rate_limit_counters WHERE key = $1 AND window_start = $3), 0)"
            );
            Ok(sqlx::query_as(&sql)
                .bind(key)
                .bind(window_start)
                .bind(window_start - window_len)
                .fetch_one(p)
                .await?)
        }
        // SQLite allows no INSERT inside a WITH clause.
        Db::Sqlite(s) => {
            let (cur,): (i64,) = sqlx::query_as(upsert)
                .bind(key)
                .bind(window_start)
                .fetch_one(&s.write)
                .await?;
            let (prev, _) = peek(db, key, window_start - window_len, window_len).await?;
            Ok((cur, prev))
        }
    }
}

/// Read the counts without adding a hit.
pub async fn peek(db: &Db, key: &str, window_start: i64, window_len: i64) -> Result<(i64, i64)> {
    let sql = "SELECT window_start, count FROM rate_limit_counters \
               WHERE key = $1 AND (window_start = $2 OR window_start = $3)";
    let rows: Vec<(i64, i64)> = on_write!(db, c => sqlx::query_as(sql)
        .bind(key)
        .bind(window_start)
        .bind(window_start - window_len)
        .fetch_all(c)
        .await)?;
    let get = |w: i64| rows.iter().find(|r| r.0 == w).map(|r| r.1).unwrap_or(0);
    Ok((get(window_start), get(window_start - window_len)))
}

/// Set `key`'s value in the window starting at `window_start` (last write
/// wins: used for time stamps such as an account's last failed sign-in).
pub async fn set(db: &Db, key: &str, window_start: i64, value: i64) -> Result<()> {
    let sql = "INSERT INTO rate_limit_counters (key, window_start, count) VALUES ($1, $2, $3) \
               ON CONFLICT (key, window_start) DO UPDATE SET count = excluded.count";
    on_write!(db, c => sqlx::query(sql).bind(key).bind(window_start).bind(value).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The key prefix of long-lived entries (an account's known sign-in IPs),
/// kept until `keep_long_before` instead of `older_than`.
pub const LONG_LIVED: &str = "signin-known:";

/// Drop windows that can no longer matter: everything older than
/// `older_than`, and long-lived entries ([`LONG_LIVED`]) older than
/// `long_older_than`.
pub async fn prune(db: &Db, older_than: i64, long_older_than: i64) -> Result<u64> {
    let sql = "DELETE FROM rate_limit_counters WHERE window_start < $1 \
               AND (substr(key, 1, 13) <> $2 OR window_start < $3)";
    let done = on_write!(db, c => sqlx::query(sql).bind(older_than).bind(LONG_LIVED).bind(long_older_than)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(done)
}
