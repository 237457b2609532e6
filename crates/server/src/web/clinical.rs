//! The chart overview, allergies (and "no known drug allergies"), problems
//! and their lifecycle.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use domain::chart::EntryStatus;
use domain::clinical::AllergySeverity;
use domain::roles::{Action, Role};
use uuid::Uuid;

use crate::error::AppError;
use crate::services;
use crate::services::patients::{
    AllergyInput, AllergyPatch, AllergyView, ProblemInput, ProblemPatch, ProblemView,
};
use crate::state::AppState;
use crate::web::models::{name_reviewers, notice, Banner, Done, LabRow, NoteRow, RxRow};
use crate::web::session::{Fields, WebForm, WebSession};
use crate::web::view::{self, after_form, opt_dt, FormState, Layout, OrPage, Page, WebId};
use crate::web::vitals::VitalsLine;

/// An allergy or a problem as the chart lists it, with the form that
/// changes it (named `form`, pre-filled with its current values).
pub struct EntryLine {
    pub id: String,
    pub form: String,
    pub title: String,
    pub detail: String,
    pub severity: String,
    pub severe: bool,
    pub status: String,
    pub status_label: String,
    pub struck: bool,
    pub resolved_on: String,
    pub recorded: String,
}

fn status_label(s: EntryStatus) -> &'static str {
    match s {
        EntryStatus::Active => "active",
        EntryStatus::Inactive => "inactive",
        EntryStatus::Resolved => "resolved",
        EntryStatus::EnteredInError => "entered in error",
    }
}

fn entry(
    kind: &str,
    id: Uuid,
    status: EntryStatus,
    resolved_on: &Option<String>,
    recorded: &chrono::DateTime<chrono::Utc>,
) -> EntryLine {
    EntryLine {
        id: id.to_string(),
        form: format!("{kind}-{id}"),
        title: String::new(),
        detail: String::new(),
        severity: String::new(),
        severe: false,
        status: status.as_str().to_string(),
        status_label: status_label(status).to_string(),
        struck: status == EntryStatus::EnteredInError,
        resolved_on: resolved_on.clone().unwrap_or_default(),
        recorded: view::dt(recorded),
    }
}

fn allergy_line(a: &AllergyView) -> (EntryLine, HashMap<String, String>) {
    let mut line = entry("allergy", a.id, a.status, &a.resolved_on, &a.recorded_at);
    line.title = a.substance.clone();
    line.detail = a.reaction.clone().unwrap_or_default();
    line.severity = a.severity.to_string();
    line.severe = a.severity == AllergySeverity::Severe;
    let values = HashMap::from([
        ("substance".to_string(), a.substance.clone()),
        ("reaction".to_string(), line.detail.clone()),
        ("severity".to_string(), a.severity.to_string()),
        ("status".to_string(), line.status.clone()),
        ("resolvedOn".to_string(), line.resolved_on.clone()),
        ("version".to_string(), a.version.to_string()),
    ]);
    (line, values)
}

fn problem_line(p: &ProblemView) -> (EntryLine, HashMap<String, String>) {
    let mut line = entry("problem", p.id, p.status, &p.resolved_on, &p.recorded_at);
    line.title = p.description.clone();
    line.detail = p.code.clone().unwrap_or_default();
    let values = HashMap::from([
        ("description".to_string(), p.description.clone()),
        ("code".to_string(), line.detail.clone()),
        ("status".to_string(), line.status.clone()),
        ("resolvedOn".to_string(), line.resolved_on.clone()),
        ("version".to_string(), p.version.to_string()),
    ]);
    (line, values)
}

