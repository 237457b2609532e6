//! Built-in alerts (SPEC §9): `GET /api/alerts`, alerts firing and resolving
//! on real traffic, webhook delivery (and its failures), and the metrics the
//! Prometheus rules read being exposed at `/metrics`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const ALERTS: [&str; 15] = [
    "DatabaseConnectivityLost",
    "AuthServerErrorsHigh",
    "WritesFailing",
    "RateLimitAbuseFromOneIp",
    "AiRefusalRateHigh",
    "ValidationErrorRateHigh",
    "SlowApiP95",
    "HighMemoryUsage",
    "AuditWriteFailure",
    "DatabaseFaults",
    "AdminBulkExport",
    "BreakGlassInvoked",
    "AdminCreatedClinicalAccount",
    "BackupTooOld",
    "CriticalLabUnreviewed",
];

/// A test app with the default 5/min sign-in limit and a manual alert clock
/// (the periodic evaluator is set to one hour, so only the test ticks).
async fn app_with(webhook: Option<String>, interval: &str) -> TestApp {
    let interval = interval.to_string();
    TestApp::spawn_with(move |r| {
        r.rate_limit_auth = None;
        r.alert_interval = Some(interval);
        r.alert_webhook_url = webhook.map(SecretString::from);
    })
    .await
}

async fn report(app: &TestApp, admin: &str) -> Value {
    let r = app.get("/api/alerts", Some(admin)).await;
    app.json_ok(r, 200).await
}

fn find<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {report}"))
}

/// The state of one alert, read from the server's own state.
fn state_of(app: &TestApp, name: &str) -> telemetry::alerts::AlertStatus {
    app.state
        .alerts
        .report()
        .alerts
        .into_iter()
        .find(|a| a.name == name)
        .unwrap()
        .state
}

/// Failed sign-ins from 127.0.0.1 until 21 of them were rate limited.
async fn abuse_sign_in(app: &TestApp) {
    let mut limited = 0;
    for _ in 0..80 {
        let r = app
            .post(
                "/api/auth/signin",
                None,
                json!({"email": "nobody@clinic.test", "password": "wrong password here"}),
            )
            .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            if limited == 21 {
                return;
            }
        }
    }
    panic!("only {limited} sign-ins were rate limited");
}

/// Webhook bodies received so far: (status, alertname, body).
async fn received(hook: &MockServer) -> Vec<(String, String, Value)> {
    hook.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|v| {
            (
                v["status"].as_str().unwrap_or("").to_string(),
                v["alerts"][0]["labels"]["alertname"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v,
            )
        })
        .collect()
}

async fn wait_for_webhook(hook: &MockServer, status: &str, alert: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((_, _, body)) = received(hook)
            .await
            .into_iter()
            .find(|(s, a, _)| s == status && a == alert)
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} webhook for {alert}: {:?}",
            received(hook).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn hook_server() -> MockServer {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    hook
}

#[tokio::test]
async fn alerts_endpoint_lists_every_alert_for_admins_only_and_metrics_feed_the_rules() {
    let app = app_with(None, "1h").await;
    let admin = app.signed_in("admin").await;
    assert_problem(app.get("/api/alerts", None).await, 401, "unauthorized").await;
    for role in ["provider", "nurse", "staff"] {
        let s = app.signed_in(role).await;
        assert_problem(
            app.get("/api/alerts", Some(&s.access)).await,
            403,
            "forbidden",
        )
        .await;
    }
    let before = report(&app, &admin.access).await;
    assert!(before["evaluatedAt"].is_null(), "{before}");
    server::alert_task::tick(&app.state).await;
    let r = report(&app, &admin.access).await;
    assert!(r["evaluatedAt"].is_string());
    assert_eq!(r["intervalSeconds"], 3600.0);
    assert_eq!(r["webhookConfigured"], false);
    assert_eq!(r["firing"], 0, "{r}");
    let names: Vec<&str> = r["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ALERTS);
    for a in r["alerts"].as_array().unwrap() {
        assert_eq!(a["state"], "inactive", "{a}");
        assert!(a["expr"].as_str().unwrap().len() > 5);
        assert!(a["runbook"]
            .as_str()
            .unwrap()
            .starts_with("docs/ops/ALERT_DEFINITIONS.md#"));
        assert!(["critical", "high", "low"].contains(&a["severity"].as_str().unwrap()));
    }
    assert_eq!(find(&r, "DatabaseConnectivityLost")["value"], 1.0);
    assert_eq!(find(&r, "CriticalLabUnreviewed")["value"], 0.0);

    // Every series the Prometheus rules read is exposed (the backup gauge
    // appears once scheduled backups are on; `up` is Prometheus' own).
    let r = app.get("/metrics", Some(&admin.access)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/prometheus/alerts.yml"),
    )
    .unwrap();
    let mut checked = 0;
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        for token in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let metric = token.ends_with("_total")
                || token.ends_with("_bucket")
                || [
                    "database_up",
                    "rate_limit_hits_max_per_ip",
                    "process_memory_used_ratio",
                    "labs_unreviewed_critical",
                ]
                .contains(&token);
            if metric {
                checked += 1;
                assert!(
                    text.lines().any(|l| l.starts_with(token)),
                    "{token} is not exposed at /metrics"
                );
            }
        }
    }
    assert!(checked >= 15, "{checked}");
    assert!(text.contains("amal_http_request_duration_seconds_bucket{le=\"2\"}"));
    assert!(text.contains("\nalerts_firing 0"));
}

