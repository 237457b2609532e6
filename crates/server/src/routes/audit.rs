//! `/api/audit`: see [`crate::services::audit`].

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::Result;
use crate::extract::PageQuery;
use crate::services::audit::{self, AuditFilter, AuditPage};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub patient_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Rows per page (default 50); values below 1 are treated as 1 and
    /// values above 200 as 200
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401), (status = 403)))]
pub async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let filter = AuditFilter {
        patient_id: q.patient_id,
        user_id: q.user_id,
        action: q.action,
        from: q.from,
        to: q.to,
    };
    Ok(Json(audit::list(&st, &user, filter, &page).await?))
}

#[utoipa::path(get, path = "/api/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "{valid, events, firstBrokenId}"), (status = 401), (status = 403)))]
pub async fn verify(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<Json<store::audit::VerifyReport>> {
    Ok(Json(audit::verify(&st, &user).await?))
}
