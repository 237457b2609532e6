//! Our records as FHIR R4 (4.0.1) resources. Hand-written for the subset we
//! emit (see docs/INTEROP.md for why no crate); every shape here is checked
//! by an independent validator in the integration tests.

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use domain::chart::EntryStatus;
use domain::labs::LabFlag;
use serde_json::{json, Map, Value};
use store::fhir::PractitionerRow;
use store::labs::LabRow;
use store::notes::{AddendumRow, NoteRow};
use store::patients::{AllergyRow, PatientRow, ProblemRow};
use store::prescriptions::PrescriptionRow;
use uuid::Uuid;

/// The identifier system of our medical record numbers.
pub const MRN_SYSTEM: &str = "https://dr-amal.invalid/fhir/sid/mrn";
pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub(crate) const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// An instant as FHIR writes it.
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn meta(version: Option<i64>, updated: DateTime<Utc>) -> Value {
    let mut m = json!({ "lastUpdated": instant(updated) });
    if let Some(v) = version {
        m["versionId"] = json!(v.to_string());
    }
    m
}

pub(crate) fn reference(kind: &str, id: Uuid) -> Value {
    json!({ "reference": format!("{kind}/{id}") })
}

/// Drop `null` members, which FHIR JSON forbids.
fn compact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, compact(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(compact).collect()),
        other => other,
    }
}

pub fn patient(p: &PatientRow) -> Value {
    let mut telecom = Vec::new();
    if let Some(phone) = &p.phone {
        telecom.push(json!({ "system": "phone", "value": phone }));
    }
    if let Some(email) = &p.email {
        telecom.push(json!({ "system": "email", "value": email }));
    }
    compact(json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": meta(Some(p.version), p.updated_at),
        "identifier": [{
            "use": "usual",
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR", "display": "Medical record number" }] },
            "system": MRN_SYSTEM,
            "value": p.mrn,
        }],
        "active": true,
        "name": [{ "use": "official", "family": p.family_name, "given": [p.given_name] }],
        "telecom": if telecom.is_empty() { Value::Null } else { Value::Array(telecom) },
        "gender": p.sex,
        "birthDate": p.birth_date,
        "address": p.address.as_ref().map(|a| json!([{ "text": a }])),
    }))
}

/// An entry's status as FHIR's clinical status code, and the verification
/// status "entered-in-error" (FHIR then forbids a clinical status).
fn entry_statuses(s: EntryStatus) -> (Option<&'static str>, Option<&'static str>) {
    match s {
        EntryStatus::Active => (Some("active"), None),
        EntryStatus::Inactive => (Some("inactive"), None),
        EntryStatus::Resolved => (Some("resolved"), None),
        EntryStatus::EnteredInError => (None, Some("entered-in-error")),
    }
}

fn coded(system: &str, code: Option<&str>) -> Value {
    code.map(|c| json!({ "coding": [{ "system": system, "code": c }] }))
        .unwrap_or(Value::Null)
}

pub fn allergy(a: &AllergyRow) -> Value {
    let reaction = a.reaction.as_ref().map(|r| {
        let severity = a.severity.is_known().then(|| a.severity.as_str());
        json!([{ "manifestation": [{ "text": r }], "severity": severity }])
    });
    let (allergy_clinical, allergy_verification) = entry_statuses(a.status);
    compact(json!({
        "resourceType": "AllergyIntolerance",
        "id": a.id.to_string(),
        "meta": meta(None, a.recorded_at),
        "clinicalStatus": coded("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", allergy_clinical),
        "verificationStatus": coded("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", allergy_verification),
        "code": { "text": a.substance },
        "patient": reference("Patient", a.patient_id),
        "recordedDate": instant(a.recorded_at),
        "recorder": reference("Practitioner", a.recorded_by),
        "reaction": reaction,
    }))
}

