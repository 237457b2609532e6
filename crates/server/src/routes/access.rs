//! Care teams, break-glass, the access explanation and the review queue:
//! see [`crate::services::access`].

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::extract::{ApiJson, Later};
use crate::services::access::{
    self, AccessView, AccountDecision, AccountReviewView, BreakGlassRequest, BreakGlassView,
    MembershipInput, ReviewQuery, ReviewQueue, ReviewRequest, TeamDetail, TeamInput, TeamView,
};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/patients/{id}/access", tag = "access", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = AccessView, description = "Why the current user may (or may not) open this patient's chart: `team`, `break_glass`, `role` or `none`"),
        (status = 401), (status = 403), (status = 404)))]
pub async fn explain(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<AccessView>> {
    Ok(Json(access::explain(&st, &user, id).await?))
}

#[utoipa::path(post, path = "/api/patients/{id}/break-glass", tag = "access", security(("bearer" = [])), request_body = BreakGlassRequest, params(("id" = Uuid, Path)),
    responses((status = 201, body = BreakGlassView, description = "Emergency access until `expiresAt` (audited, alerted, reviewed)"),
        (status = 401), (status = 403), (status = 404),
        (status = 409, description = "The user already shares a care team with the patient, or a session is in force"),
        (status = 422, description = "Missing reason, or `password` is not the user's password"), (status = 429)))]
pub async fn break_glass(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<BreakGlassRequest>>,
) -> Result<(StatusCode, Json<BreakGlassView>)> {
    let v = access::break_glass(&st, &user, id, body.json()).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

#[utoipa::path(get, path = "/api/access/reviews", tag = "access", security(("bearer" = [])), params(ReviewQuery),
    responses((status = 200, body = ReviewQueue, description = "Break-glass sessions and admin-created clinical accounts awaiting review (admin)"),
        (status = 401), (status = 403)))]
pub async fn review_queue(
    State(st): State<AppState>,
    user: AuthUser,
    Query(q): Query<ReviewQuery>,
) -> Result<Json<ReviewQueue>> {
    Ok(Json(
        access::review_queue(&st, &user, q.open.unwrap_or(true)).await?,
    ))
}

#[utoipa::path(post, path = "/api/access/break-glass/{id}/review", tag = "access", security(("bearer" = [])), request_body = ReviewRequest, params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn review_break_glass(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<ReviewRequest>>,
) -> Result<StatusCode> {
    access::review_break_glass(&st, &user, id, body.json()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/access/accounts/{id}/review", tag = "access", security(("bearer" = [])), request_body = AccountDecision, params(("id" = Uuid, Path)),
    responses((status = 200, body = AccountReviewView), (status = 401),
        (status = 403, description = "Not an admin, or the two-person rule: the creating admin may not approve"),
        (status = 404), (status = 422)))]
pub async fn review_account(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<AccountDecision>>,
) -> Result<Json<AccountReviewView>> {
    Ok(Json(
        access::review_account(&st, &user, id, body.json()).await?,
    ))
}

#[utoipa::path(get, path = "/api/care-teams", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = Vec<TeamView>), (status = 401), (status = 403)))]
pub async fn list_teams(State(st): State<AppState>, user: AuthUser) -> Result<Json<Vec<TeamView>>> {
    Ok(Json(access::teams(&st, &user).await?))
}

#[utoipa::path(post, path = "/api/care-teams", tag = "access", security(("bearer" = [])), request_body = TeamInput,
    responses((status = 201, body = TeamView), (status = 401), (status = 403), (status = 409), (status = 422)))]
pub async fn create_team(
    State(st): State<AppState>,
    user: AuthUser,
    body: Later<ApiJson<TeamInput>>,
) -> Result<(StatusCode, Json<TeamView>)> {
    let t = access::create_team(&st, &user, body.json()).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

#[utoipa::path(get, path = "/api/care-teams/{id}", tag = "access", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = TeamDetail), (status = 401), (status = 403), (status = 404)))]
pub async fn get_team(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<TeamDetail>> {
    Ok(Json(access::team(&st, &user, id).await?))
}

#[utoipa::path(patch, path = "/api/care-teams/{id}", tag = "access", security(("bearer" = [])), request_body = TeamInput, params(("id" = Uuid, Path)),
    responses((status = 200, body = TeamView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn update_team(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<TeamInput>>,
) -> Result<Json<TeamView>> {
    Ok(Json(
        access::update_team(&st, &user, id, body.json()).await?,
    ))
}

#[utoipa::path(delete, path = "/api/care-teams/{id}", tag = "access", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
pub async fn delete_team(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    access::delete_team(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/care-teams/{id}/membership", tag = "access", security(("bearer" = [])), request_body = MembershipInput, params(("id" = Uuid, Path)),
    responses((status = 200, body = TeamDetail, description = "The team after adding or removing a clinician or patient"),
        (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn set_membership(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<MembershipInput>>,
) -> Result<Json<TeamDetail>> {
    Ok(Json(
        access::set_membership(&st, &user, id, body.json()).await?,
    ))
}
