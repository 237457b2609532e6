//! User administration and invitations (admin only).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use domain::account::{Email, UserStatus};
use domain::roles::{Action, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{encode_cursor, expected_version, ApiJson, Later, PageQuery};
use crate::routes::auth::{invite_hash, UserEnvelope, UserView};
use crate::routes::{audit_event, parse_account};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserList {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/users", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = UserList), (status = 401), (status = 403)))]
pub async fn list_users(
    State(st): State<AppState>,
    user: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<UserList>> {
    user.require(Action::ManageUsers)?;
    let after =
        match page.cursor_text()? {
            Some(t) => Some(Uuid::parse_str(&t).map_err(|_| {
                AppError::validation("cursor", "is not a cursor this server issued")
            })?),
            None => None,
        };
    let limit = page.limit();
    let mut rows = store::users::list(&st.db, after, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|u| encode_cursor(&u.id.to_string()))
    } else {
        None
    };
    Ok(Json(UserList {
        items: rows.into_iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    pub email: String,
    pub name: String,
    #[schema(value_type = String, example = "nurse")]
    pub role: Role,
    pub password: String,
}

#[utoipa::path(post, path = "/api/users", tag = "users", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = UserEnvelope), (status = 401), (status = 403), (status = 409), (status = 422)))]
pub async fn create_user(
    State(st): State<AppState>,
    admin: AuthUser,
    body: Later<ApiJson<CreateUserRequest>>,
) -> Result<(StatusCode, Json<UserEnvelope>)> {
    admin.require(Action::ManageUsers)?;
    let ApiJson(req) = body.get()?;
    let (email, password, name) = parse_account(&req.email, &req.password, &req.name)?;
    let hash = st.hasher.hash(password.expose()).await?;
    let mut tx = st.db.begin().await?;
    let user = store::users::insert(
        &mut tx,
        &store::users::NewUser {
            email: email.as_str(),
            name: name.as_str(),
            role: req.role.as_str(),
            status: UserStatus::Active.as_str(),
            password_hash: &hash,
        },
    )
    .await?;
    let mut ev = audit_event(Some(&admin), "user.create", "success");
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(user.id);
    ev.detail = Some(serde_json::json!({ "role": user.role }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    tracing::info!(targetUserId = %user.id, newRole = %user.role, "user created");
    Ok((
        StatusCode::CREATED,
        Json(UserEnvelope { user: user.into() }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
    #[schema(value_type = Option<String>)]
    pub status: Option<UserStatus>,
    pub version: Option<i64>,
}

#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", security(("bearer" = [])), request_body = UpdateUserRequest,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The user's current version")),
    responses((status = 200, body = UserEnvelope), (status = 401), (status = 403), (status = 404), (status = 409), (status = 428)))]
pub async fn update_user(
    State(st): State<AppState>,
    admin: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Later<ApiJson<UpdateUserRequest>>,
) -> Result<Json<UserEnvelope>> {
    admin.require(Action::ManageUsers)?;
    let ApiJson(req) = body.get()?;
    let version = expected_version(&headers, req.version)?;
    let current = store::users::by_id(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let role = req
        .role
        .map(Role::as_str)
        .unwrap_or(&current.role)
        .to_string();
    let status = req
        .status
        .map(UserStatus::as_str)
        .unwrap_or(&current.status)
        .to_string();
    let mut tx = st.db.begin().await?;
    let user = store::users::update_role_status(&mut tx, id, version, &role, &status).await?;
    // Never leave the clinic without an active administrator.
    if store::users::count_active_admins(&mut tx).await? == 0 {
        return Err(AppError::conflict(
            "This change would leave no active administrator.",
        ));
    }
    let changed = current.role != user.role || current.status != user.status;
    if changed {
        // A new role or a deactivation takes effect now, not in 15 minutes.
        store::sessions::revoke_all_for_user(&mut tx, id, "account_changed").await?;
    }
    let mut ev = audit_event(Some(&admin), "user.update", "success");
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(id);
    ev.detail = Some(serde_json::json!({ "role": user.role, "status": user.status }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    tracing::info!(targetUserId = %id, newRole = %user.role, newStatus = %user.status, "user updated");
    Ok(Json(UserEnvelope { user: user.into() }))
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

#[utoipa::path(post, path = "/api/invites", tag = "users", security(("bearer" = [])), request_body = InviteRequest,
    responses((status = 201, body = InviteResponse), (status = 401), (status = 403), (status = 422)))]
pub async fn create_invite(
    State(st): State<AppState>,
    admin: AuthUser,
    body: Later<ApiJson<InviteRequest>>,
) -> Result<(StatusCode, Json<InviteResponse>)> {
    admin.require(Action::ManageUsers)?;
    let ApiJson(req) = body.get()?;
    let email = match req
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        Some(e) => Some(Email::parse(e)?),
        None => None,
    };
    let code = {
        use base64::Engine as _;
        use rand::RngCore;
        let mut b = [0u8; 18];
        rand::rngs::OsRng.fill_bytes(&mut b);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let expires_at = store::now() + Duration::days(7);
    let mut tx = st.db.begin().await?;
    let id = store::users::insert_invite(
        &mut tx,
        &invite_hash(&code),
        req.role.as_str(),
        email.as_ref().map(Email::as_str),
        admin.id,
        expires_at,
    )
    .await?;
    let mut ev = audit_event(Some(&admin), "invite.create", "success");
    ev.resource_type = Some("invite".into());
    ev.resource_id = Some(id);
    ev.detail = Some(serde_json::json!({ "role": req.role }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(InviteResponse {
            code,
            role: req.role,
            email: email.map(|e| e.as_str().to_string()),
            expires_at,
        }),
    ))
}
