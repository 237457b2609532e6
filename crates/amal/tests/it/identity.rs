//! Identity (issue 14): TOTP second factor, password change and admin
//! reset links, the session list, and the safe defaults of `serve`. Every
//! test runs on SQLite and, with `AMAL_TEST_DATABASE_URL`, on PostgreSQL.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The authenticator's code for `secret` `offset` steps from now.
pub(crate) fn code(secret: &str, offset: i64) -> String {
    let t = now().saturating_add_signed(offset * 30);
    server::services::mfa::code_at(secret, t).unwrap()
}

async fn signin_raw(app: &TestApp, u: &TestUser) -> Value {
    let r = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": u.email, "password": u.password}),
        )
        .await;
    app.json_ok(r, 200).await
}

/// Enrol a signed-in user; the secret and the recovery codes.
pub(crate) async fn enrol(app: &TestApp, s: &Session) -> (String, Vec<String>) {
    let r = app
        .post("/api/auth/mfa/setup", Some(&s.access), json!({}))
        .await;
    let setup = app.json_ok(r, 200).await;
    let secret = setup["secret"].as_str().unwrap().to_string();
    let codes = confirm(app, s, &secret).await;
    (secret, codes)
}

/// Confirm a started enrolment with the current code; the recovery codes.
async fn confirm(app: &TestApp, s: &Session, secret: &str) -> Vec<String> {
    let r = app
        .post(
            "/api/auth/mfa/confirm",
            Some(&s.access),
            json!({"code": code(secret, 0)}),
        )
        .await;
    let done = app.json_ok(r, 200).await;
    done["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

async fn assert_old_password_refused(app: &TestApp, u: &TestUser) {
    let old = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": u.email, "password": u.password}),
        )
        .await;
    assert_eq!(old.status(), 401);
}

fn with_password(u: &TestUser, password: &str) -> TestUser {
    TestUser {
        id: u.id,
        email: u.email.clone(),
        password: password.into(),
        role: u.role.clone(),
    }
}

async fn verify(app: &TestApp, challenge: &str, code: &str) -> reqwest::Response {
    app.post(
        "/api/auth/mfa/verify",
        None,
        json!({"challengeToken": challenge, "code": code}),
    )
    .await
}

fn actions(events: &[store::audit::StoredEvent], action: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.action == action)
        .map(|e| e.outcome.clone())
        .collect()
}

