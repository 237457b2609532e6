//! The audit log, for administrators.

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::roles::Action;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::encode_cursor;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    pub patient_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<store::audit::StoredEvent>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401), (status = 403)))]
pub async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>> {
    user.require(Action::ReadAudit)?;
    let page = crate::extract::PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let before_seq =
        match page.cursor_text()? {
            Some(t) => Some(t.parse::<i64>().map_err(|_| {
                AppError::validation("cursor", "is not a cursor this server issued")
            })?),
            None => None,
        };
    let limit = page.limit();
    let filter = store::audit::AuditFilter {
        patient_id: q.patient_id,
        user_id: q.user_id,
        action: q.action,
        from: q.from,
        to: q.to,
        before_seq,
    };
    let mut items = store::audit::list(&st.db, &filter, limit + 1).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|e| encode_cursor(&e.seq.to_string()))
    } else {
        None
    };
    Ok(Json(AuditPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/api/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "{valid, events, firstBrokenId}"), (status = 401), (status = 403)))]
pub async fn verify(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<Json<store::audit::VerifyReport>> {
    user.require(Action::ReadAudit)?;
    Ok(Json(store::audit::verify(&st.db).await?))
}
