//! Who may open which chart: care teams, break-glass (emergency access)
//! and the admin's review queue (break-glass sessions and clinical accounts
//! an admin created). See docs/ACCESS_CONTROL.md.
//!
//! [`require_care`] is THE check: every service that reads or writes a
//! patient's clinical data calls it with the patient's id after the role
//! check. Providers and nurses pass when they share a care team with the
//! patient or hold an unexpired break-glass session for them; otherwise the
//! answer is 403 `outside-care-team` (demographics stay visible through
//! search and `GET /api/patients/{id}`). Other roles are governed by the
//! role table alone (admins and staff have no chart permission; a system
//! export is an admin action of its own).

use chrono::{DateTime, Utc};
use domain::audit::AuditAction;
use domain::roles::Action;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::services::{audit_change, audit_event, Body};
use crate::state::AppState;
use store::care::{AccountReviewRow, BreakGlassRow, Membership, TeamRow};

/// Why a user may open a patient's chart.
#[derive(Debug, Clone)]
pub enum Basis {
    /// They share these care teams.
    Team(Vec<String>),
    /// An unexpired break-glass session.
    BreakGlass(BreakGlassRow),
    /// The role is not bound by care teams (the role table decides).
    NotClinical,
}

/// THE care-team check (see the module comment): 404 when the patient does
/// not exist, 403 `outside-care-team` when a clinician has no basis.
pub async fn require_care(st: &AppState, user: &AuthUser, patient: Uuid) -> Result<Basis> {
    // No write here: callers may hold the (SQLite: single) writer. Expired
    // sessions are simply not counted; [`end_expired`] records their end.
    basis(st, user, patient)
        .await?
        .ok_or(AppError::OutsideCareTeam { patient })
}

