//! Prescriptions: draft → issued → cancelled, draft → cancelled, with the
//! allergy check on issue (SPEC §6).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::clinical::{self, Errors};
use domain::roles::Action;
use domain::states::{PrescriptionAction, PrescriptionStatus};
use serde::{Deserialize, Serialize};
use store::prescriptions::{NewPrescription, PrescriptionRow};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{encode_cursor, ApiJson, Later, OptionalJson, PageQuery};
use crate::routes::{audit_change, audit_read, check, illegal, require_patient, unknown_state};
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
    pub status: String,
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

#[utoipa::path(post, path = "/api/patients/{id}/prescriptions", tag = "prescriptions", security(("bearer" = [])), request_body = PrescriptionInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = PrescriptionView), (status = 401), (status = 403), (status = 404), (status = 422), (status = 429)))]
pub async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    body: Later<ApiJson<PrescriptionInput>>,
) -> Result<(StatusCode, Json<PrescriptionView>)> {
    user.require(Action::DraftPrescription)?;
    let ApiJson(req) = body.get()?;
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
    require_patient(&st, patient).await?;
    let mut tx = st.db.begin().await?;
    let row = store::prescriptions::insert(&mut tx, patient, user.id, &p).await?;
    audit_change(
        &mut tx,
        &user,
        "prescription.create",
        ("prescription", row.id),
        Some(patient),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PrescriptionListQuery {
    /// draft, issued or cancelled
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Parse a `created_at|id` cursor.
pub fn time_cursor(page: &PageQuery) -> Result<Option<(DateTime<Utc>, Uuid)>> {
    match page.cursor_text()? {
        None => Ok(None),
        Some(t) => {
            let bad = || AppError::validation("cursor", "is not a cursor this server issued");
            let (ts, id) = t.split_once('|').ok_or_else(bad)?;
            let ts = DateTime::parse_from_rfc3339(ts)
                .map_err(|_| bad())?
                .with_timezone(&Utc);
            Ok(Some((ts, Uuid::parse_str(id).map_err(|_| bad())?)))
        }
    }
}

pub fn make_time_cursor(t: DateTime<Utc>, id: Uuid) -> String {
    encode_cursor(&format!(
        "{}|{}",
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        id
    ))
}

#[utoipa::path(get, path = "/api/patients/{id}/prescriptions", tag = "prescriptions", security(("bearer" = [])), params(("id" = Uuid, Path), PrescriptionListQuery),
    responses((status = 200, body = PrescriptionPage), (status = 401), (status = 403), (status = 404)))]
pub async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    Query(q): Query<PrescriptionListQuery>,
) -> Result<Json<PrescriptionPage>> {
    user.require(Action::ReadPrescriptions)?;
    if let Some(s) = &q.status {
        if PrescriptionStatus::parse(s).is_none() {
            return Err(AppError::validation(
                "status",
                "must be draft, issued or cancelled",
            ));
        }
    }
    require_patient(&st, patient).await?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit();
    let mut rows = store::prescriptions::list_for_patient(
        &st.db,
        patient,
        q.status.as_deref(),
        time_cursor(&page)?,
        limit + 1,
    )
    .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| make_time_cursor(r.created_at, r.id))
    } else {
        None
    };
    audit_read(&st, &user, "prescription.list", None, Some(patient)).await?;
    Ok(Json(PrescriptionPage {
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/prescriptions/{id}", tag = "prescriptions", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = PrescriptionView), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PrescriptionView>> {
    user.require(Action::ReadPrescriptions)?;
    let row = store::prescriptions::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    audit_read(
        &st,
        &user,
        "prescription.read",
        Some(("prescription", id)),
        Some(row.patient_id),
    )
    .await?;
    Ok(Json(row.into()))
}

fn transition(row: &PrescriptionRow, action: PrescriptionAction) -> Result<()> {
    let status =
        PrescriptionStatus::parse(&row.status).ok_or_else(|| unknown_state("prescription"))?;
    status
        .apply(action)
        .map(|_| ())
        .map_err(|e| illegal("prescription", &row.status, e))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IssueInput {
    /// Why the prescriber issues despite a recorded allergy (stored and audited)
    pub override_reason: Option<String>,
}

#[utoipa::path(post, path = "/api/prescriptions/{id}/issue", tag = "prescriptions", security(("bearer" = [])), request_body = IssueInput, params(("id" = Uuid, Path)),
    responses((status = 200, body = PrescriptionView), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "Not a draft (`conflict`), or the medication conflicts with a recorded allergy (`allergy_conflict`)")))]
pub async fn issue(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<OptionalJson<IssueInput>>,
) -> Result<Json<PrescriptionView>> {
    user.require(Action::IssuePrescription)?;
    let OptionalJson(input) = body.get()?;
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
        &user,
        "prescription.issue",
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
    Ok(Json(issued.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CancelInput {
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/api/prescriptions/{id}/cancel", tag = "prescriptions", security(("bearer" = [])), request_body = CancelInput, params(("id" = Uuid, Path)),
    responses((status = 200, body = PrescriptionView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422, description = "reason is required")))]
pub async fn cancel(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<CancelInput>>,
) -> Result<Json<PrescriptionView>> {
    user.require(Action::CancelPrescription)?;
    let ApiJson(req) = body.get()?;
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
        &user,
        "prescription.cancel",
        ("prescription", id),
        Some(row.patient_id),
        Some(serde_json::json!({ "from": row.status })),
    )
    .await?;
    let cancelled = store::prescriptions::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    st.metrics.incr("prescription.cancelled");
    Ok(Json(cancelled.into()))
}
