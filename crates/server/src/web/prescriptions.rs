//! Prescriptions: draft, issue (with the allergy check and its override),
//! cancel.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use domain::roles::Action;
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::PageQuery;
use crate::services::prescriptions::{self, CancelInput, IssueInput, PrescriptionInput};
use crate::state::AppState;
use crate::web::models::{self, next_link, notice, Banner, Done, RxRow};
use crate::web::session::{WebForm, WebSession};
use crate::web::view::{self, after_form, FormState, Layout, OrPage, Page, WebId};

#[derive(Template)]
#[template(path = "prescriptions.html")]
struct ListPage {
    l: Layout,
    p: Banner,
    f: FormState,
    /// "Did you mean …?": each suggestion and the medication text it gives.
    options: Vec<(String, String)>,
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
) -> Page {
    let page = PageQuery {
        limit: Some(25),
        cursor,
    };
    let list = prescriptions::list(st, &s.user, id, None, &page)
        .await
        .or_page(s)?;
    let p = models::banner(st, s, id).await.or_page(s)?;
    Ok(view::render(
        status,
        &ListPage {
            l: Layout::new("Prescriptions", s).notice(notice(done)),
            p,
            options: pairs(&f, "rx", "options", "name", "medication"),
            f,
            rxs: list.items.iter().map(RxRow::from).collect(),
            next: next_link(
                &format!("/patients/{id}/prescriptions"),
                &[],
                list.next_cursor.as_ref(),
            ),
            can_draft: s.user.role.may(Action::DraftPrescription),
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
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let numbers = (
        whole("quantity", &f.get("quantity"), None),
        whole("refills", &f.get("refills"), Some(0)),
    );
    let r = match numbers {
        (Ok(quantity), Ok(refills)) => {
            let input = PrescriptionInput {
                medication: f.get("medication"),
                medication_confirmed: f.checked("medicationConfirmed"),
                dose: f.get("dose"),
                route: f.get("route"),
                frequency: f.get("frequency"),
                quantity,
                refills,
                instructions: f.opt("instructions"),
            };
            prescriptions::create(&st, &s.user, id, Ok(input)).await
        }
        (a, b) => Err(AppError::Validation(
            [a.err(), b.err()]
                .into_iter()
                .flatten()
                .flat_map(|e| match e {
                    AppError::Validation(v) => v,
                    _ => Vec::new(),
                })
                .collect(),
        )),
    };
    let ok = |rx: prescriptions::PrescriptionView| format!("/prescriptions/{}?done=drafted", rx.id);
    let again = async |f, status| {
        let f = unconfirmed_in_words(f);
        render_list(&st, &s, id, None, f, status, None).await
    };
    after_form(&s, r, "rx", f.values(), ok, again).await
}

/// `[{a: …, b: …}]` under `key` of the problem `form` answered, as pairs.
fn pairs(f: &FormState, form: &str, key: &str, a: &str, b: &str) -> Vec<(String, String)> {
    let items = match (f.is(form), &f.extra) {
        (true, Some(extra)) => extra[key].as_array().cloned().unwrap_or_default(),
        _ => Vec::new(),
    };
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    items.iter().map(|v| (text(v, a), text(v, b))).collect()
}

/// One finding of the checks on issue, with the field that overrides it.
struct Warning {
    title: &'static str,
    detail: String,
    /// The form field that overrides it (a checkbox for `uncheckedAcknowledged`).
    field: &'static str,
    label: &'static str,
}

fn warnings(f: &FormState) -> Vec<Warning> {
    pairs(f, "issue", "warnings", "code", "finding")
        .into_iter()
        .filter_map(|(code, finding)| {
            // The API's detail says which JSON member overrides; the page
            // says what to do on it instead.
            let (title, field, label, how) = match code.as_str() {
                "allergy_conflict" => ("Allergy conflict", "overrideReason", "Reason to issue despite the allergy (stored and audited)", "Issue only if the benefit outweighs the risk, with the reason below."),
                "drug_interaction" => ("Drug interaction", "interactionOverrideReason", "Reason to issue despite the interaction (stored and audited)", "Issue only if the benefit outweighs the risk, with the reason below."),
                "duplicate_therapy" => ("Duplicate therapy", "duplicateOverrideReason", "Reason to issue both (stored and audited)", "Cancel the other prescription, or give the reason below if both are intended."),
                "medication_unrecognised" => ("Medication not recognised", "uncheckedAcknowledged", "I issue this medication knowing the allergy, duplicate and interaction checks could not run on it (audited)", "Cancel this draft and draft it again with the correct name, or tick the box below to take responsibility for the unchecked medication."),
                _ => return None,
            };
            Some(Warning { title, detail: format!("{finding} {how}"), field, label })
        })
        .collect()
}

/// The "did you mean …?" refusal in the page's words (the API's detail
/// names `medicationConfirmed`); the suggestions are buttons on the page.
fn unconfirmed_in_words(mut f: FormState) -> FormState {
    if f.code_is("rx", "medication_unconfirmed") {
        let question = f
            .e("rx", "medication")
            .unwrap_or("Check the spelling.")
            .to_string();
        f.detail = Some(format!(
            "The medication is not an exact name in the medication dictionary. {question} Choose the name you mean below, or correct the medication."
        ));
    }
    f
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
    warnings: Vec<Warning>,
    check_status: &'static str,
    ingredients: String,
    /// For the printed prescription: who prescribes and the date.
    prescriber: String,
    printed_on: String,
}

async fn render_show(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    f: FormState,
    status: StatusCode,
    done: Option<&str>,
) -> Page {
    let rx = prescriptions::get(st, &s.user, id).await.or_page(s)?;
    let p = models::banner(st, s, rx.patient_id).await.or_page(s)?;
    let row = RxRow::from(&rx);
    let role = s.user.role;
    let prescriber =
        crate::services::users::display_name(st, rx.issued_by.unwrap_or(rx.created_by)).await;
    let printed_on = rx
        .issued_at
        .unwrap_or_else(store::now)
        .format("%Y-%m-%d")
        .to_string();
    Ok(view::render(
        status,
        &ShowPage {
            l: Layout::new(format!("Prescription: {}", rx.medication), s).notice(notice(done)),
            p,
            warnings: warnings(&f),
            check_status: rx.medication_check.status,
            ingredients: rx.medication_check.ingredients.join(", "),
            prescriber,
            printed_on,
            f,
            can_issue: row.draft && role.may(Action::IssuePrescription),
            can_cancel: (row.draft || row.issued) && role.may(Action::CancelPrescription),
            rx: row,
        },
    ))
}

pub async fn show(
    State(st): State<AppState>,
    s: WebSession,
    WebId(id): WebId,
    Query(d): Query<Done>,
) -> Page {
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

/// Back to the prescription: with the notice, or with the form's problem.
async fn finish<T>(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    form: &str,
    values: std::collections::HashMap<String, String>,
    r: Result<T, AppError>,
    done: &str,
) -> Page {
    let ok = |_| format!("/prescriptions/{id}?done={done}");
    let again = async |f, status| render_show(st, s, id, f, status, None).await;
    after_form(s, r, form, values, ok, again).await
}

pub async fn issue(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let input = IssueInput {
        override_reason: f.opt("overrideReason"),
        interaction_override_reason: f.opt("interactionOverrideReason"),
        duplicate_override_reason: f.opt("duplicateOverrideReason"),
        unchecked_acknowledged: f.checked("uncheckedAcknowledged"),
    };
    let r = prescriptions::issue(&st, &s.user, id, Ok(input)).await;
    finish(&st, &s, id, "issue", f.values(), r, "issued").await
}

pub async fn cancel(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let input = CancelInput {
        reason: f.opt("reason"),
    };
    let r = prescriptions::cancel(&st, &s.user, id, Ok(input)).await;
    finish(&st, &s, id, "cancel", f.values(), r, "cancelled").await
}
