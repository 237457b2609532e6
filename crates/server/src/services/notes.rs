//! Clinical notes: a server-enforced state machine, draft → final, with
//! signed addenda as the only way to correct a final note (SPEC §6).

use chrono::{DateTime, Utc};
use domain::audit::AuditAction;
use domain::clinical::{self, Errors};
use domain::notes::{Sealed, Signing};
use domain::roles::Action;
use domain::states::{NoteAction, NoteStatus};
use serde::{Deserialize, Serialize};
use store::notes::{AddendumRow, NoteContent, NoteRow};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::{expected_version, PageQuery};
use crate::services::{
    audit_change, audit_read, check, illegal, page, require_patient, time_cursor, time_key, Body,
};
use crate::state::AppState;

/// The most characters in one SOAP section.
pub const SECTION_MAX: usize = 50_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoteInput {
    #[schema(min_length = 1, max_length = 200, pattern = "amal:required-line")]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 50000, pattern = "amal:text")]
    pub subjective: String,
    #[serde(default)]
    #[schema(max_length = 50000, pattern = "amal:text")]
    pub objective: String,
    #[serde(default)]
    #[schema(max_length = 50000, pattern = "amal:text")]
    pub assessment: String,
    #[serde(default)]
    #[schema(max_length = 50000, pattern = "amal:text")]
    pub plan: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotePatch {
    #[schema(min_length = 1, max_length = 200, pattern = "amal:required-line")]
    pub title: Option<String>,
    #[schema(max_length = 50000, pattern = "amal:text")]
    pub subjective: Option<String>,
    #[schema(max_length = 50000, pattern = "amal:text")]
    pub objective: Option<String>,
    #[schema(max_length = 50000, pattern = "amal:text")]
    pub assessment: Option<String>,
    #[schema(max_length = 50000, pattern = "amal:text")]
    pub plan: Option<String>,
    #[schema(required = true)]
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
    #[schema(value_type = String, example = "draft")]
    pub status: NoteStatus,
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

/// What a signature by `signer` covers.
fn sealed(n: &NoteRow, signer: Uuid) -> Sealed<'_> {
    Sealed {
        note: n.id,
        patient: n.patient_id,
        author: n.author_id,
        signer,
        title: &n.title,
        subjective: &n.subjective,
        objective: &n.objective,
        assessment: &n.assessment,
        plan: &n.plan,
    }
}

/// The content hash a signature by `signer` seals `n` with.
pub fn signed_hash(n: &NoteRow, signer: Uuid) -> String {
    domain::notes::content_hash(&sealed(n, signer))
}

/// Apply a state-machine step, or a 409 naming the current state.
fn transition(n: &NoteRow, action: NoteAction) -> Result<NoteStatus> {
    n.status
        .apply(action)
        .map_err(|e| illegal("note", n.status.as_str(), e))
}

fn refused(e: domain::notes::NoteRefusal) -> AppError {
    AppError::Forbidden(e.to_string())
}

/// Create a draft note (also used by the AI assistant with `ai_generated`).
pub async fn create_draft(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    content: &NoteContent,
    ai_generated: bool,
) -> Result<NoteRow> {
    require_patient(st, user, patient).await?;
    let mut tx = st.db.begin().await?;
    let note = store::notes::insert(&mut tx, patient, user.id, content, ai_generated).await?;
    let detail = ai_generated.then(|| serde_json::json!({ "aiGenerated": true }));
    audit_change(
        &mut tx,
        user,
        AuditAction::NoteCreate,
        ("note", note.id),
        Some(patient),
        detail,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(noteId = %note.id, patientId = %patient, aiGenerated = ai_generated, "note draft created");
    Ok(note)
}

/// A new draft written by the clinician.
pub async fn create(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    body: Body<NoteInput>,
) -> Result<NoteView> {
    user.require(Action::WriteDraftNote)?;
    let req = body?;
    let content = parse_content(
        &req.title,
        &req.subjective,
        &req.objective,
        &req.assessment,
        &req.plan,
    )?;
    let note = create_draft(st, user, patient, &content, false).await?;
    Ok(NoteView::new(note, None))
}

/// A patient's notes, newest first.
pub async fn list(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    page_q: &PageQuery,
) -> Result<NotePage> {
    user.require(Action::ReadNotes)?;
    require_patient(st, user, patient).await?;
    let limit = page_q.limit();
    let before = time_cursor(page_q)?;
    let rows = store::notes::list_for_patient(&st.db, patient, before, limit + 1).await?;
    let (items, next_cursor) = page(
        rows,
        limit,
        |n| time_key(n.created_at, n.id),
        |n| NoteView::new(n, None),
    );
    audit_read(st, user, AuditAction::NoteList, None, Some(patient)).await?;
    Ok(NotePage { items, next_cursor })
}

/// One note with its addenda.
pub async fn get(st: &AppState, user: &AuthUser, id: Uuid) -> Result<NoteView> {
    user.require(Action::ReadNotes)?;
    let note = store::notes::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, note.patient_id).await?;
    let addenda = store::notes::addenda(&st.db, id).await?;
    audit_read(
        st,
        user,
        AuditAction::NoteRead,
        Some(("note", id)),
        Some(note.patient_id),
    )
    .await?;
    Ok(NoteView::new(note, Some(addenda)))
}

/// Edit a draft: its author only, at the version they read (`if_match`,
/// else the body's `version`).
pub async fn update(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    if_match: Result<Option<i64>>,
    body: Body<NotePatch>,
) -> Result<NoteView> {
    user.require(Action::WriteDraftNote)?;
    let req = body?;
    let note = store::notes::get(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, note.patient_id).await?;
    transition(&note, NoteAction::Edit)?;
    domain::notes::may_edit(note.author_id, user.id).map_err(refused)?;
    let version = expected_version(if_match?, req.version)?;
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
        user,
        AuditAction::NoteUpdate,
        ("note", id),
        Some(note.patient_id),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(NoteView::new(updated, None))
}

/// What a signer may send with a finalize: the version they read, when
/// they cannot send `If-Match` (the header wins when both are present).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinalizeInput {
    pub version: Option<i64>,
}

