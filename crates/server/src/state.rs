//! Shared application state.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use store::audit::AuditWriter;
use store::Db;

use crate::config::Config;
use crate::credentials::password::Hasher;
use crate::credentials::tokens::Keys;
use crate::ratelimit::Limiter;
use telemetry::metrics::Metrics;

pub struct Inner {
    pub db: Db,
    pub config: Config,
    pub keys: Keys,
    pub hasher: Hasher,
    pub limiter: Limiter,
    /// Shared with the backup scheduler.
    pub metrics: Arc<Metrics>,
    pub audit: AuditWriter,
    pub assistant: ai::Assistant,
    pub started: Instant,
    /// The built-in alert evaluator's state (SPEC §9).
    pub alerts: telemetry::alerts::Alerts,
    /// The one-time setup code while the database has no account.
    pub first_run: crate::first_run::FirstRun,
    /// Anonymous 401s per client IP (limit and aggregated audit).
    pub anon_refusals: crate::anon_refusals::AnonymousRefusals,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(db: Db, config: Config) -> anyhow::Result<AppState> {
        Ok(AppState(Arc::new(Inner {
            keys: Keys::new(&config),
            hasher: Hasher::new()?,
            limiter: Limiter::for_db(&db, &config.database_url),
            metrics: Arc::new(metrics()),
            audit: AuditWriter::start(db.clone()),
            assistant: ai::Assistant::from_config(&config.ai),
            started: Instant::now(),
            alerts: telemetry::alerts::Alerts::new(
                config.alert_interval,
                config.alert_webhook_url.is_some(),
            ),
            first_run: crate::first_run::FirstRun::default(),
            anon_refusals: crate::anon_refusals::AnonymousRefusals::new(
                config.rate_limits.unauthenticated,
            ),
            db,
            config,
        })))
    }

    /// The backup scheduler's job when `AMAL_BACKUP_INTERVAL` is set.
    pub fn backup_schedule(&self) -> Option<backup::schedule::Schedule> {
        let b = &self.config.backup;
        Some(backup::schedule::Schedule {
            db: self.db.clone(),
            database_url: self.config.database_url.clone(),
            keys: self.config.archive_keys(),
            every: b.interval?,
            keep: b.keep,
            dir: b.dir.clone(),
            metrics: self.metrics.clone(),
        })
    }
}

/// The server's metrics.
fn metrics() -> Metrics {
    let m = Metrics::new();
    // Counters the alerts read exist from the start at zero, so rate()
    // and ratios are defined before the first event.
    for name in [
        "auth.signin.success",
        "auth.signin.failure",
        "auth.signup.success",
        "auth.refresh.reuse_detected",
        "rate_limit.hit",
        "http.5xx",
        "http.requests",
        "http.4xx",
        "http.validation_error",
        "http.auth.requests",
        "http.auth.5xx",
        "audit.write_failure",
        "fhir.export.admin",
        "access.break_glass",
        "users.clinical_created_by_admin",
        "alerts.webhook.failure",
        "db.fault",
    ] {
        m.incr_by(name, 0);
    }
    for kind in store::FaultKind::ALL {
        m.incr_by(&format!("db.fault.{kind}"), 0);
    }
    for resource in ["patients", "notes", "prescriptions", "labs"] {
        m.incr_by(&format!("write.{resource}.success"), 0);
        m.incr_by(&format!("write.{resource}.error"), 0);
    }
    for op in ["generate_note", "explain"] {
        for outcome in ["success", "refused", "unavailable"] {
            m.incr_by(&format!("ai.{op}.{outcome}"), 0);
        }
    }
    m
}
