//! Sign-in and sign-out through the API's own handlers.

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::error::AppError;
use crate::services::auth;
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
            let n = session::new_nonce();
            if let Some(c) = session::set_cookie(st, session::LOGIN_CSRF, &n) {
                out.push(c);
            }
            n
        }
    }
}

fn login_form(
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
}

/// A form posted before there is a session (sign-in, its second step,
/// set-password), checked against the pre-session CSRF cookie.
pub struct AnonForm {
    pub f: session::Fields,
    pub nonce: String,
    pub out: session::Outgoing,
}

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

/// `POST /login`: counted in the API's `auth:signin` bucket by the
/// rate-limit layer, checked against the pre-session CSRF cookie, then
/// handed to the API's sign-in handler.
pub async fn login(State(st): State<AppState>, req: Request) -> Response {
    let AnonForm { f, nonce, out } = match anon_form(&st, req).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let next = f.get("next");
    let req = auth::SigninRequest {
        email: f.get("email"),
        password: f.get("password"),
    };
    match auth::signin(&st, req).await {
        Ok(auth::SigninResult::SecondFactor(step)) => {
            crate::web::account::second_step_page(&st, &nonce, &step, &next).await
        }
        Ok(auth::SigninResult::Tokens(pair)) => {
            session::store_tokens(&st, &out, &pair.access_token, &pair.refresh_token);
            if let Some(c) = session::clear_cookie(&st, session::LOGIN_CSRF) {
                out.push(c);
            }
            view::redirect(view::safe_next(&next))
        }
        Err(e) => {
            let status = e.status();
            let mut resp = login_form(
                &st,
                status,
                &nonce,
                FormState::failed("login", f.values(), &e),
                &next,
                None,
            );
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