/// Sign a draft: the author, or a provider co-signing a nurse's draft, at
/// exactly the version they read (`if_match`, else the body's `version`;
/// neither → 428, another version → 409). The row is locked and read in
/// the signing transaction, the hash is computed from that stored content,
/// and the update is conditional on id + version + draft, so what is
/// sealed is always what the signer saw.
pub async fn finalize(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    if_match: Result<Option<i64>>,
    body: Body<FinalizeInput>,
) -> Result<NoteView> {
    user.require(Action::FinalizeNote)?;
    let req = body?;
    let mut tx = st.db.begin().await?;
    let note = store::notes::get_for_update(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, note.patient_id).await?;
    transition(&note, NoteAction::Finalize)?;
    let author_role = if note.author_id == user.id {
        Some(user.role)
    } else {
        let author = store::users::by_id(&st.db, note.author_id).await?;
        author.as_ref().map(|a| a.role)
    };
    let signing = domain::notes::signing(note.author_id, author_role, user.id).map_err(refused)?;
    let version = expected_version(if_match?, req.version)?;
    let hash = signed_hash(&note, user.id);
    let signed = store::notes::finalize(&mut tx, id, version, user.id, &hash).await?;
    let detail = serde_json::json!({
        "cosigned": signing == Signing::Cosign,
        "aiGenerated": note.ai_generated,
        "signedVersion": version,
    });
    audit_change(
        &mut tx,
        user,
        AuditAction::NoteFinalize,
        ("note", id),
        Some(note.patient_id),
        Some(detail),
    )
    .await?;
    tx.commit().await?;
    st.metrics.incr("note.finalized");
    tracing::info!(noteId = %id, "note finalized");
    Ok(NoteView::new(signed, Some(vec![])))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddendumInput {
    #[schema(min_length = 1, max_length = 50000, pattern = "amal:required-text")]
    pub text: String,
}

/// Correct or add to a final note with a signed addendum.
pub async fn add_addendum(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<AddendumInput>,
) -> Result<NoteView> {
    user.require(Action::AddAddendum)?;
    let req = body?;
    let text = clinical::text("text", &req.text, SECTION_MAX, true, false)?;
    let mut tx = st.db.begin().await?;
    let note = store::notes::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, note.patient_id).await?;
    transition(&note, NoteAction::AddAddendum)?;
    let hash = domain::notes::addendum_hash(id, user.id, &text, note.content_hash.as_deref());
    let addendum = store::notes::add_addendum(&mut tx, id, user.id, &text, &hash).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::NoteAddendum,
        ("note", id),
        Some(note.patient_id),
        Some(serde_json::json!({ "addendumId": addendum.id })),
    )
    .await?;
    tx.commit().await?;
    let addenda = store::notes::addenda(&st.db, id).await?;
    Ok(NoteView::new(note, Some(addenda)))
}

/// Throw a draft away (its author only).
pub async fn discard(st: &AppState, user: &AuthUser, id: Uuid) -> Result<()> {
    user.require(Action::WriteDraftNote)?;
    let mut tx = st.db.begin().await?;
    let note = store::notes::get_tx(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound)?;
    require_patient(st, user, note.patient_id).await?;
    transition(&note, NoteAction::Discard)?;
    domain::notes::may_discard(note.author_id, user.id).map_err(refused)?;
    store::notes::discard(&mut tx, id).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::NoteDiscard,
        ("note", id),
        Some(note.patient_id),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
