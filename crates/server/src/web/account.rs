//! The account page (/account: sessions, password, second factor), the
//! second step of sign-in (/login/mfa), set-password links, and the
//! administrator's account-recovery buttons. Every action calls the same
//! service function as the API ([`services::mfa`], [`services::account`]).

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;

use crate::error::AppError;
use crate::services::{self, mfa::Enrolling, mfa::MfaStep};
use crate::state::AppState;
use crate::web::auth::{anon_form, login_nonce, AnonForm};
use crate::web::session::{self, WebForm, WebSession};
use crate::web::view::{self, FormState, Layout, WebId};

/// The one page of every second-factor step: enter a code (`verify`),
/// scan and confirm (`setup`), or the recovery codes shown once (`codes`).
#[derive(Template)]
#[template(path = "mfa.html")]
struct MfaPage {
    l: Layout,
    f: FormState,
    mode: &'static str,
    /// The form's CSRF token (the sign-in nonce's, or the session's).
    csrf: String,
    challenge: String,
    next: String,
    action: String,
    secret: String,
    qr: String,
    codes: Vec<String>,
    continue_to: String,
}

impl MfaPage {
    fn new(l: Layout, mode: &'static str, csrf: String) -> MfaPage {
        MfaPage {
            l,
            f: FormState::none(),
            mode,
            csrf,
            challenge: String::new(),
            next: String::new(),
            action: String::new(),
            secret: String::new(),
            qr: String::new(),
            codes: vec![],
            continue_to: "/".into(),
        }
    }
}

fn with_retry(mut resp: Response, e: &AppError) -> Response {
    if let AppError::RateLimited { retry_after } = e {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from((*retry_after).max(1)),
        );
    }
    resp
}

fn qr_data_uri(svg: &str) -> String {
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    )
}

/// A setup page for `who` (a fresh secret each time it is shown), saying
/// why when it follows a `failed` confirmation. Signed in (no `challenge`),
/// it posts to the account page; otherwise to the sign-in's step.
async fn setup_page(
    st: &AppState,
    l: Layout,
    csrf: String,
    who: Enrolling<'_>,
    failed: Option<&AppError>,
    challenge: &str,
    next: &str,
) -> Response {
    match services::mfa::setup(st, who).await {
        Ok(s) => {
            let mut p = MfaPage::new(l, "setup", csrf);
            if let Some(e) = failed {
                p.f = FormState::failed("mfa", Default::default(), e);
            }
            p.secret = s.secret;
            p.qr = qr_data_uri(&s.qr_svg);
            p.action = if challenge.is_empty() {
                "/account/mfa"
            } else {
                "/login/mfa/confirm"
            }
            .into();
            p.challenge = challenge.into();
            p.next = next.into();
            view::render(StatusCode::OK, &p)
        }
        Err(e) => view::error_page(None, &e),
    }
}

/// What `POST /login` shows when the password was right and a second
/// factor is needed (or must first be enrolled).
pub async fn second_step_page(st: &AppState, nonce: &str, step: &MfaStep, next: &str) -> Response {
    let csrf = session::login_token(st, nonce);
    let next = view::safe_next(next);
    if step.step == "mfa_required" {
        let mut p = MfaPage::new(Layout::anon("Two-step sign-in"), "verify", csrf);
        p.challenge = step.challenge_token.clone();
        p.next = next.into();
        p.action = "/login/mfa".into();
        return view::render(StatusCode::OK, &p);
    }
    setup_page(
        st,
        Layout::anon("Set up two-step sign-in"),
        csrf,
        Enrolling::Challenge(&step.challenge_token),
        None,
        &step.challenge_token,
        next,
    )
    .await
}

/// `POST /login/mfa`: the code of the second step.
pub async fn login_mfa(State(st): State<AppState>, req: Request) -> Response {
    let AnonForm { f, nonce, out } = match anon_form(&st, req).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let next = f.get("next");
    let req = services::mfa::MfaVerifyRequest {
        challenge_token: f.get("challenge"),
        code: f.get("code"),
    };
    match services::mfa::verify(&st, req).await {
        Ok(pair) => {
            session::store_tokens(&st, &out, &pair.access_token, &pair.refresh_token);
            if let Some(c) = session::clear_cookie(&st, session::LOGIN_CSRF) {
                out.push(c);
            }
            view::redirect(view::safe_next(&next))
        }
        Err(AppError::Unauthorized(m)) if m.starts_with("The sign-in step") => {
            view::redirect("/login")
        }
        Err(e) => {
            let mut p = MfaPage::new(
                Layout::anon("Two-step sign-in"),
                "verify",
                session::login_token(&st, &nonce),
            );
            p.f = FormState::failed("mfa", f.values(), &e);
            p.challenge = f.get("challenge");
            p.next = view::safe_next(&next).into();
            p.action = "/login/mfa".into();
            with_retry(view::render(e.status(), &p), &e)
        }
    }
}

