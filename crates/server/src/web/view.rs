//! Page plumbing shared by every screen: the layout, form state (values and
//! errors put back into a re-rendered form), error pages, and formatting.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::labs::LabFlag;
use domain::roles::Role;

use crate::error::AppError;
use crate::state::AppState;
use crate::web::session::WebSession;

/// What the page frame needs: title, who is signed in, the logout token.
pub struct Layout {
    pub title: String,
    pub signed_in: bool,
    pub user_name: String,
    pub role: String,
    pub clinician: bool,
    pub staff: bool,
    pub admin: bool,
    pub csrf: String,
    pub notice: Option<String>,
    pub request_id: String,
    /// Seconds of inactivity before the session ends (0: not signed in).
    pub idle_secs: u64,
    /// The clinic's name, at the head of a printed page.
    pub clinic: String,
    /// When the page was drawn (UTC), for a printed page's head.
    pub printed: String,
    /// The content-hashed stylesheet and script addresses.
    pub css: &'static str,
    pub js: &'static str,
}

impl Layout {
    pub fn new(title: impl Into<String>, s: &WebSession) -> Layout {
        let role = s.user.role;
        Layout {
            title: title.into(),
            signed_in: true,
            user_name: s.name.clone(),
            role: role.as_str().to_string(),
            clinician: matches!(role, Role::Provider | Role::Nurse),
            staff: role == Role::Staff,
            admin: role == Role::Admin,
            csrf: s.csrf.clone(),
            notice: None,
            request_id: crate::context::request_id(),
            idle_secs: s.idle_secs,
            clinic: s.clinic.clone(),
            printed: store::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            css: crate::web::assets::css_url(),
            js: crate::web::assets::js_url(),
        }
    }

    pub fn anon(title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            signed_in: false,
            user_name: String::new(),
            role: String::new(),
            clinician: false,
            staff: false,
            admin: false,
            csrf: String::new(),
            notice: None,
            request_id: crate::context::request_id(),
            idle_secs: 0,
            clinic: String::new(),
            printed: String::new(),
            css: crate::web::assets::css_url(),
            js: crate::web::assets::js_url(),
        }
    }

    pub fn maybe(title: impl Into<String>, s: Option<&WebSession>) -> Layout {
        match s {
            Some(s) => Layout::new(title, s),
            None => Layout::anon(title),
        }
    }

    /// A one-line confirmation shown at the top ("Note finalized.").
    pub fn notice(mut self, n: Option<&str>) -> Layout {
        self.notice = n.map(str::to_string);
        self
    }
}

/// The state of the forms on a page: pre-filled or submitted values, and
/// the problem the API answered for one of them.
#[derive(Debug, Default)]
pub struct FormState {
    /// Which form on the page the values and errors belong to.
    pub form: String,
    pub values: HashMap<String, String>,
    pub detail: Option<String>,
    pub code: String,
    pub errors: Vec<(String, String)>,
    /// The problem document's extra members (suggestions, warnings…).
    pub extra: Option<serde_json::Value>,
    /// Pre-filled values of forms that were not submitted, by form.
    pub defaults: HashMap<String, HashMap<String, String>>,
    /// Where the record's current version is shown, offered after a
    /// conflicting edit (409) of a versioned form.
    pub reload: Option<String>,
}

impl FormState {
    pub fn none() -> FormState {
        FormState::default()
    }

    /// Pre-fill `form` with `values`.
    pub fn filled(form: &str, values: HashMap<String, String>) -> FormState {
        FormState::none().with_defaults(form, values)
    }

    /// Pre-fill `form` unless it is the one that was submitted.
    pub fn with_defaults(mut self, form: &str, values: HashMap<String, String>) -> FormState {
        self.defaults.insert(form.to_string(), values);
        self
    }

    /// `form` was submitted with `values` and the API refused it with `err`.
    pub fn failed(form: &str, values: HashMap<String, String>, err: &AppError) -> FormState {
        let errors = match err {
            AppError::Validation(errs) => errs.as_slice(),
            AppError::Unprocessable(u) => u.errors.as_slice(),
            _ => &[],
        };
        let errors = errors
            .iter()
            .map(|e| (e.field.to_string(), e.message.clone()))
            .collect();
        FormState {
            form: form.to_string(),
            values,
            detail: Some(err.detail()),
            code: err.code().to_string(),
            errors,
            extra: match err {
                AppError::Conflict { extra, .. } => extra.clone(),
                AppError::Unprocessable(u) => u.extra.clone(),
                _ => None,
            },
            defaults: HashMap::new(),
            reload: None,
        }
    }

    /// After a conflicting edit, offer `url` (the page showing the current
    /// version) as "reload to see their changes".
    pub fn reload_at(mut self, url: impl Into<String>) -> FormState {
        self.reload = Some(url.into());
        self
    }

