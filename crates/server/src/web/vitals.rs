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
            let flag = v.flag(m).filter(|f| f.starts_with("critical"))?;
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

/// A small line chart of one measure (oldest left), with the normal range
/// as a band.
pub struct Spark {
    pub label: String,
    pub unit: String,
    pub points: String,
    pub band: Option<(String, String)>,
    pub first: String,
    pub last: String,
    pub min: String,
    pub max: String,
}

const W: f64 = 300.0;
const H: f64 = 60.0;

fn spark(m: Measure, series: &[f64]) -> Option<Spark> {
    if series.len() < 2 {
        return None;
    }
    let (lo, hi) = series
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let range = m.range();
    // The chart spans the values and the normal range, so the band shows.
    let (mut top, mut bottom) = (hi, lo);
    if let Some(r) = range {
        top = top.max(r.high.unwrap_or(hi));
        bottom = bottom.min(r.low.unwrap_or(lo));
    }
    let span = if (top - bottom).abs() < f64::EPSILON {
        1.0
    } else {
        top - bottom
    };
    let y = |v: f64| H - (v - bottom) / span * H;
    let step = W / (series.len() - 1) as f64;
    let points = series
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, y(*v)))
        .collect::<Vec<_>>()
        .join(" ");
    let band = range.map(|r| {
        let (a, b) = (y(r.high.unwrap_or(top)), y(r.low.unwrap_or(bottom)));
        (format!("{a:.1}"), format!("{:.1}", (b - a).max(0.0)))
    });
    Some(Spark {
        label: m.label().into(),
        unit: m.unit().into(),
        points,
        band,
        first: num(series[0]),
        last: num(series[series.len() - 1]),
        min: num(lo),
        max: num(hi),
    })
}

#[derive(Template)]
#[template(path = "vitals.html")]
struct VitalsPage {
    l: Layout,
    p: Banner,
    f: FormState,
    heads: Vec<String>,
    rows: Vec<SheetRow>,
    sparks: Vec<Spark>,
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
            let series: Vec<f64> = list.items.iter().rev().filter_map(|v| v.value(m)).collect();
            spark(m, &series)
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