fn codes_page(l: Layout, csrf: String, codes: Vec<String>, continue_to: &str) -> Response {
    let mut p = MfaPage::new(l, "codes", csrf);
    p.codes = codes;
    p.continue_to = continue_to.into();
    view::render(StatusCode::OK, &p)
}

/// `POST /login/mfa/confirm`: the first code of an enrolment the policy
/// demanded at sign-in; opens the session and shows the recovery codes.
pub async fn login_mfa_confirm(State(st): State<AppState>, req: Request) -> Response {
    let AnonForm { f, nonce, out } = match anon_form(&st, req).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let challenge = f.get("challenge");
    let next = view::safe_next(&f.get("next")).to_string();
    match services::mfa::confirm(&st, Enrolling::Challenge(&challenge), &f.get("code")).await {
        Ok(done) => {
            if let Some(pair) = &done.tokens {
                session::store_tokens(&st, &out, &pair.access_token, &pair.refresh_token);
            }
            if let Some(c) = session::clear_cookie(&st, session::LOGIN_CSRF) {
                out.push(c);
            }
            codes_page(
                Layout::anon("Recovery codes"),
                String::new(),
                done.recovery_codes,
                &next,
            )
        }
        Err(AppError::Unauthorized(m)) if m.starts_with("The sign-in step") => {
            view::redirect("/login")
        }
        Err(e) => {
            // A wrong code: show the same secret again is not possible (it
            // is stored sealed), so start over with a new one.
            let mut resp = setup_page(
                &st,
                Layout::anon("Set up two-step sign-in"),
                session::login_token(&st, &nonce),
                Enrolling::Challenge(&challenge),
                Some(&e),
                &challenge,
                &next,
            )
            .await;
            *resp.status_mut() = e.status();
            with_retry(resp, &e)
        }
    }
}

// --- The account page ---------------------------------------------------------

struct SessionRow {
    id: String,
    agent: String,
    ip: String,
    started: String,
    active: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    l: Layout,
    f: FormState,
    email: String,
    sessions: Vec<SessionRow>,
    mfa_enrolled: bool,
    mfa_required: bool,
    codes_left: i64,
}

#[derive(Debug, Deserialize, Default)]
pub struct AccountQuery {
    done: Option<String>,
}

fn account_notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "session_ended" => "The session was signed out.",
        "password_changed" => "Password changed. Your other sessions have been signed out.",
        "mfa_enrolled" => "Two-step sign-in is on.",
        _ => return None,
    })
}

async fn render_account(
    st: &AppState,
    s: &WebSession,
    f: FormState,
    status: StatusCode,
    done: Option<&str>,
) -> Response {
    let (sessions, mfa) = match (
        services::account::list_sessions(st, &s.user).await,
        services::mfa::status(st, &s.user).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return view::error_page(Some(s), &e),
    };
    let page = AccountPage {
        l: Layout::new("Your account", s).notice(account_notice(done)),
        f,
        email: s.email.clone(),
        sessions: sessions
            .sessions
            .into_iter()
            .map(|x| SessionRow {
                id: x.id.to_string(),
                agent: x.user_agent.unwrap_or_else(|| "unknown".into()),
                ip: x.ip.unwrap_or_else(|| "unknown".into()),
                started: view::dt(&x.started_at),
                active: view::opt_dt(&x.last_active_at),
                current: x.current,
            })
            .collect(),
        mfa_enrolled: mfa.enrolled,
        mfa_required: mfa.required,
        codes_left: mfa.recovery_codes_left,
    };
    view::render(status, &page)
}

pub async fn account(
    State(st): State<AppState>,
    s: WebSession,
    Query(q): Query<AccountQuery>,
) -> Response {
    render_account(
        &st,
        &s,
        FormState::none(),
        StatusCode::OK,
        q.done.as_deref(),
    )
    .await
}

pub async fn end_session(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, .. }: WebForm,
) -> Response {
    match services::account::revoke_session(&st, &s.user, id).await {
        Ok(()) if id == s.user.session => view::redirect("/login?done=signed_out"),
        Ok(()) => view::redirect("/account?done=session_ended"),
        Err(e) => view::error_page(Some(&s), &e),
    }
}

pub async fn end_all_sessions(State(st): State<AppState>, req: Request) -> Response {
    let out = session::outgoing(req.extensions());
    let WebForm { s, .. } =
        match <WebForm as axum::extract::FromRequest<AppState>>::from_request(req, &st).await {
            Ok(f) => f,
            Err(r) => return r,
        };
    match services::account::revoke_all_sessions(&st, &s.user).await {
        Ok(_) => {
            session::clear_tokens(&st, &out);
            view::redirect("/login?done=signed_out")
        }
        Err(e) => view::error_page(Some(&s), &e),
    }
}

