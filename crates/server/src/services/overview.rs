//! The chart overview of one patient, and the signed-in clinician's day.
//! Both cost a fixed number of bounded queries however long the history.

use chrono::{DateTime, Utc};
use domain::audit::AuditAction;
use domain::chart::EntryStatus;
use domain::roles::{Action, Role};
use domain::states::PrescriptionStatus;
use serde::{Deserialize, Serialize};
use store::worklist::{PatientBrief, With};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::PageQuery;
use crate::services::labs::LabView;
use crate::services::notes::NoteView;
use crate::services::patients::{age_years, AllergyView, NkdaView, PatientView, ProblemView};
use crate::services::prescriptions::PrescriptionView;
use crate::services::vitals::VitalsView;
use crate::services::{audit_read, audit_read_patients, page, time_cursor, time_key};
use crate::state::AppState;

/// How many recent notes the overview shows.
pub const RECENT_NOTES: i64 = 10;
/// How many unreviewed critical results the chart lists (the count is exact).
pub const CRITICAL_SHOWN: i64 = 100;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChartOverview {
    pub patient: PatientView,
    /// Age in whole years today (null when the birth date cannot be read)
    pub age: Option<i64>,
    /// Active allergies
    pub allergies: Vec<AllergyView>,
    /// Inactive, resolved and entered-in-error allergies: kept, never deleted
    pub allergy_history: Vec<AllergyView>,
    /// Set when a clinician stated "no known drug allergies" and no allergy
    /// has been recorded since
    pub no_known_drug_allergies: Option<NkdaView>,
    pub active_problems: Vec<ProblemView>,
    /// Inactive, resolved and entered-in-error problems
    pub problem_history: Vec<ProblemView>,
    pub active_prescriptions: Vec<PrescriptionView>,
    /// The latest result of each code, each with its flag (a newer result
    /// left unflagged by its unit is listed beside the flagged one, never
    /// instead of it)
    pub recent_labs: Vec<LabView>,
    /// Every critical result not yet reviewed, newest first, whatever came
    /// after it (at most 100 listed)
    pub unreviewed_critical_labs: Vec<LabView>,
    pub unreviewed_critical_count: i64,
    /// The most recent set of vital signs
    pub latest_vitals: Option<VitalsView>,
    /// The most recent notes (newest first)
    pub recent_notes: Vec<NoteView>,
}

/// Split entries into the active ones and the rest (the history).
fn split<R, V: From<R>>(rows: Vec<R>, status: impl Fn(&R) -> EntryStatus) -> (Vec<V>, Vec<V>) {
    let (active, rest): (Vec<R>, Vec<R>) = rows
        .into_iter()
        .partition(|r| status(r) == EntryStatus::Active);
    (
        active.into_iter().map(V::from).collect(),
        rest.into_iter().map(V::from).collect(),
    )
}

/// The chart at a glance: demographics, allergies (and their history),
/// problems, prescriptions, the latest result of each test, every
/// unreviewed critical result, the latest vital signs and recent notes.
pub async fn chart(st: &AppState, user: &AuthUser, id: Uuid) -> Result<ChartOverview> {
    user.require(Action::ReadChart)?;
    crate::services::require_patient(st, user, id).await?;
    let patient = store::patients::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let (allergies, problems, prescriptions, labs, (critical, critical_count), vitals, notes) = tokio::try_join!(
        store::patients::allergies(&st.db, id),
        store::patients::problems(&st.db, id, false),
        store::prescriptions::list_for_patient(
            &st.db,
            id,
            Some(PrescriptionStatus::Issued),
            None,
            100
        ),
        store::labs::latest_per_code(&st.db, id, 100),
        store::labs::unreviewed_critical_for_patient(&st.db, id, CRITICAL_SHOWN),
        store::vitals::list_for_patient(&st.db, id, None, 1),
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
    let (allergies, allergy_history) = split(allergies, |a| a.status);
    let (active_problems, problem_history) = split(problems, |p| p.status);
    Ok(ChartOverview {
        age: age_years(&patient.birth_date),
        no_known_drug_allergies: NkdaView::of(&patient),
        patient: patient.into(),
        allergies,
        allergy_history,
        active_problems,
        problem_history,
        active_prescriptions: prescriptions.into_iter().map(Into::into).collect(),
        recent_labs: labs.into_iter().map(Into::into).collect(),
        unreviewed_critical_labs: critical.into_iter().map(Into::into).collect(),
        unreviewed_critical_count: critical_count,
        latest_vitals: vitals.into_iter().next().map(Into::into),
        recent_notes: notes.into_iter().map(|n| NoteView::new(n, None)).collect(),
    })
}

/// Who a row of the day is about.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientRef {
    pub id: Uuid,
    pub mrn: String,
    /// "Family, Given"
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: String,
    pub age: Option<i64>,
    #[schema(value_type = String)]
    pub sex: domain::clinical::Sex,
}

