//! One error type, one mapping to RFC 9457 problem documents (SPEC §4).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::account::FieldError;
use serde_json::{json, Value};

use crate::context;

pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unauthorized")]
    Unauthorized(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A clinician asked for the chart of a patient outside their care
    /// teams, with no break-glass session (problem type `outside-care-team`).
    #[error("outside care team")]
    OutsideCareTeam { patient: uuid::Uuid },
    #[error("not found")]
    NotFound,
    /// A 409 with a stable code (`conflict`, `allergy_conflict`, …) and
    /// optional extra members for the problem document.
    #[error("conflict: {detail}")]
    Conflict {
        code: &'static str,
        detail: String,
        extra: Option<Value>,
    },
    /// A 422 with its own code for a field that is well-formed but needs
    /// the client's decision (e.g. `medication_unconfirmed` with the
    /// dictionary's suggestions in `extra`).
    #[error("unprocessable: {}", .0.detail)]
    Unprocessable(Box<Unprocessable>),
    #[error("precondition required")]
    PreconditionRequired,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("rate limited")]
    RateLimited { retry_after: u64 },
    #[error("AI refused: {reason}")]
    AiRefused {
        reason: &'static str,
        detail: String,
    },
    #[error("AI unavailable")]
    AiUnavailable { retry_after: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A database fault (down, full, read-only, connection lost) or an audit
    /// event that could not be made durable: 503 with `Retry-After`, never
    /// a 500, so clients retry and alerts do not count it as a bug.
    #[error("database unavailable: {kind}")]
    DbFault { kind: store::FaultKind, audit: bool },
    #[error("request timed out")]
    Timeout,
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// The body of [`AppError::Unprocessable`] (boxed: it is rare and large).
#[derive(Debug)]
pub struct Unprocessable {
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub extra: Option<Value>,
}

impl AppError {
    pub fn validation(
        field: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> AppError {
        AppError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn conflict(detail: impl Into<String>) -> AppError {
        AppError::Conflict {
            code: "conflict",
            detail: detail.into(),
            extra: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Validation(_) | AppError::AiRefused { .. } | AppError::Unprocessable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::OutsideCareTeam { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::AiUnavailable { .. }
            | AppError::Unavailable(_)
            | AppError::DbFault { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Validation(_) => "validation_failed",
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::OutsideCareTeam { .. } => "outside_care_team",
            AppError::NotFound => "not_found",
            AppError::Conflict { code, .. } => code,
            AppError::Unprocessable(u) => u.code,
            AppError::PreconditionRequired => "precondition_required",
            AppError::PayloadTooLarge => "payload_too_large",
            AppError::UnsupportedMediaType => "unsupported_media_type",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::AiRefused { .. } => "ai_refused",
            AppError::AiUnavailable { .. } => "ai_unavailable",
            AppError::Unavailable(_) | AppError::DbFault { .. } => "service_unavailable",
            AppError::Timeout => "request_timeout",
            AppError::Internal(_) => "internal_error",
        }
    }

    /// The problem's human-readable detail (also shown by the web UI).
    pub fn detail(&self) -> String {
        match self {
            AppError::Validation(_) => "One or more fields are invalid.".into(),
            AppError::BadRequest(d) | AppError::Forbidden(d) | AppError::Unavailable(d) => d.clone(),
            AppError::Unauthorized(d) => (*d).into(),
            AppError::OutsideCareTeam { .. } => "This patient is not in any of your care teams. You see their demographics only; for an emergency, use break-glass access (audited and reviewed).".into(),
            AppError::NotFound => "No such resource.".into(),
            AppError::Conflict { detail, .. } => detail.clone(),
            AppError::Unprocessable(u) => u.detail.clone(),
            AppError::PreconditionRequired => {
                "This update needs the resource's current version in an If-Match header (or `version` in the body).".into()
            }
            AppError::PayloadTooLarge => "The request body is larger than 1 MiB.".into(),
            AppError::UnsupportedMediaType => "Send the body as application/json.".into(),
            AppError::RateLimited { retry_after } => {
                format!("Too many requests; try again in {retry_after} seconds.")
            }
            AppError::AiRefused { detail, .. } => detail.clone(),
            AppError::AiUnavailable { retry_after } => format!(
                "The AI assistant is unavailable right now; try again in {retry_after} seconds or write the note by hand."
            ),
            AppError::Timeout => "The request took too long and was stopped.".into(),
            AppError::DbFault { audit: true, .. } => {
                "The audit trail cannot be written right now, so the request was not completed. Try again shortly.".into()
            }
            AppError::DbFault { .. } => {
                "The database is unavailable right now, so the request was not completed. Try again shortly.".into()
            }
            // Never leak internals: the cause is logged with the request id.
            AppError::Internal(_) => {
                "Something went wrong on our side. The request id identifies it in the server log.".into()
            }
        }
    }

    fn title(&self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Error")
    }
}

/// Build a problem document response.
pub fn problem(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: &str,
    extra: Option<Value>,
) -> Response {
    let mut body = json!({
        "type": format!("https://dr-amal.invalid/problems/{}", code.replace('_', "-")),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
        "requestId": context::request_id(),
    });
    if let (Some(Value::Object(extra)), Value::Object(obj)) = (extra, &mut body) {
        for (k, v) in extra {
            obj.insert(k, v);
        }
    }
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

fn field_errors(errors: &[FieldError]) -> Value {
    errors
        .iter()
        .map(|e| json!({"field": e.field, "message": e.message}))
        .collect()
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let AppError::Internal(e) = &self {
            tracing::error!(error = %e, "unexpected error");
        }
        let extra = match &self {
            AppError::Validation(errors) => Some(json!({ "errors": field_errors(errors) })),
            AppError::Conflict { extra, .. } => extra.clone(),
            AppError::OutsideCareTeam { patient } => {
                // Audited by the request layer, whatever carried the id.
                crate::context::refused_patient(*patient);
                Some(json!({
                "patientId": patient,
                "breakGlass": format!("/api/patients/{patient}/break-glass"),
                }))
            }
            AppError::Unprocessable(u) => {
                let mut v = u.extra.clone().unwrap_or_else(|| json!({}));
                if let Value::Object(o) = &mut v {
                    o.insert("errors".into(), field_errors(&u.errors));
                }
                Some(v)
            }
            AppError::AiRefused { reason, .. } => Some(json!({ "reason": reason })),
            _ => None,
        };
        let mut resp = problem(status, self.code(), self.title(), &self.detail(), extra);
        let retry = match &self {
            AppError::RateLimited { retry_after } | AppError::AiUnavailable { retry_after } => {
                Some(*retry_after)
            }
            AppError::Timeout | AppError::Unavailable(_) => Some(5),
            AppError::DbFault { kind, .. } => Some(retry_after(*kind)),
            _ => None,
        };
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if matches!(self, AppError::Unauthorized(_)) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Seconds a client should wait before retrying after a database fault:
/// longer where an operator must act (space, permissions), short where the
/// database is restarting or a connection was lost.
pub fn retry_after(kind: store::FaultKind) -> u64 {
    use store::FaultKind as K;
    match kind {
        K::DiskFull | K::ReadOnly | K::CantOpen => 10,
        K::Audit | K::Io | K::Resources => 5,
        K::Busy | K::Timeout | K::Connection | K::Shutdown | K::Closed => 2,
    }
}

impl From<store::StoreError> for AppError {
    fn from(e: store::StoreError) -> Self {
        let audit = matches!(e, store::StoreError::AuditUnavailable { .. });
        if let Some(kind) = e.fault() {
            // Logged here, inside the request's span, so the cause is
            // findable by request id; the client sees no internals.
            tracing::error!(fault = kind.as_str(), audit, error = %e, "database fault");
            if let Some(ctx) = context::current() {
                ctx.set_db_fault(kind, audit);
            }
            return AppError::DbFault { kind, audit };
        }
        match e {
            store::StoreError::NotFound => AppError::NotFound,
            store::StoreError::Conflict(d) => AppError::conflict(d),
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// `?` on an `anyhow::Error` (the rate limiter, helpers) keeps a database
/// fault a 503: the store error inside is found and mapped as above.
impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<store::StoreError>() {
            Ok(se) => AppError::from(se),
            Err(e) => AppError::Internal(e),
        }
    }
}

impl From<FieldError> for AppError {
    fn from(e: FieldError) -> Self {
        AppError::Validation(vec![e])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use store::{FaultKind, StoreError};

    #[test]
    fn database_faults_are_503_with_retry_after_and_no_internals() {
        let e = AppError::from(StoreError::Unavailable {
            kind: FaultKind::DiskFull,
            detail: "error returned from database: (code: 13) database or disk is full".into(),
        });
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "service_unavailable");
        assert!(!e.detail().contains("code"));
        let r = e.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "10");

        let e = AppError::from(StoreError::AuditUnavailable {
            kind: FaultKind::Audit,
        });
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.detail().contains("audit"));
    }

    #[test]
    fn a_fault_behind_anyhow_is_still_a_fault() {
        let inner = StoreError::Unavailable {
            kind: FaultKind::Timeout,
            detail: "pool timed out".into(),
        };
        let e = AppError::from(anyhow::Error::new(inner));
        assert!(matches!(
            e,
            AppError::DbFault {
                kind: FaultKind::Timeout,
                audit: false
            }
        ));
        let e = AppError::from(anyhow::anyhow!("something else"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            AppError::from(StoreError::Conflict("x".into())).status(),
            409
        );
    }
}
