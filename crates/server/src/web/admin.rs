//! Administration: users, invitations, the audit log, its verification,
//! and a metrics summary. No patient data is shown here (the audit log
//! holds ids only).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use domain::account::UserStatus;
use domain::roles::Role;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::PageQuery;
use crate::services;
use crate::services::audit::AuditFilter;
use crate::services::users::{CreateUserRequest, InviteRequest, UpdateUserRequest};
use crate::state::AppState;
use crate::web::form_level;
use crate::web::models::{next_link, notice, Done};
use crate::web::session::{WebForm, WebSession};
use crate::web::view::{
    self, after_form, dt, form_problem, FormState, Layout, OrPage, Page, WebId,
};

pub async fn home() -> Response {
    view::redirect("/admin/users")
}

pub struct Opt {
    pub value: &'static str,
    pub selected: bool,
}

fn options(all: &[&'static str], current: &str) -> Vec<Opt> {
    all.iter()
        .map(|v| Opt {
            value: v,
            selected: *v == current,
        })
        .collect()
}

const ROLES: [&str; 4] = ["admin", "provider", "nurse", "staff"];
const STATUSES: [&str; 3] = ["active", "pending", "disabled"];

pub struct UserLine {
    pub id: String,
    pub email: String,
    pub name: String,
    pub version: i64,
    pub roles: Vec<Opt>,
    pub statuses: Vec<Opt>,
    pub me: bool,
}

pub struct InviteShown {
    pub code: String,
    pub role: String,
    pub email: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    l: Layout,
    f: FormState,
    users: Vec<UserLine>,
    next: Option<String>,
    invite: Option<InviteShown>,
    new_roles: Vec<Opt>,
    invite_roles: Vec<Opt>,
}

async fn render_users(
    st: &AppState,
    s: &WebSession,
    cursor: Option<String>,
    f: FormState,
    status: StatusCode,
    done: Option<&str>,
    invite: Option<InviteShown>,
) -> Page {
    let page = PageQuery {
        limit: Some(100),
        cursor,
    };
    let list = services::users::list_users(st, &s.user, &page)
        .await
        .or_page(s)?;
    let new_role = f.v("user", "role").to_string();
    let invite_role = f.v("invite", "role").to_string();
    Ok(view::render(
        status,
        &UsersPage {
            l: Layout::new("Users", s).notice(notice(done)),
            users: list
                .items
                .iter()
                .map(|u| UserLine {
                    id: u.id.to_string(),
                    email: u.email.clone(),
                    name: u.name.clone(),
                    version: u.version,
                    roles: options(&ROLES, &u.role),
                    statuses: options(&STATUSES, &u.status),
                    me: u.id == s.user.id,
                })
                .collect(),
            next: next_link("/admin/users", &[], list.next_cursor.as_ref()),
            invite,
            new_roles: options(
                &ROLES,
                if new_role.is_empty() {
                    "nurse"
                } else {
                    &new_role
                },
            ),
            invite_roles: options(
                &ROLES,
                if invite_role.is_empty() {
                    "nurse"
                } else {
                    &invite_role
                },
            ),
            f,
        },
    ))
}

pub async fn users(State(st): State<AppState>, s: WebSession, Query(d): Query<Done>) -> Page {
    let (f, ok) = (FormState::none(), StatusCode::OK);
    render_users(&st, &s, d.cursor, f, ok, d.done.as_deref(), None).await
}

/// The users page again, with a problem next to `form`.
async fn users_again(st: &AppState, s: &WebSession, f: FormState, status: StatusCode) -> Page {
    render_users(st, s, None, f, status, None, None).await
}

fn role_field(field: &'static str, raw: &str) -> Result<Role, AppError> {
    Role::parse(raw.trim())
        .ok_or_else(|| AppError::validation(field, "must be admin, provider, nurse or staff"))
}

pub async fn create_user(State(st): State<AppState>, WebForm { s, f }: WebForm) -> Page {
    let r = match role_field("role", &f.get("role")) {
        Ok(role) => {
            let req = CreateUserRequest {
                email: f.get("email"),
                name: f.get("name"),
                role,
                password: f.get("password"),
            };
            services::users::create_user(&st, &s.user, Ok(req))
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    };
    let ok = |_| "/admin/users?done=user_created".to_string();
    let again = async |f, status| users_again(&st, &s, f, status).await;
    after_form(&s, r, "user", f.values(), ok, again).await
}

pub async fn update_user(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let role = role_field("role", &f.get("role"));
    let status = UserStatus::parse(f.get("status").trim())
        .ok_or_else(|| AppError::validation("status", "must be active, pending or disabled"));
    let r = match (role, status) {
        (Ok(role), Ok(status)) => {
            let req = UpdateUserRequest {
                role: Some(role),
                status: Some(status),
                version: f.get("version").trim().parse().ok(),
            };
            services::users::update_user(&st, &s.user, id, Ok(None), Ok(req))
                .await
                .map(|_| ())
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let ok = |_| "/admin/users?done=user_updated".to_string();
    let again = async |f, status| users_again(&st, &s, f, status).await;
    after_form(&s, r, "update", f.values(), ok, again).await
}

pub async fn create_invite(State(st): State<AppState>, WebForm { s, f }: WebForm) -> Page {
    let r = match role_field("role", &f.get("role")) {
        Ok(role) => {
            let req = InviteRequest {
                role,
                email: f.opt("email"),
            };
            services::users::create_invite(&st, &s.user, Ok(req)).await
        }
        Err(e) => Err(e),
    };
    match r {
        // The code is shown once, on this page; it is never stored in clear.
        Ok(inv) => {
            let shown = InviteShown {
                code: inv.code,
                role: inv.role.as_str().to_string(),
                email: inv.email.unwrap_or_default(),
                expires: dt(&inv.expires_at),
            };
            let none = FormState::none();
            render_users(&st, &s, None, none, StatusCode::CREATED, None, Some(shown)).await
        }
        Err(e) => {
            let again = async |f, status| users_again(&st, &s, f, status).await;
            form_problem(&s, e, "invite", f.values(), again).await
        }
    }
}

pub struct AuditLine {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub resource: String,
    pub patient: String,
    pub outcome: String,
    pub failed: bool,
    pub request_id: String,
    pub ip: String,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
struct AuditPage {
    l: Layout,
    f: FormState,
    lines: Vec<AuditLine>,
    next: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditParams {
    patient_id: Option<String>,
    user_id: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

fn opt_uuid(
    field: &'static str,
    v: &Option<String>,
    errs: &mut Vec<(String, String)>,
) -> Option<Uuid> {
    let t = v.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
    match Uuid::parse_str(t) {
        Ok(u) => Some(u),
        Err(_) => {
            errs.push((field.into(), "must be an id (UUID)".into()));
            None
        }
    }
}

/// A date (`YYYY-MM-DD`, the whole day; `end` = the next midnight) or an
/// RFC 3339 time.
fn opt_time(
    field: &'static str,
    v: &Option<String>,
    end: bool,
    errs: &mut Vec<(String, String)>,
) -> Option<DateTime<Utc>> {
    let t = v.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    errs.push((field.into(), "must be a date such as 2024-05-01".into()));
    None
}

pub async fn audit(
    State(st): State<AppState>,
    s: WebSession,
    Query(p): Query<AuditParams>,
) -> Page {
    let mut values = HashMap::new();
    for (k, v) in [
        ("patientId", &p.patient_id),
        ("userId", &p.user_id),
        ("action", &p.action),
        ("from", &p.from),
        ("to", &p.to),
    ] {
        values.insert(k.to_string(), v.clone().unwrap_or_default());
    }
    let mut errs = Vec::new();
    let filter = AuditFilter {
        patient_id: opt_uuid("patientId", &p.patient_id, &mut errs),
        user_id: opt_uuid("userId", &p.user_id, &mut errs),
        action: p
            .action
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        from: opt_time("from", &p.from, false, &mut errs),
        to: opt_time("to", &p.to, true, &mut errs),
    };
    let page_q = PageQuery {
        limit: Some(100),
        cursor: p.cursor.clone(),
    };
    let result = if errs.is_empty() {
        services::audit::list(&st, &s.user, filter, &page_q).await
    } else {
        Err(AppError::Validation(
            errs.into_iter()
                .map(|(f, m)| domain::account::FieldError::new(f, m))
                .collect(),
        ))
    };
    let (f, lines, next, status) = match result {
        Ok(page) => {
            let lines = page
                .items
                .iter()
                .map(|e| AuditLine {
                    seq: e.seq,
                    at: e.occurred_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    actor: e.actor_id.map(|u| u.to_string()).unwrap_or_default(),
                    role: e.actor_role.clone().unwrap_or_default(),
                    action: e.action.clone(),
                    resource: match (&e.resource_type, e.resource_id) {
                        (Some(t), Some(id)) => format!("{t} {id}"),
                        (Some(t), None) => t.clone(),
                        _ => String::new(),
                    },
                    patient: e.patient_id.map(|u| u.to_string()).unwrap_or_default(),
                    failed: e.outcome != "success",
                    outcome: e.outcome.clone(),
                    request_id: e.request_id.clone().unwrap_or_default(),
                    ip: e.client_ip.clone().unwrap_or_default(),
                })
                .collect();
            let params: Vec<(&str, &str)> = ["patientId", "userId", "action", "from", "to"]
                .iter()
                .map(|k| (*k, values.get(*k).map(String::as_str).unwrap_or("")))
                .collect();
            let next = next_link("/admin/audit", &params, page.next_cursor.as_ref());
            (
                FormState::filled("audit", values.clone()),
                lines,
                next,
                StatusCode::OK,
            )
        }
        Err(e) if form_level(&e) => (
            FormState::failed("audit", values.clone(), &e),
            Vec::new(),
            None,
            e.status(),
        ),
        Err(e) => return Err(view::error_page(Some(&s), &e)),
    };
    Ok(view::render(
        status,
        &AuditPage {
            l: Layout::new("Audit log", &s),
            f,
            lines,
            next,
        },
    ))
}

#[derive(Template)]
#[template(path = "admin_verify.html")]
struct VerifyPage {
    l: Layout,
    valid: bool,
    events: i64,
    first_broken_id: String,
    first_broken_seq: String,
    head_hash: String,
    reason: String,
    checkpoints: i64,
    latest_checkpoint: String,
}

pub async fn verify(State(st): State<AppState>, s: WebSession) -> Page {
    let r = services::audit::verify(&st, &s.user).await.or_page(&s)?;
    Ok(view::ok(&VerifyPage {
        l: Layout::new("Audit verification", &s),
        valid: r.valid,
        events: r.events,
        first_broken_id: r.first_broken_id.map(|u| u.to_string()).unwrap_or_default(),
        first_broken_seq: r
            .first_broken_seq
            .map(|n| n.to_string())
            .unwrap_or_default(),
        head_hash: r.head_hash,
        reason: r.reason.unwrap_or_default(),
        checkpoints: r.checkpoints_checked,
        latest_checkpoint: r
            .latest_checkpoint_seq
            .map(|n| n.to_string())
            .unwrap_or_default(),
    }))
}

pub struct Counter {
    pub name: String,
    pub value: String,
}

pub struct Duration {
    pub name: String,
    pub count: String,
    pub avg: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
}

#[derive(Template)]
#[template(path = "admin_metrics.html")]
struct MetricsPage {
    l: Layout,
    at: String,
    counters: Vec<Counter>,
    durations: Vec<Duration>,
}

pub async fn metrics(State(st): State<AppState>, s: WebSession) -> Page {
    let v = services::ops::metrics(&st, &s.user).or_page(&s)?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let m = &v["metrics"];
    let mut counters: Vec<Counter> = m["counters"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| Counter {
                    name: k.clone(),
                    value: text(v),
                })
                .collect()
        })
        .unwrap_or_default();
    counters.sort_by(|a, b| a.name.cmp(&b.name));
    let mut durations: Vec<Duration> = m["durations"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, d)| Duration {
                    name: k.clone(),
                    count: text(&d["count"]),
                    avg: text(&d["avg"]),
                    p50: text(&d["p50"]),
                    p95: text(&d["p95"]),
                    p99: text(&d["p99"]),
                })
                .collect()
        })
        .unwrap_or_default();
    durations.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(view::ok(&MetricsPage {
        l: Layout::new("Metrics", &s),
        at: text(&v["timestamp"]),
        counters,
        durations,
    }))
}
