//! FHIR R4 (4.0.1) in `application/fhir+json`: the resources made from our
//! rows ([`resources`], [`vitals`]), the search parameters ([`params`]), the
//! CapabilityStatement, and every error as an OperationOutcome
//! ([`as_outcome`]). No handlers and no application state: the services and
//! the handlers (`crate::routes::fhir`) build on this, and the core
//! middleware uses [`as_outcome`] for every `/fhir` answer.

pub mod params;
pub mod resources;
pub mod vitals;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use params::ResourceType;

pub const PREFIX: &str = "/fhir/R4";
pub const CONTENT_TYPE: &str = "application/fhir+json";

/// A FHIR JSON response.
pub fn respond(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

/// The CapabilityStatement: exactly the types, interactions, parameters and
/// operations implemented here.
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
