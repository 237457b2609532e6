//! User administration and invitations (admin only).

use chrono::{DateTime, Duration, Utc};
use domain::account::{Email, UserStatus};
use domain::audit::AuditAction;
use domain::roles::{Action, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{expected_version, PageQuery};
use crate::services::auth::{invite_hash, UserView};
use crate::services::{audit_event, own_event, page, parse_account, Body};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserList {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

/// Every account, in id order.
pub async fn list_users(st: &AppState, user: &AuthUser, page_q: &PageQuery) -> Result<UserList> {
    user.require(Action::ManageUsers)?;
    let after =
        match page_q.cursor_text()? {
            Some(t) => Some(Uuid::parse_str(&t).map_err(|_| {
                AppError::validation("cursor", "is not a cursor this server issued")
            })?),
            None => None,
        };
    let limit = page_q.limit();
    let rows = store::users::list(&st.db, after, limit + 1).await?;
    let (mut items, next_cursor) = page(rows, limit, |u| u.id.to_string(), UserView::from);
    let ids: Vec<Uuid> = items.iter().map(|u| u.id).collect();
    let last: std::collections::HashMap<Uuid, DateTime<Utc>> =
        store::sessions::last_sign_ins(&st.db, &ids)
            .await?
            .into_iter()
            .collect();
    for u in &mut items {
        u.last_sign_in_at = last.get(&u.id).copied();
    }
    Ok(UserList { items, next_cursor })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    pub email: String,
    pub name: String,
    #[schema(value_type = String, example = "nurse")]
    pub role: Role,
    pub password: String,
}

/// Create an active account (admin).
pub async fn create_user(
    st: &AppState,
    admin: &AuthUser,
    body: Body<CreateUserRequest>,
) -> Result<UserView> {
    admin.require(Action::ManageUsers)?;
    let req = body?;
    let (email, password, name) = parse_account(&req.email, &req.password, &req.name)?;
    let hash = st.hasher.hash(password.expose()).await?;
    let mut tx = st.db.begin().await?;
    let user = store::users::insert(
        &mut tx,
        &store::users::NewUser {
            email: email.as_str(),
            name: name.as_str(),
            role: req.role,
            status: UserStatus::Active,
            password_hash: &hash,
        },
    )
    .await?;
    let mut ev = audit_event(Some(admin), AuditAction::UserCreate, "success");
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(user.id);
    ev.detail = Some(serde_json::json!({ "role": user.role }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    crate::services::access::flag_new_account(&mut tx, st, Some(admin.id), &user, "api").await?;
    tx.commit().await?;
    tracing::info!(targetUserId = %user.id, newRole = %user.role, "user created");
    Ok(user.into())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
    #[schema(value_type = Option<String>)]
    pub status: Option<UserStatus>,
    pub version: Option<i64>,
}

/// Change a user's role or status; their sessions end at once.
pub async fn update_user(
    st: &AppState,
    admin: &AuthUser,
    id: Uuid,
    if_match: Result<Option<i64>>,
    body: Body<UpdateUserRequest>,
) -> Result<UserView> {
    admin.require(Action::ManageUsers)?;
    let req = body?;
    let version = expected_version(if_match?, req.version)?;
    let current = store::users::by_id(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let role = req.role.unwrap_or(current.role);
    let status = req.status.unwrap_or(current.status);
    let mut tx = st.db.begin().await?;
    let user = store::users::update_role_status(&mut tx, id, version, role, status).await?;
    // Never leave the clinic without an active administrator.
    if store::users::count_active_admins(&mut tx).await? == 0 {
        return Err(AppError::conflict(
            "This change would leave no active administrator.",
        ));
    }
    if !current.role.is_clinician() && user.role.is_clinician() {
        // An admin turning an account clinical is the same risk as creating one.
        store::care::place_clinician(&mut tx, id, user.role).await?;
        crate::services::access::flag_new_account(
            &mut tx,
            st,
            Some(admin.id),
            &user,
            "role_change",
        )
        .await?;
    }
    let changed = current.role != user.role || current.status != user.status;
    if changed {
        // A new role or a deactivation takes effect now, not in 15 minutes.
        store::sessions::revoke_all_for_user(&mut tx, id, "account_changed").await?;
    }
    let mut ev = audit_event(Some(admin), AuditAction::UserUpdate, "success");
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(id);
    ev.detail = Some(serde_json::json!({ "role": user.role, "status": user.status }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    tracing::info!(targetUserId = %id, newRole = %user.role, newStatus = %user.status, "user updated");
    Ok(user.into())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InviteRequest {
    #[schema(value_type = String, example = "nurse")]
    pub role: Role,
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteResponse {
    pub code: String,
    #[schema(value_type = String, example = "nurse")]
    pub role: Role,
    pub email: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// A one-time invitation code for a role (valid 7 days).
pub async fn create_invite(
    st: &AppState,
    admin: &AuthUser,
    body: Body<InviteRequest>,
) -> Result<InviteResponse> {
    admin.require(Action::ManageUsers)?;
    let req = body?;
    let email = match req
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        Some(e) => Some(Email::parse(e)?),
        None => None,
    };
    let code = crate::credentials::tokens::one_time_code();
    let expires_at = store::now() + Duration::days(7);
    let mut tx = st.db.begin().await?;
    let id = store::users::insert_invite(
        &mut tx,
        &invite_hash(&code),
        req.role,
        email.as_ref().map(Email::as_str),
        admin.id,
        expires_at,
    )
    .await?;
    let mut ev = audit_event(Some(admin), AuditAction::InviteCreate, "success");
    ev.resource_type = Some("invite".into());
    ev.resource_id = Some(id);
    ev.detail = Some(serde_json::json!({ "role": req.role }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    Ok(InviteResponse {
        code,
        role: req.role,
        email: email.map(|e| e.as_str().to_string()),
        expires_at,
    })
}

/// An invitation not yet used (the code itself is never kept).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingInviteView {
    pub id: Uuid,
    #[schema(value_type = String)]
    pub role: Role,
    pub email: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InviteList {
    pub items: Vec<PendingInviteView>,
}

/// Unused, unexpired invitations, newest first (up to 200).
pub async fn list_invites(st: &AppState, admin: &AuthUser) -> Result<InviteList> {
    admin.require(Action::ManageUsers)?;
    let rows = store::users::pending_invites(&st.db, 200).await?;
    Ok(InviteList {
        items: rows
            .into_iter()
            .map(|r| PendingInviteView {
                id: r.id,
                role: r.role,
                email: r.email,
                created_by: r.created_by,
                created_at: r.created_at,
                expires_at: r.expires_at,
            })
            .collect(),
    })
}

/// Revoke an unused invitation: its code stops working at once. 404 when
/// it does not exist or can no longer be used (used or expired).
pub async fn revoke_invite(st: &AppState, admin: &AuthUser, id: Uuid) -> Result<()> {
    admin.require(Action::ManageUsers)?;
    let mut tx = st.db.begin().await?;
    if !store::users::revoke_invite(&mut tx, id).await? {
        return Err(AppError::NotFound);
    }
    let mut ev = audit_event(Some(admin), AuditAction::InviteRevoke, "success");
    ev.resource_type = Some("invite".into());
    ev.resource_id = Some(id);
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    tracing::info!(inviteId = %id, "invite revoked");
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct FirstAdminRequest {
    pub code: String,
    pub email: String,
    pub name: String,
    pub password: String,
}

/// Whether the first run's setup is still open: this process holds a code
/// and the database still has no account (one made another way, such as
/// `amal user create`, kills the code).
pub async fn setup_pending(st: &AppState) -> Result<bool> {
    if !st.first_run.pending() {
        return Ok(false);
    }
    if store::users::count_all(&st.db).await? > 0 {
        st.first_run.disarm();
        return Ok(false);
    }
    Ok(true)
}

/// First run: the one-time setup code printed by `serve` creates the first
/// administrator (the password rules of sign-up), once. Refused when the
/// code is wrong or any account already exists (the code then dies).
pub async fn first_admin(st: &AppState, req: FirstAdminRequest) -> Result<UserView> {
    let dead = || {
        AppError::Forbidden(
            "This setup link is not valid: it was already used, the server was restarted (which prints a new link), or an account already exists. Sign in instead."
                .into(),
        )
    };
    if !st.first_run.accepts(&req.code) {
        return Err(dead());
    }
    let (email, password, name) = parse_account(&req.email, &req.password, &req.name)?;
    let hash = st.hasher.hash(password.expose()).await?;
    let mut tx = st.db.begin().await?;
    if store::users::count_all_tx(&mut tx).await? > 0 {
        st.first_run.disarm();
        return Err(dead());
    }
    let user = store::users::insert(
        &mut tx,
        &store::users::NewUser {
            email: email.as_str(),
            name: name.as_str(),
            role: Role::Admin,
            status: UserStatus::Active,
            password_hash: &hash,
        },
    )
    .await?;
    let mut ev = own_event(
        AuditAction::UserCreate,
        "success",
        user.id,
        user.role.as_str(),
        "user",
        user.id,
    );
    ev.detail = Some(serde_json::json!({ "role": user.role, "firstRun": true }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.first_run.disarm();
    st.metrics.incr("auth.first_run.success");
    tracing::info!(userId = %user.id, "first run: administrator created");
    Ok(user.into())
}

/// A colleague's name and role as notes show them ("another user" when the
/// account is gone); clinicians see names, not the user list.
pub async fn display_name(st: &AppState, id: Uuid) -> String {
    match store::users::by_id(&st.db, id).await {
        Ok(Some(u)) => format!("{} ({})", u.name, u.role),
        _ => "another user".into(),
    }
}
