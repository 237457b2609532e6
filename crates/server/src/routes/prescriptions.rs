//! `/api/…/prescriptions`: see [`crate::services::prescriptions`].

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::extract::{ApiJson, Later, OptionalJson, PageQuery};
use crate::services::prescriptions::{
    self, CancelInput, IssueInput, PrescriptionInput, PrescriptionPage, PrescriptionView,
};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/patients/{id}/prescriptions", tag = "prescriptions", security(("bearer" = [])), request_body = PrescriptionInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = PrescriptionView), (status = 401), (status = 403), (status = 404),
              (status = 422, description = "Invalid fields (`validation_failed`), or a medication close to but not equal to a dictionary name (`medication_unconfirmed`, with `suggestions`; resend the suggested name or `medicationConfirmed: true`)"), (status = 429)))]
pub async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    body: Later<ApiJson<PrescriptionInput>>,
) -> Result<(StatusCode, Json<PrescriptionView>)> {
    let p = prescriptions::create(&st, &user, patient, body.json()).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PrescriptionListQuery {
    /// draft, issued or cancelled (empty: every status)
    #[param(pattern = r"^(draft|issued|cancelled)?$")]
    pub status: Option<String>,
    /// Rows per page (default 50); values below 1 are treated as 1 and
    /// values above 200 as 200
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/patients/{id}/prescriptions", tag = "prescriptions", security(("bearer" = [])), params(("id" = Uuid, Path), PrescriptionListQuery),
    responses((status = 200, body = PrescriptionPage), (status = 401), (status = 403), (status = 404)))]
pub async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    Query(q): Query<PrescriptionListQuery>,
) -> Result<Json<PrescriptionPage>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let p = prescriptions::list(
        &st,
        &user,
        patient,
        q.status.as_deref().filter(|s| !s.is_empty()),
        &page,
    )
    .await?;
    Ok(Json(p))
}

#[utoipa::path(get, path = "/api/prescriptions/{id}", tag = "prescriptions", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = PrescriptionView), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PrescriptionView>> {
    Ok(Json(prescriptions::get(&st, &user, id).await?))
}

#[utoipa::path(post, path = "/api/prescriptions/{id}/issue", tag = "prescriptions", security(("bearer" = [])), request_body = IssueInput, params(("id" = Uuid, Path)),
    responses((status = 200, body = PrescriptionView), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "Not a draft (`conflict`); or a safety finding not yet overridden, most serious first: `allergy_conflict` (override: `overrideReason`), `drug_interaction` (`interactionOverrideReason`), `duplicate_therapy` (`duplicateOverrideReason`), `medication_unrecognised` (`uncheckedAcknowledged`); `warnings` lists every finding")))]
pub async fn issue(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<OptionalJson<IssueInput>>,
) -> Result<Json<PrescriptionView>> {
    Ok(Json(
        prescriptions::issue(&st, &user, id, body.json()).await?,
    ))
}

#[utoipa::path(post, path = "/api/prescriptions/{id}/cancel", tag = "prescriptions", security(("bearer" = [])), request_body = CancelInput, params(("id" = Uuid, Path)),
    responses((status = 200, body = PrescriptionView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422, description = "reason is required")))]
pub async fn cancel(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<CancelInput>>,
) -> Result<Json<PrescriptionView>> {
    Ok(Json(
        prescriptions::cancel(&st, &user, id, body.json()).await?,
    ))
}
