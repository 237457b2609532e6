//! The chart overview of one patient, and the signed-in clinician's day.
//! Both cost a fixed number of bounded queries however long the history.

use domain::audit::AuditAction;
use domain::roles::Action;
use domain::states::PrescriptionStatus;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::services::audit_read;
use crate::services::labs::LabView;
use crate::services::notes::NoteView;
use crate::services::patients::{AllergyView, PatientView, ProblemView};
use crate::services::prescriptions::PrescriptionView;
use crate::state::AppState;

/// How many recent notes the overview shows.
pub const RECENT_NOTES: i64 = 10;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChartOverview {
    pub patient: PatientView,
    pub allergies: Vec<AllergyView>,
    pub active_problems: Vec<ProblemView>,
    pub active_prescriptions: Vec<PrescriptionView>,
    /// The latest result of each code, each with its flag
    pub recent_labs: Vec<LabView>,
    /// The most recent notes (newest first)
    pub recent_notes: Vec<NoteView>,
}

/// The chart at a glance: demographics, allergies, active problems and
/// prescriptions, the latest result of each test and the recent notes.
pub async fn chart(st: &AppState, user: &AuthUser, id: Uuid) -> Result<ChartOverview> {
    user.require(Action::ReadChart)?;
    let patient = store::patients::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let (allergies, problems, prescriptions, labs, notes) = tokio::try_join!(
        store::patients::allergies(&st.db, id),
        store::patients::problems(&st.db, id, true),
        store::prescriptions::list_for_patient(
            &st.db,
            id,
            Some(PrescriptionStatus::Issued),
            None,
            100
        ),
        store::labs::latest_per_code(&st.db, id, 100),
        store::notes::list_for_patient(&st.db, id, None, RECENT_NOTES),
    )?;
    audit_read(
        st,
        user,
        AuditAction::PatientOverview,
        Some(("patient", id)),
        Some(id),
    )
    .await?;
    Ok(ChartOverview {
        patient: patient.into(),
        allergies: allergies.into_iter().map(Into::into).collect(),
        active_problems: problems.into_iter().map(Into::into).collect(),
        active_prescriptions: prescriptions.into_iter().map(Into::into).collect(),
        recent_labs: labs.into_iter().map(Into::into).collect(),
        recent_notes: notes.into_iter().map(|n| NoteView::new(n, None)).collect(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayOverview {
    /// The signed-in clinician's own draft notes
    pub draft_notes: Vec<NoteView>,
    /// Abnormal results no one has reviewed yet (oldest first)
    pub unreviewed_abnormal_labs: Vec<LabView>,
    /// Prescriptions this clinician issued today (UTC)
    pub prescriptions_issued_today: Vec<PrescriptionView>,
    pub patient_count: i64,
}

/// The signed-in clinician's day: their drafts, unreviewed abnormal
/// results, and what they issued today.
pub async fn day(st: &AppState, user: &AuthUser) -> Result<DayOverview> {
    user.require(Action::ReadOwnDay)?;
    let midnight = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_else(chrono::Utc::now);
    let (drafts, labs, issued, count) = tokio::try_join!(
        store::notes::drafts_by_author(&st.db, user.id, 50),
        store::labs::unreviewed_abnormal(&st.db, 50),
        store::prescriptions::issued_by_since(&st.db, user.id, midnight, 50),
        store::patients::count(&st.db),
    )?;
    audit_read(st, user, AuditAction::OverviewDay, None, None).await?;
    Ok(DayOverview {
        draft_notes: drafts.into_iter().map(|n| NoteView::new(n, None)).collect(),
        unreviewed_abnormal_labs: labs.into_iter().map(Into::into).collect(),
        prescriptions_issued_today: issued.into_iter().map(Into::into).collect(),
        patient_count: count,
    })
}