impl PatientRef {
    fn new(id: Uuid, p: PatientBrief) -> PatientRef {
        PatientRef {
            id,
            name: format!("{}, {}", p.family_name, p.given_name),
            age: age_years(&p.birth_date),
            mrn: p.mrn,
            given_name: p.given_name,
            family_name: p.family_name,
            birth_date: p.birth_date,
            sex: p.sex,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkResult {
    pub lab: LabView,
    pub patient: PatientRef,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultList {
    /// Critical first, then abnormal; newest arrival first within each
    pub items: Vec<WorkResult>,
    /// Every unreviewed abnormal result in the clinic
    pub total: i64,
    /// Of which critical
    pub critical_total: i64,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkNote {
    pub note: NoteView,
    pub patient: PatientRef,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoteList {
    /// Most recently changed first
    pub items: Vec<WorkNote>,
    pub total: i64,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkPrescription {
    pub prescription: PrescriptionView,
    pub patient: PatientRef,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionList {
    /// Newest first
    pub items: Vec<WorkPrescription>,
    pub total: i64,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkVitals {
    pub vitals: VitalsView,
    pub patient: PatientRef,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VitalsList {
    /// Newest first
    pub items: Vec<WorkVitals>,
    pub total: i64,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayOverview {
    /// Abnormal results no one has reviewed yet, critical first
    pub unreviewed_results: ResultList,
    /// The signed-in clinician's own draft notes
    pub draft_notes: NoteList,
    /// Nurses' drafts waiting for a provider's co-signature (providers only;
    /// null for nurses)
    pub cosign_drafts: Option<NoteList>,
    /// Prescriptions this clinician issued today (UTC)
    pub prescriptions_issued_today: PrescriptionList,
    /// Vital-sign sets with a critical value entered in the last 24 hours
    pub critical_vitals: VitalsList,
    pub patient_count: i64,
}

/// Paging of the day's lists: one `limit`, one cursor per list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DayQuery {
    /// Rows per list (default 50); values below 1 are treated as 1 and
    /// values above 200 as 200
    pub limit: Option<i64>,
    pub results_cursor: Option<String>,
    pub drafts_cursor: Option<String>,
    pub cosign_cursor: Option<String>,
    pub prescriptions_cursor: Option<String>,
    pub vitals_cursor: Option<String>,
}

impl DayQuery {
    fn page(&self, cursor: &Option<String>) -> PageQuery {
        PageQuery {
            limit: self.limit,
            cursor: cursor.clone(),
        }
    }
}

/// The results list's cursor: `tier|time|id` (tier 0 critical, 1 abnormal).
fn result_cursor(q: &PageQuery) -> Result<Option<(i64, DateTime<Utc>, Uuid)>> {
    let Some(text) = q.cursor_text()? else {
        return Ok(None);
    };
    let bad = || AppError::validation("resultsCursor", "is not a cursor this server issued");
    let (tier, rest) = text.split_once('|').ok_or_else(bad)?;
    let tier: i64 = tier.parse().map_err(|_| bad())?;
    let inner = PageQuery {
        limit: None,
        cursor: Some(crate::extract::encode_cursor(rest)),
    };
    let (t, id) = time_cursor(&inner).map_err(|_| bad())?.ok_or_else(bad)?;
    Ok(Some((tier, t, id)))
}

fn tier(l: &store::labs::LabRow) -> i64 {
    if l.flag.is_some_and(domain::labs::LabFlag::is_critical) {
        0
    } else {
        1
    }
}

/// The signed-in clinician's day: unreviewed abnormal results (critical
/// first), their drafts, nurses' drafts to co-sign (providers), what they
/// issued today and critical vital signs — every row with its patient,
/// every list counted and keyset-paged.
pub async fn day(st: &AppState, user: &AuthUser, q: &DayQuery) -> Result<DayOverview> {
    user.require(Action::ReadOwnDay)?;
    let now = Utc::now();
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now);
    let (rq, dq, cq, pq, vq) = (
        q.page(&q.results_cursor),
        q.page(&q.drafts_cursor),
        q.page(&q.cosign_cursor),
        q.page(&q.prescriptions_cursor),
        q.page(&q.vitals_cursor),
    );
    let limit = rq.limit();
    let (r_after, d_after, c_after, p_after, v_after) = (
        result_cursor(&rq)?,
        time_cursor(&dq)?,
        time_cursor(&cq)?,
        time_cursor(&pq)?,
        time_cursor(&vq)?,
    );
    let provider = user.role == Role::Provider;
    let cosign = async {
        if provider {
            store::worklist::drafts(&st.db, user.id, None, c_after, limit + 1)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    };
    let (results, (total, critical_total), drafts, cosign, issued, vitals, count) = tokio::try_join!(
        store::worklist::unreviewed_results(&st.db, user.id, r_after, limit + 1),
        store::worklist::unreviewed_totals(&st.db, user.id),
        store::worklist::drafts(&st.db, user.id, Some(user.id), d_after, limit + 1),
        cosign,
        store::worklist::issued_since(&st.db, user.id, midnight, p_after, limit + 1),
        store::worklist::critical_vitals_since(
            &st.db,
            user.id,
            now - chrono::Duration::hours(24),
            v_after,
            limit + 1
        ),
        store::patients::count(&st.db),
    )?;
    let (items, next_cursor) = page(
        results,
        limit,
        |w| format!("{}|{}", tier(&w.row), time_key(w.row.recorded_at, w.row.id)),
        |w: With<store::labs::LabRow>| WorkResult {
            patient: PatientRef::new(w.row.patient_id, w.patient),
            lab: w.row.into(),
        },
    );
    let notes = |(rows, total): (Vec<With<store::notes::NoteRow>>, i64)| {
        let (items, next_cursor) = page(
            rows,
            limit,
            |w| time_key(w.row.updated_at, w.row.id),
            |w| WorkNote {
                patient: PatientRef::new(w.row.patient_id, w.patient),
                note: NoteView::new(w.row, None),
            },
        );
        NoteList {
            items,
            total,
            next_cursor,
        }
    };
    let (rx_rows, rx_total) = issued;
    let (rx_items, rx_next) = page(
        rx_rows,
        limit,
        |w| time_key(w.row.issued_at.unwrap_or(w.row.created_at), w.row.id),
        |w| WorkPrescription {
            patient: PatientRef::new(w.row.patient_id, w.patient),
            prescription: w.row.into(),
        },
    );
    let (v_rows, v_total) = vitals;
    let (v_items, v_next) = page(
        v_rows,
        limit,
        |w| time_key(w.row.entered_at, w.row.id),
        |w| WorkVitals {
            patient: PatientRef::new(w.row.patient_id, w.patient),
            vitals: w.row.into(),
        },
    );
    let day = DayOverview {
        unreviewed_results: ResultList {
            items,
            total,
            critical_total,
            next_cursor,
        },
        draft_notes: notes(drafts),
        cosign_drafts: cosign.map(notes),
        prescriptions_issued_today: PrescriptionList {
            items: rx_items,
            total: rx_total,
            next_cursor: rx_next,
        },
        critical_vitals: VitalsList {
            items: v_items,
            total: v_total,
            next_cursor: v_next,
        },
        patient_count: count,
    };
    audit_read_patients(st, user, AuditAction::OverviewDay, day.patient_ids()).await?;
    Ok(day)
}

impl DayOverview {
    /// Every patient named on the page.
    fn patient_ids(&self) -> Vec<Uuid> {
        let notes = |l: &NoteList| l.items.iter().map(|n| n.patient.id).collect::<Vec<_>>();
        let mut ids: Vec<Uuid> = self
            .unreviewed_results
            .items
            .iter()
            .map(|r| r.patient.id)
            .collect();
        ids.extend(notes(&self.draft_notes));
        ids.extend(self.cosign_drafts.as_ref().map(notes).unwrap_or_default());
        ids.extend(
            self.prescriptions_issued_today
                .items
                .iter()
                .map(|p| p.patient.id),
        );
        ids.extend(self.critical_vitals.items.iter().map(|v| v.patient.id));
        ids
    }
}
