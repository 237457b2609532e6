//! Patients (demographics), allergies and problems.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use domain::chart::EntryStatus;
use domain::clinical::{AllergySeverity, Sex};

use crate::db::{is_unique_violation, Db, Result, StoreError, Tx};
use crate::{on_read, on_tx};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientRow {
    pub id: Uuid,
    pub mrn: String,
    pub given_name: String,
    pub family_name: String,
    #[serde(skip)]
    pub search_fg: String,
    pub birth_date: String,
    #[sqlx(try_from = "String")]
    pub sex: Sex,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When a clinician stated "no known drug allergies" (cleared by an allergy)
    pub nkda_at: Option<DateTime<Utc>>,
    pub nkda_by: Option<Uuid>,
}

/// [`PatientRow`]'s columns, as a macro so that constant statements can
/// [`concat!`] them ([`GET_SQL`]).
macro_rules! patient_cols {
    () => {
        "id, mrn, given_name, family_name, search_fg, birth_date, sex, phone, email, address, version, created_at, updated_at, \
                    nkda_at, nkda_by"
    };
}

pub(crate) const COLS: &str = patient_cols!();

fn phone_key(d: &Demographics) -> Option<String> {
    d.phone.as_deref().map(domain::chart::phone_key)
}

/// Demographic fields as written by a user (already validated).
#[derive(Debug, Clone)]
pub struct Demographics {
    pub given_name: String,
    pub family_name: String,
    pub birth_date: String,
    pub sex: Sex,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
}

/// The two folded search keys of a name.
pub fn search_keys(given: &str, family: &str) -> (String, String) {
    let (g, f) = (domain::text::fold(given), domain::text::fold(family));
    (format!("{f} {g}"), format!("{g} {f}"))
}

