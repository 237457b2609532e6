//! The audit log, for administrators.

use chrono::{DateTime, Utc};
use domain::roles::Action;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::extract::PageQuery;
use crate::services::page;
use crate::state::AppState;

/// Which events to list.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub patient_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<store::audit::StoredEvent>,
    pub next_cursor: Option<String>,
}

/// The patient id an MRN stands for, for filtering the audit log by MRN
/// (auditors see ids, not charts). An unknown MRN is a field error.
pub async fn patient_for_mrn(st: &AppState, user: &AuthUser, mrn: &str) -> Result<Uuid> {
    user.require(Action::ReadAudit)?;
    let mrn = mrn.trim();
    store::patients::id_by_mrn(&st.db, mrn)
        .await?
        .ok_or_else(|| AppError::validation("mrn", "matches no patient"))
}

/// Events newest first, filtered.
pub async fn list(
    st: &AppState,
    user: &AuthUser,
    f: AuditFilter,
    page_q: &PageQuery,
) -> Result<AuditPage> {
    user.require(Action::ReadAudit)?;
    let before_seq =
        match page_q.cursor_text()? {
            Some(t) => Some(t.parse::<i64>().map_err(|_| {
                AppError::validation("cursor", "is not a cursor this server issued")
            })?),
            None => None,
        };
    let limit = page_q.limit();
    let filter = store::audit::AuditFilter {
        patient_id: f.patient_id,
        user_id: f.user_id,
        action: f.action,
        from: f.from,
        to: f.to,
        before_seq,
    };
    let rows = store::audit::list(&st.db, &filter, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |e| e.seq.to_string(), |e| e);
    Ok(AuditPage { items, next_cursor })
}

/// Verify the whole hash chain from the start and against every signed
/// checkpoint.
pub async fn verify(st: &AppState, user: &AuthUser) -> Result<store::audit::VerifyReport> {
    user.require(Action::ReadAudit)?;
    Ok(verify_chain(&st.db, &st.config.audit).await?)
}

/// The one chain verification of `amal audit verify` and the API: the
/// chain rule of [`store::audit::ChainCheck`] held to the checkpoints in
/// `AMAL_AUDIT_CHECKPOINT_DIR` (an unreadable checkpoint file is a failure).
pub async fn verify_chain(
    db: &store::Db,
    audit: &crate::settings::AuditSettings,
) -> store::db::Result<store::audit::VerifyReport> {
    let a = audit.clone();
    let anchors = match tokio::task::spawn_blocking(move || a.anchors()).await {
        Ok(Ok(anchors)) => anchors,
        Ok(Err(e)) => store::audit::Anchors {
            problems: vec![format!("the checkpoint file cannot be read: {e}")],
            ..Default::default()
        },
        Err(e) => store::audit::Anchors {
            problems: vec![format!("the checkpoint file cannot be read: {e}")],
            ..Default::default()
        },
    };
    store::audit::verify_with(db, anchors).await
}
