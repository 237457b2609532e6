//! `/api/…/labs`: see [`crate::services::labs`].

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::extract::{ApiJson, Later, OptionalJson, PageQuery};
use crate::services::labs::{self, LabInput, LabPage, LabView, ReviewInput, Trend};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/patients/{id}/labs", tag = "labs", security(("bearer" = [])), request_body = LabInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = LabView), (status = 401), (status = 403), (status = 404), (status = 422), (status = 429)))]
pub async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    body: Later<ApiJson<LabInput>>,
) -> Result<(StatusCode, Json<LabView>)> {
    let l = labs::create(&st, &user, patient, body.json()).await?;
    Ok((StatusCode::CREATED, Json(l)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LabListQuery {
    /// Only results of this LOINC code
    pub code: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/patients/{id}/labs", tag = "labs", security(("bearer" = [])), params(("id" = Uuid, Path), LabListQuery),
    responses((status = 200, body = LabPage), (status = 401), (status = 403), (status = 404)))]
pub async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    Query(q): Query<LabListQuery>,
) -> Result<Json<LabPage>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(
        labs::list(&st, &user, patient, q.code.as_deref(), &page).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TrendQuery {
    /// The LOINC code to follow
    pub code: String,
}

#[utoipa::path(get, path = "/api/patients/{id}/labs/trend", tag = "labs", security(("bearer" = [])), params(("id" = Uuid, Path), TrendQuery),
    responses((status = 200, body = Trend), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn trend(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    Query(q): Query<TrendQuery>,
) -> Result<Json<Trend>> {
    Ok(Json(labs::trend(&st, &user, patient, &q.code).await?))
}

#[utoipa::path(get, path = "/api/labs/{id}", tag = "labs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = LabView), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LabView>> {
    Ok(Json(labs::get(&st, &user, id).await?))
}

#[utoipa::path(post, path = "/api/labs/{id}/review", tag = "labs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = Option<ReviewInput>, description = "Optional comment and action taken"),
    responses((status = 200, body = LabView), (status = 401), (status = 403), (status = 404), (status = 409, description = "Already reviewed"), (status = 422)))]
pub async fn review(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<OptionalJson<ReviewInput>>,
) -> Result<Json<LabView>> {
    Ok(Json(labs::review(&st, &user, id, body.json()).await?))
}
