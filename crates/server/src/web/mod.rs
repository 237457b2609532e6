//! The server-rendered web UI (SPEC §1): plain HTML pages over the same
//! service functions as the JSON API.
//!
//! Every page and every action calls [`crate::services`], so permissions,
//! validation, audit and metrics are exactly the API's; this module only
//! turns forms into service inputs and answers (or problems) into pages.
//! See `docs/WEB_UI.md`.

mod access;
mod account;
mod admin;
mod ai;
pub mod assets;
mod auth;
mod chart;
mod clinical;
mod labs;
mod models;
mod notes;
mod patients;
mod prescriptions;
pub mod session;
mod signup;
pub mod view;
mod vitals;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::class::{classify_web, Class};
use crate::state::AppState;
use crate::traffic::{add_headers, charge, Subject};
use crate::web::session::WebSession;

pub use view::{form_level, rate_limited_page};

/// The web UI's routes. Merged into the application router, so they pass
/// through the same request, security-header and rate-limit layers as the
/// API.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(patients::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/setup", get(signup::setup_page).post(signup::setup))
        .route("/signup", get(signup::signup_page).post(signup::signup))
        .route("/session/alive", post(session::alive))
        .route("/login/mfa", post(account::login_mfa))
        .route("/login/mfa/confirm", post(account::login_mfa_confirm))
        .route(
            "/set-password",
            get(account::set_password_page).post(account::set_password),
        )
        .route("/account", get(account::account))
        .route("/account/password", post(account::change_password))
        .route(
            "/account/mfa",
            get(account::mfa_setup).post(account::mfa_confirm),
        )
        .route("/account/sessions/end-all", post(account::end_all_sessions))
        .route("/account/sessions/{id}/end", post(account::end_session))
        .route(
            "/admin/users/{id}/sessions/end",
            post(account::admin_end_sessions),
        )
        .route(
            "/admin/users/{id}/mfa/reset",
            post(account::admin_reset_mfa),
        )
        .route(
            "/admin/users/{id}/password-reset",
            post(account::admin_reset_password),
        )
        // Demographics (staff, nurses, providers)
        .route("/patients", get(patients::search).post(patients::create))
        .route("/patients/new", get(patients::new_form))
        .route("/patients/{id}", get(clinical::chart))
        .route(
            "/patients/{id}/edit",
            get(patients::edit_form).post(patients::update),
        )
        // The chart
        .route("/patients/{id}/allergies", post(clinical::add_allergy))
        .route("/patients/{id}/allergies/none", post(clinical::state_nkda))
        .route(
            "/patients/{id}/allergies/{entry}",
            post(clinical::update_allergy),
        )
        .route("/patients/{id}/problems", post(clinical::add_problem))
        .route(
            "/patients/{id}/problems/{entry}",
            post(clinical::update_problem),
        )
        .route(
            "/patients/{id}/vitals",
            get(vitals::list).post(vitals::create),
        )
        .route("/patients/{id}/ai/draft", post(ai::draft_note))
        .route("/patients/{id}/notes", get(notes::list).post(notes::create))
        .route("/patients/{id}/notes/new", get(notes::new_form))
        .route("/notes/{id}", get(notes::show))
        .route("/notes/{id}/edit", post(notes::update))
        .route("/notes/{id}/discard", post(notes::discard))
        .route("/notes/{id}/finalize", post(notes::finalize))
        .route("/notes/{id}/addenda", post(notes::add_addendum))
        .route(
            "/patients/{id}/prescriptions",
            get(prescriptions::list).post(prescriptions::create),
        )
        .route("/prescriptions/{id}", get(prescriptions::show))
        .route("/prescriptions/{id}/issue", post(prescriptions::issue))
        .route("/prescriptions/{id}/cancel", post(prescriptions::cancel))
        .route("/patients/{id}/labs", get(labs::list).post(labs::create))
        .route("/patients/{id}/labs/trend", get(labs::trend))
        .route("/labs/{id}", get(labs::show))
        .route("/labs/{id}/review", post(labs::review))
        .route("/labs/{id}/explain", post(ai::explain))
        // Administration
        .route("/admin", get(admin::home))
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{id}", post(admin::update_user))
        .route("/admin/invites", post(admin::create_invite))
        .route("/patients/{id}/break-glass", post(access::break_glass))
        .route("/admin/teams", get(access::teams).post(access::create_team))
        .route("/admin/teams/{id}", get(access::team))
        .route("/admin/teams/{id}/membership", post(access::membership))
        .route("/admin/teams/{id}/settings", post(access::settings))
        .route("/admin/teams/{id}/delete", post(access::delete_team))
        .route("/admin/reviews", get(access::reviews))
        .route(
            "/admin/reviews/break-glass/{id}",
            post(access::review_break_glass),
        )
        .route("/admin/reviews/accounts/{id}", post(access::review_account))
        .route("/admin/invites/{id}/revoke", post(admin::revoke_invite))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/audit.csv", get(admin::audit_csv))
        .route("/admin/audit/verify", get(admin::verify))
        .route("/admin/metrics", get(admin::metrics))
        .route("/admin/alerts", get(admin::alerts))
        .layer(axum::middleware::from_fn_with_state(state, limit_layer))
        .layer(axum::middleware::from_fn(session::cookie_layer))
        .route("/static/{file}", get(assets::file))
        .route("/favicon.svg", get(assets::favicon))
        .route("/favicon.ico", get(assets::favicon))
        // HTML, CSS and JS compressed (gzip or br, as the browser accepts).
        .layer(tower_http::compression::CompressionLayer::new())
}

/// Web pages count against the same limits as the API calls they stand for
/// (SPEC §5), through the same path (`traffic::charge`): a chart page is a
/// read, a form a write, the sign-in form a sign-in per IP. A request
/// without a session is not counted here; it is sent to the sign-in page.
async fn limit_layer(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let class = classify_web(req.method(), req.uri().path());
    if let Some(ctx) = crate::context::current() {
        ctx.set_class(class.clone());
    }
    let (mut parts, body) = req.into_parts();
    let who = match &class {
        Class::Other(_) => return next.run(Request::from_parts(parts, body)).await,
        Class::Auth(_) => Subject::Ip,
        _ => match WebSession::from_request_parts(&mut parts, &st).await {
            Ok(s) => Subject::User(s.user.id),
            Err(to_login) => return to_login,
        },
    };
    let endpoint = crate::http::route_template(parts.uri.path());
    let d = match charge(&st, &class, who, &endpoint).await {
        Ok(Some(d)) => d,
        Ok(None) => return next.run(Request::from_parts(parts, body)).await,
        Err(e) => return view::error_page(parts.extensions.get::<WebSession>(), &e),
    };
    let mut resp = if d.allowed {
        next.run(Request::from_parts(parts, body)).await
    } else {
        rate_limited_page(d.reset_secs.max(1))
    };
    add_headers(&mut resp, &d);
    resp
}

/// The router's fallback: unknown paths get a problem document under `/api`
/// and `/fhir` (and for clients that ask for JSON), the HTML 404 page for the
/// web UI's paths. It lives with the pages so that the core middleware knows
/// nothing of them.
pub async fn not_found(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> Response {
    let path = uri.path();
    let wants_json = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json") && !a.contains("text/html"));
    let api = path == "/api" || path.starts_with("/api/") || path.starts_with("/fhir");
    if api || path == "/metrics" || wants_json {
        axum::response::IntoResponse::into_response(crate::error::AppError::NotFound)
    } else {
        view::error_page(None, &crate::error::AppError::NotFound)
    }
}
