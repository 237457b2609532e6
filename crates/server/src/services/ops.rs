//! Operational reads for administrators.

use domain::roles::Action;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::state::AppState;

/// Counters and per-route-class durations (SPEC §8).
pub fn metrics(st: &AppState, user: &AuthUser) -> Result<serde_json::Value> {
    user.require(Action::ReadMetrics)?;
    Ok(st.metrics.snapshot_json())
}

/// The state of every built-in alert and the last webhook delivery (SPEC §9).
pub fn alerts(st: &AppState, user: &AuthUser) -> Result<telemetry::alerts::AlertsReport> {
    user.require(Action::ReadMetrics)?;
    Ok(st.alerts.report())
}

/// Request rate, p95, error ratio, sign-in failures and AI refusals per
/// alert evaluation, oldest first: a bounded in-memory ring of this
/// instance (`alerts::METRICS_POINTS`), empty after a restart.
pub fn metrics_history(
    st: &AppState,
    user: &AuthUser,
) -> Result<Vec<telemetry::alerts::MetricsPoint>> {
    user.require(Action::ReadMetrics)?;
    Ok(st.alerts.points())
}

/// How many alerts were firing and pending at each evaluation, oldest
/// first (the same bounded, in-memory ring as [`metrics_history`]).
pub fn alert_history(st: &AppState, user: &AuthUser) -> Result<Vec<telemetry::alerts::StatePoint>> {
    user.require(Action::ReadMetrics)?;
    Ok(st.alerts.state_points())
}
