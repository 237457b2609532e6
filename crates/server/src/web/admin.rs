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
use crate::web::session::{self, Outgoing, WebForm, WebSession};
use crate::web::view::{
    self, after_form, dt, form_problem, FormState, Layout, OrPage, Page, WebId,
};
use base64::Engine as _;

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

fn role_names() -> [&'static str; 4] {
    Role::ALL.map(Role::as_str)
}

fn status_names() -> [&'static str; 3] {
    UserStatus::ALL.map(UserStatus::as_str)
}

pub struct UserLine {
    pub id: String,
    pub email: String,
    pub name: String,
    pub last_sign_in: String,
    pub version: i64,
    pub roles: Vec<Opt>,
    pub statuses: Vec<Opt>,
    pub me: bool,
}

#[derive(serde::Serialize, Deserialize)]
pub struct InviteShown {
    pub code: String,
    pub role: String,
    pub email: String,
    pub expires: String,
}

impl InviteShown {
    /// The sign-up link to hand over with the code.
    pub fn link(&self) -> String {
        format!(
            "/signup?{}",
            serde_urlencoded::to_string([("code", self.code.as_str())]).unwrap_or_default()
        )
    }
}

/// A pending invitation in the admin's list.
pub struct InviteLine {
    pub id: String,
    pub role: String,
    pub email: String,
    pub created_by: String,
    pub created: String,
    pub expires: String,
}