    /// The reload link for `form`, when it was refused because the record
    /// changed (a 409 conflict) since the page was drawn.
    pub fn reload_link(&self, form: &str) -> Option<&str> {
        match self.form == form && self.code == "conflict" {
            true => self.reload.as_deref(),
            false => None,
        }
    }

    pub fn is(&self, form: &str) -> bool {
        self.form == form
    }

    /// The value of `key` in `form` ("" if none).
    pub fn v(&self, form: &str, key: &str) -> &str {
        let values = if self.form == form {
            Some(&self.values)
        } else {
            self.defaults.get(form)
        };
        values
            .and_then(|m| m.get(key))
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Whether a checkbox of `form` is ticked.
    pub fn checked(&self, form: &str, key: &str) -> bool {
        let v = self.v(form, key);
        !v.is_empty() && v != "0"
    }

    /// The field error of `key` in `form`.
    pub fn e(&self, form: &str, key: &str) -> Option<&str> {
        if self.form != form {
            return None;
        }
        self.errors
            .iter()
            .find(|(f, _)| f == key)
            .map(|(_, m)| m.as_str())
    }

    /// The problem detail for `form`, if it was refused.
    pub fn alert(&self, form: &str) -> Option<&str> {
        if self.form == form {
            self.detail.as_deref()
        } else {
            None
        }
    }

    /// Field errors of `form` for the summary above it: the field's id
    /// suffix, its name as a clinician says it, and the message.
    pub fn list(&self, form: &str) -> Vec<(String, String, String)> {
        if self.form == form {
            self.errors
                .iter()
                .map(|(k, m)| (k.clone(), field_label(k), m.clone()))
                .collect()
        } else {
            Vec::new()
        }
    }

    pub fn code_is(&self, form: &str, code: &str) -> bool {
        self.form == form && self.code == code
    }
}

/// Render a template as an HTML response.
pub fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>Something went wrong on our side.</p>"),
            )
                .into_response()
        }
    }
}

pub fn ok<T: Template>(t: &T) -> Response {
    render(StatusCode::OK, t)
}

/// 303 See Other to a path of this site.
pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Only local paths may be redirect targets (no `//host`, no scheme).
pub fn safe_next(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && !next.starts_with("/login")
        && !next.starts_with("/logout");
    if ok {
        next
    } else {
        "/"
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    status: u16,
    heading: String,
    detail: String,
}

/// An error page for a problem the API answered (401 goes to sign-in).
pub fn error_page(s: Option<&WebSession>, err: &AppError) -> Response {
    let status = err.status();
    if status == StatusCode::UNAUTHORIZED {
        return redirect("/login");
    }
    let heading = match status.as_u16() {
        403 => "Not allowed",
        404 => "Not found",
        409 => "Conflict",
        413 => "Too large",
        422 => "Check the input",
        429 => "Too many requests",
        s if s >= 500 => "Something went wrong",
        _ => "The request could not be handled",
    };
    let mut resp = render(
        status,
        &ErrorPage {
            l: Layout::maybe(heading, s),
            status: status.as_u16(),
            heading: heading.to_string(),
            detail: err.detail(),
        },
    );
    if let AppError::RateLimited { retry_after } = err {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from((*retry_after).max(1)),
        );
    }
    resp
}

/// The 403 page of a form whose CSRF token or origin is wrong.
pub fn csrf_refused(s: Option<&WebSession>) -> Response {
    tracing::warn!("web form refused: CSRF token or origin mismatch");
    error_page(
        s,
        &AppError::Forbidden(
            "This form was not accepted: it has expired or did not come from this site. Nothing was changed. Go back, reload the page and try again."
                .into(),
        ),
    )
}

/// The page a web request past its rate limit gets (the web limit layer;
/// the sign-in form past the per-IP limit too).
pub fn rate_limited_page(retry_after: u64) -> Response {
    let mut r = error_page(
        None,
        &AppError::RateLimited {
            retry_after: retry_after.max(1),
        },
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

// --- Handler plumbing ----------------------------------------------------------

/// What a page handler answers: the page, or the page that says why not.
pub type Page = Result<Response, Response>;

/// A service result, with its problem turned into the error page.
// The error is the response itself, built once and returned at once: boxing
// it would buy nothing.
#[allow(clippy::result_large_err)]
pub trait OrPage<T> {
    fn or_page(self, s: &WebSession) -> Result<T, Response>;
}

impl<T> OrPage<T> for Result<T, AppError> {
    fn or_page(self, s: &WebSession) -> Result<T, Response> {
        self.map_err(|e| error_page(Some(s), &e))
    }
}

/// The id in a page's path (`/notes/{id}`…); a malformed one is the 404
/// page, as an unknown one is.
pub struct WebId(pub uuid::Uuid);

impl FromRequestParts<AppState> for WebId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let raw = Path::<String>::from_request_parts(parts, st)
            .await
            .map(|p| p.0)
            .unwrap_or_default();
        uuid(&raw)
            .map(WebId)
            .map_err(|e| error_page(parts.extensions.get::<WebSession>(), &e))
    }
}

