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
#[into_params(parameter_in = Query)]
pub struct LabListQuery {
    /// Only results of this LOINC code (empty: every code)
    #[param(max_length = 10, pattern = r"^([0-9]{1,8}-[0-9])?$")]
    pub code: Option<String>,
    /// Rows per page (default 50); values below 1 are treated as 1 and
    /// values above 200 as 200
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
        labs::list(
            &st,
            &user,
            patient,
            q.code.as_deref().filter(|c| !c.is_empty()),
            &page,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendQuery {
    /// The LOINC code to follow
    #[param(max_length = 10, pattern = r"^[0-9]{1,8}-[0-9]$")]
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

/// The media types an HL7 v2 message may be sent as.
const HL7_TYPES: [&str; 3] = [
    "x-application/hl7-v2+er7",
    "application/hl7-v2",
    "text/plain",
];

/// The ER7 media type of our ACKs.
pub const HL7_CONTENT_TYPE: &str = "x-application/hl7-v2+er7";

#[utoipa::path(post, path = "/api/labs/hl7", tag = "labs", security(("bearer" = [])),
    request_body(content = String, content_type = "x-application/hl7-v2+er7", description = "One HL7 v2 ORU^R01 message (v2.3–2.5.1); text/plain is accepted too"),
    responses(
        (status = 200, description = "AA: every result stored (or a repeat of an accepted message, header X-Hl7-Duplicate: true); the body is the ACK", body = String, content_type = "x-application/hl7-v2+er7"),
        (status = 400, description = "AR: the message could not be read; problem document with `ack`, `ackCode` and `hl7Errors`"),
        (status = 401), (status = 403),
        (status = 415, description = "Not an HL7 v2 media type"),
        (status = 422, description = "AE: understood but not stored (unknown patient, a result that cannot be stored); problem document with `ack`"),
        (status = 429)))]
pub async fn import_hl7(
    State(st): State<AppState>,
    user: AuthUser,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    user.require(domain::roles::Action::ImportLabResults)?;
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !HL7_TYPES.contains(&ct.as_str()) {
        return Ok(crate::error::problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported Media Type",
            "Send the message as x-application/hl7-v2+er7 (or text/plain).",
            None,
        ));
    }
    let out = crate::services::hl7::import(&st.db, &user, &crate::mllp::text(&body)).await?;
    st.metrics
        .incr(&format!("hl7.{}", out.code.as_str().to_ascii_lowercase()));
    let status = match out.code {
        domain::hl7::AckCode::AA => {
            let mut r = (StatusCode::OK, out.ack).into_response();
            let h = r.headers_mut();
            h.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static(HL7_CONTENT_TYPE),
            );
            if out.duplicate {
                st.metrics.incr("hl7.duplicate");
                h.insert(
                    "x-hl7-duplicate",
                    axum::http::HeaderValue::from_static("true"),
                );
            }
            return Ok(r);
        }
        domain::hl7::AckCode::AE => StatusCode::UNPROCESSABLE_ENTITY,
        domain::hl7::AckCode::AR => StatusCode::BAD_REQUEST,
    };
    let (code, detail) = if status == StatusCode::BAD_REQUEST {
        (
            "hl7_rejected",
            "The HL7 message was rejected (AR); nothing was stored. See hl7Errors.",
        )
    } else {
        ("hl7_not_processed", "The HL7 message was understood but not stored (AE); nothing was stored. See hl7Errors.")
    };
    let errors: Vec<serde_json::Value> = out
        .issues
        .iter()
        .map(|i| {
            serde_json::json!({
                "segment": i.segment.as_ref().map(|s| s.0.clone()),
                "position": i.segment.as_ref().map(|s| s.1),
                "field": i.field,
                "code": i.code.code(),
                "message": i.message,
            })
        })
        .collect();
    Ok(crate::error::problem(
        status,
        code,
        status.canonical_reason().unwrap_or("Error"),
        detail,
        Some(
            serde_json::json!({ "ackCode": out.code.as_str(), "ack": out.ack, "hl7Errors": errors }),
        ),
    ))
}
