//! Clinical notes: a server-enforced state machine, draft → final, with
//! signed addenda as the only way to correct a final note (SPEC §6).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::clinical::{self, Errors};
use domain::roles::{Action, Role};
use domain::states::{NoteAction, NoteStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::notes::{AddendumRow, NoteContent, NoteRow};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{encode_cursor, expected_version, ApiJson, Later, PageQuery};
use crate::routes::{audit_change, audit_read, check, illegal, require_patient, unknown_state};
use crate::state::AppState;

/// The most characters in one SOAP section.
pub const SECTION_MAX: usize = 50_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoteInput {
    pub title: String,
    #[serde(default)]
    pub subjective: String,
    #[serde(default)]
    pub objective: String,
    #[serde(default)]
    pub assessment: String,
    #[serde(default)]
    pub plan: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotePatch {
    pub title: Option<String>,
    pub subjective: Option<String>,
    pub objective: Option<String>,
    pub assessment: Option<String>,
    pub plan: Option<String>,
    pub version: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddendumView {
    pub id: Uuid,
    pub author_id: Uuid,
    pub text: String,
    pub signed_at: DateTime<Utc>,
    pub content_hash: String,
}

impl From<AddendumRow> for AddendumView {
    fn from(a: AddendumRow) -> Self {
        AddendumView {
            id: a.id,
            author_id: a.author_id,
            text: a.text,
            signed_at: a.signed_at,
            content_hash: a.content_hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoteView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub author_id: Uuid,
    pub title: String,
    pub subjective: String,
    pub objective: String,
    pub assessment: String,
    pub plan: String,
    /// draft or final
    pub status: String,
    pub ai_generated: bool,
    pub signed_by: Option<Uuid>,
    pub signed_at: Option<DateTime<Utc>>,
    /// SHA-256 of the signed content (final notes)
    pub content_hash: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addenda: Option<Vec<AddendumView>>,
}

impl NoteView {
    pub fn new(n: NoteRow, addenda: Option<Vec<AddendumRow>>) -> NoteView {
        NoteView {
            id: n.id,
            patient_id: n.patient_id,
            author_id: n.author_id,
            title: n.title,
            subjective: n.subjective,
            objective: n.objective,
            assessment: n.assessment,
            plan: n.plan,
            status: n.status,
            ai_generated: n.ai_generated,
            signed_by: n.signed_by,
            signed_at: n.signed_at,
            content_hash: n.content_hash,
            version: n.version,
            created_at: n.created_at,
            updated_at: n.updated_at,
            addenda: addenda.map(|a| a.into_iter().map(AddendumView::from).collect()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotePage {
    pub items: Vec<NoteView>,
    pub next_cursor: Option<String>,
}

/// Validate note content.
pub fn parse_content(title: &str, s: &str, o: &str, a: &str, p: &str) -> Result<NoteContent> {
    let mut e = Errors::default();
    let c = NoteContent {
        title: e.take(clinical::text("title", title, 200, true, true)),
        subjective: e.take(clinical::text("subjective", s, SECTION_MAX, false, false)),
        objective: e.take(clinical::text("objective", o, SECTION_MAX, false, false)),
        assessment: e.take(clinical::text("assessment", a, SECTION_MAX, false, false)),
        plan: e.take(clinical::text("plan", p, SECTION_MAX, false, false)),
    };
    check(e)?;
    Ok(c)
}

/// SHA-256 over a canonical JSON array of what was signed.
pub fn content_hash(n: &NoteRow, signer: Uuid) -> String {
    let canonical = serde_json::json!([
        n.id,
        n.patient_id,
        n.author_id,
        signer,
        n.title,
        n.subjective,
        n.objective,
        n.assessment,
        n.plan
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Apply a state-machine step, or a 409 naming the current state.
fn transition(n: &NoteRow, action: NoteAction) -> Result<NoteStatus> {
    let status = NoteStatus::parse(&n.status).ok_or_else(|| unknown_state("note"))?;
    status
        .apply(action)
        .map_err(|e| illegal("note", &n.status, e))
}

/// Create a draft note (also used by the AI assistant with `ai_generated`).
pub async fn create_draft(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    content: &NoteContent,
    ai_generated: bool,
) -> Result<NoteRow> {
    require_patient(st, patient).await?;
    let mut tx = st.db.begin().await?;
    let note = store::notes::insert(&mut tx, patient, user.id, content, ai_generated).await?;
    let detail = ai_generated.then(|| serde_json::json!({ "aiGenerated": true }));
    audit_change(
        &mut tx,
        user,
        "note.create",
        ("note", note.id),
        Some(patient),
        detail,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(noteId = %note.id, patientId = %patient, aiGenerated = ai_generated, "note draft created");
    Ok(note)
}

#[utoipa::path(post, path = "/api/patients/{id}/notes", tag = "notes", security(("bearer" = [])), request_body = NoteInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = NoteView), (status = 401), (status = 403), (status = 404), (status = 422), (status = 429)))]
pub async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    body: Later<ApiJson<NoteInput>>,
) -> Result<(StatusCode, Json<NoteView>)> {
    user.require(Action::WriteDraftNote)?;
    let ApiJson(req) = body.get()?;
    let content = parse_content(
        &req.title,
        &req.subjective,
        &req.objective,
        &req.assessment,
        &req.plan,
    )?;
    let note = create_draft(&st, &user, patient, &content, false).await?;
    Ok((StatusCode::CREATED, Json(NoteView::new(note, None))))
}

#[utoipa::path(get, path = "/api/patients/{id}/notes", tag = "notes", security(("bearer" = [])), params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = NotePage), (status = 401), (status = 403), (status = 404)))]
pub async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Path(patient): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> Result<Json<NotePage>> {
    user.require(Action::ReadNotes)?;
    require_patient(&st, patient).await?;
    let limit = page.limit();
    let before = match page.cursor_text()? {
        None => None,
        Some(t) => {
            let bad = || AppError::validation("cursor", "is not a cursor this server issued");
            let (ts, id) = t.split_once('|').ok_or_else(bad)?;
            let ts = DateTime::parse_from_rfc3339(ts)
                .map_err(|_| bad())?
                .with_timezone(&Utc);
            Some((ts, Uuid::parse_str(id).map_err(|_| bad())?))
        }
    };
    let mut rows = store::notes::list_for_patient(&st.db, patient, before, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|n| {
            encode_cursor(&format!(
                "{}|{}",
                n.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                n.id
            ))
        })
    } else {
        None
    };
    audit_read(&st, &user, "note.list", None, Some(patient)).await?;
    Ok(Json(NotePage {
        items: rows.into_iter().map(|n| NoteView::new(n, None)).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/notes/{id}", tag = "notes", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = NoteView), (status = 401), (status = 403), (status = 404)))]
pub async fn get(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<NoteView>> {
    user.require(Action::ReadNotes)?;
    let note = store::notes::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let addenda = store::notes::addenda(&st.db, id).await?;
    audit_read(
        &st,
        &user,
        "note.read",
        Some(("note", id)),
        Some(note.patient_id),
    )
    .await?;
    Ok(Json(NoteView::new(note, Some(addenda))))
}

#[utoipa::path(patch, path = "/api/notes/{id}", tag = "notes", security(("bearer" = [])), request_body = NotePatch,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The note's current version")),
    responses((status = 200, body = NoteView), (status = 401), (status = 403, description = "Not the author"), (status = 404), (status = 409, description = "Not a draft, or stale version"), (status = 422), (status = 428)))]
pub async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Later<ApiJson<NotePatch>>,
) -> Result<Json<NoteView>> {
    user.require(Action::WriteDraftNote)?;
    let ApiJson(req) = body.get()?;
    let note = store::notes::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    transition(&note, NoteAction::Edit)?;
    if note.author_id != user.id {
        return Err(AppError::Forbidden(
            "Only the author may edit a draft note.".into(),
        ));
    }
    let version = expected_version(&headers, req.version)?;
    let content = parse_content(
        req.title.as_deref().unwrap_or(&note.title),
        req.subjective.as_deref().unwrap_or(&note.subjective),
        req.objective.as_deref().unwrap_or(&note.objective),
        req.assessment.as_deref().unwrap_or(&note.assessment),
        req.plan.as_deref().unwrap_or(&note.plan),
    )?;
    let mut tx = st.db.begin().await?;
    let updated = store::notes::update_draft(&mut tx, id, version, &content).await?;
    audit_change(
        &mut tx,
        &user,
        "note.update",
        ("note", id),
        Some(note.patient_id),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(NoteView::new(updated, None)))
}

#[utoipa::path(post, path = "/api/notes/{id}/finalize", tag = "notes", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = NoteView), (status = 401), (status = 403, description = "Not a provider, or another provider's draft"), (status = 404), (status = 409, description = "Already final")))]
pub async fn finalize(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<NoteView>> {
    user.require(Action::FinalizeNote)?;
    let mut tx = st.db.begin().await?;
    let note = store::notes::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    transition(&note, NoteAction::Finalize)?;
    if note.author_id != user.id {
        // A provider co-signs a nurse's draft, never another provider's.
        let author = store::users::by_id(&st.db, note.author_id).await?;
        let author_role = author.as_ref().and_then(|a| Role::parse(&a.role));
        if author_role != Some(Role::Nurse) {
            return Err(AppError::Forbidden(
                "Only the author may sign this draft; a provider may co-sign a nurse's draft."
                    .into(),
            ));
        }
    }
    let hash = content_hash(&note, user.id);
    let signed = store::notes::finalize(&mut tx, id, user.id, &hash).await?;
    let detail = serde_json::json!({ "cosigned": note.author_id != user.id, "aiGenerated": note.ai_generated });
    audit_change(
        &mut tx,
        &user,
        "note.finalize",
        ("note", id),
        Some(note.patient_id),
        Some(detail),
    )
    .await?;
    tx.commit().await?;
    st.metrics.incr("note.finalized");
    tracing::info!(noteId = %id, "note finalized");
    Ok(Json(NoteView::new(signed, Some(vec![]))))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddendumInput {
    pub text: String,
}

#[utoipa::path(post, path = "/api/notes/{id}/addenda", tag = "notes", security(("bearer" = [])), request_body = AddendumInput, params(("id" = Uuid, Path)),
    responses((status = 201, body = NoteView), (status = 401), (status = 403), (status = 404), (status = 409, description = "The note is a draft: edit it instead"), (status = 422)))]
pub async fn add_addendum(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    body: Later<ApiJson<AddendumInput>>,
) -> Result<(StatusCode, Json<NoteView>)> {
    user.require(Action::AddAddendum)?;
    let ApiJson(req) = body.get()?;
    let text = clinical::text("text", &req.text, SECTION_MAX, true, false)?;
    let mut tx = st.db.begin().await?;
    let note = store::notes::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    transition(&note, NoteAction::AddAddendum)?;
    let canonical = serde_json::json!([id, user.id, text, note.content_hash]);
    let hash = hex::encode(Sha256::digest(canonical.to_string().as_bytes()));
    let addendum = store::notes::add_addendum(&mut tx, id, user.id, &text, &hash).await?;
    audit_change(
        &mut tx,
        &user,
        "note.addendum",
        ("note", id),
        Some(note.patient_id),
        Some(serde_json::json!({ "addendumId": addendum.id })),
    )
    .await?;
    tx.commit().await?;
    let addenda = store::notes::addenda(&st.db, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(NoteView::new(note, Some(addenda))),
    ))
}

#[utoipa::path(delete, path = "/api/notes/{id}", tag = "notes", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204, description = "Draft discarded"), (status = 401), (status = 403, description = "Not the author"), (status = 404), (status = 409, description = "Final notes cannot be discarded")))]
pub async fn discard(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    user.require(Action::WriteDraftNote)?;
    let mut tx = st.db.begin().await?;
    let note = store::notes::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    transition(&note, NoteAction::Discard)?;
    if note.author_id != user.id {
        return Err(AppError::Forbidden(
            "Only the author may discard a draft note.".into(),
        ));
    }
    store::notes::discard(&mut tx, id).await?;
    audit_change(
        &mut tx,
        &user,
        "note.discard",
        ("note", id),
        Some(note.patient_id),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
