//! Patients (demographics), allergies and problems.

use chrono::{DateTime, Utc};
use uuid::Uuid;

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
    pub sex: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const COLS: &str = "id, mrn, given_name, family_name, search_fg, birth_date, sex, phone, email, address, version, created_at, updated_at";

/// Demographic fields as written by a user (already validated).
#[derive(Debug, Clone)]
pub struct Demographics {
    pub given_name: String,
    pub family_name: String,
    pub birth_date: String,
    pub sex: String,
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
    let sql = "INSERT INTO patients (id, mrn, given_name, family_name, search_fg, search_gf, birth_date, sex, phone, email, address, version, created_by, created_at, updated_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $13, $13)";
    for _ in 0..8 {
        let candidate = mrn();
        // A savepoint keeps the transaction usable after a collision.
        on_tx!(tx, c => sqlx::query("SAVEPOINT mrn").execute(&mut *c).await.map(|r| r.rows_affected()))?;
        let res = on_tx!(tx, c => sqlx::query(sql)
            .bind(id).bind(&candidate).bind(&d.given_name).bind(&d.family_name).bind(&fg).bind(&gf)
            .bind(&d.birth_date).bind(&d.sex).bind(&d.phone).bind(&d.email).bind(&d.address)
            .bind(created_by).bind(now)
            .execute(&mut *c).await.map(|r| r.rows_affected()));
        match res {
            Ok(_) => {
                on_tx!(tx, c => sqlx::query("RELEASE SAVEPOINT mrn").execute(&mut *c).await.map(|r| r.rows_affected()))?;
                return Ok(PatientRow {
                    id,
                    mrn: candidate,
                    given_name: d.given_name.clone(),
                    family_name: d.family_name.clone(),
                    search_fg: fg,
                    birth_date: d.birth_date.clone(),
                    sex: d.sex.clone(),
                    phone: d.phone.clone(),
                    email: d.email.clone(),
                    address: d.address.clone(),
                    version: 1,
                    created_at: now,
                    updated_at: now,
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

pub async fn get(db: &Db, id: Uuid) -> Result<Option<PatientRow>> {
    let sql = format!("SELECT {COLS} FROM patients WHERE id = $1");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

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
               phone = $7, email = $8, address = $9, version = version + 1, updated_at = $10 WHERE id = $11 AND version = $12";
    let n = on_tx!(tx, c => sqlx::query(sql)
        .bind(&d.given_name).bind(&d.family_name).bind(&fg).bind(&gf).bind(&d.birth_date).bind(&d.sex)
        .bind(&d.phone).bind(&d.email).bind(&d.address).bind(crate::now()).bind(id).bind(expected)
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
            // Two index range scans (one per key order), merged and paged.
            let upper = format!("{p}{}", char::MAX);
            let sql = format!(
                "SELECT {COLS} FROM patients WHERE {keyset} AND ((search_fg >= $4 AND search_fg < $5) OR (search_gf >= $4 AND search_gf < $5)) \
                 ORDER BY search_fg, id LIMIT $6"
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

// ---- allergies ----

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllergyRow {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub substance: String,
    pub reaction: Option<String>,
    pub severity: String,
    pub recorded_by: Uuid,
    pub recorded_at: DateTime<Utc>,
}

pub async fn add_allergy(
    tx: &mut Tx,
    patient: Uuid,
    substance: &str,
    reaction: Option<&str>,
    severity: &str,
    by: Uuid,
) -> Result<AllergyRow> {
    let row = AllergyRow {
        id: Uuid::now_v7(),
        patient_id: patient,
        substance: substance.to_string(),
        reaction: reaction.map(str::to_string),
        severity: severity.to_string(),
        recorded_by: by,
        recorded_at: crate::now(),
    };
    let sql = "INSERT INTO allergies (id, patient_id, substance, reaction, severity, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    on_tx!(tx, c => sqlx::query(sql).bind(row.id).bind(row.patient_id).bind(&row.substance).bind(&row.reaction)
        .bind(&row.severity).bind(row.recorded_by).bind(row.recorded_at).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(row)
}

pub async fn allergies(db: &Db, patient: Uuid) -> Result<Vec<AllergyRow>> {
    let sql = "SELECT id, patient_id, substance, reaction, severity, recorded_by, recorded_at FROM allergies WHERE patient_id = $1 ORDER BY recorded_at, id LIMIT 200";
    Ok(on_read!(db, c => sqlx::query_as(sql).bind(patient).fetch_all(c).await)?)
}

/// Allergies read inside a transaction (for the prescription check).
pub async fn allergies_tx(tx: &mut Tx, patient: Uuid) -> Result<Vec<AllergyRow>> {
    let sql = "SELECT id, patient_id, substance, reaction, severity, recorded_by, recorded_at FROM allergies WHERE patient_id = $1 ORDER BY recorded_at, id";
    Ok(on_tx!(tx, c => sqlx::query_as(sql).bind(patient).fetch_all(&mut *c).await)?)
}

// ---- problems ----

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemRow {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub description: String,
    pub code: Option<String>,
    pub status: String,
    pub recorded_by: Uuid,
    pub recorded_at: DateTime<Utc>,
}

pub async fn add_problem(
    tx: &mut Tx,
    patient: Uuid,
    description: &str,
    code: Option<&str>,
    status: &str,
    by: Uuid,
) -> Result<ProblemRow> {
    let row = ProblemRow {
        id: Uuid::now_v7(),
        patient_id: patient,
        description: description.to_string(),
        code: code.map(str::to_string),
        status: status.to_string(),
        recorded_by: by,
        recorded_at: crate::now(),
    };
    let sql = "INSERT INTO problems (id, patient_id, description, code, status, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    on_tx!(tx, c => sqlx::query(sql).bind(row.id).bind(row.patient_id).bind(&row.description).bind(&row.code)
        .bind(&row.status).bind(row.recorded_by).bind(row.recorded_at).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(row)
}

pub async fn problems(db: &Db, patient: Uuid, only_active: bool) -> Result<Vec<ProblemRow>> {
    let sql = "SELECT id, patient_id, description, code, status, recorded_by, recorded_at FROM problems \
               WHERE patient_id = $1 AND ($2 = 0 OR status = 'active') ORDER BY recorded_at, id LIMIT 200";
    let active: i64 = only_active.into();
    Ok(on_read!(db, c => sqlx::query_as(sql).bind(patient).bind(active).fetch_all(c).await)?)
}

/// Whether the patient exists, inside a transaction.
pub async fn exists_tx(tx: &mut Tx, id: Uuid) -> Result<bool> {
    let n: (i64,) = on_tx!(tx, c => sqlx::query_as("SELECT count(*) FROM patients WHERE id = $1").bind(id).fetch_one(&mut *c).await)?;
    Ok(n.0 > 0)
}
