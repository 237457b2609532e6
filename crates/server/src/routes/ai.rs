//! `/api/ai/*`: see [`crate::services::ai`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::extract::{ApiJson, Later};
use crate::services::ai::{
    self, ExplainRequest, ExplainResponse, GenerateNoteRequest, GenerateNoteResponse,
};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/ai/generate-note", tag = "ai", security(("bearer" = [])), request_body = GenerateNoteRequest,
    responses((status = 200, body = GenerateNoteResponse), (status = 201, body = GenerateNoteResponse, description = "Saved as a draft note"),
              (status = 401), (status = 403), (status = 404), (status = 422, description = "`ai_refused` with `reason`, or validation"),
              (status = 429), (status = 503, description = "`ai_unavailable`, with Retry-After")))]
pub async fn generate_note(
    State(st): State<AppState>,
    user: AuthUser,
    body: Later<ApiJson<GenerateNoteRequest>>,
) -> Result<(StatusCode, Json<GenerateNoteResponse>)> {
    let r = ai::generate_note(&st, &user, body.json()).await?;
    let status = if r.saved {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(r)))
}

#[utoipa::path(post, path = "/api/ai/explain", tag = "ai", security(("bearer" = [])), request_body = ExplainRequest,
    responses((status = 200, body = ExplainResponse), (status = 401), (status = 403), (status = 404), (status = 422, description = "`ai_refused` with `reason`, or validation"),
              (status = 429), (status = 503, description = "`ai_unavailable`, with Retry-After")))]
pub async fn explain(
    State(st): State<AppState>,
    user: AuthUser,
    body: Later<ApiJson<ExplainRequest>>,
) -> Result<Json<ExplainResponse>> {
    Ok(Json(ai::explain(&st, &user, body.json()).await?))
}