#[tokio::test]
async fn rate_limit_abuse_fires_resolves_and_reaches_the_webhook() {
    let hook = hook_server().await;
    let app = app_with(Some(format!("{}/hook", hook.uri())), "1h").await;
    let admin = app.signed_in("admin").await;
    abuse_sign_in(&app).await;
    server::alert_task::tick(&app.state).await;

    let r = report(&app, &admin.access).await;
    let a = find(&r, "RateLimitAbuseFromOneIp");
    assert_eq!(a["state"], "firing", "{r}");
    assert_eq!(a["value"], 21.0);
    assert!(a["detail"].as_str().unwrap().contains("127.0.0.1"), "{a}");
    assert!(a["activeSince"].is_string());
    assert_eq!(r["firing"], 1);
    assert_eq!(r["webhookConfigured"], true);

    let body = wait_for_webhook(&hook, "firing", "RateLimitAbuseFromOneIp").await;
    let alert = &body["alerts"][0];
    assert_eq!(alert["labels"]["severity"], "high");
    assert_eq!(alert["labels"]["route"], "slack");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(alert["annotations"]["summary"].is_string());
    assert!(!body.to_string().contains("wrong password here"));

    // Six minutes later the hits have left the window: resolved.
    app.state.alerts.advance_clock(Duration::from_secs(360));
    server::alert_task::tick(&app.state).await;
    let r = report(&app, &admin.access).await;
    let a = find(&r, "RateLimitAbuseFromOneIp");
    assert_eq!(a["state"], "inactive", "{r}");
    assert!(a["lastResolvedAt"].is_string());
    let body = wait_for_webhook(&hook, "resolved", "RateLimitAbuseFromOneIp").await;
    assert_ne!(body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.metrics.counter("alerts.webhook.sent") < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.state.metrics.counter("alerts.webhook.failure"), 0);
}

#[tokio::test]
async fn database_loss_fires_after_30_seconds() {
    let hook = hook_server().await;
    let app = app_with(Some(hook.uri()), "1h").await;
    server::alert_task::tick(&app.state).await;
    use telemetry::alerts::AlertStatus;
    assert_eq!(
        state_of(&app, "DatabaseConnectivityLost"),
        AlertStatus::Inactive
    );
    app.state.db.close().await;
    server::alert_task::tick(&app.state).await;
    assert_eq!(
        state_of(&app, "DatabaseConnectivityLost"),
        AlertStatus::Pending
    );
    app.state.alerts.advance_clock(Duration::from_secs(20));
    server::alert_task::tick(&app.state).await;
    assert_eq!(
        state_of(&app, "DatabaseConnectivityLost"),
        AlertStatus::Pending
    );
    app.state.alerts.advance_clock(Duration::from_secs(11));
    server::alert_task::tick(&app.state).await;
    assert_eq!(
        state_of(&app, "DatabaseConnectivityLost"),
        AlertStatus::Firing
    );
    let body = wait_for_webhook(&hook, "firing", "DatabaseConnectivityLost").await;
    assert_eq!(body["alerts"][0]["labels"]["severity"], "critical");
    assert_eq!(body["alerts"][0]["labels"]["route"], "pagerduty");
    assert_eq!(app.state.metrics.gauges()["database.up"], 0.0);
}

#[tokio::test]
async fn the_evaluator_runs_on_its_interval_and_failed_webhooks_are_counted() {
    // A webhook nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = app_with(Some(format!("http://127.0.0.1:{port}/hook")), "200ms").await;
    let admin = app.signed_in("admin").await;
    abuse_sign_in(&app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = report(&app, &admin.access).await;
        if find(&r, "RateLimitAbuseFromOneIp")["state"] == "firing" {
            break;
        }
        assert!(Instant::now() < deadline, "never fired: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Delivery is retried in the background; requests are not held up.
    let started = Instant::now();
    let r = app.get("/api/health", None).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.state.metrics.counter("alerts.webhook.failure") < 1 {
        assert!(
            Instant::now() < deadline,
            "the failed delivery was not counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = app.get("/api/metrics", Some(&admin.access)).await;
    let v = app.json_ok(r, 200).await;
    assert_eq!(v["metrics"]["counters"]["alerts.webhook.failure"], 1);
    assert_eq!(v["metrics"]["gauges"]["alerts.firing"], 1.0);
}

#[test]
fn alert_settings_are_validated_by_config_check() {
    let dir = temp_dir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_amal"))
        .env_clear()
        .env("AMAL_DATA_DIR", &dir)
        .env("AMAL_ALERT_INTERVAL", "every now and then")
        .env(
            "ALERT_WEBHOOK_URL",
            "gopher://hooks.example.net/secret-token-123",
        )
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("AMAL_ALERT_INTERVAL"), "{all}");
    assert!(all.contains("ALERT_WEBHOOK_URL"), "{all}");
    assert!(
        !all.contains("secret-token-123"),
        "the webhook URL leaked: {all}"
    );
}
