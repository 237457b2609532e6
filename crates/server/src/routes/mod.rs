//! HTTP handlers, grouped by resource.

pub mod audit;
pub mod auth;
pub mod ops;
pub mod users;

use domain::account::FieldError;

use crate::error::AppError;

/// Collect field errors: `Ok` only when every parse succeeded.
pub fn all_valid(errors: Vec<Option<FieldError>>) -> Result<(), AppError> {
    let errs: Vec<FieldError> = errors.into_iter().flatten().collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errs))
    }
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
