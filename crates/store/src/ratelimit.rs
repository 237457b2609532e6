//! Shared rate-limit counters for multi-instance deployments: one row per
//! key and fixed window; the server combines the current and previous window
//! into a sliding estimate.

use crate::db::{Db, Result};
use crate::on_write;

/// Count one hit for `key` in the window starting at `window_start` and
/// return (hits in this window, hits in the previous window).
pub async fn hit(db: &Db, key: &str, window_start: i64, window_len: i64) -> Result<(i64, i64)> {
    let upsert = "INSERT INTO rate_limit_counters (key, window_start, count) VALUES ($1, $2, 1) \
                  ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + 1 \
                  RETURNING count";
    let prev = "SELECT count FROM rate_limit_counters WHERE key = $1 AND window_start = $2";
    on_write!(db, c => {
        let (cur,): (i64,) = sqlx::query_as(upsert).bind(key).bind(window_start).fetch_one(c).await?;
        let p: Option<(i64,)> = sqlx::query_as(prev)
            .bind(key)
            .bind(window_start - window_len)
            .fetch_optional(c)
            .await?;
        Ok((cur, p.map(|x| x.0).unwrap_or(0)))
    })
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

/// Drop windows that can no longer matter.
pub async fn prune(db: &Db, older_than: i64) -> Result<u64> {
    let sql = "DELETE FROM rate_limit_counters WHERE window_start < $1";
    let done = on_write!(db, c => sqlx::query(sql).bind(older_than).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(done)
}
