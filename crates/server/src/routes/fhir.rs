//! The FHIR R4 handlers under `/fhir/R4`: read, search, `Patient/$everything`,
//! Group read and bulk export. Authentication, rate limits (reads), roles and
//! the audit are the API's own (see [`crate::services::fhir`]); the resources
//! and every error's OperationOutcome are [`crate::fhir`]'s.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::fhir::params::ResourceType;
use crate::fhir::{capability_statement, respond, PREFIX};
use crate::services::export;
use crate::services::fhir as svc;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/fhir/R4/metadata", get(metadata))
        .route("/fhir/R4/Patient/{id}/$everything", get(everything))
        .route("/fhir/R4/$export", get(export_all))
        .route("/fhir/R4/Patient/{id}/$export", get(export_patient))
        .route("/fhir/R4/Group/{id}", get(group))
        .route("/fhir/R4/Group/{id}/$export", get(export_group))
        .route(
            "/fhir/R4/$export-status/{id}",
            get(export_status).delete(export_cancel),
        )
        .route("/fhir/R4/$export-file/{id}/{name}", get(export_file))
        .route("/fhir/R4/{type}", get(search))
        .route("/fhir/R4/{type}/{id}", get(read))
}

/// The server's FHIR base URL as the client reached it (`Host` header,
/// checked to be a plain host name or address).
pub fn base_url(st: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = if st.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}{PREFIX}")
}

fn resource_type(raw: &str) -> Result<ResourceType> {
    ResourceType::parse(raw).ok_or(AppError::NotFound)
}

fn pairs(q: Option<&str>) -> Result<Vec<(String, String)>> {
    serde_urlencoded::from_str(q.unwrap_or(""))
        .map_err(|_| AppError::BadRequest("The query string is not valid.".into()))
}

async fn read(
    State(st): State<AppState>,
    user: AuthUser,
    Path((ty, id)): Path<(String, String)>,
) -> Result<Response> {
    let v = svc::read(&st, &user, resource_type(&ty)?, &id).await?;
    Ok(respond(StatusCode::OK, &v))
}

async fn search(
    State(st): State<AppState>,
    user: AuthUser,
    Path(ty): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let ty = resource_type(&ty)?;
    let pairs = pairs(q.as_deref())?;
    let base = base_url(&st, &headers);
    let kept: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "_cursor")
        .cloned()
        .collect();
    let link = |cursor: Option<&str>| {
        let mut p = kept.clone();
        if let Some(c) = cursor {
            p.push(("_cursor".into(), c.to_string()));
        }
        let qs = serde_urlencoded::to_string(&p).unwrap_or_default();
        if qs.is_empty() {
            format!("{base}/{}", ty.as_str())
        } else {
            format!("{base}/{}?{qs}", ty.as_str())
        }
    };
    let v = svc::search(&st, &user, ty, &pairs, &base, link).await?;
    Ok(respond(StatusCode::OK, &v))
}

async fn everything(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let pairs = pairs(q.as_deref())?;
    let v = svc::everything(&st, &user, &id, &pairs, &base_url(&st, &headers)).await?;
    Ok(respond(StatusCode::OK, &v))
}

fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

async fn kickoff(
    st: &AppState,
    user: &AuthUser,
    scope: export::Scope<'_>,
    q: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response> {
    let pairs = pairs(q)?;
    let id = export::kickoff(st, user, scope, prefers_async(headers), &pairs).await?;
    let location = format!("{}/$export-status/{id}", base_url(st, headers));
    let body = json!({ "resourceType": "OperationOutcome", "issue": [{ "severity": "information", "code": "informational", "diagnostics": "The export has started; poll the Content-Location URL." }] });
    let mut r = respond(StatusCode::ACCEPTED, &body);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    Ok(r)
}

async fn export_all(
    State(st): State<AppState>,
    user: AuthUser,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    kickoff(&st, &user, export::Scope::System, q.as_deref(), &headers).await
}

async fn export_patient(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    kickoff(
        &st,
        &user,
        export::Scope::Patient(&id),
        q.as_deref(),
        &headers,
    )
    .await
}

async fn export_group(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    kickoff(
        &st,
        &user,
        export::Scope::Group(&id),
        q.as_deref(),
        &headers,
    )
    .await
}

/// `GET /fhir/R4/Group/{id}`: a care team as the Group of its patients.
async fn group(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let v = crate::services::group::read(&st, &user, &id).await?;
    Ok(respond(StatusCode::OK, &v))
}

async fn export_status(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    Ok(
        match export::status(&st, &user, &id, &base_url(&st, &headers)).await? {
            export::Status::Running(progress) => {
                let mut r = StatusCode::ACCEPTED.into_response();
                let h = r.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&progress) {
                    h.insert("x-progress", v);
                }
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
                r
            }
            export::Status::Complete(manifest) => {
                let mut r = (StatusCode::OK, manifest.to_string()).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            export::Status::Failed => {
                return Err(AppError::Internal(anyhow::anyhow!("the export failed")));
            }
        },
    )
}

async fn export_cancel(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response> {
    export::cancel(&st, &user, &id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn export_file(
    State(st): State<AppState>,
    user: AuthUser,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response> {
    let bytes = export::file(&st, &user, &id, &name).await?;
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    Ok(r)
}

/// The CapabilityStatement (public, as FHIR clients read it first).
async fn metadata(State(st): State<AppState>, headers: HeaderMap) -> Response {
    respond(
        StatusCode::OK,
        &capability_statement(&base_url(&st, &headers)),
    )
}
