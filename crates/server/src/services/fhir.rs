//! FHIR R4 reads, searches and `$everything`: the same permission table and
//! the same PHI audit as the JSON API (every page of patient data is an
//! audited read, one event per patient it shows, durable before release).

use std::collections::BTreeSet;

use domain::audit::AuditAction;
use domain::roles::Action;
use serde_json::{json, Value};
use store::fhir::Search;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::fhir::params::{self, Parsed, ResourceType};
use crate::fhir::resources as res;
use crate::services::{audit_event, record_durably};
use crate::state::AppState;

/// What a role must be allowed to read a type.
pub fn action(ty: ResourceType) -> Action {
    match ty {
        ResourceType::Patient => Action::ReadPatient,
        ResourceType::AllergyIntolerance | ResourceType::Condition => Action::ReadChart,
        ResourceType::MedicationRequest => Action::ReadPrescriptions,
        ResourceType::Observation => Action::ReadLabs,
        ResourceType::DocumentReference => Action::ReadNotes,
        // Who wrote a chart is clinical context, not demographics.
        ResourceType::Practitioner => Action::ReadChart,
    }
}

/// Whether `ty` is clinical data of one patient (bound by care teams);
/// Patient is demographics and Practitioner names colleagues.
fn chart_type(ty: ResourceType) -> bool {
    !matches!(ty, ResourceType::Patient | ResourceType::Practitioner)
}

/// One resource of a page, with the patient it belongs to and the users it
/// names (for `$everything`'s Practitioners).
pub struct Found {
    pub id: Uuid,
    pub patient: Option<Uuid>,
    pub resource: Value,
    pub users: Vec<Uuid>,
}

/// One page of `ty` (rows fetched as asked; the caller adds one for `next`).
pub async fn fetch(st: &AppState, ty: ResourceType, p: &Parsed) -> Result<Vec<Found>> {
    if p.matches_nothing {
        return Ok(vec![]);
    }
    let (db, s) = (&st.db, &p.search);
    Ok(match ty {
        ResourceType::Patient => store::fhir::patients(db, s, &p.patients)
            .await?
            .iter()
            .map(|r| Found {
                id: r.id,
                patient: Some(r.id),
                resource: res::patient(r),
                users: vec![],
            })
            .collect(),
        ResourceType::AllergyIntolerance => store::fhir::allergies(db, s)
            .await?
            .iter()
            .map(|r| Found {
                id: r.id,
                patient: Some(r.patient_id),
                resource: res::allergy(r),
                users: vec![r.recorded_by],
            })
            .collect(),
        ResourceType::Condition => store::fhir::problems(db, s)
            .await?
            .iter()
            .map(|r| Found {
                id: r.id,
                patient: Some(r.patient_id),
                resource: res::condition(r),
                users: vec![r.recorded_by],
            })
            .collect(),
        ResourceType::MedicationRequest => store::fhir::prescriptions(db, s)
            .await?
            .iter()
            .map(|r| Found {
                id: r.id,
                patient: Some(r.patient_id),
                resource: res::medication_request(r),
                users: vec![r.issued_by.unwrap_or(r.created_by)],
            })
            .collect(),
        ResourceType::Observation => store::fhir::labs(db, s, p.code.as_deref())
            .await?
            .iter()
            .map(|r| Found {
                id: r.id,
                patient: Some(r.patient_id),
                resource: res::observation(r),
                users: vec![r.recorded_by],
            })
            .collect(),
        ResourceType::DocumentReference => {
            let notes = store::fhir::final_notes(db, s).await?;
            let ids: Vec<Uuid> = notes.iter().map(|n| n.id).collect();
            let addenda = store::fhir::addenda_of(db, &ids).await?;
            notes
                .iter()
                .map(|n| {
                    let mine: Vec<_> = addenda.iter().filter(|a| a.note_id == n.id).collect();
                    let mut users = vec![n.author_id];
                    users.extend(n.signed_by);
                    users.extend(mine.iter().map(|a| a.author_id));
                    Found {
                        id: n.id,
                        patient: Some(n.patient_id),
                        resource: res::document_reference(n, &mine),
                        users,
                    }
                })
                .collect()
        }
        ResourceType::Practitioner => store::fhir::practitioners(db, s, None)
            .await?
            .iter()
            .map(|r| Found {
                id: r.id,
                patient: None,
                resource: res::practitioner(r),
                users: vec![],
            })
            .collect(),
    })
}

