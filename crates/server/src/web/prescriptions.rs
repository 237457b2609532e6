//! Prescriptions: draft, issue (with the allergy check and its override),
//! cancel.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::roles::Action;
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::PageQuery;
use crate::services::prescriptions::{self, CancelInput, IssueInput, PrescriptionInput};
use crate::state::AppState;
use crate::web::form_level;
use crate::web::models::{self, next_link, notice, Banner, Done, RxRow};
use crate::web::session::{WebForm, WebSession};
use crate::web::view::{self, FormState, Layout};

#[derive(Template)]
#[template(path = "prescriptions.html")]
struct ListPage {
    l: Layout,
    p: Banner,
    f: FormState,
    rxs: Vec<RxRow>,
    next: Option<String>,
    can_draft: bool,
}

async fn render_list(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    cursor: Option<String>,
    f: FormState,
    status: StatusCode,
    done: Option<&str>,
) -> Response {
    let page = PageQuery {
        limit: Some(25),
        cursor,
    };
    let list = match prescriptions::list(st, &s.user, id, None, &page).await {
        Ok(l) => l,
        Err(e) => return view::error_page(Some(s), &e),
    };
    let p = match models::patient(st, s, id).await {
        Ok(p) => p,
        Err(e) => return view::error_page(Some(s), &e),
    };
    view::render(
        status,
        &ListPage {
            l: Layout::new("Prescriptions", s).notice(notice(done)),
            p: Banner::from(&p),
            f,
            rxs: list.items.iter().map(RxRow::from).collect(),
            next: next_link(
                &format!("/patients/{id}/prescriptions"),
                &[],
                list.next_cursor.as_ref(),
            ),
            can_draft: s.user.role.may(Action::DraftPrescription),
        },
    )
}

pub async fn list(
    State(st): State<AppState>,
    s: WebSession,
    Path(id): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    match view::uuid(&id) {
        Ok(id) => {
            render_list(
                &st,
                &s,
                id,
                d.cursor.clone(),
                FormState::none(),
                StatusCode::OK,
                d.done.as_deref(),
            )
            .await
        }
        Err(e) => view::error_page(Some(&s), &e),
    }
}

/// A whole number from a form field, or a field error naming it.
fn whole(field: &'static str, raw: &str, default: Option<i64>) -> Result<i64, AppError> {
    let t = raw.trim();
    if t.is_empty() {
        if let Some(d) = default {
            return Ok(d);
        }
        return Err(AppError::validation(field, "is required"));
    }
    t.parse()
        .map_err(|_| AppError::validation(field, "must be a whole number"))
}

pub async fn create(
    State(st): State<AppState>,
    Path(id): Path<String>,
    WebForm { s, f }: WebForm,
) -> Response {
    let id = match view::uuid(&id) {
        Ok(id) => id,
        Err(e) => return view::error_page(Some(&s), &e),
    };
    let numbers = (
        whole("quantity", &f.get("quantity"), None),
        whole("refills", &f.get("refills"), Some(0)),
    );
    let r = match numbers {
        (Ok(quantity), Ok(refills)) => {
            let input = PrescriptionInput {
                medication: f.get("medication"),
                dose: f.get("dose"),
                route: f.get("route"),
                frequency: f.get("frequency"),
                quantity,
                refills,
                instructions: f.opt("instructions"),
            };
            prescriptions::create(&st, &s.user, id, Ok(input)).await
        }
        (a, b) => {
            let mut errs = Vec::new();
            for e in [a.err(), b.err()].into_iter().flatten() {
                if let AppError::Validation(v) = e {
                    errs.extend(v);
                }
            }
            Err(AppError::Validation(errs))
        }
    };
    match r {
        Ok(rx) => view::redirect(&format!("/prescriptions/{}?done=drafted", rx.id)),
        Err(e) if form_level(&e) => {
            render_list(
                &st,
                &s,
                id,
                None,
                FormState::failed("rx", f.values(), &e),
                e.status(),
                None,
            )
            .await
        }
        Err(e) => view::error_page(Some(&s), &e),
    }
}

#[derive(Template)]
#[template(path = "prescription.html")]
struct ShowPage {
    l: Layout,
    p: Banner,
    f: FormState,
    rx: RxRow,
    can_issue: bool,
    can_cancel: bool,
    allergy_conflict: bool,
}

async fn render_show(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    f: FormState,
    status: StatusCode,
    done: Option<&str>,
) -> Response {
    let rx = match prescriptions::get(st, &s.user, id).await {
        Ok(rx) => rx,
        Err(e) => return view::error_page(Some(s), &e),
    };
    let p = match models::patient(st, s, rx.patient_id).await {
        Ok(p) => p,
        Err(e) => return view::error_page(Some(s), &e),
    };
    let row = RxRow::from(&rx);
    let role = s.user.role;
    view::render(
        status,
        &ShowPage {
            l: Layout::new(format!("Prescription: {}", rx.medication), s).notice(notice(done)),
            p: Banner::from(&p),
            allergy_conflict: f.code_is("issue", "allergy_conflict"),
            f,
            can_issue: row.draft && role.may(Action::IssuePrescription),
            can_cancel: (row.draft || row.issued) && role.may(Action::CancelPrescription),
            rx: row,
        },
    )
}

pub async fn show(
    State(st): State<AppState>,
    s: WebSession,
    Path(id): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    match view::uuid(&id) {
        Ok(id) => {
            render_show(
                &st,
                &s,
                id,
                FormState::none(),
                StatusCode::OK,
                d.done.as_deref(),
            )
            .await
        }
        Err(e) => view::error_page(Some(&s), &e),
    }
}

async fn finish<T>(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    form: &str,
    values: std::collections::HashMap<String, String>,
    r: Result<T, AppError>,
    done: &str,
) -> Response {
    match r {
        Ok(_) => view::redirect(&format!("/prescriptions/{id}?done={done}")),
        Err(e) if form_level(&e) => {
            render_show(
                st,
                s,
                id,
                FormState::failed(form, values, &e),
                e.status(),
                None,
            )
            .await
        }
        Err(e) => view::error_page(Some(s), &e),
    }
}

pub async fn issue(
    State(st): State<AppState>,
    Path(id): Path<String>,
    WebForm { s, f }: WebForm,
) -> Response {
    let id = match view::uuid(&id) {
        Ok(id) => id,
        Err(e) => return view::error_page(Some(&s), &e),
    };
    let input = IssueInput {
        override_reason: f.opt("overrideReason"),
    };
    let r = prescriptions::issue(&st, &s.user, id, Ok(input)).await;
    finish(&st, &s, id, "issue", f.values(), r, "issued").await
}

pub async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
    WebForm { s, f }: WebForm,
) -> Response {
    let id = match view::uuid(&id) {
        Ok(id) => id,
        Err(e) => return view::error_page(Some(&s), &e),
    };
    let input = CancelInput {
        reason: f.opt("reason"),
    };
    let r = prescriptions::cancel(&st, &s.user, id, Ok(input)).await;
    finish(&st, &s, id, "cancel", f.values(), r, "cancelled").await
}