pub async fn change_password(State(st): State<AppState>, WebForm { s, f }: WebForm) -> Response {
    let req = services::account::ChangePasswordRequest {
        current_password: f.get("current_password"),
        new_password: f.get("new_password"),
    };
    match services::account::change_password(&st, &s.user, Ok(req)).await {
        Ok(_) => view::redirect("/account?done=password_changed"),
        Err(e) if view::form_level(&e) || matches!(e, AppError::Validation(_)) => {
            let fs = FormState::failed("password", Default::default(), &e);
            render_account(&st, &s, fs, e.status(), None).await
        }
        Err(e) => view::error_page(Some(&s), &e),
    }
}

/// `GET /account/mfa`: set up a second factor while signed in.
pub async fn mfa_setup(State(st): State<AppState>, s: WebSession) -> Response {
    signed_setup_page(&st, &s, None).await
}

async fn signed_setup_page(st: &AppState, s: &WebSession, failed: Option<&AppError>) -> Response {
    setup_page(
        st,
        Layout::new("Set up two-step sign-in", s),
        s.csrf.clone(),
        Enrolling::Signed(&s.user),
        failed,
        "",
        "/account",
    )
    .await
}

pub async fn mfa_confirm(State(st): State<AppState>, WebForm { s, f }: WebForm) -> Response {
    match services::mfa::confirm(&st, Enrolling::Signed(&s.user), &f.get("code")).await {
        Ok(done) => codes_page(
            Layout::new("Recovery codes", &s),
            s.csrf.clone(),
            done.recovery_codes,
            "/account?done=mfa_enrolled",
        ),
        Err(e @ AppError::Unauthorized(_)) | Err(e @ AppError::RateLimited { .. }) => {
            let mut resp = signed_setup_page(&st, &s, Some(&e)).await;
            *resp.status_mut() = e.status();
            with_retry(resp, &e)
        }
        Err(e) => view::error_page(Some(&s), &e),
    }
}

// --- Set-password links -------------------------------------------------------

#[derive(Template)]
#[template(path = "set_password.html")]
struct SetPasswordPage {
    l: Layout,
    f: FormState,
    csrf: String,
    token: String,
}

#[derive(Debug, Deserialize, Default)]
pub struct TokenQuery {
    token: Option<String>,
}

pub async fn set_password_page(
    State(st): State<AppState>,
    Query(q): Query<TokenQuery>,
    req: Request,
) -> Response {
    let out = session::outgoing(req.extensions());
    let nonce = login_nonce(&st, req.headers(), &out);
    view::render(
        StatusCode::OK,
        &SetPasswordPage {
            l: Layout::anon("Choose a password"),
            f: FormState::none(),
            csrf: session::login_token(&st, &nonce),
            token: q.token.unwrap_or_default(),
        },
    )
}

pub async fn set_password(State(st): State<AppState>, req: Request) -> Response {
    let AnonForm { f, nonce, .. } = match anon_form(&st, req).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = services::account::SetPasswordRequest {
        token: f.get("token"),
        new_password: f.get("new_password"),
    };
    match services::account::set_password(&st, Ok(body)).await {
        Ok(()) => view::redirect("/login?done=password_set"),
        Err(e) => {
            let page = SetPasswordPage {
                l: Layout::anon("Choose a password"),
                f: FormState::failed("setpw", Default::default(), &e),
                csrf: session::login_token(&st, &nonce),
                token: f.get("token"),
            };
            with_retry(view::render(e.status(), &page), &e)
        }
    }
}

// --- Administrator --------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin_reset.html")]
struct AdminResetPage {
    l: Layout,
    link: String,
    expires: String,
}

pub async fn admin_end_sessions(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, .. }: WebForm,
) -> Response {
    match services::account::admin_revoke_sessions(&st, Some(&s.user), id).await {
        Ok(_) => view::redirect("/admin/users?done=sessions_ended"),
        Err(e) => view::error_page(Some(&s), &e),
    }
}

pub async fn admin_reset_mfa(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, .. }: WebForm,
) -> Response {
    match services::account::admin_reset_mfa(&st, Some(&s.user), id).await {
        Ok(_) => view::redirect("/admin/users?done=mfa_reset"),
        Err(e) => view::error_page(Some(&s), &e),
    }
}

pub async fn admin_reset_password(
    State(st): State<AppState>,
    WebId(id): WebId,
    WebForm { s, .. }: WebForm,
) -> Response {
    match services::account::admin_reset_password(&st, Some(&s.user), id).await {
        Ok(link) => view::render(
            StatusCode::OK,
            &AdminResetPage {
                l: Layout::new("Set-password link", &s),
                link: link.path,
                expires: view::dt(&link.expires_at),
            },
        ),
        Err(e) => view::error_page(Some(&s), &e),
    }
}
