//! Patients: demographics, search, allergies, problems (SPEC §6).

use domain::account::Email;
use domain::audit::AuditAction;
use domain::chart::EntryStatus;
use domain::clinical::{self, AllergySeverity, Errors, Sex};
use domain::roles::Action;
use serde::{Deserialize, Serialize};
use store::patients::{
    AllergyFields, AllergyRow, Demographics, PatientRow, ProblemFields, ProblemRow,
};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{expected_version, PageQuery};
use crate::services::{
    audit_change, audit_read, audit_read_patients, check, illegal, page, require_patient, Body,
};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientInput {
    #[schema(min_length = 1, max_length = 100, pattern = "amal:required-line")]
    pub given_name: String,
    #[schema(min_length = 1, max_length = 100, pattern = "amal:required-line")]
    pub family_name: String,
    /// YYYY-MM-DD
    #[schema(format = Date)]
    pub birth_date: String,
    /// female, male, other or unknown
    #[schema(pattern = r"^(female|male|other|unknown)$")]
    pub sex: String,
    #[schema(pattern = r"^\s*(([ +\-().]*[0-9]){3}[0-9 +\-().]*)?\s*$")]
    /// Digits with spaces, + - ( ) . (at least 3 digits, at most 40
    /// characters); blank means none
    pub phone: Option<String>,
    #[schema(
        max_length = 254,
        pattern = r"^(\s*|[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$"
    )]
    pub email: Option<String>,
    #[schema(max_length = 500, pattern = "amal:line")]
    pub address: Option<String>,
    /// Register even though a likely duplicate exists (after a 409
    /// `possible_duplicate` listed it)
    #[serde(default)]
    pub confirm_duplicate: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientPatch {
    #[schema(min_length = 1, max_length = 100, pattern = "amal:required-line")]
    pub given_name: Option<String>,
    #[schema(min_length = 1, max_length = 100, pattern = "amal:required-line")]
    pub family_name: Option<String>,
    #[schema(format = Date)]
    pub birth_date: Option<String>,
    #[schema(pattern = r"^(female|male|other|unknown)$")]
    pub sex: Option<String>,
    #[schema(pattern = r"^\s*(([ +\-().]*[0-9]){3}[0-9 +\-().]*)?\s*$")]
    /// Digits with spaces, + - ( ) . (at least 3 digits, at most 40
    /// characters); blank means none
    pub phone: Option<String>,
    #[schema(
        max_length = 254,
        pattern = r"^(\s*|[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$"
    )]
    pub email: Option<String>,
    #[schema(max_length = 500, pattern = "amal:line")]
    pub address: Option<String>,
    #[schema(required = true)]
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
    #[schema(value_type = String)]
    pub sex: Sex,
    /// Digits with spaces, + - ( ) . (at least 3 digits, at most 40
    /// characters); blank means none
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
    if !req.confirm_duplicate {
        refuse_likely_duplicate(st, user, &d).await?;
    }
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

/// A chart that may already be this patient's.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateMatch {
    pub id: Uuid,
    pub mrn: String,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: String,
    /// name_and_birth_date or phone
    pub matched_on: String,
}

