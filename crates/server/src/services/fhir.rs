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
use crate::fhir::params::{self, Category, Parsed, ResourceType};
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
    /// 0 for a row's own resource; 1.. for the vital-sign Observations of a
    /// set (see [`crate::fhir::vitals`]).
    pub part: u8,
    pub patient: Option<Uuid>,
    pub resource: Value,
    pub users: Vec<Uuid>,
}

impl Found {
    fn row(id: Uuid, patient: Option<Uuid>, resource: Value, users: Vec<Uuid>) -> Found {
        Found {
            id,
            part: 0,
            patient,
            resource,
            users,
        }
    }

    /// The resource's FHIR id (also the paging cursor).
    pub fn fhir_id(&self) -> String {
        match crate::fhir::vitals::by_part(self.part) {
            Some(k) => format!("{}-{}", self.id, k.suffix),
            None => self.id.to_string(),
        }
    }
}

/// Continue `p` after `last` (the last resource of the previous page).
pub fn resume(p: &mut Parsed, last: Option<&Found>) {
    p.search.after = last.map(|f| f.id);
    p.after_part = last.map_or(0, |f| f.part);
}

/// Check that `user` may read `ty`. Observations are lab results and vital
/// signs, so they need both permissions.
pub fn require_type(user: &AuthUser, ty: ResourceType) -> Result<()> {
    user.require(action(ty))?;
    if ty == ResourceType::Observation {
        user.require(Action::ReadVitals)?;
    }
    Ok(())
}

