//! Patients: demographics, search, allergies, problems (SPEC §6).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::account::Email;
use domain::clinical::{self, Errors};
use domain::roles::Action;
use serde::{Deserialize, Serialize};
use store::patients::{AllergyRow, Demographics, PatientQuery, PatientRow, ProblemRow};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{encode_cursor, expected_version, ApiJson, Later};
use crate::routes::{audit_change, audit_read, check, require_patient};
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

/// A random 9-digit number plus a Luhn check digit, so a mistyped MRN is
/// caught at the desk, and the MRN says nothing about the patient count.
pub fn new_mrn() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let body: Vec<u32> = (0..9)
        .map(|i| {
            if i == 0 {
                rng.gen_range(1..10)
            } else {
                rng.gen_range(0..10)
            }
        })
        .collect();
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    let check = (10 - sum % 10) % 10;
    let mut s: String = body
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
        .collect();
    s.push(char::from_digit(check, 10).unwrap_or('0'));
    s
}

fn with_etag(version: i64, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

#[utoipa::path(post, path = "/api/patients", tag = "patients", security(("bearer" = [])), request_body = PatientInput,
    responses((status = 201, body = PatientView), (status = 401), (status = 403), (status = 422), (status = 429)))]
pub async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    body: Later<ApiJson<PatientInput>>,
) -> Result<Response> {
    user.require(Action::CreatePatient)?;
    let ApiJson(req) = body.get()?;
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
        &user,
        "patient.create",
        ("patient", p.id),
        Some(p.id),
        None,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(patientId = %p.id, "patient created");
    let version = p.version;
    Ok(with_etag(
        version,
        (StatusCode::CREATED, Json(PatientView::from(p))),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Name prefix (any order of given and family name), MRN, or birth date YYYY-MM-DD
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientPage {
    pub items: Vec<PatientView>,
    pub next_cursor: Option<String>,
}

/// Decide what a search string means.
pub fn interpret_query(q: Option<&str>) -> PatientQuery {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
        return PatientQuery::All;
    };
    if q.len() == 10 && q.chars().all(|c| c.is_ascii_digit()) {
        return PatientQuery::Mrn(q.to_string());
    }
    if chrono::NaiveDate::parse_from_str(q, "%Y-%m-%d").is_ok() {
        return PatientQuery::BirthDate(q.to_string());
    }
    PatientQuery::NamePrefix(domain::text::fold(q))
}

#[utoipa::path(get, path = "/api/patients", tag = "patients", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = PatientPage), (status = 401), (status = 403), (status = 429)))]
pub async fn search(
    State(st): State<AppState>,
    user: AuthUser,
    Query(q): Query<SearchQuery>,
) -> Result<Json<PatientPage>> {
    user.require(Action::SearchPatients)?;
    if q.q.as_deref().is_some_and(|s| s.chars().count() > 200) {
        return Err(AppError::validation("q", "must be at most 200 characters"));
    }
    let page = crate::extract::PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit();
    let after = match page.cursor_text()? {
        None => None,
        Some(t) => {
            let (id, key) = t.split_once('|').ok_or_else(|| {
                AppError::validation("cursor", "is not a cursor this server issued")
            })?;
            Some((
                key.to_string(),
                Uuid::parse_str(id).map_err(|_| {
                    AppError::validation("cursor", "is not a cursor this server issued")
                })?,
            ))
        }
    };
    let query = interpret_query(q.q.as_deref());
    let mut rows = store::patients::search(&st.db, &query, after, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|p| encode_cursor(&format!("{}|{}", p.id, p.search_fg)))
    } else {
        None
    };
    audit_read(&st, &user, "patient.search", None, None).await?;
    Ok(Json(PatientPage {
        items: rows.into_iter().map(PatientView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/patients/{id}", tag = "patients", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = PatientView), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Response> {
    user.require(Action::ReadPatient)?;
    let p = store::patients::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    audit_read(&st, &user, "patient.read", Some(("patient", id)), Some(id)).await?;
    let version = p.version;
    Ok(with_etag(version, Json(PatientView::from(p))))
}

#[utoipa::path(patch, path = "/api/patients/{id}", tag = "patients", security(("bearer" = [])), request_body = PatientPatch,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The patient's current version")),
    responses((status = 200, body = PatientView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422), (status = 428)))]
pub async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Later<ApiJson<PatientPatch>>,
) -> Result<Response> {
    user.require(Action::UpdatePatient)?;
    let ApiJson(req) = body.get()?;
    let version = expected_version(&headers, req.version)?;
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
        &user,
        "patient.update",
        ("patient", id),
        Some(id),
        None,
    )
    .await?;
    tx.commit().await?;
    let v = p.version;
    Ok(with_etag(v, Json(PatientView::from(p))))
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

#[utoipa::path(post, path = "/api/patients/{id}/allergies", tag = "patients", security(("bearer" = [])), request_body = AllergyInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = AllergyView), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn add_allergy(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<AllergyInput>>,
) -> Result<(StatusCode, Json<AllergyView>)> {
    user.require(Action::RecordAllergy)?;
    let ApiJson(req) = body.get()?;
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
    require_patient(&st, id).await?;
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
        &user,
        "allergy.create",
        ("allergy", a.id),
        Some(id),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(a.into())))
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

#[utoipa::path(post, path = "/api/patients/{id}/problems", tag = "patients", security(("bearer" = [])), request_body = ProblemInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = ProblemView), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn add_problem(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<ProblemInput>>,
) -> Result<(StatusCode, Json<ProblemView>)> {
    user.require(Action::RecordProblem)?;
    let ApiJson(req) = body.get()?;
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
    require_patient(&st, id).await?;
    let mut tx = st.db.begin().await?;
    let p =
        store::patients::add_problem(&mut tx, id, &description, code.as_deref(), &status, user.id)
            .await?;
    audit_change(
        &mut tx,
        &user,
        "problem.create",
        ("problem", p.id),
        Some(id),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(p.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrns_carry_a_luhn_check_digit() {
        for _ in 0..100 {
            let m = new_mrn();
            assert_eq!(m.len(), 10);
            let sum: u32 = m
                .chars()
                .rev()
                .enumerate()
                .map(|(i, c)| {
                    let d = c.to_digit(10).unwrap();
                    if i % 2 == 1 {
                        let x = d * 2;
                        if x > 9 {
                            x - 9
                        } else {
                            x
                        }
                    } else {
                        d
                    }
                })
                .sum();
            assert_eq!(sum % 10, 0, "{m}");
        }
    }

    #[test]
    fn queries_are_interpreted() {
        assert!(matches!(
            interpret_query(Some("0123456789")),
            PatientQuery::Mrn(_)
        ));
        assert!(matches!(
            interpret_query(Some("1980-01-02")),
            PatientQuery::BirthDate(_)
        ));
        assert!(
            matches!(interpret_query(Some("García")), PatientQuery::NamePrefix(ref p) if p == "garcia")
        );
        assert!(matches!(interpret_query(Some("  ")), PatientQuery::All));
    }
}
