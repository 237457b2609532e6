//! Lab results.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{Db, Result, StoreError, Tx};
use crate::{on_read, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LabRow {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub code: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    pub flag: Option<String>,
    pub warning: Option<String>,
    pub collected_at: DateTime<Utc>,
    pub recorded_by: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
}

pub(crate) const COLS: &str = "id, patient_id, code, name, value, unit, reference_low, reference_high, flag, warning, collected_at, \
                    recorded_by, recorded_at, reviewed_by, reviewed_at";

#[derive(Debug, Clone)]
pub struct NewLab {
    pub code: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    pub flag: Option<String>,
    pub warning: Option<String>,
    pub collected_at: DateTime<Utc>,
}

pub async fn insert(tx: &mut Tx, patient: Uuid, by: Uuid, l: &NewLab) -> Result<LabRow> {
    let id = Uuid::now_v7();
    let sql = "INSERT INTO labs (id, patient_id, code, name, value, unit, reference_low, reference_high, flag, warning, collected_at, recorded_by, recorded_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    on_tx!(tx, c => sqlx::query(sql).bind(id).bind(patient).bind(&l.code).bind(&l.name).bind(l.value).bind(&l.unit)
        .bind(l.reference_low).bind(l.reference_high).bind(&l.flag).bind(&l.warning).bind(l.collected_at).bind(by).bind(crate::now())
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    get_tx(tx, id).await?.ok_or(StoreError::NotFound)
}

pub async fn get(db: &Db, id: Uuid) -> Result<Option<LabRow>> {
    let sql = format!("SELECT {COLS} FROM labs WHERE id = $1");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

pub async fn get_tx(tx: &mut Tx, id: Uuid) -> Result<Option<LabRow>> {
    let sql = format!("SELECT {COLS} FROM labs WHERE id = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?)
}

/// A patient's results, newest first, optionally of one code.
pub async fn list_for_patient(
    db: &Db,
    patient: Uuid,
    code: Option<&str>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<LabRow>> {
    let has: i64 = before.is_some().into();
    let (t, id) = before.unwrap_or((crate::now(), Uuid::nil()));
    let has_code: i64 = code.is_some().into();
    let sql = format!(
        "SELECT {COLS} FROM labs WHERE patient_id = $1 AND ($2 = 0 OR code = $3) \
         AND ($4 = 0 OR collected_at < $5 OR (collected_at = $5 AND id < $6)) ORDER BY collected_at DESC, id DESC LIMIT $7"
    );
    Ok(
        on_read!(db, c => sqlx::query_as(&sql).bind(patient).bind(has_code).bind(code.unwrap_or(""))
        .bind(has).bind(t).bind(id).bind(limit).fetch_all(c).await)?,
    )
}

/// The latest result of each code for a patient (at most `limit` codes).
pub async fn latest_per_code(db: &Db, patient: Uuid, limit: i64) -> Result<Vec<LabRow>> {
    let sql = format!(
        "SELECT {COLS} FROM (SELECT l.*, row_number() OVER (PARTITION BY code ORDER BY collected_at DESC, id DESC) AS rn \
         FROM labs l WHERE patient_id = $1) latest WHERE rn = 1 ORDER BY code LIMIT $2"
    );
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(patient).bind(limit).fetch_all(c).await)?)
}

/// Abnormal results nobody has reviewed yet, oldest first.
pub async fn unreviewed_abnormal(db: &Db, limit: i64) -> Result<Vec<LabRow>> {
    let sql = format!(
        "SELECT {COLS} FROM labs WHERE reviewed_at IS NULL AND flag IN ('low','high','critical_low','critical_high') \
         ORDER BY collected_at LIMIT $1"
    );
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(limit).fetch_all(c).await)?)
}

/// Count of critical results not yet reviewed (for the clinical-safety alert).
pub async fn unreviewed_critical_count(db: &Db) -> Result<i64> {
    let sql = "SELECT count(*) FROM labs WHERE reviewed_at IS NULL AND flag IN ('critical_low','critical_high')";
    let n: (i64,) = on_read!(db, c => sqlx::query_as(sql).fetch_one(c).await)?;
    Ok(n.0)
}

/// Mark reviewed; false when it already was.
pub async fn review(tx: &mut Tx, id: Uuid, by: Uuid) -> Result<bool> {
    let sql =
        "UPDATE labs SET reviewed_by = $1, reviewed_at = $2 WHERE id = $3 AND reviewed_at IS NULL";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(by).bind(crate::now()).bind(id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}