/// Problems that are not about the form's content get their own page (403,
/// 404, 5xx…); the rest are shown next to the form.
pub fn form_level(e: &AppError) -> bool {
    matches!(
        e,
        AppError::Validation(_)
            | AppError::Unprocessable(_)
            | AppError::Conflict { .. }
            | AppError::BadRequest(_)
            | AppError::PreconditionRequired
            | AppError::RateLimited { .. }
            | AppError::AiRefused { .. }
            | AppError::AiUnavailable { .. }
    )
}

/// After a form's write: on success, go to `ok`'s address (post, redirect,
/// get); on a problem with the form, show the page again with what was
/// typed and the problem next to the form (`again`); otherwise the error
/// page.
pub async fn after_form<T>(
    s: &WebSession,
    r: Result<T, AppError>,
    form: &str,
    values: HashMap<String, String>,
    ok: impl FnOnce(T) -> String,
    again: impl AsyncFnOnce(FormState, StatusCode) -> Page,
) -> Page {
    match r {
        Ok(v) => Ok(redirect(&ok(v))),
        Err(e) => form_problem(s, e, form, values, again).await,
    }
}

/// A form's problem: next to the form on the page drawn again (`again`),
/// or, when it is not about the form, the error page.
pub async fn form_problem(
    s: &WebSession,
    e: AppError,
    form: &str,
    values: HashMap<String, String>,
    again: impl AsyncFnOnce(FormState, StatusCode) -> Page,
) -> Page {
    if form_level(&e) {
        again(FormState::failed(form, values, &e), e.status()).await
    } else {
        Err(error_page(Some(s), &e))
    }
}

// --- Formatting ---------------------------------------------------------------

/// A field's name as a clinician reads it: the API's `birthDate` is
/// "Birth date", `items[0].code` is "Code"; a few names have their usual
/// spelling (MRN, e-mail).
pub fn field_label(key: &str) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    let last = last.split('[').next().unwrap_or(last);
    match last {
        "mrn" => return "MRN".into(),
        "email" => return "E-mail".into(),
        "rxnorm" | "rxNorm" => return "RxNorm code".into(),
        "loinc" | "loincCode" => return "LOINC code".into(),
        "dob" => return "Birth date".into(),
        _ => {}
    }
    let mut out = String::new();
    for (i, c) in last.chars().enumerate() {
        if c == '_' {
            out.push(' ');
        } else if c.is_ascii_uppercase() {
            if i > 0 {
                out.push(' ');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    let mut cs = out.trim().chars();
    match cs.next() {
        Some(f) => f.to_uppercase().chain(cs).collect(),
        None => key.to_string(),
    }
}

pub fn dt(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn opt_dt(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(dt).unwrap_or_default()
}

pub fn num(v: f64) -> String {
    let s = format!("{v}");
    if s.len() > 12 {
        format!("{v:.4}")
    } else {
        s
    }
}

/// Human label of a lab flag.
pub fn flag_label(flag: Option<LabFlag>) -> &'static str {
    match flag {
        Some(LabFlag::Normal) => "Normal",
        Some(LabFlag::Low) => "Low",
        Some(LabFlag::High) => "High",
        Some(LabFlag::CriticalLow) => "CRITICAL LOW",
        Some(LabFlag::CriticalHigh) => "CRITICAL HIGH",
        None => "No range",
    }
}

/// CSS class of a lab flag.
pub fn flag_class(flag: Option<LabFlag>) -> &'static str {
    match flag {
        Some(LabFlag::Normal) => "flag flag-normal",
        Some(LabFlag::Low | LabFlag::High) => "flag flag-abnormal",
        Some(LabFlag::CriticalLow | LabFlag::CriticalHigh) => "flag flag-critical",
        None => "flag flag-none",
    }
}

/// Parse a path id; a malformed one is simply "not found".
pub fn uuid(s: &str) -> Result<uuid::Uuid, AppError> {
    uuid::Uuid::parse_str(s).map_err(|_| AppError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::field_label;

    #[test]
    fn field_names_are_the_words_a_clinician_uses() {
        assert_eq!(field_label("birthDate"), "Birth date");
        assert_eq!(field_label("givenName"), "Given name");
        assert_eq!(field_label("mrn"), "MRN");
        assert_eq!(field_label("email"), "E-mail");
        assert_eq!(field_label("items[0].doseUnit"), "Dose unit");
        assert_eq!(field_label("password"), "Password");
    }
}
