//! Display rows built from the services' views (formatted once, in Rust, so
//! the templates stay simple).

use domain::clinical::AllergySeverity;
use domain::labs::LabFlag;
use domain::states::{NoteStatus, PrescriptionStatus};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::AppError;
use crate::services::labs::LabView;
use crate::services::notes::NoteView;
use crate::services::patients::{AllergyView, PatientBanner, PatientView};
use crate::services::prescriptions::PrescriptionView;
use crate::state::AppState;
use crate::web::session::WebSession;
use crate::web::view::{dt, flag_class, flag_label, num, opt_dt};

/// An allergy as the banner lists it.
#[derive(Debug, Clone)]
pub struct BannerAllergy {
    pub substance: String,
    pub severity: String,
    pub severe: bool,
}

/// The patient banner shown on every clinical page (right patient, always):
/// who, allergies (severe ones prominent) or "no known drug allergies", and
/// how many critical results wait for review.
#[derive(Debug, Clone)]
pub struct Banner {
    pub id: String,
    pub name: String,
    pub mrn: String,
    pub birth_date: String,
    pub age: String,
    pub sex: String,
    pub allergies: Vec<BannerAllergy>,
    pub nkda: bool,
    pub critical_count: i64,
}

impl Banner {
    pub fn new(
        p: &PatientView,
        age: Option<i64>,
        allergies: &[AllergyView],
        nkda: bool,
        critical_count: i64,
    ) -> Banner {
        Banner {
            id: p.id.to_string(),
            name: format!("{}, {}", p.family_name, p.given_name),
            mrn: p.mrn.clone(),
            birth_date: p.birth_date.clone(),
            age: age.map(|y| format!("{y} y")).unwrap_or_default(),
            sex: p.sex.to_string(),
            allergies: allergies
                .iter()
                .map(|a| BannerAllergy {
                    substance: a.substance.clone(),
                    severity: a.severity.to_string(),
                    severe: a.severity == AllergySeverity::Severe,
                })
                .collect(),
            nkda,
            critical_count,
        }
    }
}

impl From<&PatientBanner> for Banner {
    fn from(b: &PatientBanner) -> Self {
        Banner::new(
            &b.patient,
            b.age,
            &b.allergies,
            b.no_known_drug_allergies.is_some(),
            b.unreviewed_critical_count,
        )
    }
}

/// The patient, read through the same service as `GET /api/patients/{id}`
/// (permission-checked and audited).
pub async fn patient(st: &AppState, s: &WebSession, id: Uuid) -> Result<PatientView, AppError> {
    crate::services::patients::get(st, &s.user, id).await
}

/// The banner of a clinical page, through the service behind
/// `GET /api/patients/{id}/banner`.
pub async fn banner(st: &AppState, s: &WebSession, id: Uuid) -> Result<Banner, AppError> {
    crate::services::patients::banner(st, &s.user, id)
        .await
        .map(|b| Banner::from(&b))
}

#[derive(Debug, Clone)]
pub struct LabRow {
    pub id: String,
    pub code: String,
    pub name: String,
    pub value: String,
    pub unit: String,
    pub range: String,
    pub flag_label: String,
    pub flag_class: String,
    pub critical: bool,
    pub abnormal: bool,
    pub collected: String,
    pub reviewed: bool,
    pub reviewed_at: String,
    pub warning: Option<String>,
    pub patient_id: String,
    pub reviewed_by: Option<Uuid>,
    /// The reviewer's display name (filled by [`name_reviewers`])
    pub reviewer: String,
    pub review_comment: String,
    pub review_action: String,
}

/// Put the reviewers' names on `rows` (one lookup per distinct reviewer).
pub async fn name_reviewers(st: &AppState, rows: &mut [LabRow]) {
    let mut names: std::collections::HashMap<Uuid, String> = std::collections::HashMap::new();
    for r in rows.iter_mut() {
        let Some(id) = r.reviewed_by else { continue };
        let name = match names.get(&id) {
            Some(n) => n.clone(),
            None => {
                let n = crate::services::users::display_name(st, id).await;
                names.insert(id, n.clone());
                n
            }
        };
        r.reviewer = name;
    }
}

