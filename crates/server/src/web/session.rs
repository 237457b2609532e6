//! Web sessions: the API's own tokens kept in cookies, transparent refresh,
//! and CSRF protection for every form.
//!
//! * `amal_access` / `amal_refresh` hold the access and refresh tokens of a
//!   normal API sign-in (HttpOnly, SameSite=Strict, Path=/, Secure in
//!   production). The access cookie is verified with the API's own
//!   [`authenticate_token`]; when it has expired, the refresh cookie is
//!   rotated once through [`services::auth::refresh`] and both cookies are
//!   replaced.
//! * Every form of a signed-in page carries `_csrf` = HMAC-SHA256 of the
//!   session id under a key derived from `JWT_SECRET`; the sign-in form uses a
//!   pre-session nonce cookie (`amal_csrf`, double-submit, HMAC-bound). An
//!   `Origin` header, when sent, must name this host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::auth::extract::authenticate_token;
use crate::auth::AuthUser;
use crate::config::Environment;
use crate::credentials::tokens::keyed_hash;
use crate::error::AppError;
use crate::services;
use crate::state::AppState;
use crate::web::view;

pub const ACCESS: &str = "amal_access";
pub const REFRESH: &str = "amal_refresh";
pub const LOGIN_CSRF: &str = "amal_csrf";

/// `Set-Cookie` values produced while handling a request (a refresh inside
/// an extractor, a sign-in, a sign-out), added to the response by
/// [`cookie_layer`].
#[derive(Clone, Default)]
pub struct Outgoing(Arc<Mutex<Vec<HeaderValue>>>);

impl Outgoing {
    pub fn push(&self, v: HeaderValue) {
        if let Ok(mut g) = self.0.lock() {
            g.push(v);
        }
    }

    fn take(&self) -> Vec<HeaderValue> {
        self.0
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }
}

/// The request's outgoing cookies, as a handler argument.
impl<S: Send + Sync> FromRequestParts<S> for Outgoing {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(outgoing(&parts.extensions))
    }
}

/// Outermost layer of the web pages: collects cookies set during the
/// request and keeps pages (which hold patient data) out of caches.
pub async fn cookie_layer(mut req: Request, next: Next) -> Response {
    let out = Outgoing::default();
    req.extensions_mut().insert(out.clone());
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for c in out.take() {
        h.append(header::SET_COOKIE, c);
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// The request's cookies (the first value of each name), parsed by the
/// `cookie` crate; a malformed pair is skipped.
pub fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    let mut jar = HashMap::new();
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for c in Cookie::split_parse(v).flatten() {
            jar.entry(c.name().to_string())
                .or_insert_with(|| c.value().to_string());
        }
    }
    jar
}

/// `Secure` in production, and whenever `amal` itself serves HTTPS.
fn secure(st: &AppState) -> bool {
    st.config.env == Environment::Production || st.config.tls.is_some()
}

/// The prefix of every cookie name when cookies are `Secure` (HTTPS, or
/// production behind a TLS proxy): a `__Host-` cookie is accepted by a
/// browser only from a secure origin, with `Path=/` and no `Domain`, so a
/// sibling subdomain or a plain-HTTP attacker cannot plant one.
const HOST_PREFIX: &str = "__Host-";

fn wire_name(st: &AppState, name: &str) -> String {
    if secure(st) {
        format!("{HOST_PREFIX}{name}")
    } else {
        name.to_string()
    }
}

/// The request's cookies under their plain names (`amal_access`…): over
/// TLS only the `__Host-` ones count, elsewhere only the unprefixed ones.
pub fn jar(st: &AppState, headers: &HeaderMap) -> HashMap<String, String> {
    let want_prefix = secure(st);
    cookies(headers)
        .into_iter()
        .filter_map(|(k, v)| match k.strip_prefix(HOST_PREFIX) {
            Some(plain) if want_prefix => Some((plain.to_string(), v)),
            None if !want_prefix => Some((k, v)),
            _ => None,
        })
        .collect()
}

/// A session cookie: host-only, script-proof, same-site only, and with no
/// `Max-Age`, so it ends with the browser session.
fn session_cookie(st: &AppState, name: &str, value: &str) -> Cookie<'static> {
    Cookie::build((wire_name(st, name), value.to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(st))
        .build()
}

fn header_of(c: &Cookie<'_>) -> Option<HeaderValue> {
    HeaderValue::from_str(&c.to_string()).ok()
}

pub fn set_cookie(st: &AppState, name: &str, value: &str) -> Option<HeaderValue> {
    header_of(&session_cookie(st, name, value))
}

