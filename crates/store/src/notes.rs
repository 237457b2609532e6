//! Clinical notes and their addenda.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{Db, Result, StoreError, Tx};
use crate::{on_read, on_tx};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoteRow {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub author_id: Uuid,
    pub title: String,
    pub subjective: String,
    pub objective: String,
    pub assessment: String,
    pub plan: String,
    #[sqlx(try_from = "String")]
    pub status: domain::states::NoteStatus,
    pub ai_generated: bool,
    pub signed_by: Option<Uuid>,
    pub signed_at: Option<DateTime<Utc>>,
    pub content_hash: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const COLS: &str = "id, patient_id, author_id, title, subjective, objective, assessment, plan, status, ai_generated, \
                    signed_by, signed_at, content_hash, version, created_at, updated_at";

/// The writable parts of a note.
#[derive(Debug, Clone, Default)]
pub struct NoteContent {
    pub title: String,
    pub subjective: String,
    pub objective: String,
    pub assessment: String,
    pub plan: String,
}

pub async fn insert(
    tx: &mut Tx,
    patient: Uuid,
    author: Uuid,
    content: &NoteContent,
    ai_generated: bool,
) -> Result<NoteRow> {
    let now = crate::now();
    let row = NoteRow {
        id: Uuid::now_v7(),
        patient_id: patient,
        author_id: author,
        title: content.title.clone(),
        subjective: content.subjective.clone(),
        objective: content.objective.clone(),
        assessment: content.assessment.clone(),
        plan: content.plan.clone(),
        status: domain::states::NoteStatus::Draft,
        ai_generated,
        signed_by: None,
        signed_at: None,
        content_hash: None,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let sql = "INSERT INTO notes (id, patient_id, author_id, title, subjective, objective, assessment, plan, status, ai_generated, version, created_at, updated_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'draft', $9, 1, $10, $10)";
    on_tx!(tx, c => sqlx::query(sql).bind(row.id).bind(patient).bind(author).bind(&row.title).bind(&row.subjective)
        .bind(&row.objective).bind(&row.assessment).bind(&row.plan).bind(ai_generated).bind(now)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(row)
}

pub async fn get(db: &Db, id: Uuid) -> Result<Option<NoteRow>> {
    let sql = format!("SELECT {COLS} FROM notes WHERE id = $1");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

/// Read a note inside a transaction, for a state change decided on it.
pub async fn get_tx(tx: &mut Tx, id: Uuid) -> Result<Option<NoteRow>> {
    let sql = format!("SELECT {COLS} FROM notes WHERE id = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?)
}

/// Notes of a patient, newest first, keyset-paginated.
pub async fn list_for_patient(
    db: &Db,
    patient: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<NoteRow>> {
    let has: i64 = before.is_some().into();
    let (t, id) = before.unwrap_or((crate::now(), Uuid::nil()));
    let sql = format!(
        "SELECT {COLS} FROM notes WHERE patient_id = $1 AND ($2 = 0 OR created_at < $3 OR (created_at = $3 AND id < $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5"
    );
    Ok(
        on_read!(db, c => sqlx::query_as(&sql).bind(patient).bind(has).bind(t).bind(id).bind(limit).fetch_all(c).await)?,
    )
}

/// A user's own drafts (for their day view).
pub async fn drafts_by_author(db: &Db, author: Uuid, limit: i64) -> Result<Vec<NoteRow>> {
    let sql = format!("SELECT {COLS} FROM notes WHERE author_id = $1 AND status = 'draft' ORDER BY updated_at DESC LIMIT $2");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(author).bind(limit).fetch_all(c).await)?)
}

fn version_conflict(v: i64) -> StoreError {
    StoreError::Conflict(format!(
        "the note was changed by someone else (current version {v})"
    ))
}

/// Replace a draft's content if its version is `expected`.
pub async fn update_draft(
    tx: &mut Tx,
    id: Uuid,
    expected: i64,
    content: &NoteContent,
) -> Result<NoteRow> {
    let sql = "UPDATE notes SET title = $1, subjective = $2, objective = $3, assessment = $4, plan = $5, \
               version = version + 1, updated_at = $6 WHERE id = $7 AND version = $8 AND status = 'draft'";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(&content.title).bind(&content.subjective).bind(&content.objective)
        .bind(&content.assessment).bind(&content.plan).bind(crate::now()).bind(id).bind(expected)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    let row = get_tx(tx, id).await?.ok_or(StoreError::NotFound)?;
    if n == 1 {
        Ok(row)
    } else {
        Err(version_conflict(row.version))
    }
}

/// Sign a draft at exactly version `expected`: status final, signer, time
/// and content hash. The update is conditional on id + version + draft, so
/// a hash computed from the row as read at `expected` (see
/// [`get_for_update`]) always covers the stored content: a concurrent edit
/// either lands first (this is a 409) or finds the note final.
pub async fn finalize(
    tx: &mut Tx,
    id: Uuid,
    expected: i64,
    signer: Uuid,
    content_hash: &str,
) -> Result<NoteRow> {
    let now = crate::now();
    let sql = "UPDATE notes SET status = 'final', signed_by = $1, signed_at = $2, content_hash = $3, version = version + 1, updated_at = $2 \
               WHERE id = $4 AND version = $5 AND status = 'draft'";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(signer).bind(now).bind(content_hash).bind(id).bind(expected)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    let row = get_tx(tx, id).await?.ok_or(StoreError::NotFound)?;
    match n {
        1 => Ok(row),
        _ if row.status != domain::states::NoteStatus::Draft => {
            Err(StoreError::Conflict("the note is no longer a draft".into()))
        }
        _ => Err(version_conflict(row.version)),
    }
}

/// Read a note inside a transaction and lock its row until the transaction
/// ends (PostgreSQL `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` write
/// transaction already excludes every other writer).
pub async fn get_for_update(tx: &mut Tx, id: Uuid) -> Result<Option<NoteRow>> {
    match tx {
        Tx::Sqlite(t) => {
            let c: &mut sqlx::SqliteConnection = &mut *t;
            let sql = format!("SELECT {COLS} FROM notes WHERE id = $1");
            Ok(sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *c)
                .await?)
        }
        Tx::Postgres(t) => {
            let c: &mut sqlx::PgConnection = &mut *t;
            let sql = format!("SELECT {COLS} FROM notes WHERE id = $1 FOR UPDATE");
            Ok(sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *c)
                .await?)
        }
    }
}

/// Delete a draft (never a final note).
pub async fn discard(tx: &mut Tx, id: Uuid) -> Result<()> {
    let n = on_tx!(tx, c => sqlx::query("DELETE FROM notes WHERE id = $1 AND status = 'draft'").bind(id)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict("the note is no longer a draft".into()))
    }
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddendumRow {
    pub id: Uuid,
    pub note_id: Uuid,
    pub author_id: Uuid,
    pub text: String,
    pub signed_at: DateTime<Utc>,
    pub content_hash: String,
}

pub async fn add_addendum(
    tx: &mut Tx,
    note: Uuid,
    author: Uuid,
    text: &str,
    content_hash: &str,
) -> Result<AddendumRow> {
    let row = AddendumRow {
        id: Uuid::now_v7(),
        note_id: note,
        author_id: author,
        text: text.to_string(),
        signed_at: crate::now(),
        content_hash: content_hash.to_string(),
    };
    let sql = "INSERT INTO note_addenda (id, note_id, author_id, text, signed_at, content_hash) VALUES ($1, $2, $3, $4, $5, $6)";
    on_tx!(tx, c => sqlx::query(sql).bind(row.id).bind(note).bind(author).bind(&row.text).bind(row.signed_at).bind(&row.content_hash)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(row)
}

pub async fn addenda(db: &Db, note: Uuid) -> Result<Vec<AddendumRow>> {
    let sql = "SELECT id, note_id, author_id, text, signed_at, content_hash FROM note_addenda WHERE note_id = $1 ORDER BY signed_at, id";
    Ok(on_read!(db, c => sqlx::query_as(sql).bind(note).fetch_all(c).await)?)
}
