//! The clinician's day: clinic-wide lists joined with the patient each row
//! is about (name, MRN, birth date, sex), keyset-paged and counted, so the
//! day page never shows a silently truncated list.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{Db, Result};
use crate::labs::LabRow;
use crate::notes::NoteRow;
use crate::on_read;
use crate::prescriptions::PrescriptionRow;
use crate::vitals::VitalsRow;

/// Who a worklist row is about.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PatientBrief {
    #[sqlx(rename = "p_mrn")]
    pub mrn: String,
    #[sqlx(rename = "p_given_name")]
    pub given_name: String,
    #[sqlx(rename = "p_family_name")]
    pub family_name: String,
    #[sqlx(rename = "p_birth_date")]
    pub birth_date: String,
    #[sqlx(rename = "p_sex", try_from = "String")]
    pub sex: domain::clinical::Sex,
}

const PATIENT: &str =
    "p.mrn AS p_mrn, p.given_name AS p_given_name, p.family_name AS p_family_name, \
                       p.birth_date AS p_birth_date, p.sex AS p_sex";

/// A row of one of the worklists with its patient.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct With<T> {
    #[sqlx(flatten)]
    pub row: T,
    #[sqlx(flatten)]
    pub patient: PatientBrief,
}

/// `cols` with every column prefixed by the table alias `t`.
fn qualified(t: &str, cols: &str) -> String {
    cols.split(',')
        .map(|c| format!("{t}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keyset position in a list ordered by (time DESC, id DESC).
pub type After = Option<(DateTime<Utc>, Uuid)>;

fn after_parts(after: After) -> (i64, DateTime<Utc>, Uuid) {
    let has: i64 = after.is_some().into();
    let (t, id) = after.unwrap_or((crate::now(), Uuid::nil()));
    (has, t, id)
}

/// Only rows about a patient who shares a care team with the viewer (`$n`):
/// the day view lists team patients only (break-glass opens one chart, it
/// does not fill the worklists).
fn team_only(n: u8) -> String {
    format!(
        "EXISTS (SELECT 1 FROM care_team_patients tp JOIN care_team_members m ON m.team_id = tp.team_id \
         WHERE tp.patient_id = p.id AND m.user_id = ${n})"
    )
}

const UNREVIEWED: &str =
    "l.reviewed_at IS NULL AND l.flag IN ('low','high','critical_low','critical_high')";
const TIER: &str = "CASE WHEN l.flag IN ('critical_low','critical_high') THEN 0 ELSE 1 END";

/// Unreviewed flagged results: critical first (tier 0), then abnormal
/// (tier 1), newest arrival first within each; after `(tier, recorded_at,
/// id)`.
pub async fn unreviewed_results(
    db: &Db,
    viewer: Uuid,
    after: Option<(i64, DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<With<LabRow>>> {
    let has: i64 = after.is_some().into();
    let (tier, t, id) = after.unwrap_or((0, crate::now(), Uuid::nil()));
    let sql = format!(
        "SELECT * FROM (SELECT {}, {PATIENT}, {TIER} AS tier FROM labs l JOIN patients p ON p.id = l.patient_id \
         WHERE {UNREVIEWED} AND {}) w \
         WHERE $1 = 0 OR w.tier > $2 OR (w.tier = $2 AND (w.recorded_at < $3 OR (w.recorded_at = $3 AND w.id < $4))) \
         ORDER BY w.tier, w.recorded_at DESC, w.id DESC LIMIT $5",
        qualified("l", crate::labs::COLS),
        team_only(6)
    );
    Ok(
        on_read!(db, c => sqlx::query_as(&sql).bind(has).bind(tier).bind(t).bind(id).bind(limit).bind(viewer).fetch_all(c).await)?,
    )
}

/// (all unreviewed flagged results, of which critical).
pub async fn unreviewed_totals(db: &Db, viewer: Uuid) -> Result<(i64, i64)> {
    let sql = format!(
        "SELECT count(*), coalesce(sum(CASE WHEN {TIER} = 0 THEN 1 ELSE 0 END), 0) FROM labs l \
         JOIN patients p ON p.id = l.patient_id WHERE {UNREVIEWED} AND {}",
        team_only(1)
    );
    let n: (i64, i64) = on_read!(db, c => sqlx::query_as(&sql).bind(viewer).fetch_one(c).await)?;
    Ok(n)
}

/// Draft notes, newest change first: `author`'s own, or (with `None`) every
/// nurse's draft, which a provider may co-sign.
pub async fn drafts(
    db: &Db,
    viewer: Uuid,
    author: Option<Uuid>,
    after: After,
    limit: i64,
) -> Result<(Vec<With<NoteRow>>, i64)> {
    let (has, t, id) = after_parts(after);
    let who = if author.is_some() {
        "n.author_id = $1"
    } else {
        "n.author_id IN (SELECT u.id FROM users u WHERE u.role = 'nurse') AND $1 = $1"
    };
    let from = format!(
        "FROM notes n JOIN patients p ON p.id = n.patient_id WHERE n.status = 'draft' AND {who} AND {}",
        team_only(2)
    );
    let sql = format!(
        "SELECT {}, {PATIENT} {from} AND ($3 = 0 OR n.updated_at < $4 OR (n.updated_at = $4 AND n.id < $5)) \
         ORDER BY n.updated_at DESC, n.id DESC LIMIT $6",
        qualified("n", crate::notes::COLS)
    );
    let count = format!("SELECT count(*) {from}");
    let a = author.unwrap_or_else(Uuid::nil);
    let rows = on_read!(db, c => sqlx::query_as(&sql).bind(a).bind(viewer).bind(has).bind(t).bind(id).bind(limit).fetch_all(c).await)?;
    let n: (i64,) =
        on_read!(db, c => sqlx::query_as(&count).bind(a).bind(viewer).fetch_one(c).await)?;
    Ok((rows, n.0))
}

/// Prescriptions `prescriber` issued since `since`, newest first.
pub async fn issued_since(
    db: &Db,
    prescriber: Uuid,
    since: DateTime<Utc>,
    after: After,
    limit: i64,
) -> Result<(Vec<With<PrescriptionRow>>, i64)> {
    let (has, t, id) = after_parts(after);
    let from = format!(
        "FROM prescriptions r JOIN patients p ON p.id = r.patient_id WHERE r.issued_by = $1 AND r.issued_at >= $2 AND {}",
        team_only(1)
    );
    let sql = format!(
        "SELECT {}, {PATIENT} {from} AND ($3 = 0 OR r.issued_at < $4 OR (r.issued_at = $4 AND r.id < $5)) \
         ORDER BY r.issued_at DESC, r.id DESC LIMIT $6",
        qualified("r", crate::prescriptions::COLS)
    );
    let count = format!("SELECT count(*) {from}");
    let rows = on_read!(db, c => sqlx::query_as(&sql).bind(prescriber).bind(since).bind(has).bind(t).bind(id)
        .bind(limit).fetch_all(c).await)?;
    let n: (i64,) =
        on_read!(db, c => sqlx::query_as(&count).bind(prescriber).bind(since).fetch_one(c).await)?;
    Ok((rows, n.0))
}

/// Vital-sign sets with a critical value entered since `since`, newest first.
pub async fn critical_vitals_since(
    db: &Db,
    viewer: Uuid,
    since: DateTime<Utc>,
    after: After,
    limit: i64,
) -> Result<(Vec<With<VitalsRow>>, i64)> {
    let (has, t, id) = after_parts(after);
    let from = format!(
        "FROM vitals v JOIN patients p ON p.id = v.patient_id WHERE v.critical AND v.entered_at >= $1 AND {}",
        team_only(6)
    );
    let sql = format!(
        "SELECT {}, {PATIENT} {from} AND ($2 = 0 OR v.entered_at < $3 OR (v.entered_at = $3 AND v.id < $4)) \
         ORDER BY v.entered_at DESC, v.id DESC LIMIT $5",
        qualified("v", crate::vitals::COLS)
    );
    let rows = on_read!(db, c => sqlx::query_as(&sql).bind(since).bind(has).bind(t).bind(id).bind(limit).bind(viewer).fetch_all(c).await)?;
    let count = format!(
        "SELECT count(*) FROM vitals v JOIN patients p ON p.id = v.patient_id WHERE v.critical AND v.entered_at >= $1 AND {}",
        team_only(2)
    );
    let n: (i64,) =
        on_read!(db, c => sqlx::query_as(&count).bind(since).bind(viewer).fetch_one(c).await)?;
    Ok((rows, n.0))
}
