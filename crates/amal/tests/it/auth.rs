//! Sign-up, sign-in, tokens and sessions (SPEC §3).

use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::helpers::*;

async fn invite(app: &TestApp, admin: &str, role: &str, email: Option<&str>) -> String {
    let r = app
        .post(
            "/api/invites",
            Some(admin),
            json!({"role": role, "email": email}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    v["code"].as_str().unwrap().to_string()
}

fn signup_body(email: &str, code: Option<&str>) -> Value {
    json!({"email": email, "password": "a sufficiently long passphrase", "name": "New Nurse", "inviteCode": code})
}

#[tokio::test]
async fn signup_with_invite_policy() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    // No code, unknown code → 403.
    assert_problem(
        app.post(
            "/api/auth/signup",
            None,
            signup_body("n1@clinic.test", None),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.post(
            "/api/auth/signup",
            None,
            signup_body("n1@clinic.test", Some("nope")),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    // A code for another e-mail → 403.
    let code = invite(&app, &admin.access, "nurse", Some("someone@clinic.test")).await;
    assert_problem(
        app.post(
            "/api/auth/signup",
            None,
            signup_body("n1@clinic.test", Some(&code)),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    // A valid code carries its role; it works once.
    let code = invite(&app, &admin.access, "nurse", None).await;
    let r = app
        .post(
            "/api/auth/signup",
            None,
            signup_body("n1@clinic.test", Some(&code)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"]["role"], "nurse");
    assert_eq!(v["user"]["status"], "active");
    assert!(v["user"].get("passwordHash").is_none());
    assert_problem(
        app.post(
            "/api/auth/signup",
            None,
            signup_body("n2@clinic.test", Some(&code)),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    // The new nurse can sign in.
    let r = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": "n1@clinic.test", "password": "a sufficiently long passphrase"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.state.metrics.counter("auth.signup.success"), 1);
}

#[tokio::test]
async fn expired_invite_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.create_user("admin").await;
    let code = "expired-code-123";
    let mut tx = app.state.db.begin().await.unwrap();
    store::users::insert_invite(
        &mut tx,
        &server::services::auth::invite_hash(code),
        domain::roles::Role::Nurse,
        None,
        admin.id,
        store::now() - chrono::Duration::seconds(1),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_problem(
        app.post(
            "/api/auth/signup",
            None,
            signup_body("late@clinic.test", Some(code)),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn signup_with_open_policy_is_pending_until_activated() {
    let app = TestApp::spawn_with(|r| r.signup = Some("open".into())).await;
    let r = app
        .post(
            "/api/auth/signup",
            None,
            signup_body("open@clinic.test", None),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"]["status"], "pending");
    assert_eq!(v["user"]["role"], "staff");
    let creds = json!({"email": "open@clinic.test", "password": "a sufficiently long passphrase"});
    assert_problem(
        app.post("/api/auth/signin", None, creds.clone()).await,
        403,
        "forbidden",
    )
    .await;
    // An admin activates and sets the role.
    let admin = app.signed_in("admin").await;
    let id = v["user"]["id"].as_str().unwrap();
    let r = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/users/{id}"),
            Some(&admin.access),
            Some(json!({"status": "active", "role": "nurse", "version": 1})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.post("/api/auth/signin", None, creds).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"]["role"], "nurse");
}

#[tokio::test]
async fn signup_with_closed_policy_is_refused() {
    let app = TestApp::spawn_with(|r| r.signup = Some("closed".into())).await;
    assert_problem(
        app.post("/api/auth/signup", None, signup_body("c@clinic.test", None))
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(helpers_user_count(&app).await, 0);
}

async fn helpers_user_count(app: &TestApp) -> i64 {
    store::users::list(&app.state.db, None, 1000)
        .await
        .unwrap()
        .len() as i64
}

#[tokio::test]
async fn signin_shape_and_uniform_failures() {
    let app = TestApp::spawn().await;
    let user = app.create_user("provider").await;
    let r = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": user.email, "password": user.password}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tokenType"], "Bearer");
    assert_eq!(v["expiresIn"], 900);
    assert_eq!(v["user"]["email"], user.email.as_str());
    let access = v["accessToken"].as_str().unwrap();
    let me: Value = app
        .get("/api/auth/me", Some(access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["id"], user.id.to_string());

    let wrong = assert_problem(
        app.post(
            "/api/auth/signin",
            None,
            json!({"email": user.email, "password": "wrong password here"}),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    let unknown = assert_problem(
        app.post(
            "/api/auth/signin",
            None,
            json!({"email": "nobody@clinic.test", "password": "wrong password here"}),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(wrong["detail"], unknown["detail"]);
    assert_eq!(app.state.metrics.counter("auth.signin.failure"), 2);
    let events = audit_events(&app).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "auth.signin" && e.outcome == "failure")
            .count(),
        2
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "auth.signin" && e.outcome == "success")
            .count(),
        1
    );
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = TestApp::spawn().await;
    let s = app.signed_in("nurse").await;
    // Rotation: a new pair each time; the old refresh token is spent.
    let r = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": s.refresh}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let second: Value = r.json().await.unwrap();
    let refresh2 = second["refreshToken"].as_str().unwrap().to_string();
    let access2 = second["accessToken"].as_str().unwrap().to_string();
    assert_ne!(refresh2, s.refresh);
    assert_eq!(
        app.get("/api/auth/me", Some(&access2)).await.status(),
        StatusCode::OK
    );
    // Reuse of the rotated token → 401, and the newer token stops working too.
    assert_problem(
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": s.refresh}),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.post("/api/auth/refresh", None, json!({"refreshToken": refresh2}))
            .await,
        401,
        "unauthorized",
    )
    .await;
    // …and so do the family's access tokens.
    assert_problem(
        app.get("/api/auth/me", Some(&access2)).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(app.state.metrics.counter("auth.refresh.reuse_detected"), 1);
    // Other sessions of the same user are unaffected.
    assert!(audit_events(&app)
        .await
        .iter()
        .any(|e| e.action == "auth.refresh" && e.outcome == "reuse_detected"));
}

#[tokio::test]
async fn logout_revokes_the_session() {
    let app = TestApp::spawn().await;
    let s = app.signed_in("staff").await;
    let r = app
        .post("/api/auth/logout", None, json!({"refreshToken": s.refresh}))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get("/api/auth/me", Some(&s.access)).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": s.refresh}),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
}

fn claims(sub: &str, sid: &str, role: &str, iat: i64, exp: i64) -> Value {
    json!({"sub": sub, "role": role, "iat": iat, "exp": exp, "jti": uuid::Uuid::new_v4(), "typ": "access", "sid": sid})
}

fn sid_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["sid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn expired_tampered_none_and_confused_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let s = app.signed_in("provider").await;
    let sid = sid_of(&s.access);
    let secret = app
        .raw
        .jwt_secret
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_string();
    let now = chrono::Utc::now().timestamp();
    let sub = s.user_id.to_string();

    // A correctly signed token works (control).
    let good = encode(
        &Header::new(Algorithm::HS512),
        &claims(&sub, &sid, "provider", now, now + 600),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        app.get("/api/auth/me", Some(&good)).await.status(),
        StatusCode::OK
    );
    // Expired.
    let expired = encode(
        &Header::new(Algorithm::HS512),
        &claims(&sub, &sid, "provider", now - 1200, now - 300),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_problem(
        app.get("/api/auth/me", Some(&expired)).await,
        401,
        "unauthorized",
    )
    .await;
    // Tampered payload (role raised to admin) with the original signature.
    let mut parts: Vec<String> = s.access.split('.').map(str::to_string).collect();
    let forged = claims(&sub, &sid, "admin", now, now + 600);
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
    assert_problem(
        app.get("/api/auth/me", Some(&parts.join("."))).await,
        401,
        "unauthorized",
    )
    .await;
    // alg: none.
    let header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let none = format!("{header}.{}.", parts[1]);
    assert_problem(
        app.get("/api/auth/me", Some(&none)).await,
        401,
        "unauthorized",
    )
    .await;
    // Algorithm confusion: HS256 with the same secret.
    let hs256 = encode(
        &Header::new(Algorithm::HS256),
        &claims(&sub, &sid, "provider", now, now + 600),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_problem(
        app.get("/api/auth/me", Some(&hs256)).await,
        401,
        "unauthorized",
    )
    .await;
    // Signed with another secret.
    let other = encode(
        &Header::new(Algorithm::HS512),
        &claims(&sub, &sid, "provider", now, now + 600),
        &EncodingKey::from_secret(server::config::generate_secret().as_bytes()),
    )
    .unwrap();
    assert_problem(
        app.get("/api/auth/me", Some(&other)).await,
        401,
        "unauthorized",
    )
    .await;
    // A refresh token is not an access token.
    assert_problem(
        app.get("/api/auth/me", Some(&s.refresh)).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn previous_secret_is_accepted_during_rotation() {
    let app = TestApp::spawn().await;
    let s = app.signed_in("nurse").await;
    // Restart on the same database with a new secret; the old one is "previous".
    let mut raw = app.raw.clone();
    let old = raw.jwt_secret.clone().unwrap();
    raw.jwt_secret = Some(SecretString::from(server::config::generate_secret()));
    raw.jwt_secret_previous = Some(old.clone());
    let rotated = TestApp::spawn_raw(raw.clone()).await;
    assert_eq!(
        rotated.get("/api/auth/me", Some(&s.access)).await.status(),
        StatusCode::OK
    );
    // Without the previous secret the old token is refused.
    raw.jwt_secret_previous = None;
    let strict = TestApp::spawn_raw(raw).await;
    assert_problem(
        strict.get("/api/auth/me", Some(&s.access)).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn role_change_and_deactivation_end_sessions() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let user = app.create_user("nurse").await;
    let s = app.sign_in(&user).await;
    let r = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/users/{}", user.id),
            Some(&admin.access),
            Some(json!({"role": "staff"})),
        )
        .await;
    assert_problem(r, 428, "precondition_required").await;
    let r = app
        .client
        .patch(app.url(&format!("/api/users/{}", user.id)))
        .bearer_auth(&admin.access)
        .header("If-Match", "\"1\"")
        .json(&json!({"role": "staff"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_problem(
        app.get("/api/auth/me", Some(&s.access)).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": s.refresh}),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    // Stale version → 409.
    let r = app
        .client
        .patch(app.url(&format!("/api/users/{}", user.id)))
        .bearer_auth(&admin.access)
        .header("If-Match", "1")
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "conflict").await;
    // Deactivate; sign-in is then refused.
    let s2 = app.sign_in(&user).await;
    let r = app
        .client
        .patch(app.url(&format!("/api/users/{}", user.id)))
        .bearer_auth(&admin.access)
        .header("If-Match", "2")
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_problem(
        app.get("/api/auth/me", Some(&s2.access)).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.post(
            "/api/auth/signin",
            None,
            json!({"email": user.email, "password": user.password}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn last_admin_cannot_be_removed() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let r = app
        .client
        .patch(app.url(&format!("/api/users/{}", admin.user_id)))
        .bearer_auth(&admin.access)
        .header("If-Match", "1")
        .json(&json!({"role": "provider"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "conflict").await;
    assert_eq!(
        app.get("/api/auth/me", Some(&admin.access)).await.status(),
        StatusCode::OK
    );
}