/// [`require_care`] as a yes/no, for lists that span patients (FHIR
/// searches): rows of patients the user may not open are left out.
pub async fn may_open(st: &AppState, user: &AuthUser, patient: Uuid) -> Result<bool> {
    match require_care(st, user, patient).await {
        Ok(_) => Ok(true),
        Err(AppError::OutsideCareTeam { .. } | AppError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The basis, `None` when there is none; 404 for an unknown patient.
async fn basis(st: &AppState, user: &AuthUser, patient: Uuid) -> Result<Option<Basis>> {
    if !user.role.is_clinician() {
        return if store::patients::exists(&st.db, patient).await? {
            Ok(Some(Basis::NotClinical))
        } else {
            Err(AppError::NotFound)
        };
    }
    let facts = store::care::facts(&st.db, user.id, patient)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(if !facts.shared_teams.is_empty() {
        Some(Basis::Team(facts.shared_teams))
    } else {
        facts.break_glass.map(Basis::BreakGlass)
    })
}

/// Record the end of every break-glass session past its time box (once
/// each). Called lazily (the access explanation, the review queue, a new
/// break-glass request) and by the alert loop every interval, so an end
/// event follows the expiry within seconds.
pub async fn end_expired(st: &AppState) -> Result<usize> {
    let mut tx = st.db.begin().await?;
    let ended = store::care::end_expired(&mut tx).await?;
    for bg in &ended {
        let mut ev = audit_event(None, AuditAction::BreakGlassEnd, "success");
        ev.actor_id = Some(bg.user_id);
        ev.resource_type = Some("break_glass".into());
        ev.resource_id = Some(bg.id);
        ev.patient_id = Some(bg.patient_id);
        ev.detail = Some(
            serde_json::json!({ "reason": "expired", "expiresAt": bg.expires_at }).to_string(),
        );
        store::audit::append(&mut tx, &[ev]).await?;
    }
    tx.commit().await?;
    Ok(ended.len())
}

/// `GET /api/patients/{id}/access`: why the current user may (or may not)
/// see this patient.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessView {
    pub patient_id: Uuid,
    /// `team`, `break_glass`, `role` (not bound by care teams) or `none`
    pub basis: String,
    /// Whether the chart (clinical data) may be opened
    pub chart: bool,
    /// Demographics are visible to every role that may read patients
    pub demographics: bool,
    /// The care teams shared with the patient (basis `team`)
    pub teams: Vec<String>,
    /// The break-glass session in force (basis `break_glass`)
    pub break_glass: Option<BreakGlassView>,
    /// What the user can do about it
    pub detail: String,
}

pub async fn explain(st: &AppState, user: &AuthUser, patient: Uuid) -> Result<AccessView> {
    user.require(Action::ReadPatient)?;
    end_expired(st).await?;
    let b = basis(st, user, patient).await?;
    let chart = b.is_some() && user.role.may(Action::ReadChart);
    let (basis, teams, bg, detail) = match b {
        Some(Basis::Team(t)) => (
            "team",
            t.clone(),
            None,
            format!("You share the care team(s) {} with this patient.", t.join(", ")),
        ),
        Some(Basis::BreakGlass(s)) => (
            "break_glass",
            vec![],
            Some(BreakGlassView::from(s)),
            "Emergency (break-glass) access is in force until its time box ends; it is audited and reviewed.".into(),
        ),
        Some(Basis::NotClinical) => (
            "role",
            vec![],
            None,
            format!(
                "The {} role is not bound by care teams; the role table decides what it may see.",
                user.role
            ),
        ),
        None => (
            "none",
            vec![],
            None,
            "This patient is in none of your care teams: you see demographics only. In an emergency, use break-glass access.".into(),
        ),
    };
    Ok(AccessView {
        patient_id: patient,
        basis: basis.into(),
        chart,
        demographics: true,
        teams,
        break_glass: bg,
        detail,
    })
}

/// The reason codes a break-glass request may give.
pub const REASON_CODES: &[(&str, &str)] = &[
    ("emergency", "Medical emergency"),
    ("covering", "Covering for a colleague"),
    ("referral", "New referral not yet in a team"),
    ("continuity", "Continuity of care"),
    ("other", "Other (explain)"),
];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassRequest {
    /// One of `emergency`, `covering`, `referral`, `continuity`, `other`
    #[schema(pattern = r"^(emergency|covering|referral|continuity|other)$")]
    pub reason_code: String,
    /// Why, in words (10–500 characters)
    #[schema(min_length = 10, max_length = 500, pattern = r"^\S[\s\S]*\S$")]
    pub reason_text: String,
    /// The user's password, entered again
    #[schema(min_length = 1)]
    pub password: String,
    /// A current authenticator code or an unused recovery code; required
    /// when the account has a second factor
    pub mfa_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassView {
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

impl From<BreakGlassRow> for BreakGlassView {
    fn from(r: BreakGlassRow) -> Self {
        BreakGlassView {
            id: r.id,
            user_id: r.user_id,
            patient_id: r.patient_id,
            reason_code: r.reason_code,
            reason_text: r.reason_text,
            started_at: r.started_at,
            expires_at: r.expires_at,
            ended_at: r.ended_at,
            reviewed_at: r.reviewed_at,
            reviewed_by: r.reviewed_by,
            review_note: r.review_note,
        }
    }
}

/// Start emergency access to a patient outside the user's care teams:
/// reason, password again (and the second factor), a time box; audited
/// (`break_glass.start`), counted (alert `BreakGlassInvoked`) and queued for
/// review.
pub async fn break_glass(
    st: &AppState,
    user: &AuthUser,
    patient: Uuid,
    body: Body<BreakGlassRequest>,
) -> Result<BreakGlassView> {
    user.require(Action::ReadChart)?;
    let req = body?;
    let mut errors = vec![];
    let code = req.reason_code.trim();
    if !REASON_CODES.iter().any(|(c, _)| *c == code) {
        errors.push(domain::account::FieldError::new(
            "reasonCode",
            "must be one of emergency, covering, referral, continuity, other",
        ));
    }
    let text = req.reason_text.trim();
    let n = text.chars().count();
    if !(10..=500).contains(&n) {
        errors.push(domain::account::FieldError::new(
            "reasonText",
            "must be 10 to 500 characters",
        ));
    }
    if req.password.is_empty() {
        errors.push(domain::account::FieldError::new("password", "is required"));
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    // A session that just ran out gets its end event before a new one starts.
    end_expired(st).await?;
    match basis(st, user, patient).await? {
        Some(Basis::Team(_)) => {
            return Err(AppError::conflict(
                "You already share a care team with this patient; break-glass is not needed.",
            ))
        }
        Some(Basis::BreakGlass(_)) => {
            return Err(AppError::conflict(
                "A break-glass session for this patient is already in force.",
            ))
        }
        _ => {}
    }
    // Re-authentication: the password (counted like failed sign-ins).
    let key = format!("break-glass-fail:{}", user.id);
    let rate = st.config.rate_limits.account_failures;
    if !st.limiter.peek(&key, rate).await?.allowed {
        return Err(AppError::RateLimited { retry_after: 60 });
    }
    let row = store::users::by_id(&st.db, user.id)
        .await?
        .ok_or(AppError::Unauthorized("The account is gone."))?;
    let password_ok = req.password.chars().count() <= domain::account::Password::MAX_CHARS
        && st
            .hasher
            .verify(&req.password, Some(&row.password_hash))
            .await?;
    if !password_ok {
        st.limiter.hit(&key, rate).await?;
        return Err(AppError::validation("password", "is not your password"));
    }
    // The second factor, for an account that has one (sign-in's limits).
    crate::services::mfa::step_up(st, &row, req.mfa_code.as_deref(), "break_glass").await?;
    let ttl = chrono::Duration::from_std(st.config.break_glass_duration)
        .unwrap_or(chrono::Duration::hours(1));
    let mut tx = st.db.begin().await?;
    let bg = store::care::start_break_glass(&mut tx, user.id, patient, code, text, ttl).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::BreakGlassStart,
        ("break_glass", bg.id),
        Some(patient),
        Some(serde_json::json!({ "reasonCode": code, "expiresAt": bg.expires_at })),
    )
    .await?;
    tx.commit().await?;
    st.metrics.incr("access.break_glass");
    tracing::warn!(breakGlassId = %bg.id, "break-glass access started");
    Ok(bg.into())
}

/// The review queue: break-glass sessions and flagged accounts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewQueue {
    pub break_glass: Vec<BreakGlassView>,
    pub accounts: Vec<AccountReviewView>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// `true` (default): only what still needs a review; `false`: everything
    pub open: Option<bool>,
}

/// The review queue (admin): unreviewed first, newest first.
pub async fn review_queue(st: &AppState, user: &AuthUser, open: bool) -> Result<ReviewQueue> {
    user.require(Action::ReadAudit)?;
    end_expired(st).await?;
    let (bg, acc) = tokio::try_join!(
        store::care::break_glass_list(&st.db, open, 200),
        store::care::account_reviews(&st.db, open, 200),
    )?;
    Ok(ReviewQueue {
        break_glass: bg.into_iter().map(BreakGlassView::from).collect(),
        accounts: acc.into_iter().map(AccountReviewView::from).collect(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRequest {
    /// What the reviewer concluded (1–1000 characters)
    pub note: String,
}

/// Mark a break-glass session reviewed (admin), with a note.
pub async fn review_break_glass(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<ReviewRequest>,
) -> Result<()> {
    user.require(Action::ReadAudit)?;
    let req = body?;
    let note = req.note.trim();
    if note.is_empty() || note.chars().count() > 1000 {
        return Err(AppError::validation("note", "must be 1 to 1000 characters"));
    }
    let mut tx = st.db.begin().await?;
    if !store::care::review_break_glass(&mut tx, id, user.id, note).await? {
        return Err(AppError::conflict("This session was already reviewed."));
    }
    audit_change(
        &mut tx,
        user,
        AuditAction::BreakGlassReview,
        ("break_glass", id),
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountReviewView {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    #[schema(value_type = String)]
    pub role: domain::roles::Role,
    /// The admin who created it (absent: the command line)
    pub created_by: Option<Uuid>,
    /// `api`, `invite` or `cli`
    pub via: String,
    pub flagged_at: DateTime<Utc>,
    /// Whether a second admin must approve it before it can sign in
    pub approval_required: bool,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub reviewed_by: Option<Uuid>,
}

impl From<AccountReviewRow> for AccountReviewView {
    fn from(r: AccountReviewRow) -> Self {
        AccountReviewView {
            user_id: r.user_id,
            email: r.email,
            name: r.name,
            role: r.role,
            created_by: r.created_by,
            via: r.via,
            flagged_at: r.flagged_at,
            approval_required: r.approval_required,
            approved_at: r.approved_at,
            approved_by: r.approved_by,
            reviewed_at: r.reviewed_at,
            reviewed_by: r.reviewed_by,
        }
    }
}

/// Flag a provider or nurse account an admin created (in the creating
/// transaction): an audit event, an alert (`AdminCreatedClinicalAccount`)
/// and a review-queue entry; with `AMAL_TWO_PERSON_RULE=on` it cannot sign
/// in until a second admin approves it. Other roles are not flagged.
pub async fn flag_new_account(
    tx: &mut store::Tx,
    st: &AppState,
    created_by: Option<Uuid>,
    user: &store::users::UserRow,
    via: &str,
) -> Result<()> {
    flag_account(
        tx,
        &st.metrics,
        st.config.two_person_rule,
        created_by,
        user,
        via,
    )
    .await
}

/// [`flag_new_account`] without the state (the `amal user create` command).
pub async fn flag_account(
    tx: &mut store::Tx,
    metrics: &telemetry::metrics::Metrics,
    two_person_rule: bool,
    created_by: Option<Uuid>,
    user: &store::users::UserRow,
    via: &str,
) -> Result<()> {
    if !user.role.is_clinician() {
        return Ok(());
    }
    store::care::flag_account(tx, user.id, created_by, via, two_person_rule).await?;
    let mut ev = store::audit::AuditEvent::new(AuditAction::AccountFlagged.as_str(), "success");
    ev.actor_id = created_by;
    ev.actor_role = created_by.map(|_| "admin".to_string());
    if let Some(ctx) = crate::context::current() {
        ev.request_id = Some(ctx.request_id.clone());
        ev.client_ip = Some(ctx.client_ip.to_string());
    }
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(user.id);
    ev.detail = Some(
        serde_json::json!({ "role": user.role, "via": via, "approvalRequired": two_person_rule })
            .to_string(),
    );
    store::audit::append(tx, &[ev]).await?;
    metrics.incr("users.clinical_created_by_admin");
    tracing::warn!(targetUserId = %user.id, via, "clinical account created by an administrator");
    Ok(())
}

/// 403 while the account waits for a second admin's approval (sign-in and
/// token refresh ask).
pub async fn require_approved(st: &AppState, user: Uuid) -> Result<()> {
    if store::care::awaiting_approval(&st.db, user).await? {
        Err(AppError::Forbidden(
            "This account waits for a second administrator's approval (two-person rule).".into(),
        ))
    } else {
        Ok(())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountDecision {
    /// `true`: approve the account (the two-person rule); `false`: mark it
    /// reviewed only
    pub approve: bool,
}

/// Review (and approve) a flagged account. Under the two-person rule the
/// approver must be another admin than the one who created it.
pub async fn review_account(
    st: &AppState,
    user: &AuthUser,
    target: Uuid,
    body: Body<AccountDecision>,
) -> Result<AccountReviewView> {
    user.require(Action::ManageUsers)?;
    let req = body?;
    let mut tx = st.db.begin().await?;
    let cur = store::care::account_review_tx(&mut tx, target)
        .await?
        .ok_or(AppError::NotFound)?;
    let own = cur.created_by == Some(user.id) || target == user.id;
    if req.approve && cur.approval_required && cur.approved_at.is_none() && own {
        return Err(AppError::Forbidden(
            "The two-person rule needs a second administrator: the one who created the account may not approve it.".into(),
        ));
    }
    store::care::review_account(&mut tx, target, user.id, req.approve).await?;
    audit_change(
        &mut tx,
        user,
        AuditAction::AccountReview,
        ("user", target),
        None,
        Some(serde_json::json!({ "approve": req.approve })),
    )
    .await?;
    let row = store::care::account_review_tx(&mut tx, target)
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    Ok(row.into())
}

// ---- Care team administration (admin) ----

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamView {
    pub id: Uuid,
    pub name: String,
    /// The default team receives every new patient and every new clinician
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub members: i64,
    pub patients: i64,
}

impl From<TeamRow> for TeamView {
    fn from(t: TeamRow) -> Self {
        TeamView {
            id: t.id,
            name: t.name,
            is_default: t.is_default,
            created_at: t.created_at,
            members: t.members,
            patients: t.patients,
        }
    }
}

pub async fn teams(st: &AppState, user: &AuthUser) -> Result<Vec<TeamView>> {
    user.require(Action::ManageUsers)?;
    Ok(store::care::teams(&st.db)
        .await?
        .into_iter()
        .map(TeamView::from)
        .collect())
}

/// A team with its members and patients.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamDetail {
    pub team: TeamView,
    pub members: Vec<MemberView>,
    pub patients: Vec<MemberView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub id: Uuid,
    /// A user's name, or a patient's "Family, Given"
    pub label: String,
    /// A user's role, or a patient's MRN
    pub detail: String,
}

pub async fn team(st: &AppState, user: &AuthUser, id: Uuid) -> Result<TeamDetail> {
    user.require(Action::ManageUsers)?;
    let t = store::care::team(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let (m, p) = tokio::try_join!(
        store::care::members(&st.db, id, Membership::Member),
        store::care::members(&st.db, id, Membership::Patient),
    )?;
    let view = |r: store::care::MemberRow| MemberView {
        id: r.id,
        label: r.label,
        detail: r.detail,
    };
    Ok(TeamDetail {
        team: t.into(),
        members: m.into_iter().map(view).collect(),
        patients: p.into_iter().map(view).collect(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamInput {
    pub name: Option<String>,
    /// Make this the default team (or stop it being one)
    pub is_default: Option<bool>,
}

fn team_name(name: Option<&str>, required: bool) -> Result<Option<String>> {
    match name.map(str::trim) {
        None if !required => Ok(None),
        Some(n) if !n.is_empty() && n.chars().count() <= 100 => Ok(Some(n.to_string())),
        _ => Err(AppError::validation("name", "must be 1 to 100 characters")),
    }
}

async fn audit_team(
    tx: &mut store::Tx,
    user: &AuthUser,
    id: Uuid,
    what: serde_json::Value,
) -> Result<()> {
    audit_change(
        tx,
        user,
        AuditAction::CareTeamChange,
        ("care_team", id),
        None,
        Some(what),
    )
    .await
}

pub async fn create_team(
    st: &AppState,
    user: &AuthUser,
    body: Body<TeamInput>,
) -> Result<TeamView> {
    user.require(Action::ManageUsers)?;
    let req = body?;
    let name = team_name(req.name.as_deref(), true)?.unwrap_or_default();
    let mut tx = st.db.begin().await?;
    let id = store::care::create_team(&mut tx, &name).await?;
    if req.is_default == Some(true) {
        store::care::update_team(&mut tx, id, None, Some(true)).await?;
    }
    audit_team(&mut tx, user, id, serde_json::json!({ "change": "create" })).await?;
    tx.commit().await?;
    store::care::team(&st.db, id)
        .await?
        .map(TeamView::from)
        .ok_or(AppError::NotFound)
}

pub async fn update_team(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: Body<TeamInput>,
) -> Result<TeamView> {
    user.require(Action::ManageUsers)?;
    let req = body?;
    let name = team_name(req.name.as_deref(), false)?;
    let mut tx = st.db.begin().await?;
    store::care::update_team(&mut tx, id, name.as_deref(), req.is_default).await?;
    audit_team(
        &mut tx,
        user,
        id,
        serde_json::json!({ "change": "update", "isDefault": req.is_default }),
    )
    .await?;
    tx.commit().await?;
    store::care::team(&st.db, id)
        .await?
        .map(TeamView::from)
        .ok_or(AppError::NotFound)
}

pub async fn delete_team(st: &AppState, user: &AuthUser, id: Uuid) -> Result<()> {
    user.require(Action::ManageUsers)?;
    let mut tx = st.db.begin().await?;
    store::care::delete_team(&mut tx, id).await?;
    audit_team(&mut tx, user, id, serde_json::json!({ "change": "delete" })).await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipInput {
    /// `member` (a provider or nurse) or `patient`
    pub kind: String,
    /// The user's or patient's id
    pub id: Uuid,
    /// `true` adds, `false` removes
    pub present: bool,
}

/// Add or remove a clinician or patient; only providers and nurses can be
/// members (other roles are not bound by care teams).
pub async fn set_membership(
    st: &AppState,
    user: &AuthUser,
    team: Uuid,
    body: Body<MembershipInput>,
) -> Result<TeamDetail> {
    user.require(Action::ManageUsers)?;
    let req = body?;
    let kind = match req.kind.as_str() {
        "member" => Membership::Member,
        "patient" => Membership::Patient,
        _ => return Err(AppError::validation("kind", "must be member or patient")),
    };
    store::care::team(&st.db, team)
        .await?
        .ok_or(AppError::NotFound)?;
    match kind {
        Membership::Member => {
            let u = store::users::by_id(&st.db, req.id).await?;
            if !u.is_some_and(|u| u.role.is_clinician()) {
                return Err(AppError::validation(
                    "id",
                    "is not a provider or nurse account",
                ));
            }
        }
        Membership::Patient => {
            if !store::patients::exists(&st.db, req.id).await? {
                return Err(AppError::validation("id", "is not a patient"));
            }
        }
    }
    let mut tx = st.db.begin().await?;
    let changed = store::care::set_membership(&mut tx, team, kind, req.id, req.present).await?;
    if changed {
        let patient = (kind == Membership::Patient).then_some(req.id);
        audit_change(
            &mut tx,
            user,
            AuditAction::CareTeamMembership,
            ("care_team", team),
            patient,
            Some(serde_json::json!({ "kind": req.kind, "id": req.id, "present": req.present })),
        )
        .await?;
    }
    tx.commit().await?;
    self::team(st, user, team).await
}
