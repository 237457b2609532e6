//! Vital signs: the flowsheet, simple trends (inline SVG drawn here, no
//! script) and the form that records a set.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use domain::roles::Action;
use domain::vitals::Measure;
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::PageQuery;
use crate::services::vitals::{self, VitalsInput, VitalsView};
use crate::state::AppState;
use crate::web::chart::{time_chart, Chart};
use crate::web::labs::{datetime, now_local, number};
use crate::web::models::{self, next_link, notice, Banner, Done};
use crate::web::session::{Fields, WebForm, WebSession};
use crate::web::view::{
    self, after_form, flag_class, flag_label, num, FormState, Layout, OrPage, Page, WebId,
};

/// One measurement of a set, formatted.
#[derive(Debug, Clone)]
pub struct VitalsLine {
    pub label: String,
    pub value: String,
    pub unit: String,
    pub flag_label: String,
    pub flag_class: String,
}

/// The measurements present in `v`, in flowsheet order.
pub fn lines(v: &VitalsView) -> Vec<VitalsLine> {
    Measure::ALL
        .into_iter()
        .filter_map(|m| {
            let value = v.value(m)?;
            let flag = v.flag(m);
            Some(VitalsLine {
                label: m.label().into(),
                value: num(value),
                unit: m.unit().into(),
                flag_label: flag.map(|f| flag_label(Some(f))).unwrap_or("").into(),
                flag_class: flag_class(flag).into(),
            })
        })
        .collect()
}

/// "Systolic BP 182 mmHg CRITICAL HIGH" for each critical measurement.
pub fn critical_summary(v: &VitalsView) -> String {
    Measure::ALL
        .into_iter()
        .filter_map(|m| {
            let value = v.value(m)?;
            let flag = v.flag(m).filter(|f| f.is_critical())?;
            Some(format!(
                "{} {} {} {}",
                m.label(),
                num(value),
                m.unit(),
                flag_label(Some(flag))
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A cell of the flowsheet.
pub struct Cell {
    pub text: String,
    pub class: String,
}

pub struct SheetRow {
    pub recorded: String,
    pub cells: Vec<Cell>,
}

#[derive(Template)]
#[template(path = "vitals.html")]
struct VitalsPage {
    l: Layout,
    p: Banner,
    f: FormState,
    heads: Vec<String>,
    rows: Vec<SheetRow>,
    sparks: Vec<Chart>,
    next: Option<String>,
    can_record: bool,
    now: String,
}

async fn render(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    cursor: Option<String>,
    f: FormState,
    status: StatusCode,
    done: Option<&str>,
) -> Page {
    let page = PageQuery {
        limit: Some(50),
        cursor,
    };
    let list = vitals::list(st, &s.user, id, &page).await.or_page(s)?;
    let p = models::banner(st, s, id).await.or_page(s)?;
    let rows = list
        .items
        .iter()
        .map(|v| SheetRow {
            recorded: view::dt(&v.recorded_at),
            cells: Measure::ALL
                .into_iter()
                .map(|m| match v.value(m) {
                    Some(x) => Cell {
                        text: num(x),
                        class: flag_class(v.flag(m)).into(),
                    },
                    None => Cell {
                        text: "—".into(),
                        class: "muted".into(),
                    },
                })
                .collect(),
        })
        .collect();
    let sparks = Measure::ALL
        .into_iter()
        .filter_map(|m| {
            let series: Vec<_> = list
                .items
                .iter()
                .filter_map(|v| Some((v.recorded_at, v.value(m)?, v.flag(m))))
                .collect();
            let range = m.range().map(|r| (r.low, r.high)).unwrap_or((None, None));
            time_chart(m.label(), m.unit(), &series, range)
        })
        .collect();
    Ok(view::render(
        status,
        &VitalsPage {
            l: Layout::new("Vital signs", s).notice(notice(done)),
            p,
            f,
            heads: Measure::ALL
                .into_iter()
                .map(|m| format!("{} ({})", m.label(), m.unit()))
                .collect(),
            rows,
            sparks,
            next: next_link(
                &format!("/patients/{id}/vitals"),
                &[],
                list.next_cursor.as_ref(),
            ),
            can_record: s.user.role.may(Action::RecordVitals),
            now: now_local(),
        },
    ))
}

pub async fn list(
    State(st): State<AppState>,
    s: WebSession,
    WebId(id): WebId,
    Query(d): Query<Done>,
) -> Page {
    let (f, ok) = (FormState::none(), StatusCode::OK);
    render(&st, &s, id, d.cursor, f, ok, d.done.as_deref()).await
}

/// The form's fields as the API's input; every unreadable number reported.
fn input(f: &Fields) -> Result<VitalsInput, AppError> {
    let mut errs = Vec::new();
    let mut read = |field: &'static str| match number(field, &f.get(field)) {
        Ok(v) => v,
        Err(AppError::Validation(e)) => {
            errs.extend(e);
            None
        }
        Err(_) => None,
    };
    let mut v = VitalsInput {
        systolic: read("systolic"),
        diastolic: read("diastolic"),
        heart_rate: read("heartRate"),
        respiratory_rate: read("respiratoryRate"),
        temperature: read("temperature"),
        spo2: read("spo2"),
        weight_kg: read("weightKg"),
        height_cm: read("heightCm"),
        recorded_at: None,
    };
    let at = f.get("recordedAt");
    if !at.trim().is_empty() {
        match datetime("recordedAt", &at) {
            Ok(t) => v.recorded_at = Some(t),
            Err(AppError::Validation(e)) => errs.extend(e),
            Err(_) => {}
        }
    }
    if errs.is_empty() {
        Ok(v)
    } else {
        Err(AppError::Validation(errs))
    }
}

pub async fn create(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let r = match input(&f) {
        Ok(v) => vitals::create(&st, &s.user, id, Ok(v)).await,
        Err(e) => Err(e),
    };
    let ok = |_| format!("/patients/{id}/vitals?done=vitals");
    let again = async |f, status| render(&st, &s, id, None, f, status, None).await;
    after_form(&s, r, "vitals", f.values(), ok, again).await
}
