//! AI assistance in the chart: "Draft a note with AI" and "Explain this
//! result", through the AI service (refusals and outages shown as the API
//! words them).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;

use crate::error::AppError;
use crate::services;
use crate::services::ai::{ExplainRequest, GenerateNoteRequest};
use crate::state::AppState;
use crate::web::clinical::render_chart;
use crate::web::labs::{render_show, Explained};
use crate::web::models::{self, Banner};
use crate::web::session::WebForm;
use crate::web::view::{self, form_problem, num, FormState, Layout, OrPage, Page, WebId};

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
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let req = GenerateNoteRequest {
        patient_id: id,
        input: f.get("input"),
        note_type: f.opt("noteType"),
        save: f.checked("save"),
    };
    let answer = match services::ai::generate_note(&st, &s.user, Ok(req)).await {
        Ok(a) => a,
        Err(e) => {
            let again = async |f, status| render_chart(&st, &s, id, f, status, None).await;
            return form_problem(&s, e, "ai", f.values(), again).await;
        }
    };
    if let Some(note) = answer.note.id {
        return Ok(view::redirect(&format!("/notes/{note}?done=ai_saved")));
    }
    let p = models::banner(&st, &s, id).await.or_page(&s)?;
    let n = answer.note;
    Ok(view::ok(&DraftPage {
        l: Layout::new("AI draft", &s),
        p,
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
    }))
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
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
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
            let (none, ok) = (FormState::none(), StatusCode::OK);
            render_show(&st, &s, id, none, ok, None, Some(explained)).await
        }
        Err(e) => {
            let again = async |f, status| render_show(&st, &s, id, f, status, None, None).await;
            form_problem(&s, e, "explain", f.values(), again).await
        }
    }
}
