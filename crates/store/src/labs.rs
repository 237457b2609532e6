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
    #[sqlx(try_from = "crate::decode::Nullable<domain::labs::LabFlag>")]
    pub flag: Option<domain::labs::LabFlag>,
    pub warning: Option<String>,
    pub collected_at: DateTime<Utc>,
    pub recorded_by: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub review_comment: Option<String>,
    pub review_action: Option<String>,
}

pub(crate) const COLS: &str = "id, patient_id, code, name, value, unit, reference_low, reference_high, flag, warning, collected_at, \
                    recorded_by, recorded_at, reviewed_by, reviewed_at, review_comment, review_action";

#[derive(Debug, Clone)]
pub struct NewLab {
    pub code: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    pub flag: Option<domain::labs::LabFlag>,
    pub warning: Option<String>,
    pub collected_at: DateTime<Utc>,
}

pub async fn insert(tx: &mut Tx, patient: Uuid, by: Uuid, l: &NewLab) -> Result<LabRow> {
    let id = Uuid::now_v7();
    let sql = "INSERT INTO labs (id, patient_id, code, name, value, unit, reference_low, reference_high, flag, warning, collected_at, recorded_by, recorded_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    on_tx!(tx, c => sqlx::query(sql).bind(id).bind(patient).bind(&l.code).bind(&l.name).bind(l.value).bind(&l.unit)
        .bind(l.reference_low).bind(l.reference_high).bind(l.flag.map(domain::labs::LabFlag::as_str)).bind(&l.warning).bind(l.collected_at).bind(by).bind(crate::now())
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

/// The latest result of each code for a patient (at most `limit` rows).
///
/// A result left unflagged because of its unit (`warning` set, no flag) is
/// ranked apart from the flagged ones, so a newer "6.8 mg/dL" potassium is
/// shown next to the older flagged one instead of hiding it.
pub async fn latest_per_code(db: &Db, patient: Uuid, limit: i64) -> Result<Vec<LabRow>> {
    // SQLite: the newest row of each (code, unit-only) group by one index
    // seek per group (`labs_patient_code`), instead of ranking every result
    // of the patient in a window (a chart of 2,000 results sorted them all
    // on every overview; W3 180 -> 370/s). PostgreSQL plans that correlated
    // form worse than its window (273 -> 130/s), so it keeps the window.
    let sql = match db {
        Db::Sqlite(_) => format!(
            "SELECT {COLS} FROM labs WHERE id IN (\
               SELECT (SELECT x.id FROM labs x WHERE x.patient_id = $1 AND x.code = g.code \
                       AND (x.flag IS NULL AND x.warning IS NOT NULL) = g.unit_only \
                       ORDER BY x.collected_at DESC, x.id DESC LIMIT 1) \
               FROM (SELECT DISTINCT code, (flag IS NULL AND warning IS NOT NULL) AS unit_only \
                     FROM labs WHERE patient_id = $1) g) \
             ORDER BY code, collected_at DESC LIMIT $2"
        ),
        Db::Postgres(_) => format!(
            "SELECT {COLS} FROM (SELECT l.*, row_number() OVER (PARTITION BY code, (flag IS NULL AND warning IS NOT NULL) \
             ORDER BY collected_at DESC, id DESC) AS rn FROM labs l WHERE patient_id = $1) latest WHERE rn = 1 \
             ORDER BY code, collected_at DESC LIMIT $2"
        ),
    };
    let rows: Vec<LabRow> =
        on_read!(db, c => sqlx::query_as(&sql).bind(patient).bind(limit).fetch_all(c).await)?;
    // An unflagged row older than the flagged one of its code adds nothing.
    let newest_flagged = |code: &str| {
        rows.iter()
            .filter(|r| r.code == code && r.flag.is_some())
            .map(|r| r.collected_at)
            .max()
    };
    let keep: Vec<bool> = rows
        .iter()
        .map(|r| {
            r.flag.is_some()
                || r.warning.is_none()
                || newest_flagged(&r.code).is_none_or(|t| r.collected_at > t)
        })
        .collect();
    Ok(rows
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect())
}

/// A patient's critical results nobody has reviewed, newest first, whatever
/// came after them, with how many there are in all.
pub async fn unreviewed_critical_for_patient(
    db: &Db,
    patient: Uuid,
    limit: i64,
) -> Result<(Vec<LabRow>, i64)> {
    let cond =
        "patient_id = $1 AND reviewed_at IS NULL AND flag IN ('critical_low','critical_high')";
    let sql = format!(
        "SELECT {COLS} FROM labs WHERE {cond} ORDER BY collected_at DESC, id DESC LIMIT $2"
    );
    let count = format!("SELECT count(*) FROM labs WHERE {cond}");
    let rows =
        on_read!(db, c => sqlx::query_as(&sql).bind(patient).bind(limit).fetch_all(c).await)?;
    let n: (i64,) = on_read!(db, c => sqlx::query_as(&count).bind(patient).fetch_one(c).await)?;
    Ok((rows, n.0))
}

/// Count of critical results not yet reviewed (for the clinical-safety alert).
pub async fn unreviewed_critical_count(db: &Db) -> Result<i64> {
    let sql = "SELECT count(*) FROM labs WHERE reviewed_at IS NULL AND flag IN ('critical_low','critical_high')";
    let n: (i64,) = on_read!(db, c => sqlx::query_as(sql).fetch_one(c).await)?;
    Ok(n.0)
}

/// Mark reviewed, with what was done and why; false when it already was.
pub async fn review(
    tx: &mut Tx,
    id: Uuid,
    by: Uuid,
    comment: Option<&str>,
    action: Option<&str>,
) -> Result<bool> {
    let sql = "UPDATE labs SET reviewed_by = $1, reviewed_at = $2, review_comment = $3, review_action = $4 \
               WHERE id = $5 AND reviewed_at IS NULL";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(by).bind(crate::now()).bind(comment).bind(action).bind(id)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}
