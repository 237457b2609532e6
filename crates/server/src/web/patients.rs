//! Home (the clinician's day), patient search and demographics.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use domain::roles::{Action, Role};
use serde::Deserialize;

use crate::error::AppError;
use crate::extract::PageQuery;
use crate::services;
use crate::services::patients::{PatientInput, PatientPatch, PatientView};
use crate::state::AppState;
use crate::web::form_level;
use crate::web::models::{next_link, notice, Done, LabRow, NoteRow, RxRow};
use crate::web::session::{WebForm, WebSession};
use crate::web::view::{self, FormState, Layout};

#[derive(Template)]
#[template(path = "day.html")]
struct DayPage {
    l: Layout,
    drafts: Vec<NoteRow>,
    labs: Vec<LabRow>,
    rxs: Vec<RxRow>,
    patient_count: i64,
}

/// `/`: the clinician's day; staff go to search, admins to administration.
pub async fn home(State(st): State<AppState>, s: WebSession, Query(d): Query<Done>) -> Response {
    match s.user.role {
        Role::Admin => return view::redirect("/admin/users"),
        Role::Staff => return view::redirect("/patients"),
        _ => {}
    }
    match services::overview::day(&st, &s.user).await {
        Ok(day) => view::ok(&DayPage {
            l: Layout::new("Today", &s).notice(notice(d.done.as_deref())),
            drafts: day
                .draft_notes
                .iter()
                .map(|n| NoteRow::new(n, s.user.id))
                .collect(),
            labs: day
                .unreviewed_abnormal_labs
                .iter()
                .map(LabRow::from)
                .collect(),
            rxs: day
                .prescriptions_issued_today
                .iter()
                .map(RxRow::from)
                .collect(),
            patient_count: day.patient_count,
        }),
        Err(e) => view::error_page(Some(&s), &e),
    }
}

pub struct PatientRowView {
    pub href: String,
    pub name: String,
    pub mrn: String,
    pub birth_date: String,
    pub sex: String,
}

#[derive(Template)]
#[template(path = "patients.html")]
struct SearchPage {
    l: Layout,
    q: String,
    searched: bool,
    rows: Vec<PatientRowView>,
    next: Option<String>,
    error: Option<String>,
    can_create: bool,
}

#[derive(Debug, Deserialize)]
pub struct SearchParams {
    q: Option<String>,
    cursor: Option<String>,
}

/// Where a patient row leads: the chart for clinicians, demographics for staff.
fn patient_href(role: Role, id: &str) -> String {
    if role.may(Action::ReadChart) {
        format!("/patients/{id}")
    } else {
        format!("/patients/{id}/edit")
    }
}

pub async fn search(
    State(st): State<AppState>,
    s: WebSession,
    Query(p): Query<SearchParams>,
) -> Response {
    let mut page = SearchPage {
        l: Layout::new("Patients", &s),
        q: p.q.clone().unwrap_or_default(),
        searched: p.q.is_some(),
        rows: vec![],
        next: None,
        error: None,
        can_create: s.user.role.may(Action::CreatePatient),
    };
    if s.user.role == Role::Admin {
        return view::error_page(
            Some(&s),
            &AppError::Forbidden("The admin role may not do this.".into()),
        );
    }
    if p.q.is_none() {
        return view::ok(&page);
    }
    let page_q = PageQuery {
        limit: Some(25),
        cursor: p.cursor.clone(),
    };
    match services::patients::search(&st, &s.user, p.q.as_deref(), &page_q).await {
        Ok(res) => {
            page.rows = res
                .items
                .iter()
                .map(|pv| PatientRowView {
                    href: patient_href(s.user.role, &pv.id.to_string()),
                    name: format!("{}, {}", pv.family_name, pv.given_name),
                    mrn: pv.mrn.clone(),
                    birth_date: pv.birth_date.clone(),
                    sex: pv.sex.clone(),
                })
                .collect();
            page.next = next_link("/patients", &[("q", &page.q)], res.next_cursor.as_ref());
            view::ok(&page)
        }
        Err(e) if form_level(&e) => {
            page.error = Some(e.detail());
            if let AppError::Validation(errs) = &e {
                if let Some(first) = errs.first() {
                    page.error = Some(format!("{} {}", first.field, first.message));
                }
            }
            view::render(e.status(), &page)
        }
        Err(e) => view::error_page(Some(&s), &e),
    }
}

