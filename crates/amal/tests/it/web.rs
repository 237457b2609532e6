//! The server-rendered web UI: sessions in cookies, CSRF, roles, escaping,
//! security headers, and one real browser (Debian's chromium through
//! chromedriver) walking a provider's day.

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// A minimal browser: keeps cookies by hand (so tests can see and tamper
/// with them) and never follows redirects.
pub(crate) struct Web {
    base: String,
    client: reqwest::Client,
    jar: Mutex<HashMap<String, String>>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The first CSRF token on the page.
    pub(crate) fn csrf(&self) -> String {
        field_value(&self.body, "_csrf").expect("a CSRF token on the page")
    }

    fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
}

/// `value` of the first `<input name="NAME" value="…">`.
pub(crate) fn field_value(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html.get(start..).unwrap_or_default().find('"')? + start;
    Some(html.get(start..end).unwrap_or_default().to_string())
}

impl Web {
    fn new(app: &TestApp) -> Web {
        Web {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: Mutex::new(HashMap::new()),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    fn set(&self, name: &str, value: &str) {
        self.jar
            .lock()
            .unwrap()
            .insert(name.to_string(), value.to_string());
    }

    fn absorb(&self, headers: &HeaderMap) {
        let mut jar = self.jar.lock().unwrap();
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let first = v.split(';').next().unwrap();
            let (k, val) = first.split_once('=').unwrap();
            if v.contains("Max-Age=0") || val.is_empty() {
                jar.remove(k);
            } else {
                jar.insert(k.to_string(), val.to_string());
            }
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Page {
        let r = rb
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        self.absorb(&headers);
        Page {
            status,
            headers,
            body: r.text().await.unwrap(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .form(fields),
        )
        .await
    }

    async fn post_with(&self, path: &str, fields: &[(&str, &str)], origin: &str) -> Page {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("origin", origin)
                .form(fields),
        )
        .await
    }

    /// Sign in through the form; returns the answer to the POST.
    async fn login(&self, email: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        self.post(
            "/login",
            &[("_csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }

    /// Sign a fresh user of `role` in; returns the user.
    pub(crate) async fn signed_in(app: &TestApp, role: &str) -> (Web, TestUser) {
        let w = Web::new(app);
        let u = app.create_user(role).await;
        let r = w.login(&u.email, &u.password).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        (w, u)
    }

    /// The CSRF token of the signed-in session (from any page).
    pub(crate) async fn token(&self) -> String {
        let p = self.get("/patients").await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        p.csrf()
    }
}

pub(crate) fn id_after(location: &str, prefix: &str) -> String {
    let rest = location
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{location}"));
    rest.split(['?', '/', '#']).next().unwrap().to_string()
}

#[tokio::test]
async fn web_sign_in_sets_strict_http_only_cookies_and_pages_carry_the_csp() {
    let app = TestApp::spawn().await;
    let w = Web::new(&app);
    let login = w.get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.content_type().starts_with("text/html"));
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert!(csp.contains("frame-ancestors 'none'"));
    let pre = login
        .set_cookie("amal_csrf")
        .expect("pre-session CSRF cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(pre.contains(attr), "{pre}");
    }
    assert!(login.body.contains("<label for=\"login-email\">"));

    let u = app.create_user("provider").await;
    let r = w
        .post(
            "/login",
            &[
                ("_csrf", &login.csrf()),
                ("email", &u.email),
                ("password", &u.password),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/");
    for name in ["amal_access", "amal_refresh"] {
        let c = r.set_cookie(name).unwrap_or_else(|| panic!("{name} set"));
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(!c.contains("Secure"), "no Secure outside production: {c}");
    }

    let home = w.get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("Today"));
    assert!(home.body.contains("Test User"));
    for h in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(home.headers.contains_key(h), "{h}");
    }
    assert_eq!(home.headers["cache-control"], "no-store");
    // No inline script or style anywhere: only the two external files.
    assert!(!home.body.contains("<script>") && !home.body.contains("style="));
    // The stylesheet is linked under its content hash, cached for a year.
    let start = home.body.find("href=\"/static/app.").unwrap() + 6;
    let end = home
        .body
        .get(start..)
        .unwrap_or_default()
        .find('"')
        .unwrap()
        + start;
    let hashed = home.body.get(start..end).unwrap_or_default();
    assert!(hashed.ends_with(".css") && hashed.len() > "/static/app.css".len());
    let css = w.get(hashed).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let css = w.get("/static/app.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.content_type().starts_with("text/css"));
    assert!(css.body.contains(":focus-visible"));
    let js = w.get("/static/app.js").await;
    assert!(js.content_type().starts_with("text/javascript"));

    // Wrong password: the API's 401, shown on the form; no session cookie.
    let w2 = Web::new(&app);
    let bad = w2.login(&u.email, "not-the-password-at-all").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("Incorrect e-mail or password"));
    assert!(bad.set_cookie("amal_access").is_none());
    assert!(!bad.body.contains("not-the-password-at-all"));

    // Without a session every page leads to the sign-in form.
    let anon = Web::new(&app).get("/patients?q=x").await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert!(anon.location().starts_with("/login?next=%2Fpatients"));
}

#[tokio::test]
async fn web_csrf_missing_wrong_or_cross_origin_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await;
    let patient = app.create_patient(&api.access, "Csrf", "Target").await;
    let pid = sid(&patient);
    let (w, _) = Web::signed_in(&app, "provider").await;
    let token = w.token().await;
    let path = format!("/patients/{pid}/allergies");

    let missing = w.post(&path, &[("substance", "latex")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.content_type().starts_with("text/html"));
    assert!(missing.body.contains("Nothing was changed"));

    let wrong = w
        .post(&path, &[("_csrf", "0123abcd"), ("substance", "latex")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);

    // Another session's token is not this session's.
    let (other, _) = Web::signed_in(&app, "provider").await;
    let other_token = other.token().await;
    assert_ne!(other_token, token);
    let foreign = w
        .post(&path, &[("_csrf", &other_token), ("substance", "latex")])
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);

    let cross = w
        .post_with(
            &path,
            &[("_csrf", &token), ("substance", "latex")],
            "http://evil.example",
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    // `Origin: null` (what browsers send under `Referrer-Policy:
    // no-referrer`) is only believed with `Sec-Fetch-Site: same-origin`;
    // a cross-site fetch is refused whatever its Origin.
    let fields = [("_csrf", token.as_str()), ("substance", "latex")];
    for (origin, site) in [
        ("null", None),
        ("null", Some("cross-site")),
        (app.base.as_str(), Some("same-site")),
    ] {
        let mut rb = w
            .client
            .post(format!("{}{path}", w.base))
            .header("origin", origin)
            .form(&fields);
        if let Some(site) = site {
            rb = rb.header("sec-fetch-site", site);
        }
        let r = w.send(rb).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin} {site:?}");
    }

    let o = app
        .json_ok(
            app.get(&format!("/api/patients/{pid}/overview"), Some(&api.access))
                .await,
            200,
        )
        .await;
    assert_eq!(o["allergies"], json!([]), "nothing recorded");

    // The right token from this site works (as a browser sends it).
    let ok = w
        .send(
            w.client
                .post(format!("{}{path}", w.base))
                .header("origin", "null")
                .header("sec-fetch-site", "same-origin")
                .form(&fields),
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let o = app
        .json_ok(
            app.get(&format!("/api/patients/{pid}/overview"), Some(&api.access))
                .await,
            200,
        )
        .await;
    assert_eq!(o["allergies"][0]["substance"], "latex");
    let host = app.base.clone();
    let ok = w
        .post_with(&path, &[("_csrf", &token), ("substance", "nickel")], &host)
        .await;
    assert_eq!(
        ok.status,
        StatusCode::SEE_OTHER,
        "an explicit matching Origin"
    );

    // The sign-in form needs its pre-session cookie and token.
    let u = app.create_user("nurse").await;
    let fresh = Web::new(&app);
    let r = fresh
        .post("/login", &[("email", &u.email), ("password", &u.password)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie("amal_access").is_none());
    let form = fresh.get("/login").await;
    fresh.set("amal_csrf", &"A".repeat(43));
    let r = fresh
        .post(
            "/login",
            &[
                ("_csrf", &form.csrf()),
                ("email", &u.email),
                ("password", &u.password),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "token bound to the cookie");

    // Logout is a CSRF-checked POST too.
    let r = w.post("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(w.cookie("amal_access").is_some());
}

#[tokio::test]
async fn web_nurse_sees_no_finalize_button_and_a_forced_post_gets_the_403_page() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await;
    let pid = sid(&app.create_patient(&api.access, "Nora", "Nightingale").await);
    let (w, _) = Web::signed_in(&app, "nurse").await;
    let token = w.token().await;
    let r = w
        .post(
            &format!("/patients/{pid}/notes"),
            &[
                ("_csrf", &token),
                ("title", "Triage"),
                ("subjective", "Cough for two days."),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let nid = id_after(&r.location(), "/notes/");
    let page = w.get(&format!("/notes/{nid}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Triage"));
    assert!(
        page.body.contains("Discard draft"),
        "the author may discard"
    );
    assert!(
        !page.body.contains("/finalize"),
        "no finalize form for a nurse"
    );
    assert!(!page.body.contains("Finalize and sign"));

    let forced = w
        .post(&format!("/notes/{nid}/finalize"), &[("_csrf", &token)])
        .await;
    assert_eq!(forced.status, StatusCode::FORBIDDEN);
    assert!(forced.content_type().starts_with("text/html"));
    assert!(forced.body.contains("Not allowed"));
    assert!(forced.body.contains("The nurse role may not do this."));
    let n = app
        .json_ok(
            app.get(&format!("/api/notes/{nid}"), Some(&api.access))
                .await,
            200,
        )
        .await;
    assert_eq!(n["status"], "draft");

    // The provider sees the button and finalizing works (co-signature).
    let (pw, _) = Web::signed_in(&app, "provider").await;
    let page = pw.get(&format!("/notes/{nid}")).await;
    assert!(page.body.contains("Finalize and sign"));
    let ptoken = page.csrf();
    assert!(page.body.contains(r#"name="version" value="1""#));
    let r = pw
        .post(
            &format!("/notes/{nid}/finalize"),
            &[("_csrf", &ptoken), ("version", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = pw.get(&r.location()).await;
    assert!(page.body.contains("Note finalized and signed."));
    assert!(page.body.contains("status-final"));
    // Finalizing again: the API's 409, shown on the note page.
    let again = pw
        .post(&format!("/notes/{nid}/finalize"), &[("_csrf", &ptoken)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("The note is final"));
    assert_eq!(app.state.metrics.counter("note.finalized"), 1);
}

#[tokio::test]
async fn web_stored_script_in_a_note_title_is_rendered_escaped() {
    let app = TestApp::spawn().await;
    let (w, _) = Web::signed_in(&app, "provider").await;
    let token = w.token().await;
    let hostile = "<script>alert('x')</script>";
    let r = w
        .post(
            "/patients",
            &[
                ("_csrf", &token),
                ("givenName", "Eve\"><img src=x onerror=alert(1)>"),
                ("familyName", "Escaper"),
                ("birthDate", "1970-01-01"),
                ("sex", "female"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let pid = id_after(&r.location(), "/patients/");
    let r = w
        .post(
            &format!("/patients/{pid}/notes"),
            &[
                ("_csrf", &token),
                ("title", hostile),
                ("plan", "</textarea><script>alert(2)</script>"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let nid = id_after(&r.location(), "/notes/");
    for path in [
        format!("/notes/{nid}"),
        format!("/patients/{pid}"),
        format!("/patients/{pid}/notes"),
        "/".to_string(),
        "/patients?q=Escaper".to_string(),
    ] {
        let p = w.get(&path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        assert!(!p.body.contains("<script>alert"), "{path}");
        assert!(!p.body.contains("<img src=x"), "{path}");
        assert!(!p.body.contains("</textarea><script>"), "{path}");
    }
    let note = w.get(&format!("/notes/{nid}")).await;
    assert!(
        note.body
            .contains("&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;")
            || note.body.contains("&lt;script&gt;")
    );
}

#[tokio::test]
async fn web_admin_pages_work_and_show_no_patient_data() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await;
    let pid = sid(&app.create_patient(&api.access, "Zenobia", "Quixotic").await);
    let r = app
        .post(
            &format!("/api/patients/{pid}/notes"),
            Some(&api.access),
            json!({"title": "Zenobia visit", "subjective": "Quixotic complaint"}),
        )
        .await;
    assert_eq!(r.status(), 201);

    let (w, admin) = Web::signed_in(&app, "admin").await;
    let home = w.get("/").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location(), "/admin/users");
    for path in [
        "/admin/users",
        "/admin/audit",
        &format!("/admin/audit?patientId={pid}"),
        "/admin/audit/verify",
        "/admin/metrics",
    ] {
        let p = w.get(path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        assert!(
            !p.body.contains("Zenobia") && !p.body.contains("Quixotic"),
            "{path}"
        );
    }
    let verify = w.get("/admin/audit/verify").await;
    assert!(verify.body.contains("The audit chain is intact."));
    let audit = w.get(&format!("/admin/audit?patientId={pid}")).await;
    assert!(audit.body.contains("note.create"));
    let bad = w.get("/admin/audit?patientId=nope&from=yesterday").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("must be an id"));

    // Patient pages: the API's 403, as a page.
    for path in [
        format!("/patients/{pid}"),
        "/patients?q=Zen".to_string(),
        format!("/patients/{pid}/edit"),
    ] {
        let p = w.get(&path).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}");
        assert!(!p.body.contains("Zenobia"), "{path}");
    }
    // Refused like the API's, and audited like the API's.
    let refused = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| {
            e.action == "access.refused" && e.patient_id.map(|p| p.to_string()) == Some(pid.clone())
        })
        .count();
    assert_eq!(refused, 2, "chart and demographics refusals are audited");

    // Create a user, an invitation (the code is shown once), change a role.
    let token = w.token_admin().await;
    let r = w
        .post(
            "/admin/users",
            &[
                ("_csrf", &token),
                ("name", "New Nurse"),
                ("email", "new.nurse@clinic.test"),
                ("role", "nurse"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("field-error"));
    assert!(
        r.body.contains("new.nurse@clinic.test"),
        "typed values come back"
    );
    assert!(!r.body.contains("value=\"short\""), "never the password");
    let r = w
        .post(
            "/admin/users",
            &[
                ("_csrf", &token),
                ("name", "New Nurse"),
                ("email", "new.nurse@clinic.test"),
                ("role", "nurse"),
                ("password", "a-long-enough-password-42"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let users = w.get("/admin/users").await;
    assert!(users.body.contains("new.nurse@clinic.test"));
    let inv = w
        .post("/admin/invites", &[("_csrf", &token), ("role", "staff")])
        .await;
    // Post, redirect, get: the code is shown once on the users page.
    assert_eq!(inv.status, StatusCode::SEE_OTHER, "{}", inv.body);
    let inv = w.get(&inv.location()).await;
    assert_eq!(inv.status, StatusCode::OK);
    let again = w.get("/admin/users").await;
    assert!(
        !again.body.contains("id=\"invite-code\""),
        "shown only once"
    );
    let code_start = inv.body.find("id=\"invite-code\">").unwrap() + 17;
    let code = &inv
        .body
        .get(code_start..code_start + 24)
        .unwrap_or_default();
    let r = app
        .post(
            "/api/auth/signup",
            None,
            json!({"email": "desk@clinic.test", "password": "another-long-password-7", "name": "Desk", "inviteCode": code}),
        )
        .await;
    assert_eq!(r.status(), 201, "the shown code works");

    let nurse = store::users::by_email(&app.state.db, "new.nurse@clinic.test")
        .await
        .unwrap()
        .unwrap();
    let r = w
        .post(
            &format!("/admin/users/{}", nurse.id),
            &[
                ("_csrf", &token),
                ("role", "provider"),
                ("status", "active"),
                ("version", &nurse.version.to_string()),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let nurse = store::users::by_email(&app.state.db, "new.nurse@clinic.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nurse.role, domain::roles::Role::Provider);
    // A stale version: the API's 409, on the page.
    let r = w
        .post(
            &format!("/admin/users/{}", nurse.id),
            &[
                ("_csrf", &token),
                ("role", "nurse"),
                ("status", "active"),
                ("version", "0"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(audit_events(&app)
        .await
        .iter()
        .any(|e| e.action == "user.update" && e.actor_id == Some(admin.id)));
}

impl Web {
    async fn token_admin(&self) -> String {
        let p = self.get("/admin/users").await;
        assert_eq!(p.status, StatusCode::OK);
        p.csrf()
    }
}

#[tokio::test]
async fn web_sign_in_shares_the_api_auth_rate_limit() {
    let app = TestApp::spawn_with(|r| r.rate_limit_auth = Some("5/60s".into())).await;
    let u = app.create_user("nurse").await;
    let w = Web::new(&app);
    let form = w.get("/login").await;
    let csrf = form.csrf();
    for i in 0..5 {
        let r = w
            .post(
                "/login",
                &[
                    ("_csrf", &csrf),
                    ("email", &u.email),
                    ("password", "wrong-password-123"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(r.headers.contains_key("x-ratelimit-remaining"));
    }
    let r = w
        .post(
            "/login",
            &[
                ("_csrf", &csrf),
                ("email", &u.email),
                ("password", &u.password),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.content_type().starts_with("text/html"),
        "a page, not JSON"
    );
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.body.contains("Too many requests"));
    // Same bucket as the API's sign-in.
    let api = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": u.email, "password": u.password}),
        )
        .await;
    assert_problem(api, 429, "rate_limited").await;
}

#[tokio::test]
async fn web_pages_count_against_the_api_read_limit_and_are_refused_as_a_page() {
    let app = TestApp::spawn_with(|r| r.rate_limit_read = Some("4/60s".into())).await;
    let (w, u) = Web::signed_in(&app, "provider").await;
    let signin = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": u.email, "password": u.password}),
        )
        .await;
    let access = signin.json::<Value>().await.unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    // Two API reads and two page loads use up the same bucket of four.
    for _ in 0..2 {
        assert_eq!(
            app.get("/api/patients", Some(&access)).await.status(),
            StatusCode::OK
        );
    }
    for _ in 0..2 {
        let p = w.get("/patients").await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert!(p.headers.contains_key("x-ratelimit-remaining"));
    }
    let hits_before = app.state.metrics.counter("rate_limit.hit.read");
    let p = w.get("/patients").await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        p.content_type().starts_with("text/html"),
        "a page, not JSON"
    );
    assert!(p.headers.contains_key("retry-after"));
    assert_eq!(
        app.state.metrics.counter("rate_limit.hit.read"),
        hits_before + 1,
        "a refused page is counted like a refused API call"
    );
    // And the API is refused too: one bucket, whichever door.
    assert_problem(
        app.get("/api/patients", Some(&access)).await,
        429,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn web_expired_access_is_refreshed_once_and_logout_ends_the_session() {
    let app = TestApp::spawn().await;
    let (w, _) = Web::signed_in(&app, "provider").await;
    let refresh_before = w.cookie("amal_refresh").unwrap();
    // An access token that no longer verifies (as after its 15 minutes).
    w.set("amal_access", "expired.token.value");
    let p = w.get("/patients").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let new_access = p.set_cookie("amal_access").expect("new access cookie");
    assert!(new_access.contains("HttpOnly") && new_access.contains("SameSite=Strict"));
    let refresh_after = w.cookie("amal_refresh").unwrap();
    assert_ne!(refresh_before, refresh_after, "refresh token rotated");
    // The page keeps working with the new pair, without another refresh.
    let p = w.get("/").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.set_cookie("amal_access").is_none());

    // A stolen copy of the old refresh token is reuse: the family ends.
    let thief = Web::new(&app);
    thief.set("amal_refresh", &refresh_before);
    let t = thief.get("/").await;
    assert_eq!(t.status, StatusCode::SEE_OTHER);
    assert!(t.location().starts_with("/login"));
    let p = w.get("/").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "reuse revoked the session");
    assert!(p.set_cookie("amal_access").unwrap().contains("Max-Age=0"));

    // Logout: the API's logout, cookies cleared, the old access token dead.
    let (w, _) = Web::signed_in(&app, "nurse").await;
    let access = w.cookie("amal_access").unwrap();
    let token = w.token().await;
    let r = w.post("/logout", &[("_csrf", &token)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?done=signed_out");
    assert!(r.set_cookie("amal_access").unwrap().contains("Max-Age=0"));
    assert!(r.set_cookie("amal_refresh").unwrap().contains("Max-Age=0"));
    let replay = Web::new(&app);
    replay.set("amal_access", &access);
    let p = replay.get("/").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "the session has ended");
    let api = app.get("/api/auth/me", Some(&access)).await;
    assert_eq!(api.status(), 401);
}

#[tokio::test]
async fn web_allergy_conflict_shows_the_detail_and_an_override_reason() {
    let app = TestApp::spawn().await;
    let (w, _) = Web::signed_in(&app, "provider").await;
    let token = w.token().await;
    let pid = web_patient_with_allergy(&w, &token, "penicillin").await;
    // A bad quantity is a field error, not a crash.
    let r = w
        .post(
            &format!("/patients/{pid}/prescriptions"),
            &[
                ("_csrf", &token),
                ("medication", "Amoxicillin"),
                ("dose", "500 mg"),
                ("route", "oral"),
                ("frequency", "three times daily"),
                ("quantity", "lots"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("must be a whole number"));
    let r = w
        .post(
            &format!("/patients/{pid}/prescriptions"),
            &[
                ("_csrf", &token),
                ("medication", "Amoxicillin"),
                ("dose", "500 mg"),
                ("route", "oral"),
                ("frequency", "three times daily"),
                ("quantity", "21"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rx = id_after(&r.location(), "/prescriptions/");
    let issue = w
        .post(&format!("/prescriptions/{rx}/issue"), &[("_csrf", &token)])
        .await;
    assert_eq!(issue.status, StatusCode::CONFLICT);
    assert!(issue.body.contains("Allergy conflict"));
    assert!(issue.body.contains("penicillin"));
    assert!(issue.body.contains("name=\"overrideReason\""));
    assert!(issue.body.contains("<label for=\"issue-overrideReason\">"));
    let r = w
        .post(
            &format!("/prescriptions/{rx}/issue"),
            &[
                ("_csrf", &token),
                ("overrideReason", "Tolerated amoxicillin in 2023"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = w.get(&r.location()).await;
    assert!(page.body.contains("Prescription issued."));
    assert!(page.body.contains("Tolerated amoxicillin in 2023"));
    // Cancel needs a reason (the API's 422), then works.
    let r = w
        .post(&format!("/prescriptions/{rx}/cancel"), &[("_csrf", &token)])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = w
        .post(
            &format!("/prescriptions/{rx}/cancel"),
            &[("_csrf", &token), ("reason", "Switched to azithromycin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let day = w.get("/").await;
    assert!(day.body.contains("Amoxicillin") || day.body.contains("None yet today"));
    assert_eq!(app.state.metrics.counter("prescription.issued"), 1);
}

#[tokio::test]
async fn web_labs_mark_critical_values_and_show_a_trend() {
    let app = TestApp::spawn().await;
    let (w, _) = Web::signed_in(&app, "provider").await;
    let token = w.token().await;
    let pid = web_patient(&w, &token, ("Kal", "Ium", "1950-02-03", "male")).await;
    let mut lab = String::new();
    for (v, at) in [("4.1", "2024-01-02T08:00"), ("6.8", "2024-03-04T09:30")] {
        let r = w
            .post(
                &format!("/patients/{pid}/labs"),
                &[
                    ("_csrf", &token),
                    ("code", "2823-3"),
                    ("value", v),
                    ("unit", "mmol/L"),
                    ("collectedAt", at),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        lab = id_after(&r.location(), "/labs/");
    }
    let chart = w.get(&format!("/patients/{pid}")).await;
    assert!(chart.body.contains("Critical results"));
    assert!(chart.body.contains("CRITICAL HIGH"));
    assert!(chart.body.contains("flag flag-critical"));
    assert!(chart.body.contains("row-critical"));
    let day = w.get("/").await;
    assert!(
        day.body.contains(&format!("/labs/{lab}")),
        "unreviewed abnormal"
    );
    let trend = w
        .get(&format!("/patients/{pid}/labs/trend?code=2823-3"))
        .await;
    assert_eq!(trend.status, StatusCode::OK);
    assert!(trend.body.contains("4.1") && trend.body.contains("6.8"));
    assert!(trend.body.contains("↑ +2.7"));
    let bad = w
        .post(
            &format!("/patients/{pid}/labs"),
            &[
                ("_csrf", &token),
                ("code", "abc"),
                ("value", "x"),
                ("unit", "mmol/L"),
                ("collectedAt", "soon"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("must be a number"));
    let r = w
        .post(&format!("/labs/{lab}/review"), &[("_csrf", &token)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = w.get(&r.location()).await;
    assert!(page.body.contains("Result marked as reviewed."));
    assert!(!page.body.contains("Mark as reviewed"));
}

#[tokio::test]
async fn web_staff_manage_demographics_only() {
    let app = TestApp::spawn().await;
    let (w, _) = Web::signed_in(&app, "staff").await;
    let home = w.get("/").await;
    assert_eq!(home.location(), "/patients");
    let form = w.get("/patients/new").await;
    assert_eq!(form.status, StatusCode::OK);
    for f in [
        "givenName",
        "familyName",
        "birthDate",
        "sex",
        "phone",
        "email",
        "address",
    ] {
        assert!(
            form.body.contains(&format!("<label for=\"patient-{f}\">")),
            "{f}"
        );
    }
    let token = form.csrf();
    let r = w
        .post(
            "/patients",
            &[
                ("_csrf", &token),
                ("givenName", ""),
                ("familyName", "Desk"),
                ("birthDate", "2999-01-01"),
                ("sex", "female"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("aria-invalid=\"true\""));
    assert!(r.body.contains("value=\"Desk\""));
    let r = w
        .post(
            "/patients",
            &[
                ("_csrf", &token),
                ("givenName", "Dora"),
                ("familyName", "Desk"),
                ("birthDate", "1990-09-09"),
                ("sex", "female"),
                ("phone", "+44 20 7946 0000"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().ends_with("/edit?done=created"));
    let pid = id_after(&r.location(), "/patients/");
    let found = w.get("/patients?q=dor").await;
    assert!(found.body.contains("Desk, Dora"));
    assert!(found.body.contains(&format!("/patients/{pid}/edit")));
    // The chart is not for staff.
    let chart = w.get(&format!("/patients/{pid}")).await;
    assert_eq!(chart.location(), format!("/patients/{pid}/edit"));
    let notes = w.get(&format!("/patients/{pid}/notes")).await;
    assert_eq!(notes.status, StatusCode::FORBIDDEN);
    // Edit with the version from the form.
    let edit = w.get(&format!("/patients/{pid}/edit")).await;
    let version = field_value(&edit.body, "version").unwrap();
    let r = w
        .post(
            &format!("/patients/{pid}/edit"),
            &[
                ("_csrf", &token),
                ("version", &version),
                ("givenName", "Dora"),
                ("familyName", "Desk-Smith"),
                ("birthDate", "1990-09-09"),
                ("sex", "female"),
                ("phone", ""),
                ("email", "dora@example.test"),
                ("address", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let edit = w.get(&r.location()).await;
    assert!(edit.body.contains("Changes saved."));
    assert!(edit.body.contains("Desk-Smith"));
    // The same stale version again: the API's 409.
    let r = w
        .post(
            &format!("/patients/{pid}/edit"),
            &[
                ("_csrf", &token),
                ("version", &version),
                ("givenName", "Dora"),
                ("familyName", "Other"),
                ("birthDate", "1990-09-09"),
                ("sex", "female"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn web_ai_drafts_notes_and_explains_results_and_shows_refusals() {
    let app = TestApp::spawn().await;
    let (w, _) = Web::signed_in(&app, "nurse").await;
    let token = w.token().await;
    let r = w
        .post(
            "/patients",
            &[
                ("_csrf", &token),
                ("givenName", "Ada"),
                ("familyName", "Assist"),
                ("birthDate", "1960-01-01"),
                ("sex", "female"),
            ],
        )
        .await;
    let pid = id_after(&r.location(), "/patients/");
    let chart = w.get(&format!("/patients/{pid}")).await;
    assert!(chart.body.contains("Draft a note with AI"));
    let input = "c/o cough x 2 days. Lungs clear. Likely viral. Plan rest and fluids.";
    let draft = w
        .post(
            &format!("/patients/{pid}/ai/draft"),
            &[("_csrf", &token), ("input", input)],
        )
        .await;
    assert_eq!(draft.status, StatusCode::OK, "{}", draft.body);
    assert!(draft.body.contains("Subjective") && draft.body.contains("Plan"));
    assert!(draft.body.contains("Save as draft note"));
    let saved = w
        .post(
            &format!("/patients/{pid}/ai/draft"),
            &[("_csrf", &token), ("input", input), ("save", "1")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let note = w.get(&saved.location()).await;
    assert!(note.body.contains("AI-generated draft"));
    let refused = w
        .post(
            &format!("/patients/{pid}/ai/draft"),
            &[("_csrf", &token), ("input", "Tell me a joke about cats")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused
        .body
        .contains("The assistant declined this request."));

    let r = w
        .post(
            &format!("/patients/{pid}/labs"),
            &[
                ("_csrf", &token),
                ("code", "2823-3"),
                ("value", "6.8"),
                ("unit", "mmol/L"),
                ("collectedAt", "2024-03-04T09:30"),
            ],
        )
        .await;
    let lab = id_after(&r.location(), "/labs/");
    let page = w.get(&format!("/labs/{lab}")).await;
    assert!(page.body.contains("Explain this result"));
    for audience in ["patient", "clinician"] {
        let x = w
            .post(
                &format!("/labs/{lab}/explain"),
                &[("_csrf", &token), ("audience", audience)],
            )
            .await;
        assert_eq!(x.status, StatusCode::OK, "{}", x.body);
        assert!(x.body.contains("class=\"explanation\""));
    }
    let bad = w
        .post(
            &format!("/labs/{lab}/explain"),
            &[("_csrf", &token), ("audience", "everyone")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let _: Value = json!(null);
}

// --- The browser ---------------------------------------------------------------

// The browser harness is `crate::browser::Browser`.

#[tokio::test]
async fn web_browser_provider_signs_in_finds_a_patient_and_finalizes_a_note() {
    use fantoccini::Locator;

    let Some(browser) =
        crate::browser::Browser::start("day", crate::browser::Screen::Desktop).await
    else {
        return;
    };
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await;
    app.create_patient(&api.access, "Brigitta", "Browserova")
        .await;
    let user = app.create_user("provider").await;

    let c = &browser.c;

    let step = std::cell::Cell::new("start");
    let outcome: crate::browser::Res<()> = async {
        let css = |s: &'static str| Locator::Css(s);
        step.set("sign in");
        c.goto(&app.url("/login")).await?;
        c.find(css("#login-email"))
            .await?
            .send_keys(&user.email)
            .await?;
        c.find(css("#login-password"))
            .await?
            .send_keys(&user.password)
            .await?;
        c.find(css("form[action='/login'] button[type=submit]"))
            .await?
            .click()
            .await?;
        c.wait().for_element(css("#day-q")).await?;
        assert!(c.find(css("h1")).await?.text().await?.contains("Today"));

        step.set("search");
        c.find(css("#day-q")).await?.send_keys("browser").await?;
        c.find(css("form.search-inline button"))
            .await?
            .click()
            .await?;
        c.wait()
            .for_element(Locator::LinkText("Browserova, Brigitta"))
            .await?
            .click()
            .await?;
        c.wait().for_element(css(".banner h1")).await?;
        assert!(c
            .find(css(".banner h1"))
            .await?
            .text()
            .await?
            .contains("Browserova"));

        c.find(Locator::LinkText("Write a note"))
            .await?
            .click()
            .await?;
        c.wait()
            .for_element(css("#note-title"))
            .await?
            .send_keys("Browser visit")
            .await?;
        c.find(css("#note-subjective"))
            .await?
            .send_keys("Feels well; came for a check-up.")
            .await?;
        c.find(css("#note-plan"))
            .await?
            .send_keys("Review in one year.")
            .await?;
        c.find(css("form[action$='/notes'] button[type=submit]"))
            .await?
            .click()
            .await?;
        c.wait().for_element(css("#finalize")).await?;
        assert_eq!(c.find(css("#note-status")).await?.text().await?, "draft");

        step.set("finalize");
        c.find(css("#finalize")).await?.click().await?;
        // app.js asks before signing; accept.
        for _ in 0..50 {
            if c.accept_alert().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        c.wait().for_element(css(".notice")).await?;
        assert_eq!(c.find(css("#note-status")).await?.text().await?, "final");
        assert!(c
            .find(css(".notice"))
            .await?
            .text()
            .await?
            .contains("finalized"));
        assert!(
            c.find(css("#finalize")).await.is_err(),
            "no finalize button on a final note"
        );
        Ok(())
    }
    .await;
    browser.finish(&step, outcome).await;

    let finalized: Vec<_> = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "note.finalize")
        .collect();
    assert_eq!(finalized.len(), 1);
    assert_eq!(finalized[0].actor_id, Some(user.id));
}

#[tokio::test]
async fn web_cookies_are_secure_in_production() {
    let app = TestApp::spawn_with(production).await;
    let w = Web::new(&app);
    let form = w.get("/login").await;
    // Secure cookies carry the `__Host-` prefix; the plain names are not set.
    assert!(form
        .set_cookie("__Host-amal_csrf")
        .unwrap()
        .contains("; Secure"));
    assert!(form.set_cookie("amal_csrf").is_none());
    let u = app.create_user("nurse").await;
    let r = w
        .post(
            "/login",
            &[
                ("_csrf", &form.csrf()),
                ("email", &u.email),
                ("password", &u.password),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    for name in ["__Host-amal_access", "__Host-amal_refresh"] {
        let c = r.set_cookie(name).unwrap();
        assert!(c.contains("; Secure") && c.contains("HttpOnly"), "{c}");
        assert!(c.contains("Path=/") && !c.contains("Domain"), "{c}");
    }
}

/// A patient through the form (given, family, birth date, sex); its id.
async fn web_patient(
    w: &Web,
    token: &str,
    (given, family, born, sex): (&str, &str, &str, &str),
) -> String {
    let r = w
        .post(
            "/patients",
            &[
                ("_csrf", token),
                ("givenName", given),
                ("familyName", family),
                ("birthDate", born),
                ("sex", sex),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    id_after(&r.location(), "/patients/")
}

/// A patient through the form, with an allergy; returns its id.
async fn web_patient_with_allergy(w: &Web, token: &str, allergy: &str) -> String {
    let pid = web_patient(w, token, ("Ada", "Meds", "1970-02-03", "female")).await;
    let r = w
        .post(
            &format!("/patients/{pid}/allergies"),
            &[
                ("_csrf", token),
                ("substance", allergy),
                ("severity", "severe"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    pid
}

/// Draft through the form; the answer to the POST.
async fn web_draft(w: &Web, token: &str, pid: &str, medication: &str) -> Page {
    w.post(
        &format!("/patients/{pid}/prescriptions"),
        &[
            ("_csrf", token),
            ("medication", medication),
            ("dose", "1 tablet"),
            ("route", "oral"),
            ("frequency", "once daily"),
            ("quantity", "14"),
        ],
    )
    .await
}

#[tokio::test]
async fn web_misspelt_medication_asks_did_you_mean_and_augmentin_meets_the_penicillin_allergy() {
    let app = TestApp::spawn().await;
    let (w, _) = Web::signed_in(&app, "provider").await;
    let token = w.token().await;
    let pid = web_patient_with_allergy(&w, &token, "Penicillin").await;
    let r = web_draft(&w, &token, &pid, "amoxicilin 500 mg").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("Did you mean amoxicillin?"), "{}", r.body);
    assert!(r.body.contains("Yes, amoxicillin"));
    assert!(r.body.contains("value=\"amoxicillin 500 mg\""));
    // The button posts the corrected name.
    let r = web_draft(&w, &token, &pid, "amoxicillin 500 mg").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rx = id_after(&r.location(), "/prescriptions/");
    let issue = w
        .post(&format!("/prescriptions/{rx}/issue"), &[("_csrf", &token)])
        .await;
    assert_eq!(issue.status, StatusCode::CONFLICT);
    assert!(issue.body.contains("Allergy conflict"));
    assert!(issue.body.contains("name=\"overrideReason\""));
    // A brand is resolved to its ingredients.
    let r = web_draft(&w, &token, &pid, "Augmentin 625 mg").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rx = id_after(&r.location(), "/prescriptions/");
    let page = w.get(&format!("/prescriptions/{rx}")).await;
    assert!(
        page.body.contains("amoxicillin, clavulanic acid"),
        "{}",
        page.body
    );
    let issue = w
        .post(&format!("/prescriptions/{rx}/issue"), &[("_csrf", &token)])
        .await;
    assert_eq!(issue.status, StatusCode::CONFLICT);
    assert!(issue.body.contains("Allergy conflict") && issue.body.contains("Penicillin"));
}

#[tokio::test]
async fn web_interaction_duplicate_and_unrecognised_warnings_show_their_override_forms() {
    let app = TestApp::spawn().await;
    let (w, _) = Web::signed_in(&app, "provider").await;
    let token = w.token().await;
    let pid = web_patient_with_allergy(&w, &token, "latex").await;
    let reissue = async |rx: &str, fields: &[(&str, &str)]| {
        let mut all = vec![("_csrf", token.as_str())];
        all.extend_from_slice(fields);
        w.post(&format!("/prescriptions/{rx}/issue"), &all).await
    };
    let issue = async |med: &str| {
        let r = web_draft(&w, &token, &pid, med).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let rx = id_after(&r.location(), "/prescriptions/");
        (rx.clone(), reissue(&rx, &[]).await)
    };
    let (_, r) = issue("Warfarin 5 mg").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Warfarin + ibuprofen: the interaction, naming both, with its form.
    let (rx, r) = issue("Ibuprofen 400 mg").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("Drug interaction"), "{}", r.body);
    assert!(r.body.contains("ibuprofen") && r.body.contains("warfarin"));
    assert!(r.body.contains("name=\"interactionOverrideReason\""));
    let r = reissue(
        &rx,
        &[(
            "interactionOverrideReason",
            "Three days only, INR on Friday",
        )],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = w.get(&r.location()).await;
    assert!(page.body.contains("Interaction override"));
    assert!(page.body.contains("Three days only, INR on Friday"));
    // Coumadin is warfarin again: a duplicate therapy.
    let (rx, r) = issue("Coumadin 3 mg").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("Duplicate therapy"), "{}", r.body);
    assert!(r.body.contains("name=\"duplicateOverrideReason\""));
    let r = reissue(
        &rx,
        &[
            ("duplicateOverrideReason", "Split tablets for a 8 mg dose"),
            ("interactionOverrideReason", "Same anticoagulation plan"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Not in the dictionary: the acknowledgement checkbox.
    let (rx, r) = issue("Zyxorbital 10 mg").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("Medication not recognised"), "{}", r.body);
    assert!(r.body.contains("name=\"uncheckedAcknowledged\""));
    let r = reissue(&rx, &[("uncheckedAcknowledged", "1")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = w.get(&r.location()).await;
    assert!(page.body.contains("Unchecked medication"));
    let events = audit_events(&app).await;
    let details: Vec<String> = events
        .iter()
        .filter(|e| e.action == "prescription.issue")
        .filter_map(|e| e.detail.clone())
        .collect();
    assert!(details
        .iter()
        .any(|d| d.contains("\"interactionOverride\":true")));
    assert!(details
        .iter()
        .any(|d| d.contains("\"duplicateOverride\":true")));
    assert!(details
        .iter()
        .any(|d| d.contains("\"uncheckedAcknowledged\":true")));
    assert!(!details.iter().any(|d| d.contains("INR")));
}
