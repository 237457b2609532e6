//! `/api/users` and `/api/invites`: see [`crate::services::users`].

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::extract::{if_match, ApiJson, Later, PageQuery};
use crate::services::auth::UserEnvelope;
use crate::services::users::{
    self, CreateUserRequest, InviteList, InviteRequest, InviteResponse, UpdateUserRequest, UserList,
};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/users", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = UserList), (status = 401), (status = 403)))]
pub async fn list_users(
    State(st): State<AppState>,
    user: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<UserList>> {
    Ok(Json(users::list_users(&st, &user, &page).await?))
}

#[utoipa::path(post, path = "/api/users", tag = "users", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = UserEnvelope), (status = 401), (status = 403), (status = 409), (status = 422)))]
pub async fn create_user(
    State(st): State<AppState>,
    admin: AuthUser,
    body: Later<ApiJson<CreateUserRequest>>,
) -> Result<(StatusCode, Json<UserEnvelope>)> {
    let user = users::create_user(&st, &admin, body.json()).await?;
    Ok((StatusCode::CREATED, Json(UserEnvelope { user })))
}

#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", security(("bearer" = [])), request_body = UpdateUserRequest,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#, description = "The user's current version")),
    responses((status = 200, body = UserEnvelope), (status = 401), (status = 403), (status = 404), (status = 409), (status = 428)))]
pub async fn update_user(
    State(st): State<AppState>,
    admin: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Later<ApiJson<UpdateUserRequest>>,
) -> Result<Json<UserEnvelope>> {
    let user = users::update_user(&st, &admin, id, if_match(&headers), body.json()).await?;
    Ok(Json(UserEnvelope { user }))
}

#[utoipa::path(post, path = "/api/invites", tag = "users", security(("bearer" = [])), request_body = InviteRequest,
    responses((status = 201, body = InviteResponse), (status = 401), (status = 403), (status = 422)))]
pub async fn create_invite(
    State(st): State<AppState>,
    admin: AuthUser,
    body: Later<ApiJson<InviteRequest>>,
) -> Result<(StatusCode, Json<InviteResponse>)> {
    let invite = users::create_invite(&st, &admin, body.json()).await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

#[utoipa::path(get, path = "/api/invites", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = InviteList, description = "Unused, unexpired invitations, newest first"), (status = 401), (status = 403)))]
pub async fn list_invites(State(st): State<AppState>, admin: AuthUser) -> Result<Json<InviteList>> {
    Ok(Json(users::list_invites(&st, &admin).await?))
}

#[utoipa::path(delete, path = "/api/invites/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Revoked: the code no longer works"), (status = 401), (status = 403), (status = 404, description = "Unknown, used or expired")))]
pub async fn revoke_invite(
    State(st): State<AppState>,
    admin: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    users::revoke_invite(&st, &admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
