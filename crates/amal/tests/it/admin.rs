//! Every role against every admin endpoint, against the role table of SPEC §2.

use domain::roles::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spec_roles::*;
use crate::helpers::*;

struct Endpoint {
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
    /// The roles SPEC §2 lets through.
    allowed: &'static [&'static str],
    ok: u16,
}

#[tokio::test]
async fn role_matrix_for_admin_endpoints() {
    let app = TestApp::spawn().await;
    let target = app.create_user("staff").await;
    let mut sessions = Vec::new();
    for role in Role::ALL {
        sessions.push((role, app.signed_in(role.as_str()).await));
    }
    let endpoints = [
        Endpoint {
            method: Method::GET,
            path: "/api/users".into(),
            body: None,
            allowed: ADMIN,
            ok: 200,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/care-teams".into(),
            body: None,
            allowed: ADMIN,
            ok: 200,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/access/reviews".into(),
            body: None,
            allowed: ADMIN,
            ok: 200,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/users".into(),
            body: Some(json!({"email": "", "name": "", "role": "nurse", "password": ""})),
            allowed: ADMIN,
            ok: 422,
        },
        Endpoint {
            method: Method::PATCH,
            path: format!("/api/users/{}", target.id),
            body: Some(json!({"status": "active", "version": 1})),
            allowed: ADMIN,
            ok: 200,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/invites".into(),
            body: Some(json!({"role": "nurse"})),
            allowed: ADMIN,
            ok: 201,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/metrics".into(),
            body: None,
            allowed: ADMIN,
            ok: 200,
        },
        Endpoint {
            method: Method::GET,
            path: "/metrics".into(),
            body: None,
            allowed: ADMIN,
            ok: 200,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/audit".into(),
            body: None,
            allowed: ADMIN,
            ok: 200,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/audit/verify".into(),
            body: None,
            allowed: ADMIN,
            ok: 200,
        },
    ];
    for ep in &endpoints {
        let r = app
            .request(ep.method.clone(), &ep.path, None, ep.body.clone())
            .await;
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{} {} without token",
            ep.method,
            ep.path
        );
        for (role, s) in &sessions {
            let r = app
                .request(
                    ep.method.clone(),
                    &ep.path,
                    Some(&s.access),
                    ep.body.clone(),
                )
                .await;
            let expected = if ep.allowed.contains(&role.as_str()) {
                ep.ok
            } else {
                403
            };
            assert_eq!(
                r.status().as_u16(),
                expected,
                "{} {} as {role}",
                ep.method,
                ep.path
            );
        }
    }
}

#[tokio::test]
async fn admin_creates_users_and_lists_them_with_pagination() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    for i in 0..5 {
        let r = app.post("/api/users", Some(&admin.access), json!({"email": format!("u{i}@clinic.test"), "name": format!("User {i}"), "role": "nurse", "password": "a long enough passphrase"})).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = app.post("/api/users", Some(&admin.access), json!({"email": "u0@clinic.test", "name": "Dup", "role": "nurse", "password": "a long enough passphrase"})).await;
    assert_problem(r, 409, "conflict").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/users?limit=2&cursor={c}"),
            None => "/api/users?limit=2".into(),
        };
        let v: serde_json::Value = app
            .get(&path, Some(&admin.access))
            .await
            .json()
            .await
            .unwrap();
        for u in v["items"].as_array().unwrap() {
            seen.push(u["email"].as_str().unwrap().to_string());
        }
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 6);
    let events = audit_events(&app).await;
    assert_eq!(
        events.iter().filter(|e| e.action == "user.create").count(),
        5
    );
}

#[tokio::test]
async fn prometheus_endpoint_accepts_the_metrics_token() {
    let token = "a-metrics-token-that-is-long-enough-123456";
    let app = TestApp::spawn_with(|r| {
        r.metrics_token = Some(secrecy::SecretString::from(token.to_string()))
    })
    .await;
    let r = app.get("/metrics", Some(token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.contains("auth_signin_success_total 0"), "{text}");
    assert_eq!(
        app.get("/metrics", Some("wrong")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn metrics_json_has_the_seed_shape() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let _ = app.get("/api/patients", Some(&admin.access)).await;
    let v: serde_json::Value = app
        .get("/api/metrics", Some(&admin.access))
        .await
        .json()
        .await
        .unwrap();
    assert!(v["timestamp"].is_string());
    assert_eq!(v["metrics"]["counters"]["auth.signin.success"], 1);
    let d = &v["metrics"]["durations"]["api.read.patients"];
    for k in ["count", "avg", "p50", "p95", "p99"] {
        assert!(d[k].is_number(), "{k} in {d}");
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let r = app.get("/api/health", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    for h in [
        "x-request-id",
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
        "x-frame-options",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["checks"]["database"], "ok");
    assert!(v["schemaVersion"].as_i64().unwrap() >= 1);
    let r = app.get("/api/health/ready", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The client's sane request id is echoed.
    let r = app
        .client
        .get(app.url("/api/health"))
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    // An insane one is replaced.
    let r = app
        .client
        .get(app.url("/api/health"))
        .header("X-Request-Id", "<script>")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "<script>");
    // With the database gone, health says so with a 503.
    app.state.db.close().await;
    let r = app.get("/api/health", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["checks"]["database"], "unreachable");
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = TestApp::spawn().await;
    let v: serde_json::Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = v["paths"].as_object().unwrap();
    for p in [
        "/api/auth/signin",
        "/api/users/{id}",
        "/api/health",
        "/metrics",
        "/api/audit/verify",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    // Snapshot: any change to the API shows up in review as a diff of this file.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    let pretty = serde_json::to_string_pretty(&v).unwrap() + "\n";
    if std::env::var("UPDATE_SNAPSHOTS").is_ok() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(snapshot == pretty, "the OpenAPI document changed; if intended, run the tests with UPDATE_SNAPSHOTS=1 and commit tests/snapshots/openapi.json");
}
