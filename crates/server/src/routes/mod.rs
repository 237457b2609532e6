//! HTTP handlers, grouped by resource.

pub mod ai;
pub mod audit;
pub mod auth;
pub mod notes;
pub mod overview;

pub mod labs;
pub mod ops;
pub mod patients;
pub mod prescriptions;
pub mod users;

use domain::account::{Email, Password, PersonName};

use crate::error::AppError;

/// A new account's e-mail, password and name, every error reported at once.
pub fn parse_account(
    email: &str,
    password: &str,
    name: &str,
) -> Result<(Email, Password, PersonName), AppError> {
    match (
        Email::parse(email),
        Password::parse(password),
        PersonName::parse("name", name),
    ) {
        (Ok(e), Ok(p), Ok(n)) => Ok((e, p, n)),
        (e, p, n) => Err(AppError::Validation(
            [e.err(), p.err(), n.err()].into_iter().flatten().collect(),
        )),
    }
}

/// A 409 for an illegal state-machine step, naming the current state.
pub fn illegal(resource: &str, current: &str, e: domain::states::IllegalTransition) -> AppError {
    AppError::Conflict {
        code: "conflict",
        detail: format!("The {resource} is {current}: {e}."),
        extra: Some(serde_json::json!({ "currentState": current })),
    }
}

/// A stored state this release does not know (a newer schema's data?).
pub fn unknown_state(resource: &str) -> AppError {
    AppError::Internal(anyhow::anyhow!("unknown {resource} status in the database"))
}

/// Audit event pre-filled with the request's actor, request id and IP.
pub fn audit_event(
    actor: Option<&crate::auth::AuthUser>,
    action: &str,
    outcome: &str,
) -> store::audit::AuditEvent {
    let mut ev = store::audit::AuditEvent::new(action, outcome);
    if let Some(a) = actor {
        ev.actor_id = Some(a.id);
        ev.actor_role = Some(a.role.as_str().to_string());
    }
    if let Some(ctx) = crate::context::current() {
        ev.request_id = Some(ctx.request_id.clone());
        ev.client_ip = Some(ctx.client_ip.to_string());
    }
    ev
}

/// Record a read of patient data and wait until the event is durable (group
/// commit). If the audit trail cannot be written, the data is not released.
pub async fn audit_read(
    st: &crate::state::AppState,
    user: &crate::auth::AuthUser,
    action: &str,
    resource: Option<(&str, uuid::Uuid)>,
    patient: Option<uuid::Uuid>,
) -> Result<(), AppError> {
    let mut ev = audit_event(Some(user), action, "success");
    if let Some((kind, id)) = resource {
        ev.resource_type = Some(kind.to_string());
        ev.resource_id = Some(id);
    }
    ev.patient_id = patient;
    st.audit.record(ev).await.map_err(|e| {
        st.metrics.incr("audit.write_failure");
        tracing::error!(error = %e, "audit write failed; refusing to release data");
        AppError::Unavailable("The audit trail could not be written, so the request was not completed. Try again shortly.".into())
    })
}

/// Append the audit event of a change inside the change's transaction.
pub async fn audit_change(
    tx: &mut store::Tx,
    user: &crate::auth::AuthUser,
    action: &str,
    resource: (&str, uuid::Uuid),
    patient: Option<uuid::Uuid>,
    detail: Option<serde_json::Value>,
) -> Result<(), AppError> {
    let mut ev = audit_event(Some(user), action, "success");
    ev.resource_type = Some(resource.0.to_string());
    ev.resource_id = Some(resource.1);
    ev.patient_id = patient;
    ev.detail = detail.map(|d| d.to_string());
    store::audit::append(tx, &[ev]).await?;
    Ok(())
}

/// 404 unless the patient exists.
pub async fn require_patient(st: &crate::state::AppState, id: uuid::Uuid) -> Result<(), AppError> {
    if store::patients::exists(&st.db, id).await? {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

/// Validation errors collected by `domain::clinical::Errors` as a 422.
pub fn check(errors: domain::clinical::Errors) -> Result<(), AppError> {
    errors.finish().map_err(AppError::Validation)
}