/// Insert a patient with a fresh random MRN (retrying on the rare collision).
pub async fn insert(
    tx: &mut Tx,
    d: &Demographics,
    created_by: Uuid,
    mrn: impl Fn() -> String,
) -> Result<PatientRow> {
    let id = Uuid::now_v7();
    let now = crate::now();
    let (fg, gf) = search_keys(&d.given_name, &d.family_name);
    let sql = "INSERT INTO patients (id, mrn, given_name, family_name, search_fg, search_gf, birth_date, sex, phone, email, address, version, created_by, created_at, updated_at, phone_key) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $13, $13, $14)";
    for _ in 0..8 {
        let candidate = mrn();
        // A savepoint keeps the transaction usable after a collision.
        on_tx!(tx, c => sqlx::query("SAVEPOINT mrn").execute(&mut *c).await.map(|r| r.rows_affected()))?;
        let res = on_tx!(tx, c => sqlx::query(sql)
            .bind(id).bind(&candidate).bind(&d.given_name).bind(&d.family_name).bind(&fg).bind(&gf)
            .bind(&d.birth_date).bind(d.sex.as_str()).bind(&d.phone).bind(&d.email).bind(&d.address)
            .bind(created_by).bind(now).bind(phone_key(d))
            .execute(&mut *c).await.map(|r| r.rows_affected()));
        match res {
            Ok(_) => {
                on_tx!(tx, c => sqlx::query("RELEASE SAVEPOINT mrn").execute(&mut *c).await.map(|r| r.rows_affected()))?;
                crate::care::place_new_patient(tx, id, created_by).await?;
                return Ok(PatientRow {
                    id,
                    mrn: candidate,
                    given_name: d.given_name.clone(),
                    family_name: d.family_name.clone(),
                    search_fg: fg,
                    birth_date: d.birth_date.clone(),
                    sex: d.sex,
                    phone: d.phone.clone(),
                    email: d.email.clone(),
                    address: d.address.clone(),
                    version: 1,
                    created_at: now,
                    updated_at: now,
                    nkda_at: None,
                    nkda_by: None,
                });
            }
            Err(e) if is_unique_violation(&e) => {
                on_tx!(tx, c => sqlx::query("ROLLBACK TO SAVEPOINT mrn").execute(&mut *c).await.map(|r| r.rows_affected()))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict("could not assign a unique MRN".into()))
}

/// One patient by id. Every patient read asks: on SQLite it runs on the
/// calling thread ([`crate::fastread`]).
pub async fn get(db: &Db, id: Uuid) -> Result<Option<PatientRow>> {
    if let Some(fast) = crate::fast_read(db) {
        return Ok(fast
            .query_row(GET_SQL, &[crate::fastread::Arg::Uuid(id)], |r| {
                Ok(PatientRow {
                    id: r.uuid("id")?,
                    mrn: r.text("mrn")?,
                    given_name: r.text("given_name")?,
                    family_name: r.text("family_name")?,
                    search_fg: r.text("search_fg")?,
                    birth_date: r.text("birth_date")?,
                    sex: r.parsed("sex")?,
                    phone: r.opt_text("phone")?,
                    email: r.opt_text("email")?,
                    address: r.opt_text("address")?,
                    version: r.int("version")?,
                    created_at: r.time("created_at")?,
                    updated_at: r.time("updated_at")?,
                    nkda_at: r.opt_time("nkda_at")?,
                    nkda_by: r.opt_uuid("nkda_by")?,
                })
            })
            .await?);
    }
    Ok(on_read!(db, c => sqlx::query_as(GET_SQL).bind(id).fetch_optional(c).await)?)
}

/// [`get`]'s statement, one text for both paths.
const GET_SQL: &str = concat!("SELECT ", patient_cols!(), " FROM patients WHERE id = $1");

pub async fn exists(db: &Db, id: Uuid) -> Result<bool> {
    let n: (i64,) = on_read!(db, c => sqlx::query_as("SELECT count(*) FROM patients WHERE id = $1").bind(id).fetch_one(c).await)?;
    Ok(n.0 > 0)
}

pub async fn count(db: &Db) -> Result<i64> {
    let n: (i64,) =
        on_read!(db, c => sqlx::query_as("SELECT count(*) FROM patients").fetch_one(c).await)?;
    Ok(n.0)
}

/// Update demographics if the stored version is `expected`.
pub async fn update(tx: &mut Tx, id: Uuid, expected: i64, d: &Demographics) -> Result<PatientRow> {
    let (fg, gf) = search_keys(&d.given_name, &d.family_name);
    let sql = "UPDATE patients SET given_name = $1, family_name = $2, search_fg = $3, search_gf = $4, birth_date = $5, sex = $6, \
               phone = $7, email = $8, address = $9, version = version + 1, updated_at = $10, phone_key = $13 WHERE id = $11 AND version = $12";
    let n = on_tx!(tx, c => sqlx::query(sql)
        .bind(&d.given_name).bind(&d.family_name).bind(&fg).bind(&gf).bind(&d.birth_date).bind(d.sex.as_str())
        .bind(&d.phone).bind(&d.email).bind(&d.address).bind(crate::now()).bind(id).bind(expected).bind(phone_key(d))
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    let sql = format!("SELECT {COLS} FROM patients WHERE id = $1");
    let row: Option<PatientRow> =
        on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?;
    match (n, row) {
        (1, Some(r)) => Ok(r),
        (_, None) => Err(StoreError::NotFound),
        (_, Some(r)) => Err(StoreError::Conflict(format!(
            "the patient was changed by someone else (current version {})",
            r.version
        ))),
    }
}

/// How a search narrows patients (decided in `domain::mrn::interpret`); a
/// folded name prefix is matched against "family given" and "given family".
pub use domain::mrn::SearchTerm as PatientQuery;

/// One page of patients ordered by (family, given, id), after `after`.
pub async fn search(
    db: &Db,
    q: &PatientQuery,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> Result<Vec<PatientRow>> {
    let (ck, cid) = after.clone().unwrap_or_default();
    let has_cursor: i64 = after.is_some().into();
    let keyset = "($1 = 0 OR search_fg > $2 OR (search_fg = $2 AND id > $3))";
    match q {
        PatientQuery::NamePrefix(p) => {
            // Two index range scans (one per key order), each ordered by
            // the page order and limited on its own from a covering index,
            // merged, and only the page's rows read from the table. An `OR`
            // of the two ranges read and sorted every match (issue 9, W2).
            let upper = format!("{p}{}", char::MAX);
            let sql = format!(
                "SELECT {COLS} FROM patients JOIN (\
                 SELECT k, pid FROM (SELECT search_fg AS k, id AS pid FROM patients \
                   WHERE {keyset} AND search_fg >= $4 AND search_fg < $5 ORDER BY search_fg, id LIMIT $6) a \
                 UNION \
                 SELECT k, pid FROM (SELECT search_fg AS k, id AS pid FROM patients \
                   WHERE {keyset} AND search_gf >= $4 AND search_gf < $5 ORDER BY search_fg, id LIMIT $6) b\
                 ) m ON patients.id = m.pid ORDER BY m.k, m.pid LIMIT $6"
            );
            Ok(
                on_read!(db, c => sqlx::query_as(&sql).bind(has_cursor).bind(&ck).bind(cid).bind(p).bind(&upper).bind(limit).fetch_all(c).await)?,
            )
        }
        PatientQuery::Mrn(m) | PatientQuery::BirthDate(m) => {
            let col = if matches!(q, PatientQuery::Mrn(_)) {
                "mrn"
            } else {
                "birth_date"
            };
            let sql = format!("SELECT {COLS} FROM patients WHERE {keyset} AND {col} = $4 ORDER BY search_fg, id LIMIT $5");
            Ok(
                on_read!(db, c => sqlx::query_as(&sql).bind(has_cursor).bind(&ck).bind(cid).bind(m).bind(limit).fetch_all(c).await)?,
            )
        }
        PatientQuery::MrnPrefix(m) => {
            // An index range: every MRN from the digits typed up to the
            // next string (':' sorts right after '9').
            let upper = format!("{m}:");
            let sql = format!("SELECT {COLS} FROM patients WHERE {keyset} AND mrn >= $4 AND mrn < $5 ORDER BY search_fg, id LIMIT $6");
            Ok(
                on_read!(db, c => sqlx::query_as(&sql).bind(has_cursor).bind(&ck).bind(cid).bind(m).bind(&upper).bind(limit).fetch_all(c).await)?,
            )
        }
        PatientQuery::All => {
            let sql = format!(
                "SELECT {COLS} FROM patients WHERE {keyset} ORDER BY search_fg, id LIMIT $4"
            );
            Ok(
                on_read!(db, c => sqlx::query_as(&sql).bind(has_cursor).bind(&ck).bind(cid).bind(limit).fetch_all(c).await)?,
            )
        }
    }
}

/// Patients who may be the person being registered: the same folded name
/// ("family given") and birth date, or the same phone digits.
pub async fn likely_duplicates(db: &Db, d: &Demographics, limit: i64) -> Result<Vec<PatientRow>> {
    let (fg, _) = search_keys(&d.given_name, &d.family_name);
    let phone = phone_key(d).filter(|k| !k.is_empty());
    let has_phone: i64 = phone.is_some().into();
    let sql = format!(
        "SELECT {COLS} FROM patients WHERE (search_fg = $1 AND birth_date = $2) OR ($3 = 1 AND phone_key = $4) \
         ORDER BY created_at, id LIMIT $5"
    );
    Ok(
        on_read!(db, c => sqlx::query_as(&sql).bind(&fg).bind(&d.birth_date).bind(has_phone)
        .bind(phone.unwrap_or_default()).bind(limit).fetch_all(c).await)?,
    )
}

/// Record "no known drug allergies".
pub async fn state_nkda(tx: &mut Tx, patient: Uuid, by: Uuid) -> Result<()> {
    let sql = "UPDATE patients SET nkda_at = $1, nkda_by = $2 WHERE id = $3";
    on_tx!(tx, c => sqlx::query(sql).bind(crate::now()).bind(by).bind(patient)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

// ---- allergies ----

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllergyRow {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub substance: String,
    pub reaction: Option<String>,
    #[sqlx(try_from = "String")]
    pub severity: AllergySeverity,
    pub recorded_by: Uuid,
    pub recorded_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub status: EntryStatus,
    pub resolved_on: Option<String>,
    pub version: i64,
    pub updated_by: Option<Uuid>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub(crate) const ALLERGY_COLS: &str = "id, patient_id, substance, reaction, severity, recorded_by, recorded_at, status, resolved_on, \
                            version, updated_by, updated_at";

/// The editable parts of an allergy (validated by the caller).
#[derive(Debug, Clone)]
pub struct AllergyFields {
    pub substance: String,
    pub reaction: Option<String>,
    pub severity: AllergySeverity,
    pub status: EntryStatus,
    pub resolved_on: Option<String>,
}

/// Record an active allergy; it replaces a "no known drug allergies"
/// statement.
pub async fn add_allergy(
    tx: &mut Tx,
    patient: Uuid,
    substance: &str,
    reaction: Option<&str>,
    severity: AllergySeverity,
    by: Uuid,
) -> Result<AllergyRow> {
    let id = Uuid::now_v7();
    let sql = "INSERT INTO allergies (id, patient_id, substance, reaction, severity, recorded_by, recorded_at, status, version) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', 1)";
    on_tx!(tx, c => sqlx::query(sql).bind(id).bind(patient).bind(substance).bind(reaction)
        .bind(severity.as_str()).bind(by).bind(crate::now()).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    let clear =
        "UPDATE patients SET nkda_at = NULL, nkda_by = NULL WHERE id = $1 AND nkda_at IS NOT NULL";
    on_tx!(tx, c => sqlx::query(clear).bind(patient).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    get_allergy_tx(tx, id).await?.ok_or(StoreError::NotFound)
}

/// Every allergy of the patient, whatever its status (the history).
pub async fn allergies(db: &Db, patient: Uuid) -> Result<Vec<AllergyRow>> {
    let sql = format!("SELECT {ALLERGY_COLS} FROM allergies WHERE patient_id = $1 ORDER BY recorded_at, id LIMIT 200");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(patient).fetch_all(c).await)?)
}

/// Active allergies read inside a transaction (for the prescription check):
/// inactive, resolved and entered-in-error ones do not block.
pub async fn allergies_tx(tx: &mut Tx, patient: Uuid) -> Result<Vec<AllergyRow>> {
    let sql = format!("SELECT {ALLERGY_COLS} FROM allergies WHERE patient_id = $1 AND status = 'active' ORDER BY recorded_at, id");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(patient).fetch_all(&mut *c).await)?)
}

pub async fn get_allergy_tx(tx: &mut Tx, id: Uuid) -> Result<Option<AllergyRow>> {
    let sql = format!("SELECT {ALLERGY_COLS} FROM allergies WHERE id = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?)
}

fn stale(what: &str, current: i64) -> StoreError {
    StoreError::Conflict(format!(
        "the {what} was changed by someone else (current version {current})"
    ))
}

/// Change an allergy if its stored version is `expected`.
pub async fn update_allergy(
    tx: &mut Tx,
    id: Uuid,
    expected: i64,
    f: &AllergyFields,
    by: Uuid,
) -> Result<AllergyRow> {
    let sql = "UPDATE allergies SET substance = $1, reaction = $2, severity = $3, status = $4, resolved_on = $5, \
               version = version + 1, updated_by = $6, updated_at = $7 WHERE id = $8 AND version = $9";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(&f.substance).bind(&f.reaction).bind(f.severity.as_str())
        .bind(f.status.as_str()).bind(&f.resolved_on).bind(by).bind(crate::now()).bind(id).bind(expected)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    match (n, get_allergy_tx(tx, id).await?) {
        (1, Some(r)) => Ok(r),
        (_, None) => Err(StoreError::NotFound),
        (_, Some(r)) => Err(stale("allergy", r.version)),
    }
}

/// How many active allergies the patient has (inside a transaction).
pub async fn active_allergy_count_tx(tx: &mut Tx, patient: Uuid) -> Result<i64> {
    let sql = "SELECT count(*) FROM allergies WHERE patient_id = $1 AND status = 'active'";
    let n: (i64,) = on_tx!(tx, c => sqlx::query_as(sql).bind(patient).fetch_one(&mut *c).await)?;
    Ok(n.0)
}

// ---- problems ----

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemRow {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub description: String,
    pub code: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: EntryStatus,
    pub recorded_by: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub resolved_on: Option<String>,
    pub version: i64,
    pub updated_by: Option<Uuid>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub(crate) const PROBLEM_COLS: &str =
    "id, patient_id, description, code, status, recorded_by, recorded_at, resolved_on, version, \
                            updated_by, updated_at";

/// The editable parts of a problem (validated by the caller).
#[derive(Debug, Clone)]
pub struct ProblemFields {
    pub description: String,
    pub code: Option<String>,
    pub status: EntryStatus,
    pub resolved_on: Option<String>,
}

pub async fn add_problem(
    tx: &mut Tx,
    patient: Uuid,
    f: &ProblemFields,
    by: Uuid,
) -> Result<ProblemRow> {
    let id = Uuid::now_v7();
    let sql = "INSERT INTO problems (id, patient_id, description, code, status, recorded_by, recorded_at, resolved_on, version) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)";
    on_tx!(tx, c => sqlx::query(sql).bind(id).bind(patient).bind(&f.description).bind(&f.code)
        .bind(f.status.as_str()).bind(by).bind(crate::now()).bind(&f.resolved_on)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    get_problem_tx(tx, id).await?.ok_or(StoreError::NotFound)
}

/// A patient's problems: the active ones, or all of them (the history).
pub async fn problems(db: &Db, patient: Uuid, only_active: bool) -> Result<Vec<ProblemRow>> {
    let sql = format!(
        "SELECT {PROBLEM_COLS} FROM problems WHERE patient_id = $1 AND ($2 = 0 OR status = 'active') \
         ORDER BY recorded_at, id LIMIT 200"
    );
    let active: i64 = only_active.into();
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(patient).bind(active).fetch_all(c).await)?)
}

pub async fn get_problem_tx(tx: &mut Tx, id: Uuid) -> Result<Option<ProblemRow>> {
    let sql = format!("SELECT {PROBLEM_COLS} FROM problems WHERE id = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?)
}

/// Change a problem if its stored version is `expected`.
pub async fn update_problem(
    tx: &mut Tx,
    id: Uuid,
    expected: i64,
    f: &ProblemFields,
    by: Uuid,
) -> Result<ProblemRow> {
    let sql = "UPDATE problems SET description = $1, code = $2, status = $3, resolved_on = $4, \
               version = version + 1, updated_by = $5, updated_at = $6 WHERE id = $7 AND version = $8";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(&f.description).bind(&f.code).bind(f.status.as_str())
        .bind(&f.resolved_on).bind(by).bind(crate::now()).bind(id).bind(expected)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    match (n, get_problem_tx(tx, id).await?) {
        (1, Some(r)) => Ok(r),
        (_, None) => Err(StoreError::NotFound),
        (_, Some(r)) => Err(stale("problem", r.version)),
    }
}

/// Whether the patient exists, inside a transaction.
pub async fn exists_tx(tx: &mut Tx, id: Uuid) -> Result<bool> {
    let n: (i64,) = on_tx!(tx, c => sqlx::query_as("SELECT count(*) FROM patients WHERE id = $1").bind(id).fetch_one(&mut *c).await)?;
    Ok(n.0 > 0)
}

/// The id of the patient with this MRN (the audit log's MRN filter).
pub async fn id_by_mrn(db: &Db, mrn: &str) -> Result<Option<Uuid>> {
    let row: Option<(Uuid,)> = on_read!(db, c => sqlx::query_as("SELECT id FROM patients WHERE mrn = $1")
        .bind(mrn)
        .fetch_optional(c)
        .await)?;
    Ok(row.map(|r| r.0))
}

/// A table whose rows belong to one patient and are addressed by their own
/// id (`/api/notes/{id}`, `/api/labs/{id}`, `/api/prescriptions/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoped {
    Note,
    Lab,
    Prescription,
}

/// The patient the `kind` row `id` belongs to, when the row exists (for
/// auditing a refused access to it with its patient).
pub async fn owner_of(db: &Db, kind: Scoped, id: Uuid) -> Result<Option<Uuid>> {
    let sql = match kind {
        Scoped::Note => "SELECT patient_id FROM notes WHERE id = $1",
        Scoped::Lab => "SELECT patient_id FROM labs WHERE id = $1",
        Scoped::Prescription => "SELECT patient_id FROM prescriptions WHERE id = $1",
    };
    let row: Option<(Uuid,)> =
        on_read!(db, c => sqlx::query_as(sql).bind(id).fetch_optional(c).await)?;
    Ok(row.map(|r| r.0))
}
