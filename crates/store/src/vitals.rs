//! Vital-sign sets.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{Db, Result, StoreError, Tx};
use crate::{on_read, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VitalsRow {
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
    pub bmi: Option<f64>,
    /// JSON object: measure key → flag, as computed when recorded
    pub flags: String,
    pub critical: bool,
    pub abnormal: bool,
    pub recorded_by: Uuid,
    pub entered_at: DateTime<Utc>,
}

pub(crate) const COLS: &str = "id, patient_id, recorded_at, systolic, diastolic, heart_rate, respiratory_rate, temperature, spo2, \
                               weight_kg, height_cm, bmi, flags, critical, abnormal, recorded_by, entered_at";

/// A checked set, ready to store.
#[derive(Debug, Clone)]
pub struct NewVitals {
    pub recorded_at: DateTime<Utc>,
    pub entered: domain::vitals::Entered,
    pub bmi: Option<f64>,
    pub flags: String,
    pub critical: bool,
    pub abnormal: bool,
}

pub async fn insert(tx: &mut Tx, patient: Uuid, by: Uuid, v: &NewVitals) -> Result<VitalsRow> {
    let id = Uuid::now_v7();
    let e = &v.entered;
    let sql = "INSERT INTO vitals (id, patient_id, recorded_at, systolic, diastolic, heart_rate, respiratory_rate, temperature, spo2, \
               weight_kg, height_cm, bmi, flags, critical, abnormal, recorded_by, entered_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";
    on_tx!(tx, c => sqlx::query(sql).bind(id).bind(patient).bind(v.recorded_at).bind(e.systolic).bind(e.diastolic)
        .bind(e.heart_rate).bind(e.respiratory_rate).bind(e.temperature).bind(e.spo2).bind(e.weight_kg).bind(e.height_cm)
        .bind(v.bmi).bind(&v.flags).bind(v.critical).bind(v.abnormal).bind(by).bind(crate::now())
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    let sql = format!("SELECT {COLS} FROM vitals WHERE id = $1");
    let row: Option<VitalsRow> =
        on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?;
    row.ok_or(StoreError::NotFound)
}

/// A patient's sets, newest measurement first, before the keyset cursor.
pub async fn list_for_patient(
    db: &Db,
    patient: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<VitalsRow>> {
    let has: i64 = before.is_some().into();
    let (t, id) = before.unwrap_or((crate::now(), Uuid::nil()));
    let sql = format!(
        "SELECT {COLS} FROM vitals WHERE patient_id = $1 AND ($2 = 0 OR recorded_at < $3 OR (recorded_at = $3 AND id < $4)) \
         ORDER BY recorded_at DESC, id DESC LIMIT $5"
    );
    Ok(
        on_read!(db, c => sqlx::query_as(&sql).bind(patient).bind(has).bind(t).bind(id).bind(limit).fetch_all(c).await)?,
    )
}

/// The patient's latest recorded height (for BMI when a set has none).
pub async fn latest_height_tx(tx: &mut Tx, patient: Uuid) -> Result<Option<f64>> {
    let sql = "SELECT height_cm FROM vitals WHERE patient_id = $1 AND height_cm IS NOT NULL \
               ORDER BY recorded_at DESC, id DESC LIMIT 1";
    let row: Option<(Option<f64>,)> =
        on_tx!(tx, c => sqlx::query_as(sql).bind(patient).fetch_optional(&mut *c).await)?;
    Ok(row.and_then(|r| r.0))
}