/// 409 `possible_duplicate` listing the existing charts with the same
/// folded name and birth date, or the same phone (audited with their ids).
async fn refuse_likely_duplicate(st: &AppState, user: &AuthUser, d: &Demographics) -> Result<()> {
    let found = store::patients::likely_duplicates(&st.db, d, 10).await?;
    if found.is_empty() {
        return Ok(());
    }
    let (fg, _) = store::patients::search_keys(&d.given_name, &d.family_name);
    let matches: Vec<DuplicateMatch> = found
        .into_iter()
        .map(|p| DuplicateMatch {
            matched_on: if p.search_fg == fg && p.birth_date == d.birth_date {
                "name_and_birth_date".into()
            } else {
                "phone".into()
            },
            id: p.id,
            mrn: p.mrn,
            given_name: p.given_name,
            family_name: p.family_name,
            birth_date: p.birth_date,
        })
        .collect();
    let mut ev =
        crate::services::audit_event(Some(user), AuditAction::PatientDuplicateWarning, "refused");
    ev.detail = Some(
        serde_json::json!({ "matches": matches.iter().map(|m| m.id).collect::<Vec<_>>() })
            .to_string(),
    );
    crate::services::record_durably(st, ev).await?;
    Err(AppError::Conflict {
        code: "possible_duplicate",
        detail: format!(
            "This may be a patient already registered ({} matching chart{}). Check the charts listed; to register a new patient anyway, send confirmDuplicate: true.",
            matches.len(),
            if matches.len() == 1 { "" } else { "s" }
        ),
        extra: Some(serde_json::json!({ "matches": matches })),
    })
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
    audit_read_patients(
        st,
        user,
        AuditAction::PatientSearch,
        items.iter().map(|p| p.id),
    )
    .await?;
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
        req.sex.as_deref().unwrap_or(cur.sex.as_str()),
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
    #[schema(min_length = 1, max_length = 200, pattern = "amal:required-line")]
    pub substance: String,
    #[schema(max_length = 500, pattern = "amal:text")]
    pub reaction: Option<String>,
    /// mild, moderate, severe or unknown (default)
    #[schema(pattern = r"^(mild|moderate|severe|unknown)$")]
    pub severity: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllergyView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub substance: String,
    pub reaction: Option<String>,
    #[schema(value_type = String)]
    pub severity: AllergySeverity,
    /// active, inactive, resolved or entered_in_error
    #[schema(value_type = String, example = "active")]
    pub status: EntryStatus,
    /// YYYY-MM-DD, when resolved
    pub resolved_on: Option<String>,
    pub version: i64,
    pub recorded_by: Uuid,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub updated_by: Option<Uuid>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<AllergyRow> for AllergyView {
    fn from(a: AllergyRow) -> Self {
        AllergyView {
            id: a.id,
            patient_id: a.patient_id,
            substance: a.substance,
            reaction: a.reaction,
            severity: a.severity,
            status: a.status,
            resolved_on: a.resolved_on,
            version: a.version,
            recorded_by: a.recorded_by,
            recorded_at: a.recorded_at,
            updated_by: a.updated_by,
            updated_at: a.updated_at,
        }
    }
}

/// Record an allergy on the chart (it replaces a "no known drug allergies"
/// statement).
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
    require_patient(st, user, id).await?;
    let mut tx = st.db.begin().await?;
    let a = store::patients::add_allergy(
        &mut tx,
        id,
        &substance,
        reaction.as_deref(),
        severity,
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

/// A change of an allergy: absent fields keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllergyPatch {
    #[schema(min_length = 1, max_length = 200, pattern = "amal:required-line")]
    pub substance: Option<String>,
    /// An empty string clears it
    #[schema(max_length = 500, pattern = "amal:text")]
    pub reaction: Option<String>,
    #[schema(pattern = r"^(mild|moderate|severe|unknown)$")]
    pub severity: Option<String>,
    /// active, inactive, resolved or entered_in_error (final: kept in the
    /// history, struck through, and no longer checked against prescriptions)
    #[schema(pattern = r"^(active|inactive|resolved|entered_in_error)$")]
    pub status: Option<String>,
    /// YYYY-MM-DD (status resolved; defaults to today)
    pub resolved_on: Option<String>,
    #[schema(required = true)]
    pub version: Option<i64>,
}

/// What the lifecycle needs to know of a stored allergy or problem.
trait Entry {
    fn patient(&self) -> Uuid;
    fn status(&self) -> EntryStatus;
    fn resolved_on(&self) -> Option<&str>;
}

impl Entry for AllergyRow {
    fn patient(&self) -> Uuid {
        self.patient_id
    }
    fn status(&self) -> EntryStatus {
        self.status
    }
    fn resolved_on(&self) -> Option<&str> {
        self.resolved_on.as_deref()
    }
}

impl Entry for ProblemRow {
    fn patient(&self) -> Uuid {
        self.patient_id
    }
    fn status(&self) -> EntryStatus {
        self.status
    }
    fn resolved_on(&self) -> Option<&str> {
        self.resolved_on.as_deref()
    }
}

/// The entry of `patient` (404 otherwise) with its new status and
/// resolution date, checked against its current status (entered in error
/// is final); field errors go to `e`.
fn lifecycle<R: Entry>(
    resource: &'static str,
    found: Option<R>,
    patient: Uuid,
    status: Option<&str>,
    resolved_on: Option<&str>,
    e: &mut Errors,
) -> Result<(R, EntryStatus, Option<String>)> {
    let cur = found
        .filter(|r| r.patient() == patient)
        .ok_or(AppError::NotFound)?;
    let current = cur.status();
    domain::chart::may_change(resource, current)
        .map_err(|err| illegal(resource, current.as_str(), err))?;
    let status = match status {
        None => current,
        Some(s) => e
            .take(EntryStatus::parse_field(s).map(Some))
            .unwrap_or(current),
    };
    let today = chrono::Utc::now().date_naive();
    let kept = (current == EntryStatus::Resolved)
        .then_some(cur.resolved_on())
        .flatten();
    let resolved_on = e.take(domain::chart::resolved_on(status, resolved_on, kept, today));
    Ok((cur, status, resolved_on))
}

/// The audit event of an entry's change: its status before and after and
/// its new version (codes only, never the clinical text).
async fn audit_lifecycle(
    tx: &mut store::Tx,
    user: &AuthUser,
    action: AuditAction,
    entry: (&str, Uuid),
    patient: Uuid,
    (from, to, version): (EntryStatus, EntryStatus, i64),
) -> Result<()> {
    let detail =
        serde_json::json!({ "from": from.as_str(), "to": to.as_str(), "version": version });
    audit_change(tx, user, action, entry, Some(patient), Some(detail)).await
}

/// Edit an allergy, or change its status (inactive, resolved with a date,
/// entered in error), at the version the user read. Never deletes.
pub async fn update_allergy(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    allergy: Uuid,
    if_match: Result<Option<i64>>,
    body: Body<AllergyPatch>,
) -> Result<AllergyView> {
    user.require(Action::RecordAllergy)?;
    require_patient(st, user, patient).await?;
    let req = body?;
    let version = expected_version(if_match?, req.version)?;
    let mut tx = st.db.begin().await?;
    let found = store::patients::get_allergy_tx(&mut tx, allergy).await?;
    let mut e = Errors::default();
    let (status, resolved_on) = (req.status.as_deref(), req.resolved_on.as_deref());
    let (cur, status, resolved_on) =
        lifecycle("allergy", found, patient, status, resolved_on, &mut e)?;
    let fields = AllergyFields {
        substance: e.take(clinical::text(
            "substance",
            req.substance.as_deref().unwrap_or(&cur.substance),
            200,
            true,
            true,
        )),
        reaction: e.take(clinical::opt_text(
            "reaction",
            req.reaction.as_deref().or(cur.reaction.as_deref()),
            500,
            false,
        )),
        severity: e.take(clinical::severity(Some(
            req.severity.as_deref().unwrap_or(cur.severity.as_str()),
        ))),
        status,
        resolved_on,
    };
    check(e)?;
    let a = store::patients::update_allergy(&mut tx, allergy, version, &fields, user.id).await?;
    let change = (cur.status, a.status, a.version);
    audit_lifecycle(
        &mut tx,
        user,
        AuditAction::AllergyUpdate,
        ("allergy", allergy),
        patient,
        change,
    )
    .await?;
    tx.commit().await?;
    Ok(a.into())
}

/// The "no known drug allergies" statement.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NkdaView {
    pub stated_at: chrono::DateTime<chrono::Utc>,
    pub stated_by: Option<Uuid>,
}

