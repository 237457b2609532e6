//! The queries behind the FHIR API. Every resource type is searched the
//! same way: an optional patient, `_id`, `_lastUpdated` bounds and a few
//! type-specific filters, keyset-paged by id. Ids are UUIDv7, so id order is
//! creation order and a row appears on exactly one page even while rows are
//! added or updated between pages.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{Db, Result};
use crate::labs::LabRow;
use crate::notes::{AddendumRow, NoteRow};
use crate::on_read;
use crate::patients::{AllergyRow, PatientRow, ProblemRow};
use crate::prescriptions::PrescriptionRow;

/// A bound on a resource's last-updated time (half-open intervals only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `time >= t`
    AtOrAfter(DateTime<Utc>),
    /// `time < t`
    Before(DateTime<Utc>),
}

/// What every search can narrow by.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub id: Option<Uuid>,
    pub patient: Option<Uuid>,
    /// Only rows whose patient is in this care team (a Group export). Types
    /// without a patient (Practitioner) are not narrowed, so a Group
    /// export does not ask for them.
    pub team: Option<Uuid>,
    pub updated: Vec<Bound>,
    /// The last id of the previous page.
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// Patient-only filters (names are folded prefixes, see `patients::search_keys`).
#[derive(Debug, Clone, Default)]
pub struct PatientFilter {
    pub mrn: Option<String>,
    /// `YYYY-MM-DD` string bounds: `>= .0` and `< .1`.
    pub birth_date: Vec<(Option<String>, Option<String>)>,
    pub name: Vec<String>,
    pub family: Vec<String>,
    pub given: Vec<String>,
}

#[derive(Debug, Clone)]
enum Arg {
    Uuid(Uuid),
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// A SELECT built clause by clause; `?` in a clause becomes the next `$n`.
struct Query {
    sql: String,
    args: Vec<Arg>,
}

impl Query {
    fn new(select: String) -> Query {
        Query {
            sql: format!("{select} WHERE 1 = 1"),
            args: Vec::new(),
        }
    }

    fn and(&mut self, clause: &str, args: Vec<Arg>) {
        self.sql.push_str(" AND (");
        let mut it = args.into_iter();
        for ch in clause.chars() {
            if ch == '?' {
                if let Some(a) = it.next() {
                    self.args.push(a);
                }
                self.sql.push_str(&format!("${}", self.args.len()));
            } else {
                self.sql.push(ch);
            }
        }
        self.sql.push(')');
    }

    /// The filters every search shares, then keyset order and the limit.
    /// `patient_col` is qualified by its table (`labs.patient_id`), as the
    /// team filter names it inside a subquery.
    fn common(mut self, s: &Search, time: &str, patient_col: Option<&str>) -> Query {
        if let Some(id) = s.id {
            self.and("id = ?", vec![Arg::Uuid(id)]);
        }
        if let (Some(p), Some(col)) = (s.patient, patient_col) {
            self.and(&format!("{col} = ?"), vec![Arg::Uuid(p)]);
        }
        if let (Some(t), Some(col)) = (s.team, patient_col) {
            // A primary-key probe per row: SQLite would build the whole
            // member list again for every page of an `IN (SELECT …)`.
            self.and(
                &format!("EXISTS (SELECT 1 FROM care_team_patients tp WHERE tp.team_id = ? AND tp.patient_id = {col})"),
                vec![Arg::Uuid(t)],
            );
        }
        for b in &s.updated {
            match b {
                Bound::AtOrAfter(t) => self.and(&format!("{time} >= ?"), vec![Arg::Time(*t)]),
                Bound::Before(t) => self.and(&format!("{time} < ?"), vec![Arg::Time(*t)]),
            }
        }
        if let Some(a) = s.after {
            self.and("id > ?", vec![Arg::Uuid(a)]);
        }
        self.args.push(Arg::Int(s.limit));
        self.sql
            .push_str(&format!(" ORDER BY id LIMIT ${}", self.args.len()));
        self
    }
}

async fn fetch<T>(db: &Db, q: Query) -> Result<Vec<T>>
where
    T: Send
        + Unpin
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    Ok(on_read!(db, c => {
        let mut qa = sqlx::query_as::<_, T>(&q.sql);
        for a in &q.args {
            qa = match a {
                Arg::Uuid(u) => qa.bind(*u),
                Arg::Text(s) => qa.bind(s.clone()),
                Arg::Time(t) => qa.bind(*t),
                Arg::Int(i) => qa.bind(*i),
            };
        }
        qa.fetch_all(c).await
    })?)
}

/// The folded-prefix range `[p, p + U+10FFFF)`.
fn prefix(p: &str) -> Vec<Arg> {
    vec![
        Arg::Text(p.to_string()),
        Arg::Text(format!("{p}{}", char::MAX)),
    ]
}

pub async fn patients(db: &Db, s: &Search, f: &PatientFilter) -> Result<Vec<PatientRow>> {
    let mut q = Query::new(format!("SELECT {} FROM patients", crate::patients::COLS));
    if let Some(m) = &f.mrn {
        q.and("mrn = ?", vec![Arg::Text(m.clone())]);
    }
    for (lo, hi) in &f.birth_date {
        if let Some(lo) = lo {
            q.and("birth_date >= ?", vec![Arg::Text(lo.clone())]);
        }
        if let Some(hi) = hi {
            q.and("birth_date < ?", vec![Arg::Text(hi.clone())]);
        }
    }
    for n in &f.name {
        let mut args = prefix(n);
        args.extend(prefix(n));
        q.and(
            "(search_fg >= ? AND search_fg < ?) OR (search_gf >= ? AND search_gf < ?)",
            args,
        );
    }
    for n in &f.family {
        q.and("search_fg >= ? AND search_fg < ?", prefix(n));
    }
    for n in &f.given {
        q.and("search_gf >= ? AND search_gf < ?", prefix(n));
    }
    fetch(db, q.common(s, "updated_at", Some("patients.id"))).await
}