#[tokio::test]
async fn mfa_enrolment_sign_in_with_code_wrong_and_replayed_codes_and_recovery_codes_once() {
    let app = TestApp::spawn().await;
    let u = app.create_user("nurse").await;
    let s = app.sign_in(&u).await;

    // Enrolment: a secret, an otpauth URI and a QR code drawn by the server.
    let r = app
        .post("/api/auth/mfa/setup", Some(&s.access), json!({}))
        .await;
    let setup = app.json_ok(r, 200).await;
    let secret = setup["secret"].as_str().unwrap().to_string();
    assert!(setup["otpauthUri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    assert!(setup["qrSvg"].as_str().unwrap().contains("<svg"));
    let stored = store::identity::mfa_of(&app.state.db, u.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.secret_enc.contains(&secret),
        "the secret is stored sealed"
    );
    // A wrong code does not confirm it.
    let r = app
        .post(
            "/api/auth/mfa/confirm",
            Some(&s.access),
            json!({"code": "000000"}),
        )
        .await;
    assert_problem(r, 401, "unauthorized").await;
    let codes = confirm(&app, &s, &secret).await;
    assert_eq!(codes.len(), 10);
    let st = app
        .json_ok(app.get("/api/auth/mfa", Some(&s.access)).await, 200)
        .await;
    assert_eq!(st["enrolled"], true);
    assert_eq!(st["recoveryCodesLeft"], 10);
    // A second set-up would replace the factor: refused.
    let r = app
        .post("/api/auth/mfa/setup", Some(&s.access), json!({}))
        .await;
    assert_problem(r, 409, "conflict").await;

    // Sign-in now asks for the code; the challenge is no access token.
    let step = signin_raw(&app, &u).await;
    assert_eq!(step["step"], "mfa_required");
    assert!(step.get("accessToken").is_none());
    let challenge = step["challengeToken"].as_str().unwrap().to_string();
    let r = app.get("/api/auth/me", Some(&challenge)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A wrong code.
    let r = verify(&app, &challenge, "123456").await;
    assert_problem(r, 401, "unauthorized").await;
    // The code of the enrolment's step was used: a replay is refused.
    let r = verify(&app, &challenge, &code(&secret, 0)).await;
    assert_problem(r, 401, "unauthorized").await;
    // The next step's code (within the one-step skew) signs in, once.
    let next = code(&secret, 1);
    let r = verify(&app, &challenge, &next).await;
    let pair = app.json_ok(r, 200).await;
    let access = pair["accessToken"].as_str().unwrap();
    assert_eq!(app.get("/api/auth/me", Some(access)).await.status(), 200);
    let again = signin_raw(&app, &u).await;
    let challenge2 = again["challengeToken"].as_str().unwrap().to_string();
    let r = verify(&app, &challenge2, &next).await;
    assert_problem(r, 401, "unauthorized").await;

    // A recovery code works once (any case, with or without the dash).
    let r = verify(&app, &challenge2, &codes[3].to_uppercase()).await;
    app.json_ok(r, 200).await;
    let r = verify(&app, &challenge2, &codes[3]).await;
    assert_problem(r, 401, "unauthorized").await;
    let st = app
        .json_ok(app.get("/api/auth/mfa", Some(access)).await, 200)
        .await;
    assert_eq!(st["recoveryCodesLeft"], 9);
    // A forged challenge is refused.
    let r = verify(&app, "not.a.token", &code(&secret, 0)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let ev = audit_events(&app).await;
    let enrol = actions(&ev, "auth.mfa.enrol");
    assert!(enrol.contains(&"started".to_string()) && enrol.contains(&"success".to_string()));
    let verified = actions(&ev, "auth.mfa.verify");
    assert_eq!(verified.iter().filter(|o| *o == "success").count(), 2);
    assert!(verified.iter().filter(|o| *o == "failure").count() >= 4);
    assert!(actions(&ev, "auth.signin").contains(&"mfa_required".to_string()));
}

#[tokio::test]
async fn mfa_failures_are_rate_limited_per_account() {
    let app = TestApp::spawn_with(|r| {
        // The per-account failure budget is the sign-in one (100/h by
        // default); a small one here.
        r.rate_limit_auth = Some("10000/60s".into());
    })
    .await;
    let u = app.create_user("nurse").await;
    let s = app.sign_in(&u).await;
    let (_secret, _) = enrol(&app, &s).await;
    let limit = app.state.config.rate_limits.account_failures.limit;
    let step = signin_raw(&app, &u).await;
    let challenge = step["challengeToken"].as_str().unwrap().to_string();
    let mut limited = false;
    for _ in 0..=limit {
        let r = verify(&app, &challenge, "000000").await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().get("retry-after").is_some());
            limited = true;
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "the account's failures are limited");
}

#[tokio::test]
async fn providers_and_admins_must_enrol_at_first_sign_in_under_required_for_clinical() {
    let app = TestApp::spawn_with(|r| r.mfa = Some("required-for-clinical".into())).await;
    // A nurse is not required to: tokens at once.
    let nurse = app.create_user("nurse").await;
    assert!(signin_raw(&app, &nurse).await["accessToken"].is_string());

    for role in ["provider", "admin"] {
        let u = app.create_user(role).await;
        let step = signin_raw(&app, &u).await;
        assert_eq!(step["step"], "mfa_enrolment_required", "{role}");
        let challenge = step["challengeToken"].as_str().unwrap().to_string();
        // Nothing else is possible with the challenge.
        assert_eq!(
            app.get("/api/patients", Some(&challenge)).await.status(),
            401
        );
        // An enrolment challenge is not a verification challenge.
        let r = verify(&app, &challenge, "000000").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = app
            .post(
                "/api/auth/mfa/setup",
                None,
                json!({"challengeToken": challenge}),
            )
            .await;
        let setup = app.json_ok(r, 200).await;
        let secret = setup["secret"].as_str().unwrap().to_string();
        let r = app
            .post(
                "/api/auth/mfa/confirm",
                None,
                json!({"challengeToken": challenge, "code": code(&secret, 0)}),
            )
            .await;
        let done = app.json_ok(r, 200).await;
        assert_eq!(done["recoveryCodes"].as_array().unwrap().len(), 10);
        let access = done["tokens"]["accessToken"].as_str().unwrap();
        assert_eq!(app.get("/api/auth/me", Some(access)).await.status(), 200);
        // From now on sign-in asks for the code.
        assert_eq!(signin_raw(&app, &u).await["step"], "mfa_required");
    }
    // Without a bearer or a challenge, set-up is refused.
    let r = app.post("/api/auth/mfa/setup", None, json!({})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_reset_of_mfa_is_audited_and_ends_the_users_sessions() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let u = app.create_user("provider").await;
    let s = app.sign_in(&u).await;
    enrol(&app, &s).await;
    // Not for a non-admin.
    let other = app.signed_in("nurse").await;
    let path = format!("/api/users/{}/mfa", u.id);
    assert_eq!(app.delete(&path, &other.access).await.status(), 403);
    let r = app.delete(&path, &admin.access).await;
    let v = app.json_ok(r, 200).await;
    assert_eq!(v["ended"], 1);
    assert_eq!(app.get("/api/auth/me", Some(&s.access)).await.status(), 401);
    // Optional policy: the user signs in with the password alone again.
    assert!(signin_raw(&app, &u).await["accessToken"].is_string());
    let ev = audit_events(&app).await;
    let reset: Vec<_> = ev.iter().filter(|e| e.action == "auth.mfa.reset").collect();
    assert_eq!(reset.len(), 1);
    assert_eq!(reset[0].actor_id, Some(admin.user_id));
    assert_eq!(reset[0].resource_id, Some(u.id));
}

#[tokio::test]
async fn password_change_needs_the_current_one_and_ends_the_other_sessions() {
    let app = TestApp::spawn().await;
    let u = app.create_user("nurse").await;
    let here = app.sign_in(&u).await;
    let there = app.sign_in(&u).await;
    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});
    let r = app
        .post(
            "/api/auth/password",
            Some(&here.access),
            change("wrong-password-123", "a-brand-new-passphrase-9"),
        )
        .await;
    assert_problem(r, 422, "validation_failed").await;
    let r = app
        .post(
            "/api/auth/password",
            Some(&here.access),
            change(&u.password, "password1234"),
        )
        .await;
    assert_problem(r, 422, "validation_failed").await;
    // Nothing changed so far.
    assert_eq!(
        app.get("/api/auth/me", Some(&there.access)).await.status(),
        200
    );
    let new = "a-brand-new-passphrase-9";
    let r = app
        .post(
            "/api/auth/password",
            Some(&here.access),
            change(&u.password, new),
        )
        .await;
    assert_eq!(app.json_ok(r, 200).await["ended"], 1);
    assert_eq!(
        app.get("/api/auth/me", Some(&here.access)).await.status(),
        200
    );
    assert_eq!(
        app.get("/api/auth/me", Some(&there.access)).await.status(),
        401
    );
    assert_old_password_refused(&app, &u).await;
    app.sign_in(&with_password(&u, new)).await;
    let ev = audit_events(&app).await;
    let changes = actions(&ev, "auth.password.change");
    assert_eq!(changes.iter().filter(|o| *o == "success").count(), 1);
    assert_eq!(changes.iter().filter(|o| *o == "failure").count(), 1);
}

#[tokio::test]
async fn admin_reset_link_replaces_the_password_once() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let u = app.create_user("provider").await;
    let s = app.sign_in(&u).await;
    let path = format!("/api/users/{}/password-reset", u.id);
    let nurse = app.signed_in("nurse").await;
    assert_eq!(
        app.post(&path, Some(&nurse.access), json!({}))
            .await
            .status(),
        403
    );
    let r = app.post(&path, Some(&admin.access), json!({})).await;
    let link = app.json_ok(r, 201).await;
    let token = link["token"].as_str().unwrap().to_string();
    assert!(link["path"]
        .as_str()
        .unwrap()
        .starts_with("/set-password?token="));
    // The old password and the old sessions stop at once.
    assert_eq!(app.get("/api/auth/me", Some(&s.access)).await.status(), 401);
    assert_old_password_refused(&app, &u).await;
    // The token is stored only hashed.
    let raw = format!("{:?}", audit_events(&app).await);
    assert!(!raw.contains(&token));
    // A weak password is refused and the link still works after that.
    let set = |pw: &str| json!({"token": token, "newPassword": pw});
    let r = app
        .post("/api/auth/password/set", None, set("password1234"))
        .await;
    assert_problem(r, 422, "validation_failed").await;
    let new = "chosen-after-the-reset-42";
    let r = app.post("/api/auth/password/set", None, set(new)).await;
    assert_eq!(r.status(), 204);
    let r = app
        .post("/api/auth/password/set", None, set("another-one-later-77"))
        .await;
    assert_eq!(r.status(), 403, "the link works once");
    app.sign_in(&with_password(&u, new)).await;
    let ev = audit_events(&app).await;
    assert_eq!(actions(&ev, "auth.password.reset"), ["success"]);
    assert_eq!(actions(&ev, "auth.password.set"), ["success"]);
}

pub(crate) async fn sign_in_as(app: &TestApp, u: &TestUser, agent: &str) -> Session {
    let r = app
        .client
        .post(app.url("/api/auth/signin"))
        .header("user-agent", agent)
        .json(&json!({"email": u.email, "password": u.password}))
        .send()
        .await
        .unwrap();
    let v = app.json_ok(r, 200).await;
    Session {
        access: v["accessToken"].as_str().unwrap().to_string(),
        refresh: v["refreshToken"].as_str().unwrap().to_string(),
        user_id: u.id,
    }
}

#[tokio::test]
async fn session_list_and_remote_sign_out() {
    let app = TestApp::spawn().await;
    let u = app.create_user("nurse").await;
    let laptop = sign_in_as(&app, &u, "Laptop browser/1.0").await;
    let phone = sign_in_as(&app, &u, "Phone browser/2.0").await;
    let list = app
        .json_ok(
            app.get("/api/auth/sessions", Some(&laptop.access)).await,
            200,
        )
        .await;
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let mine: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["userAgent"], "Laptop browser/1.0");
    assert_eq!(mine[0]["ip"], "127.0.0.1");
    assert!(mine[0]["startedAt"].is_string() && mine[0]["lastActiveAt"].is_string());
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(other["userAgent"], "Phone browser/2.0");
    let other_id = other["id"].as_str().unwrap();

    // Another user cannot end it.
    let stranger = app.signed_in("nurse").await;
    let path = format!("/api/auth/sessions/{other_id}");
    assert_eq!(app.delete(&path, &stranger.access).await.status(), 404);
    // Sign the phone out from the laptop.
    assert_eq!(app.delete(&path, &laptop.access).await.status(), 204);
    assert_eq!(
        app.get("/api/auth/me", Some(&phone.access)).await.status(),
        401
    );
    let r = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": phone.refresh}),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        app.get("/api/auth/me", Some(&laptop.access)).await.status(),
        200
    );

    // Sign out everywhere.
    let again = app.sign_in(&u).await;
    let r = app
        .request(
            Method::DELETE,
            "/api/auth/sessions",
            Some(&laptop.access),
            None,
        )
        .await;
    assert_eq!(app.json_ok(r, 200).await["ended"], 2);
    for s in [&laptop, &again] {
        assert_eq!(app.get("/api/auth/me", Some(&s.access)).await.status(), 401);
    }

    // An administrator ends a user's sessions.
    let admin = app.signed_in("admin").await;
    let s = app.sign_in(&u).await;
    let path = format!("/api/users/{}/sessions", u.id);
    assert_eq!(app.delete(&path, &stranger.access).await.status(), 403);
    let r = app.delete(&path, &admin.access).await;
    assert_eq!(app.json_ok(r, 200).await["ended"], 1);
    assert_eq!(app.get("/api/auth/me", Some(&s.access)).await.status(), 401);
    let ev = audit_events(&app).await;
    assert_eq!(actions(&ev, "auth.session.revoke").len(), 3);
}