impl NkdaView {
    pub fn of(p: &PatientRow) -> Option<NkdaView> {
        p.nkda_at.map(|t| NkdaView {
            stated_at: t,
            stated_by: p.nkda_by,
        })
    }
}

/// State "no known drug allergies" (asked and none reported). Refused while
/// an allergy is active: mark it inactive or entered in error first. A later
/// allergy replaces the statement.
pub async fn state_no_known_allergies(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
) -> Result<NkdaView> {
    user.require(Action::RecordAllergy)?;
    require_patient(st, user, patient).await?;
    let mut tx = st.db.begin().await?;
    if !store::patients::exists_tx(&mut tx, patient).await? {
        return Err(AppError::NotFound);
    }
    let active = store::patients::active_allergy_count_tx(&mut tx, patient).await?;
    if active > 0 {
        return Err(AppError::Conflict {
            code: "conflict",
            detail: format!(
                "The chart lists {active} active allerg{}; mark them inactive or entered in error before stating no known drug allergies.",
                if active == 1 { "y" } else { "ies" }
            ),
            extra: Some(serde_json::json!({ "activeAllergies": active })),
        });
    }
    store::patients::state_nkda(&mut tx, patient, user.id).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::AllergyNoneStated,
        ("patient", patient),
        Some(patient),
        None,
    )
    .await?;
    tx.commit().await?;
    let p = store::patients::get(&st.db, patient)
        .await?
        .ok_or(AppError::NotFound)?;
    NkdaView::of(&p).ok_or(AppError::NotFound)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemInput {
    #[schema(min_length = 1, max_length = 500, pattern = "amal:required-line")]
    pub description: String,
    /// Optional code (ICD-10, SNOMED CT…)
    #[schema(max_length = 40, pattern = "amal:line")]
    pub code: Option<String>,
    /// active (default), inactive or resolved
    #[schema(pattern = r"^(active|inactive|resolved)$")]
    pub status: Option<String>,
    /// YYYY-MM-DD (status resolved; defaults to today)
    pub resolved_on: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub description: String,
    pub code: Option<String>,
    /// active, inactive, resolved or entered_in_error
    #[schema(value_type = String, example = "active")]
    pub status: EntryStatus,
    /// YYYY-MM-DD, when resolved
    pub resolved_on: Option<String>,
    pub version: i64,
    pub recorded_by: Uuid,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub updated_by: Option<Uuid>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<ProblemRow> for ProblemView {
    fn from(p: ProblemRow) -> Self {
        ProblemView {
            id: p.id,
            patient_id: p.patient_id,
            description: p.description,
            code: p.code,
            status: p.status,
            resolved_on: p.resolved_on,
            version: p.version,
            recorded_by: p.recorded_by,
            recorded_at: p.recorded_at,
            updated_by: p.updated_by,
            updated_at: p.updated_at,
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
    let status = match req.status.as_deref() {
        None => EntryStatus::Active,
        Some(s) => match e.take(EntryStatus::parse_field(s).map(Some)) {
            Some(EntryStatus::EnteredInError) => {
                e.0.push(domain::account::FieldError::new(
                    "status",
                    "must be active, inactive or resolved for a new problem",
                ));
                EntryStatus::Active
            }
            other => other.unwrap_or(EntryStatus::Active),
        },
    };
    let today = chrono::Utc::now().date_naive();
    let resolved_on = e.take(domain::chart::resolved_on(
        status,
        req.resolved_on.as_deref(),
        None,
        today,
    ));
    check(e)?;
    require_patient(st, user, id).await?;
    let fields = ProblemFields {
        description,
        code,
        status,
        resolved_on,
    };
    let mut tx = st.db.begin().await?;
    let p = store::patients::add_problem(&mut tx, id, &fields, user.id).await?;
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

/// A change of a problem: absent fields keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemPatch {
    #[schema(min_length = 1, max_length = 500, pattern = "amal:required-line")]
    pub description: Option<String>,
    /// An empty string clears it
    #[schema(max_length = 40, pattern = "amal:line")]
    pub code: Option<String>,
    /// active, inactive, resolved or entered_in_error (final)
    #[schema(pattern = r"^(active|inactive|resolved|entered_in_error)$")]
    pub status: Option<String>,
    /// YYYY-MM-DD (status resolved; defaults to today)
    pub resolved_on: Option<String>,
    #[schema(required = true)]
    pub version: Option<i64>,
}

/// Edit a problem, resolve it (with a date), inactivate it or mark it
/// entered in error, at the version the user read. Never deletes.
pub async fn update_problem(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    problem: Uuid,
    if_match: Result<Option<i64>>,
    body: Body<ProblemPatch>,
) -> Result<ProblemView> {
    user.require(Action::RecordProblem)?;
    require_patient(st, user, patient).await?;
    let req = body?;
    let version = expected_version(if_match?, req.version)?;
    let mut tx = st.db.begin().await?;
    let found = store::patients::get_problem_tx(&mut tx, problem).await?;
    let mut e = Errors::default();
    let (status, resolved_on) = (req.status.as_deref(), req.resolved_on.as_deref());
    let (cur, status, resolved_on) =
        lifecycle("problem", found, patient, status, resolved_on, &mut e)?;
    let fields = ProblemFields {
        description: e.take(clinical::text(
            "description",
            req.description.as_deref().unwrap_or(&cur.description),
            500,
            true,
            true,
        )),
        code: e.take(clinical::opt_text(
            "code",
            req.code.as_deref().or(cur.code.as_deref()),
            40,
            true,
        )),
        status,
        resolved_on,
    };
    check(e)?;
    let p = store::patients::update_problem(&mut tx, problem, version, &fields, user.id).await?;
    let change = (cur.status, p.status, p.version);
    audit_lifecycle(
        &mut tx,
        user,
        AuditAction::ProblemUpdate,
        ("problem", problem),
        patient,
        change,
    )
    .await?;
    tx.commit().await?;
    Ok(p.into())
}

/// Age in whole years today.
pub fn age_years(birth_date: &str) -> Option<i64> {
    clinical::age_years(birth_date, chrono::Utc::now().date_naive())
}

/// What every patient page shows at the top: who this is (age, sex, MRN),
/// what they are allergic to (severe first), whether "no known drug
/// allergies" was stated, and how many critical results await review.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientBanner {
    pub patient: PatientView,
    pub age: Option<i64>,
    /// Active allergies, severe ones first
    pub allergies: Vec<AllergyView>,
    pub no_known_drug_allergies: Option<NkdaView>,
    pub unreviewed_critical_count: i64,
}

/// The patient banner (audited as a read of the patient).
pub async fn banner(st: &AppState, user: &AuthUser, id: Uuid) -> Result<PatientBanner> {
    user.require(Action::ReadChart)?;
    require_patient(st, user, id).await?;
    let p = store::patients::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let (allergies, (_, critical)) = tokio::try_join!(
        store::patients::allergies(&st.db, id),
        store::labs::unreviewed_critical_for_patient(&st.db, id, 0),
    )?;
    audit_read(
        st,
        user,
        AuditAction::PatientRead,
        Some(("patient", id)),
        Some(id),
    )
    .await?;
    let mut allergies: Vec<AllergyView> = allergies
        .into_iter()
        .filter(|a| a.status == EntryStatus::Active)
        .map(AllergyView::from)
        .collect();
    allergies.sort_by_key(|a| a.severity != AllergySeverity::Severe);
    Ok(PatientBanner {
        age: age_years(&p.birth_date),
        no_known_drug_allergies: NkdaView::of(&p),
        patient: p.into(),
        allergies,
        unreviewed_critical_count: critical,
    })
}
