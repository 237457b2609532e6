//! `amal smoke`: the launch smoke suite passes against a freshly started
//! server with the default limits, and fails, naming the checks, against a
//! server whose database has gone away.

use std::process::Output;

use crate::helpers::*;

/// The seed's checks (and the extra ones) that must all pass.
const CHECKS: [&str; 28] = [
    "health",
    "auth.signin",
    "auth.signup",
    "auth.signin_new_user",
    "users.create_staff",
    "unauthorized.no_token",
    "writes.create_patient",
    "reads.patients_list",
    "reads.patient",
    "reads.overview",
    "writes.create_note",
    "unauthorized.staff_chart",
    "unauthorized.admin_patient_data",
    "roles.matrix",
    "security.sql_injection_search",
    "security.sql_injection_note",
    "security.xss",
    "ai.refusal",
    "metrics.json",
    "metrics.prometheus",
    "ops.alerts",
    "audit.presence",
    "audit.verify",
    "auth.refresh_reuse",
    "cleanup.drafts",
    "writes.rate_limit",
    "auth.rate_limit",
    "cleanup.users",
];

/// The default limits of SPEC §5 (the smoke suite exhausts the auth and
/// write limits, so they must be the real ones).
async fn default_limits_app() -> TestApp {
    TestApp::spawn_with(|r| {
        r.rate_limit_auth = None;
        r.rate_limit_write = None;
        r.rate_limit_read = None;
        r.rate_limit_ai = None;
    })
    .await
}

async fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> (Output, String) {
    let mut c = tokio::process::Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[tokio::test]
async fn smoke_suite_passes_against_a_fresh_server() {
    let app = default_limits_app().await;
    let admin = app.create_user("admin").await;
    let (out, text) = run(
        env!("CARGO_BIN_EXE_amal"),
        &["smoke", "--url", &app.base],
        &[
            ("SMOKE_ADMIN_EMAIL", &admin.email),
            ("SMOKE_ADMIN_PASSWORD", &admin.password),
        ],
    )
    .await;
    assert!(out.status.success(), "smoke failed:\n{text}");
    for name in CHECKS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("PASS {name} ("))),
            "{name} did not pass:\n{text}"
        );
    }
    assert!(!text.contains("FAIL "), "{text}");
    assert!(
        text.contains(&format!("Summary: all {} checks passed", CHECKS.len())),
        "{text}"
    );
    // The default limits were really exhausted, not skipped.
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("PASS {name} (")))
            .unwrap_or("")
            .to_string()
    };
    // The 31st write and the 6th sign-in of the window are refused (a few
    // more may pass when the minute turns: the earlier requests then count
    // at their sliding-window weight).
    let nth = |name: &str, prefix: &str| -> u64 {
        let l = line(name);
        l.split(prefix)
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {l}"))
    };
    let w = nth("writes.rate_limit", "429 on write ");
    assert!((31..=38).contains(&w), "{text}");
    let a = nth("auth.rate_limit", "429 on sign-in ");
    assert!((6..=9).contains(&a), "{text}");
    assert!(!text.contains(&admin.password), "the password was printed");

    // What it created is marked and the accounts it created are disabled.
    let run_id = text
        .lines()
        .next()
        .and_then(|l| l.split("(run id ").nth(1))
        .map(|s| s.trim_end_matches(')').to_string())
        .unwrap();
    let r = app
        .post(
            "/api/auth/signin",
            None,
            serde_json::json!({"email": admin.email, "password": admin.password}),
        )
        .await;
    // The sign-in limit is exhausted from this address for a minute.
    assert_eq!(r.status(), 429);
    let users = store::users::list(&app.state.db, None, 200).await.unwrap();
    let smoke: Vec<_> = users
        .iter()
        .filter(|u| u.email.starts_with(&format!("smoke-{run_id}")))
        .collect();
    assert_eq!(smoke.len(), 2, "{run_id}");
    assert!(smoke
        .iter()
        .all(|u| u.status == domain::account::UserStatus::Disabled));
    let events = audit_events(&app).await;
    assert!(events.iter().any(|e| e
        .request_id
        .as_deref()
        .unwrap_or("")
        .starts_with(&format!("smoke-{run_id}-"))));
}