pub fn condition(p: &ProblemRow) -> Value {
    let (clinical, verification) = entry_statuses(p.status);
    let code = match &p.code {
        // The code's system is not recorded, so it travels without one.
        Some(c) => json!({ "coding": [{ "code": c }], "text": p.description }),
        None => json!({ "text": p.description }),
    };
    compact(json!({
        "resourceType": "Condition",
        "id": p.id.to_string(),
        "meta": meta(None, p.recorded_at),
        "clinicalStatus": coded("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical),
        "verificationStatus": coded("http://terminology.hl7.org/CodeSystem/condition-ver-status", verification),
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item", "display": "Problem List Item" }] }],
        "code": code,
        "subject": reference("Patient", p.patient_id),
        "recordedDate": instant(p.recorded_at),
        "recorder": reference("Practitioner", p.recorded_by),
    }))
}

/// Our prescription states in FHIR's MedicationRequest status vocabulary.
pub fn medication_request_status(s: domain::states::PrescriptionStatus) -> &'static str {
    use domain::states::PrescriptionStatus as S;
    match s {
        S::Draft => "draft",
        S::Issued => "active",
        S::Cancelled => "cancelled",
    }
}

pub fn medication_request(p: &PrescriptionRow) -> Value {
    let dosage = format!("{} {} {}", p.dose, p.route, p.frequency);
    compact(json!({
        "resourceType": "MedicationRequest",
        "id": p.id.to_string(),
        "meta": meta(Some(p.version), p.updated_at),
        "status": medication_request_status(p.status),
        "statusReason": p.cancel_reason.as_ref().map(|r| json!({ "text": r })),
        "intent": "order",
        "medicationCodeableConcept": { "text": p.medication },
        "subject": reference("Patient", p.patient_id),
        "authoredOn": instant(p.issued_at.unwrap_or(p.created_at)),
        "requester": reference("Practitioner", p.issued_by.unwrap_or(p.created_by)),
        "dosageInstruction": [{
            "text": dosage,
            "patientInstruction": p.instructions,
            "route": { "text": p.route },
        }],
        "dispenseRequest": {
            "numberOfRepeatsAllowed": p.refills,
            "quantity": { "value": p.quantity },
        },
    }))
}

/// Our lab flag as a v3 ObservationInterpretation code and display.
pub fn interpretation(flag: LabFlag) -> (&'static str, &'static str) {
    match flag {
        LabFlag::Normal => ("N", "Normal"),
        LabFlag::Low => ("L", "Low"),
        LabFlag::High => ("H", "High"),
        LabFlag::CriticalLow => ("LL", "Critical low"),
        LabFlag::CriticalHigh => ("HH", "Critical high"),
    }
}

fn quantity(value: f64, unit: &str) -> Value {
    match domain::ucum::code(unit) {
        Some(code) => json!({ "value": value, "unit": unit, "system": UCUM, "code": code }),
        None => json!({ "value": value, "unit": unit }),
    }
}

/// When a lab result last changed (a review changes it).
pub fn lab_updated(l: &LabRow) -> DateTime<Utc> {
    l.reviewed_at.unwrap_or(l.recorded_at)
}

pub fn observation(l: &LabRow) -> Value {
    let range = (l.reference_low.is_some() || l.reference_high.is_some()).then(|| {
        json!([{
            "low": l.reference_low.map(|v| quantity(v, &l.unit)),
            "high": l.reference_high.map(|v| quantity(v, &l.unit)),
        }])
    });
    let interp = l.flag.map(interpretation).map(|(code, display)| {
        json!([{ "coding": [{ "system": INTERPRETATION, "code": code, "display": display }] }])
    });
    compact(json!({
        "resourceType": "Observation",
        "id": l.id.to_string(),
        "meta": meta(None, lab_updated(l)),
        "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory", "display": "Laboratory" }] }],
        "code": { "coding": [{ "system": LOINC, "code": l.code, "display": l.name }], "text": l.name },
        "subject": reference("Patient", l.patient_id),
        "effectiveDateTime": instant(l.collected_at),
        "issued": instant(l.recorded_at),
        "performer": [reference("Practitioner", l.recorded_by)],
        "valueQuantity": quantity(l.value, &l.unit),
        "interpretation": interp,
        "note": l.warning.as_ref().map(|w| json!([{ "text": w }])),
        "referenceRange": range,
    }))
}

