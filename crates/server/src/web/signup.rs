//! Accounts made from the browser: the first run's setup page (the first
//! administrator, `services::users::first_admin`) and the invited
//! colleague's sign-up page (`services::auth::signup`), both followed by a
//! sign-in through the sign-in service.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::account::SignupPolicy;
use serde::Deserialize;

use crate::error::AppError;
use crate::services::{auth, users};
use crate::state::AppState;
use crate::web::auth::{anon_form, login_nonce, sign_in_and_go, AnonForm};
use crate::web::session::{self, MaybeSession};
use crate::web::view::{self, FormState, Layout};

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    l: Layout,
    f: FormState,
    csrf: String,
    action: &'static str,
    /// The first run's setup (the first administrator) instead of a sign-up.
    setup: bool,
    invite_needed: bool,
}

#[derive(Debug, Deserialize, Default)]
pub struct CodeQuery {
    code: Option<String>,
}

fn page(st: &AppState, status: StatusCode, nonce: &str, setup: bool, f: FormState) -> Response {
    view::render(
        status,
        &SignupPage {
            l: Layout::anon(if setup {
                "Set up this clinic"
            } else {
                "Create your account"
            }),
            f,
            csrf: session::login_token(st, nonce),
            action: if setup { "/setup" } else { "/signup" },
            setup,
            invite_needed: st.config.signup == SignupPolicy::Invite,
        },
    )
}

/// A fresh form (GET), with the code from the link filled in.
fn fresh(st: &AppState, req: &Request, setup: bool, code: Option<String>) -> Response {
    let out = session::outgoing(req.extensions());
    let nonce = login_nonce(st, req.headers(), &out);
    let key = if setup { "code" } else { "inviteCode" };
    let values = HashMap::from([(key.to_string(), code.unwrap_or_default())]);
    page(
        st,
        StatusCode::OK,
        &nonce,
        setup,
        FormState::filled("signup", values),
    )
}

/// `GET /setup?code=…`: only while no account exists and with this
/// process's code; otherwise the 404 page (nothing to set up here).
pub async fn setup_page(
    State(st): State<AppState>,
    Query(q): Query<CodeQuery>,
    req: Request,
) -> Response {
    let code = q.code.unwrap_or_default();
    let open = users::setup_pending(&st).await.unwrap_or(false);
    if !open || !st.first_run.accepts(&code) {
        return view::error_page(None, &AppError::NotFound);
    }
    fresh(&st, &req, true, Some(code))
}

/// `GET /signup?code=…`: the invitation link.
pub async fn signup_page(
    State(st): State<AppState>,
    MaybeSession(s): MaybeSession,
    Query(q): Query<CodeQuery>,
    req: Request,
) -> Response {
    if s.is_some() {
        return view::redirect("/");
    }
    fresh(&st, &req, false, q.code)
}

/// A refused account form, drawn again with what was typed (no password).
fn refused(st: &AppState, nonce: &str, setup: bool, f: &session::Fields, e: &AppError) -> Response {
    if !view::form_level(e) && !matches!(e, AppError::Forbidden(_)) {
        return view::error_page(None, e);
    }
    page(
        st,
        e.status(),
        nonce,
        setup,
        FormState::failed("signup", f.values(), e),
    )
}

/// `POST /setup`: the first administrator, then signed in on the user list.
pub async fn setup(State(st): State<AppState>, req: Request) -> Response {
    let AnonForm { f, nonce, out } = match anon_form(&st, req).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let made = users::first_admin(
        &st,
        users::FirstAdminRequest {
            code: f.get("code"),
            email: f.get("email"),
            name: f.get("name"),
            password: f.get("password"),
        },
    )
    .await;
    match made {
        Ok(u) => match sign_in_and_go(
            &st,
            &out,
            &nonce,
            u.email,
            f.get("password"),
            "/admin/users?done=first_admin",
        )
        .await
        {
            Ok(r) => r,
            Err(e) => view::error_page(None, &e),
        },
        Err(e) => refused(&st, &nonce, true, &f, &e),
    }
}

/// `POST /signup`: the API's sign-up; an active account (an invitation) is
/// signed in at once, a pending one is told to wait for an administrator.
pub async fn signup(State(st): State<AppState>, req: Request) -> Response {
    let AnonForm { f, nonce, out } = match anon_form(&st, req).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let made = auth::signup(
        &st,
        auth::SignupRequest {
            email: f.get("email"),
            password: f.get("password"),
            name: f.get("name"),
            invite_code: f.opt("inviteCode"),
        },
    )
    .await;
    match made {
        Ok(u) if u.status.is_active() => {
            match sign_in_and_go(
                &st,
                &out,
                &nonce,
                u.email,
                f.get("password"),
                "/?done=signed_up",
            )
            .await
            {
                Ok(r) => r,
                Err(e) => view::error_page(None, &e),
            }
        }
        Ok(_) => view::redirect("/login?done=signup_pending"),
        Err(e) => refused(&st, &nonce, false, &f, &e),
    }
}
