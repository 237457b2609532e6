//! Rate limits (SPEC §5).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn sixth_signin_in_a_minute_is_refused() {
    let app = TestApp::spawn_with(|r| r.rate_limit_auth = None).await;
    let user = app.create_user("nurse").await;
    for i in 1..=5 {
        let r = app
            .post(
                "/api/auth/signin",
                None,
                json!({"email": user.email, "password": user.password}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "attempt {i}");
        assert_eq!(header(&r, "x-ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(
            header(&r, "x-ratelimit-remaining"),
            Some((5 - i).to_string())
        );
        assert!(header(&r, "x-ratelimit-reset").is_some());
    }
    let r = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": user.email, "password": user.password}),
        )
        .await;
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    // Refused requests count too, so the wait can run past one period.
    assert!((1..=120).contains(&retry), "{retry}");
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(header(&r, h).is_some(), "{h}");
    }
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert_problem(r, 429, "rate_limited").await;
    // Sign-up has its own bucket.
    let r = app.post("/api/auth/signup", None, json!({})).await;
    assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(app.state.metrics.counter("rate_limit.hit") >= 1);
}

#[tokio::test]
async fn limits_are_configurable() {
    let app = TestApp::spawn_with(|r| r.rate_limit_auth = Some("2/60s".into())).await;
    for _ in 0..2 {
        let r = app
            .post(
                "/api/auth/signin",
                None,
                json!({"email": "x@clinic.test", "password": "whatever-long-pw"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": "x@clinic.test", "password": "whatever-long-pw"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn spoofed_forwarded_for_is_ignored_unless_trusted() {
    let app = TestApp::spawn_with(|r| r.rate_limit_auth = Some("2/60s".into())).await;
    for i in 0..3 {
        let r = app
            .client
            .post(app.url("/api/auth/signin"))
            .header("X-Forwarded-For", format!("10.0.0.{i}"))
            .json(&json!({"email": "x@clinic.test", "password": "whatever-long-pw"}))
            .send()
            .await
            .unwrap();
        let expect = if i < 2 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(
            r.status(),
            expect,
            "spoofed header must not reset the limit"
        );
    }
    // Behind a trusted proxy (the loopback peer), each forwarded client has its own bucket.
    let app = TestApp::spawn_with(|r| {
        r.rate_limit_auth = Some("2/60s".into());
        r.trusted_proxies = Some("127.0.0.1".into());
    })
    .await;
    for i in 0..4 {
        let r = app
            .client
            .post(app.url("/api/auth/signin"))
            .header("X-Forwarded-For", format!("203.0.113.{i}"))
            .json(&json!({"email": "x@clinic.test", "password": "whatever-long-pw"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
}

/// Sign in to `email` as if from `ip` (the app trusts the loopback proxy).
async fn signin_from(app: &TestApp, ip: &str, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/auth/signin"))
        .header("X-Forwarded-For", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn behind_proxy(tweak: impl FnOnce(&mut server::RawConfig)) -> TestApp {
    TestApp::spawn_with(|r| {
        r.trusted_proxies = Some("127.0.0.1".into());
        tweak(r);
    })
    .await
}

fn retry_after(r: &reqwest::Response) -> u64 {
    header(r, "retry-after").unwrap().parse().unwrap()
}

/// The old per-account lockout let anyone lock a clinician out for an hour
/// by failing 100 sign-ins from 100 IPs. Now the owner, from an IP they
/// signed in from before, is never stopped by other IPs' failures.
#[tokio::test]
async fn a_hundred_failures_from_a_hundred_ips_do_not_stop_the_owner_from_a_known_ip() {
    let app = behind_proxy(|_| {}).await;
    let user = app.create_user("nurse").await;
    let home = "198.51.100.7";
    let r = signin_from(&app, home, &user.email, &user.password).await;
    assert_eq!(r.status(), StatusCode::OK);
    for i in 0..100 {
        let r = signin_from(
            &app,
            &format!("203.0.113.{i}"),
            &user.email,
            "wrong-password-1",
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Past 100 failures (the default per hour) the account is slowed: each
    // further failure doubles the wait of an unknown IP, so one is soon
    // told to wait ...
    let mut slowed = None;
    for i in 0..20 {
        let r = signin_from(
            &app,
            &format!("192.0.2.{i}"),
            &user.email,
            "wrong-password-1",
        )
        .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            slowed = Some(retry_after(&r));
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(slowed.is_some_and(|s| s >= 1), "the account is slowed down");
    // ... but the owner from their known IP signs in at once.
    let r = signin_from(&app, home, &user.email, &user.password).await;
    assert_eq!(r.status(), StatusCode::OK, "the owner is not locked out");
}

#[tokio::test]
async fn failed_signins_are_limited_per_account_and_ip() {
    let app = behind_proxy(|r| r.rate_limit_account_ip_failures = Some("3/15m".into())).await;
    let user = app.create_user("nurse").await;
    for _ in 0..3 {
        let r = signin_from(&app, "203.0.113.9", &user.email, "wrong-password-1").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // That IP is refused for this account, even with the right password ...
    let r = signin_from(&app, "203.0.113.9", &user.email, &user.password).await;
    assert!(retry_after(&r) >= 1);
    assert_problem(r, 429, "rate_limited").await;
    // ... another account from the same IP is not ...
    let other = app.create_user("nurse").await;
    let r = signin_from(&app, "203.0.113.9", &other.email, &other.password).await;
    assert_eq!(r.status(), StatusCode::OK);
    // ... nor the same account from another IP.
    let r = signin_from(&app, "198.51.100.1", &user.email, &user.password).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn failed_signins_are_limited_per_ip_over_all_accounts() {
    let app = behind_proxy(|r| r.rate_limit_ip_failures = Some("4/1h".into())).await;
    for i in 0..4 {
        let r = signin_from(
            &app,
            "203.0.113.20",
            &format!("nobody{i}@clinic.test"),
            "wrong-password-1",
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let user = app.create_user("nurse").await;
    let r = signin_from(&app, "203.0.113.20", &user.email, &user.password).await;
    assert_problem(r, 429, "rate_limited").await;
    let r = signin_from(&app, "203.0.113.21", &user.email, &user.password).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Past the free failures each further failure doubles the wait of an
/// unknown IP: the `Retry-After` seen after each allowed attempt grows.
#[tokio::test]
async fn account_failures_slow_the_account_down_with_a_growing_delay() {
    let app = behind_proxy(|r| r.rate_limit_account_failures = Some("3/1h".into())).await;
    let user = app.create_user("nurse").await;
    for i in 0..3 {
        let r = signin_from(
            &app,
            &format!("203.0.113.{i}"),
            &user.email,
            "wrong-password-1",
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let mut waits = Vec::new();
    for i in 10..13 {
        let ip = format!("203.0.113.{i}");
        let r = signin_from(&app, &ip, &user.email, "wrong-password-1").await;
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "slowed, not counted"
        );
        let wait = retry_after(&r);
        waits.push(wait);
        // Wait it out, then fail once more: the next wait is longer.
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        let mut r = signin_from(&app, &ip, &user.email, "wrong-password-1").await;
        while r.status() == StatusCode::TOO_MANY_REQUESTS {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            r = signin_from(&app, &ip, &user.email, "wrong-password-1").await;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(waits.windows(2).all(|w| w[1] > w[0]), "growing: {waits:?}");
    // The owner, once the delay has passed, signs in: slowed, not locked.
    let r = signin_from(&app, "192.0.2.1", &user.email, &user.password).await;
    let wait = if r.status() == StatusCode::TOO_MANY_REQUESTS {
        retry_after(&r)
    } else {
        0
    };
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let r = signin_from(&app, "192.0.2.1", &user.email, &user.password).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn user_classes_count_per_user_after_authentication() {
    let app = TestApp::spawn_with(|r| r.rate_limit_read = Some("3/60s".into())).await;
    // Unauthenticated requests are refused before counting.
    for _ in 0..5 {
        assert_eq!(
            app.get("/api/patients", None).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let nurse = app.signed_in("nurse").await;
    let admin = app.signed_in("admin").await;
    for _ in 0..3 {
        let r = app.get("/api/patients", Some(&admin.access)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(header(&r, "x-ratelimit-limit").as_deref(), Some("3"));
    }
    assert_eq!(
        app.get("/api/patients", Some(&admin.access)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another user has their own bucket.
    assert_ne!(
        app.get("/api/patients", Some(&nurse.access)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn two_instances_on_postgres_share_the_limit() {
    if !postgres_only("shared counters are a PostgreSQL feature (SQLite runs one instance)") {
        return;
    }
    let a = TestApp::spawn_with(|r| r.rate_limit_auth = None).await;
    let b = TestApp::spawn_raw(a.raw.clone()).await;
    for i in 0..5 {
        let app = if i % 2 == 0 { &a } else { &b };
        let r = app
            .post(
                "/api/auth/signin",
                None,
                json!({"email": "x@clinic.test", "password": "whatever-long-pw"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {}", i + 1);
    }
    let r = b
        .post(
            "/api/auth/signin",
            None,
            json!({"email": "x@clinic.test", "password": "whatever-long-pw"}),
        )
        .await;
    assert_problem(r, 429, "rate_limited").await;
    let r = a
        .post(
            "/api/auth/signin",
            None,
            json!({"email": "x@clinic.test", "password": "whatever-long-pw"}),
        )
        .await;
    assert_problem(r, 429, "rate_limited").await;
}

/// Unauthenticated requests are limited per IP and do not write one durable
/// audit row each: 100 probes of a chart with a forged token get 401s up to
/// the limit, then 429 with `Retry-After`, and leave one `access.refused`
/// event (the summary follows when the minute ends).
#[tokio::test]
async fn anonymous_refusals_are_limited_per_ip_and_aggregated_in_the_audit() {
    let app = TestApp::spawn().await;
    let provider = app.signed_in("provider").await;
    let p = app
        .create_patient(&provider.access, "Probe", "Target")
        .await;
    let path = format!("/api/patients/{}", p["id"].as_str().unwrap());
    let before = audit_events(&app).await.len();
    let (mut unauthorized, mut limited) = (0, 0);
    for _ in 0..100 {
        let r = app.get(&path, Some("not-a-token")).await;
        match r.status() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(header(&r, "retry-after").is_some());
                limited += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    let limit = server::config::RateLimits::default().unauthenticated.limit;
    assert_eq!(unauthorized, limit);
    assert_eq!(limited, 100 - limit);
    let events = audit_events(&app).await;
    let refused: Vec<_> = events[..events.len() - before]
        .iter()
        .filter(|e| e.action == "access.refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].outcome, "unauthorized");
    assert_eq!(
        refused[0].patient_id.map(|u| u.to_string()).as_deref(),
        p["id"].as_str()
    );
    // A signed-in user from the same address is not affected.
    let r = app.get(&path, Some(&provider.access)).await;
    assert_eq!(r.status(), StatusCode::OK);
}
