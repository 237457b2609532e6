//! AI assistance in the chart: "Draft a note with AI" and "Explain this
//! result", through the AI service (refusals and outages shown as the API
//! words them).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::error::AppError;
use crate::services;
use crate::services::ai::{ExplainRequest, GenerateNoteRequest};
use crate::state::AppState;
use crate::web::clinical::render_chart;
use crate::web::form_level;
use crate::web::labs::{render_show, Explained};
use crate::web::models::{self, Banner};
use crate::web::session::WebForm;
use crate::web::view::{self, num, FormState, Layout};

#[derive(Template)]
#[template(path = "ai_draft.html")]
struct DraftPage {
    l: Layout,
    p: Banner,
    input: String,
    note_type: String,
    title: String,
    subjective: String,
    objective: String,
    assessment: String,
    plan: String,
    disclaimer: String,
    source: String,
    can_save: bool,
}

/// `POST /patients/{id}/ai/draft`: show the SOAP draft, or save it as an
/// AI-generated draft note when "save" is ticked.
pub async fn draft_note(
    State(st): State<AppState>,
    Path(id): Path<String>,
    WebForm { s, f }: WebForm,
) -> Response {
    let id = match view::uuid(&id) {
        Ok(id) => id,
        Err(e) => return view::error_page(Some(&s), &e),
    };
    let req = GenerateNoteRequest {
        patient_id: id,
        input: f.get("input"),
        note_type: f.opt("noteType"),
        save: f.checked("save"),
    };
    let answer = match services::ai::generate_note(&st, &s.user, Ok(req)).await {
        Ok(a) => a,
        Err(e) if form_level(&e) => {
            return render_chart(
                &st,
                &s,
                id,
                FormState::failed("ai", f.values(), &e),
                e.status(),
                None,
            )
            .await
        }
        Err(e) => return view::error_page(Some(&s), &e),
    };
    if let Some(note) = answer.note.id {
        return view::redirect(&format!("/notes/{note}?done=ai_saved"));
    }
    let p = match models::patient(&st, &s, id).await {
        Ok(p) => p,
        Err(e) => return view::error_page(Some(&s), &e),
    };
    let n = answer.note;
    view::ok(&DraftPage {
        l: Layout::new("AI draft", &s),
        p: Banner::from(&p),
        input: f.get("input"),
        note_type: f.get("noteType"),
        title: n.title,
        subjective: n.subjective,
        objective: n.objective,
        assessment: n.assessment,
        plan: n.plan,
        disclaimer: answer.disclaimer,
        source: format!("{} / {}", answer.provider, answer.model),
        can_save: s.user.role.may(domain::roles::Action::WriteDraftNote),
    })
}

fn trend_text(t: &ai::Trend) -> String {
    let dir = match t.direction.as_str() {
        "first_result" => return "This is the first result of this test.".into(),
        "rising" => "Rising",
        "falling" => "Falling",
        "stable" => "Stable",
        other => other,
    };
    let mut s = format!("{dir} over {} results", t.points);
    if let (Some(prev), Some(change)) = (t.previous, t.change) {
        let sign = if change > 0.0 { "+" } else { "" };
        s.push_str(&format!(
            " (previous {}, change {sign}{})",
            num(prev),
            num(change)
        ));
    }
    s.push('.');
    s
}

/// `POST /labs/{id}/explain`: a plain explanation for a patient or a
/// clinician, shown on the lab page.
pub async fn explain(
    State(st): State<AppState>,
    Path(id): Path<String>,
    WebForm { s, f }: WebForm,
) -> Response {
    let id = match view::uuid(&id) {
        Ok(id) => id,
        Err(e) => return view::error_page(Some(&s), &e),
    };
    let audience = match f.get("audience").as_str() {
        "patient" => Ok(ai::Audience::Patient),
        "clinician" => Ok(ai::Audience::Clinician),
        _ => Err(AppError::validation(
            "audience",
            "must be patient or clinician",
        )),
    };
    let r = match audience {
        Ok(audience) => {
            let req = ExplainRequest {
                lab_id: id,
                audience,
            };
            services::ai::explain(&st, &s.user, Ok(req)).await
        }
        Err(e) => Err(e),
    };
    match r {
        Ok(x) => {
            let explained = Explained {
                audience: f.get("audience"),
                text: x.explanation,
                trend: trend_text(&x.trend),
                disclaimer: x.disclaimer,
                source: format!("{} / {}", x.provider, x.model),
            };
            render_show(
                &st,
                &s,
                id,
                FormState::none(),
                StatusCode::OK,
                None,
                Some(explained),
            )
            .await
        }
        Err(e) if form_level(&e) => {
            render_show(
                &st,
                &s,
                id,
                FormState::failed("explain", f.values(), &e),
                e.status(),
                None,
                None,
            )
            .await
        }
        Err(e) => view::error_page(Some(&s), &e),
    }
}
