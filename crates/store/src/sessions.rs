//! Sign-in sessions ("families") and their rotating refresh tokens.
//!
//! A session is created at sign-in; each refresh token belongs to one
//! session and can be used once. Presenting a used token again means it was
//! stolen or replayed, so the whole session is revoked.

use chrono::{DateTime, Utc};
use domain::account::UserStatus;
use domain::roles::Role;
use uuid::Uuid;

use crate::db::{Db, Result, Tx};
use crate::{on_read, on_tx, on_write};

/// What an access token's session resolves to on each request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveSession {
    pub user_id: Uuid,
    #[sqlx(try_from = "String")]
    pub role: Role,
    #[sqlx(try_from = "String")]
    pub status: UserStatus,
    /// The session's last request (its sign-in before the first one).
    pub seen_at: DateTime<Utc>,
}

/// Whether `session_id` is unrevoked, unexpired and was used after
/// `idle_cutoff`, with its user's current role and status. Every
/// authenticated request asks: on SQLite it runs on the calling thread
/// ([`crate::fastread`]).
pub async fn live(
    db: &Db,
    session_id: Uuid,
    idle_cutoff: DateTime<Utc>,
) -> Result<Option<LiveSession>> {
    const SQL: &str = "SELECT u.id AS user_id, u.role, u.status, \
                      COALESCE(s.last_seen_at, s.created_at) AS seen_at FROM sessions s \
               JOIN users u ON u.id = s.user_id \
               WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
                 AND COALESCE(s.last_seen_at, s.created_at) > $3";
    let now = crate::now();
    if let Some(fast) = crate::fast_read(db) {
        use crate::fastread::Arg;
        let args = [
            Arg::Uuid(session_id),
            Arg::Time(now),
            Arg::Time(idle_cutoff),
        ];
        return Ok(fast
            .query_row(SQL, &args, |r| {
                Ok(LiveSession {
                    user_id: r.uuid("user_id")?,
                    role: r.parsed("role")?,
                    status: r.parsed("status")?,
                    seen_at: r.time("seen_at")?,
                })
            })
            .await?);
    }
    Ok(on_read!(db, c => sqlx::query_as(SQL)
        .bind(session_id)
        .bind(now)
        .bind(idle_cutoff)
        .fetch_optional(c)
        .await)?)
}

/// Record a request of the session (the inactivity clock restarts).
pub async fn touch(db: &Db, session_id: Uuid, at: DateTime<Utc>) -> Result<()> {
    let sql = "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND revoked_at IS NULL";
    on_write!(db, c => sqlx::query(sql)
        .bind(at)
        .bind(session_id)
        .execute(c)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// [`touch`] inside a transaction (a refresh).
pub async fn touch_tx(tx: &mut Tx, session_id: Uuid, at: DateTime<Utc>) -> Result<()> {
    let sql = "UPDATE sessions SET last_seen_at = $1 WHERE id = $2";
    on_tx!(tx, c => sqlx::query(sql)
        .bind(at)
        .bind(session_id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn create(tx: &mut Tx, user_id: Uuid, expires_at: DateTime<Utc>) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let sql = "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
    on_tx!(tx, c => sqlx::query(sql)
        .bind(id)
        .bind(user_id)
        .bind(crate::now())
        .bind(expires_at)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(id)
}

pub async fn add_refresh_token(
    tx: &mut Tx,
    session_id: Uuid,
    token_hash: &str,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    let sql = "INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) \
               VALUES ($1, $2, $3, $4, $5)";
    on_tx!(tx, c => sqlx::query(sql)
        .bind(Uuid::now_v7())
        .bind(session_id)
        .bind(token_hash)
        .bind(crate::now())
        .bind(expires_at)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// A refresh token with its session and user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshLookup {
    pub token_id: Uuid,
    pub session_id: Uuid,
    pub used_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub session_revoked_at: Option<DateTime<Utc>>,
    pub session_expires_at: DateTime<Utc>,
    /// The session's last request (its sign-in before the first one).
    pub session_seen_at: DateTime<Utc>,
    pub user_id: Uuid,
    #[sqlx(try_from = "String")]
    pub role: Role,
    #[sqlx(try_from = "String")]
    pub status: UserStatus,
}

pub async fn find_refresh(tx: &mut Tx, token_hash: &str) -> Result<Option<RefreshLookup>> {
    let sql = "SELECT t.id AS token_id, t.session_id, t.used_at, t.expires_at, \
                      s.revoked_at AS session_revoked_at, s.expires_at AS session_expires_at, \
                      COALESCE(s.last_seen_at, s.created_at) AS session_seen_at, \
                      u.id AS user_id, u.role, u.status \
               FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
               JOIN users u ON u.id = s.user_id WHERE t.token_hash = $1";
    Ok(on_tx!(tx, c => sqlx::query_as(sql).bind(token_hash).fetch_optional(&mut *c).await)?)
}

/// Mark a refresh token used; false when it already was (a replay).
pub async fn mark_used(tx: &mut Tx, token_id: Uuid) -> Result<bool> {
    let sql = "UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL";
    let done = on_tx!(tx, c => sqlx::query(sql)
        .bind(crate::now())
        .bind(token_id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

pub async fn revoke(tx: &mut Tx, session_id: Uuid, reason: &str) -> Result<()> {
    let sql = "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
               WHERE id = $3 AND revoked_at IS NULL";
    on_tx!(tx, c => sqlx::query(sql)
        .bind(crate::now())
        .bind(reason)
        .bind(session_id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Revoke every session of a user (role change, deactivation).
pub async fn revoke_all_for_user(tx: &mut Tx, user_id: Uuid, reason: &str) -> Result<u64> {
    let sql = "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
               WHERE user_id = $3 AND revoked_at IS NULL";
    let done = on_tx!(tx, c => sqlx::query(sql)
        .bind(crate::now())
        .bind(reason)
        .bind(user_id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(done)
}

/// When each of `users` last signed in (their newest session).
pub async fn last_sign_ins(db: &Db, users: &[Uuid]) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    // One statement for both engines: the ids go in as a list of binds.
    let marks: Vec<String> = (1..=users.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT user_id, MAX(created_at) FROM sessions WHERE user_id IN ({}) GROUP BY user_id",
        marks.join(", ")
    );
    Ok(on_read!(db, c => {
        let mut q = sqlx::query_as(&sql);
        for u in users {
            q = q.bind(*u);
        }
        q.fetch_all(c).await
    })?)
}
