//! The chart overview, allergies and problems.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use domain::roles::{Action, Role};
use uuid::Uuid;

use crate::error::AppError;
use crate::services;
use crate::services::patients::{AllergyInput, ProblemInput};
use crate::state::AppState;
use crate::web::models::{notice, Banner, Done, LabRow, NoteRow, RxRow};
use crate::web::session::{WebForm, WebSession};
use crate::web::view::{self, after_form, FormState, Layout, OrPage, Page, WebId};

pub struct AllergyLine {
    pub substance: String,
    pub reaction: String,
    pub severity: String,
    pub severe: bool,
}

pub struct ProblemLine {
    pub description: String,
    pub code: String,
}

#[derive(Template)]
#[template(path = "chart.html")]
pub struct ChartPage {
    pub l: Layout,
    pub p: Banner,
    pub f: FormState,
    pub allergies: Vec<AllergyLine>,
    pub problems: Vec<ProblemLine>,
    pub rxs: Vec<RxRow>,
    pub labs: Vec<LabRow>,
    pub critical: Vec<LabRow>,
    pub notes: Vec<NoteRow>,
    pub can_allergy: bool,
    pub can_problem: bool,
    pub can_note: bool,
    pub can_ai: bool,
    pub phone: String,
    pub email: String,
    pub address: String,
}

/// Render the chart through the overview service, with `f` holding
/// the state of one of its forms.
pub async fn render_chart(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    f: FormState,
    status: StatusCode,
    done: Option<&str>,
) -> Page {
    let o = services::overview::chart(st, &s.user, id)
        .await
        .or_page(s)?;
    let patient = &o.patient;
    let labs: Vec<LabRow> = o.recent_labs.iter().map(LabRow::from).collect();
    let role = s.user.role;
    let page = ChartPage {
        l: Layout::new(
            format!("{}, {}", patient.family_name, patient.given_name),
            s,
        )
        .notice(notice(done)),
        p: Banner::from(patient),
        f,
        allergies: o
            .allergies
            .iter()
            .map(|a| AllergyLine {
                substance: a.substance.clone(),
                reaction: a.reaction.clone().unwrap_or_default(),
                severity: a.severity.clone(),
                severe: a.severity == "severe",
            })
            .collect(),
        problems: o
            .active_problems
            .iter()
            .map(|p| ProblemLine {
                description: p.description.clone(),
                code: p.code.clone().unwrap_or_default(),
            })
            .collect(),
        rxs: o.active_prescriptions.iter().map(RxRow::from).collect(),
        critical: labs.iter().filter(|l| l.critical).cloned().collect(),
        labs,
        notes: o
            .recent_notes
            .iter()
            .map(|n| NoteRow::new(n, s.user.id))
            .collect(),
        can_allergy: role.may(Action::RecordAllergy),
        can_problem: role.may(Action::RecordProblem),
        can_note: role.may(Action::WriteDraftNote),
        can_ai: role.may(Action::UseAi),
        phone: patient.phone.clone().unwrap_or_default(),
        email: patient.email.clone().unwrap_or_default(),
        address: patient.address.clone().unwrap_or_default(),
    };
    Ok(view::render(status, &page))
}

/// `/patients/{id}`: the chart (staff, who may not read charts, are taken
/// to the demographics form instead; the handler still decides).
pub async fn chart(
    State(st): State<AppState>,
    s: WebSession,
    WebId(id): WebId,
    Query(d): Query<Done>,
) -> Page {
    if s.user.role == Role::Staff {
        return Ok(view::redirect(&format!("/patients/{id}/edit")));
    }
    render_chart(
        &st,
        &s,
        id,
        FormState::none(),
        StatusCode::OK,
        d.done.as_deref(),
    )
    .await
}

/// Shared tail of the chart's small forms.
async fn after_write<T>(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    form: &str,
    values: std::collections::HashMap<String, String>,
    result: Result<T, AppError>,
    done: &str,
) -> Page {
    let ok = |_| format!("/patients/{id}?done={done}#{form}");
    let again = async |f, status| render_chart(st, s, id, f, status, None).await;
    after_form(s, result, form, values, ok, again).await
}

pub async fn add_allergy(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let input = AllergyInput {
        substance: f.get("substance"),
        reaction: f.opt("reaction"),
        severity: f.opt("severity"),
    };
    let r = services::patients::add_allergy(&st, &s.user, id, Ok(input)).await;
    after_write(&st, &s, id, "allergy", f.values(), r, "allergy").await
}

pub async fn add_problem(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let input = ProblemInput {
        description: f.get("description"),
        code: f.opt("code"),
        status: f.opt("status"),
    };
    let r = services::patients::add_problem(&st, &s.user, id, Ok(input)).await;
    after_write(&st, &s, id, "problem", f.values(), r, "problem").await
}
