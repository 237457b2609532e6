//! Lab results: recorded with a LOINC code, flagged by the server from its
//! reference table, reviewed by providers, and followed as a trend.

use chrono::{DateTime, Utc};
use domain::audit::AuditAction;
use domain::clinical::{self, Errors};
use domain::labs::LabFlag;
use domain::roles::Action;
use serde::{Deserialize, Serialize};
use store::labs::{LabRow, NewLab};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::PageQuery;
use crate::services::{
    audit_change, audit_read, check, page, require_patient, time_cursor, time_key, Body,
};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabInput {
    /// LOINC code, e.g. 2345-7
    #[schema(max_length = 10, pattern = r"^[0-9]{1,8}-[0-9]$")]
    pub code: String,
    /// Required unless the code is in the reference table (then it
    /// defaults to the table's name)
    #[schema(required = true, value_type = String, min_length = 1, max_length = 200, pattern = "amal:required-line")]
    pub name: Option<String>,
    pub value: f64,
    #[schema(min_length = 1, max_length = 40, pattern = "amal:required-line")]
    pub unit: String,
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    pub collected_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub code: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    /// normal, low, high, critical_low, critical_high, or null when no range is known
    #[schema(value_type = Option<String>)]
    pub flag: Option<LabFlag>,
    /// Why the result is not flagged (e.g. a unit the table cannot convert)
    pub warning: Option<String>,
    pub collected_at: DateTime<Utc>,
    pub recorded_by: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    /// The reviewer's comment
    pub review_comment: Option<String>,
    /// What the reviewer did (e.g. "patient called")
    pub review_action: Option<String>,
}