pub async fn allergies(db: &Db, s: &Search) -> Result<Vec<AllergyRow>> {
    let q = Query::new(format!(
        "SELECT {} FROM allergies",
        crate::patients::ALLERGY_COLS
    ));
    fetch(db, q.common(s, "recorded_at", Some("allergies.patient_id"))).await
}

pub async fn problems(db: &Db, s: &Search) -> Result<Vec<ProblemRow>> {
    let q = Query::new(format!(
        "SELECT {} FROM problems",
        crate::patients::PROBLEM_COLS
    ));
    fetch(db, q.common(s, "recorded_at", Some("problems.patient_id"))).await
}

pub async fn prescriptions(db: &Db, s: &Search) -> Result<Vec<PrescriptionRow>> {
    let q = Query::new(format!(
        "SELECT {} FROM prescriptions",
        crate::prescriptions::COLS
    ));
    fetch(
        db,
        q.common(s, "updated_at", Some("prescriptions.patient_id")),
    )
    .await
}

/// A lab result changes when it is reviewed.
pub const LAB_UPDATED: &str = "COALESCE(reviewed_at, recorded_at)";

pub async fn labs(db: &Db, s: &Search, code: Option<&str>) -> Result<Vec<LabRow>> {
    let mut q = Query::new(format!("SELECT {} FROM labs", crate::labs::COLS));
    if let Some(c) = code {
        q.and("code = ?", vec![Arg::Text(c.to_string())]);
    }
    fetch(db, q.common(s, LAB_UPDATED, Some("labs.patient_id"))).await
}

/// Vital-sign sets (each becomes several Observations). `from` is the set
/// of the previous page's last Observation: sets from it on (inclusive, as
/// the rest of that set may follow) instead of `s.after`. `any_of` names
/// columns of which one must be present (a `code` search). A set never
/// changes once entered, so its `_lastUpdated` is its entry time.
pub async fn vitals(
    db: &Db,
    s: &Search,
    from: Option<Uuid>,
    any_of: &[&str],
) -> Result<Vec<crate::vitals::VitalsRow>> {
    let mut q = Query::new(format!("SELECT {} FROM vitals", crate::vitals::COLS));
    if let Some(f) = from {
        q.and("id >= ?", vec![Arg::Uuid(f)]);
    }
    if !any_of.is_empty() {
        let clause = any_of
            .iter()
            // Column names only (`spo2`, `weight_kg`): never text from a request.
            .filter(|c| {
                c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
            })
            .map(|c| format!("{c} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" OR ");
        q.and(&format!("({clause})"), vec![]);
    }
    fetch(db, q.common(s, "entered_at", Some("vitals.patient_id"))).await
}

/// Final notes only (drafts are not part of the record); a final note
/// changes only by gaining addenda.
pub async fn final_notes(db: &Db, s: &Search) -> Result<Vec<NoteRow>> {
    let mut q = Query::new(format!("SELECT {} FROM notes", crate::notes::COLS));
    q.and("status = 'final'", vec![]);
    let time = "COALESCE((SELECT max(a.signed_at) FROM note_addenda a WHERE a.note_id = notes.id), updated_at)";
    fetch(db, q.common(s, time, Some("notes.patient_id"))).await
}

/// The addenda of several notes at once, in signing order.
pub async fn addenda_of(db: &Db, notes: &[Uuid]) -> Result<Vec<AddendumRow>> {
    if notes.is_empty() {
        return Ok(vec![]);
    }
    let mut q = Query::new(
        "SELECT id, note_id, author_id, text, signed_at, content_hash FROM note_addenda".into(),
    );
    let marks = vec!["?"; notes.len()].join(", ");
    q.and(
        &format!("note_id IN ({marks})"),
        notes.iter().map(|n| Arg::Uuid(*n)).collect(),
    );
    q.sql.push_str(" ORDER BY signed_at, id");
    fetch(db, q).await
}

/// A clinician as the FHIR API shows them (never the password hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PractitionerRow {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: domain::roles::Role,
    #[sqlx(try_from = "String")]
    pub status: domain::account::UserStatus,
    pub updated_at: DateTime<Utc>,
}

/// Providers and nurses: the users who author clinical records.
pub async fn practitioners(
    db: &Db,
    s: &Search,
    ids: Option<&[Uuid]>,
) -> Result<Vec<PractitionerRow>> {
    let mut q = Query::new("SELECT id, name, email, role, status, updated_at FROM users".into());
    q.and("role IN ('provider', 'nurse')", vec![]);
    if let Some(ids) = ids {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let marks = vec!["?"; ids.len()].join(", ");
        q.and(
            &format!("id IN ({marks})"),
            ids.iter().map(|n| Arg::Uuid(*n)).collect(),
        );
    }
    fetch(db, q.common(s, "updated_at", None)).await
}
