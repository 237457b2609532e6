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
