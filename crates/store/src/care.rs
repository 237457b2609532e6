//! Care teams, break-glass sessions and the review of admin-created
//! clinical accounts (migration 0009).
//!
//! A clinician may use the chart of a patient who shares a care team with
//! them, or for whom they hold an unexpired break-glass session. The one
//! query [`facts`] answers both questions and whether the patient exists, so
//! the check costs one indexed read on the audited read path.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{is_unique_violation, Db, Result, StoreError, Tx};
use crate::{on_read, on_tx};

/// The team migration 0009 creates (every clinician and patient at the time).
pub const DEFAULT_TEAM: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001);

/// What the access check needs to know about a user and a patient.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Names of the care teams the user shares with the patient.
    pub shared_teams: Vec<String>,
    /// The user's unexpired break-glass session for the patient, if any.
    pub break_glass: Option<BreakGlassRow>,
}

/// The access facts, or `None` when the patient does not exist.
pub async fn facts(db: &Db, user: Uuid, patient: Uuid) -> Result<Option<Facts>> {
    let now = crate::now();
    let sql = "SELECT t.name FROM patients p \
               LEFT JOIN care_team_patients tp ON tp.patient_id = p.id \
               LEFT JOIN care_team_members m ON m.team_id = tp.team_id AND m.user_id = $2 \
               LEFT JOIN care_teams t ON t.id = m.team_id \
               WHERE p.id = $1";
    let rows: Vec<(Option<String>,)> =
        on_read!(db, c => sqlx::query_as(sql).bind(patient).bind(user).fetch_all(c).await)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut shared_teams: Vec<String> = rows.into_iter().filter_map(|r| r.0).collect();
    shared_teams.sort();
    shared_teams.dedup();
    let break_glass = if shared_teams.is_empty() {
        let sql = format!(
            "SELECT {BG_COLS} FROM break_glass WHERE user_id = $1 AND patient_id = $2 \
             AND expires_at > $3 AND ended_at IS NULL ORDER BY expires_at DESC LIMIT 1"
        );
        on_read!(db, c => sqlx::query_as(&sql).bind(user).bind(patient).bind(now).fetch_optional(c).await)?
    } else {
        None
    };
    Ok(Some(Facts {
        shared_teams,
        break_glass,
    }))
}

/// The patients among `patients` the user shares a team with or holds an
/// unexpired break-glass session for.
pub async fn visible_among(db: &Db, user: Uuid, patients: &[Uuid]) -> Result<Vec<Uuid>> {
    let mut out = Vec::new();
    for p in patients {
        if let Some(f) = facts(db, user, *p).await? {
            if !f.shared_teams.is_empty() || f.break_glass.is_some() {
                out.push(*p);
            }
        }
    }
    Ok(out)
}

