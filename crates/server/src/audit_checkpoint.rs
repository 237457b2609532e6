//! The task that writes signed checkpoints of the audit chain while
//! `serve` runs: after every `AMAL_AUDIT_CHECKPOINT_EVERY` events this
//! process appends, and every `AMAL_AUDIT_CHECKPOINT_INTERVAL` when the head
//! moved since the last one. Each checkpoint is appended to the file in
//! `AMAL_AUDIT_CHECKPOINT_DIR` and, with `AUDIT_CHECKPOINT_WEBHOOK_URL`,
//! posted there (the alert webhook's delivery, with retries).

use crate::state::AppState;

/// Take one checkpoint now (also `amal audit checkpoint`).
pub async fn take(
    db: &store::Db,
    audit: &crate::settings::AuditSettings,
) -> anyhow::Result<store::checkpoint::Checkpoint> {
    store::checkpoint::take(db, &audit.signing_key.0, &audit.checkpoint_dir).await
}

/// Start the checkpoint task.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        let audit = state.config.audit.clone();
        let client = match &audit.webhook_url {
            Some(_) => crate::alert_task::webhook_client("amal-audit-checkpoint"),
            None => None,
        };
        let dir = audit.checkpoint_dir.clone();
        let mut last_seq = tokio::task::spawn_blocking(move || store::checkpoint::latest(&dir))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten()
            .map(|c| c.seq);
        let mut counted = store::audit::appended_count();
        let every = audit.checkpoint_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = store::audit::appended() => {
                    if store::audit::appended_count().saturating_sub(counted) < audit.checkpoint_every {
                        continue;
                    }
                }
            }
            counted = store::audit::appended_count();
            match store::audit::head(&state.db).await {
                Ok((seq, _)) if Some(seq) == last_seq || seq == 0 => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the audit chain head for a checkpoint");
                    continue;
                }
            }
            match take(&state.db, &audit).await {
                Ok(c) => {
                    last_seq = Some(c.seq);
                    state.metrics.incr("audit.checkpoint.written");
                    if let (Some(client), Some(url)) = (&client, &audit.webhook_url) {
                        let body = serde_json::to_value(&c).unwrap_or_default();
                        if crate::alert_task::post_with_retries(
                            client,
                            url,
                            &body,
                            "audit checkpoint",
                        )
                        .await
                        .is_ok()
                        {
                            state.metrics.incr("audit.checkpoint.webhook.sent");
                        } else {
                            state.metrics.incr("audit.checkpoint.webhook.failure");
                            tracing::error!(
                                seq = c.seq,
                                "audit checkpoint webhook delivery failed"
                            );
                        }
                    }
                }
                Err(e) => {
                    state.metrics.incr("audit.checkpoint.failure");
                    tracing::error!(error = %e, "writing an audit checkpoint failed");
                }
            }
        }
    });
}
