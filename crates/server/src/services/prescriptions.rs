//! Prescriptions: draft → issued → cancelled, draft → cancelled, with the
//! medication safety checks (SPEC §6, issue 12): the medication is resolved
//! against the dictionary when drafted (a misspelling is a 422 with
//! suggestions until confirmed), and on issue it is checked against the
//! allergies, the patient's active prescriptions (duplicate therapy) and
//! the interaction table; each finding is a 409 unless its override
//! reason (or, for a medication outside the dictionary, the
//! acknowledgement) is given, which is stored and audited.

use chrono::{DateTime, Utc};
use domain::audit::AuditAction;
use domain::clinical::{self, Errors};
use domain::medication::{self, Resolved};
use domain::roles::Action;
use domain::states::{PrescriptionAction, PrescriptionStatus};
use serde::{Deserialize, Serialize};
use store::prescriptions::{NewPrescription, PrescriptionRow};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::PageQuery;
use crate::services::{
    audit_change, audit_read, check, illegal, page, require_patient, time_cursor, time_key, Body,
};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct PrescriptionInput {
    /// Generic or brand name, optionally with strength and form; a name
    /// that is not in the dictionary but close to one is answered 422
    /// `medication_unconfirmed` with the suggestions
    #[schema(min_length = 1, max_length = 200, pattern = "amal:required-line")]
    pub medication: String,
    /// Accept the dictionary's (single best) suggestion for a misspelt
    /// medication; the stored text then carries the corrected name
    #[serde(default, rename = "medicationConfirmed")]
    pub medication_confirmed: bool,
    #[schema(min_length = 1, max_length = 100, pattern = "amal:required-line")]
    pub dose: String,
    #[schema(min_length = 1, max_length = 50, pattern = "amal:required-line")]
    pub route: String,
    #[schema(min_length = 1, max_length = 100, pattern = "amal:required-line")]
    pub frequency: String,
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(deserialize_with = "crate::extract::json_integer")]
    pub quantity: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 12)]
    pub refills: i64,
    #[schema(max_length = 2000, pattern = "amal:text")]
    pub instructions: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub created_by: Uuid,
    pub medication: String,
    pub dose: String,
    pub route: String,
    pub frequency: String,
    pub quantity: i64,
    pub refills: i64,
    pub instructions: Option<String>,
    /// draft, issued or cancelled
    #[schema(value_type = String, example = "issued")]
    pub status: PrescriptionStatus,
    pub issued_by: Option<Uuid>,
    pub issued_at: Option<DateTime<Utc>>,
    /// Why issued despite an allergy
    pub override_reason: Option<String>,
    /// Why issued despite a drug–drug interaction
    pub interaction_override_reason: Option<String>,
    /// Why issued despite a duplicate therapy
    pub duplicate_override_reason: Option<String>,
    /// Issued although the medication is not in the dictionary
    pub unchecked_acknowledged: bool,
    /// How the medication resolves against the dictionary, now
    pub medication_check: MedicationCheck,
    pub cancelled_by: Option<Uuid>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The medication as the dictionary sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MedicationCheck {
    /// exact, suggested or unrecognised
    #[schema(example = "exact")]
    pub status: &'static str,
    /// Ingredient names found (INN, with the RxNorm name where different)
    pub ingredients: Vec<String>,
}

impl From<&Resolved> for MedicationCheck {
    fn from(r: &Resolved) -> Self {
        MedicationCheck {
            status: r.status().as_str(),
            ingredients: r.ingredient_names(),
        }
    }
}