/// Put a new patient in the default team and in every team of its creator.
pub async fn place_new_patient(tx: &mut Tx, patient: Uuid, created_by: Uuid) -> Result<()> {
    let sql = "INSERT INTO care_team_patients (team_id, patient_id, added_at) \
               SELECT DISTINCT id, $1, $3 FROM (SELECT id FROM care_teams WHERE is_default \
               UNION SELECT team_id AS id FROM care_team_members WHERE user_id = $2) t WHERE true \
               ON CONFLICT DO NOTHING";
    on_tx!(tx, c => sqlx::query(sql).bind(patient).bind(created_by).bind(crate::now())
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Put a provider or nurse in the default team (new account, new role).
pub async fn place_clinician(tx: &mut Tx, user: Uuid, role: domain::roles::Role) -> Result<()> {
    if !role.is_clinician() {
        return Ok(());
    }
    let sql = "INSERT INTO care_team_members (team_id, user_id, added_at) \
               SELECT id, $1, $2 FROM care_teams WHERE is_default ON CONFLICT DO NOTHING";
    on_tx!(tx, c => sqlx::query(sql).bind(user).bind(crate::now())
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamRow {
    pub id: Uuid,
    pub name: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub members: i64,
    pub patients: i64,
}

const TEAM_COLS: &str = "t.id, t.name, t.is_default, t.created_at, \
    (SELECT count(*) FROM care_team_members m WHERE m.team_id = t.id) AS members, \
    (SELECT count(*) FROM care_team_patients p WHERE p.team_id = t.id) AS patients";

pub async fn teams(db: &Db) -> Result<Vec<TeamRow>> {
    let sql = format!("SELECT {TEAM_COLS} FROM care_teams t ORDER BY t.name");
    Ok(on_read!(db, c => sqlx::query_as(&sql).fetch_all(c).await)?)
}

pub async fn team(db: &Db, id: Uuid) -> Result<Option<TeamRow>> {
    let sql = format!("SELECT {TEAM_COLS} FROM care_teams t WHERE t.id = $1");
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

fn taken(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict("a care team with this name exists".into())
    } else {
        e.into()
    }
}

pub async fn create_team(tx: &mut Tx, name: &str) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let sql =
        "INSERT INTO care_teams (id, name, is_default, created_at) VALUES ($1, $2, FALSE, $3)";
    let res = on_tx!(tx, c => sqlx::query(sql).bind(id).bind(name).bind(crate::now())
        .execute(&mut *c).await.map(|r| r.rows_affected()));
    res.map_err(taken)?;
    Ok(id)
}

/// Rename a team and/or make it (or stop it being) the default team.
pub async fn update_team(
    tx: &mut Tx,
    id: Uuid,
    name: Option<&str>,
    is_default: Option<bool>,
) -> Result<()> {
    if is_default == Some(true) {
        on_tx!(tx, c => sqlx::query("UPDATE care_teams SET is_default = FALSE WHERE is_default AND id <> $1")
            .bind(id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    }
    let sql = "UPDATE care_teams SET name = COALESCE($2, name), is_default = COALESCE($3, is_default) WHERE id = $1";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(id).bind(name).bind(is_default)
        .execute(&mut *c).await.map(|r| r.rows_affected()))
    .map_err(taken)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub async fn delete_team(tx: &mut Tx, id: Uuid) -> Result<()> {
    for sql in [
        "DELETE FROM care_team_members WHERE team_id = $1",
        "DELETE FROM care_team_patients WHERE team_id = $1",
    ] {
        on_tx!(tx, c => sqlx::query(sql).bind(id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    }
    let n = on_tx!(tx, c => sqlx::query("DELETE FROM care_teams WHERE id = $1").bind(id)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Which membership table a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Member,
    Patient,
}

/// Add (true) or remove (false) a user or patient; returns whether a row changed.
pub async fn set_membership(
    tx: &mut Tx,
    team: Uuid,
    kind: Membership,
    who: Uuid,
    present: bool,
) -> Result<bool> {
    let sql = match (kind, present) {
        (Membership::Member, true) => "INSERT INTO care_team_members (team_id, user_id, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        (Membership::Patient, true) => "INSERT INTO care_team_patients (team_id, patient_id, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        (Membership::Member, false) => "DELETE FROM care_team_members WHERE team_id = $1 AND user_id = $2 AND $3 IS NOT NULL",
        (Membership::Patient, false) => "DELETE FROM care_team_patients WHERE team_id = $1 AND patient_id = $2 AND $3 IS NOT NULL",
    };
    let n = on_tx!(tx, c => sqlx::query(sql).bind(team).bind(who).bind(crate::now())
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// A member or patient of a team, with a display label.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub id: Uuid,
    pub label: String,
    pub detail: String,
}

pub async fn members(db: &Db, team: Uuid, kind: Membership) -> Result<Vec<MemberRow>> {
    let sql = match kind {
        Membership::Member => "SELECT u.id, u.name AS label, u.role AS detail FROM care_team_members m \
                               JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 ORDER BY u.name, u.id",
        Membership::Patient => "SELECT p.id, p.family_name || ', ' || p.given_name AS label, p.mrn AS detail \
                                FROM care_team_patients tp JOIN patients p ON p.id = tp.patient_id \
                                WHERE tp.team_id = $1 ORDER BY p.family_name, p.given_name, p.id",
    };
    Ok(on_read!(db, c => sqlx::query_as(sql).bind(team).fetch_all(c).await)?)
}

/// Whether `user` is a member of `team` (break-glass does not count).
pub async fn is_member(db: &Db, team: Uuid, user: Uuid) -> Result<bool> {
    let sql = "SELECT count(*) FROM care_team_members WHERE team_id = $1 AND user_id = $2";
    let n: (i64,) =
        on_read!(db, c => sqlx::query_as(sql).bind(team).bind(user).fetch_one(c).await)?;
    Ok(n.0 > 0)
}

/// The ids of a team's patients in id order (the FHIR Group's members;
/// ids only, no demographics).
pub async fn patient_ids(db: &Db, team: Uuid) -> Result<Vec<Uuid>> {
    let sql = "SELECT patient_id FROM care_team_patients WHERE team_id = $1 ORDER BY patient_id";
    let rows: Vec<(Uuid,)> = on_read!(db, c => sqlx::query_as(sql).bind(team).fetch_all(c).await)?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BreakGlassRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub patient_id: Uuid,
    pub reason_code: String,
    pub reason_text: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub reviewed_by: Option<Uuid>,
    pub review_note: Option<String>,
}

const BG_COLS: &str = "id, user_id, patient_id, reason_code, reason_text, started_at, expires_at, \
                       ended_at, reviewed_at, reviewed_by, review_note";

pub async fn start_break_glass(
    tx: &mut Tx,
    user: Uuid,
    patient: Uuid,
    reason_code: &str,
    reason_text: &str,
    time_box: chrono::TimeDelta,
) -> Result<BreakGlassRow> {
    let id = Uuid::now_v7();
    // One clock reading: the time box is exactly as long as configured.
    let now = crate::now();
    let expires_at = now + time_box;
    let sql = "INSERT INTO break_glass (id, user_id, patient_id, reason_code, reason_text, started_at, expires_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7)";
    on_tx!(tx, c => sqlx::query(sql).bind(id).bind(user).bind(patient).bind(reason_code)
        .bind(reason_text).bind(now).bind(expires_at)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(BreakGlassRow {
        id,
        user_id: user,
        patient_id: patient,
        reason_code: reason_code.to_string(),
        reason_text: reason_text.to_string(),
        started_at: now,
        expires_at,
        ended_at: None,
        reviewed_at: None,
        reviewed_by: None,
        review_note: None,
    })
}

/// Mark every break-glass session past its expiry as ended (each is
/// returned once, so its end event is written exactly once).
pub async fn end_expired(tx: &mut Tx) -> Result<Vec<BreakGlassRow>> {
    let now = crate::now();
    let sql = format!(
        "SELECT {BG_COLS} FROM break_glass WHERE ended_at IS NULL AND expires_at <= $1 ORDER BY expires_at"
    );
    let rows: Vec<BreakGlassRow> =
        on_tx!(tx, c => sqlx::query_as(&sql).bind(now).fetch_all(&mut *c).await)?;
    let mut ended = Vec::with_capacity(rows.len());
    for mut r in rows {
        let n = on_tx!(tx, c => sqlx::query("UPDATE break_glass SET ended_at = expires_at WHERE id = $1 AND ended_at IS NULL")
            .bind(r.id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        if n == 1 {
            r.ended_at = Some(r.expires_at);
            ended.push(r);
        }
    }
    Ok(ended)
}

/// Break-glass sessions, newest first; `unreviewed` keeps the queue's.
pub async fn break_glass_list(db: &Db, unreviewed: bool, limit: i64) -> Result<Vec<BreakGlassRow>> {
    let sql = format!(
        "SELECT {BG_COLS} FROM break_glass WHERE ($1 = FALSE OR reviewed_at IS NULL) \
         ORDER BY started_at DESC, id DESC LIMIT $2"
    );
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(unreviewed).bind(limit).fetch_all(c).await)?)
}

/// Record an admin's review; false when it was already reviewed.
pub async fn review_break_glass(tx: &mut Tx, id: Uuid, by: Uuid, note: &str) -> Result<bool> {
    let exists: Option<(Option<DateTime<Utc>>,)> = on_tx!(tx, c => sqlx::query_as("SELECT reviewed_at FROM break_glass WHERE id = $1")
        .bind(id).fetch_optional(&mut *c).await)?;
    match exists {
        None => Err(StoreError::NotFound),
        Some((Some(_),)) => Ok(false),
        Some((None,)) => {
            on_tx!(tx, c => sqlx::query("UPDATE break_glass SET reviewed_at = $1, reviewed_by = $2, review_note = $3 WHERE id = $4")
                .bind(crate::now()).bind(by).bind(note).bind(id)
                .execute(&mut *c).await.map(|r| r.rows_affected()))?;
            Ok(true)
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountReviewRow {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: domain::roles::Role,
    pub created_by: Option<Uuid>,
    pub via: String,
    pub flagged_at: DateTime<Utc>,
    pub approval_required: bool,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub reviewed_by: Option<Uuid>,
}

const AR_COLS: &str = "r.user_id, u.email, u.name, u.role, r.created_by, r.via, r.flagged_at, \
    r.approval_required, r.approved_at, r.approved_by, r.reviewed_at, r.reviewed_by";

/// Flag an account an admin created or made clinical (`via`: api, invite,
/// cli or role_change); a second flag reopens the review.
pub async fn flag_account(
    tx: &mut Tx,
    user: Uuid,
    created_by: Option<Uuid>,
    via: &str,
    approval_required: bool,
) -> Result<()> {
    let sql = "INSERT INTO account_reviews (user_id, created_by, via, flagged_at, approval_required) \
               VALUES ($1, $2, $3, $4, $5) \
               ON CONFLICT (user_id) DO UPDATE SET created_by = excluded.created_by, via = excluded.via, \
               flagged_at = excluded.flagged_at, approval_required = excluded.approval_required, \
               approved_at = NULL, approved_by = NULL, reviewed_at = NULL, reviewed_by = NULL";
    on_tx!(tx, c => sqlx::query(sql).bind(user).bind(created_by).bind(via).bind(crate::now())
        .bind(approval_required).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn account_reviews(
    db: &Db,
    unreviewed: bool,
    limit: i64,
) -> Result<Vec<AccountReviewRow>> {
    let sql = format!(
        "SELECT {AR_COLS} FROM account_reviews r JOIN users u ON u.id = r.user_id \
         WHERE ($1 = FALSE OR r.reviewed_at IS NULL OR (r.approval_required AND r.approved_at IS NULL)) \
         ORDER BY r.flagged_at DESC, r.user_id DESC LIMIT $2"
    );
    Ok(on_read!(db, c => sqlx::query_as(&sql).bind(unreviewed).bind(limit).fetch_all(c).await)?)
}

pub async fn account_review_tx(tx: &mut Tx, user: Uuid) -> Result<Option<AccountReviewRow>> {
    let sql = format!(
        "SELECT {AR_COLS} FROM account_reviews r JOIN users u ON u.id = r.user_id WHERE r.user_id = $1"
    );
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(user).fetch_optional(&mut *c).await)?)
}

/// Whether the account still waits for a second admin's approval.
pub async fn awaiting_approval(db: &Db, user: Uuid) -> Result<bool> {
    let sql = "SELECT count(*) FROM account_reviews WHERE user_id = $1 AND approval_required AND approved_at IS NULL";
    let n: (i64,) = on_read!(db, c => sqlx::query_as(sql).bind(user).fetch_one(c).await)?;
    Ok(n.0 > 0)
}

/// Record an admin's review of a flagged account, approving it when `approve`.
pub async fn review_account(tx: &mut Tx, user: Uuid, by: Uuid, approve: bool) -> Result<()> {
    let now = crate::now();
    let sql = "UPDATE account_reviews SET reviewed_at = COALESCE(reviewed_at, $1), reviewed_by = COALESCE(reviewed_by, $2), \
               approved_at = CASE WHEN $3 THEN COALESCE(approved_at, $1) ELSE approved_at END, \
               approved_by = CASE WHEN $3 THEN COALESCE(approved_by, $2) ELSE approved_by END \
               WHERE user_id = $4";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(now).bind(by).bind(approve).bind(user)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Keep only the rows whose patient the user may see (the day view and
/// worklists): shared team or unexpired break-glass.
pub const VISIBLE_SQL: &str =
    "(EXISTS (SELECT 1 FROM care_team_patients tp JOIN care_team_members m \
    ON m.team_id = tp.team_id WHERE tp.patient_id = {p} AND m.user_id = {u}) \
    OR EXISTS (SELECT 1 FROM break_glass b WHERE b.patient_id = {p} AND b.user_id = {u} \
    AND b.ended_at IS NULL AND b.expires_at > {now}))";
