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

/// Collects the view: each setting's name is written once, with its value
/// or, for a secret, its keyed fingerprint.
struct View<'k> {
    key: &'k [u8],
    out: SettingsView,
}

impl View<'_> {
    fn put(&mut self, name: &'static str, value: impl Into<String>) {
        self.out.insert(name, value.into());
    }

    fn secret(&mut self, name: &'static str, value: Option<&str>) {
        let shown = value.map_or_else(|| "unset".into(), |v| fingerprint(self.key, name, v));
        self.put(name, shown);
    }

    fn rate(&mut self, name: &'static str, r: crate::config::Rate) {
        self.put(name, format!("{}/{}s", r.limit, r.period.as_secs()));
    }

    fn secs(&mut self, name: &'static str, d: std::time::Duration) {
        self.put(name, format!("{}s", d.as_secs()));
    }

    fn on(&mut self, name: &'static str, b: bool) {
        self.put(name, if b { "on" } else { "off" });
    }
}

/// The audit key's public id (`AUDIT_KEY`, `AUDIT_KEY_PREVIOUS`).
fn key_id(secret: &str) -> String {
    store::audit::AuditKey::new(secret.as_bytes())
        .id()
        .to_string()
}

/// The settings as audited: every setting an operator can change.
pub fn settings_view(cfg: &Config) -> SettingsView {
    let mut v = View {
        key: cfg.audit.key.expose_secret().as_bytes(),
        out: SettingsView::new(),
    };
    let engine = match store::db::engine_of(&cfg.database_url) {
        Ok(store::Engine::Postgres) => "postgres",
        _ => "sqlite",
    };
    v.put("DATABASE_ENGINE", engine);
    v.secret("DATABASE_URL", Some(&cfg.database_url));
    v.put("AMAL_DATA_DIR", cfg.data_dir.display().to_string());
    v.put("AMAL_BIND", cfg.bind.clone());
    v.put("AMAL_ENV", format!("{:?}", cfg.env).to_lowercase());
    v.secret("JWT_SECRET", Some(cfg.jwt_secret.expose_secret()));
    let previous = cfg.jwt_secret_previous.as_ref();
    v.secret("JWT_SECRET_PREVIOUS", previous.map(|s| s.expose_secret()));
    v.secret(
        "JWT_REFRESH_SECRET",
        Some(cfg.jwt_refresh_secret.expose_secret()),
    );
    v.put("AMAL_SIGNUP", format!("{:?}", cfg.signup));
    v.put("LOG_LEVEL", cfg.log_level.clone());
    let token = cfg.metrics_token.as_ref();
    v.secret("METRICS_TOKEN", token.map(|s| s.expose_secret()));
    let r = &cfg.rate_limits;
    v.rate("AMAL_RATE_LIMIT_AUTH", r.auth);
    v.rate("AMAL_RATE_LIMIT_WRITE", r.write);
    v.rate("AMAL_RATE_LIMIT_AI", r.ai);
    v.rate("AMAL_RATE_LIMIT_READ", r.read);
    v.rate("AMAL_RATE_LIMIT_ACCOUNT_FAILURES", r.account_failures);
    v.rate("AMAL_RATE_LIMIT_ACCOUNT_IP_FAILURES", r.account_ip_failures);
    v.rate("AMAL_RATE_LIMIT_IP_FAILURES", r.ip_failures);
    v.rate("AMAL_RATE_LIMIT_UNAUTHENTICATED", r.unauthenticated);
    let proxies: Vec<String> = cfg
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    v.put("AMAL_TRUSTED_PROXIES", proxies.join(","));
    v.secs("AMAL_REQUEST_TIMEOUT", cfg.request_timeout);
    v.secs("AMAL_DB_ACQUIRE_TIMEOUT", cfg.db_acquire_timeout);
    let b = &cfg.backup;
    match b.interval {
        Some(d) => v.secs("AMAL_BACKUP_INTERVAL", d),
        None => v.put("AMAL_BACKUP_INTERVAL", "off"),
    }
    v.put("AMAL_BACKUP_KEEP", b.keep.to_string());
    v.put("AMAL_BACKUP_DIR", b.dir.display().to_string());
    v.put("AMAL_BACKUP_ENCRYPTION", b.keys.mode());
    let ai = &cfg.ai;
    v.put("AI_BASE_URL", ai.base_url.as_deref().unwrap_or("built-in"));
    v.put("AI_MODEL", ai.model.clone().unwrap_or_default());
    v.secret("AI_API_KEY", ai.api_key.as_deref());
    v.put("AI_TIMEOUT_SECONDS", ai.timeout_secs.to_string());
    let tls = cfg.tls.as_ref();
    v.put(
        "AMAL_TLS",
        tls.map_or_else(
            || "off".into(),
            |t| format!("{} {}", t.cert.display(), t.key.display()),
        ),
    );
    v.secs("AMAL_ALERT_INTERVAL", cfg.alert_interval);
    let webhook = cfg.alert_webhook_url.as_ref();
    v.secret("AMAL_ALERT_WEBHOOK_URL", webhook.map(|s| s.expose_secret()));
    v.secs("AMAL_BREAK_GLASS_DURATION", cfg.break_glass_duration);
    v.on("AMAL_TWO_PERSON_RULE", cfg.two_person_rule);
    let mllp = cfg.hl7_mllp.as_ref().map_or_else(
        || "off".into(),
        |m| {
            let idle = m.idle_timeout.as_secs();
            format!(
                "{} as {} max {} bytes idle {idle}s",
                m.addr, m.user, m.max_bytes
            )
        },
    );
    v.put("AMAL_HL7_MLLP", mllp);
    v.secs("AMAL_IDLE_TIMEOUT", cfg.idle_timeout);
    v.put("AMAL_MFA", format!("{:?}", cfg.mfa));
    v.put("AMAL_CLINIC_NAME", cfg.clinic_name.clone());
    v.secs("AMAL_HEADER_READ_TIMEOUT", cfg.header_read_timeout);
    v.on("AMAL_INSECURE_DEV", cfg.insecure_dev);
    let a = &cfg.audit;
    v.put("AUDIT_KEY", key_id(a.key.expose_secret()));
    let previous = a.key_previous.as_ref();
    v.put(
        "AUDIT_KEY_PREVIOUS",
        previous.map_or_else(|| "unset".into(), |k| key_id(k.expose_secret())),
    );
    v.put(
        "AMAL_AUDIT_SIGNING_KEY",
        hex::encode(a.verifying_key().to_bytes()),
    );
    v.put(
        "AMAL_AUDIT_CHECKPOINT_DIR",
        a.checkpoint_dir.display().to_string(),
    );
    v.put(
        "AMAL_AUDIT_CHECKPOINT_EVERY",
        a.checkpoint_every.to_string(),
    );
    v.secs("AMAL_AUDIT_CHECKPOINT_INTERVAL", a.checkpoint_interval);
    let hook = a.webhook_url.as_ref();
    v.secret(
        "AUDIT_CHECKPOINT_WEBHOOK_URL",
        hook.map(|s| s.expose_secret()),
    );
    v.on("AMAL_DB_KEY", cfg.db_key.is_some());
    v.on("AMAL_DISK_ENCRYPTED", cfg.disk_encrypted);
    v.out
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
