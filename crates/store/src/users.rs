//! Accounts and invitations.

use chrono::{DateTime, Utc};
use domain::account::UserStatus;
use domain::roles::Role;
use uuid::Uuid;

use crate::db::{is_unique_violation, Db, Result, StoreError, Tx};
use crate::{on_read, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    #[sqlx(try_from = "String")]
    pub status: UserStatus,
    pub password_hash: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub status: UserStatus,
    pub password_hash: &'a str,
}

const USER_COLUMNS: &str =
    "id, email, name, role, status, password_hash, version, created_at, updated_at";

/// Insert an account; a taken e-mail is a `Conflict`.
pub async fn insert(tx: &mut Tx, new: &NewUser<'_>) -> Result<UserRow> {
    let now = crate::now();
    let id = Uuid::now_v7();
    let sql = "INSERT INTO users (id, email, name, role, status, password_hash, version, created_at, updated_at) \
               VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)";
    let res = on_tx!(tx, c => sqlx::query(sql)
        .bind(id)
        .bind(new.email)
        .bind(new.name)
        .bind(new.role.as_str())
        .bind(new.status.as_str())
        .bind(new.password_hash)
        .bind(now)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()));
    match res {
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict("email is already registered".into()))
        }
        r => r?,
    };
    crate::care::place_clinician(tx, id, new.role).await?;
    Ok(UserRow {
        id,
        email: new.email.to_string(),
        name: new.name.to_string(),
        role: new.role,
        status: new.status,
        password_hash: new.password_hash.to_string(),
        version: 1,
        created_at: now,
        updated_at: now,
    })
}

pub async fn by_email(db: &Db, email: &str) -> Result<Option<UserRow>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(email).fetch_optional(c).await)?)
}

pub async fn by_id(db: &Db, id: Uuid) -> Result<Option<UserRow>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

/// Users in creation order (ids are UUIDv7, so id order is time order),
/// keyset-paginated after `after`.
pub async fn list(db: &Db, after: Option<Uuid>, limit: i64) -> Result<Vec<UserRow>> {
    let sql =
        format!("SELECT {USER_COLUMNS} FROM users WHERE ($1 = 0 OR id > $2) ORDER BY id LIMIT $3");
    let has_cursor: i64 = after.is_some().into();
    Ok(on_read!(db, c => sqlx::query_as(&sql)
        .bind(has_cursor)
        .bind(after.unwrap_or_default())
        .bind(limit)
        .fetch_all(c)
        .await)?)
}

pub async fn count_active_admins(tx: &mut Tx) -> Result<i64> {
    let sql = "SELECT count(*) FROM users WHERE role = 'admin' AND status = 'active'";
    let n: (i64,) = on_tx!(tx, c => sqlx::query_as(sql).fetch_one(&mut *c).await)?;
    Ok(n.0)
}

/// Change role and status if the stored version is `expected_version`.
pub async fn update_role_status(
    tx: &mut Tx,
    id: Uuid,
    expected_version: i64,
    role: Role,
    status: UserStatus,
) -> Result<UserRow> {
    let sql = "UPDATE users SET role = $1, status = $2, version = version + 1, updated_at = $3 \
               WHERE id = $4 AND version = $5";
    let done = on_tx!(tx, c => sqlx::query(sql)
        .bind(role.as_str())
        .bind(status.as_str())
        .bind(crate::now())
        .bind(id)
        .bind(expected_version)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    if done == 0 {
        let exists: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as("SELECT version FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await)?;
        return Err(match exists {
            None => StoreError::NotFound,
            Some((v,)) => StoreError::Conflict(format!(
                "the user was changed by someone else (current version {v})"
            )),
        });
    }
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_one(&mut *c).await)?)
}

pub async fn set_password(tx: &mut Tx, id: Uuid, password_hash: &str) -> Result<()> {
    let sql =
        "UPDATE users SET password_hash = $1, version = version + 1, updated_at = $2 WHERE id = $3";
    on_tx!(tx, c => sqlx::query(sql)
        .bind(password_hash)
        .bind(crate::now())
        .bind(id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

// ---- invitations ----

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InviteRow {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub email: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    /// The admin who issued it.
    pub created_by: Uuid,
}

pub async fn insert_invite(
    tx: &mut Tx,
    code_hash: &str,
    role: Role,
    email: Option<&str>,
    created_by: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let sql =
        "INSERT INTO invites (id, code_hash, role, email, created_by, created_at, expires_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7)";
    on_tx!(tx, c => sqlx::query(sql)
        .bind(id)
        .bind(code_hash)
        .bind(role.as_str())
        .bind(email)
        .bind(created_by)
        .bind(crate::now())
        .bind(expires_at)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(id)
}

pub async fn invite_by_code_hash(tx: &mut Tx, code_hash: &str) -> Result<Option<InviteRow>> {
    let sql =
        "SELECT id, role, email, expires_at, used_at, created_by FROM invites WHERE code_hash = $1";
    Ok(on_tx!(tx, c => sqlx::query_as(sql).bind(code_hash).fetch_optional(&mut *c).await)?)
}

/// Mark an invitation used; false when someone else used it first.
pub async fn consume_invite(tx: &mut Tx, id: Uuid, user_id: Uuid) -> Result<bool> {
    let sql = "UPDATE invites SET used_at = $1, used_by = $2 WHERE id = $3 AND used_at IS NULL";
    let done = on_tx!(tx, c => sqlx::query(sql)
        .bind(crate::now())
        .bind(user_id)
        .bind(id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// How many accounts exist (any status): zero only before the first run's
/// setup.
pub async fn count_all(db: &Db) -> Result<i64> {
    let n: (i64,) =
        on_read!(db, c => sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(c).await)?;
    Ok(n.0)
}

/// [`count_all`] inside a transaction.
pub async fn count_all_tx(tx: &mut Tx) -> Result<i64> {
    let n: (i64,) = on_tx!(tx, c => sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(&mut *c)
        .await)?;
    Ok(n.0)
}

/// An invitation not yet used, as the admin's list shows it (never the code).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingInvite {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub email: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Unused, unexpired invitations, newest first (at most `limit`).
pub async fn pending_invites(db: &Db, limit: i64) -> Result<Vec<PendingInvite>> {
    let sql = "SELECT id, role, email, created_by, created_at, expires_at FROM invites \
               WHERE used_at IS NULL AND expires_at > $1 ORDER BY created_at DESC, id DESC LIMIT $2";
    Ok(on_read!(db, c => sqlx::query_as(sql)
        .bind(crate::now())
        .bind(limit)
        .fetch_all(c)
        .await)?)
}

/// Make an unused invitation expire now; false when it was used, had
/// expired already, or does not exist.
pub async fn revoke_invite(tx: &mut Tx, id: Uuid) -> Result<bool> {
    let now = crate::now();
    let sql =
        "UPDATE invites SET expires_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1";
    let done = on_tx!(tx, c => sqlx::query(sql)
        .bind(now)
        .bind(id)
        .execute(&mut *c)
        .await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}
