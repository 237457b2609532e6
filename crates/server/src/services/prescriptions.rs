//! Prescriptions: draft → issued → cancelled, draft → cancelled, with the
//! allergy check on issue (SPEC §6).

use chrono::{DateTime, Utc};
use domain::audit::AuditAction;
use domain::clinical::{self, Errors};
use domain::roles::Action;
use domain::states::{PrescriptionAction, PrescriptionStatus};
use serde::{Deserialize, Serialize};
use store::prescriptions::{NewPrescription, PrescriptionRow};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::PageQuery;
use crate::services::{
    audit_change, audit_read, check, illegal, page, require_patient, time_cursor, time_key, Body,
};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct PrescriptionInput {
    pub medication: String,
    pub dose: String,
    pub route: String,
    pub frequency: String,
    pub quantity: i64,
    #[serde(default)]
    pub refills: i64,
    pub instructions: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub created_by: Uuid,
    pub medication: String,
    pub dose: String,
    pub route: String,
    pub frequency: String,
    pub quantity: i64,
    pub refills: i64,
    pub instructions: Option<String>,
    /// draft, issued or cancelled
    #[schema(value_type = String, example = "issued")]
    pub status: PrescriptionStatus,
    pub issued_by: Option<Uuid>,
    pub issued_at: Option<DateTime<Utc>>,
    pub override_reason: Option<String>,
    pub cancelled_by: Option<Uuid>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PrescriptionRow> for PrescriptionView {
    fn from(p: PrescriptionRow) -> Self {
        PrescriptionView {
            id: p.id,
            patient_id: p.patient_id,
            created_by: p.created_by,
            medication: p.medication,
            dose: p.dose,
            route: p.route,
            frequency: p.frequency,
            quantity: p.quantity,
            refills: p.refills,
            instructions: p.instructions,
            status: p.status,
            issued_by: p.issued_by,
            issued_at: p.issued_at,
            override_reason: p.override_reason,
            cancelled_by: p.cancelled_by,
            cancelled_at: p.cancelled_at,
            cancel_reason: p.cancel_reason,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionPage {
    pub items: Vec<PrescriptionView>,
    pub next_cursor: Option<String>,
}

/// A new draft prescription.
pub async fn create(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    body: Body<PrescriptionInput>,
) -> Result<PrescriptionView> {
    user.require(Action::DraftPrescription)?;
    let req = body?;
    let mut e = Errors::default();
    let p = NewPrescription {
        medication: e.take(clinical::text(
            "medication",
            &req.medication,
            200,
            true,
            true,
        )),
        dose: e.take(clinical::text("dose", &req.dose, 100, true, true)),
        route: e.take(clinical::text("route", &req.route, 50, true, true)),
        frequency: e.take(clinical::text("frequency", &req.frequency, 100, true, true)),
        quantity: req.quantity,
        refills: req.refills,
        instructions: e.take(clinical::opt_text(
            "instructions",
            req.instructions.as_deref(),
            2000,
            false,
        )),
    };
    if !(1..=10_000).contains(&req.quantity) {
        e.0.push(domain::account::FieldError::new(
            "quantity",
            "must be between 1 and 10000",
        ));
    }
    if !(0..=12).contains(&req.refills) {
        e.0.push(domain::account::FieldError::new(
            "refills",
            "must be between 0 and 12",
        ));
    }
    check(e)?;
    require_patient(st, patient).await?;
    let mut tx = st.db.begin().await?;
    let row = store::prescriptions::insert(&mut tx, patient, user.id, &p).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::PrescriptionCreate,
        ("prescription", row.id),
        Some(patient),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(row.into())
}

/// A patient's prescriptions, newest first, optionally of one status.
pub async fn list(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    status: Option<&str>,
    page_q: &PageQuery,
) -> Result<PrescriptionPage> {
    user.require(Action::ReadPrescriptions)?;
    let status =
        match status {
            None => None,
            Some(s) => Some(PrescriptionStatus::parse(s).ok_or_else(|| {
                AppError::validation("status", "must be draft, issued or cancelled")
            })?),
        };
    require_patient(st, patient).await?;
    let limit = page_q.limit();
    let rows = store::prescriptions::list_for_patient(
        &st.db,
        patient,
        status,
        time_cursor(page_q)?,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |r| time_key(r.created_at, r.id), Into::into);
    audit_read(st, user, AuditAction::PrescriptionList, None, Some(patient)).await?;
    Ok(PrescriptionPage { items, next_cursor })
}

/// One prescription.
pub async fn get(st: &AppState, user: &AuthUser, id: Uuid) -> Result<PrescriptionView> {
    user.require(Action::ReadPrescriptions)?;
    let row = store::prescriptions::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    audit_read(
        st,
        user,
        AuditAction::PrescriptionRead,
        Some(("prescription", id)),
        Some(row.patient_id),
    )
    .await?;
    Ok(row.into())
}

fn transition(row: &PrescriptionRow, action: PrescriptionAction) -> Result<()> {
    row.status
        .apply(action)
        .map(|_| ())
        .map_err(|e| illegal("prescription", row.status.as_str(), e))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IssueInput {
    /// Why the prescriber issues despite a recorded allergy (stored and audited)
    pub override_reason: Option<String>,
}

/// Issue a draft, checking it against the patient's recorded allergies.
pub async fn issue(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<IssueInput>,
) -> Result<PrescriptionView> {
    user.require(Action::IssuePrescription)?;
    let input = body?;
    let override_reason = clinical::opt_text(
        "overrideReason",
        input.override_reason.as_deref(),
        1000,
        false,
    )?;
    let mut tx = st.db.begin().await?;
    let row = store::prescriptions::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    transition(&row, PrescriptionAction::Issue)?;
    let allergies = store::patients::allergies_tx(&mut tx, row.patient_id).await?;
    let conflict = domain::allergy::find_conflict(
        &row.medication,
        allergies.iter().map(|a| a.substance.as_str()),
    );
    let mut detail = serde_json::json!({});
    if let Some(c) = &conflict {
        let allergy_id = allergies
            .iter()
            .find(|a| a.substance == c.allergy)
            .map(|a| a.id);
        match &override_reason {
            None => {
                return Err(AppError::Conflict {
                    code: "allergy_conflict",
                    detail: format!("{} conflicts with the recorded allergy to {}: {}. Issue with an overrideReason only if the benefit outweighs the risk.", row.medication, c.allergy, c.explanation),
                    extra: Some(serde_json::json!({ "allergy": c.allergy, "allergyId": allergy_id, "medication": row.medication, "kind": c.kind, "drugClass": c.drug_class })),
                });
            }
            Some(_) => {
                detail = serde_json::json!({ "allergyOverride": true, "allergyId": allergy_id, "kind": c.kind });
            }
        }
    }
    // An override reason without a conflict is not stored: nothing was overridden.
    let stored_reason = conflict.as_ref().and(override_reason.as_deref());
    if !store::prescriptions::issue(&mut tx, id, user.id, stored_reason).await? {
        return Err(AppError::conflict(
            "The prescription changed while it was being issued; reload it.",
        ));
    }
    audit_change(
        &mut tx,
        user,
        AuditAction::PrescriptionIssue,
        ("prescription", id),
        Some(row.patient_id),
        Some(detail),
    )
    .await?;
    let issued = store::prescriptions::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    st.metrics.incr("prescription.issued");
    if stored_reason.is_some() {
        st.metrics.incr("prescription.allergy_override");
        tracing::warn!(prescriptionId = %id, "prescription issued over an allergy conflict");
    }
    Ok(issued.into())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CancelInput {
    pub reason: Option<String>,
}

/// Cancel a draft or an issued prescription, with a reason.
pub async fn cancel(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<CancelInput>,
) -> Result<PrescriptionView> {
    user.require(Action::CancelPrescription)?;
    let req = body?;
    let reason = clinical::text(
        "reason",
        req.reason.as_deref().unwrap_or(""),
        1000,
        true,
        false,
    )?;
    let mut tx = st.db.begin().await?;
    let row = store::prescriptions::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    transition(&row, PrescriptionAction::Cancel)?;
    if !store::prescriptions::cancel(&mut tx, id, user.id, &reason).await? {
        return Err(AppError::conflict(
            "The prescription changed while it was being cancelled; reload it.",
        ));
    }
    audit_change(
        &mut tx,
        user,
        AuditAction::PrescriptionCancel,
        ("prescription", id),
        Some(row.patient_id),
        Some(serde_json::json!({ "from": row.status.as_str() })),
    )
    .await?;
    let cancelled = store::prescriptions::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    st.metrics.incr("prescription.cancelled");
    Ok(cancelled.into())
}
