//! Care teams, break-glass and the access review queue in the web UI; the
//! rules are in [`crate::services::access`].

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use uuid::Uuid;

use crate::error::AppError;
use crate::services;
use crate::services::access::{
    AccountDecision, BreakGlassRequest, MembershipInput, ReviewQuery, ReviewRequest, TeamInput,
};
use crate::state::AppState;
use crate::web::session::{WebForm, WebSession};
use crate::web::view::{self, after_form, dt, FormState, Layout, OrPage, Page, WebId};

#[derive(Template)]
#[template(path = "access_outside.html")]
struct OutsidePage {
    l: Layout,
    f: FormState,
    id: String,
    name: String,
    mrn: String,
    birth_date: String,
    sex: String,
    detail: String,
    minutes: u64,
    reasons: Vec<(&'static str, &'static str)>,
    /// The user has a second factor: the form asks for a code too.
    mfa: bool,
}

/// The page a clinician sees for a patient outside their care teams:
/// demographics and the break-glass form (instead of the chart).
pub async fn outside(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    f: FormState,
    status: StatusCode,
) -> Page {
    let p = services::patients::get(st, &s.user, id).await.or_page(s)?;
    let a = services::access::explain(st, &s.user, id)
        .await
        .or_page(s)?;
    let name = format!("{}, {}", p.family_name, p.given_name);
    Ok(view::render(
        status,
        &OutsidePage {
            l: Layout::new(name.clone(), s),
            f,
            id: id.to_string(),
            name,
            mrn: p.mrn,
            birth_date: p.birth_date,
            sex: p.sex.to_string(),
            detail: a.detail,
            minutes: st.config.break_glass_duration.as_secs().div_ceil(60),
            reasons: services::access::REASON_CODES.to_vec(),
            mfa: services::mfa::enrolled(st, s.user.id).await.or_page(s)?,
        },
    ))
}

pub async fn break_glass(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let req = BreakGlassRequest {
        reason_code: f.get("reasonCode"),
        reason_text: f.get("reasonText"),
        password: f.get("password"),
        mfa_code: f.opt("mfaCode"),
    };
    let r = services::access::break_glass(&st, &s.user, id, Ok(req)).await;
    let ok = |_| format!("/patients/{id}?done=break_glass");
    let again = async |f, status| outside(&st, &s, id, f, status).await;
    after_form(&s, r, "bg", f.values(), ok, again).await
}

pub struct TeamLine {
    pub id: String,
    pub name: String,
    pub is_default: bool,
    pub members: i64,
    pub patients: i64,
}

#[derive(Template)]
#[template(path = "admin_teams.html")]
struct TeamsPage {
    l: Layout,
    f: FormState,
    teams: Vec<TeamLine>,
}

async fn render_teams(st: &AppState, s: &WebSession, f: FormState, status: StatusCode) -> Page {
    let teams = services::access::teams(st, &s.user).await.or_page(s)?;
    Ok(view::render(
        status,
        &TeamsPage {
            l: Layout::new("Care teams", s),
            f,
            teams: teams
                .into_iter()
                .map(|t| TeamLine {
                    id: t.id.to_string(),
                    name: t.name,
                    is_default: t.is_default,
                    members: t.members,
                    patients: t.patients,
                })
                .collect(),
        },
    ))
}

pub async fn teams(State(st): State<AppState>, s: WebSession) -> Page {
    render_teams(&st, &s, FormState::none(), StatusCode::OK).await
}

pub async fn create_team(State(st): State<AppState>, WebForm { s, f }: WebForm) -> Page {
    let req = TeamInput {
        name: Some(f.get("name")),
        is_default: None,
    };
    let r = services::access::create_team(&st, &s.user, Ok(req)).await;
    let ok = |t: services::access::TeamView| format!("/admin/teams/{}", t.id);
    let again = async |f, status| render_teams(&st, &s, f, status).await;
    after_form(&s, r, "team", f.values(), ok, again).await
}

#[derive(Template)]
#[template(path = "admin_team.html")]
struct TeamPage {
    l: Layout,
    f: FormState,
    id: String,
    name: String,
    is_default: bool,
    members: Vec<services::access::MemberView>,
    patients: Vec<services::access::MemberView>,
    /// (user id, "Name (role)") of clinicians not yet in the team
    candidates: Vec<(String, String)>,
}

async fn render_team(
    st: &AppState,
    s: &WebSession,
    id: Uuid,
    f: FormState,
    status: StatusCode,
) -> Page {
    let t = services::access::team(st, &s.user, id).await.or_page(s)?;
    let page = crate::extract::PageQuery {
        limit: Some(100),
        cursor: None,
    };
    let users = services::users::list_users(st, &s.user, &page)
        .await
        .or_page(s)?;
    let candidates = users
        .items
        .into_iter()
        .filter(|u| u.role.is_clinician() && !t.members.iter().any(|m| m.id == u.id))
        .map(|u| (u.id.to_string(), format!("{} ({})", u.name, u.role)))
        .collect();
    Ok(view::render(
        status,
        &TeamPage {
            l: Layout::new(format!("Care team {}", t.team.name), s),
            f,
            id: id.to_string(),
            name: t.team.name,
            is_default: t.team.is_default,
            members: t.members,
            patients: t.patients,
            candidates,
        },
    ))
}