/// When a final note last changed: its newest addendum, else its signature.
pub fn note_updated(n: &NoteRow, addenda: &[&AddendumRow]) -> DateTime<Utc> {
    addenda
        .iter()
        .map(|a| a.signed_at)
        .max()
        .unwrap_or(n.updated_at)
        .max(n.updated_at)
}

fn note_text(n: &NoteRow) -> String {
    format!(
        "{}\n\nSubjective:\n{}\n\nObjective:\n{}\n\nAssessment:\n{}\n\nPlan:\n{}\n",
        n.title, n.subjective, n.objective, n.assessment, n.plan
    )
}

fn attachment(title: &str, text: &str, created: DateTime<Utc>) -> Value {
    json!({ "attachment": {
        "contentType": "text/plain; charset=utf-8",
        "language": "en",
        "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
        "title": title,
        "creation": instant(created),
    }})
}

/// A final note and its addenda: the signed note is the first attachment,
/// each addendum (signed on its own) one more, in signing order.
pub fn document_reference(n: &NoteRow, addenda: &[&AddendumRow]) -> Value {
    let signed = n.signed_at.unwrap_or(n.updated_at);
    let mut content = vec![attachment(&n.title, &note_text(n), signed)];
    for a in addenda {
        content.push(attachment(
            &format!("Addendum {}", instant(a.signed_at)),
            &a.text,
            a.signed_at,
        ));
    }
    let mut authors = vec![reference("Practitioner", n.author_id)];
    for a in addenda {
        let r = reference("Practitioner", a.author_id);
        if !authors.contains(&r) {
            authors.push(r);
        }
    }
    compact(json!({
        "resourceType": "DocumentReference",
        "id": n.id.to_string(),
        "meta": meta(Some(n.version), note_updated(n, addenda)),
        "status": "current",
        "docStatus": if addenda.is_empty() { "final" } else { "amended" },
        "type": { "coding": [{ "system": LOINC, "code": "11506-3", "display": "Progress note" }], "text": "Clinical note" },
        "category": [{ "coding": [{ "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note", "display": "Clinical Note" }] }],
        "subject": reference("Patient", n.patient_id),
        "date": instant(signed),
        "author": authors,
        "authenticator": n.signed_by.map(|s| reference("Practitioner", s)),
        "description": n.title,
        "content": content,
    }))
}

pub fn practitioner(u: &PractitionerRow) -> Value {
    compact(json!({
        "resourceType": "Practitioner",
        "id": u.id.to_string(),
        "meta": meta(None, u.updated_at),
        "active": u.status.is_active(),
        "name": [{ "text": u.name }],
        "telecom": [{ "system": "email", "value": u.email, "use": "work" }],
        "qualification": [{ "code": { "text": u.role } }],
    }))
}

/// A care team as a FHIR Group of its patients (`type` person, `actual`:
/// the members are listed, not described). No `meta.lastUpdated`: removals
/// and renames are not timed, so any value would be a guess.
pub fn group(team: &store::care::TeamRow, patients: &[Uuid]) -> Value {
    let member: Vec<Value> = patients
        .iter()
        .map(|p| json!({ "entity": reference("Patient", *p) }))
        .collect();
    compact(json!({
        "resourceType": "Group",
        "id": team.id.to_string(),
        "active": true,
        "type": "person",
        "actual": true,
        "name": team.name,
        "quantity": patients.len(),
        "member": if member.is_empty() { Value::Null } else { Value::Array(member) },
    }))
}