impl From<LabRow> for LabView {
    fn from(l: LabRow) -> Self {
        LabView {
            id: l.id,
            patient_id: l.patient_id,
            code: l.code,
            name: l.name,
            value: l.value,
            unit: l.unit,
            reference_low: l.reference_low,
            reference_high: l.reference_high,
            flag: l.flag,
            warning: l.warning,
            collected_at: l.collected_at,
            recorded_by: l.recorded_by,
            recorded_at: l.recorded_at,
            reviewed_by: l.reviewed_by,
            reviewed_at: l.reviewed_at,
            review_comment: l.review_comment,
            review_action: l.review_action,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabPage {
    pub items: Vec<LabView>,
    pub next_cursor: Option<String>,
}

/// A LOINC code: digits, a hyphen and a check digit.
pub fn loinc(raw: &str) -> std::result::Result<String, domain::account::FieldError> {
    let s = raw.trim();
    let ok = s.len() <= 10
        && s.split_once('-').is_some_and(|(a, b)| {
            !a.is_empty()
                && a.chars().all(|c| c.is_ascii_digit())
                && b.len() == 1
                && b.chars().all(|c| c.is_ascii_digit())
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(domain::account::FieldError::new(
            "code",
            "must be a LOINC code such as 2345-7",
        ))
    }
}

/// Validate and interpret a result (flag and range from the reference table).
pub fn parse_lab(req: &LabInput) -> Result<NewLab> {
    let mut e = Errors::default();
    let code = e.take(loinc(&req.code));
    let table = domain::labs::reference(&code);
    let name = match (&req.name, table) {
        (Some(n), _) => e.take(clinical::text("name", n, 200, true, true)),
        (None, Some(t)) => t.name.clone(),
        (None, None) => e.take(clinical::text("name", "", 200, true, true)),
    };
    let unit = e.take(clinical::text("unit", &req.unit, 40, true, true));
    if !req.value.is_finite() {
        e.0.push(domain::account::FieldError::new(
            "value",
            "must be a number",
        ));
    }
    if let (Some(lo), Some(hi)) = (req.reference_low, req.reference_high) {
        if lo > hi {
            e.0.push(domain::account::FieldError::new(
                "referenceLow",
                "must not exceed referenceHigh",
            ));
        }
    }
    if req.collected_at > Utc::now() + chrono::Duration::minutes(5) {
        e.0.push(domain::account::FieldError::new(
            "collectedAt",
            "must not be in the future",
        ));
    }
    check(e)?;
    let i = domain::labs::interpret(
        &code,
        req.value,
        &unit,
        req.reference_low,
        req.reference_high,
    );
    Ok(NewLab {
        code,
        name,
        value: req.value,
        unit,
        reference_low: i.reference_low,
        reference_high: i.reference_high,
        flag: i.flag,
        warning: i.warning,
        collected_at: chrono::SubsecRound::trunc_subsecs(req.collected_at, 6),
    })
}

/// The unit the reference table expects for the result's code when the
/// typed one neither matches nor converts (the web form asks "did you mean
/// …?"; the API stores such a result unflagged with its warning).
pub fn unit_question(req: &LabInput) -> Option<&'static str> {
    domain::labs::unit_suggestion(&req.code, &req.unit)
}

/// Record a result; the server flags it from its reference table.
pub async fn create(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    body: Body<LabInput>,
) -> Result<LabView> {
    user.require(Action::RecordLab)?;
    let req = body?;
    let lab = parse_lab(&req)?;
    require_patient(st, user, patient).await?;
    let mut tx = st.db.begin().await?;
    let row = store::labs::insert(&mut tx, patient, user.id, &lab).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::LabCreate,
        ("lab", row.id),
        Some(patient),
        Some(serde_json::json!({ "code": row.code, "flag": row.flag })),
    )
    .await?;
    tx.commit().await?;
    if row.flag.is_some_and(LabFlag::is_critical) {
        st.metrics.incr("lab.critical_recorded");
        tracing::warn!(labId = %row.id, patientId = %patient, "critical lab result recorded");
    }
    Ok(row.into())
}

/// A patient's results, newest first, optionally of one LOINC code.
pub async fn list(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    code: Option<&str>,
    page_q: &PageQuery,
) -> Result<LabPage> {
    user.require(Action::ReadLabs)?;
    let code = code.map(loinc).transpose()?;
    require_patient(st, user, patient).await?;
    let limit = page_q.limit();
    let rows = store::labs::list_for_patient(
        &st.db,
        patient,
        code.as_deref(),
        time_cursor(page_q)?,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |r| time_key(r.collected_at, r.id), Into::into);
    audit_read(st, user, AuditAction::LabList, None, Some(patient)).await?;
    Ok(LabPage { items, next_cursor })
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    pub id: Uuid,
    pub value: f64,
    pub unit: String,
    #[schema(value_type = Option<String>)]
    pub flag: Option<LabFlag>,
    pub collected_at: DateTime<Utc>,
    /// The reference range the result was flagged against, when known.
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trend {
    pub code: String,
    pub name: Option<String>,
    /// Oldest first; the most recent 200 results
    pub points: Vec<TrendPoint>,
}

/// The most recent 200 results of one code, oldest first.
pub async fn trend(st: &AppState, user: &AuthUser, patient: Uuid, code: &str) -> Result<Trend> {
    user.require(Action::ReadLabs)?;
    let code = loinc(code)?;
    require_patient(st, user, patient).await?;
    let mut rows = store::labs::list_for_patient(&st.db, patient, Some(&code), None, 200).await?;
    rows.reverse();
    audit_read(st, user, AuditAction::LabTrend, None, Some(patient)).await?;
    Ok(Trend {
        name: rows.last().map(|r| r.name.clone()),
        code,
        points: rows
            .into_iter()
            .map(|r| TrendPoint {
                id: r.id,
                value: r.value,
                unit: r.unit,
                flag: r.flag,
                collected_at: r.collected_at,
                reference_low: r.reference_low,
                reference_high: r.reference_high,
            })
            .collect(),
    })
}

/// One result.
pub async fn get(st: &AppState, user: &AuthUser, id: Uuid) -> Result<LabView> {
    user.require(Action::ReadLabs)?;
    let row = store::labs::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, row.patient_id).await?;
    audit_read(
        st,
        user,
        AuditAction::LabRead,
        Some(("lab", id)),
        Some(row.patient_id),
    )
    .await?;
    Ok(row.into())
}

/// What a reviewer adds to a review (both optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewInput {
    /// Free-text comment (at most 2000 characters)
    pub comment: Option<String>,
    /// What was done, e.g. "patient called" (at most 200 characters)
    pub action: Option<String>,
}

/// Mark a result reviewed (once), with an optional comment and action taken.
pub async fn review(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<ReviewInput>,
) -> Result<LabView> {
    user.require(Action::ReviewLab)?;
    let req = body?;
    let mut e = Errors::default();
    let comment = e.take(clinical::opt_text(
        "comment",
        req.comment.as_deref(),
        2000,
        false,
    ));
    let action = e.take(clinical::opt_text(
        "action",
        req.action.as_deref(),
        200,
        true,
    ));
    check(e)?;
    let mut tx = st.db.begin().await?;
    let row = store::labs::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, row.patient_id).await?;
    let done =
        store::labs::review(&mut tx, id, user.id, comment.as_deref(), action.as_deref()).await?;
    if !done {
        return Err(AppError::Conflict {
            code: "conflict",
            detail: "This result was already reviewed.".into(),
            extra: Some(
                serde_json::json!({ "reviewedBy": row.reviewed_by, "reviewedAt": row.reviewed_at }),
            ),
        });
    }
    audit_change(
        &mut tx,
        user,
        AuditAction::LabReview,
        ("lab", id),
        Some(row.patient_id),
        Some(serde_json::json!({ "flag": row.flag, "actionTaken": action.is_some() })),
    )
    .await?;
    let reviewed = store::labs::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    Ok(reviewed.into())
}