pub async fn team(State(st): State<AppState>, s: WebSession, WebId(id): WebId) -> Page {
    render_team(&st, &s, id, FormState::none(), StatusCode::OK).await
}

pub async fn membership(
    State(st): State<AppState>,
    WebId(team): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let r = match Uuid::parse_str(f.get("id").trim()) {
        Ok(who) => {
            let req = MembershipInput {
                kind: f.get("kind"),
                id: who,
                present: f.get("present") == "true",
            };
            services::access::set_membership(&st, &s.user, team, Ok(req))
                .await
                .map(|_| ())
        }
        Err(_) => Err(AppError::validation("id", "is not an id")),
    };
    let ok = |_| format!("/admin/teams/{team}");
    let again = async |f, status| render_team(&st, &s, team, f, status).await;
    after_form(&s, r, "member", f.values(), ok, again).await
}

pub async fn settings(
    State(st): State<AppState>,
    WebId(team): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let req = TeamInput {
        name: Some(f.get("name")),
        is_default: Some(f.checked("isDefault")),
    };
    let r = services::access::update_team(&st, &s.user, team, Ok(req)).await;
    let ok = |_| format!("/admin/teams/{team}");
    let again = async |f, status| render_team(&st, &s, team, f, status).await;
    after_form(&s, r, "member", f.values(), ok, again).await
}

pub async fn delete_team(
    State(st): State<AppState>,
    WebId(team): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let r = services::access::delete_team(&st, &s.user, team).await;
    let ok = |_| "/admin/teams".to_string();
    let again = async |f, status| render_team(&st, &s, team, f, status).await;
    after_form(&s, r, "member", f.values(), ok, again).await
}

pub struct BreakGlassLine {
    pub id: String,
    pub started: String,
    pub user: String,
    pub patient: String,
    pub reason_code: String,
    pub reason_text: String,
    pub expires: String,
    pub ended: bool,
    pub reviewed: Option<String>,
}

pub struct AccountLine {
    pub id: String,
    pub flagged: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub via: String,
    pub state: String,
    pub needs_approval: bool,
}

#[derive(Template)]
#[template(path = "admin_reviews.html")]
struct ReviewsPage {
    l: Layout,
    f: FormState,
    open: bool,
    break_glass: Vec<BreakGlassLine>,
    accounts: Vec<AccountLine>,
}

async fn render_reviews(
    st: &AppState,
    s: &WebSession,
    open: bool,
    f: FormState,
    status: StatusCode,
) -> Page {
    let q = services::access::review_queue(st, &s.user, open)
        .await
        .or_page(s)?;
    let mut break_glass = Vec::with_capacity(q.break_glass.len());
    for b in q.break_glass {
        break_glass.push(BreakGlassLine {
            id: b.id.to_string(),
            started: dt(&b.started_at),
            user: services::users::display_name(st, b.user_id).await,
            patient: b.patient_id.to_string(),
            reason_code: b.reason_code,
            reason_text: b.reason_text,
            expires: dt(&b.expires_at),
            ended: b.ended_at.is_some(),
            reviewed: b
                .reviewed_at
                .map(|t| format!("{}: {}", dt(&t), b.review_note.unwrap_or_default())),
        });
    }
    let accounts = q
        .accounts
        .into_iter()
        .map(|a| {
            let needs_approval = a.approval_required && a.approved_at.is_none();
            let state = match (needs_approval, a.reviewed_at) {
                (true, _) => "waiting for a second administrator's approval".to_string(),
                (false, Some(t)) => format!("reviewed {}", dt(&t)),
                (false, None) => "not reviewed".to_string(),
            };
            AccountLine {
                id: a.user_id.to_string(),
                flagged: dt(&a.flagged_at),
                name: a.name,
                email: a.email,
                role: a.role.to_string(),
                via: a.via,
                state,
                needs_approval,
            }
        })
        .collect();
    Ok(view::render(
        status,
        &ReviewsPage {
            l: Layout::new("Access reviews", s),
            f,
            open,
            break_glass,
            accounts,
        },
    ))
}

pub async fn reviews(
    State(st): State<AppState>,
    s: WebSession,
    Query(q): Query<ReviewQuery>,
) -> Page {
    let open = q.open.unwrap_or(true);
    render_reviews(&st, &s, open, FormState::none(), StatusCode::OK).await
}

pub async fn review_break_glass(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let req = ReviewRequest {
        note: f.get("note"),
    };
    let r = services::access::review_break_glass(&st, &s.user, id, Ok(req)).await;
    let ok = |_| "/admin/reviews".to_string();
    let again = async |f, status| render_reviews(&st, &s, true, f, status).await;
    after_form(&s, r, "review", f.values(), ok, again).await
}

pub async fn review_account(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let req = AccountDecision {
        approve: f.get("approve") == "true",
    };
    let r = services::access::review_account(&st, &s.user, id, Ok(req))
        .await
        .map(|_| ());
    let ok = |_| "/admin/reviews".to_string();
    let again = async |f, status| render_reviews(&st, &s, true, f, status).await;
    after_form(&s, r, "review", f.values(), ok, again).await
}
