//! The server-rendered web UI (SPEC §1): plain HTML pages over the JSON
//! API's own handlers.
//!
//! Every page and every action calls the handler functions of
//! [`crate::routes`] directly, so permissions, validation, audit and metrics
//! are exactly the API's; this module only turns forms into handler inputs
//! and handler answers (or problems) into pages. See `docs/WEB_UI.md`.

mod admin;
mod ai;
mod auth;
mod clinical;
mod labs;
mod models;
mod notes;
mod patients;
mod prescriptions;
pub mod session;
pub mod view;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::AppError;
use crate::state::AppState;
use crate::web::session::WebSession;

pub use view::{is_html, rate_limited_page};

const APP_CSS: &str = include_str!("../../static/app.css");
const APP_JS: &str = include_str!("../../static/app.js");

/// The web UI's routes. Merged into the application router, so they pass
/// through the same request, security-header and rate-limit layers as the
/// API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(patients::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
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
        .route("/patients/{id}/problems", post(clinical::add_problem))
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
        .route("/admin/audit", get(admin::audit))
        .route("/admin/audit/verify", get(admin::verify))
        .route("/admin/metrics", get(admin::metrics))
        .layer(axum::middleware::from_fn(session::cookie_layer))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// Count a web request against the same per-user bucket the API uses for
/// its class (`write` or `ai`), so the UI is no way around SPEC §5.
pub(crate) async fn limit(st: &AppState, s: &WebSession, class: &str) -> Result<(), AppError> {
    let limits = st.config.rate_limits;
    let rate = if class == "ai" {
        limits.ai
    } else {
        limits.write
    };
    let d = st
        .limiter
        .hit(&format!("{class}:{}", s.user.id), rate)
        .await
        .map_err(AppError::Internal)?;
    if d.allowed {
        Ok(())
    } else {
        st.metrics.incr("rate_limit.hit");
        st.metrics.incr(&format!("rate_limit.hit.{class}"));
        Err(AppError::RateLimited {
            retry_after: d.reset_secs.max(1),
        })
    }
}

/// Count a clinical write as the API's request layer does
/// (`write.<resource>.success|error`).
pub(crate) fn count_write<T>(st: &AppState, resource: &str, r: &Result<T, AppError>) {
    let outcome = if r.is_ok() { "success" } else { "error" };
    st.metrics.incr(&format!("write.{resource}.{outcome}"));
}

/// Problems that are not about the form's content get their own page (403,
/// 404, 5xx…); the rest are shown next to the form by `rerender`.
pub(crate) fn form_level(e: &AppError) -> bool {
    matches!(
        e,
        AppError::Validation(_)
            | AppError::Conflict { .. }
            | AppError::BadRequest(_)
            | AppError::PreconditionRequired
            | AppError::RateLimited { .. }
            | AppError::AiRefused { .. }
            | AppError::AiUnavailable { .. }
    )
}
