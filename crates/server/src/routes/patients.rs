//! `/api/patients`: see [`crate::services::patients`].

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::extract::{if_match, ApiJson, Later, PageQuery};
use crate::routes::with_etag;
use crate::services::patients::{
    self, AllergyInput, AllergyPatch, AllergyView, NkdaView, PatientBanner, PatientInput,
    PatientPage, PatientPatch, PatientView, ProblemInput, ProblemPatch, ProblemView,
};
use crate::services::vitals::{self, VitalsInput, VitalsPage, VitalsView};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/patients", tag = "patients", security(("bearer" = [])), request_body = PatientInput,
    responses((status = 201, body = PatientView), (status = 401), (status = 403),
        (status = 409, description = "`possible_duplicate`: a chart with the same name and birth date, or the same phone, exists (listed in `matches`); send `confirmDuplicate: true` to register anyway"),
        (status = 422), (status = 429)))]
pub async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    body: Later<ApiJson<PatientInput>>,
) -> Result<Response> {
    let p = patients::create(&st, &user, body.json()).await?;
    Ok(with_etag(p.version, (StatusCode::CREATED, Json(p))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Name prefix (any order of given and family name), MRN, or birth date YYYY-MM-DD
    pub q: Option<String>,
    /// Rows per page (default 50); values below 1 are treated as 1 and
    /// values above 200 as 200
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/patients", tag = "patients", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = PatientPage), (status = 401), (status = 403), (status = 429)))]
pub async fn search(
    State(st): State<AppState>,
    user: AuthUser,
    Query(q): Query<SearchQuery>,
) -> Result<Json<PatientPage>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(
        patients::search(&st, &user, q.q.as_deref(), &page).await?,
    ))
}

#[utoipa::path(get, path = "/api/patients/{id}", tag = "patients", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = PatientView), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Response> {
    let p = patients::get(&st, &user, id).await?;
    Ok(with_etag(p.version, Json(p)))
}

#[utoipa::path(patch, path = "/api/patients/{id}", tag = "patients", security(("bearer" = [])), request_body = PatientPatch,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#, description = "The patient's current version")),
    responses((status = 200, body = PatientView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422), (status = 428)))]
pub async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Later<ApiJson<PatientPatch>>,
) -> Result<Response> {
    let p = patients::update(&st, &user, id, if_match(&headers), body.json()).await?;
    Ok(with_etag(p.version, Json(p)))
}

#[utoipa::path(post, path = "/api/patients/{id}/allergies", tag = "patients", security(("bearer" = [])), request_body = AllergyInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = AllergyView), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn add_allergy(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<AllergyInput>>,
) -> Result<(StatusCode, Json<AllergyView>)> {
    let a = patients::add_allergy(&st, &user, id, body.json()).await?;
    Ok((StatusCode::CREATED, Json(a)))
}

#[utoipa::path(post, path = "/api/patients/{id}/problems", tag = "patients", security(("bearer" = [])), request_body = ProblemInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = ProblemView), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn add_problem(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<ProblemInput>>,
) -> Result<(StatusCode, Json<ProblemView>)> {
    let p = patients::add_problem(&st, &user, id, body.json()).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

#[utoipa::path(patch, path = "/api/patients/{id}/allergies/{allergyId}", tag = "patients", security(("bearer" = [])), request_body = AllergyPatch,
    params(("id" = Uuid, Path), ("allergyId" = Uuid, Path), ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#, description = "The allergy's current version")),
    responses((status = 200, body = AllergyView), (status = 401), (status = 403), (status = 404), (status = 409, description = "Stale version, or entered in error (final)"), (status = 422), (status = 428)))]
pub async fn update_allergy(
    State(st): State<AppState>,
    user: AuthUser,
    Path((id, allergy)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: Later<ApiJson<AllergyPatch>>,
) -> Result<Response> {
    let a =
        patients::update_allergy(&st, &user, id, allergy, if_match(&headers), body.json()).await?;
    Ok(with_etag(a.version, Json(a)))
}

#[utoipa::path(post, path = "/api/patients/{id}/allergies/none", tag = "patients", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 201, body = NkdaView, description = "No known drug allergies stated"), (status = 401), (status = 403), (status = 404), (status = 409, description = "An allergy is active")))]
pub async fn state_no_known_allergies(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<NkdaView>)> {
    let n = patients::state_no_known_allergies(&st, &user, id).await?;
    Ok((StatusCode::CREATED, Json(n)))
}

#[utoipa::path(patch, path = "/api/patients/{id}/problems/{problemId}", tag = "patients", security(("bearer" = [])), request_body = ProblemPatch,
    params(("id" = Uuid, Path), ("problemId" = Uuid, Path), ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#, description = "The problem's current version")),
    responses((status = 200, body = ProblemView), (status = 401), (status = 403), (status = 404), (status = 409, description = "Stale version, or entered in error (final)"), (status = 422), (status = 428)))]
pub async fn update_problem(
    State(st): State<AppState>,
    user: AuthUser,
    Path((id, problem)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: Later<ApiJson<ProblemPatch>>,
) -> Result<Response> {
    let p =
        patients::update_problem(&st, &user, id, problem, if_match(&headers), body.json()).await?;
    Ok(with_etag(p.version, Json(p)))
}

#[utoipa::path(get, path = "/api/patients/{id}/banner", tag = "patients", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = PatientBanner), (status = 401), (status = 403), (status = 404)))]
pub async fn banner(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PatientBanner>> {
    Ok(Json(patients::banner(&st, &user, id).await?))
}

#[utoipa::path(get, path = "/api/patients/{id}/vitals", tag = "patients", security(("bearer" = [])), params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = VitalsPage), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn list_vitals(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> Result<Json<VitalsPage>> {
    Ok(Json(vitals::list(&st, &user, id, &page).await?))
}

#[utoipa::path(post, path = "/api/patients/{id}/vitals", tag = "patients", security(("bearer" = [])), request_body = VitalsInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = VitalsView), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn create_vitals(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<VitalsInput>>,
) -> Result<(StatusCode, Json<VitalsView>)> {
    let v = vitals::create(&st, &user, id, body.json()).await?;
    Ok((StatusCode::CREATED, Json(v)))
}
