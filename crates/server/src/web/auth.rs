//! Sign-in and sign-out through the API's own handlers.

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::error::AppError;
use crate::services::{auth, users};
use crate::state::AppState;
use crate::web::models::notice;
use crate::web::session::{self, MaybeSession, WebForm};
use crate::web::view::{self, FormState, Layout};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    f: FormState,
    csrf: String,
    next: String,
    /// No account exists yet: say where the setup link is.
    first_run: bool,
}

#[derive(Debug, Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
    done: Option<String>,
}

/// The nonce of the pre-session CSRF cookie, creating one when needed.
pub fn login_nonce(
    st: &AppState,
    headers: &axum::http::HeaderMap,
    out: &session::Outgoing,
) -> String {
    match session::jar(st, headers).get(session::LOGIN_CSRF) {
        Some(n) if session::plausible_nonce(n) => n.clone(),
        _ => {
            let n = crate::credentials::tokens::new_nonce();
            if let Some(c) = session::set_cookie(st, session::LOGIN_CSRF, &n) {
                out.push(c);
            }
            n
        }
    }
}

async fn login_form(
    st: &AppState,
    status: StatusCode,
    nonce: &str,
    f: FormState,
    next: &str,
    done: Option<&str>,
) -> Response {
    view::render(
        status,
        &LoginPage {
            l: Layout::anon("Sign in").notice(notice(done)),
            f,
            csrf: session::login_token(st, nonce),
            next: view::safe_next(next).to_string(),
            first_run: users::setup_pending(st).await.unwrap_or(false),
        },
    )
}

pub async fn login_page(
    State(st): State<AppState>,
    MaybeSession(s): MaybeSession,
    Query(q): Query<LoginQuery>,
    req: Request,
) -> Response {
    let next = q.next.as_deref().unwrap_or("/");
    if s.is_some() {
        return view::redirect(view::safe_next(next));
    }
    let out = session::outgoing(req.extensions());
    let nonce = login_nonce(&st, req.headers(), &out);
    login_form(
        &st,
        StatusCode::OK,
        &nonce,
        FormState::none(),
        next,
        q.done.as_deref(),
    )
    .await
}

/// A form posted before there is a session (sign-in, its second step,
/// sign-up, first-run setup, set-password), checked against the
/// pre-session CSRF cookie and the origin.
pub struct AnonForm {
    pub f: session::Fields,
    pub nonce: String,
    pub out: session::Outgoing,
}

// The error is the 403 page itself, returned at once.
#[allow(clippy::result_large_err)]
pub async fn anon_form(st: &AppState, req: Request) -> Result<AnonForm, Response> {
    let headers = req.headers().clone();
    let out = session::outgoing(req.extensions());
    let jar = session::jar(st, &headers);
    let f = session::read_fields(req, st).await?;
    let nonce = jar
        .get(session::LOGIN_CSRF)
        .filter(|n| session::plausible_nonce(n));
    let token_ok =
        nonce.is_some_and(|n| session::same(&f.get("_csrf"), &session::login_token(st, n)));
    if !session::origin_ok(&headers) || !token_ok {
        return Err(view::csrf_refused(None));
    }
    Ok(AnonForm {
        f,
        nonce: nonce.cloned().unwrap_or_default(),
        out,
    })
}

/// Sign in (after the sign-in form, a sign-up or the first run's setup):
/// the second-factor page when one is needed, else the session cookies,
/// the pre-session nonce cleared, and on to `to`.
pub(crate) async fn sign_in_and_go(
    st: &AppState,
    out: &session::Outgoing,
    nonce: &str,
    email: String,
    password: String,
    to: &str,
) -> Result<Response, AppError> {
    match auth::signin(st, auth::SigninRequest { email, password }).await? {
        auth::SigninResult::SecondFactor(step) => {
            Ok(crate::web::account::second_step_page(st, nonce, &step, to).await)
        }
        auth::SigninResult::Tokens(pair) => {
            session::store_tokens(st, out, &pair.access_token, &pair.refresh_token);
            if let Some(c) = session::clear_cookie(st, session::LOGIN_CSRF) {
                out.push(c);
            }
            Ok(view::redirect(to))
        }
    }
}

/// `POST /login`: counted in the API's `auth:signin` bucket by the
/// rate-limit layer, checked against the pre-session CSRF cookie, then
/// handed to the API's sign-in handler.
pub async fn login(State(st): State<AppState>, req: Request) -> Response {
    let AnonForm { f, nonce, out } = match anon_form(&st, req).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let next = f.get("next");
    let (email, password) = (f.get("email"), f.get("password"));
    match sign_in_and_go(&st, &out, &nonce, email, password, view::safe_next(&next)).await {
        Ok(r) => r,
        Err(e) => {
            let status = e.status();
            let mut resp = login_form(
                &st,
                status,
                &nonce,
                FormState::failed("login", f.values(), &e),
                &next,
                None,
            )
            .await;
            if let AppError::RateLimited { retry_after } = e {
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(retry_after.max(1)),
                );
            }
            resp
        }
    }
}

/// `POST /logout`: ends the session through the logout service and
/// clears the cookies.
pub async fn logout(State(st): State<AppState>, req: Request) -> Response {
    let out = session::outgoing(req.extensions());
    let jar = session::jar(&st, req.headers());
    let WebForm { .. } =
        match <WebForm as axum::extract::FromRequest<AppState>>::from_request(req, &st).await {
            Ok(f) => f,
            Err(r) => return r,
        };
    if let Some(rt) = jar.get(session::REFRESH) {
        let body = auth::RefreshRequest {
            refresh_token: rt.clone(),
        };
        if let Err(e) = auth::logout(&st, body).await {
            return view::error_page(None, &e);
        }
    }
    session::clear_tokens(&st, &out);
    view::redirect("/login?done=signed_out")
}
