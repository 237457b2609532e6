//! FHIR R4 (4.0.1) under `/fhir/R4`: read, search and `Patient/$everything`
//! in `application/fhir+json`. Authentication, rate limits (reads), roles
//! and the audit are the API's own (see [`crate::services::fhir`]); every
//! error leaves as an OperationOutcome (see [`as_outcome`]).

pub mod params;
pub mod resources;
pub mod vitals;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::services::export;
use crate::services::fhir as svc;
use crate::state::AppState;
use params::ResourceType;

pub const PREFIX: &str = "/fhir/R4";
pub const CONTENT_TYPE: &str = "application/fhir+json";

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

/// A FHIR JSON response.
pub fn respond(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
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

/// The CapabilityStatement: exactly the types, interactions, parameters and
/// operations implemented here. Public, as FHIR clients read it first.
async fn metadata(State(st): State<AppState>, headers: HeaderMap) -> Response {
    respond(
        StatusCode::OK,
        &capability_statement(&base_url(&st, &headers)),
    )
}

pub fn capability_statement(base: &str) -> Value {
    let mut resources: Vec<Value> = ResourceType::ALL
        .into_iter()
        .map(|t| {
            let search: Vec<Value> = params::COMMON
                .iter()
                .chain(t.params())
                .map(|(n, ty)| json!({ "name": n, "type": ty }))
                .collect();
            let mut r = json!({
                "type": t.as_str(),
                "interaction": [{ "code": "read" }, { "code": "search-type" }],
                "searchParam": search,
            });
            if t == ResourceType::Patient {
                r["operation"] = json!([
                    { "name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" },
                    { "name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export" },
                ]);
            }
            r
        })
        .collect();
    // Care teams: read only (no search), and the group-level export.
    resources.push(json!({
        "type": "Group",
        "interaction": [{ "code": "read" }],
        "operation": [{ "name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export" }],
    }));
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "publisher": "Dr Amal Clinical OS",
        "kind": "instance",
        "software": { "name": "Dr Amal Clinical OS", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Dr Amal Clinical OS FHIR R4 API (read and search)", "url": base },
        "fhirVersion": "4.0.1",
        "format": [CONTENT_TYPE, "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Send `Authorization: Bearer <accessToken>` from POST /api/auth/signin. Search results page with `_count` (default 50, at most 200) and the Bundle's `next` link. Unsupported search parameters are refused with 400.",
            "security": { "cors": false, "description": "Bearer access tokens of the JSON API; the API's roles, rate limits and audit apply." },
            "resource": resources,
            "operation": [{ "name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export" }],
        }],
    })
}

/// FHIR's issue type for an HTTP status.
fn issue_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid",
        401 => "login",
        403 => "forbidden",
        404 => "not-found",
        405 | 406 | 415 => "not-supported",
        409 => "conflict",
        413 => "too-costly",
        428 => "required",
        429 => "throttled",
        503 => "transient",
        _ => "exception",
    }
}

/// Rewrite a problem document answered on `/fhir` as an OperationOutcome
/// (same status and headers), so FHIR clients get FHIR errors from every
/// layer: authentication, rate limits, routing and the services.
pub async fn as_outcome(resp: Response) -> Response {
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !is_problem {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .unwrap_or_default();
    let problem: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = |k: &str| problem[k].as_str().unwrap_or_default().to_string();
    let code = issue_code(parts.status);
    let severity = if parts.status.is_server_error() {
        "fatal"
    } else {
        "error"
    };
    let mut issues = vec![json!({
        "severity": severity,
        "code": code,
        "details": { "coding": [{ "system": "https://dr-amal.invalid/problems", "code": text("code") }] },
        "diagnostics": format!("{} (request id {})", text("detail"), text("requestId")),
    })];
    if let Some(errors) = problem["errors"].as_array() {
        for e in errors {
            issues.push(json!({
                "severity": "error",
                "code": "invalid",
                "diagnostics": format!("{}: {}", e["field"].as_str().unwrap_or_default(), e["message"].as_str().unwrap_or_default()),
            }));
        }
    }
    let body = json!({ "resourceType": "OperationOutcome", "issue": issues });
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}
