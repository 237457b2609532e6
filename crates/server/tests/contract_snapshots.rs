//! Snapshots of what clients and auditors rely on: every problem document
//! the server can answer (status, code, title, detail, extra members,
//! headers that matter) and the list of audited actions. A change shows up
//! in review as a diff of `tests/snapshots/`; accept an intended one with
//! `INSTA_UPDATE=always cargo test -p server --test contract_snapshots`.

use axum::response::IntoResponse;
use domain::account::FieldError;
use domain::audit::AuditAction;
use serde_json::{json, Value};
use server::error::AppError;

async fn document(e: AppError) -> Value {
    let resp = e.into_response();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    json!({
        "status": status,
        "contentType": content_type,
        "retryAfter": retry_after,
        "body": body,
    })
}

#[tokio::test]
async fn problem_documents() {
    let cases = [
        AppError::Validation(vec![
            FieldError::new("email", "is required"),
            FieldError::new("password", "must be at least 12 characters"),
        ]),
        AppError::BadRequest("The body is not valid JSON (or not valid UTF-8).".into()),
        AppError::Unauthorized("Incorrect e-mail or password."),
        AppError::Forbidden("Only the author may edit a draft note.".into()),
        AppError::OutsideCareTeam {
            patient: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0042),
        },
        AppError::NotFound,
        AppError::Conflict {
            code: "allergy_conflict",
            detail: "Amoxicillin conflicts with the recorded allergy to penicillin.".into(),
            extra: Some(json!({ "allergy": "penicillin", "medication": "amoxicillin" })),
        },
        AppError::conflict("The note changed since it was read; reload it."),
        AppError::PreconditionRequired,
        AppError::PayloadTooLarge,
        AppError::UnsupportedMediaType,
        AppError::RateLimited { retry_after: 42 },
        AppError::AiRefused {
            reason: "dosing_or_prescribing",
            detail: "The assistant does not suggest doses.".into(),
        },
        AppError::AiUnavailable { retry_after: 30 },
        AppError::Unavailable("The audit trail could not be written.".into()),
        AppError::DbFault {
            kind: store::FaultKind::DiskFull,
            audit: false,
        },
        AppError::DbFault {
            kind: store::FaultKind::Connection,
            audit: true,
        },
        AppError::Timeout,
        AppError::Internal(anyhow::anyhow!("secret internals must not leak")),
    ];
    let mut docs = Vec::new();
    for e in cases {
        docs.push(document(e).await);
    }
    insta::assert_json_snapshot!(docs);
}

#[test]
fn audited_actions() {
    let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
    insta::assert_snapshot!(names.join("\n"));
}