/// A short-lived cookie for one page (`path`), carrying something to show
/// once after a redirect (a new invitation's code).
pub fn flash_cookie(st: &AppState, name: &str, value: &str, path: &str) -> Option<HeaderValue> {
    let mut c = session_cookie(st, name, value);
    c.set_path(path.to_string());
    c.set_max_age(cookie::time::Duration::minutes(5));
    header_of(&c)
}

/// Clear a [`flash_cookie`].
pub fn clear_flash(st: &AppState, name: &str, path: &str) -> Option<HeaderValue> {
    let mut c = session_cookie(st, name, "");
    c.set_path(path.to_string());
    c.set_max_age(cookie::time::Duration::ZERO);
    header_of(&c)
}

pub fn clear_cookie(st: &AppState, name: &str) -> Option<HeaderValue> {
    let mut c = session_cookie(st, name, "");
    c.set_max_age(cookie::time::Duration::ZERO);
    header_of(&c)
}

pub fn outgoing(parts_ext: &axum::http::Extensions) -> Outgoing {
    parts_ext.get::<Outgoing>().cloned().unwrap_or_default()
}

/// Queue the cookies of a fresh token pair.
pub fn store_tokens(st: &AppState, out: &Outgoing, access: &str, refresh: &str) {
    for c in [
        set_cookie(st, ACCESS, access),
        set_cookie(st, REFRESH, refresh),
    ]
    .into_iter()
    .flatten()
    {
        out.push(c);
    }
}

pub fn clear_tokens(st: &AppState, out: &Outgoing) {
    for c in [clear_cookie(st, ACCESS), clear_cookie(st, REFRESH)]
        .into_iter()
        .flatten()
    {
        out.push(c);
    }
}

// --- CSRF -----------------------------------------------------------------

fn csrf_key(st: &AppState) -> Vec<u8> {
    keyed_hash(
        st.config.jwt_secret.expose_secret().as_bytes(),
        "amal-web-csrf-v1",
    )
    .into_bytes()
}

/// The CSRF token of a session: HMAC-SHA256 of its id.
pub fn csrf_token(st: &AppState, session: Uuid) -> String {
    keyed_hash(&csrf_key(st), &format!("session:{session}"))
}

/// The sign-in form's token, bound to the pre-session nonce cookie.
pub fn login_token(st: &AppState, nonce: &str) -> String {
    keyed_hash(&csrf_key(st), &format!("login:{nonce}"))
}

pub fn plausible_nonce(n: &str) -> bool {
    n.len() == 43
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Constant-time comparison of a submitted token with the expected one.
pub fn same(a: &str, b: &str) -> bool {
    crate::credentials::tokens::same_secret(a.as_bytes(), b.as_bytes())
}

/// An `Origin` header, if present, must be this host (scheme aside). Under
/// the site's `Referrer-Policy: no-referrer` browsers send `Origin: null`
/// even for same-origin forms; that is accepted only when the browser also
/// says `Sec-Fetch-Site: same-origin`. A `Sec-Fetch-Site` naming another
/// site is refused outright.
pub fn origin_ok(headers: &HeaderMap) -> bool {
    let site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or("invalid"));
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    if origin.as_bytes() == b"null" {
        return site == Some("same-origin");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!(rest, Some(h) if !host.is_empty() && h.eq_ignore_ascii_case(host))
}

// --- The signed-in user ---------------------------------------------------

/// A signed-in web user: the API's [`AuthUser`], their name for the page
/// header, and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub user: AuthUser,
    pub name: String,
    pub email: String,
    pub csrf: String,
    /// The inactivity limit in seconds, for the page's warning.
    pub idle_secs: u64,
    /// `AMAL_CLINIC_NAME`, for the head of printed pages.
    pub clinic: String,
}

