//! Vital signs: recorded by nurses and providers as a set of any
//! measurements, validated in their units, flagged from adult ranges
//! (`domain::vitals`, with its sources) and shown as a flowsheet.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::audit::AuditAction;
use domain::roles::Action;
use serde::{Deserialize, Serialize};
use store::vitals::{NewVitals, VitalsRow};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::PageQuery;
use crate::services::{
    audit_change, audit_read, page, require_patient, time_cursor, time_key, Body,
};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VitalsInput {
    /// mmHg
    #[schema(minimum = 40.0, maximum = 300.0)]
    pub systolic: Option<f64>,
    /// mmHg
    #[schema(minimum = 20.0, maximum = 200.0)]
    pub diastolic: Option<f64>,
    /// beats per minute
    #[schema(minimum = 20.0, maximum = 300.0)]
    pub heart_rate: Option<f64>,
    /// breaths per minute
    #[schema(minimum = 2.0, maximum = 80.0)]
    pub respiratory_rate: Option<f64>,
    /// °C
    #[schema(minimum = 25.0, maximum = 45.0)]
    pub temperature: Option<f64>,
    /// %
    #[schema(minimum = 50.0, maximum = 100.0)]
    pub spo2: Option<f64>,
    #[schema(minimum = 0.3, maximum = 500.0)]
    pub weight_kg: Option<f64>,
    #[schema(minimum = 30.0, maximum = 272.0)]
    pub height_cm: Option<f64>,
    /// When measured (default: now)
    pub recorded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VitalsView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub systolic: Option<f64>,
    pub diastolic: Option<f64>,
    pub heart_rate: Option<f64>,
    pub respiratory_rate: Option<f64>,
    pub temperature: Option<f64>,
    pub spo2: Option<f64>,
    pub weight_kg: Option<f64>,
    pub height_cm: Option<f64>,
    /// Derived from the weight and the set's (or the latest recorded) height
    pub bmi: Option<f64>,
    /// Flag of each measurement that has an adult range (normal, low, high,
    /// critical_low, critical_high), by field name
    pub flags: BTreeMap<String, String>,
    pub critical: bool,
    pub abnormal: bool,
    pub recorded_by: Uuid,
    pub entered_at: DateTime<Utc>,
}

impl From<VitalsRow> for VitalsView {
    fn from(v: VitalsRow) -> Self {
        VitalsView {
            id: v.id,
            patient_id: v.patient_id,
            recorded_at: v.recorded_at,
            systolic: v.systolic,
            diastolic: v.diastolic,
            heart_rate: v.heart_rate,
            respiratory_rate: v.respiratory_rate,
            temperature: v.temperature,
            spo2: v.spo2,
            weight_kg: v.weight_kg,
            height_cm: v.height_cm,
            bmi: v.bmi,
            // Written by `create` from a map; unreadable would mean a foreign
            // row, shown unflagged rather than failing the chart.
            flags: serde_json::from_str(&v.flags).unwrap_or_default(),
            critical: v.critical,
            abnormal: v.abnormal,
            recorded_by: v.recorded_by,
            entered_at: v.entered_at,
        }
    }
}

impl VitalsView {
    /// The value of one measure in this set.
    pub fn value(&self, m: domain::vitals::Measure) -> Option<f64> {
        use domain::vitals::Measure::*;
        match m {
            Systolic => self.systolic,
            Diastolic => self.diastolic,
            HeartRate => self.heart_rate,
            RespiratoryRate => self.respiratory_rate,
            Temperature => self.temperature,
            Spo2 => self.spo2,
            WeightKg => self.weight_kg,
            HeightCm => self.height_cm,
            Bmi => self.bmi,
        }
    }

    /// The stored flag of one measure (flags are stored as a JSON object of
    /// lab-flag strings; one this release does not know reads as no flag).
    pub fn flag(&self, m: domain::vitals::Measure) -> Option<domain::labs::LabFlag> {
        self.flags
            .get(m.key())
            .and_then(|f| domain::labs::LabFlag::parse(f))
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VitalsPage {
    pub items: Vec<VitalsView>,
    pub next_cursor: Option<String>,
}

/// Record a set of vital signs.
pub async fn create(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    body: Body<VitalsInput>,
) -> Result<VitalsView> {
    user.require(Action::RecordVitals)?;
    let req = body?;
    let entered = domain::vitals::Entered {
        systolic: req.systolic,
        diastolic: req.diastolic,
        heart_rate: req.heart_rate,
        respiratory_rate: req.respiratory_rate,
        temperature: req.temperature,
        spo2: req.spo2,
        weight_kg: req.weight_kg,
        height_cm: req.height_cm,
    };
    let now = store::now();
    let recorded_at = chrono::SubsecRound::trunc_subsecs(req.recorded_at.unwrap_or(now), 6);
    // Validate before the patient lookup so bad input changes nothing.
    let mut errs = domain::vitals::check(&entered, None)
        .err()
        .unwrap_or_default();
    if recorded_at > now + chrono::Duration::minutes(5) {
        errs.push(domain::account::FieldError::new(
            "recordedAt",
            "must not be in the future",
        ));
    }
    if !errs.is_empty() {
        return Err(AppError::Validation(errs));
    }
    require_patient(st, user, patient).await?;
    let mut tx = st.db.begin().await?;
    let height = match entered.height_cm {
        Some(_) => None,
        None => store::vitals::latest_height_tx(&mut tx, patient).await?,
    };
    let checked = domain::vitals::check(&entered, height).map_err(AppError::Validation)?;
    let flags: BTreeMap<&str, &str> = checked
        .flags
        .iter()
        .map(|(k, f)| (*k, f.as_str()))
        .collect();
    let new = NewVitals {
        recorded_at,
        entered,
        bmi: checked.bmi,
        flags: serde_json::to_string(&flags).map_err(|e| AppError::Internal(e.into()))?,
        critical: checked.critical,
        abnormal: checked.abnormal,
    };
    let row = store::vitals::insert(&mut tx, patient, user.id, &new).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::VitalsCreate,
        ("vitals", row.id),
        Some(patient),
        Some(serde_json::json!({ "critical": row.critical, "abnormal": row.abnormal })),
    )
    .await?;
    tx.commit().await?;
    if row.critical {
        st.metrics.incr("vitals.critical_recorded");
        tracing::warn!(vitalsId = %row.id, patientId = %patient, "critical vital sign recorded");
    }
    Ok(row.into())
}

/// A patient's sets, newest measurement first (the flowsheet).
pub async fn list(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    page_q: &PageQuery,
) -> Result<VitalsPage> {
    user.require(Action::ReadVitals)?;
    require_patient(st, user, patient).await?;
    let limit = page_q.limit();
    let rows =
        store::vitals::list_for_patient(&st.db, patient, time_cursor(page_q)?, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |r| time_key(r.recorded_at, r.id), Into::into);
    audit_read(st, user, AuditAction::VitalsList, None, Some(patient)).await?;
    Ok(VitalsPage { items, next_cursor })
}
