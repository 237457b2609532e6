//! The use cases of the product, one module per area. Every API handler
//! and every web page calls these functions, so a rule (who may do what,
//! what is validated, what is audited and counted) is written once.
//!
//! A service function takes the state, the signed-in actor and plain
//! inputs; it checks the permission first, then validates, then calls the
//! store with the change's audit event in the same transaction, then counts.
//! It returns the view types the API serializes and the web UI renders.
//!
//! Request bodies arrive as [`Body<T>`]: the API's extractor result, still
//! unopened, so that a forbidden request is answered 403 before its
//! malformed body is answered 400/422 (SPEC §5: authenticate, count,
//! authorize, validate). The web UI passes `Ok(form)`.

pub mod access;
pub mod account;
pub mod ai;
pub mod audit;
pub mod auth;
pub mod export;
pub mod fhir;
pub mod group;
pub mod hl7;
pub mod labs;
pub mod mfa;
pub mod notes;
pub mod ops;
pub mod overview;
pub mod patients;
pub mod prescriptions;
pub mod users;
pub mod vitals;

use domain::account::{Email, Password, PersonName};
use domain::audit::AuditAction;

use crate::error::AppError;

pub use crate::error::Result;

/// A request body as extracted, not yet opened (see the module comment).
pub type Body<T> = Result<T, AppError>;

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

/// Audit event pre-filled with the request's actor, request id and IP.
/// An event of a user's own sign-in, refresh or second factor, written
/// before (or without) an access token: actor and resource named at once.
pub fn own_event(
    action: AuditAction,
    outcome: &str,
    user: uuid::Uuid,
    role: &str,
    resource_type: &'static str,
    resource_id: uuid::Uuid,
) -> store::audit::AuditEvent {
    let mut ev = audit_event(None, action, outcome);
    ev.actor_id = Some(user);
    ev.actor_role = Some(role.to_string());
    ev.resource_type = Some(resource_type.into());
    ev.resource_id = Some(resource_id);
    ev
}

pub fn audit_event(
    actor: Option<&crate::auth::AuthUser>,
    action: AuditAction,
    outcome: &str,
) -> store::audit::AuditEvent {
    let mut ev = store::audit::AuditEvent::new(action.as_str(), outcome);
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
    action: AuditAction,
    resource: Option<(&str, uuid::Uuid)>,
    patient: Option<uuid::Uuid>,
) -> Result<(), AppError> {
    let mut ev = audit_event(Some(user), action, "success");
    if let Some((kind, id)) = resource {
        ev.resource_type = Some(kind.to_string());
        ev.resource_id = Some(id);
    }
    ev.patient_id = patient;
    record_durably(st, ev).await
}

/// Audit a read whose answer held these patients' data: one event per
/// distinct patient, so that "who saw this patient" finds searches and
/// worklists too, or one event without a patient when the answer held none.
/// The events are group-committed together.
pub async fn audit_read_patients(
    st: &crate::state::AppState,
    user: &crate::auth::AuthUser,
    action: AuditAction,
    patients: impl IntoIterator<Item = uuid::Uuid>,
) -> Result<(), AppError> {
    let mut set: std::collections::BTreeSet<Option<uuid::Uuid>> =
        patients.into_iter().map(Some).collect();
    if set.is_empty() {
        set.insert(None);
    }
    let shown = set.iter().flatten().count();
    let events = set.into_iter().map(|patient| {
        let mut ev = audit_event(Some(user), action, "success");
        ev.patient_id = patient;
        ev.detail = Some(serde_json::json!({ "patientsShown": shown }).to_string());
        record_durably(st, ev)
    });
    futures::future::try_join_all(events).await?;
    Ok(())
}

/// Queue `ev` for the group-committing writer and wait until it is durable;
/// a failure is counted and becomes a 503, so nothing unaudited is released.
pub async fn record_durably(
    st: &crate::state::AppState,
    ev: store::audit::AuditEvent,
) -> Result<(), AppError> {
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
    action: AuditAction,
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

/// 404 unless the patient exists; 403 `outside-care-team` unless the user
/// may use the patient's chart (the one check: [`access::require_care`]).
pub async fn require_patient(
    st: &crate::state::AppState,
    user: &crate::auth::AuthUser,
    id: uuid::Uuid,
) -> Result<(), AppError> {
    access::require_care(st, user, id).await.map(|_| ())
}

/// Validation errors collected by `domain::clinical::Errors` as a 422.
pub fn check(errors: domain::clinical::Errors) -> Result<(), AppError> {
    errors.finish().map_err(AppError::Validation)
}

/// One page of a keyset-paged list: `rows` was fetched with `limit + 1`, so
/// an extra row means there is a next page, whose cursor `cursor` makes from
/// the last row shown.
pub fn page<R, V>(
    mut rows: Vec<R>,
    limit: i64,
    cursor: impl Fn(&R) -> String,
    view: impl FnMut(R) -> V,
) -> (Vec<V>, Option<String>) {
    let next = if rows.len() as i64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last()
            .map(|r| crate::extract::encode_cursor(&cursor(r)))
    } else {
        None
    };
    (rows.into_iter().map(view).collect(), next)
}

/// The timestamp of a `created_at|id` cursor row.
pub fn time_key(t: chrono::DateTime<chrono::Utc>, id: uuid::Uuid) -> String {
    format!(
        "{}|{}",
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        id
    )
}

/// Parse a `created_at|id` cursor.
pub fn time_cursor(
    page: &crate::extract::PageQuery,
) -> Result<Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>> {
    match page.cursor_text()? {
        None => Ok(None),
        Some(t) => {
            let bad = || AppError::validation("cursor", "is not a cursor this server issued");
            let (ts, id) = t.split_once('|').ok_or_else(bad)?;
            let ts = chrono::DateTime::parse_from_rfc3339(ts)
                .map_err(|_| bad())?
                .with_timezone(&chrono::Utc);
            Ok(Some((ts, uuid::Uuid::parse_str(id).map_err(|_| bad())?)))
        }
    }
}