#[tokio::test]
async fn a_half_sent_request_and_an_idle_connection_are_dropped_after_the_header_timeout() {
    let app = TestApp::spawn_with(|r| r.header_read_timeout = Some("300ms".into())).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Half a request head, then nothing: the server closes the connection.
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), c.read_to_end(&mut buf))
        .await
        .expect("the server closed the half-sent connection");
    assert!(read.is_ok() || buf.is_empty());
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");

    // A complete request is answered; the idle connection is then closed.
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), c.read_to_end(&mut buf))
        .await
        .expect("the idle keep-alive connection was closed")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_database_and_its_side_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    if is_postgres() {
        eprintln!("skipped on PostgreSQL: the files are SQLite's");
        return;
    }
    let app = TestApp::spawn().await;
    app.signed_in("nurse").await;
    let dir = app.raw.data_dir.clone().unwrap();
    for name in ["amal.db", "amal.db-wal", "amal.db-shm", "secrets.env"] {
        let p = dir.join(name);
        if name == "secrets.env" && !p.exists() {
            continue;
        }
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

fn amal(dir: &std::path::Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AMAL_DATA_DIR", dir)
        .kill_on_drop(true);
    c
}

#[tokio::test]
async fn serve_and_config_check_refuse_each_unsafe_default() {
    let dir = temp_dir();
    let cases: [(&[(&str, &str)], &str); 4] = [
        // Development secrets on every interface.
        (&[("AMAL_BIND", "0.0.0.0:0")], "AMAL_BIND"),
        // A known-weak secret, even named production.
        (
            &[
                ("AMAL_BIND", "0.0.0.0:0"),
                ("AMAL_ENV", "production"),
                ("JWT_SECRET", "secret"),
                ("JWT_REFRESH_SECRET", "secret2"),
            ],
            "JWT_SECRET",
        ),
        // --insecure-dev is not for production.
        (
            &[("AMAL_ENV", "production"), ("AMAL_INSECURE_DEV", "true")],
            "AMAL_INSECURE_DEV",
        ),
        // A remote database reached without TLS through `host=`.
        (
            &[
                ("AMAL_ENV", "production"),
                (
                    "DATABASE_URL",
                    "postgres://localhost/amal?host=db.example.net",
                ),
            ],
            "DATABASE_URL",
        ),
    ];
    for (env, setting) in cases {
        for args in [&["config", "check"][..], &["serve"][..]] {
            let mut c = amal(&dir);
            c.args(args);
            for (k, v) in env {
                c.env(k, v);
            }
            let out = c.output().await.unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!out.status.success(), "{args:?} {env:?}: {all}");
            assert!(all.contains(setting), "{args:?} {env:?}: {all}");
        }
    }
    // --insecure-dev makes the development bind a valid configuration.
    let mut c = amal(&dir);
    c.args(["--insecure-dev", "config", "check"])
        .env("AMAL_BIND", "0.0.0.0:0");
    let out = c.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn cli_resets_mfa_and_password_with_an_audit_event() {
    let app = TestApp::spawn().await;
    let u = app.create_user("provider").await;
    let s = app.sign_in(&u).await;
    enrol(&app, &s).await;
    let dir = app.raw.data_dir.clone().unwrap();
    let url = app.raw.database_url.clone().unwrap();
    for (cmd, expect) in [
        ("reset-mfa", "second factor"),
        ("reset-password", "/set-password?token="),
    ] {
        let mut c = amal(&dir);
        c.args(["user", cmd, "--email", &u.email])
            .env("DATABASE_URL", &url);
        let out = c.output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{cmd}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(expect), "{text}");
    }
    assert_eq!(app.get("/api/auth/me", Some(&s.access)).await.status(), 401);
    assert!(store::identity::mfa_of(&app.state.db, u.id)
        .await
        .unwrap()
        .is_none());
    let ev = audit_events(&app).await;
    for action in ["auth.mfa.reset", "auth.password.reset"] {
        let e = ev.iter().find(|e| e.action == action).unwrap();
        assert_eq!(e.actor_id, None);
        assert!(e.detail.as_deref().unwrap_or("").contains("cli"));
    }
}

