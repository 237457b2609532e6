//! Configuration changes in the audit trail (issue 11 item 4): each `serve`
//! start records one `config.loaded` event with the effective settings and
//! the names of those that differ from the previous start's event.
//!
//! Non-secret settings are stored as their value. A secret (JWT secrets,
//! the metrics token, webhook URLs that may embed a token, the AI key, the
//! database URL with its password) is stored only as a fingerprint keyed
//! with `AUDIT_KEY`: a change shows, but the value cannot be guessed from
//! the database, not even a short one, without the key that lives outside it.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::Config;

/// Setting name (as in the environment) → value or `hmac:<16 hex>`.
pub type SettingsView = BTreeMap<&'static str, String>;

/// The settings as audited: every setting an operator can change.
pub fn settings_view(cfg: &Config) -> SettingsView {
    let key = cfg.audit.key.expose_secret().as_bytes();
    let secret = |name: &'static str, value: Option<&str>| match value {
        None => "unset".to_string(),
        Some(v) => fingerprint(key, name, v),
    };
    let on = |b: bool| if b { "on" } else { "off" }.to_string();
    let r = &cfg.rate_limits;
    let rate = |x: &crate::config::Rate| format!("{}/{}s", x.limit, x.period.as_secs());
    let secs = |d: std::time::Duration| format!("{}s", d.as_secs());
    let mut v = SettingsView::new();
    let engine = if cfg.database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    v.insert("DATABASE_ENGINE", engine.into());
    v.insert(
        "DATABASE_URL",
        secret("DATABASE_URL", Some(&cfg.database_url)),
    );
    v.insert("AMAL_DATA_DIR", cfg.data_dir.display().to_string());
    v.insert("AMAL_BIND", cfg.bind.clone());
    v.insert("AMAL_ENV", format!("{:?}", cfg.env).to_lowercase());
    v.insert(
        "JWT_SECRET",
        secret("JWT_SECRET", Some(cfg.jwt_secret.expose_secret())),
    );
    v.insert(
        "JWT_SECRET_PREVIOUS",
        secret(
            "JWT_SECRET_PREVIOUS",
            cfg.jwt_secret_previous.as_ref().map(|s| s.expose_secret()),
        ),
    );
    v.insert(
        "JWT_REFRESH_SECRET",
        secret(
            "JWT_REFRESH_SECRET",
            Some(cfg.jwt_refresh_secret.expose_secret()),
        ),
    );
    v.insert("AMAL_SIGNUP", format!("{:?}", cfg.signup));
    v.insert("LOG_LEVEL", cfg.log_level.clone());
    v.insert(
        "METRICS_TOKEN",
        secret(
            "METRICS_TOKEN",
            cfg.metrics_token.as_ref().map(|s| s.expose_secret()),
        ),
    );
    v.insert("AMAL_RATE_LIMIT_AUTH", rate(&r.auth));
    v.insert("AMAL_RATE_LIMIT_WRITE", rate(&r.write));
    v.insert("AMAL_RATE_LIMIT_AI", rate(&r.ai));
    v.insert("AMAL_RATE_LIMIT_READ", rate(&r.read));
    v.insert(
        "AMAL_RATE_LIMIT_ACCOUNT_FAILURES",
        rate(&r.account_failures),
    );
    v.insert(
        "AMAL_RATE_LIMIT_ACCOUNT_IP_FAILURES",
        rate(&r.account_ip_failures),
    );
    v.insert("AMAL_RATE_LIMIT_IP_FAILURES", rate(&r.ip_failures));
    v.insert(
        "AMAL_TRUSTED_PROXIES",
        cfg.trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    v.insert("AMAL_REQUEST_TIMEOUT", secs(cfg.request_timeout));
    v.insert("AMAL_DB_ACQUIRE_TIMEOUT", secs(cfg.db_acquire_timeout));
    let b = &cfg.backup;
    v.insert(
        "AMAL_BACKUP_INTERVAL",
        b.interval.map_or_else(|| "off".into(), secs),
    );
    v.insert("AMAL_BACKUP_KEEP", b.keep.to_string());
    v.insert("AMAL_BACKUP_DIR", b.dir.display().to_string());
    v.insert("AMAL_BACKUP_ENCRYPTION", b.keys.mode().to_string());
    let ai = &cfg.ai;
    v.insert(
        "AI_BASE_URL",
        ai.base_url.clone().unwrap_or_else(|| "built-in".into()),
    );
    v.insert("AI_MODEL", ai.model.clone().unwrap_or_default());
    v.insert("AI_API_KEY", secret("AI_API_KEY", ai.api_key.as_deref()));
    v.insert("AI_TIMEOUT_SECONDS", ai.timeout_secs.to_string());
    v.insert(
        "AMAL_TLS",
        cfg.tls.as_ref().map_or_else(
            || "off".into(),
            |t| format!("{} {}", t.cert.display(), t.key.display()),
        ),
    );
    v.insert("AMAL_ALERT_INTERVAL", secs(cfg.alert_interval));
    v.insert(
        "AMAL_ALERT_WEBHOOK_URL",
        secret(
            "AMAL_ALERT_WEBHOOK_URL",
            cfg.alert_webhook_url.as_ref().map(|s| s.expose_secret()),
        ),
    );
    v.insert("AMAL_BREAK_GLASS_DURATION", secs(cfg.break_glass_duration));
    v.insert("AMAL_TWO_PERSON_RULE", on(cfg.two_person_rule));
    v.insert(
        "AMAL_HL7_MLLP",
        cfg.hl7_mllp.as_ref().map_or_else(
            || "off".into(),
            |m| {
                format!(
                    "{} as {} max {} bytes idle {}s",
                    m.addr,
                    m.user,
                    m.max_bytes,
                    m.idle_timeout.as_secs()
                )
            },
        ),
    );
    v.insert("AMAL_IDLE_TIMEOUT", secs(cfg.idle_timeout));
    v.insert("AMAL_MFA", format!("{:?}", cfg.mfa));
    v.insert("AMAL_CLINIC_NAME", cfg.clinic_name.clone());
    v.insert("AMAL_HEADER_READ_TIMEOUT", secs(cfg.header_read_timeout));
    v.insert("AMAL_INSECURE_DEV", on(cfg.insecure_dev));
    let a = &cfg.audit;
    v.insert(
        "AUDIT_KEY",
        store::audit::AuditKey::new(key).id().to_string(),
    );
    v.insert(
        "AUDIT_KEY_PREVIOUS",
        a.key_previous.as_ref().map_or_else(
            || "unset".into(),
            |k| {
                store::audit::AuditKey::new(k.expose_secret().as_bytes())
                    .id()
                    .to_string()
            },
        ),
    );
    v.insert(
        "AMAL_AUDIT_SIGNING_KEY",
        hex::encode(a.verifying_key().to_bytes()),
    );
    v.insert(
        "AMAL_AUDIT_CHECKPOINT_DIR",
        a.checkpoint_dir.display().to_string(),
    );
    v.insert(
        "AMAL_AUDIT_CHECKPOINT_EVERY",
        a.checkpoint_every.to_string(),
    );
    v.insert(
        "AMAL_AUDIT_CHECKPOINT_INTERVAL",
        secs(a.checkpoint_interval),
    );
    v.insert(
        "AUDIT_CHECKPOINT_WEBHOOK_URL",
        secret(
            "AUDIT_CHECKPOINT_WEBHOOK_URL",
            a.webhook_url.as_ref().map(|s| s.expose_secret()),
        ),
    );
    v.insert("AMAL_DB_KEY", on(cfg.db_key.is_some()));
    v.insert("AMAL_DISK_ENCRYPTED", on(cfg.disk_encrypted));
    v
}

