//! Lab results: recorded with a LOINC code, flagged by the server from its
//! reference table, reviewed by providers, and followed as a trend.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::clinical::{self, Errors};
use domain::roles::Action;
use serde::{Deserialize, Serialize};
use store::labs::{LabRow, NewLab};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{ApiJson, Later, PageQuery};
use crate::routes::prescriptions::{make_time_cursor, time_cursor};
use crate::routes::{audit_change, audit_read, check, require_patient};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabInput {
    /// LOINC code, e.g. 2345-7
    pub code: String,
    /// Defaults to the reference table's name for known codes
    pub name: Option<String>,
    pub value: f64,
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
    pub flag: Option<String>,
    /// Why the result is not flagged (e.g. a unit the table cannot convert)
    pub warning: Option<String>,
    pub collected_at: DateTime<Utc>,
    pub recorded_by: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
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
fn loinc(raw: &str) -> std::result::Result<String, domain::account::FieldError> {
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
        flag: i.flag.map(|f| f.as_str().to_string()),
        warning: i.warning,
        collected_at: chrono::SubsecRound::trunc_subsecs(req.collected_at, 6),
    })
}

#[utoipa::path(post, path = "/api/patients/{id}/labs", tag = "labs", security(("bearer" = [])), request_body = LabInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = LabView), (status = 401), (status = 403), (status = 404), (status = 422), (status = 429)))]
pub async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    body: Later<ApiJson<LabInput>>,
) -> Result<(StatusCode, Json<LabView>)> {
    user.require(Action::RecordLab)?;
    let ApiJson(req) = body.get()?;
    let lab = parse_lab(&req)?;
    require_patient(&st, patient).await?;
    let mut tx = st.db.begin().await?;
    let row = store::labs::insert(&mut tx, patient, user.id, &lab).await?;
    audit_change(
        &mut tx,
        &user,
        "lab.create",
        ("lab", row.id),
        Some(patient),
        Some(serde_json::json!({ "code": row.code, "flag": row.flag })),
    )
    .await?;
    tx.commit().await?;
    if row
        .flag
        .as_deref()
        .is_some_and(|f| f.starts_with("critical"))
    {
        st.metrics.incr("lab.critical_recorded");
        tracing::warn!(labId = %row.id, patientId = %patient, "critical lab result recorded");
    }
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LabListQuery {
    /// Only results of this LOINC code
    pub code: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/patients/{id}/labs", tag = "labs", security(("bearer" = [])), params(("id" = Uuid, Path), LabListQuery),
    responses((status = 200, body = LabPage), (status = 401), (status = 403), (status = 404)))]
pub async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    Query(q): Query<LabListQuery>,
) -> Result<Json<LabPage>> {
    user.require(Action::ReadLabs)?;
    let code = match &q.code {
        Some(c) => Some(loinc(c)?),
        None => None,
    };
    require_patient(&st, patient).await?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit();
    let mut rows = store::labs::list_for_patient(
        &st.db,
        patient,
        code.as_deref(),
        time_cursor(&page)?,
        limit + 1,
    )
    .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| make_time_cursor(r.collected_at, r.id))
    } else {
        None
    };
    audit_read(&st, &user, "lab.list", None, Some(patient)).await?;
    Ok(Json(LabPage {
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TrendQuery {
    /// The LOINC code to follow
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    pub id: Uuid,
    pub value: f64,
    pub unit: String,
    pub flag: Option<String>,
    pub collected_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trend {
    pub code: String,
    pub name: Option<String>,
    /// Oldest first; the most recent 200 results
    pub points: Vec<TrendPoint>,
}

#[utoipa::path(get, path = "/api/patients/{id}/labs/trend", tag = "labs", security(("bearer" = [])), params(("id" = Uuid, Path), TrendQuery),
    responses((status = 200, body = Trend), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn trend(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    Query(q): Query<TrendQuery>,
) -> Result<Json<Trend>> {
    user.require(Action::ReadLabs)?;
    let code = loinc(&q.code)?;
    require_patient(&st, patient).await?;
    let mut rows = store::labs::list_for_patient(&st.db, patient, Some(&code), None, 200).await?;
    rows.reverse();
    audit_read(&st, &user, "lab.trend", None, Some(patient)).await?;
    Ok(Json(Trend {
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
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/labs/{id}", tag = "labs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = LabView), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LabView>> {
    user.require(Action::ReadLabs)?;
    let row = store::labs::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    audit_read(
        &st,
        &user,
        "lab.read",
        Some(("lab", id)),
        Some(row.patient_id),
    )
    .await?;
    Ok(Json(row.into()))
}

#[utoipa::path(post, path = "/api/labs/{id}/review", tag = "labs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = LabView), (status = 401), (status = 403), (status = 404), (status = 409, description = "Already reviewed")))]
pub async fn review(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LabView>> {
    user.require(Action::ReviewLab)?;
    let mut tx = st.db.begin().await?;
    let row = store::labs::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !store::labs::review(&mut tx, id, user.id).await? {
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
        &user,
        "lab.review",
        ("lab", id),
        Some(row.patient_id),
        None,
    )
    .await?;
    let reviewed = store::labs::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    Ok(Json(reviewed.into()))
}