impl From<&LabView> for LabRow {
    fn from(l: &LabView) -> Self {
        let flag = l.flag;
        let range = match (l.reference_low, l.reference_high) {
            (Some(lo), Some(hi)) => format!("{}–{} {}", num(lo), num(hi), l.unit),
            (Some(lo), None) => format!("≥ {} {}", num(lo), l.unit),
            (None, Some(hi)) => format!("≤ {} {}", num(hi), l.unit),
            (None, None) => "—".into(),
        };
        LabRow {
            id: l.id.to_string(),
            code: l.code.clone(),
            name: l.name.clone(),
            value: num(l.value),
            unit: l.unit.clone(),
            range,
            flag_label: flag_label(flag).into(),
            flag_class: flag_class(flag).into(),
            critical: flag.is_some_and(LabFlag::is_critical),
            abnormal: flag.is_some_and(LabFlag::is_abnormal),
            collected: dt(&l.collected_at),
            reviewed: l.reviewed_at.is_some(),
            reviewed_at: opt_dt(&l.reviewed_at),
            warning: l.warning.clone(),
            patient_id: l.patient_id.to_string(),
            reviewed_by: l.reviewed_by,
            reviewer: String::new(),
            review_comment: l.review_comment.clone().unwrap_or_default(),
            review_action: l.review_action.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NoteRow {
    pub id: String,
    pub title: String,
    pub status: String,
    pub draft: bool,
    pub ai: bool,
    pub created: String,
    pub signed: String,
    pub mine: bool,
    pub patient_id: String,
}

impl NoteRow {
    pub fn new(n: &NoteView, me: Uuid) -> NoteRow {
        NoteRow {
            id: n.id.to_string(),
            title: n.title.clone(),
            status: n.status.as_str().to_string(),
            draft: n.status == NoteStatus::Draft,
            ai: n.ai_generated,
            created: dt(&n.created_at),
            signed: opt_dt(&n.signed_at),
            mine: n.author_id == me,
            patient_id: n.patient_id.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RxRow {
    pub id: String,
    pub medication: String,
    pub dose: String,
    pub route: String,
    pub frequency: String,
    pub quantity: i64,
    pub refills: i64,
    pub instructions: String,
    pub status: String,
    pub draft: bool,
    pub issued: bool,
    pub created: String,
    pub issued_at: String,
    pub cancelled_at: String,
    pub override_reason: Option<String>,
    pub interaction_override_reason: Option<String>,
    pub duplicate_override_reason: Option<String>,
    pub unchecked_acknowledged: bool,
    pub cancel_reason: Option<String>,
    pub patient_id: String,
}

impl From<&PrescriptionView> for RxRow {
    fn from(p: &PrescriptionView) -> Self {
        RxRow {
            id: p.id.to_string(),
            medication: p.medication.clone(),
            dose: p.dose.clone(),
            route: p.route.clone(),
            frequency: p.frequency.clone(),
            quantity: p.quantity,
            refills: p.refills,
            instructions: p.instructions.clone().unwrap_or_default(),
            status: p.status.as_str().to_string(),
            draft: p.status == PrescriptionStatus::Draft,
            issued: p.status == PrescriptionStatus::Issued,
            created: dt(&p.created_at),
            issued_at: opt_dt(&p.issued_at),
            cancelled_at: opt_dt(&p.cancelled_at),
            override_reason: p.override_reason.clone(),
            interaction_override_reason: p.interaction_override_reason.clone(),
            duplicate_override_reason: p.duplicate_override_reason.clone(),
            unchecked_acknowledged: p.unchecked_acknowledged,
            cancel_reason: p.cancel_reason.clone(),
            patient_id: p.patient_id.to_string(),
        }
    }
}

/// A "next page" link keeping the other query parameters.
pub fn next_link(path: &str, params: &[(&str, &str)], cursor: Option<&String>) -> Option<String> {
    let cursor = cursor?;
    let mut all: Vec<(&str, &str)> = params
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    all.push(("cursor", cursor.as_str()));
    let q = serde_urlencoded::to_string(&all).ok()?;
    Some(format!("{path}?{q}"))
}

/// Confirmation messages after a redirect (`?done=…`): fixed texts only,
/// never text from the URL.
pub fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "Patient created.",
        "saved" => "Changes saved.",
        "allergy" => "Allergy recorded.",
        "allergy_saved" => "Allergy updated.",
        "nkda" => "No known drug allergies recorded.",
        "problem_saved" => "Problem updated.",
        "vitals" => "Vital signs recorded.",
        "problem" => "Problem recorded.",
        "note" => "Draft note created.",
        "note_saved" => "Draft saved.",
        "finalized" => "Note finalized and signed.",
        "addendum" => "Addendum added and signed.",
        "discarded" => "Draft discarded.",
        "drafted" => "Prescription drafted.",
        "issued" => "Prescription issued.",
        "cancelled" => "Prescription cancelled.",
        "lab" => "Lab result recorded.",
        "reviewed" => "Result marked as reviewed.",
        "ai_saved" => "The AI draft was saved as a draft note. Review and edit it before signing.",
        "user_created" => "User created.",
        "user_updated" => "User updated. Their sessions have ended if the role or status changed.",
        "signed_out" => "You have signed out.",
        "break_glass" => "Break-glass access is open for this chart until its time box ends. It is audited and will be reviewed.",
        "idle" => "You were signed out after a period of inactivity, and the screen was cleared. Sign in again to continue.",
        "signed_up" => "Welcome: your account is ready and you are signed in.",
        "signup_pending" => "Your account was created. An administrator must activate it before you can sign in.",
        "first_admin" => "The administrator account is ready and you are signed in. Invite your colleagues below: each gets a one-time code and a sign-up link.",
        "invite" => "Invitation created. Give the code or the sign-up link below to your colleague.",
        "invite_revoked" => "Invitation revoked: its code no longer works.",
        "password_set" => "Your password is set. Sign in with it.",
        "sessions_ended" => "The user's sessions have ended.",
        "mfa_reset" => "The user's two-step sign-in was reset and their sessions have ended.",
        _ => return None,
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct Done {
    pub done: Option<String>,
    pub cursor: Option<String>,
}