impl From<PrescriptionRow> for PrescriptionView {
    fn from(p: PrescriptionRow) -> Self {
        PrescriptionView {
            medication_check: MedicationCheck::from(&medication::resolve(&p.medication)),
            interaction_override_reason: p.interaction_override_reason,
            duplicate_override_reason: p.duplicate_override_reason,
            unchecked_acknowledged: p.unchecked_acknowledged,
            id: p.id,
            patient_id: p.patient_id,
            created_by: p.created_by,
            medication: p.medication,
            dose: p.dose,
            route: p.route,
            frequency: p.frequency,
            quantity: p.quantity,
            refills: p.refills,
            instructions: p.instructions,
            status: p.status,
            issued_by: p.issued_by,
            issued_at: p.issued_at,
            override_reason: p.override_reason,
            cancelled_by: p.cancelled_by,
            cancelled_at: p.cancelled_at,
            cancel_reason: p.cancel_reason,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionPage {
    pub items: Vec<PrescriptionView>,
    pub next_cursor: Option<String>,
}

/// A new draft prescription.
pub async fn create(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    body: Body<PrescriptionInput>,
) -> Result<PrescriptionView> {
    user.require(Action::DraftPrescription)?;
    let req = body?;
    let mut e = Errors::default();
    let p = NewPrescription {
        medication: e.take(clinical::text(
            "medication",
            &req.medication,
            200,
            true,
            true,
        )),
        dose: e.take(clinical::text("dose", &req.dose, 100, true, true)),
        route: e.take(clinical::text("route", &req.route, 50, true, true)),
        frequency: e.take(clinical::text("frequency", &req.frequency, 100, true, true)),
        quantity: req.quantity,
        refills: req.refills,
        instructions: e.take(clinical::opt_text(
            "instructions",
            req.instructions.as_deref(),
            2000,
            false,
        )),
    };
    if !(1..=10_000).contains(&req.quantity) {
        e.0.push(domain::account::FieldError::new(
            "quantity",
            "must be between 1 and 10000",
        ));
    }
    if !(0..=12).contains(&req.refills) {
        e.0.push(domain::account::FieldError::new(
            "refills",
            "must be between 0 and 12",
        ));
    }
    check(e)?;
    let mut p = p;
    p.medication = confirmed_medication(p.medication, req.medication_confirmed)?;
    require_patient(st, user, patient).await?;
    let mut tx = st.db.begin().await?;
    let row = store::prescriptions::insert(&mut tx, patient, user.id, &p).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::PrescriptionCreate,
        ("prescription", row.id),
        Some(patient),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(row.into())
}

/// The medication to store: as typed when every word is a dictionary name
/// (or names nothing at all: then issuing needs the acknowledgement);
/// corrected when the client confirmed the single best suggestion;
/// otherwise a 422 `medication_unconfirmed` offering the suggestions.
fn confirmed_medication(typed: String, confirmed: bool) -> Result<String> {
    let r = medication::resolve(&typed);
    if r.corrections.is_empty() {
        return Ok(typed);
    }
    let corrected = r.corrected();
    if let (true, Some(fixed)) = (confirmed, &corrected) {
        return Ok(clinical::text("medication", fixed, 200, true, true)?);
    }
    let alternatives = r.alternatives();
    let names: Vec<&str> = alternatives.iter().map(|(n, _)| n.as_str()).collect();
    let question = format!("Did you mean {}?", names.join(" or "));
    let how = if corrected.is_some() {
        "Send the suggested name, or medicationConfirmed: true to accept the first suggestion."
    } else {
        "Several names are equally close: send the one you mean."
    };
    Err(AppError::Unprocessable(Box::new(
        crate::error::Unprocessable {
            code: "medication_unconfirmed",
            detail: format!(
            "The medication is not an exact name in the medication dictionary. {question} {how}"
        ),
            errors: vec![domain::account::FieldError::new("medication", question)],
            extra: Some(serde_json::json!({
                "suggestions": names,
                "corrections": r.corrections,
                "resolved": corrected,
                "options": alternatives.iter().map(|(name, text)| serde_json::json!({ "name": name, "medication": text })).collect::<Vec<_>>(),
            })),
        },
    )))
}

/// A patient's prescriptions, newest first, optionally of one status.
pub async fn list(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    status: Option<&str>,
    page_q: &PageQuery,
) -> Result<PrescriptionPage> {
    user.require(Action::ReadPrescriptions)?;
    let status =
        match status {
            None => None,
            Some(s) => Some(PrescriptionStatus::parse(s).ok_or_else(|| {
                AppError::validation("status", "must be draft, issued or cancelled")
            })?),
        };
    require_patient(st, user, patient).await?;
    let limit = page_q.limit();
    let rows = store::prescriptions::list_for_patient(
        &st.db,
        patient,
        status,
        time_cursor(page_q)?,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |r| time_key(r.created_at, r.id), Into::into);
    audit_read(st, user, AuditAction::PrescriptionList, None, Some(patient)).await?;
    Ok(PrescriptionPage { items, next_cursor })
}

/// One prescription.
pub async fn get(st: &AppState, user: &AuthUser, id: Uuid) -> Result<PrescriptionView> {
    user.require(Action::ReadPrescriptions)?;
    let row = store::prescriptions::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, row.patient_id).await?;
    audit_read(
        st,
        user,
        AuditAction::PrescriptionRead,
        Some(("prescription", id)),
        Some(row.patient_id),
    )
    .await?;
    Ok(row.into())
}

fn transition(row: &PrescriptionRow, action: PrescriptionAction) -> Result<()> {
    row.status
        .apply(action)
        .map(|_| ())
        .map_err(|e| illegal("prescription", row.status.as_str(), e))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IssueInput {
    /// Why the prescriber issues despite a recorded allergy (stored and audited)
    #[schema(max_length = 1000, pattern = "amal:text")]
    pub override_reason: Option<String>,
    /// Why the prescriber issues despite a drug–drug interaction (stored and audited)
    #[schema(max_length = 1000, pattern = "amal:text")]
    pub interaction_override_reason: Option<String>,
    /// Why the prescriber issues despite a duplicate therapy (stored and audited)
    #[schema(max_length = 1000, pattern = "amal:text")]
    pub duplicate_override_reason: Option<String>,
    /// The prescriber knows the medication is not in the dictionary, so the
    /// allergy, duplicate and interaction checks could not run on it (audited)
    #[serde(default)]
    pub unchecked_acknowledged: bool,
}

/// What the checks on issue found, each with whether the request already
/// overrides it.
struct Findings {
    resolved: Resolved,
    allergy: Option<(domain::allergy::AllergyConflict, Option<Uuid>)>,
    interactions: Vec<medication::Interaction<Uuid>>,
    duplicates: Vec<medication::Duplicate<Uuid>>,
}

/// The override reasons of an issue request, validated.
struct Reasons {
    allergy: Option<String>,
    interaction: Option<String>,
    duplicate: Option<String>,
    unchecked: bool,
}

impl Reasons {
    fn parse(input: &IssueInput) -> Result<Reasons> {
        let mut e = Errors::default();
        let mut reason = |field: &'static str, v: &Option<String>| {
            e.take(clinical::opt_text(field, v.as_deref(), 1000, false))
        };
        let r = Reasons {
            allergy: reason("overrideReason", &input.override_reason),
            interaction: reason(
                "interactionOverrideReason",
                &input.interaction_override_reason,
            ),
            duplicate: reason("duplicateOverrideReason", &input.duplicate_override_reason),
            unchecked: input.unchecked_acknowledged,
        };
        check(e)?;
        Ok(r)
    }
}

/// Run every check of an issue inside its transaction.
async fn findings(tx: &mut store::Tx, row: &PrescriptionRow) -> Result<Findings> {
    let resolved = medication::resolve(&row.medication);
    let allergies = store::patients::allergies_tx(tx, row.patient_id).await?;
    let expanded: Vec<(&str, String)> = allergies
        .iter()
        .map(|a| {
            let terms = medication::resolve(&a.substance).allergy_terms(false);
            (a.substance.as_str(), terms)
        })
        .collect();
    let allergy = domain::allergy::find_conflict_expanded(
        &row.medication,
        &resolved.allergy_terms(true),
        expanded,
    )
    .map(|c| {
        let id = allergies
            .iter()
            .find(|a| a.substance == c.allergy)
            .map(|a| a.id);
        (c, id)
    });
    let active = store::prescriptions::active_for_patient_tx(tx, row.patient_id, row.id).await?;
    let others: Vec<(Uuid, Resolved)> = active
        .iter()
        .map(|o| (o.id, medication::resolve(&o.medication)))
        .collect();
    let pairs = || others.iter().map(|(id, r)| (*id, r));
    Ok(Findings {
        interactions: medication::interactions(&resolved, pairs()),
        duplicates: medication::duplicates(&resolved, pairs()),
        resolved,
        allergy,
    })
}

impl Findings {
    fn unchecked(&self) -> bool {
        self.resolved.status() != medication::MatchStatus::Exact
    }

    /// Every finding as `(code, finding, how to override in the API,
    /// resolved)`, most serious first. The finding is the clinical sentence
    /// alone, for screens that say their own way of overriding.
    fn warnings(&self, r: &Reasons) -> Vec<(&'static str, String, &'static str, bool)> {
        let mut out = Vec::new();
        if let Some((c, _)) = &self.allergy {
            out.push((
                "allergy_conflict",
                format!(
                    "{} conflicts with the recorded allergy to {}: {}.",
                    c.medication, c.allergy, c.explanation
                ),
                "Issue with an overrideReason only if the benefit outweighs the risk.",
                r.allergy.is_some(),
            ));
        }
        if !self.interactions.is_empty() {
            let what: Vec<String> = self.interactions.iter().map(|i| i.explanation()).collect();
            out.push((
                "drug_interaction",
                format!("Drug interaction: {}.", what.join(". Also ")),
                "Issue with an interactionOverrideReason only if the benefit outweighs the risk.",
                r.interaction.is_some(),
            ));
        }
        if !self.duplicates.is_empty() {
            let what: Vec<String> = self.duplicates.iter().map(|d| d.explanation()).collect();
            out.push(("duplicate_therapy", format!("Duplicate therapy: {}.", what.join("; ")), "Cancel the other prescription, or issue with a duplicateOverrideReason if both are intended.", r.duplicate.is_some()));
        }
        if self.unchecked() {
            let hint = match self.resolved.alternatives().first() {
                Some((name, _)) => format!(" (did you mean {name}?)"),
                None => String::new(),
            };
            out.push(("medication_unrecognised", format!("The medication is not in the medication dictionary{hint}, so the allergy, duplicate therapy and interaction checks could not fully run on it."), "Correct the name, or issue with uncheckedAcknowledged: true to take responsibility for the unchecked medication.", r.unchecked));
        }
        out
    }

    /// The 409 for the findings not yet overridden, if any.
    fn refusal(&self, r: &Reasons) -> Option<AppError> {
        let warnings = self.warnings(r);
        let open: Vec<_> = warnings.iter().filter(|w| !w.3).collect();
        let code = open.first()?.0;
        let mut extra = serde_json::json!({
            "warnings": warnings.iter().map(|(code, finding, how, resolved)| serde_json::json!({ "code": code, "detail": format!("{finding} {how}"), "finding": finding, "overridden": resolved })).collect::<Vec<_>>(),
            "medicationCheck": MedicationCheck::from(&self.resolved),
            "interactions": self.interactions,
            "duplicates": self.duplicates,
        });
        if let (Some((c, id)), serde_json::Value::Object(o)) = (&self.allergy, &mut extra) {
            for (k, v) in [
                ("allergy", serde_json::json!(c.allergy)),
                ("allergyId", serde_json::json!(id)),
                ("medication", serde_json::json!(c.medication)),
                ("kind", serde_json::json!(c.kind)),
                ("drugClass", serde_json::json!(c.drug_class)),
            ] {
                o.insert(k.into(), v);
            }
        }
        if let (Some(i), serde_json::Value::Object(o)) = (self.interactions.first(), &mut extra) {
            o.insert("drugs".into(), serde_json::json!([i.drug, i.other_drug]));
        }
        Some(AppError::Conflict {
            code,
            detail: open
                .iter()
                .map(|w| format!("{} {}", w.1, w.2))
                .collect::<Vec<_>>()
                .join(" "),
            extra: Some(extra),
        })
    }

    /// What was overridden, for the store: a reason is kept only for a
    /// finding that was there (an override of nothing overrides nothing).
    fn overrides<'a>(&self, r: &'a Reasons) -> store::prescriptions::IssueOverrides<'a> {
        store::prescriptions::IssueOverrides {
            allergy: self.allergy.as_ref().and(r.allergy.as_deref()),
            interaction: (!self.interactions.is_empty())
                .then_some(r.interaction.as_deref())
                .flatten(),
            duplicate: (!self.duplicates.is_empty())
                .then_some(r.duplicate.as_deref())
                .flatten(),
            unchecked: self.unchecked() && r.unchecked,
        }
    }