#[derive(Template)]
#[template(path = "chart.html")]
pub struct ChartPage {
    pub l: Layout,
    pub p: Banner,
    pub f: FormState,
    pub allergies: Vec<EntryLine>,
    pub allergy_history: Vec<EntryLine>,
    pub nkda: String,
    pub problems: Vec<EntryLine>,
    pub problem_history: Vec<EntryLine>,
    pub rxs: Vec<RxRow>,
    pub labs: Vec<LabRow>,
    pub critical: Vec<LabRow>,
    pub critical_more: i64,
    pub vitals: Vec<VitalsLine>,
    pub vitals_at: String,
    pub notes: Vec<NoteRow>,
    pub can_allergy: bool,
    pub can_problem: bool,
    pub can_note: bool,
    pub can_ai: bool,
    pub can_vitals: bool,
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
    let o = match services::overview::chart(st, &s.user, id).await {
        // Outside the care teams: demographics and the break-glass form.
        Err(AppError::OutsideCareTeam { .. }) => {
            return crate::web::access::outside(st, s, id, FormState::none(), StatusCode::FORBIDDEN)
                .await
        }
        r => r.or_page(s)?,
    };
    let patient = &o.patient;
    let mut labs: Vec<LabRow> = o.recent_labs.iter().map(LabRow::from).collect();
    name_reviewers(st, &mut labs).await;
    let role = s.user.role;
    let mut f = f;
    let mut lines = |rows: Vec<(EntryLine, HashMap<String, String>)>| {
        rows.into_iter()
            .map(|(line, values)| {
                f = std::mem::take(&mut f).with_defaults(&line.form, values);
                line
            })
            .collect::<Vec<_>>()
    };
    let allergies = lines(o.allergies.iter().map(allergy_line).collect());
    let allergy_history = lines(o.allergy_history.iter().map(allergy_line).collect());
    let problems = lines(o.active_problems.iter().map(problem_line).collect());
    let problem_history = lines(o.problem_history.iter().map(problem_line).collect());
    let critical: Vec<LabRow> = o
        .unreviewed_critical_labs
        .iter()
        .map(LabRow::from)
        .collect();
    let page = ChartPage {
        l: Layout::new(
            format!("{}, {}", patient.family_name, patient.given_name),
            s,
        )
        .notice(notice(done)),
        p: Banner::new(
            patient,
            o.age,
            &o.allergies,
            o.no_known_drug_allergies.is_some(),
            o.unreviewed_critical_count,
        ),
        f,
        allergies,
        allergy_history,
        nkda: o
            .no_known_drug_allergies
            .as_ref()
            .map(|n| view::dt(&n.stated_at))
            .unwrap_or_default(),
        problems,
        problem_history,
        rxs: o.active_prescriptions.iter().map(RxRow::from).collect(),
        critical_more: o.unreviewed_critical_count - critical.len() as i64,
        critical,
        vitals: o
            .latest_vitals
            .as_ref()
            .map(crate::web::vitals::lines)
            .unwrap_or_default(),
        vitals_at: opt_dt(&o.latest_vitals.as_ref().map(|v| v.recorded_at)),
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
        can_vitals: role.may(Action::RecordVitals),
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
    values: HashMap<String, String>,
    result: Result<T, AppError>,
    done: &str,
) -> Page {
    let anchor = form.split('-').next().unwrap_or(form);
    let ok = |_| format!("/patients/{id}?done={done}#{anchor}");
    let reload = format!("/patients/{id}#{anchor}");
    let again = async |f: FormState, status| {
        render_chart(st, s, id, f.reload_at(reload), status, None).await
    };
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

/// "No known drug allergies" (a button on the chart).
pub async fn state_nkda(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let r = services::patients::state_no_known_allergies(&st, &s.user, id).await;
    after_write(&st, &s, id, "nkda", f.values(), r, "nkda").await
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
        resolved_on: f.opt("resolvedOn"),
    };
    let r = services::patients::add_problem(&st, &s.user, id, Ok(input)).await;
    after_write(&st, &s, id, "problem", f.values(), r, "problem").await
}

/// The two ids of `/patients/{id}/allergies/{entry}` (malformed → 404 page).
#[allow(clippy::result_large_err)]
fn ids(
    s: &WebSession,
    (patient, entry): (String, String),
) -> Result<(Uuid, Uuid), axum::response::Response> {
    Ok((
        view::uuid(&patient).or_page(s)?,
        view::uuid(&entry).or_page(s)?,
    ))
}

fn version(f: &Fields) -> Option<i64> {
    f.get("version").trim().parse::<i64>().ok()
}

/// Edit an allergy or change its status (one form per allergy).
pub async fn update_allergy(
    State(st): State<AppState>,
    Path(raw): Path<(String, String)>,
    WebForm { s, f }: WebForm,
) -> Page {
    let (id, allergy) = ids(&s, raw)?;
    let patch = AllergyPatch {
        substance: Some(f.get("substance")),
        reaction: Some(f.get("reaction")),
        severity: Some(f.get("severity")),
        status: Some(f.get("status")),
        resolved_on: f.opt("resolvedOn"),
        version: version(&f),
    };
    let r =
        services::patients::update_allergy(&st, &s.user, id, allergy, Ok(None), Ok(patch)).await;
    let form = format!("allergy-{allergy}");
    after_write(&st, &s, id, &form, f.values(), r, "allergy_saved").await
}

/// Edit a problem, resolve it, inactivate it or mark it entered in error.
pub async fn update_problem(
    State(st): State<AppState>,
    Path(raw): Path<(String, String)>,
    WebForm { s, f }: WebForm,
) -> Page {
    let (id, problem) = ids(&s, raw)?;
    let patch = ProblemPatch {
        description: Some(f.get("description")),
        code: Some(f.get("code")),
        status: Some(f.get("status")),
        resolved_on: f.opt("resolvedOn"),
        version: version(&f),
    };
    let r =
        services::patients::update_problem(&st, &s.user, id, problem, Ok(None), Ok(patch)).await;
    let form = format!("problem-{problem}");
    after_write(&st, &s, id, &form, f.values(), r, "problem_saved").await
}
