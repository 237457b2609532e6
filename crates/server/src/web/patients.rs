//! Home (the clinician's day), patient search and demographics.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use domain::roles::{Action, Role};
use serde::Deserialize;

use crate::error::AppError;
use crate::extract::PageQuery;
use crate::services;
use crate::services::overview::{DayQuery, NoteList, PatientRef};
use crate::services::patients::{DuplicateMatch, PatientInput, PatientPatch, PatientView};
use crate::state::AppState;
use crate::web::form_level;
use crate::web::models::{next_link, notice, Done, LabRow, NoteRow, RxRow};
use crate::web::session::{WebForm, WebSession};
use crate::web::view::{self, after_form, FormState, Layout, OrPage, Page, WebId};

/// Who a row of the day is about.
pub struct Who {
    pub name: String,
    pub mrn: String,
    pub age: String,
}

impl From<&PatientRef> for Who {
    fn from(p: &PatientRef) -> Self {
        Who {
            name: p.name.clone(),
            mrn: p.mrn.clone(),
            age: p.age.map(|a| format!("{a} y")).unwrap_or_default(),
        }
    }
}

/// One of the day's lists: rows with their patient, the total and the next
/// page's link.
pub struct DayList<T> {
    pub rows: Vec<(T, Who)>,
    pub total: i64,
    pub next: Option<String>,
}

impl<T> DayList<T> {
    fn new(rows: Vec<(T, Who)>, total: i64, param: &str, cursor: Option<&String>) -> Self {
        DayList {
            rows,
            total,
            next: next_link("/", &[], cursor)
                .map(|l| l.replacen("cursor=", &format!("{param}="), 1)),
        }
    }

    /// "showing 50 of 120" when the list does not fit on the page.
    pub fn partial(&self) -> bool {
        (self.rows.len() as i64) < self.total
    }
}

pub struct VitalsAlert {
    pub patient_id: String,
    pub recorded: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "day.html")]
struct DayPage {
    l: Layout,
    results: DayList<LabRow>,
    critical_total: i64,
    drafts: DayList<NoteRow>,
    cosign: Option<DayList<NoteRow>>,
    rxs: DayList<RxRow>,
    vitals: DayList<VitalsAlert>,
    patient_count: i64,
}

#[derive(Debug, Deserialize, Default)]
pub struct DayParams {
    done: Option<String>,
    results: Option<String>,
    drafts: Option<String>,
    cosign: Option<String>,
    rx: Option<String>,
    vitals: Option<String>,
}

/// `/`: the clinician's day; staff go to search, admins to administration.
pub async fn home(State(st): State<AppState>, s: WebSession, Query(d): Query<DayParams>) -> Page {
    match s.user.role {
        Role::Admin => return Ok(view::redirect("/admin/users")),
        Role::Staff => return Ok(view::redirect("/patients")),
        _ => {}
    }
    let q = DayQuery {
        limit: Some(50),
        results_cursor: d.results,
        drafts_cursor: d.drafts,
        cosign_cursor: d.cosign,
        prescriptions_cursor: d.rx,
        vitals_cursor: d.vitals,
    };
    let day = services::overview::day(&st, &s.user, &q)
        .await
        .or_page(&s)?;
    let me = s.user.id;
    let notes = |l: &NoteList, param: &str| {
        let rows = l
            .items
            .iter()
            .map(|w| (NoteRow::new(&w.note, me), Who::from(&w.patient)))
            .collect();
        DayList::new(rows, l.total, param, l.next_cursor.as_ref())
    };
    let r = &day.unreviewed_results;
    let results = r
        .items
        .iter()
        .map(|w| (LabRow::from(&w.lab), Who::from(&w.patient)))
        .collect();
    let rx = &day.prescriptions_issued_today;
    let rxs = rx
        .items
        .iter()
        .map(|w| (RxRow::from(&w.prescription), Who::from(&w.patient)))
        .collect();
    let v = &day.critical_vitals;
    let vitals = v
        .items
        .iter()
        .map(|w| {
            let summary = crate::web::vitals::critical_summary(&w.vitals);
            let alert = VitalsAlert {
                patient_id: w.patient.id.to_string(),
                recorded: view::dt(&w.vitals.recorded_at),
                summary,
            };
            (alert, Who::from(&w.patient))
        })
        .collect();
    Ok(view::ok(&DayPage {
        l: Layout::new("Today", &s).notice(notice(d.done.as_deref())),
        results: DayList::new(results, r.total, "results", r.next_cursor.as_ref()),
        critical_total: r.critical_total,
        drafts: notes(&day.draft_notes, "drafts"),
        cosign: day.cosign_drafts.as_ref().map(|c| notes(c, "cosign")),
        rxs: DayList::new(rxs, rx.total, "rx", rx.next_cursor.as_ref()),
        vitals: DayList::new(vitals, v.total, "vitals", v.next_cursor.as_ref()),
        patient_count: day.patient_count,
    }))
}

