//! Patients: demographics, search, allergies, problems (SPEC §6).

use domain::account::Email;
use domain::audit::AuditAction;
use domain::clinical::{self, Errors};
use domain::roles::Action;
use serde::{Deserialize, Serialize};
use store::patients::{AllergyRow, Demographics, PatientRow, ProblemRow};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{expected_version, PageQuery};
use crate::services::{audit_change, audit_read, check, page, require_patient, Body};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientInput {
    pub given_name: String,
    pub family_name: String,
    /// YYYY-MM-DD
    pub birth_date: String,
    /// female, male, other or unknown
    pub sex: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientPatch {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub version: Option<i64>,
}

/// A patient as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientView {
    pub id: Uuid,
    pub mrn: String,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: String,
    pub sex: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub version: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<PatientRow> for PatientView {
    fn from(p: PatientRow) -> Self {
        PatientView {
            id: p.id,
            mrn: p.mrn,
            given_name: p.given_name,
            family_name: p.family_name,
            birth_date: p.birth_date,
            sex: p.sex,
            phone: p.phone,
            email: p.email,
            address: p.address,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

fn demographics(
    given: &str,
    family: &str,
    birth: &str,
    sex: &str,
    phone: Option<&str>,
    email: Option<&str>,
    address: Option<&str>,
) -> Result<Demographics> {
    let mut e = Errors::default();
    let today = chrono::Utc::now().date_naive();
    let d = Demographics {
        given_name: e.take(clinical::text("givenName", given, 100, true, true)),
        family_name: e.take(clinical::text("familyName", family, 100, true, true)),
        birth_date: e.take(clinical::birth_date(birth, today)),
        sex: e.take(clinical::sex(sex)),
        phone: e.take(clinical::phone(phone)),
        email: e.take(match email.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => Email::parse(s).map(|m| Some(m.as_str().to_string())),
        }),
        address: e.take(clinical::opt_text("address", address, 500, false)),
    };
    check(e)?;
    Ok(d)
}

/// A new MRN (see `domain::mrn`), from the operating system's randomness.
pub fn new_mrn() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    domain::mrn::generate(|r| rng.gen_range(r))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientPage {
    pub items: Vec<PatientView>,
    pub next_cursor: Option<String>,
}

/// Register a patient.
pub async fn create(
    st: &AppState,
    user: &AuthUser,
    body: Body<PatientInput>,
) -> Result<PatientView> {
    user.require(Action::CreatePatient)?;
    let req = body?;
    let d = demographics(
        &req.given_name,
        &req.family_name,
        &req.birth_date,
        &req.sex,
        req.phone.as_deref(),
        req.email.as_deref(),
        req.address.as_deref(),
    )?;
    let mut tx = st.db.begin().await?;
    let p = store::patients::insert(&mut tx, &d, user.id, new_mrn).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::PatientCreate,
        ("patient", p.id),
        Some(p.id),
        None,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(patientId = %p.id, "patient created");
    Ok(PatientView::from(p))
}

/// Find patients by name prefix, MRN or birth date (`domain::mrn::interpret`).
pub async fn search(
    st: &AppState,
    user: &AuthUser,
    q: Option<&str>,
    page_q: &PageQuery,
) -> Result<PatientPage> {
    user.require(Action::SearchPatients)?;
    if q.is_some_and(|s| s.chars().count() > 200) {
        return Err(AppError::validation("q", "must be at most 200 characters"));
    }
    let limit = page_q.limit();
    let bad = || AppError::validation("cursor", "is not a cursor this server issued");
    let after = match page_q.cursor_text()? {
        None => None,
        Some(t) => {
            let (id, key) = t.split_once('|').ok_or_else(bad)?;
            Some((key.to_string(), Uuid::parse_str(id).map_err(|_| bad())?))
        }
    };
    let query = domain::mrn::interpret(q);
    let rows = store::patients::search(&st.db, &query, after, limit + 1).await?;
    let (items, next_cursor) = page(
        rows,
        limit,
        |p| format!("{}|{}", p.id, p.search_fg),
        PatientView::from,
    );
    audit_read(st, user, AuditAction::PatientSearch, None, None).await?;
    Ok(PatientPage { items, next_cursor })
}

/// One patient's demographics.
pub async fn get(st: &AppState, user: &AuthUser, id: Uuid) -> Result<PatientView> {
    user.require(Action::ReadPatient)?;
    let p = store::patients::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    audit_read(
        st,
        user,
        AuditAction::PatientRead,
        Some(("patient", id)),
        Some(id),
    )
    .await?;
    Ok(PatientView::from(p))
}

/// Change demographics at the version the user read.
pub async fn update(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    if_match: Result<Option<i64>>,
    body: Body<PatientPatch>,
) -> Result<PatientView> {
    user.require(Action::UpdatePatient)?;
    let req = body?;
    let version = expected_version(if_match?, req.version)?;
    let cur = store::patients::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    // Absent fields keep their value; an empty string clears an optional one.
    let pick = |new: &Option<String>, old: &Option<String>| match new {
        Some(s) => Some(s.clone()),
        None => old.clone(),
    };
    let d = demographics(
        req.given_name.as_deref().unwrap_or(&cur.given_name),
        req.family_name.as_deref().unwrap_or(&cur.family_name),
        req.birth_date.as_deref().unwrap_or(&cur.birth_date),
        req.sex.as_deref().unwrap_or(&cur.sex),
        pick(&req.phone, &cur.phone).as_deref(),
        pick(&req.email, &cur.email).as_deref(),
        pick(&req.address, &cur.address).as_deref(),
    )?;
    let mut tx = st.db.begin().await?;
    let p = store::patients::update(&mut tx, id, version, &d).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::PatientUpdate,
        ("patient", id),
        Some(id),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(PatientView::from(p))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AllergyInput {
    pub substance: String,
    pub reaction: Option<String>,
    /// mild, moderate, severe or unknown (default)
    pub severity: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllergyView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub substance: String,
    pub reaction: Option<String>,
    pub severity: String,
    pub recorded_by: Uuid,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

impl From<AllergyRow> for AllergyView {
    fn from(a: AllergyRow) -> Self {
        AllergyView {
            id: a.id,
            patient_id: a.patient_id,
            substance: a.substance,
            reaction: a.reaction,
            severity: a.severity,
            recorded_by: a.recorded_by,
            recorded_at: a.recorded_at,
        }
    }
}

/// Record an allergy on the chart.
pub async fn add_allergy(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<AllergyInput>,
) -> Result<AllergyView> {
    user.require(Action::RecordAllergy)?;
    let req = body?;
    let mut e = Errors::default();
    let substance = e.take(clinical::text("substance", &req.substance, 200, true, true));
    let reaction = e.take(clinical::opt_text(
        "reaction",
        req.reaction.as_deref(),
        500,
        false,
    ));
    let severity = e.take(clinical::severity(req.severity.as_deref()));
    check(e)?;
    require_patient(st, id).await?;
    let mut tx = st.db.begin().await?;
    let a = store::patients::add_allergy(
        &mut tx,
        id,
        &substance,
        reaction.as_deref(),
        &severity,
        user.id,
    )
    .await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::AllergyCreate,
        ("allergy", a.id),
        Some(id),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(a.into())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ProblemInput {
    pub description: String,
    /// Optional code (ICD-10, SNOMED CT…)
    pub code: Option<String>,
    /// active (default) or resolved
    pub status: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub description: String,
    pub code: Option<String>,
    pub status: String,
    pub recorded_by: Uuid,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

impl From<ProblemRow> for ProblemView {
    fn from(p: ProblemRow) -> Self {
        ProblemView {
            id: p.id,
            patient_id: p.patient_id,
            description: p.description,
            code: p.code,
            status: p.status,
            recorded_by: p.recorded_by,
            recorded_at: p.recorded_at,
        }
    }
}

/// Record a problem on the chart.
pub async fn add_problem(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<ProblemInput>,
) -> Result<ProblemView> {
    user.require(Action::RecordProblem)?;
    let req = body?;
    let mut e = Errors::default();
    let description = e.take(clinical::text(
        "description",
        &req.description,
        500,
        true,
        true,
    ));
    let code = e.take(clinical::opt_text("code", req.code.as_deref(), 40, true));
    let status = e.take(clinical::problem_status(req.status.as_deref()));
    check(e)?;
    require_patient(st, id).await?;
    let mut tx = st.db.begin().await?;
    let p =
        store::patients::add_problem(&mut tx, id, &description, code.as_deref(), &status, user.id)
            .await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::ProblemCreate,
        ("problem", p.id),
        Some(id),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(p.into())
}
