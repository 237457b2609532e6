//! Lab results: list, record, view, review, trend.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDateTime, Utc};
use domain::labs::LabFlag;
use domain::roles::Action;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::PageQuery;
use crate::services::labs::{self, LabInput, LabView, ReviewInput};
use crate::state::AppState;
use crate::web::models::{self, next_link, notice, Banner, Done, LabRow};
use crate::web::session::{WebForm, WebSession};
use crate::web::view::{
    self, after_form, dt, flag_class, flag_label, num, FormState, Layout, OrPage, Page, WebId,
};

#[derive(Template)]
#[template(path = "labs.html")]
struct ListPage {
    l: Layout,
    p: Banner,
    f: FormState,
    labs: Vec<LabRow>,
    next: Option<String>,
    can_record: bool,
    now: String,
}

pub(crate) fn now_local() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M").to_string()
}

async fn render_list(
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
    let list = labs::list(st, &s.user, id, None, &page).await.or_page(s)?;
    let p = models::banner(st, s, id).await.or_page(s)?;
    let mut rows: Vec<LabRow> = list.items.iter().map(LabRow::from).collect();
    models::name_reviewers(st, &mut rows).await;
    Ok(view::render(
        status,
        &ListPage {
            l: Layout::new("Lab results", s).notice(notice(done)),
            p,
            f,
            labs: rows,
            next: next_link(
                &format!("/patients/{id}/labs"),
                &[],
                list.next_cursor.as_ref(),
            ),
            can_record: s.user.role.may(Action::RecordLab),
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
    render_list(&st, &s, id, d.cursor, f, ok, d.done.as_deref()).await
}

pub(crate) fn number(field: &'static str, raw: &str) -> Result<Option<f64>, AppError> {
    let t = raw.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.replace(',', ".")
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Some)
        .ok_or_else(|| AppError::validation(field, "must be a number"))
}

/// `datetime-local` input (read as UTC) or RFC 3339.
pub(crate) fn datetime(field: &'static str, raw: &str) -> Result<DateTime<Utc>, AppError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(AppError::validation(field, "is required"));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(n.and_utc());
        }
    }
    Err(AppError::validation(
        field,
        "must be a date and time such as 2024-05-01T08:30",
    ))
}

fn lab_input(f: &crate::web::session::Fields) -> Result<LabInput, AppError> {
    let value = number("value", &f.get("value"));
    let low = number("referenceLow", &f.get("referenceLow"));
    let high = number("referenceHigh", &f.get("referenceHigh"));
    let at = datetime("collectedAt", &f.get("collectedAt"));
    let value = match value {
        Ok(None) => Err(AppError::validation("value", "is required")),
        Ok(Some(v)) => Ok(v),
        Err(e) => Err(e),
    };
    match (value, low, high, at) {
        (Ok(value), Ok(reference_low), Ok(reference_high), Ok(collected_at)) => Ok(LabInput {
            code: f.get("code"),
            name: f.opt("name"),
            value,
            unit: f.get("unit"),
            reference_low,
            reference_high,
            collected_at,
        }),
        (a, b, c, d) => {
            let mut errs = Vec::new();
            for e in [a.err(), b.err(), c.err(), d.err()].into_iter().flatten() {
                if let AppError::Validation(v) = e {
                    errs.extend(v);
                }
            }
            Err(AppError::Validation(errs))
        }
    }
}

pub async fn create(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let mut values = f.values();
    let r = match lab_input(&f) {
        Ok(mut input) => match (f.get("unitChoice").as_str(), labs::unit_question(&input)) {
            ("suggested", Some(unit)) => {
                input.unit = unit.to_string();
                labs::create(&st, &s.user, id, Ok(input)).await
            }
            ("keep", _) | (_, None) => labs::create(&st, &s.user, id, Ok(input)).await,
            // Ask before storing a result the unit leaves unflagged.
            (_, Some(unit)) => {
                values.insert("suggestedUnit".into(), unit.to_string());
                Err(AppError::validation(
                    "unit",
                    format!("does not fit this test's reference table; did you mean {unit}?"),
                ))
            }
        },
        Err(e) => Err(e),
    };
    let ok = |lab: LabView| format!("/labs/{}?done=lab", lab.id);
    let again = async |f, status| render_list(&st, &s, id, None, f, status, None).await;
    after_form(&s, r, "lab", values, ok, again).await
}

/// An AI explanation shown on the lab page.
pub struct Explained {
    pub audience: String,
    pub text: String,
    pub trend: String,
    pub disclaimer: String,
    pub source: String,
}

