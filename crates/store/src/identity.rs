//! Identity beyond the account row: the TOTP second factor and its recovery
//! codes, admin-issued set-password links, password changes, and what the
//! session list shows (user agent, client IP, last activity).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{Db, Result, Tx};
use crate::{on_read, on_tx};

// --- TOTP -------------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaRow {
    pub user_id: Uuid,
    pub secret_enc: String,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub last_step: Option<i64>,
}

pub async fn mfa_of(db: &Db, user_id: Uuid) -> Result<Option<MfaRow>> {
    let sql = "SELECT user_id, secret_enc, created_at, confirmed_at, last_step \
               FROM user_mfa WHERE user_id = $1";
    Ok(on_read!(db, c => sqlx::query_as(sql).bind(user_id).fetch_optional(c).await)?)
}

/// The same row read inside a transaction (the code check and the step
/// update must see one state).
pub async fn mfa_for_update(tx: &mut Tx, user_id: Uuid) -> Result<Option<MfaRow>> {
    let sql = "SELECT user_id, secret_enc, created_at, confirmed_at, last_step \
               FROM user_mfa WHERE user_id = $1";
    Ok(on_tx!(tx, c => sqlx::query_as(sql).bind(user_id).fetch_optional(&mut *c).await)?)
}

/// Start (or restart) an unconfirmed enrolment with a new secret.
pub async fn mfa_begin(tx: &mut Tx, user_id: Uuid, secret_enc: &str) -> Result<()> {
    let del = "DELETE FROM user_mfa WHERE user_id = $1";
    on_tx!(tx, c => sqlx::query(del).bind(user_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    let sql = "INSERT INTO user_mfa (user_id, secret_enc, created_at) VALUES ($1, $2, $3)";
    on_tx!(tx, c => sqlx::query(sql)
        .bind(user_id)
        .bind(secret_enc)
        .bind(crate::now())
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Record an accepted code's time step (and confirm the enrolment when it
/// was not yet). False when a code of this step or a later one was already
/// accepted: a replay, refused.
pub async fn mfa_accept_step(tx: &mut Tx, user_id: Uuid, step: i64) -> Result<bool> {
    let sql = "UPDATE user_mfa SET last_step = $1, confirmed_at = COALESCE(confirmed_at, $2) \
               WHERE user_id = $3 AND (last_step IS NULL OR last_step < $1)";
    let n = on_tx!(tx, c => sqlx::query(sql)
        .bind(step)
        .bind(crate::now())
        .bind(user_id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Remove the second factor and every recovery code (admin reset).
pub async fn mfa_remove(tx: &mut Tx, user_id: Uuid) -> Result<bool> {
    let codes = "DELETE FROM mfa_recovery_codes WHERE user_id = $1";
    on_tx!(tx, c => sqlx::query(codes).bind(user_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    let sql = "DELETE FROM user_mfa WHERE user_id = $1";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(user_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Replace the recovery codes of a user with new ones (hashes only).
pub async fn replace_recovery_codes(tx: &mut Tx, user_id: Uuid, hashes: &[String]) -> Result<()> {
    let del = "DELETE FROM mfa_recovery_codes WHERE user_id = $1";
    on_tx!(tx, c => sqlx::query(del).bind(user_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    let sql = "INSERT INTO mfa_recovery_codes (id, user_id, code_hash, created_at) \
               VALUES ($1, $2, $3, $4)";
    for h in hashes {
        on_tx!(tx, c => sqlx::query(sql)
            .bind(Uuid::now_v7())
            .bind(user_id)
            .bind(h)
            .bind(crate::now())
            .execute(&mut *c)
            .await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Use a recovery code once: false when unknown, another user's, or used.
pub async fn use_recovery_code(tx: &mut Tx, user_id: Uuid, hash: &str) -> Result<bool> {
    let sql = "UPDATE mfa_recovery_codes SET used_at = $1 \
               WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL";
    let n = on_tx!(tx, c => sqlx::query(sql)
        .bind(crate::now())
        .bind(user_id)
        .bind(hash)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn unused_recovery_codes(db: &Db, user_id: Uuid) -> Result<i64> {
    let sql = "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL";
    let n: (i64,) = on_read!(db, c => sqlx::query_as(sql).bind(user_id).fetch_one(c).await)?;
    Ok(n.0)
}

// --- Passwords --------------------------------------------------------------

/// Store a new password hash (the account's version moves on).
pub async fn set_password(tx: &mut Tx, user_id: Uuid, hash: &str) -> Result<bool> {
    let sql = "UPDATE users SET password_hash = $1, version = version + 1, updated_at = $2 \
               WHERE id = $3";
    let n = on_tx!(tx, c => sqlx::query(sql)
        .bind(hash)
        .bind(crate::now())
        .bind(user_id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// A set-password link issued by an administrator; earlier unused links of
/// the same user stop working.
pub async fn issue_password_reset(
    tx: &mut Tx,
    user_id: Uuid,
    token_hash: &str,
    created_by: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<Uuid> {
    let now = crate::now();
    let old = "UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL";
    on_tx!(tx, c => sqlx::query(old).bind(now).bind(user_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    let id = Uuid::now_v7();
    let sql = "INSERT INTO password_resets (id, user_id, token_hash, created_by, created_at, expires_at) \
               VALUES ($1, $2, $3, $4, $5, $6)";
    on_tx!(tx, c => sqlx::query(sql)
        .bind(id)
        .bind(user_id)
        .bind(token_hash)
        .bind(created_by)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(id)
}

/// Consume a set-password link: the user it was for, when it is unused and
/// unexpired (and it is then used).
pub async fn consume_password_reset(tx: &mut Tx, token_hash: &str) -> Result<Option<Uuid>> {
    let now = crate::now();
    let sql = "SELECT id, user_id FROM password_resets \
               WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2";
    let row: Option<(Uuid, Uuid)> = on_tx!(tx, c => sqlx::query_as(sql)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *c)
        .await)?;
    let Some((id, user)) = row else {
        return Ok(None);
    };
    let upd = "UPDATE password_resets SET used_at = $1 WHERE id = $2 AND used_at IS NULL";
    let n = on_tx!(tx, c => sqlx::query(upd).bind(now).bind(id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok((n == 1).then_some(user))
}

// --- Sessions ---------------------------------------------------------------

/// Record where a new session was opened from.
pub async fn set_session_client(
    tx: &mut Tx,
    session_id: Uuid,
    user_agent: Option<&str>,
    client_ip: Option<&str>,
) -> Result<()> {
    let sql = "UPDATE sessions SET user_agent = $1, client_ip = $2, \
               last_seen_at = COALESCE(last_seen_at, created_at) WHERE id = $3";
    on_tx!(tx, c => sqlx::query(sql)
        .bind(user_agent)
        .bind(client_ip)
        .bind(session_id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The session's last request or refresh (`crate::sessions::touch`).
    pub last_seen_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

/// A user's unrevoked, unexpired sessions, newest first.
pub async fn live_sessions(db: &Db, user_id: Uuid) -> Result<Vec<SessionRow>> {
    let sql = "SELECT id, user_agent, client_ip, created_at, last_seen_at, expires_at \
               FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
               ORDER BY created_at DESC, id DESC";
    Ok(on_read!(db, c => sqlx::query_as(sql)
        .bind(user_id)
        .bind(crate::now())
        .fetch_all(c)
        .await)?)
}

/// Revoke one session of `user_id`; false when it is not theirs or ended.
pub async fn revoke_own(
    tx: &mut Tx,
    user_id: Uuid,
    session_id: Uuid,
    reason: &str,
) -> Result<bool> {
    let sql = "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
               WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL";
    let n = on_tx!(tx, c => sqlx::query(sql)
        .bind(crate::now())
        .bind(reason)
        .bind(session_id)
        .bind(user_id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Revoke every session of a user but one (a password change).
pub async fn revoke_others(tx: &mut Tx, user_id: Uuid, keep: Uuid, reason: &str) -> Result<u64> {
    let sql = "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
               WHERE user_id = $3 AND id <> $4 AND revoked_at IS NULL";
    let n = on_tx!(tx, c => sqlx::query(sql)
        .bind(crate::now())
        .bind(reason)
        .bind(user_id)
        .bind(keep)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(n)
}
