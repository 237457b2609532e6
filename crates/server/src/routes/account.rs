//! `/api/auth/mfa/*`, `/api/auth/sessions*`, `/api/auth/password*` and the
//! administrator's `/api/users/{id}/{sessions,mfa,password-reset}`: see
//! [`crate::services::mfa`] and [`crate::services::account`].

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use uuid::Uuid;

use crate::auth::extract::authenticate;
use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{ApiJson, Later, OptionalJson};
use crate::services::account::{
    self, ChangePasswordRequest, Ended, PasswordResetLink, SessionList, SetPasswordRequest,
};
use crate::services::auth::TokenPair;
use crate::services::mfa::{
    self, Enrolling, MfaConfirmRequest, MfaEnrolled, MfaSetup, MfaSetupRequest, MfaStatus,
    MfaVerifyRequest,
};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/auth/mfa/verify", tag = "auth", request_body = MfaVerifyRequest,
    responses((status = 200, body = TokenPair), (status = 401, description = "Wrong, replayed or used code, or an expired challenge"),
              (status = 429, description = "Rate limited")))]
pub async fn mfa_verify(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<MfaVerifyRequest>,
) -> Result<Json<TokenPair>> {
    Ok(Json(mfa::verify(&st, req).await?))
}

/// The signed-in user when a bearer token is sent, else the challenge.
async fn enrolling(
    st: &AppState,
    headers: &HeaderMap,
    challenge: Option<&str>,
) -> Result<Option<AuthUser>> {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        return Ok(Some(authenticate(st, headers).await?));
    }
    if challenge.is_none() {
        return Err(AppError::Unauthorized(
            "Sign in first, or send the challenge token of the sign-in step.",
        ));
    }
    Ok(None)
}

#[utoipa::path(post, path = "/api/auth/mfa/setup", tag = "auth", request_body(content = Option<MfaSetupRequest>, description = "Optional: the challenge token of a sign-in that must enrol"),
    security((), ("bearer" = [])),
    responses((status = 200, body = MfaSetup), (status = 401), (status = 409, description = "A second factor is already set up")))]
pub async fn mfa_setup(
    State(st): State<AppState>,
    headers: HeaderMap,
    OptionalJson(req): OptionalJson<MfaSetupRequest>,
) -> Result<Json<MfaSetup>> {
    let user = enrolling(&st, &headers, req.challenge_token.as_deref()).await?;
    let who = match (&user, req.challenge_token.as_deref()) {
        (Some(u), _) => Enrolling::Signed(u),
        (None, Some(t)) => Enrolling::Challenge(t),
        (None, None) => return Err(AppError::Unauthorized("Sign in first.")),
    };
    Ok(Json(mfa::setup(&st, who).await?))
}

#[utoipa::path(post, path = "/api/auth/mfa/confirm", tag = "auth", request_body = MfaConfirmRequest,
    security((), ("bearer" = [])),
    responses((status = 200, body = MfaEnrolled), (status = 401, description = "Wrong code"), (status = 409, description = "No set-up started, or already confirmed"),
              (status = 429, description = "Rate limited")))]
pub async fn mfa_confirm(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<MfaConfirmRequest>,
) -> Result<Json<MfaEnrolled>> {
    let user = enrolling(&st, &headers, req.challenge_token.as_deref()).await?;
    let who = match (&user, req.challenge_token.as_deref()) {
        (Some(u), _) => Enrolling::Signed(u),
        (None, Some(t)) => Enrolling::Challenge(t),
        (None, None) => return Err(AppError::Unauthorized("Sign in first.")),
    };
    Ok(Json(mfa::confirm(&st, who, &req.code).await?))
}

#[utoipa::path(get, path = "/api/auth/mfa", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MfaStatus), (status = 401)))]
pub async fn mfa_status(State(st): State<AppState>, user: AuthUser) -> Result<Json<MfaStatus>> {
    Ok(Json(mfa::status(&st, &user).await?))
}

#[utoipa::path(get, path = "/api/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401)))]
pub async fn list_sessions(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<Json<SessionList>> {
    Ok(Json(account::list_sessions(&st, &user).await?))
}

#[utoipa::path(delete, path = "/api/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Ended, description = "Every session ended, this one included"), (status = 401)))]
pub async fn revoke_all_sessions(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<Json<Ended>> {
    let ended = account::revoke_all_sessions(&st, &user).await?;
    Ok(Json(Ended { ended }))
}

#[utoipa::path(delete, path = "/api/auth/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Session ended"), (status = 401), (status = 404, description = "Not one of your open sessions")))]
pub async fn revoke_session(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    account::revoke_session(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/auth/password", tag = "auth", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 200, body = Ended, description = "Password changed; the other sessions ended"), (status = 401), (status = 422, description = "Wrong current password or a weak new one")))]
pub async fn change_password(
    State(st): State<AppState>,
    user: AuthUser,
    body: Later<ApiJson<ChangePasswordRequest>>,
) -> Result<Json<Ended>> {
    Ok(Json(
        account::change_password(&st, &user, body.json()).await?,
    ))
}

#[utoipa::path(post, path = "/api/auth/password/set", tag = "auth", request_body = SetPasswordRequest,
    responses((status = 204, description = "Password set; sign in with it"), (status = 403, description = "Unknown, used or expired link"), (status = 422)))]
pub async fn set_password(
    State(st): State<AppState>,
    body: Later<ApiJson<SetPasswordRequest>>,
) -> Result<StatusCode> {
    account::set_password(&st, body.json()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/users/{id}/sessions", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Ended), (status = 401), (status = 403), (status = 404)))]
pub async fn admin_revoke_sessions(
    State(st): State<AppState>,
    admin: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Ended>> {
    Ok(Json(
        account::admin_revoke_sessions(&st, Some(&admin), id).await?,
    ))
}

#[utoipa::path(delete, path = "/api/users/{id}/mfa", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Ended, description = "Second factor removed; the user's sessions ended"), (status = 401), (status = 403), (status = 404)))]
pub async fn admin_reset_mfa(
    State(st): State<AppState>,
    admin: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Ended>> {
    Ok(Json(account::admin_reset_mfa(&st, Some(&admin), id).await?))
}

#[utoipa::path(post, path = "/api/users/{id}/password-reset", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 201, body = PasswordResetLink, description = "The old password no longer works; give the user this link"), (status = 401), (status = 403), (status = 404)))]
pub async fn admin_reset_password(
    State(st): State<AppState>,
    admin: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<PasswordResetLink>)> {
    let link = account::admin_reset_password(&st, Some(&admin), id).await?;
    Ok((StatusCode::CREATED, Json(link)))
}