#[derive(Template)]
#[template(path = "lab.html")]
struct ShowPage {
    l: Layout,
    p: Banner,
    f: FormState,
    lab: LabRow,
    can_review: bool,
    can_ai: bool,
    explained: Option<Explained>,
}

pub async fn render_show(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    f: FormState,
    status: StatusCode,
    done: Option<&str>,
    explained: Option<Explained>,
) -> Page {
    let lab = labs::get(st, &s.user, id).await.or_page(s)?;
    let p = models::banner(st, s, lab.patient_id).await.or_page(s)?;
    let mut rows = [LabRow::from(&lab)];
    models::name_reviewers(st, &mut rows).await;
    let [row] = rows;
    let role = s.user.role;
    Ok(view::render(
        status,
        &ShowPage {
            l: Layout::new(format!("{} result", lab.name), s).notice(notice(done)),
            p,
            f,
            can_review: !row.reviewed && role.may(Action::ReviewLab),
            can_ai: role.may(Action::UseAi),
            lab: row,
            explained,
        },
    ))
}

pub async fn show(
    State(st): State<AppState>,
    s: WebSession,
    WebId(id): WebId,
    Query(d): Query<Done>,
) -> Page {
    let (f, ok) = (FormState::none(), StatusCode::OK);
    render_show(&st, &s, id, f, ok, d.done.as_deref(), None).await
}

pub async fn review(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let input = ReviewInput {
        comment: f.opt("comment"),
        action: f.opt("action"),
    };
    let r = labs::review(&st, &s.user, id, Ok(input)).await;
    let ok = |_| format!("/labs/{id}?done=reviewed");
    let again = async |f, status| render_show(&st, &s, id, f, status, None, None).await;
    after_form(&s, r, "review", f.values(), ok, again).await
}

pub struct TrendLine {
    pub id: String,
    pub collected: String,
    pub value: String,
    pub unit: String,
    pub flag_label: String,
    pub flag_class: String,
    pub critical: bool,
    pub change: String,
}

#[derive(Template)]
#[template(path = "trend.html")]
struct TrendPage {
    l: Layout,
    p: Banner,
    code: String,
    name: String,
    lines: Vec<TrendLine>,
    min: String,
    max: String,
    chart: Option<crate::web::chart::Chart>,
}

#[derive(Debug, Deserialize)]
pub struct TrendParams {
    code: Option<String>,
}

pub async fn trend(
    State(st): State<AppState>,
    s: WebSession,
    WebId(id): WebId,
    Query(q): Query<TrendParams>,
) -> Page {
    let code = q.code.unwrap_or_default();
    let t = labs::trend(&st, &s.user, id, &code).await.or_page(&s)?;
    let p = models::banner(&st, &s, id).await.or_page(&s)?;
    let (lo, hi) = t.points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), pt| {
        (lo.min(pt.value), hi.max(pt.value))
    });
    // The newest result's reference range is the band.
    let range = t
        .points
        .last()
        .map(|p| (p.reference_low, p.reference_high))
        .unwrap_or((None, None));
    let series: Vec<_> = t
        .points
        .iter()
        .map(|p| (p.collected_at, p.value, p.flag))
        .collect();
    let unit = t.points.last().map(|p| p.unit.clone()).unwrap_or_default();
    let chart_name = t.name.clone().unwrap_or_else(|| t.code.clone());
    let chart = crate::web::chart::time_chart(&chart_name, &unit, &series, range);
    let mut prev: Option<f64> = None;
    let mut lines = Vec::new();
    for pt in &t.points {
        let change = match prev {
            Some(before) => {
                let d = pt.value - before;
                if d > 0.0 {
                    format!("↑ +{}", num((d * 1000.0).round() / 1000.0))
                } else if d < 0.0 {
                    format!("↓ {}", num((d * 1000.0).round() / 1000.0))
                } else {
                    "→ no change".into()
                }
            }
            None => "first result".into(),
        };
        prev = Some(pt.value);
        let flag = pt.flag;
        lines.push(TrendLine {
            id: pt.id.to_string(),
            collected: dt(&pt.collected_at),
            value: num(pt.value),
            unit: pt.unit.clone(),
            flag_label: flag_label(flag).into(),
            flag_class: flag_class(flag).into(),
            critical: flag.is_some_and(LabFlag::is_critical),
            change,
        });
    }
    Ok(view::ok(&TrendPage {
        l: Layout::new(format!("Trend {}", t.code), &s),
        p,
        name: t.name.clone().unwrap_or_else(|| t.code.clone()),
        code: t.code,
        min: if lines.is_empty() {
            String::new()
        } else {
            num(lo)
        },
        max: if lines.is_empty() {
            String::new()
        } else {
            num(hi)
        },
        lines,
        chart,
    }))
}