/// Migration 0016 keeps one activity column per session: whichever of
/// `last_active_at` and `last_seen_at` was newer survives in `last_seen_at`.
#[tokio::test]
async fn session_activity_columns_merge_into_the_newer_time() {
    let app = TestApp::spawn().await;
    let newer = app.create_user("nurse").await;
    let older = app.create_user("staff").await;
    app.sign_in(&newer).await;
    app.sign_in(&older).await;
    let db = &app.state.db;
    let seen = |id| async move {
        let rows = store::identity::live_sessions(db, id).await.unwrap();
        assert_eq!(rows.len(), 1);
        rows.first().and_then(|r| r.last_seen_at).unwrap()
    };
    let before = seen(older.id).await;
    store::migrate::down(db, 15).await.unwrap();
    let later = before + chrono::Duration::minutes(5);
    let earlier = before - chrono::Duration::minutes(5);
    let sql = "UPDATE sessions SET last_active_at = $1 WHERE user_id = $2";
    for (at, id) in [(later, newer.id), (earlier, older.id)] {
        let n = match db {
            store::Db::Sqlite(s) => sqlx::query(sql)
                .bind(at)
                .bind(id)
                .execute(&s.write)
                .await
                .map(|r| r.rows_affected()),
            store::Db::Postgres(p) => sqlx::query(sql)
                .bind(at)
                .bind(id)
                .execute(p)
                .await
                .map(|r| r.rows_affected()),
        };
        assert_eq!(n.unwrap(), 1);
    }
    store::migrate::up(db).await.unwrap();
    assert_eq!(
        seen(newer.id).await,
        later,
        "the newer last_active_at is kept"
    );
    assert_eq!(seen(older.id).await, before, "an older one does not win");
}
