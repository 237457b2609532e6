//! Shared application state.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use store::audit::AuditWriter;
use store::Db;

use crate::auth::password::Hasher;
use crate::auth::tokens::Keys;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::ratelimit::Limiter;

pub struct Inner {
    pub db: Db,
    pub config: Config,
    pub keys: Keys,
    pub hasher: Hasher,
    pub limiter: Limiter,
    pub metrics: Metrics,
    pub audit: AuditWriter,
    pub assistant: ai::Assistant,
    pub started: Instant,
    /// The built-in alert evaluator's state (SPEC §9).
    pub alerts: crate::alerts::Alerts,
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
            metrics: Metrics::new(),
            audit: AuditWriter::start(db.clone()),
            assistant: ai::Assistant::from_config(&config.ai),
            started: Instant::now(),
            alerts: crate::alerts::Alerts::new(
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
}