/// Audit a FHIR read of `found`: one event per patient shown (or one
/// without a patient when none is), all durable before the data is sent.
async fn audit(
    st: &AppState,
    user: &AuthUser,
    action: AuditAction,
    ty: ResourceType,
    found: &[Found],
    resource: Option<Uuid>,
) -> Result<()> {
    let patients: BTreeSet<Option<Uuid>> = found.iter().map(|f| f.patient).collect();
    let patients = if patients.is_empty() {
        BTreeSet::from([None])
    } else {
        patients
    };
    let events = patients.into_iter().map(|patient| {
        let mut ev = audit_event(Some(user), action, "success");
        ev.resource_type = Some(ty.as_str().to_string());
        ev.resource_id = resource;
        ev.patient_id = patient;
        let count = found.iter().filter(|f| f.patient == patient).count();
        ev.detail = Some(json!({ "fhirType": ty.as_str(), "count": count }).to_string());
        record_durably(st, ev)
    });
    futures::future::try_join_all(events).await?;
    Ok(())
}

/// `GET /fhir/R4/{type}/{id}`.
pub async fn read(st: &AppState, user: &AuthUser, ty: ResourceType, id: &str) -> Result<Value> {
    user.require(action(ty))?;
    let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
    let p = Parsed {
        search: Search {
            id: Some(id),
            limit: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let found = fetch(st, ty, &p).await?;
    if found.is_empty() {
        return Err(AppError::NotFound);
    }
    if chart_type(ty) {
        for patient in found.iter().filter_map(|f| f.patient) {
            crate::services::require_patient(st, user, patient).await?;
        }
    }
    audit(st, user, AuditAction::FhirRead, ty, &found, Some(id)).await?;
    Ok(found
        .into_iter()
        .map(|f| f.resource)
        .next()
        .unwrap_or_default())
}

fn entry(base: &str, ty: &str, f: Found, mode: &str) -> Value {
    json!({
        "fullUrl": format!("{base}/{ty}/{}", f.id),
        "resource": f.resource,
        "search": { "mode": mode },
    })
}

/// `GET /fhir/R4/{type}?…`: a `searchset` Bundle with a `next` link while
/// more rows follow. `link` makes a page's URL from its `_cursor`.
pub async fn search(
    st: &AppState,
    user: &AuthUser,
    ty: ResourceType,
    pairs: &[(String, String)],
    base: &str,
    link: impl Fn(Option<&str>) -> String,
) -> Result<Value> {
    user.require(action(ty))?;
    let mut p = params::parse(ty, pairs).map_err(|e| AppError::BadRequest(e.0))?;
    let limit = p.search.limit;
    p.search.limit = limit + 1;
    if chart_type(ty) {
        if let Some(patient) = p.search.patient {
            crate::services::require_patient(st, user, patient).await?;
        }
    }
    let mut found = fetch(st, ty, &p).await?;
    let next = if found.len() as i64 > limit {
        found.truncate(usize::try_from(limit).unwrap_or(0));
        found
            .last()
            .map(|f| crate::extract::encode_cursor(&f.id.to_string()))
    } else {
        None
    };
    if chart_type(ty) {
        // A search across patients shows only those the user may open (the
        // cursor still follows the unfiltered rows, so no row is skipped).
        let mut allowed = std::collections::BTreeMap::new();
        let mut kept = Vec::with_capacity(found.len());
        for f in found {
            let ok = match f.patient {
                None => true,
                Some(pid) => match allowed.get(&pid) {
                    Some(ok) => *ok,
                    None => {
                        let ok = crate::services::access::may_open(st, user, pid).await?;
                        allowed.insert(pid, ok);
                        ok
                    }
                },
            };
            if ok {
                kept.push(f);
            }
        }
        found = kept;
    }
    audit(st, user, AuditAction::FhirSearch, ty, &found, None).await?;
    let mut links = vec![json!({ "relation": "self", "url": link(None) })];
    if let Some(c) = &next {
        links.push(json!({ "relation": "next", "url": link(Some(c)) }));
    }
    let entries: Vec<Value> = found
        .into_iter()
        .map(|f| entry(base, ty.as_str(), f, "match"))
        .collect();
    Ok(json!({
        "resourceType": "Bundle",
        "id": Uuid::now_v7().to_string(),
        "meta": { "lastUpdated": res::instant(store::now()) },
        "type": "searchset",
        "link": links,
        "entry": entries,
    }))
}

/// Every row of `ty` for one patient, page by page.
async fn all_of(st: &AppState, ty: ResourceType, patient: Uuid) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut p = Parsed::default();
    p.search.patient = Some(patient);
    p.search.limit = 500;
    loop {
        let page = fetch(st, ty, &p).await?;
        let full = page.len() as i64 == p.search.limit;
        p.search.after = page.last().map(|f| f.id);
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// `GET /fhir/R4/Patient/{id}/$everything`: the patient, every allergy,
/// problem, prescription, result and final note (with addenda), and the
/// Practitioners they name.
pub async fn everything(st: &AppState, user: &AuthUser, id: &str, base: &str) -> Result<Value> {
    for a in [
        Action::ReadPatient,
        Action::ReadChart,
        Action::ReadPrescriptions,
        Action::ReadLabs,
        Action::ReadNotes,
    ] {
        user.require(a)?;
    }
    let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
    crate::services::require_patient(st, user, id).await?;
    let mut found = all_of(st, ResourceType::Patient, id).await?;
    if found.is_empty() {
        return Err(AppError::NotFound);
    }
    let mut kinds = vec![(ResourceType::Patient, found.len())];
    for ty in [
        ResourceType::AllergyIntolerance,
        ResourceType::Condition,
        ResourceType::MedicationRequest,
        ResourceType::Observation,
        ResourceType::DocumentReference,
    ] {
        let rows = all_of(st, ty, id).await?;
        kinds.push((ty, rows.len()));
        found.extend(rows);
    }
    let users: Vec<Uuid> = found
        .iter()
        .flat_map(|f| f.users.iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let practitioners = store::fhir::practitioners(
        &st.db,
        &Search {
            limit: users.len() as i64 + 1,
            ..Default::default()
        },
        Some(&users),
    )
    .await?;
    let mut ev = audit_event(Some(user), AuditAction::FhirEverything, "success");
    ev.resource_type = Some("Patient".into());
    ev.resource_id = Some(id);
    ev.patient_id = Some(id);
    ev.detail = Some(
        json!({ "counts": kinds.iter().map(|(t, n)| (t.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>() })
            .to_string(),
    );
    record_durably(st, ev).await?;
    let mut entries: Vec<Value> = found
        .into_iter()
        .map(|f| {
            let ty = f.resource["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            entry(base, &ty, f, "match")
        })
        .collect();
    let total = entries.len();
    entries.extend(practitioners.iter().map(|u| {
        json!({
            "fullUrl": format!("{base}/Practitioner/{}", u.id),
            "resource": res::practitioner(u),
            "search": { "mode": "include" },
        })
    }));
    Ok(json!({
        "resourceType": "Bundle",
        "id": Uuid::now_v7().to_string(),
        "meta": { "lastUpdated": res::instant(store::now()) },
        "type": "searchset",
        "total": total,
        "link": [{ "relation": "self", "url": format!("{base}/Patient/{id}/$everything") }],
        "entry": entries,
    }))
}
