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

#[tokio::test]
async fn failed_signins_are_limited_per_account() {
    let app = TestApp::spawn().await;
    let user = app.create_user("nurse").await;
    // Pre-load 100 failures for this account, as if from many IPs.
    let key = format!("signin-fail:{}", {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(user.email.as_bytes()))
    });
    for _ in 0..100 {
        app.state
            .limiter
            .hit(&key, app.state.config.rate_limits.account_failures)
            .await
            .unwrap();
    }
    // Even the right password is now refused until the hour passes.
    let r = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": user.email, "password": user.password}),
        )
        .await;
    assert_problem(r, 429, "rate_limited").await;
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