#[tokio::test]
async fn smoke_suite_fails_against_a_server_whose_database_is_gone() {
    let app = default_limits_app().await;
    let admin = app.create_user("admin").await;
    // The database becomes unreachable under a running server.
    app.state.db.close().await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smoke-test.sh");
    let (out, text) = run(
        script.to_str().unwrap(),
        &[],
        &[
            ("API_URL", &app.base),
            ("AMAL_BIN", env!("CARGO_BIN_EXE_amal")),
            ("SMOKE_ADMIN_EMAIL", &admin.email),
            ("SMOKE_ADMIN_PASSWORD", &admin.password),
        ],
    )
    .await;
    assert!(!out.status.success(), "{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL health: "), "{text}");
    assert!(text.contains("database \"unreachable\""), "{text}");
    assert!(text.contains("FAIL auth.signin: "), "{text}");
    let summary = text
        .lines()
        .find(|l| l.starts_with("Summary: "))
        .unwrap_or("");
    assert!(
        summary.contains("FAILED") && summary.contains("health"),
        "{text}"
    );
}

#[tokio::test]
async fn smoke_suite_names_missing_credentials_and_unreachable_servers() {
    let (out, text) = run(
        env!("CARGO_BIN_EXE_amal"),
        &["smoke", "--url", "http://127.0.0.1:9"],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text.contains("FAIL health: GET /api/health failed: cannot connect"),
        "{text}"
    );
    assert!(text.contains("SMOKE_ADMIN_EMAIL"), "{text}");
}

/// Enrol `u` (whose first sign-in the policy stops for enrolment); the
/// base32 secret its authenticator would hold.
async fn enrol_at_first_sign_in(app: &TestApp, u: &TestUser) -> String {
    let r = app
        .post(
            "/api/auth/signin",
            None,
            serde_json::json!({"email": u.email, "password": u.password}),
        )
        .await;
    let step = app.json_ok(r, 200).await;
    assert_eq!(step["step"], "mfa_enrolment_required", "{step}");
    let challenge = step["challengeToken"].clone();
    let r = app
        .post(
            "/api/auth/mfa/setup",
            None,
            serde_json::json!({"challengeToken": challenge}),
        )
        .await;
    let secret = app.json_ok(r, 200).await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post(
            "/api/auth/mfa/confirm",
            None,
            serde_json::json!({"challengeToken": challenge, "code": crate::identity::code(&secret, 0)}),
        )
        .await;
    app.json_ok(r, 200).await;
    secret
}

#[tokio::test]
async fn smoke_suite_completes_a_second_factor_and_names_a_missing_one() {
    // Every account needs a factor: the admin's comes from the secret given
    // to smoke, the provider and staff it creates are enrolled by the suite.
    let app = TestApp::spawn_with(|r| r.mfa = Some("required".into())).await;
    let admin = app.create_user("admin").await;
    let secret = enrol_at_first_sign_in(&app, &admin).await;
    let creds = [
        ("SMOKE_ADMIN_EMAIL", admin.email.as_str()),
        ("SMOKE_ADMIN_PASSWORD", admin.password.as_str()),
    ];
    let with = |extra: Option<(&'static str, &str)>| {
        let mut v: Vec<(&str, String)> = creds.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some((k, x)) = extra {
            v.push((k, x.to_string()));
        }
        v
    };
    let smoke = async |envs: Vec<(&str, String)>| {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(
            env!("CARGO_BIN_EXE_amal"),
            &["smoke", "--url", &app.base],
            &envs,
        )
        .await
    };

    let (out, text) = smoke(with(Some(("SMOKE_TOTP_SECRET", secret.as_str())))).await;
    assert!(out.status.success(), "smoke failed:\n{text}");
    assert!(
        text.contains(&format!("Summary: all {} checks passed", CHECKS.len())),
        "{text}"
    );
    assert!(!text.contains(&secret), "the secret was printed");
    // The suite's own accounts now have a factor each.
    let users = store::users::list(&app.state.db, None, 200).await.unwrap();
    let own: Vec<_> = users
        .iter()
        .filter(|u| u.email.starts_with("smoke-"))
        .collect();
    assert_eq!(own.len(), 2);
    for u in own {
        let m = store::identity::mfa_of(&app.state.db, u.id).await.unwrap();
        assert!(m.is_some_and(|m| m.confirmed_at.is_some()), "{}", u.email);
    }

    // Without the secret: a clear failure of the sign-in check, no crash.
    let (out, text) = smoke(with(None)).await;
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL auth.signin: the admin has a second factor: set SMOKE_TOTP_SECRET"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    // A secret that is not this account's, and one that is not base32.
    let (out, text) = smoke(with(Some((
        "SMOKE_TOTP_SECRET",
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    ))))
    .await;
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL auth.signin: the admin's second factor was refused"),
        "{text}"
    );
    let (out, text) = smoke(with(Some(("SMOKE_TOTP_SECRET", "not base32 at all!")))).await;
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("is not valid base32"), "{text}");
}
