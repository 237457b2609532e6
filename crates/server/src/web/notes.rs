//! Clinical notes: list, write, edit, discard, finalize, addenda.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use domain::roles::Action;
use domain::states::NoteStatus;
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::PageQuery;
use crate::services::notes::{self, AddendumInput, FinalizeInput, NoteInput, NotePatch, NoteView};
use crate::state::AppState;
use crate::web::models::{self, next_link, notice, Banner, Done, NoteRow};
use crate::web::session::{Fields, WebForm, WebSession};
use crate::web::view::{self, after_form, dt, opt_dt, FormState, Layout, OrPage, Page, WebId};

#[derive(Template)]
#[template(path = "notes.html")]
struct NotesPage {
    l: Layout,
    p: Banner,
    notes: Vec<NoteRow>,
    next: Option<String>,
    can_note: bool,
}

pub async fn list(
    State(st): State<AppState>,
    s: WebSession,
    WebId(id): WebId,
    Query(d): Query<Done>,
) -> Page {
    let page = PageQuery {
        limit: Some(25),
        cursor: d.cursor.clone(),
    };
    let notes = notes::list(&st, &s.user, id, &page).await.or_page(&s)?;
    let p = models::banner(&st, &s, id).await.or_page(&s)?;
    Ok(view::ok(&NotesPage {
        l: Layout::new("Notes", &s).notice(notice(d.done.as_deref())),
        p,
        notes: notes
            .items
            .iter()
            .map(|n| NoteRow::new(n, s.user.id))
            .collect(),
        next: next_link(
            &format!("/patients/{id}/notes"),
            &[],
            notes.next_cursor.as_ref(),
        ),
        can_note: s.user.role.may(Action::WriteDraftNote),
    }))
}

#[derive(Template)]
#[template(path = "note_new.html")]
struct NewNotePage {
    l: Layout,
    p: Banner,
    f: FormState,
}

async fn new_note_page(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    f: FormState,
    status: StatusCode,
) -> Page {
    let p = models::banner(st, s, id).await.or_page(s)?;
    Ok(view::render(
        status,
        &NewNotePage {
            l: Layout::new("New note", s),
            p,
            f,
        },
    ))
}

pub async fn new_form(State(st): State<AppState>, s: WebSession, WebId(id): WebId) -> Page {
    s.user.require(Action::WriteDraftNote).or_page(&s)?;
    new_note_page(&st, &s, id, FormState::none(), StatusCode::OK).await
}

pub async fn create(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let input = NoteInput {
        title: f.get("title"),
        subjective: f.get("subjective"),
        objective: f.get("objective"),
        assessment: f.get("assessment"),
        plan: f.get("plan"),
    };
    let r = notes::create(&st, &s.user, id, Ok(input)).await;
    let ok = |n: NoteView| format!("/notes/{}?done=note", n.id);
    let again = async |f, status| new_note_page(&st, &s, id, f, status).await;
    after_form(&s, r, "note", f.values(), ok, again).await
}

pub struct NoteDetail {
    pub id: String,
    pub patient_id: String,
    pub title: String,
    pub subjective: String,
    pub objective: String,
    pub assessment: String,
    pub plan: String,
    pub status: String,
    pub draft: bool,
    pub ai: bool,
    pub author: String,
    pub signer: String,
    pub signed_at: String,
    pub created: String,
    pub updated: String,
    pub content_hash: String,
    pub version: i64,
}

pub struct AddendumLine {
    pub author: String,
    pub text: String,
    pub signed_at: String,
}

#[derive(Template)]
#[template(path = "note.html")]
struct NotePage {
    l: Layout,
    p: Banner,
    f: FormState,
    n: NoteDetail,
    addenda: Vec<AddendumLine>,
    can_edit: bool,
    can_finalize: bool,
    can_addendum: bool,
}

/// A clinician's display name, looked up once per page (the signer's and
/// authors' names are printed with the note, so never "you").
async fn user_name(st: &AppState, cache: &mut HashMap<Uuid, String>, id: Uuid) -> String {
    if let Some(n) = cache.get(&id) {
        return n.clone();
    }
    let name = crate::services::users::display_name(st, id).await;
    cache.insert(id, name.clone());
    name
}

fn note_values(n: &NoteView) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("title".into(), n.title.clone());
    m.insert("subjective".into(), n.subjective.clone());
    m.insert("objective".into(), n.objective.clone());
    m.insert("assessment".into(), n.assessment.clone());
    m.insert("plan".into(), n.plan.clone());
    m.insert("version".into(), n.version.to_string());
    m
}

