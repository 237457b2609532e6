//! `/api/patients/{id}/overview` and `/api/overview`: see
//! [`crate::services::overview`].

use axum::extract::{Path, Query, State};
use axum::Json;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::services::overview::{self, ChartOverview, DayOverview, DayQuery};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/patients/{id}/overview", tag = "patients", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = ChartOverview), (status = 401), (status = 403), (status = 404)))]
pub async fn chart(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<ChartOverview>> {
    Ok(Json(overview::chart(&st, &user, id).await?))
}

#[utoipa::path(get, path = "/api/overview", tag = "patients", security(("bearer" = [])), params(DayQuery),
    responses((status = 200, body = DayOverview), (status = 401), (status = 403), (status = 422)))]
pub async fn day(
    State(st): State<AppState>,
    user: AuthUser,
    Query(q): Query<DayQuery>,
) -> Result<Json<DayOverview>> {
    Ok(Json(overview::day(&st, &user, &q).await?))
}