/// Observations: lab results (part 0) and the vital-sign Observations of
/// each set, merged in (id, part) order so keyset paging works over both.
async fn observations(st: &AppState, p: &Parsed) -> Result<Vec<Found>> {
    let (db, s) = (&st.db, &p.search);
    let vital_kind = p.code.as_deref().map(crate::fhir::vitals::by_code);
    let mut out = Vec::new();
    let labs_wanted = p.category != Some(Category::VitalSigns)
        && p.id_part.unwrap_or(0) == 0
        && !matches!(vital_kind, Some(Some(_)));
    if labs_wanted {
        out.extend(
            store::fhir::labs(db, s, p.code.as_deref())
                .await?
                .iter()
                .map(|r| {
                    Found::row(
                        r.id,
                        Some(r.patient_id),
                        res::observation(r),
                        vec![r.recorded_by],
                    )
                }),
        );
    }
    let vitals_wanted = p.category != Some(Category::Laboratory)
        && p.id_part.unwrap_or(1) != 0
        && !matches!(vital_kind, Some(None));
    if vitals_wanted {
        let kind = vital_kind.flatten();
        let columns = kind.map_or(&[][..], |k| k.columns);
        // Sets from the cursor's own set on (the rest of it may follow), in
        // chunks until the page is full: every later set yields 1 to 8
        // Observations, so a page needs at most `limit + 1` sets but mostly
        // far fewer, and each set fetched beyond the page is built again on
        // the next one (an export of 1,000 a page built every set ~8 times).
        let chunk = s.limit / 8 + 1;
        let mut vs = s.clone();
        vs.after = None;
        vs.limit = chunk;
        let mut from = s.after;
        let after = s.after.map(|a| (a, p.after_part));
        let mut found = 0;
        loop {
            let sets = store::fhir::vitals(db, &vs, from, columns).await?;
            for v in &sets {
                for (part, o) in crate::fhir::vitals::observations(v) {
                    let wanted = kind.is_none_or(|k| k.part == part)
                        && p.id_part.is_none_or(|i| i == part)
                        && after.is_none_or(|a| (v.id, part) > a);
                    if wanted {
                        found += 1;
                        out.push(Found {
                            id: v.id,
                            part,
                            patient: Some(v.patient_id),
                            resource: o,
                            users: vec![v.recorded_by],
                        });
                    }
                }
            }
            match sets.last() {
                Some(last) if found < s.limit && sets.len() as i64 == chunk => {
                    from = None;
                    vs.after = Some(last.id);
                }
                _ => break,
            }
        }
    }
    out.sort_by_key(|f| (f.id, f.part));
    out.truncate(usize::try_from(s.limit).unwrap_or(0));
    Ok(out)
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
            .map(|r| Found::row(r.id, Some(r.id), res::patient(r), vec![]))
            .collect(),
        ResourceType::AllergyIntolerance => store::fhir::allergies(db, s)
            .await?
            .iter()
            .map(|r| {
                Found::row(
                    r.id,
                    Some(r.patient_id),
                    res::allergy(r),
                    vec![r.recorded_by],
                )
            })
            .collect(),
        ResourceType::Condition => store::fhir::problems(db, s)
            .await?
            .iter()
            .map(|r| {
                Found::row(
                    r.id,
                    Some(r.patient_id),
                    res::condition(r),
                    vec![r.recorded_by],
                )
            })
            .collect(),
        ResourceType::MedicationRequest => store::fhir::prescriptions(db, s)
            .await?
            .iter()
            .map(|r| {
                Found::row(
                    r.id,
                    Some(r.patient_id),
                    res::medication_request(r),
                    vec![r.issued_by.unwrap_or(r.created_by)],
                )
            })
            .collect(),
        ResourceType::Observation => observations(st, p).await?,
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
                    Found::row(
                        n.id,
                        Some(n.patient_id),
                        res::document_reference(n, &mine),
                        users,
                    )
                })
                .collect()
        }
        ResourceType::Practitioner => store::fhir::practitioners(db, s, None)
            .await?
            .iter()
            .map(|r| Found::row(r.id, None, res::practitioner(r), vec![]))
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
    require_type(user, ty)?;
    let (id, part) = params::split_id(id)
        .filter(|(_, part)| *part == 0 || ty == ResourceType::Observation)
        .ok_or(AppError::NotFound)?;
    let p = Parsed {
        search: Search {
            id: Some(id),
            limit: 1,
            ..Default::default()
        },
        id_part: Some(part),
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
        "fullUrl": format!("{base}/{ty}/{}", f.fhir_id()),
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
    require_type(user, ty)?;
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
            .map(|f| crate::extract::encode_cursor(&f.fhir_id()))
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

/// Every row of `ty` for one patient (updated at or after `since`), page by
/// page.
async fn all_of(
    st: &AppState,
    ty: ResourceType,
    patient: Uuid,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut p = Parsed::default();
    p.search.patient = Some(patient);
    p.search.updated = since
        .map(store::fhir::Bound::AtOrAfter)
        .into_iter()
        .collect();
    p.search.limit = 500;
    loop {
        let page = fetch(st, ty, &p).await?;
        let full = page.len() as i64 == p.search.limit;
        resume(&mut p, page.last());
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// `GET /fhir/R4/Patient/{id}/$everything`: the patient, every allergy,
/// problem, prescription, result (labs and vital signs) and final note (with
/// addenda), and the Practitioners they name. `_since` (the only parameter)
/// keeps the records updated at or after it; the Patient is always there.
pub async fn everything(
    st: &AppState,
    user: &AuthUser,
    id: &str,
    pairs: &[(String, String)],
    base: &str,
) -> Result<Value> {
    for a in [
        Action::ReadPatient,
        Action::ReadChart,
        Action::ReadPrescriptions,
        Action::ReadLabs,
        Action::ReadVitals,
        Action::ReadNotes,
    ] {
        user.require(a)?;
    }
    let mut since = None;
    for (k, v) in pairs {
        match k.as_str() {
            "_since" => since = Some(params::since(v).map_err(|e| AppError::BadRequest(e.0))?),
            _ => {
                return Err(AppError::BadRequest(
                    "$everything takes only _since here".into(),
                ))
            }
        }
    }
    let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
    crate::services::require_patient(st, user, id).await?;
    let mut found = all_of(st, ResourceType::Patient, id, None).await?;
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
        let rows = all_of(st, ty, id, since).await?;
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
        json!({ "counts": kinds.iter().map(|(t, n)| (t.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(), "since": since.map(res::instant) })
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
