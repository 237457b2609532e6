//! `/api/auth/*`: see [`crate::services::auth`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::extract::ApiJson;
use crate::services::auth::{
    self, RefreshRequest, SigninRequest, SigninResult, SignupRequest, TokenPair, UserEnvelope,
};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 201, body = UserEnvelope), (status = 403, description = "Sign-up closed or invite missing, used, expired or for another e-mail"),
              (status = 409, description = "E-mail already registered"), (status = 422, description = "Invalid fields"), (status = 429, description = "Rate limited")))]
pub async fn signup(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SignupRequest>,
) -> Result<(StatusCode, Json<UserEnvelope>)> {
    let user = auth::signup(&st, req).await?;
    Ok((StatusCode::CREATED, Json(UserEnvelope { user })))
}

#[utoipa::path(post, path = "/api/auth/signin", tag = "auth", request_body = SigninRequest,
    responses((status = 200, body = SigninResult, description = "Tokens, or the second step (`mfa_required` / `mfa_enrolment_required`) with a challenge token"), (status = 401, description = "Wrong e-mail or password"),
              (status = 403, description = "Account pending or disabled"), (status = 429, description = "Rate limited")))]
pub async fn signin(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SigninRequest>,
) -> Result<Json<SigninResult>> {
    Ok(Json(auth::signin(&st, req).await?))
}

#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, description = "Unknown, expired, revoked or reused refresh token"), (status = 429, description = "Rate limited")))]
pub async fn refresh(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>> {
    Ok(Json(auth::refresh(&st, req).await?))
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "Session ended (also when the token was unknown)")))]
pub async fn logout(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<StatusCode> {
    auth::logout(&st, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserEnvelope), (status = 401, description = "Not signed in")))]
pub async fn me(State(st): State<AppState>, user: AuthUser) -> Result<Json<UserEnvelope>> {
    let user = auth::me(&st, &user).await?;
    Ok(Json(UserEnvelope { user }))
}
