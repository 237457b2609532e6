//! One's own account (sessions, password) and the administrator's account
//! recovery tools (end a user's sessions, reset their second factor, issue
//! a set-password link). The CLI calls the administrator functions with no
//! signed-in actor (`amal user reset-mfa`, `amal user reset-password`).

use chrono::{DateTime, Duration, Utc};
use domain::account::Password;
use domain::audit::AuditAction;
use domain::roles::Action;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::credentials::tokens::keyed_hash;
use crate::error::{AppError, Result};
use crate::services::{audit_event, Body};
use crate::state::AppState;

/// How long an administrator's set-password link works.
pub const RESET_TTL_HOURS: i64 = 24;

/// One of the user's open sessions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: Uuid,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub started_at: DateTime<Utc>,
    /// Sign-in or the last token refresh (refreshes happen every 15 minutes
    /// of use), so this is accurate to about 15 minutes.
    pub last_active_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    /// The session this request was made with.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// The signed-in user's open sessions, newest first.
pub async fn list_sessions(st: &AppState, user: &AuthUser) -> Result<SessionList> {
    let rows = store::identity::live_sessions(&st.db, user.id).await?;
    Ok(SessionList {
        sessions: rows
            .into_iter()
            .map(|r| SessionView {
                current: r.id == user.session,
                id: r.id,
                user_agent: r.user_agent,
                ip: r.client_ip,
                started_at: r.created_at,
                last_active_at: r.last_seen_at,
                expires_at: r.expires_at,
            })
            .collect(),
    })
}

fn session_event(
    actor: Option<&AuthUser>,
    target: Uuid,
    detail: serde_json::Value,
) -> store::audit::AuditEvent {
    let mut ev = audit_event(actor, AuditAction::AuthSessionRevoke, "success");
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(target);
    ev.detail = Some(detail.to_string());
    ev
}

/// End one of one's own sessions (404 when it is not one's own or ended).
pub async fn revoke_session(st: &AppState, user: &AuthUser, id: Uuid) -> Result<()> {
    let mut tx = st.db.begin().await?;
    if !store::identity::revoke_own(&mut tx, user.id, id, "user_signout").await? {
        return Err(AppError::NotFound);
    }
    let ev = session_event(
        Some(user),
        user.id,
        serde_json::json!({ "session": id, "scope": "one" }),
    );
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.session.revoked");
    Ok(())
}

/// "Sign out everywhere": every session of the user, this one included.
pub async fn revoke_all_sessions(st: &AppState, user: &AuthUser) -> Result<u64> {
    let mut tx = st.db.begin().await?;
    let n = store::sessions::revoke_all_for_user(&mut tx, user.id, "user_signout_all").await?;
    let ev = session_event(
        Some(user),
        user.id,
        serde_json::json!({ "scope": "all", "ended": n }),
    );
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.session.revoked");
    Ok(n)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ended {
    /// How many sessions were ended.
    pub ended: u64,
}

/// An administrator (or the CLI, `actor` None) checks the target exists.
async fn admin_target(
    st: &AppState,
    actor: Option<&AuthUser>,
    target: Uuid,
) -> Result<store::users::UserRow> {
    if let Some(a) = actor {
        a.require(Action::ManageUsers)?;
    }
    store::users::by_id(&st.db, target)
        .await?
        .ok_or(AppError::NotFound)
}

fn via(actor: Option<&AuthUser>) -> &'static str {
    if actor.is_some() {
        "api"
    } else {
        "cli"
    }
}

/// An administrator ends every session of a user.
pub async fn admin_revoke_sessions(
    st: &AppState,
    actor: Option<&AuthUser>,
    target: Uuid,
) -> Result<Ended> {
    admin_target(st, actor, target).await?;
    let mut tx = st.db.begin().await?;
    let n = store::sessions::revoke_all_for_user(&mut tx, target, "admin_signout").await?;
    let ev = session_event(
        actor,
        target,
        serde_json::json!({ "scope": "all", "ended": n, "by": "admin", "via": via(actor) }),
    );
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.session.revoked");
    tracing::info!(targetUserId = %target, ended = n, "admin ended a user's sessions");
    Ok(Ended { ended: n })
}

/// An administrator removes a user's second factor (and recovery codes);
/// their sessions end. Under a policy that requires one, they enrol again
/// at their next sign-in.
pub async fn admin_reset_mfa(
    st: &AppState,
    actor: Option<&AuthUser>,
    target: Uuid,
) -> Result<Ended> {
    admin_target(st, actor, target).await?;
    let mut tx = st.db.begin().await?;
    let had = store::identity::mfa_remove(&mut tx, target).await?;
    let n = store::sessions::revoke_all_for_user(&mut tx, target, "mfa_reset").await?;
    let mut ev = audit_event(actor, AuditAction::AuthMfaReset, "success");
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(target);
    ev.detail = Some(
        serde_json::json!({ "hadFactor": had, "sessionsEnded": n, "via": via(actor) }).to_string(),
    );
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.mfa.reset");
    tracing::info!(targetUserId = %target, "second factor reset by an administrator");
    Ok(Ended { ended: n })
}

