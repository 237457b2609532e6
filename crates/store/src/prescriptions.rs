//! Prescriptions: draft → issued → cancelled, draft → cancelled.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{Db, Result, StoreError, Tx};
use crate::{on_read, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PrescriptionRow {
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
    #[sqlx(try_from = "String")]
    pub status: domain::states::PrescriptionStatus,
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

pub(crate) const COLS: &str = "id, patient_id, created_by, medication, dose, route, frequency, quantity, refills, instructions, status, \
                    issued_by, issued_at, override_reason, cancelled_by, cancelled_at, cancel_reason, version, created_at, updated_at";

#[derive(Debug, Clone, Default)]
pub struct NewPrescription {
    pub medication: String,
    pub dose: String,
    pub route: String,
    pub frequency: String,
    pub quantity: i64,
    pub refills: i64,
    pub instructions: Option<String>,
}

pub async fn insert(
    tx: &mut Tx,
    patient: Uuid,
    by: Uuid,
    p: &NewPrescription,
) -> Result<PrescriptionRow> {
    let id = Uuid::now_v7();
    let now = crate::now();
    let sql = "INSERT INTO prescriptions (id, patient_id, created_by, medication, dose, route, frequency, quantity, refills, instructions, status, version, created_at, updated_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'draft', 1, $11, $11)";
    on_tx!(tx, c => sqlx::query(sql).bind(id).bind(patient).bind(by).bind(&p.medication).bind(&p.dose).bind(&p.route)
        .bind(&p.frequency).bind(p.quantity).bind(p.refills).bind(&p.instructions).bind(now)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    get_tx(tx, id).await?.ok_or(StoreError::NotFound)
}

pub async fn get(db: &Db, id: Uuid) -> Result<Option<PrescriptionRow>> {
    let sql = format!("SELECT {COLS} FROM prescriptions WHERE id = $1");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

pub async fn get_tx(tx: &mut Tx, id: Uuid) -> Result<Option<PrescriptionRow>> {
    let sql = format!("SELECT {COLS} FROM prescriptions WHERE id = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?)
}

/// A patient's prescriptions, newest first; `status` narrows when given.
pub async fn list_for_patient(
    db: &Db,
    patient: Uuid,
    status: Option<domain::states::PrescriptionStatus>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<PrescriptionRow>> {
    let has: i64 = before.is_some().into();
    let (t, id) = before.unwrap_or((crate::now(), Uuid::nil()));
    let has_status: i64 = status.is_some().into();
    let sql = format!(
        "SELECT {COLS} FROM prescriptions WHERE patient_id = $1 AND ($2 = 0 OR status = $3) \
         AND ($4 = 0 OR created_at < $5 OR (created_at = $5 AND id < $6)) ORDER BY created_at DESC, id DESC LIMIT $7"
    );
    Ok(
        on_read!(db, c => sqlx::query_as(&sql).bind(patient).bind(has_status).bind(status.map(|s| s.as_str()).unwrap_or(""))
        .bind(has).bind(t).bind(id).bind(limit).fetch_all(c).await)?,
    )
}

/// Prescriptions a prescriber issued since `since` (their day view).
pub async fn issued_by_since(
    db: &Db,
    prescriber: Uuid,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<PrescriptionRow>> {
    let sql = format!("SELECT {COLS} FROM prescriptions WHERE issued_by = $1 AND issued_at >= $2 ORDER BY issued_at DESC LIMIT $3");
    Ok(
        on_read!(db, c => sqlx::query_as(&sql).bind(prescriber).bind(since).bind(limit).fetch_all(c).await)?,
    )
}

/// Move `from` → issued; false when the state changed under us.
pub async fn issue(tx: &mut Tx, id: Uuid, by: Uuid, override_reason: Option<&str>) -> Result<bool> {
    let now = crate::now();
    let sql = "UPDATE prescriptions SET status = 'issued', issued_by = $1, issued_at = $2, override_reason = $3, version = version + 1, updated_at = $2 \
               WHERE id = $4 AND status = 'draft'";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(by).bind(now).bind(override_reason).bind(id)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Move draft|issued → cancelled; false when the state changed under us.
pub async fn cancel(tx: &mut Tx, id: Uuid, by: Uuid, reason: &str) -> Result<bool> {
    let now = crate::now();
    let sql = "UPDATE prescriptions SET status = 'cancelled', cancelled_by = $1, cancelled_at = $2, cancel_reason = $3, version = version + 1, updated_at = $2 \
               WHERE id = $4 AND status IN ('draft', 'issued')";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(by).bind(now).bind(reason).bind(id)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}
