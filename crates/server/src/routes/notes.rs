//! `/api/…/notes`: see [`crate::services::notes`].

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::extract::{if_match, ApiJson, Later, OptionalJson, PageQuery};
use crate::services::notes::{
    self, AddendumInput, FinalizeInput, NoteInput, NotePage, NotePatch, NoteView,
};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/patients/{id}/notes", tag = "notes", security(("bearer" = [])), request_body = NoteInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = NoteView), (status = 401), (status = 403), (status = 404), (status = 422), (status = 429)))]
pub async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    body: Later<ApiJson<NoteInput>>,
) -> Result<(StatusCode, Json<NoteView>)> {
    let n = notes::create(&st, &user, patient, body.json()).await?;
    Ok((StatusCode::CREATED, Json(n)))
}

#[utoipa::path(get, path = "/api/patients/{id}/notes", tag = "notes", security(("bearer" = [])), params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = NotePage), (status = 401), (status = 403), (status = 404)))]
pub async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> Result<Json<NotePage>> {
    Ok(Json(notes::list(&st, &user, patient, &page).await?))
}

#[utoipa::path(get, path = "/api/notes/{id}", tag = "notes", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = NoteView), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<NoteView>> {
    Ok(Json(notes::get(&st, &user, id).await?))
}

#[utoipa::path(patch, path = "/api/notes/{id}", tag = "notes", security(("bearer" = [])), request_body = NotePatch,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#, description = "The note's current version")),
    responses((status = 200, body = NoteView), (status = 401), (status = 403, description = "Not the author"), (status = 404), (status = 409, description = "Not a draft, or stale version"), (status = 422), (status = 428)))]
pub async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Later<ApiJson<NotePatch>>,
) -> Result<Json<NoteView>> {
    let n = notes::update(&st, &user, id, if_match(&headers), body.json()).await?;
    Ok(Json(n))
}

#[utoipa::path(post, path = "/api/notes/{id}/finalize", tag = "notes", security(("bearer" = [])), request_body(content = Option<FinalizeInput>, description = "Optional: the version, when If-Match cannot be sent"),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#, description = "The version the signer read: the signature covers exactly that version")),
    responses((status = 200, body = NoteView), (status = 401), (status = 403, description = "Not a provider, or another provider's draft"), (status = 404), (status = 409, description = "Already final, or changed since the signer read it"), (status = 422), (status = 428, description = "No If-Match (or body version)")))]
pub async fn finalize(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Later<OptionalJson<FinalizeInput>>,
) -> Result<Json<NoteView>> {
    let n = notes::finalize(&st, &user, id, if_match(&headers), body.json()).await?;
    Ok(Json(n))
}

#[utoipa::path(post, path = "/api/notes/{id}/addenda", tag = "notes", security(("bearer" = [])), request_body = AddendumInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = NoteView), (status = 401), (status = 403), (status = 404), (status = 409, description = "The note is a draft: edit it instead"), (status = 422)))]
pub async fn add_addendum(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<AddendumInput>>,
) -> Result<(StatusCode, Json<NoteView>)> {
    let n = notes::add_addendum(&st, &user, id, body.json()).await?;
    Ok((StatusCode::CREATED, Json(n)))
}

#[utoipa::path(delete, path = "/api/notes/{id}", tag = "notes", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204, description = "Draft discarded"), (status = 401), (status = 403, description = "Not the author"), (status = 404), (status = 409, description = "Final notes cannot be discarded")))]
pub async fn discard(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    notes::discard(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