fn password_field(field: &'static str, raw: &str) -> Result<Password> {
    Password::parse(raw).map_err(|mut e| {
        e.field = field.into();
        AppError::Validation(vec![e])
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

/// Change one's password: the current one is required, the new one passes
/// the same rules as at sign-up (length, common and breached list), and
/// every other session ends.
pub async fn change_password(
    st: &AppState,
    user: &AuthUser,
    body: Body<ChangePasswordRequest>,
) -> Result<Ended> {
    let req = body?;
    let row = store::users::by_id(&st.db, user.id)
        .await?
        .ok_or(AppError::Unauthorized("The account no longer exists."))?;
    let ok = !req.current_password.is_empty()
        && req.current_password.chars().count() <= Password::MAX_CHARS
        && st
            .hasher
            .verify(&req.current_password, Some(&row.password_hash))
            .await?;
    if !ok {
        let mut ev = audit_event(Some(user), AuditAction::AuthPasswordChange, "failure");
        ev.resource_type = Some("user".into());
        ev.resource_id = Some(user.id);
        crate::services::record_durably(st, ev).await?;
        return Err(AppError::Validation(vec![
            domain::account::FieldError::new("currentPassword", "is not your current password"),
        ]));
    }
    let new = password_field("newPassword", &req.new_password)?;
    let hash = st.hasher.hash(new.expose()).await?;
    let mut tx = st.db.begin().await?;
    store::identity::set_password(&mut tx, user.id, &hash).await?;
    let n =
        store::identity::revoke_others(&mut tx, user.id, user.session, "password_changed").await?;
    let mut ev = audit_event(Some(user), AuditAction::AuthPasswordChange, "success");
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(user.id);
    ev.detail = Some(serde_json::json!({ "otherSessionsEnded": n }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.password.changed");
    Ok(Ended { ended: n })
}

/// A set-password link: shown once, stored only as a keyed hash.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordResetLink {
    pub token: String,
    /// The page to open: `/set-password?token=...` on this server.
    pub path: String,
    pub expires_at: DateTime<Utc>,
}

fn reset_hash(st: &AppState, token: &str) -> String {
    keyed_hash(
        secrecy::ExposeSecret::expose_secret(&st.config.jwt_refresh_secret).as_bytes(),
        &format!("password-reset:{}", token.trim()),
    )
}

/// An administrator resets a user's password: the old one stops working at
/// once (replaced by a random one), their sessions end, and a one-time
/// link valid for 24 hours lets them choose a new one.
pub async fn admin_reset_password(
    st: &AppState,
    actor: Option<&AuthUser>,
    target: Uuid,
) -> Result<PasswordResetLink> {
    admin_target(st, actor, target).await?;
    let token = crate::credentials::tokens::new_nonce();
    let expires = store::now() + Duration::hours(RESET_TTL_HOURS);
    let unusable = st
        .hasher
        .hash(&crate::credentials::tokens::new_nonce())
        .await?;
    let mut tx = st.db.begin().await?;
    store::identity::set_password(&mut tx, target, &unusable).await?;
    let n = store::sessions::revoke_all_for_user(&mut tx, target, "password_reset").await?;
    // The CLI has no signed-in administrator: the link names the user.
    let by = actor.map(|a| a.id).unwrap_or(target);
    store::identity::issue_password_reset(&mut tx, target, &reset_hash(st, &token), by, expires)
        .await?;
    let mut ev = audit_event(actor, AuditAction::AuthPasswordReset, "success");
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(target);
    ev.detail = Some(serde_json::json!({ "sessionsEnded": n, "via": via(actor) }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.password.reset_issued");
    tracing::info!(targetUserId = %target, "set-password link issued");
    Ok(PasswordResetLink {
        path: format!("/set-password?token={token}"),
        token,
        expires_at: expires,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetPasswordRequest {
    pub token: String,
    pub new_password: String,
}

/// Use a set-password link once. The user then signs in normally (with
/// their second factor, if they have one).
pub async fn set_password(st: &AppState, body: Body<SetPasswordRequest>) -> Result<()> {
    let req = body?;
    let new = password_field("newPassword", &req.new_password)?;
    let hash = st.hasher.hash(new.expose()).await?;
    let mut tx = st.db.begin().await?;
    let user = store::identity::consume_password_reset(&mut tx, &reset_hash(st, &req.token))
        .await?
        .ok_or_else(|| {
            AppError::Forbidden(
                "The set-password link is not valid (unknown, used, replaced or expired).".into(),
            )
        })?;
    store::identity::set_password(&mut tx, user, &hash).await?;
    store::sessions::revoke_all_for_user(&mut tx, user, "password_set").await?;
    let mut ev = audit_event(None, AuditAction::AuthPasswordSet, "success");
    ev.actor_id = Some(user);
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(user);
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.password.set");
    Ok(())
}