    /// The audit detail: ids and codes, never the reasons' text.
    fn audit_detail(&self, o: &store::prescriptions::IssueOverrides<'_>) -> serde_json::Value {
        let mut d = serde_json::json!({ "medicationStatus": self.resolved.status().as_str() });
        if let serde_json::Value::Object(m) = &mut d {
            if let (Some((c, id)), Some(_)) = (&self.allergy, o.allergy) {
                m.insert("allergyOverride".into(), true.into());
                m.insert("allergyId".into(), serde_json::json!(id));
                m.insert("kind".into(), serde_json::json!(c.kind));
            }
            if o.interaction.is_some() {
                m.insert("interactionOverride".into(), true.into());
                let with: Vec<Uuid> = self.interactions.iter().map(|i| i.with).collect();
                m.insert("interactionWith".into(), serde_json::json!(with));
            }
            if o.duplicate.is_some() {
                m.insert("duplicateOverride".into(), true.into());
                let with: Vec<Uuid> = self.duplicates.iter().map(|d| d.with).collect();
                m.insert("duplicateWith".into(), serde_json::json!(with));
            }
            if o.unchecked {
                m.insert("uncheckedAcknowledged".into(), true.into());
            }
        }
        d
    }
}

/// Issue a draft after the medication safety checks (see the module comment).
pub async fn issue(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<IssueInput>,
) -> Result<PrescriptionView> {
    user.require(Action::IssuePrescription)?;
    let reasons = Reasons::parse(&body?)?;
    let mut tx = st.db.begin().await?;
    let row = store::prescriptions::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, row.patient_id).await?;
    transition(&row, PrescriptionAction::Issue)?;
    let found = findings(&mut tx, &row).await?;
    if let Some(refusal) = found.refusal(&reasons) {
        st.metrics.incr("prescription.safety_warning");
        return Err(refusal);
    }
    let overrides = found.overrides(&reasons);
    if !store::prescriptions::issue(&mut tx, id, user.id, &overrides).await? {
        return Err(AppError::conflict(
            "The prescription changed while it was being issued; reload it.",
        ));
    }
    audit_change(
        &mut tx,
        user,
        AuditAction::PrescriptionIssue,
        ("prescription", id),
        Some(row.patient_id),
        Some(found.audit_detail(&overrides)),
    )
    .await?;
    let issued = store::prescriptions::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    st.metrics.incr("prescription.issued");
    for (overridden, counter, what) in [
        (
            overrides.allergy.is_some(),
            "prescription.allergy_override",
            "an allergy conflict",
        ),
        (
            overrides.interaction.is_some(),
            "prescription.interaction_override",
            "a drug interaction",
        ),
        (
            overrides.duplicate.is_some(),
            "prescription.duplicate_override",
            "a duplicate therapy",
        ),
        (
            overrides.unchecked,
            "prescription.unchecked_issue",
            "an unrecognised medication",
        ),
    ] {
        if overridden {
            st.metrics.incr(counter);
            tracing::warn!(prescriptionId = %id, "prescription issued over {what}");
        }
    }
    Ok(issued.into())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CancelInput {
    #[schema(min_length = 1, max_length = 1000, pattern = "amal:required-text", required = true, value_type = String)]
    pub reason: Option<String>,
}

/// Cancel a draft or an issued prescription, with a reason.
pub async fn cancel(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<CancelInput>,
) -> Result<PrescriptionView> {
    user.require(Action::CancelPrescription)?;
    let req = body?;
    let reason = clinical::text(
        "reason",
        req.reason.as_deref().unwrap_or(""),
        1000,
        true,
        false,
    )?;
    let mut tx = st.db.begin().await?;
    let row = store::prescriptions::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, row.patient_id).await?;
    transition(&row, PrescriptionAction::Cancel)?;
    if !store::prescriptions::cancel(&mut tx, id, user.id, &reason).await? {
        return Err(AppError::conflict(
            "The prescription changed while it was being cancelled; reload it.",
        ));
    }
    audit_change(
        &mut tx,
        user,
        AuditAction::PrescriptionCancel,
        ("prescription", id),
        Some(row.patient_id),
        Some(serde_json::json!({ "from": row.status.as_str() })),
    )
    .await?;
    let cancelled = store::prescriptions::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    st.metrics.incr("prescription.cancelled");
    Ok(cancelled.into())
}