pub struct PatientRowView {
    pub href: String,
    pub name: String,
    pub mrn: String,
    pub birth_date: String,
    pub age: String,
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
    /// `05/10/1991` typed: the ISO dates it may mean, as search links.
    date_hints: Vec<(String, String)>,
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
        date_hints: domain::mrn::date_readings(p.q.as_deref().unwrap_or(""))
            .into_iter()
            .map(|d| {
                let href = format!(
                    "/patients?{}",
                    serde_urlencoded::to_string([("q", d.as_str())]).unwrap_or_default()
                );
                (d, href)
            })
            .collect(),
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
                    age: services::patients::age_years(&pv.birth_date)
                        .map(|y| format!("{y} y"))
                        .unwrap_or_default(),
                    sex: pv.sex.to_string(),
                })
                .collect();
            page.next = next_link("/patients", &[("q", &page.q)], res.next_cursor.as_ref());
            view::ok(&page)
        }
        Err(e) if form_level(&e) => {
            page.error = Some(e.detail());
            if let AppError::Validation(errs) = &e {
                if let Some(first) = errs.first() {
                    page.error = Some(format!(
                        "{} {}",
                        view::field_label(&first.field),
                        first.message
                    ));
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
    duplicates: Vec<DuplicateRow>,
}

/// An existing chart the registration may duplicate.
pub struct DuplicateRow {
    pub href: String,
    pub name: String,
    pub mrn: String,
    pub birth_date: String,
    pub reason: &'static str,
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
        duplicates: Vec::new(),
    }
}

/// The charts a `possible_duplicate` answer listed.
fn duplicate_rows(role: Role, e: &AppError) -> Vec<DuplicateRow> {
    let AppError::Conflict {
        code: "possible_duplicate",
        extra: Some(extra),
        ..
    } = e
    else {
        return Vec::new();
    };
    let matches: Vec<DuplicateMatch> = extra
        .get("matches")
        .cloned()
        .and_then(|m| serde_json::from_value(m).ok())
        .unwrap_or_default();
    matches
        .into_iter()
        .map(|m| DuplicateRow {
            href: patient_href(role, &m.id.to_string()),
            name: format!("{}, {}", m.family_name, m.given_name),
            mrn: m.mrn,
            birth_date: m.birth_date,
            reason: if m.matched_on == "phone" {
                "phone"
            } else {
                "name and birth date"
            },
        })
        .collect()
}

pub async fn new_form(s: WebSession) -> Page {
    s.user.require(Action::CreatePatient).or_page(&s)?;
    Ok(view::ok(&form_page(&s, FormState::none(), None, None)))
}

pub async fn create(State(st): State<AppState>, WebForm { s, f }: WebForm) -> Page {
    let input = PatientInput {
        given_name: f.get("givenName"),
        family_name: f.get("familyName"),
        birth_date: f.get("birthDate"),
        sex: f.get("sex"),
        phone: f.opt("phone"),
        email: f.opt("email"),
        address: f.opt("address"),
        confirm_duplicate: f.get("confirmDuplicate") == "1",
    };
    let r = services::patients::create(&st, &s.user, Ok(input)).await;
    let duplicates = r
        .as_ref()
        .err()
        .map(|e| duplicate_rows(s.user.role, e))
        .unwrap_or_default();
    // Staff, who may not read charts, land on the demographics they entered.
    let ok = |p: PatientView| match s.user.role.may(Action::ReadChart) {
        true => format!("/patients/{}?done=created", p.id),
        false => format!("/patients/{}/edit?done=created", p.id),
    };
    let again = async |f, status| {
        let mut page = form_page(&s, f, None, None);
        page.duplicates = duplicates;
        Ok(view::render(status, &page))
    };
    after_form(&s, r, "patient", f.values(), ok, again).await
}

fn values_of(p: &PatientView) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("givenName".into(), p.given_name.clone());
    m.insert("familyName".into(), p.family_name.clone());
    m.insert("birthDate".into(), p.birth_date.clone());
    m.insert("sex".into(), p.sex.to_string());
    m.insert("phone".into(), p.phone.clone().unwrap_or_default());
    m.insert("email".into(), p.email.clone().unwrap_or_default());
    m.insert("address".into(), p.address.clone().unwrap_or_default());
    m.insert("version".into(), p.version.to_string());
    m
}

pub async fn edit_form(
    State(st): State<AppState>,
    s: WebSession,
    WebId(id): WebId,
    Query(d): Query<Done>,
) -> Page {
    let p = crate::web::models::patient(&st, &s, id).await.or_page(&s)?;
    let f = FormState::filled("patient", values_of(&p));
    Ok(view::ok(&form_page(&s, f, Some(&p), d.done.as_deref())))
}

pub async fn update(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
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
    let r = services::patients::update(&st, &s.user, id, Ok(None), Ok(patch)).await;
    let ok = |_| format!("/patients/{id}/edit?done=saved");
    // The form again with what was typed, and the patient's MRN.
    let again = async |f: FormState, status| {
        let p = crate::web::models::patient(&st, &s, id).await.or_page(&s)?;
        let f = f.reload_at(format!("/patients/{id}/edit"));
        Ok(view::render(status, &form_page(&s, f, Some(&p), None)))
    };
    after_form(&s, r, "patient", f.values(), ok, again).await
}
