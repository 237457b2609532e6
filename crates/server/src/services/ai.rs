//! AI assistance: a SOAP draft from the clinician's input and the chart, and
//! plain explanations of lab results. The `ai` crate does the work behind its
//! guardrails; this module maps the chart into it, answers refusals (422)
//! and outages (503), and audits and counts every call — never the text.

use domain::audit::AuditAction;
use domain::roles::Action;
use domain::states::PrescriptionStatus;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::services::notes::{create_draft, parse_content};
use crate::services::vitals::VitalsView;
use crate::services::{audit_event, record_durably, Body};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerateNoteRequest {
    pub patient_id: Uuid,
    /// The clinician's bullet points or dictated text
    pub input: String,
    /// e.g. "follow-up", "progress"
    pub note_type: Option<String>,
    /// Store the draft as a draft note marked `aiGenerated`
    #[serde(default)]
    pub save: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DraftNote {
    /// Present when the draft was saved
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub title: String,
    pub subjective: String,
    pub objective: String,
    pub assessment: String,
    pub plan: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerateNoteResponse {
    pub note: DraftNote,
    pub saved: bool,
    pub provider: String,
    pub model: String,
    pub disclaimer: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplainRequest {
    pub lab_id: Uuid,
    /// patient or clinician
    #[schema(value_type = String, pattern = "^(patient|clinician)$")]
    pub audience: ai::Audience,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabRange {
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub unit: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplainResponse {
    pub explanation: String,
    pub flag: Option<String>,
    pub range: LabRange,
    #[schema(value_type = Object)]
    pub trend: ai::Trend,
    pub provider: String,
    pub model: String,
    pub disclaimer: String,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Count, log and audit one AI call; map its error to a problem document.
async fn record<T>(
    st: &AppState,
    user: &AuthUser,
    action: AuditAction,
    patient: Uuid,
    resource: (&str, Uuid),
    fallback_hash: &str,
    result: &std::result::Result<ai::Answer<T>, ai::AiError>,
) -> Result<()> {
    let (outcome, detail) = match result {
        Ok(a) => (
            "success",
            serde_json::json!({ "provider": a.provider, "model": a.model, "promptSha256": a.prompt_sha256 }),
        ),
        Err(ai::AiError::Refused { reason, .. }) => (
            "refused",
            serde_json::json!({ "provider": st.assistant.provider_name(), "model": st.assistant.model(), "reason": reason.as_str(), "promptSha256": fallback_hash }),
        ),
        Err(ai::AiError::Unavailable { .. }) => (
            "unavailable",
            serde_json::json!({ "provider": st.assistant.provider_name(), "model": st.assistant.model(), "promptSha256": fallback_hash }),
        ),
    };
    let op = action.as_str().trim_start_matches("ai.");
    st.metrics.incr(&format!("{action}.{outcome}"));
    match result {
        Err(ai::AiError::Unavailable { detail: why, .. }) => {
            tracing::warn!(operation = op, outcome, reason = %why, "ai call")
        }
        Err(ai::AiError::Refused { reason, .. }) => {
            tracing::info!(operation = op, outcome, reason = reason.as_str(), "ai call")
        }
        Ok(_) => tracing::info!(operation = op, outcome, "ai call"),
    }
    let mut ev = audit_event(Some(user), action, outcome);
    ev.patient_id = Some(patient);
    ev.resource_type = Some(resource.0.to_string());
    ev.resource_id = Some(resource.1);
    ev.detail = Some(detail.to_string());
    record_durably(st, ev).await
}

fn map_error(e: ai::AiError) -> AppError {
    match e {
        ai::AiError::Refused { reason, message } => AppError::AiRefused {
            reason: reason.as_str(),
            detail: message,
        },
        ai::AiError::Unavailable {
            retry_after_secs, ..
        } => AppError::AiUnavailable {
            retry_after: retry_after_secs,
        },
    }
}

fn identifiers(p: &store::patients::PatientRow) -> ai::PatientIdentifiers {
    ai::PatientIdentifiers {
        given_name: p.given_name.clone(),
        family_name: p.family_name.clone(),
        mrn: p.mrn.clone(),
        birth_date: Some(p.birth_date.clone()),
        phone: p.phone.clone(),
        email: p.email.clone(),
        address: p.address.clone(),
    }
}

/// What the chart says, for the draft's Objective.
async fn chart_context(st: &AppState, p: &store::patients::PatientRow) -> Result<ai::ChartContext> {
    let (allergies, meds, labs, vitals) = tokio::try_join!(
        store::patients::allergies(&st.db, p.id),
        store::prescriptions::list_for_patient(
            &st.db,
            p.id,
            Some(PrescriptionStatus::Issued),
            None,
            50
        ),
        store::labs::latest_per_code(&st.db, p.id, 100),
        store::vitals::list_for_patient(&st.db, p.id, None, 1),
    )?;
    let mut abnormal_labs: Vec<ai::AbnormalLab> = labs
        .into_iter()
        .filter_map(|l| {
            let flag = l.flag.filter(|f| f.is_abnormal())?;
            Some(ai::AbnormalLab {
                name: l.name,
                value: l.value,
                unit: l.unit,
                flag: flag.as_str().to_string(),
            })
        })
        .collect();
    // The ai crate has no vitals field yet: the latest set's abnormal
    // measurements travel as named lines of the "abnormal results" list.
    if let Some(v) = vitals.into_iter().next().map(VitalsView::from) {
        for m in domain::vitals::Measure::ALL {
            if let (Some(value), Some(flag)) = (v.value(m), v.flag(m)) {
                if flag.is_abnormal() {
                    abnormal_labs.push(ai::AbnormalLab {
                        name: format!(
                            "Vital sign {} ({})",
                            m.label(),
                            v.recorded_at.format("%Y-%m-%d %H:%M UTC")
                        ),
                        value,
                        unit: m.unit().to_string(),
                        flag: flag.to_string(),
                    });
                }
            }
        }
    }
    Ok(ai::ChartContext {
        allergies: allergies
            .into_iter()
            .filter(|a| a.status == domain::chart::EntryStatus::Active)
            .map(|a| match a.reaction {
                Some(r) => format!("{} ({r})", a.substance),
                None => a.substance,
            })
            .collect(),
        active_medications: meds
            .into_iter()
            .map(|m| format!("{} {} {}", m.medication, m.dose, m.frequency))
            .collect(),
        abnormal_labs,
        identifiers: identifiers(p),
    })
}

/// A SOAP draft from the clinician's input and the chart, saved as an
/// AI-generated draft note when asked.
pub async fn generate_note(
    st: &AppState,
    user: &AuthUser,
    body: Body<GenerateNoteRequest>,
) -> Result<GenerateNoteResponse> {
    let patient = body.as_ref().ok().map(|r| r.patient_id);
    let refused = |e: AppError| {
        // A role refused a patient's chart: audited with the patient.
        if let Some(p) = patient {
            crate::context::refused_patient(p);
        }
        e
    };
    user.require(Action::UseAi).map_err(refused)?;
    let req = body?;
    if req.save {
        user.require(Action::WriteDraftNote).map_err(refused)?;
    }
    if req.input.chars().count() > 20_000 {
        return Err(AppError::validation(
            "input",
            "must be at most 20000 characters",
        ));
    }
    crate::services::require_patient(st, user, req.patient_id).await?;
    let patient = store::patients::get(&st.db, req.patient_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let chart = chart_context(st, &patient).await?;
    let input = ai::GenerateNoteInput {
        input: req.input.clone(),
        note_type: req.note_type.clone(),
        chart,
    };
    let result = st.assistant.generate_note(input).await;
    record(
        st,
        user,
        AuditAction::AiGenerateNote,
        patient.id,
        ("patient", patient.id),
        &sha256_hex(&req.input),
        &result,
    )
    .await?;
    let answer = result.map_err(map_error)?;
    let n = answer.value;
    let id = if req.save {
        let content = parse_content(
            &n.title,
            &n.subjective,
            &n.objective,
            &n.assessment,
            &n.plan,
        )?;
        let note = create_draft(st, user, patient.id, &content, true).await?;
        Some(note.id)
    } else {
        None
    };
    Ok(GenerateNoteResponse {
        note: DraftNote {
            id,
            title: n.title,
            subjective: n.subjective,
            objective: n.objective,
            assessment: n.assessment,
            plan: n.plan,
        },
        saved: id.is_some(),
        provider: answer.provider,
        model: answer.model,
        disclaimer: answer.disclaimer,
    })
}

/// A plain-language explanation of one lab result for a patient or a
/// clinician.
pub async fn explain(
    st: &AppState,
    user: &AuthUser,
    body: Body<ExplainRequest>,
) -> Result<ExplainResponse> {
    if let Err(e) = user.require(Action::UseAi) {
        // A role refused a patient's result: audited with the patient.
        if let Ok(r) = &body {
            if let Some(lab) = store::labs::get(&st.db, r.lab_id).await? {
                crate::context::refused_patient(lab.patient_id);
            }
        }
        return Err(e);
    }
    let req = body?;
    let lab = store::labs::get(&st.db, req.lab_id)
        .await?
        .ok_or(AppError::NotFound)?;
    crate::services::require_patient(st, user, lab.patient_id).await?;
    let patient = store::patients::get(&st.db, lab.patient_id)
        .await?
        .ok_or(AppError::NotFound)?;
    // Earlier results of the same code, oldest first.
    let mut history = store::labs::list_for_patient(
        &st.db,
        lab.patient_id,
        Some(&lab.code),
        Some((lab.collected_at, lab.id)),
        20,
    )
    .await?;
    history.reverse();
    let input = ai::ExplainInput {
        audience: req.audience,
        code: lab.code.clone(),
        name: lab.name.clone(),
        value: lab.value,
        unit: lab.unit.clone(),
        flag: lab.flag.map(|f| f.as_str().to_string()),
        reference_low: lab.reference_low,
        reference_high: lab.reference_high,
        history: history
            .into_iter()
            .map(|h| ai::LabPoint {
                collected_at: h.collected_at.to_rfc3339(),
                value: h.value,
            })
            .collect(),
        identifiers: identifiers(&patient),
    };
    let fallback = sha256_hex(&format!(
        "{}|{}|{}",
        lab.id,
        lab.code,
        req.audience.as_str()
    ));
    let result = st.assistant.explain(input).await;
    record(
        st,
        user,
        AuditAction::AiExplain,
        patient.id,
        ("lab", lab.id),
        &fallback,
        &result,
    )
    .await?;
    let answer = result.map_err(map_error)?;
    Ok(ExplainResponse {
        explanation: answer.value.explanation,
        flag: answer.value.flag,
        range: LabRange {
            low: lab.reference_low,
            high: lab.reference_high,
            unit: lab.unit,
        },
        trend: answer.value.trend,
        provider: answer.provider,
        model: answer.model,
        disclaimer: answer.disclaimer,
    })
}