async fn render_note(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    f: Option<FormState>,
    status: StatusCode,
    done: Option<&str>,
) -> Page {
    let n = notes::get(st, &s.user, id).await.or_page(s)?;
    let p = models::banner(st, s, n.patient_id).await.or_page(s)?;
    let me = s.user.id;
    let mut names = HashMap::new();
    let author = user_name(st, &mut names, n.author_id).await;
    let signer = match n.signed_by {
        Some(u) => user_name(st, &mut names, u).await,
        None => String::new(),
    };
    let mut addenda = Vec::new();
    for a in n.addenda.iter().flatten() {
        addenda.push(AddendumLine {
            author: user_name(st, &mut names, a.author_id).await,
            text: a.text.clone(),
            signed_at: dt(&a.signed_at),
        });
    }
    let draft = n.status == NoteStatus::Draft;
    let role = s.user.role;
    let f = f
        .unwrap_or_else(FormState::none)
        .with_defaults("note", note_values(&n));
    let page = NotePage {
        l: Layout::new(n.title.clone(), s).notice(notice(done)),
        p,
        f,
        can_edit: draft && n.author_id == me && role.may(Action::WriteDraftNote),
        can_finalize: draft && role.may(Action::FinalizeNote),
        can_addendum: !draft && role.may(Action::AddAddendum),
        n: NoteDetail {
            id: n.id.to_string(),
            patient_id: n.patient_id.to_string(),
            title: n.title.clone(),
            subjective: n.subjective.clone(),
            objective: n.objective.clone(),
            assessment: n.assessment.clone(),
            plan: n.plan.clone(),
            status: n.status.as_str().to_string(),
            draft,
            ai: n.ai_generated,
            author,
            signer,
            signed_at: opt_dt(&n.signed_at),
            created: dt(&n.created_at),
            updated: dt(&n.updated_at),
            content_hash: n.content_hash.clone().unwrap_or_default(),
            version: n.version,
        },
        addenda,
    };
    Ok(view::render(status, &page))
}

pub async fn show(
    State(st): State<AppState>,
    s: WebSession,
    WebId(id): WebId,
    Query(d): Query<Done>,
) -> Page {
    render_note(&st, &s, id, None, StatusCode::OK, d.done.as_deref()).await
}

/// Redirect on success, re-render the note with the problem otherwise.
async fn finish<T>(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    form: &str,
    values: HashMap<String, String>,
    r: Result<T, AppError>,
    done: &str,
) -> Page {
    let ok = |_| format!("/notes/{id}?done={done}");
    let again = async |f: FormState, status| {
        let f = f.reload_at(format!("/notes/{id}"));
        render_note(st, s, id, Some(f), status, None).await
    };
    after_form(s, r, form, values, ok, again).await
}

/// The editor's fields as a patch at the version the page was drawn with.
fn editor_patch(f: &Fields) -> NotePatch {
    NotePatch {
        title: Some(f.get("title")),
        subjective: Some(f.get("subjective")),
        objective: Some(f.get("objective")),
        assessment: Some(f.get("assessment")),
        plan: Some(f.get("plan")),
        version: rendered_version(f),
    }
}

/// The note version the page showed (a hidden field of each form).
fn rendered_version(f: &Fields) -> Option<i64> {
    f.get("version").trim().parse().ok()
}

pub async fn update(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let r = notes::update(&st, &s.user, id, Ok(None), Ok(editor_patch(&f))).await;
    finish(&st, &s, id, "note", f.values(), r, "note_saved").await
}

/// Sign exactly what the page showed. From the read-only view the form
/// carries the version drawn; from the editor ("Save and sign") it carries
/// the editor's text too, which is saved at the version drawn and then
/// signed at the version that save produced, so a signature never covers
/// anything but what was on screen. Any change in between is a 409 shown
/// next to the form, with the clinician's text kept.
pub async fn finalize(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let from_editor = f.opt("sign").is_some();
    let r = if from_editor {
        match notes::update(&st, &s.user, id, Ok(None), Ok(editor_patch(&f))).await {
            Ok(saved) => {
                let at = FinalizeInput {
                    version: Some(saved.version),
                };
                notes::finalize(&st, &s.user, id, Ok(None), Ok(at)).await
            }
            Err(e) => Err(e),
        }
    } else {
        let at = FinalizeInput {
            version: rendered_version(&f),
        };
        notes::finalize(&st, &s.user, id, Ok(None), Ok(at)).await
    };
    let form = if from_editor { "note" } else { "finalize" };
    finish(&st, &s, id, form, f.values(), r, "finalized").await
}

pub async fn add_addendum(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let input = AddendumInput {
        text: f.get("text"),
    };
    let r = notes::add_addendum(&st, &s.user, id, Ok(input)).await;
    finish(&st, &s, id, "addendum", f.values(), r, "addendum").await
}

pub async fn discard(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let r = notes::discard(&st, &s.user, id).await;
    let ok = |_| match f.get("patientId").parse::<Uuid>() {
        Ok(p) => format!("/patients/{p}/notes?done=discarded"),
        Err(_) => "/?done=discarded".into(),
    };
    let again = async |f, status| render_note(&st, &s, id, Some(f), status, None).await;
    after_form(&s, r, "discard", f.values(), ok, again).await
}