#[derive(Template)]
#[template(path = "patient_form.html")]
struct PatientFormPage {
    l: Layout,
    f: FormState,
    action: String,
    creating: bool,
    patient_id: String,
    mrn: String,
    chart_link: bool,
}

fn form_page(
    s: &WebSession,
    f: FormState,
    p: Option<&PatientView>,
    done: Option<&str>,
) -> PatientFormPage {
    let creating = p.is_none();
    PatientFormPage {
        l: Layout::new(
            if creating {
                "New patient".to_string()
            } else {
                "Edit demographics".to_string()
            },
            s,
        )
        .notice(notice(done)),
        f,
        action: match p {
            Some(p) => format!("/patients/{}/edit", p.id),
            None => "/patients".into(),
        },
        creating,
        patient_id: p.map(|p| p.id.to_string()).unwrap_or_default(),
        mrn: p.map(|p| p.mrn.clone()).unwrap_or_default(),
        chart_link: s.user.role.may(Action::ReadChart),
    }
}

pub async fn new_form(s: WebSession) -> Response {
    if let Err(e) = s.user.require(Action::CreatePatient) {
        return view::error_page(Some(&s), &e);
    }
    view::ok(&form_page(&s, FormState::none(), None, None))
}

pub async fn create(State(st): State<AppState>, WebForm { s, f }: WebForm) -> Response {
    let input = PatientInput {
        given_name: f.get("givenName"),
        family_name: f.get("familyName"),
        birth_date: f.get("birthDate"),
        sex: f.get("sex"),
        phone: f.opt("phone"),
        email: f.opt("email"),
        address: f.opt("address"),
    };
    match services::patients::create(&st, &s.user, Ok(input)).await {
        Ok(p) if s.user.role.may(Action::ReadChart) => {
            view::redirect(&format!("/patients/{}?done=created", p.id))
        }
        Ok(p) => view::redirect(&format!("/patients/{}/edit?done=created", p.id)),
        Err(e) if form_level(&e) => view::render(
            e.status(),
            &form_page(&s, FormState::failed("patient", f.values(), &e), None, None),
        ),
        Err(e) => view::error_page(Some(&s), &e),
    }
}

fn values_of(p: &PatientView) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("givenName".into(), p.given_name.clone());
    m.insert("familyName".into(), p.family_name.clone());
    m.insert("birthDate".into(), p.birth_date.clone());
    m.insert("sex".into(), p.sex.clone());
    m.insert("phone".into(), p.phone.clone().unwrap_or_default());
    m.insert("email".into(), p.email.clone().unwrap_or_default());
    m.insert("address".into(), p.address.clone().unwrap_or_default());
    m.insert("version".into(), p.version.to_string());
    m
}

pub async fn edit_form(
    State(st): State<AppState>,
    s: WebSession,
    Path(id): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let p = match view::uuid(&id) {
        Ok(id) => crate::web::models::patient(&st, &s, id).await,
        Err(e) => Err(e),
    };
    match p {
        Ok(p) => view::ok(&form_page(
            &s,
            FormState::filled("patient", values_of(&p)),
            Some(&p),
            d.done.as_deref(),
        )),
        Err(e) => view::error_page(Some(&s), &e),
    }
}

pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    WebForm { s, f }: WebForm,
) -> Response {
    let id = match view::uuid(&id) {
        Ok(id) => id,
        Err(e) => return view::error_page(Some(&s), &e),
    };
    let version = f.get("version").trim().parse::<i64>().ok();
    let patch = PatientPatch {
        given_name: Some(f.get("givenName")),
        family_name: Some(f.get("familyName")),
        birth_date: Some(f.get("birthDate")),
        sex: Some(f.get("sex")),
        phone: Some(f.get("phone")),
        email: Some(f.get("email")),
        address: Some(f.get("address")),
        version,
    };
    match services::patients::update(&st, &s.user, id, Ok(None), Ok(patch)).await {
        Ok(_) => view::redirect(&format!("/patients/{id}/edit?done=saved")),
        Err(e) if form_level(&e) => {
            // Show the form again with what was typed, and the patient's MRN.
            let current = crate::web::models::patient(&st, &s, id).await;
            match current {
                Ok(p) => view::render(
                    e.status(),
                    &form_page(
                        &s,
                        FormState::failed("patient", f.values(), &e),
                        Some(&p),
                        None,
                    ),
                ),
                Err(e2) => view::error_page(Some(&s), &e2),
            }
        }
        Err(e) => view::error_page(Some(&s), &e),
    }
}
