//! The task that drives the alert engine ([`telemetry::alerts`]): every
//! interval it probes the database and the process, samples the metrics,
//! evaluates the rules, logs transitions and hands them to the webhook
//! worker; and the `GET /api/alerts` handler.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::state::AppState;
use telemetry::alerts::{read_memory, AlertsReport, Sample};

/// Attempts per webhook delivery (the first try and three retries).
const WEBHOOK_ATTEMPTS: u32 = 4;
/// Delay before the first retry; doubled before each further one.
const WEBHOOK_BACKOFF: Duration = Duration::from_millis(500);
/// Timeout of one webhook request.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Refresh the gauges the alerts read.
async fn probe(state: &AppState) {
    let m = &state.metrics;
    let limit = Duration::from_secs(3);
    // Up means readable and writable: a read-only or wedged database is down
    // for a clinic.
    let db_ok = matches!(
        tokio::time::timeout(limit, state.db.ping()).await,
        Ok(Ok(()))
    ) && matches!(
        tokio::time::timeout(limit, state.db.check_write()).await,
        Ok(Ok(()))
    );
    m.set_gauge("database.up", if db_ok { 1.0 } else { 0.0 });
    if db_ok {
        if let Ok(Ok(n)) =
            tokio::time::timeout(limit, store::labs::unreviewed_critical_count(&state.db)).await
        {
            m.set_gauge("labs.unreviewed_critical", n as f64);
        }
    }
    if let Some((rss, total)) = read_memory() {
        m.set_gauge("process.resident_memory_bytes", rss);
        m.set_gauge("process.memory_used_ratio", rss / total);
    }
    let (max, _) = state.alerts.ip_hits.max(state.alerts.now());
    m.set_gauge("rate_limit.hits_max_per_ip", f64::from(max));
}

/// One evaluation: probe, sample, evaluate, log and queue the transitions.
/// The periodic evaluator calls it; tests call it directly.
pub async fn tick(state: &AppState) {
    probe(state).await;
    // Break-glass sessions past their time box get their end event here at
    // the latest (one interval after expiry).
    if let Err(e) = crate::services::access::end_expired(state).await {
        tracing::warn!(error = %e, "could not record the end of expired break-glass sessions");
    }
    let alerts = &state.alerts;
    let now = alerts.now();
    let (max, ip) = alerts.ip_hits.max(now);
    let sample = Sample::take(&state.metrics, now);
    let transitions = alerts.evaluate(sample, ip.map(|ip| (max, ip)));
    state
        .metrics
        .set_gauge("alerts.firing", alerts.firing() as f64);
    for t in transitions {
        let value = t.value.filter(|v| v.is_finite());
        if t.firing {
            if t.rule.severity == telemetry::alerts::Severity::Critical {
                tracing::error!(
                    alert = t.rule.name,
                    severity = t.rule.severity.as_str(),
                    route = t.rule.route,
                    value = value,
                    "alert firing"
                );
            } else {
                tracing::warn!(
                    alert = t.rule.name,
                    severity = t.rule.severity.as_str(),
                    route = t.rule.route,
                    value = value,
                    "alert firing"
                );
            }
        } else {
            tracing::info!(
                alert = t.rule.name,
                severity = t.rule.severity.as_str(),
                "alert resolved"
            );
        }
        if alerts.webhook_configured && alerts.queue.try_send(alerts.payload(&t)).is_err() {
            state.metrics.incr("alerts.webhook.failure");
            tracing::error!(
                alert = t.rule.name,
                "alert webhook queue is full; alert not delivered"
            );
        }
    }
}

/// Start the periodic evaluator and, with `ALERT_WEBHOOK_URL`, the worker
/// that delivers alerts.
pub fn spawn(state: AppState) {
    if let Some(url) = state.config.alert_webhook_url.clone() {
        let rx = state.alerts.queue_rx.lock().ok().and_then(|mut r| r.take());
        if let Some(rx) = rx {
            tokio::spawn(deliver(state.clone(), url, rx));
        }
    }
    tokio::spawn(async move {
        // Fill the gauges at once, so the first scrape has them.
        probe(&state).await;
        let every = state.alerts.interval;
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            tick(&state).await;
        }
    });
}

/// Post queued alerts one by one, each with up to [`WEBHOOK_ATTEMPTS`]
/// tries and doubling back-off; a delivery that never succeeds counts as
/// `alerts.webhook.failure`. Errors are logged without the URL (it may
/// carry a token).
async fn deliver(state: AppState, url: SecretString, mut rx: mpsc::Receiver<Value>) {
    let Some(client) = webhook_client("amal-alerts") else {
        return;
    };
    while let Some(body) = rx.recv().await {
        let alert = body["groupLabels"]["alertname"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let tries = post_with_retries(&client, &url, &body, &alert).await;
        let delivered = tries.is_ok();
        state
            .alerts
            .delivered(&alert, delivered, tries.unwrap_or_else(|t| t));
        if delivered {
            state.metrics.incr("alerts.webhook.sent");
        } else {
            state.metrics.incr("alerts.webhook.failure");
            tracing::error!(alert = %alert, attempts = WEBHOOK_ATTEMPTS, "alert webhook delivery failed");
        }
    }
}

/// The HTTP client webhooks are posted with (short timeouts).
pub(crate) fn webhook_client(agent: &str) -> Option<reqwest::Client> {
    match reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .connect_timeout(Duration::from_secs(3))
        .user_agent(format!("{agent}/{}", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e.without_url(), "cannot build a webhook client");
            None
        }
    }
}

/// Post `body` to `url` with up to [`WEBHOOK_ATTEMPTS`] tries and doubling
/// back-off: `Ok(tries)` once accepted, `Err(tries)` when every try failed.
/// Logs name `what`, never the URL.
pub(crate) async fn post_with_retries(
    client: &reqwest::Client,
    url: &SecretString,
    body: &Value,
    what: &str,
) -> Result<u32, u32> {
    let mut delay = WEBHOOK_BACKOFF;
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        match client.post(url.expose_secret()).json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(attempt),
            Ok(r) => {
                tracing::warn!(what = %what, attempt, status = r.status().as_u16(), "webhook answered with an error")
            }
            Err(e) => {
                tracing::warn!(what = %what, attempt, error = %e.without_url(), "webhook unreachable")
            }
        }
        if attempt < WEBHOOK_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    Err(WEBHOOK_ATTEMPTS)
}

#[utoipa::path(get, path = "/api/alerts", tag = "ops", security(("bearer" = [])),
    responses((status = 200, body = AlertsReport, description = "The state of every alert (SPEC §9)"), (status = 401), (status = 403)))]
pub async fn list_alerts(State(st): State<AppState>, user: AuthUser) -> Result<Json<AlertsReport>> {
    Ok(Json(crate::services::ops::alerts(&st, &user)?))
}