/// `hmac:` and 16 hex digits of HMAC-SHA256 under the audit key over the
/// setting's name and value (the name, so equal values of two settings
/// do not show as equal).
fn fingerprint(key: &[u8], name: &str, value: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return "hmac:unavailable".into();
    };
    mac.update(b"amal-setting\0");
    mac.update(name.as_bytes());
    mac.update(b"\0");
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("hmac:{}", hex::encode(digest.get(..8).unwrap_or_default()))
}

/// Names whose values differ between `before` and `now` (added, removed or
/// changed), sorted.
pub fn changed(
    before: &serde_json::Map<String, serde_json::Value>,
    now: &SettingsView,
) -> Vec<String> {
    let mut names: Vec<String> = now
        .iter()
        .filter(|(k, v)| before.get(**k).and_then(|b| b.as_str()) != Some(v.as_str()))
        .map(|(k, _)| (*k).to_string())
        .collect();
    names.extend(
        before
            .keys()
            .filter(|k| !now.contains_key(k.as_str()))
            .cloned(),
    );
    names.sort();
    names
}

/// Record this start's `config.loaded` event. The previous start's event
/// (the newest of its action) gives what changed; on the first start of a
/// database every setting counts as changed.
pub async fn record_loaded(db: &store::Db, cfg: &Config) -> Result<(), store::StoreError> {
    use domain::audit::AuditAction::ConfigLoaded;
    let view = settings_view(cfg);
    let filter = store::audit::AuditFilter {
        action: Some(ConfigLoaded.as_str().to_string()),
        ..Default::default()
    };
    let previous = store::audit::list(db, &filter, 1).await?;
    let before = previous
        .first()
        .and_then(|e| e.detail.as_deref())
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|d| d.get("settings").and_then(|s| s.as_object()).cloned());
    let first = before.is_none();
    let changed = changed(&before.unwrap_or_default(), &view);
    let mut ev = store::audit::AuditEvent::new(ConfigLoaded.as_str(), "success");
    ev.resource_type = Some("configuration".into());
    ev.detail = Some(
        serde_json::json!({
            "via": "serve",
            "first": first,
            "changed": changed,
            "settings": view,
        })
        .to_string(),
    );
    store::audit::append_now(db, &[ev]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_depends_on_key_name_and_value() {
        let a = fingerprint(b"key one", "JWT_SECRET", "s3cret");
        assert!(a.starts_with("hmac:") && a.len() == 21, "{a}");
        assert_ne!(a, fingerprint(b"key two", "JWT_SECRET", "s3cret"));
        assert_ne!(a, fingerprint(b"key one", "METRICS_TOKEN", "s3cret"));
        assert_ne!(a, fingerprint(b"key one", "JWT_SECRET", "s3cret2"));
        assert_eq!(a, fingerprint(b"key one", "JWT_SECRET", "s3cret"));
        assert!(!a.contains("s3cret"));
    }

    #[test]
    fn changed_lists_added_removed_and_edited_names() {
        let before: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"LOG_LEVEL":"info","AMAL_BIND":"127.0.0.1:8080","GONE":"x"}"#)
                .unwrap_or_default();
        let mut now = SettingsView::new();
        now.insert("LOG_LEVEL", "debug".into());
        now.insert("AMAL_BIND", "127.0.0.1:8080".into());
        now.insert("AMAL_MFA", "Required".into());
        assert_eq!(changed(&before, &now), ["AMAL_MFA", "GONE", "LOG_LEVEL"]);
    }
}