/// The cookie that carries a new invitation's code across the redirect
/// after `POST /admin/invites` (Path=/admin/users, 5 minutes, HttpOnly,
/// cleared when shown): a reload shows nothing and creates nothing.
const INVITE_FLASH: &str = "amal_invite";

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    l: Layout,
    f: FormState,
    users: Vec<UserLine>,
    next: Option<String>,
    invite: Option<InviteShown>,
    invites: Vec<InviteLine>,
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
    let pending = services::users::list_invites(st, &s.user)
        .await
        .or_page(s)?;
    let mut names = HashMap::new();
    for i in &pending.items {
        if let std::collections::hash_map::Entry::Vacant(v) = names.entry(i.created_by) {
            v.insert(services::users::display_name(st, i.created_by).await);
        }
    }
    let invites = pending
        .items
        .iter()
        .map(|i| InviteLine {
            id: i.id.to_string(),
            role: i.role.to_string(),
            email: i.email.clone().unwrap_or_default(),
            created_by: names.get(&i.created_by).cloned().unwrap_or_default(),
            created: dt(&i.created_at),
            expires: dt(&i.expires_at),
        })
        .collect();
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
                    last_sign_in: u
                        .last_sign_in_at
                        .as_ref()
                        .map(dt)
                        .unwrap_or_else(|| "never".into()),
                    version: u.version,
                    roles: options(&role_names(), u.role.as_str()),
                    statuses: options(&status_names(), u.status.as_str()),
                    me: u.id == s.user.id,
                })
                .collect(),
            next: next_link("/admin/users", &[], list.next_cursor.as_ref()),
            invite,
            invites,
            new_roles: options(
                &role_names(),
                if new_role.is_empty() {
                    "nurse"
                } else {
                    &new_role
                },
            ),
            invite_roles: options(
                &role_names(),
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

pub async fn users(
    State(st): State<AppState>,
    s: WebSession,
    Query(d): Query<Done>,
    req: axum::extract::Request,
) -> Page {
    let (f, ok) = (FormState::none(), StatusCode::OK);
    // A new invitation's code, once, right after it was created.
    let flash = session::cookies(req.headers())
        .get(INVITE_FLASH)
        .and_then(|v| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<InviteShown>(&b).ok());
    if flash.is_some() {
        if let Some(c) = session::clear_flash(&st, INVITE_FLASH, "/admin/users") {
            session::outgoing(req.extensions()).push(c);
        }
    }
    render_users(&st, &s, d.cursor, f, ok, d.done.as_deref(), flash).await
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

/// `POST /admin/invites/{id}/revoke`: the code stops working.
pub async fn revoke_invite(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, f }: WebForm,
) -> Page {
    let r = services::users::revoke_invite(&st, &s.user, id).await;
    let ok = |_| "/admin/users?done=invite_revoked".to_string();
    let again = async |f, status| users_again(&st, &s, f, status).await;
    after_form(&s, r, "invites", f.values(), ok, again).await
}

pub async fn create_invite(
    State(st): State<AppState>,
    out: Outgoing,
    WebForm { s, f }: WebForm,
) -> Page {
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
        // Post, redirect, get: the code rides in a short-lived cookie to
        // the users page, which shows it once; it is never stored in clear.
        Ok(inv) => {
            let shown = InviteShown {
                code: inv.code,
                role: inv.role.as_str().to_string(),
                email: inv.email.unwrap_or_default(),
                expires: dt(&inv.expires_at),
            };
            let packed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&shown).unwrap_or_default());
            if let Some(c) = session::flash_cookie(&st, INVITE_FLASH, &packed, "/admin/users") {
                out.push(c);
            }
            Ok(view::redirect("/admin/users?done=invite#h-code"))
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
    pub actor_name: String,
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
    /// Every audited action, for the picker.
    actions: Vec<Opt>,
    /// The CSV export of the same filter.
    csv: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditParams {
    patient_id: Option<String>,
    mrn: Option<String>,
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

const AUDIT_FIELDS: [&str; 6] = ["patientId", "mrn", "userId", "action", "from", "to"];

/// The filter of the audit page (and its CSV export), read from the
/// query; an MRN becomes the patient id it stands for.
async fn audit_filter(
    st: &AppState,
    s: &WebSession,
    p: &AuditParams,
) -> Result<AuditFilter, AppError> {
    let mut errs = Vec::new();
    let mut filter = AuditFilter {
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
    if !errs.is_empty() {
        return Err(AppError::Validation(
            errs.into_iter()
                .map(|(f, m)| domain::account::FieldError::new(f, m))
                .collect(),
        ));
    }
    if let Some(mrn) = p.mrn.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        filter.patient_id = Some(services::audit::patient_for_mrn(st, &s.user, mrn).await?);
    }
    Ok(filter)
}

/// Events of one page, with the actors' names beside their ids.
async fn audit_lines(st: &AppState, items: &[store::audit::StoredEvent]) -> Vec<AuditLine> {
    let mut names: HashMap<Uuid, String> = HashMap::new();
    let mut lines = Vec::with_capacity(items.len());
    for e in items {
        let actor_name = match e.actor_id {
            Some(id) => {
                if let std::collections::hash_map::Entry::Vacant(v) = names.entry(id) {
                    v.insert(services::users::display_name(st, id).await);
                }
                names.get(&id).cloned().unwrap_or_default()
            }
            None => String::new(),
        };
        lines.push(AuditLine {
            seq: e.seq,
            at: e.occurred_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            actor: e.actor_id.map(|u| u.to_string()).unwrap_or_default(),
            actor_name,
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
        });
    }
    lines
}

fn audit_values(p: &AuditParams) -> HashMap<String, String> {
    let mut values = HashMap::new();
    for (k, v) in [
        ("patientId", &p.patient_id),
        ("mrn", &p.mrn),
        ("userId", &p.user_id),
        ("action", &p.action),
        ("from", &p.from),
        ("to", &p.to),
    ] {
        values.insert(k.to_string(), v.clone().unwrap_or_default());
    }
    values
}

pub async fn audit(
    State(st): State<AppState>,
    s: WebSession,
    Query(p): Query<AuditParams>,
) -> Page {
    let values = audit_values(&p);
    let page_q = PageQuery {
        limit: Some(100),
        cursor: p.cursor.clone(),
    };
    let result = match audit_filter(&st, &s, &p).await {
        Ok(filter) => services::audit::list(&st, &s.user, filter, &page_q).await,
        Err(e) => Err(e),
    };
    let params: Vec<(&str, &str)> = AUDIT_FIELDS
        .iter()
        .map(|k| (*k, values.get(*k).map(String::as_str).unwrap_or("")))
        .collect();
    let csv = format!(
        "/admin/audit.csv?{}",
        serde_urlencoded::to_string(&params).unwrap_or_default()
    );
    let (f, lines, next, status) = match result {
        Ok(page) => {
            let lines = audit_lines(&st, &page.items).await;
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
    let chosen = values.get("action").cloned().unwrap_or_default();
    let actions = domain::audit::AuditAction::ALL
        .iter()
        .map(|a| Opt {
            value: a.as_str(),
            selected: a.as_str() == chosen,
        })
        .collect();
    Ok(view::render(
        status,
        &AuditPage {
            l: Layout::new("Audit log", &s),
            f,
            lines,
            next,
            actions,
            csv,
        },
    ))
}

/// One CSV field, quoted when needed (RFC 4180); a leading `=`, `+`, `-`
/// or `@` is prefixed with `'` so a spreadsheet does not run it.
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// Rows a CSV export holds at most (pages of the audit service).
const CSV_MAX_ROWS: usize = 10_000;

/// `GET /admin/audit.csv`: the filtered events as CSV (newest first, at
/// most 10,000 rows), through the same audit service as the page.
pub async fn audit_csv(
    State(st): State<AppState>,
    s: WebSession,
    Query(p): Query<AuditParams>,
) -> Page {
    let filter = audit_filter(&st, &s, &p).await.or_page(&s)?;
    let mut out = String::from(
        "seq,time,actor_id,actor_name,role,action,resource,patient_id,outcome,request_id,ip\r\n",
    );
    let mut cursor = None;
    let mut rows = 0;
    loop {
        let page_q = PageQuery {
            limit: Some(500),
            cursor,
        };
        let f = AuditFilter {
            patient_id: filter.patient_id,
            user_id: filter.user_id,
            action: filter.action.clone(),
            from: filter.from,
            to: filter.to,
        };
        let page = services::audit::list(&st, &s.user, f, &page_q)
            .await
            .or_page(&s)?;
        for l in audit_lines(&st, &page.items).await {
            let fields = [
                l.seq.to_string(),
                l.at,
                l.actor,
                l.actor_name,
                l.role,
                l.action,
                l.resource,
                l.patient,
                l.outcome,
                l.request_id,
                l.ip,
            ];
            let line: Vec<String> = fields.iter().map(|v| csv_field(v)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
            rows += 1;
        }
        cursor = page.next_cursor;
        if cursor.is_none() || rows >= CSV_MAX_ROWS {
            break;
        }
    }
    let mut r = axum::response::IntoResponse::into_response(out);
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        axum::http::header::CONTENT_DISPOSITION,
        axum::http::HeaderValue::from_static("attachment; filename=\"amal-audit.csv\""),
    );
    Ok(r)
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
    charts: Vec<crate::web::chart::Chart>,
    points: usize,
    keep: usize,
    at: String,
    counters: Vec<Counter>,
    durations: Vec<Duration>,
}

#[derive(Template)]
#[template(path = "admin_alerts.html")]
struct AlertsPage {
    l: Layout,
    r: telemetry::alerts::AlertsReport,
    /// Firing and pending alerts over time (empty before two evaluations).
    charts: Vec<crate::web::chart::Chart>,
    evaluated: String,
    rows: Vec<AlertRow>,
    delivery: String,
}

pub struct AlertRow {
    pub name: String,
    pub state: &'static str,
    pub severity: String,
    pub summary: String,
    pub since: String,
    pub value: String,
    pub resolved: String,
    pub detail: String,
    pub runbook: String,
}

/// `GET /admin/alerts`: every built-in alert, its state and since when,
/// and the last webhook delivery (`services::ops::alerts`).
pub async fn alerts(State(st): State<AppState>, s: WebSession) -> Page {
    let r = services::ops::alerts(&st, &s.user).or_page(&s)?;
    let rows = r
        .alerts
        .iter()
        .map(|a| AlertRow {
            name: a.name.clone(),
            state: match a.state {
                telemetry::alerts::AlertStatus::Firing => "firing",
                telemetry::alerts::AlertStatus::Pending => "pending",
                telemetry::alerts::AlertStatus::Inactive => "inactive",
            },
            severity: a.severity.clone(),
            summary: a.summary.clone(),
            since: view::opt_dt(&a.active_since),
            value: a.value.map(view::num).unwrap_or_default(),
            resolved: view::opt_dt(&a.last_resolved_at),
            detail: a.detail.clone().unwrap_or_default(),
            runbook: a.runbook.clone(),
        })
        .collect();
    let delivery = match (&r.last_webhook_delivery, r.webhook_configured) {
        (_, false) => {
            "No webhook is configured (ALERT_WEBHOOK_URL); alerts are logged only.".into()
        }
        (None, true) => "No alert has been sent to the webhook since this instance started.".into(),
        (Some(d), true) => format!(
            "{} at {}: {} after {} attempt(s).",
            d.alert,
            dt(&d.at),
            if d.delivered {
                "delivered"
            } else {
                "NOT delivered"
            },
            d.attempts
        ),
    };
    let history = services::ops::alert_history(&st, &s.user).or_page(&s)?;
    let count = |f: fn(&telemetry::alerts::StatePoint) -> usize| -> Vec<_> {
        history.iter().map(|p| (p.at, f(p) as f64, None)).collect()
    };
    let charts = [
        ("Alerts firing", count(|p| p.firing)),
        ("Alerts pending", count(|p| p.pending)),
    ]
    .into_iter()
    .filter_map(|(label, s)| crate::web::chart::time_chart(label, "alerts", &s, (None, None)))
    .collect();
    Ok(view::ok(&AlertsPage {
        l: Layout::new("Alerts", &s),
        charts,
        evaluated: view::opt_dt(&r.evaluated_at),
        rows,
        delivery,
        r,
    }))
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
    let pts = services::ops::metrics_history(&st, &s.user).or_page(&s)?;
    let series = |f: &dyn Fn(&telemetry::alerts::MetricsPoint) -> Option<f64>| -> Vec<_> {
        pts.iter()
            .filter_map(|p| Some((p.at, f(p)?, None)))
            .collect()
    };
    let u64f = |n: u64| n as f64;
    let charts = [
        (
            "Request rate",
            "req/s",
            series(&|p| Some(p.requests_per_second)),
        ),
        ("p95 duration", "ms", series(&|p| p.p95_ms)),
        (
            "Error rate (5xx)",
            "%",
            series(&|p| p.error_ratio.map(|r| r * 100.0)),
        ),
        (
            "Sign-in failures",
            "per interval",
            series(&|p| Some(u64f(p.signin_failures))),
        ),
        (
            "AI refusals",
            "per interval",
            series(&|p| Some(u64f(p.ai_refusals))),
        ),
    ]
    .into_iter()
    .filter_map(|(label, unit, s)| crate::web::chart::time_chart(label, unit, &s, (None, None)))
    .collect();
    Ok(view::ok(&MetricsPage {
        l: Layout::new("Metrics", &s),
        charts,
        points: pts.len(),
        keep: telemetry::alerts::METRICS_POINTS,
        at: text(&v["timestamp"]),
        counters,
        durations,
    }))
}