/// Authenticate from the cookies; refresh once when the access token is no
/// longer valid. `Ok(None)`: not signed in (stale cookies are cleared).
async fn resolve(parts: &Parts, st: &AppState) -> Result<Option<WebSession>, AppError> {
    let jar = jar(st, &parts.headers);
    let out = outgoing(&parts.extensions);
    let mut user = None;
    if let Some(t) = jar.get(ACCESS).filter(|t| !t.is_empty()) {
        match authenticate_token(st, t).await {
            Ok(u) => user = Some(u),
            Err(AppError::Unauthorized(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if user.is_none() {
        if let Some(rt) = jar.get(REFRESH).filter(|t| !t.is_empty()) {
            let req = services::auth::RefreshRequest {
                refresh_token: rt.clone(),
            };
            match services::auth::refresh(st, req).await {
                Ok(pair) => {
                    store_tokens(st, &out, &pair.access_token, &pair.refresh_token);
                    match authenticate_token(st, &pair.access_token).await {
                        Ok(u) => user = Some(u),
                        Err(AppError::Unauthorized(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(AppError::Unauthorized(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let Some(user) = user else {
        if jar.contains_key(ACCESS) || jar.contains_key(REFRESH) {
            clear_tokens(st, &out);
        }
        return Ok(None);
    };
    let me = match services::auth::me(st, &user).await {
        Ok(me) => me,
        Err(AppError::Unauthorized(_)) => {
            clear_tokens(st, &out);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(Some(WebSession {
        user,
        name: me.name,
        email: me.email,
        csrf: csrf_token(st, user.session),
        idle_secs: st.config.idle_timeout.as_secs(),
        clinic: st.config.clinic_name.clone(),
    }))
}

/// Where to send someone who must sign in first.
fn to_login(parts: &Parts) -> Response {
    if parts.method == Method::GET {
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        if here != "/" {
            let q = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
            return view::redirect(&format!("/login?{q}"));
        }
    }
    view::redirect("/login")
}

impl FromRequestParts<AppState> for WebSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        if let Some(s) = parts.extensions.get::<WebSession>() {
            return Ok(s.clone());
        }
        match resolve(parts, st).await {
            Ok(Some(s)) => {
                parts.extensions.insert(s.clone());
                Ok(s)
            }
            Ok(None) => Err(to_login(parts)),
            Err(e) => Err(view::error_page(None, &e)),
        }
    }
}

/// The session if there is one (for the sign-in page).
pub struct MaybeSession(pub Option<WebSession>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        match resolve(parts, st).await {
            Ok(s) => Ok(MaybeSession(s)),
            Err(e) => Err(view::error_page(None, &e)),
        }
    }
}

// --- Forms ------------------------------------------------------------------

/// The fields of a submitted `application/x-www-form-urlencoded` form.
#[derive(Debug, Default, Clone)]
pub struct Fields(pub HashMap<String, String>);

impl Fields {
    /// The raw value ("" when absent).
    pub fn get(&self, k: &str) -> String {
        self.0.get(k).cloned().unwrap_or_default()
    }

    /// `None` when absent or blank.
    pub fn opt(&self, k: &str) -> Option<String> {
        self.0.get(k).filter(|v| !v.trim().is_empty()).cloned()
    }

    pub fn checked(&self, k: &str) -> bool {
        self.0.get(k).is_some_and(|v| !v.is_empty() && v != "0")
    }

    /// The values to put back into a re-rendered form (never the token).
    pub fn values(&self) -> HashMap<String, String> {
        let mut m = self.0.clone();
        m.remove("_csrf");
        m.remove("password");
        m
    }
}

/// Read a urlencoded body (size-limited by the router's body limit).
pub async fn read_fields(req: Request, st: &AppState) -> Result<Fields, Response> {
    let bytes = axum::body::Bytes::from_request(req, st)
        .await
        .map_err(|e| {
            let err = if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::BadRequest("The form could not be read.".into())
            };
            view::error_page(None, &err)
        })?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|_| {
        view::error_page(
            None,
            &AppError::BadRequest("The form could not be read (it is not valid text).".into()),
        )
    })?;
    let mut m = HashMap::new();
    for (k, v) in pairs {
        m.entry(k).or_insert(v);
    }
    Ok(Fields(m))
}

/// A CSRF-checked form from a signed-in user.
pub struct WebForm {
    pub s: WebSession,
    pub f: Fields,
}

impl FromRequest<AppState> for WebForm {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let s = WebSession::from_request_parts(&mut parts, st).await?;
        if !origin_ok(&parts.headers) {
            return Err(view::csrf_refused(Some(&s)));
        }
        let f = read_fields(Request::from_parts(parts, body), st).await?;
        if !same(&f.get("_csrf"), &s.csrf) {
            return Err(view::csrf_refused(Some(&s)));
        }
        Ok(WebForm { s, f })
    }
}

/// `POST /session/alive`: "Stay signed in" on the inactivity warning. The
/// CSRF-checked form itself is the activity (the session's clock restarts
/// when it is authenticated); answers 204, or the sign-in redirect when the
/// session has already ended.
pub async fn alive(form: WebForm) -> Response {
    let WebForm { .. } = form;
    axum::http::StatusCode::NO_CONTENT.into_response()
}
