//! FHIR bulk export jobs: their state lives in the database so that every
//! instance answers a status poll the same way.

use chrono::{DateTime, Utc};
use domain::states::ExportStatus;
use uuid::Uuid;

use crate::db::{Db, Result, Tx};
use crate::{on_read, on_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportJob {
    pub id: Uuid,
    pub patient_id: Option<Uuid>,
    /// The care team of a Group export (its patients, see
    /// `fhir::Search::team`); with `patient_id` NULL too it is a system export.
    pub group_id: Option<Uuid>,
    pub requested_by: Uuid,
    pub types: String,
    #[sqlx(try_from = "String")]
    pub status: ExportStatus,
    pub progress: String,
    pub output: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

const COLS: &str = "id, patient_id, group_id, requested_by, types, status, progress, output, created_at, completed_at, expires_at";

pub async fn insert(tx: &mut Tx, job: &ExportJob) -> Result<()> {
    let sql = "INSERT INTO export_jobs (id, patient_id, group_id, requested_by, types, status, progress, output, created_at, completed_at, expires_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    crate::on_tx!(tx, c => sqlx::query(sql).bind(job.id).bind(job.patient_id).bind(job.group_id).bind(job.requested_by).bind(&job.types)
        .bind(job.status.as_str()).bind(&job.progress).bind(&job.output).bind(job.created_at).bind(job.completed_at).bind(job.expires_at)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn get(db: &Db, id: Uuid) -> Result<Option<ExportJob>> {
    let sql = format!("SELECT {COLS} FROM export_jobs WHERE id = $1");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

pub async fn set_progress(db: &Db, id: Uuid, progress: &str) -> Result<()> {
    let sql = "UPDATE export_jobs SET progress = $1 WHERE id = $2 AND status = 'running'";
    on_write!(db, c => sqlx::query(sql).bind(progress).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Finish a job: `complete` with its output list, or `failed`.
pub async fn finish(
    db: &Db,
    id: Uuid,
    status: ExportStatus,
    progress: &str,
    output: Option<&str>,
) -> Result<()> {
    let sql = "UPDATE export_jobs SET status = $1, progress = $2, output = $3, completed_at = $4 WHERE id = $5";
    on_write!(db, c => sqlx::query(sql).bind(status.as_str()).bind(progress).bind(output).bind(crate::now()).bind(id)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Jobs whose retention has passed (or that were cancelled).
pub async fn expired(db: &Db, now: DateTime<Utc>) -> Result<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> = on_read!(db, c => sqlx::query_as("SELECT id FROM export_jobs WHERE expires_at <= $1").bind(now).fetch_all(c).await)?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn delete(db: &Db, id: Uuid) -> Result<()> {
    on_write!(db, c => sqlx::query("DELETE FROM export_jobs WHERE id = $1").bind(id).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Rows of each table an export covers, for its progress and for tests.
pub async fn count(db: &Db, table: &str, patient: Option<Uuid>) -> Result<i64> {
    let (sql, by) = match (table, patient) {
        ("patients", Some(_)) => (
            "SELECT count(*) FROM patients WHERE id = $1".to_string(),
            true,
        ),
        ("notes", p) => (
            format!(
                "SELECT count(*) FROM notes WHERE status = 'final'{}",
                if p.is_some() {
                    " AND patient_id = $1"
                } else {
                    ""
                }
            ),
            p.is_some(),
        ),
        (t, Some(_)) => (
            format!("SELECT count(*) FROM {t} WHERE patient_id = $1"),
            true,
        ),
        (t, None) => (format!("SELECT count(*) FROM {t}"), false),
    };
    let n: (i64,) = if by {
        on_read!(db, c => sqlx::query_as(&sql).bind(patient.unwrap_or_default()).fetch_one(c).await)?
    } else {
        on_read!(db, c => sqlx::query_as(&sql).fetch_one(c).await)?
    };
    Ok(n.0)
}
