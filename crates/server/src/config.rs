//! Typed configuration, validated once at start.
//!
//! `RawConfig` is what flags and environment variables give (filled by the
//! `amal` binary's clap definitions); [`Config::resolve`] turns it into a
//! [`Config`] or a list of problems, each naming the setting and never its
//! value. `amal config check` runs the same function.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use domain::account::SignupPolicy;
use secrecy::{ExposeSecret, SecretString};

/// Settings as given, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub env: Option<String>,
    pub jwt_secret: Option<SecretString>,
    pub jwt_secret_previous: Option<SecretString>,
    pub jwt_refresh_secret: Option<SecretString>,
    pub signup: Option<String>,
    pub log_level: Option<String>,
    pub metrics_token: Option<SecretString>,
    pub rate_limit_auth: Option<String>,
    pub rate_limit_write: Option<String>,
    pub rate_limit_ai: Option<String>,
    pub rate_limit_read: Option<String>,
    /// `AMAL_RATE_LIMIT_ACCOUNT_FAILURES`: failed sign-ins per account (all
    /// IPs) before each further attempt from an unknown IP waits a growing delay.
    pub rate_limit_account_failures: Option<String>,
    /// `AMAL_RATE_LIMIT_ACCOUNT_IP_FAILURES`: failed sign-ins per (account, IP).
    pub rate_limit_account_ip_failures: Option<String>,
    /// `AMAL_RATE_LIMIT_IP_FAILURES`: failed sign-ins per IP (all accounts).
    pub rate_limit_ip_failures: Option<String>,
    /// `AMAL_RATE_LIMIT_UNAUTHENTICATED`: refused unauthenticated requests
    /// per client IP before 429s.
    pub rate_limit_unauthenticated: Option<String>,
    pub trusted_proxies: Option<String>,
    pub request_timeout_secs: Option<u64>,
    /// `AMAL_DB_ACQUIRE_TIMEOUT`: how long a request waits for a database
    /// connection before answering 503 (default `2s`).
    pub db_acquire_timeout: Option<String>,
    /// `AMAL_BACKUP_INTERVAL` (unset = off), `AMAL_BACKUP_KEEP` (default 7), `AMAL_BACKUP_DIR`.
    pub backup_interval: Option<String>,
    pub backup_keep: Option<String>,
    pub backup_dir: Option<PathBuf>,
    /// `AMAL_BACKUP_KEY_FILE`, `AMAL_BACKUP_RECIPIENTS`, `AMAL_BACKUP_PASSPHRASE`
    /// (a secret): how archives are encrypted (see `backup::keys`).
    pub backup_key_file: Option<PathBuf>,
    pub backup_recipients: Option<String>,
    pub backup_passphrase: Option<SecretString>,
    /// `AI_BASE_URL`, `AI_MODEL`, `AI_API_KEY`, `AI_TIMEOUT_SECONDS`.
    pub ai_base_url: Option<String>,
    pub ai_model: Option<String>,
    pub ai_api_key: Option<SecretString>,
    pub ai_timeout_secs: Option<u64>,
    /// `AMAL_TLS_CERT` and `AMAL_TLS_KEY`: PEM files; both set → `serve` speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `AMAL_ALERT_INTERVAL` (default `15s`) and `ALERT_WEBHOOK_URL` (a secret).
    pub alert_interval: Option<String>,
    pub alert_webhook_url: Option<SecretString>,
    /// `AMAL_BREAK_GLASS_DURATION`: the time box of emergency access (default `60m`).
    pub break_glass_duration: Option<String>,
    /// `AMAL_TWO_PERSON_RULE`: `on` makes a second admin approve a new
    /// provider or nurse account an admin created (default `off`).
    pub two_person_rule: Option<String>,
    /// `AMAL_HL7_MLLP_ADDR` (unset = off), `AMAL_HL7_MLLP_USER`,
    /// `AMAL_HL7_MLLP_MAX_BYTES` (default 1 MiB), `AMAL_HL7_MLLP_IDLE_TIMEOUT` (default `60s`).
    pub hl7_mllp_addr: Option<String>,
    pub hl7_mllp_user: Option<String>,
    pub hl7_mllp_max_bytes: Option<String>,
    pub hl7_mllp_idle_timeout: Option<String>,
    /// `AMAL_IDLE_TIMEOUT` (default `15m`): a session with no request for
    /// this long ends (web pages and refresh tokens).
    pub idle_timeout: Option<String>,
    /// `AMAL_MFA`: `required-for-clinical`, `required` or `optional`.
    pub mfa: Option<String>,
    /// `AMAL_CLINIC_NAME`: the clinic's name on printed prescriptions,
    /// notes and lab explanations (default [`DEFAULT_CLINIC_NAME`]).
    pub clinic_name: Option<String>,
    /// `AMAL_HEADER_READ_TIMEOUT` (default `10s`): a client that has not sent
    /// a whole request head in this time (also an idle keep-alive connection
    /// waiting for its next request) is disconnected.
    pub header_read_timeout: Option<String>,
    /// `--insecure-dev` / `AMAL_INSECURE_DEV`: allow a non-loopback bind in
    /// development (with development or weak secrets). Never in production.
    pub insecure_dev: bool,
    /// `AUDIT_KEY` and `AUDIT_KEY_PREVIOUS` (secrets): HMAC keys of the audit chain.
    pub audit_key: Option<SecretString>,
    pub audit_key_previous: Option<SecretString>,
    /// `AMAL_AUDIT_SIGNING_KEY_FILE`: the Ed25519 checkpoint signing key.
    pub audit_signing_key_file: Option<PathBuf>,
    /// `AMAL_AUDIT_CHECKPOINT_DIR`, `AMAL_AUDIT_CHECKPOINT_EVERY`,
    /// `AMAL_AUDIT_CHECKPOINT_INTERVAL`, `AUDIT_CHECKPOINT_WEBHOOK_URL` (a secret).
    pub audit_checkpoint_dir: Option<PathBuf>,
    pub audit_checkpoint_every: Option<String>,
    pub audit_checkpoint_interval: Option<String>,
    pub audit_checkpoint_webhook_url: Option<SecretString>,
    /// `AMAL_DB_KEY` or `AMAL_DB_KEY_FILE`: the SQLCipher key of the SQLite
    /// database (a passphrase of 16+ characters or 64 hex digits).
    pub db_key: Option<SecretString>,
    pub db_key_file: Option<PathBuf>,
    /// `AMAL_DISK_ENCRYPTED=true`: the operator states that the disk under
    /// the SQLite database is encrypted (production then needs no key).
    pub disk_encrypted: Option<String>,
}

/// Who must use a second factor (`AMAL_MFA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaPolicy {
    /// Anyone may enrol; nobody must.
    Optional,
    /// Administrators and providers must enrol at their first sign-in.
    RequiredForClinical,
    /// Every account must enrol at its first sign-in.
    Required,
}

impl MfaPolicy {
    pub fn parse(s: &str) -> Option<MfaPolicy> {
        match s.trim() {
            "optional" => Some(MfaPolicy::Optional),
            "required-for-clinical" => Some(MfaPolicy::RequiredForClinical),
            "required" => Some(MfaPolicy::Required),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MfaPolicy::Optional => "optional",
            MfaPolicy::RequiredForClinical => "required-for-clinical",
            MfaPolicy::Required => "required",
        }
    }

    /// Whether an account of `role` must have a second factor.
    pub fn requires(self, role: domain::roles::Role) -> bool {
        use domain::roles::Role;
        match self {
            MfaPolicy::Optional => false,
            MfaPolicy::RequiredForClinical => matches!(role, Role::Admin | Role::Provider),
            MfaPolicy::Required => true,
        }
    }
}

/// Default `AMAL_HEADER_READ_TIMEOUT`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// `N` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
}

impl Rate {
    pub const fn per_minute(limit: u32) -> Rate {
        Rate {
            limit,
            period: Duration::from_secs(60),
        }
    }

    /// Parse `N/PERIOD`, the period in the one duration grammar of
    /// [`crate::settings::duration`] (`100/60s`, `5/1m`, `1000/1h`; a bare
    /// unit means one of it: `5/m`), at most a day.
    pub fn parse(s: &str) -> Option<Rate> {
        let (n, d) = s.trim().split_once('/')?;
        let limit: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
        let d = d.trim();
        let d = if d.starts_with(|c: char| c.is_ascii_alphabetic()) {
            format!("1{d}")
        } else {
            d.to_string()
        };
        let period = crate::settings::duration(&d)?;
        (period <= Duration::from_secs(86_400)).then_some(Rate { limit, period })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub auth: Rate,
    pub write: Rate,
    pub ai: Rate,
    pub read: Rate,
    /// Failed sign-ins per account from all IPs (ASVS: at most 100 an
    /// hour) before the account is slowed down (a growing delay, see
    /// `domain::account::signin_delay_secs`), never locked.
    pub account_failures: Rate,
    /// Failed sign-ins per (account, IP): past it that IP waits out the window.
    pub account_ip_failures: Rate,
    /// Failed sign-ins per IP over all accounts (credential stuffing).
    pub ip_failures: Rate,
    /// Refused unauthenticated requests (401) per client IP.
    pub unauthenticated: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            auth: Rate::per_minute(5),
            write: Rate::per_minute(30),
            ai: Rate::per_minute(10),
            read: Rate::per_minute(100),
            account_failures: Rate {
                limit: 100,
                period: Duration::from_secs(3600),
            },
            account_ip_failures: Rate {
                limit: 10,
                period: Duration::from_secs(900),
            },
            ip_failures: Rate {
                limit: 50,
                period: Duration::from_secs(3600),
            },
            unauthenticated: Rate::per_minute(60),
        }
    }
}

/// An IP network a proxy's `X-Forwarded-For` may be believed from: CIDR
/// notation, or a bare address for a network of one (`ipnet` parses both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet(ipnet::IpNet);

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
            .ok()
            .map(IpNet)
    }

    /// Whether `ip` is inside; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub data_dir: PathBuf,
    pub bind: String,
    pub env: Environment,
    pub jwt_secret: SecretString,
    pub jwt_secret_previous: Option<SecretString>,
    pub jwt_refresh_secret: SecretString,
    pub signup: SignupPolicy,
    pub log_level: String,
    pub metrics_token: Option<SecretString>,
    pub rate_limits: RateLimits,
    pub trusted_proxies: Vec<IpNet>,
    pub request_timeout: Duration,
    /// How long a request waits for a database connection (fail fast while
    /// the database is down).
    pub db_acquire_timeout: Duration,
    /// Scheduled backups.
    pub backup: crate::settings::BackupSettings,
    /// The AI assistant: built in and offline unless `AI_BASE_URL` is set.
    pub ai: ai::AiConfig,
    /// HTTPS certificate and key files, when `serve` terminates TLS itself.
    pub tls: Option<TlsFiles>,
    /// How often the built-in alert evaluator runs.
    pub alert_interval: Duration,
    /// Where firing and resolved alerts are posted (may embed a token).
    pub alert_webhook_url: Option<SecretString>,
    /// How long a break-glass session lasts.
    pub break_glass_duration: Duration,
    /// Whether a second admin must approve an admin-created clinical account.
    pub two_person_rule: bool,
    /// The HL7 v2 MLLP listener; `None` = off.
    pub hl7_mllp: Option<crate::settings::MllpSettings>,
    /// Inactivity limit of a session (`AMAL_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
    /// Who must use a second factor.
    pub mfa: MfaPolicy,
    /// The clinic's name at the head of every print.
    pub clinic_name: String,
    /// How long a client may take to send a request head (and how long an
    /// idle keep-alive connection is kept).
    pub header_read_timeout: Duration,
    /// Development on a non-loopback address was explicitly allowed.
    pub insecure_dev: bool,
    /// The keyed audit chain and its signed checkpoints.
    pub audit: crate::settings::AuditSettings,
    /// The SQLCipher key of the SQLite database (`None`: plaintext file).
    pub db_key: Option<store::cipher::SqliteKey>,
    /// The operator stated that the disk is encrypted.
    pub disk_encrypted: bool,
}

/// PEM certificate chain and private key (`AMAL_TLS_CERT`, `AMAL_TLS_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One configuration problem: the setting's name and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub setting: &'static str,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// The clinic name printed when `AMAL_CLINIC_NAME` is not set.
pub const DEFAULT_CLINIC_NAME: &str = "Dr Amal Clinic";

/// Minimum secret length in bytes (512 bits).
pub const MIN_SECRET_BYTES: usize = 64;

/// Values seen in templates and docs that must never guard a real clinic.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "your-secret",
    "your_secret",
    "yoursecret",
    "secret-here",
    "replace-me",
    "replace_me",
    "example",
    "xxxxxxxx",
    "c5/b7c5dn0vxpla9e7fzutd34ytd",
    "ejx7xanabnqfa1bsymxjr9y/0iau",
];

fn secret_problem(value: &str) -> Option<String> {
    if value.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "is shorter than {MIN_SECRET_BYTES} bytes; generate one with `amal secrets generate`"
        ));
    }
    let lower = value.to_lowercase();
    if PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
        return Some("is a known placeholder; generate one with `amal secrets generate`".into());
    }
    let mut distinct: Vec<char> = value.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 16 {
        return Some(
            "has too little variety to be random; generate one with `amal secrets generate`".into(),
        );
    }
    None
}

impl Config {
    /// What seals, signs and opens backup archives on this installation.
    pub fn archive_keys(&self) -> backup::archive::ArchiveKeys {
        backup::archive::ArchiveKeys {
            backup: self.backup.keys.clone(),
            signing: self.audit.signing_key.clone(),
            checkpoint_dir: self.audit.checkpoint_dir.clone(),
        }
    }

    /// Validate `raw`. In development, missing JWT secrets are generated once
    /// and kept in `<data dir>/secrets.env` (mode 0600).
    pub fn resolve(raw: RawConfig) -> Result<Config, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut problem = |setting: &'static str, message: String| {
            problems.push(ConfigProblem { setting, message })
        };

        let env = match raw.env.as_deref().unwrap_or("development") {
            "development" | "dev" => Environment::Development,
            "production" | "prod" => Environment::Production,
            _ => {
                problem("AMAL_ENV", "must be `development` or `production`".into());
                Environment::Production
            }
        };
        let data_dir = raw
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("amal-data"));
        let audit = resolve_audit(&raw, env, &data_dir, &mut problem);
        let database_url = raw
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("amal.db").display()));
        match store::db::engine_of(&database_url) {
            Err(e) => problem("DATABASE_URL", e.to_string()),
            // The connection sqlx really opens decides (its parsed options:
            // `host=`/`hostaddr=` parameters, `ssl-mode=`, repeated ones).
            Ok(store::Engine::Postgres)
                if env == Environment::Production
                    && !store::pgurl::local_or_tls(&database_url) =>
            {
                problem(
                    "DATABASE_URL",
                    "points at a remote PostgreSQL server without `sslmode=require` (or verify-ca/verify-full)".into(),
                )
            }
            Ok(_) => {}
        }

        let (db_key, disk_encrypted) = crate::settings::encryption_at_rest(
            raw.db_key.as_ref().map(|k| k.expose_secret()),
            raw.db_key_file.as_deref(),
            raw.disk_encrypted.as_deref(),
            &mut problem,
        );
        let sqlite = matches!(
            store::db::engine_of(&database_url),
            Ok(store::Engine::Sqlite)
        );
        if db_key.is_some() && !sqlite {
            problem(
                "AMAL_DB_KEY",
                "applies to SQLite only; a PostgreSQL server's data is encrypted by its own storage (docs/ops/ENCRYPTION_AT_REST.md)".into(),
            );
        }
        // A key given but refused is reported above, once.
        let key_given = raw.db_key.is_some() || raw.db_key_file.is_some();
        if env == Environment::Production && sqlite && !key_given && !disk_encrypted {
            problem(
                "AMAL_DB_KEY",
                "is required in production with SQLite (encryption at rest): set AMAL_DB_KEY or AMAL_DB_KEY_FILE, or AMAL_DISK_ENCRYPTED=true if the disk itself is encrypted (docs/ops/ENCRYPTION_AT_REST.md)".into(),
            );
        }

        let bind = raw.bind.unwrap_or_else(|| "127.0.0.1:8080".into());
        match bind.parse::<std::net::SocketAddr>() {
            Err(_) => problem(
                "AMAL_BIND",
                "must be an address and port such as 127.0.0.1:8080".into(),
            ),
            // Development secrets (generated, or any short one someone chose)
            // are for this machine only.
            Ok(a) if !a.ip().is_loopback() && env == Environment::Development => {
                if !raw.insecure_dev {
                    problem(
                        "AMAL_BIND",
                        "is not a loopback address, which needs AMAL_ENV=production with generated secrets (or --insecure-dev for a throw-away test)".into(),
                    )
                }
            }
            Ok(_) => {}
        }
        if raw.insecure_dev && env == Environment::Production {
            problem(
                "AMAL_INSECURE_DEV",
                "cannot be used with AMAL_ENV=production".into(),
            );
        }
        let mfa = match raw.mfa.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None if env == Environment::Production => MfaPolicy::RequiredForClinical,
            None => MfaPolicy::Optional,
            Some(s) => MfaPolicy::parse(s).unwrap_or_else(|| {
                problem(
                    "AMAL_MFA",
                    "must be `required-for-clinical`, `required` or `optional`".into(),
                );
                MfaPolicy::Required
            }),
        };
        let header_read_timeout = match raw.header_read_timeout.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_HEADER_READ_TIMEOUT,
            Some(s) => crate::settings::duration(s)
                .filter(|d| (Duration::from_millis(100)..=Duration::from_secs(300)).contains(d))
                .unwrap_or_else(|| {
                    problem(
                        "AMAL_HEADER_READ_TIMEOUT",
                        "must be a duration from 100ms to 5m such as `10s`".into(),
                    );
                    DEFAULT_HEADER_READ_TIMEOUT
                }),
        };

        let signup = match raw.signup.as_deref().map(SignupPolicy::parse) {
            None => SignupPolicy::Invite,
            Some(Some(p)) => p,
            Some(None) => {
                problem("AMAL_SIGNUP", "must be `invite`, `open` or `closed`".into());
                SignupPolicy::Closed
            }
        };

        let log_level = raw
            .log_level
            .unwrap_or_else(|| "info".into())
            .to_lowercase();
        if !["trace", "debug", "info", "warn", "error"].contains(&log_level.as_str()) {
            problem(
                "LOG_LEVEL",
                "must be one of trace, debug, info, warn, error".into(),
            );
        }

        let mut limits = RateLimits::default();
        for (setting, given, slot) in [
            (
                "AMAL_RATE_LIMIT_AUTH",
                &raw.rate_limit_auth,
                &mut limits.auth,
            ),
            (
                "AMAL_RATE_LIMIT_WRITE",
                &raw.rate_limit_write,
                &mut limits.write,
            ),
            ("AMAL_RATE_LIMIT_AI", &raw.rate_limit_ai, &mut limits.ai),
            (
                "AMAL_RATE_LIMIT_READ",
                &raw.rate_limit_read,
                &mut limits.read,
            ),
            (
                "AMAL_RATE_LIMIT_ACCOUNT_FAILURES",
                &raw.rate_limit_account_failures,
                &mut limits.account_failures,
            ),
            (
                "AMAL_RATE_LIMIT_ACCOUNT_IP_FAILURES",
                &raw.rate_limit_account_ip_failures,
                &mut limits.account_ip_failures,
            ),
            (
                "AMAL_RATE_LIMIT_IP_FAILURES",
                &raw.rate_limit_ip_failures,
                &mut limits.ip_failures,
            ),
            (
                "AMAL_RATE_LIMIT_UNAUTHENTICATED",
                &raw.rate_limit_unauthenticated,
                &mut limits.unauthenticated,
            ),
        ] {
            if let Some(s) = given {
                match Rate::parse(s) {
                    Some(r) => *slot = r,
                    None => problem(setting, "must look like `100/60s` (requests/period)".into()),
                }
            }
        }

        let mut trusted_proxies = Vec::new();
        for item in raw
            .trusted_proxies
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match IpNet::parse(item) {
                Some(n) => trusted_proxies.push(n),
                None => problem(
                    "AMAL_TRUSTED_PROXIES",
                    "must be a comma-separated list of IP addresses or CIDR networks".into(),
                ),
            }
        }

        let request_timeout = Duration::from_secs(raw.request_timeout_secs.unwrap_or(30).max(1));
        let db_acquire_timeout = match raw.db_acquire_timeout.as_deref().map(str::trim) {
            None | Some("") => store::db::DEFAULT_ACQUIRE_TIMEOUT,
            Some(s) => crate::settings::duration(s)
                .filter(|d| (Duration::from_millis(100)..=Duration::from_secs(60)).contains(d))
                .unwrap_or_else(|| {
                    problem(
                        "AMAL_DB_ACQUIRE_TIMEOUT",
                        "must be a duration from 100ms to 60s such as `2s`".into(),
                    );
                    store::db::DEFAULT_ACQUIRE_TIMEOUT
                }),
        };

        let mut backup = crate::settings::BackupSettings::resolve(
            raw.backup_interval.as_deref(),
            raw.backup_keep.as_deref(),
            raw.backup_dir.clone(),
            &data_dir,
            &mut problem,
        );
        backup.keys = backup::keys::BackupKeys::resolve(
            raw.backup_key_file.as_deref(),
            raw.backup_recipients.as_deref(),
            raw.backup_passphrase.as_ref(),
            env == Environment::Production,
            &mut problem,
        );

        let ai = ai::AiConfig {
            base_url: raw.ai_base_url.clone().filter(|s| !s.trim().is_empty()),
            model: raw.ai_model.clone().filter(|s| !s.trim().is_empty()),
            api_key: raw
                .ai_api_key
                .as_ref()
                .map(|k| k.expose_secret().to_string()),
            timeout_secs: raw.ai_timeout_secs.unwrap_or(ai::DEFAULT_TIMEOUT_SECS),
        };
        if let Err(msg) = ai.validate() {
            let setting = ["AI_BASE_URL", "AI_MODEL", "AI_TIMEOUT_SECONDS"]
                .into_iter()
                .find(|s| msg.starts_with(s))
                .unwrap_or("AI_BASE_URL");
            problem(
                setting,
                msg.split_once(' ').map(|x| x.1).unwrap_or(&msg).to_string(),
            );
        }

        // HTTPS and alerts.
        let tls = match (raw.tls_cert.clone(), raw.tls_key.clone()) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                if let Err((setting, message)) = crate::pem::check_files(&cert, &key) {
                    problem(setting, message);
                }
                Some(TlsFiles { cert, key })
            }
            (Some(_), None) => {
                problem(
                    "AMAL_TLS_KEY",
                    "is required when AMAL_TLS_CERT is set".into(),
                );
                None
            }
            (None, Some(_)) => {
                problem(
                    "AMAL_TLS_CERT",
                    "is required when AMAL_TLS_KEY is set".into(),
                );
                None
            }
        };
        let alert_interval = match raw.alert_interval.as_deref().map(str::trim) {
            None | Some("") => telemetry::alerts::DEFAULT_INTERVAL,
            Some(s) => crate::settings::alert_interval(s).unwrap_or_else(|| {
                problem(
                    "AMAL_ALERT_INTERVAL",
                    "must be a duration from 100ms to 1h such as `15s`".into(),
                );
                telemetry::alerts::DEFAULT_INTERVAL
            }),
        };
        let break_glass_duration = match raw.break_glass_duration.as_deref().map(str::trim) {
            None | Some("") => crate::settings::DEFAULT_BREAK_GLASS,
            Some(s) => crate::settings::break_glass_duration(s).unwrap_or_else(|| {
                problem(
                    "AMAL_BREAK_GLASS_DURATION",
                    "must be a duration from 1s to 24h such as `60m`".into(),
                );
                crate::settings::DEFAULT_BREAK_GLASS
            }),
        };
        let two_person_rule = match raw.two_person_rule.as_deref().map(str::trim) {
            None | Some("") | Some("off") => false,
            Some("on") => true,
            Some(_) => {
                problem("AMAL_TWO_PERSON_RULE", "must be `on` or `off`".into());
                false
            }
        };
        let idle_timeout = match raw.idle_timeout.as_deref().map(str::trim) {
            None | Some("") => crate::settings::DEFAULT_IDLE_TIMEOUT,
            Some(s) => crate::settings::idle_timeout(s).unwrap_or_else(|| {
                problem(
                    "AMAL_IDLE_TIMEOUT",
                    "must be a duration from 2s to 12h such as `15m`".into(),
                );
                crate::settings::DEFAULT_IDLE_TIMEOUT
            }),
        };
        let clinic_name = match raw.clinic_name.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_CLINIC_NAME.to_string(),
            Some(n) if n.chars().count() <= 120 && !n.chars().any(char::is_control) => {
                n.to_string()
            }
            Some(_) => {
                problem(
                    "AMAL_CLINIC_NAME",
                    "must be at most 120 characters on one line".into(),
                );
                DEFAULT_CLINIC_NAME.to_string()
            }
        };
        if let Some(url) = &raw.alert_webhook_url {
            if !crate::settings::webhook_url_ok(url.expose_secret()) {
                problem(
                    "ALERT_WEBHOOK_URL",
                    "must be an http:// or https:// URL".into(),
                );
            }
        }

        let hl7_mllp = crate::settings::MllpSettings::resolve(
            raw.hl7_mllp_addr.as_deref(),
            raw.hl7_mllp_user.as_deref(),
            raw.hl7_mllp_max_bytes.as_deref(),
            raw.hl7_mllp_idle_timeout.as_deref(),
            &mut problem,
        );

        // Secrets.
        let (mut jwt, mut refresh) = (raw.jwt_secret, raw.jwt_refresh_secret);
        if env == Environment::Development && (jwt.is_none() || refresh.is_none()) {
            match dev_secrets(&data_dir) {
                Ok((a, b)) => {
                    jwt = jwt.or(Some(a));
                    refresh = refresh.or(Some(b));
                }
                Err(e) => problem(
                    "AMAL_DATA_DIR",
                    format!(
                        "cannot keep development secrets in {}: {}",
                        data_dir.display(),
                        store::db::io_cause(&e)
                    ),
                ),
            }
        }
        let check = |setting: &'static str, v: &Option<SecretString>, required: bool| match v {
            None if required => Some(ConfigProblem {
                setting,
                message: "is required in production; generate one with `amal secrets generate`"
                    .into(),
            }),
            None => None,
            Some(s) => {
                secret_problem(s.expose_secret()).map(|message| ConfigProblem { setting, message })
            }
        };
        let strict = env == Environment::Production;
        for p in [
            check("JWT_SECRET", &jwt, true),
            check("JWT_REFRESH_SECRET", &refresh, true),
            check("JWT_SECRET_PREVIOUS", &raw.jwt_secret_previous, false),
        ]
        .into_iter()
        .flatten()
        {
            // In development a short secret someone chose is allowed (with the
            // generated ones as fallback); production enforces every rule.
            if strict || p.message.starts_with("is required") {
                problems.push(p);
            }
        }
        if let (Some(a), Some(b)) = (&jwt, &refresh) {
            if a.expose_secret() == b.expose_secret() {
                problems.push(ConfigProblem {
                    setting: "JWT_REFRESH_SECRET",
                    message: "must differ from JWT_SECRET".into(),
                });
            }
        }
        if strict {
            if let Some(t) = &raw.metrics_token {
                if t.expose_secret().len() < 32 {
                    problems.push(ConfigProblem {
                        setting: "METRICS_TOKEN",
                        message: "is shorter than 32 bytes".into(),
                    });
                }
            }
        }

        match (jwt, refresh, audit) {
            (Some(jwt_secret), Some(jwt_refresh_secret), Some(audit)) if problems.is_empty() => {
                // Every command that resolves a configuration appends and
                // verifies with these keys.
                audit.install();
                Ok(Config {
                    database_url,
                    data_dir,
                    bind,
                    env,
                    jwt_secret,
                    jwt_secret_previous: raw.jwt_secret_previous,
                    jwt_refresh_secret,
                    signup,
                    log_level,
                    metrics_token: raw.metrics_token,
                    rate_limits: limits,
                    trusted_proxies,
                    request_timeout,
                    db_acquire_timeout,
                    backup,
                    ai,
                    tls,
                    alert_interval,
                    alert_webhook_url: raw.alert_webhook_url,
                    break_glass_duration,
                    two_person_rule,
                    hl7_mllp,
                    idle_timeout,
                    mfa,
                    clinic_name,
                    header_read_timeout,
                    insecure_dev: raw.insecure_dev,
                    audit,
                    db_key,
                    disk_encrypted,
                })
            }
            _ => Err(problems),
        }
    }

    /// Make this configuration's SQLCipher key (or none) the key of every
    /// SQLite file this process opens ([`store::cipher`]).
    pub fn install_db_key(&self) {
        store::cipher::use_key(self.db_key.clone());
    }

    /// How the database is protected at rest, in words (`config check`).
    pub fn at_rest(&self) -> &'static str {
        match store::db::engine_of(&self.database_url) {
            Ok(store::Engine::Postgres) => "at rest: the PostgreSQL server's storage",
            _ if self.db_key.is_some() => "encrypted at rest with SQLCipher",
            _ if self.disk_encrypted => "at rest: disk encryption stated (AMAL_DISK_ENCRYPTED)",
            _ => "NOT encrypted at rest",
        }
    }

    /// Whether the listener is bound to loopback only.
    pub fn binds_loopback(&self) -> bool {
        self.bind
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().is_loopback())
            .unwrap_or(false)
    }
}

/// The audit settings: in development a missing `AUDIT_KEY` is generated
/// once into `<data dir>/audit.key` and a missing checkpoint signing key
/// into `<data dir>/audit-signing.key` (both 0600); production requires
/// both, the key file readable by its owner only.
fn resolve_audit(
    raw: &RawConfig,
    env: Environment,
    data_dir: &Path,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<crate::settings::AuditSettings> {
    let strict = env == Environment::Production;
    let key = match &raw.audit_key {
        Some(k) => {
            if let Some(m) = secret_problem(k.expose_secret()).filter(|_| strict) {
                problem("AUDIT_KEY", m);
            }
            Some(k.clone())
        }
        None if strict => {
            problem(
                "AUDIT_KEY",
                "is required in production; generate one with `amal secrets generate`".into(),
            );
            None
        }
        None => {
            let f = data_dir.join("audit.key");
            match dev_file(&f, generate_secret) {
                Ok(k) => Some(SecretString::from(k)),
                Err(e) => {
                    problem(
                        "AMAL_DATA_DIR",
                        format!(
                            "cannot keep the development AUDIT_KEY in {}: {}",
                            f.display(),
                            store::db::io_cause(&e)
                        ),
                    );
                    None
                }
            }
        }
    };
    if let (Some(p), true) = (&raw.audit_key_previous, strict) {
        if let Some(m) = secret_problem(p.expose_secret()) {
            problem("AUDIT_KEY_PREVIOUS", m);
        }
    }
    let signing_file = match (&raw.audit_signing_key_file, strict) {
        (Some(f), _) => Some(f.clone()),
        (None, true) => {
            problem(
                "AMAL_AUDIT_SIGNING_KEY_FILE",
                "is required in production; create one with `amal audit keygen FILE`".into(),
            );
            None
        }
        (None, false) => {
            let f = data_dir.join("audit-signing.key");
            if let Err(e) = dev_file(&f, store::checkpoint::generate_signing_key) {
                problem(
                    "AMAL_DATA_DIR",
                    format!(
                        "cannot keep the development checkpoint signing key in {}: {}",
                        f.display(),
                        store::db::io_cause(&e)
                    ),
                );
                return None;
            }
            Some(f)
        }
    };
    let signing_key = signing_file.and_then(|f| match read_signing_key(&f, strict) {
        Ok(k) => Some(k),
        Err(m) => {
            problem("AMAL_AUDIT_SIGNING_KEY_FILE", m);
            None
        }
    });
    let checkpoint_every = match raw.audit_checkpoint_every.as_deref().map(str::trim) {
        None | Some("") => crate::settings::DEFAULT_CHECKPOINT_EVERY,
        Some(s) => crate::settings::checkpoint_every(s).unwrap_or_else(|| {
            problem(
                "AMAL_AUDIT_CHECKPOINT_EVERY",
                "must be a whole number of events from 1 to 1000000".into(),
            );
            crate::settings::DEFAULT_CHECKPOINT_EVERY
        }),
    };
    let checkpoint_interval = match raw.audit_checkpoint_interval.as_deref().map(str::trim) {
        None | Some("") => crate::settings::DEFAULT_CHECKPOINT_INTERVAL,
        Some(s) => crate::settings::checkpoint_interval(s).unwrap_or_else(|| {
            problem(
                "AMAL_AUDIT_CHECKPOINT_INTERVAL",
                "must be a duration from 1s to 1h such as `1m`".into(),
            );
            crate::settings::DEFAULT_CHECKPOINT_INTERVAL
        }),
    };
    if let Some(url) = &raw.audit_checkpoint_webhook_url {
        if !crate::settings::webhook_url_ok(url.expose_secret()) {
            problem(
                "AUDIT_CHECKPOINT_WEBHOOK_URL",
                "must be an http:// or https:// URL".into(),
            );
        }
    }
    let checkpoint_dir = raw
        .audit_checkpoint_dir
        .clone()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| data_dir.join("audit-checkpoints"));
    Some(crate::settings::AuditSettings {
        key: key?,
        key_previous: raw.audit_key_previous.clone(),
        signing_key: store::checkpoint::CheckpointKey(std::sync::Arc::new(signing_key?)),
        checkpoint_dir,
        checkpoint_every,
        checkpoint_interval,
        webhook_url: raw.audit_checkpoint_webhook_url.clone(),
    })
}

/// Read the checkpoint signing key file; in production it must be
/// readable by its owner only.
fn read_signing_key(path: &Path, strict: bool) -> Result<ed25519_dalek::SigningKey, String> {
    let text = store::key_file::read(path, strict)?;
    store::checkpoint::parse_signing_key(&text)
        .ok_or_else(|| "does not hold an Ed25519 key (32 bytes, base64 or hex)".into())
}

/// Read the one-line secret in `path`, creating it (0600) with `make` when missing.
fn dev_file(path: &Path, make: fn() -> String) -> std::io::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if !text.trim().is_empty() {
            return Ok(text.trim().to_string());
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let v = make();
    write_private(path, format!("{v}\n").as_bytes())?;
    Ok(v)
}

/// Generate 64 random bytes, standard base64 (for `amal secrets generate`).
pub fn generate_secret() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut bytes = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Read or create `<data_dir>/secrets.env` holding development secrets.
fn dev_secrets(data_dir: &Path) -> std::io::Result<(SecretString, SecretString)> {
    let path = data_dir.join("secrets.env");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(|v| SecretString::from(v.trim().to_string()))
        };
        if let (Some(a), Some(b)) = (get("JWT_SECRET"), get("JWT_REFRESH_SECRET")) {
            return Ok((a, b));
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let (a, b) = (generate_secret(), generate_secret());
    let body = format!(
        "# Development secrets generated by amal on first start. Do not use in production.\n\
         JWT_SECRET={a}\nJWT_REFRESH_SECRET={b}\n"
    );
    write_private(&path, body.as_bytes())?;
    Ok((SecretString::from(a), SecretString::from(b)))
}

/// Write a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> SecretString {
        SecretString::from(generate_secret())
    }

    /// A checkpoint signing key file, 0600, in a fresh folder.
    fn signing_key_file() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("amal-cfg-{}", uuid::Uuid::new_v4().simple()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("audit-signing.key");
        let _ = write_private(&f, store::checkpoint::generate_signing_key().as_bytes());
        f
    }

    fn prod() -> RawConfig {
        RawConfig {
            env: Some("production".into()),
            database_url: Some("postgres://db.internal/amal?sslmode=require".into()),
            jwt_secret: Some(good()),
            jwt_refresh_secret: Some(good()),
            audit_key: Some(good()),
            audit_signing_key_file: Some(signing_key_file()),
            backup_passphrase: Some(SecretString::from(
                "a long clinic backup passphrase".to_string(),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn production_requires_the_audit_keys() {
        let mut r = prod();
        r.audit_key = None;
        r.audit_signing_key_file = None;
        let s = settings(r);
        assert!(s.contains(&"AUDIT_KEY"), "{s:?}");
        assert!(s.contains(&"AMAL_AUDIT_SIGNING_KEY_FILE"), "{s:?}");
        let mut r = prod();
        r.audit_key = Some(SecretString::from("short".to_string()));
        r.audit_checkpoint_every = Some("0".into());
        let s = settings(r);
        assert!(s.contains(&"AUDIT_KEY"), "{s:?}");
        assert!(s.contains(&"AMAL_AUDIT_CHECKPOINT_EVERY"), "{s:?}");
    }

    fn settings(r: RawConfig) -> Vec<&'static str> {
        Config::resolve(r)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.setting)
            .collect()
    }

    #[test]
    fn production_accepts_good_settings() {
        assert!(Config::resolve(prod()).is_ok());
    }

    #[test]
    fn production_names_each_bad_setting() {
        let mut r = prod();
        r.jwt_secret = None;
        assert_eq!(settings(r), ["JWT_SECRET"]);
        let mut r = prod();
        r.jwt_refresh_secret = Some(SecretString::from("short".to_string()));
        assert_eq!(settings(r), ["JWT_REFRESH_SECRET"]);
        let mut r = prod();
        r.jwt_refresh_secret = r.jwt_secret.clone();
        assert_eq!(settings(r), ["JWT_REFRESH_SECRET"]);
        let mut r = prod();
        r.jwt_secret = Some(SecretString::from(format!("changeme{}", generate_secret())));
        assert_eq!(settings(r), ["JWT_SECRET"]);
        let mut r = prod();
        r.database_url = Some("postgres://db.example.net/amal".into());
        assert_eq!(settings(r), ["DATABASE_URL"]);
        // A `host=` parameter or a second, weaker sslmode cannot slip past.
        for url in [
            "postgres://localhost/amal?host=db.example.net",
            "postgres://localhost/amal?hostaddr=192.0.2.7&host=db.example.net",
            "postgres://db.example.net/amal?sslmode=require&ssl-mode=disable",
            "postgres://db.example.net/amal?sslmode=require&sslmode=prefer",
        ] {
            let mut r = prod();
            r.database_url = Some(url.into());
            assert_eq!(settings(r), ["DATABASE_URL"], "{url}");
        }
        let mut r = prod();
        r.database_url = Some("postgres://db.example.net/amal?host=/run/postgresql".into());
        assert!(Config::resolve(r).is_ok(), "a Unix socket is local");
        let mut r = prod();
        r.database_url = Some("mysql://x/y".into());
        assert_eq!(settings(r), ["DATABASE_URL"]);
        let mut r = prod();
        r.rate_limit_auth = Some("lots".into());
        assert_eq!(settings(r), ["AMAL_RATE_LIMIT_AUTH"]);
    }

    #[test]
    fn the_clinic_name_defaults_and_must_be_one_short_line() {
        assert_eq!(
            Config::resolve(prod()).unwrap().clinic_name,
            DEFAULT_CLINIC_NAME
        );
        let mut r = prod();
        r.clinic_name = Some("  Clínica Santa Amal ".into());
        assert_eq!(
            Config::resolve(r).unwrap().clinic_name,
            "Clínica Santa Amal"
        );
        for bad in ["Two\nlines".to_string(), "x".repeat(121)] {
            let mut r = prod();
            r.clinic_name = Some(bad);
            assert_eq!(settings(r), ["AMAL_CLINIC_NAME"]);
        }
    }

    #[test]
    fn unsafe_defaults_are_refused() {
        // Development (generated or weak secrets) on a non-loopback address.
        let dir = std::env::temp_dir().join(format!("amal-cfg-{}", uuid::Uuid::new_v4()));
        let dev = RawConfig {
            data_dir: Some(dir.clone()),
            bind: Some("0.0.0.0:8080".into()),
            jwt_secret: Some(SecretString::from("secret".to_string())),
            ..Default::default()
        };
        assert_eq!(settings(dev.clone()), ["AMAL_BIND"]);
        let mut allowed = dev.clone();
        allowed.insecure_dev = true;
        assert!(Config::resolve(allowed).is_ok(), "--insecure-dev allows it");
        let mut local = dev;
        local.bind = Some("127.0.0.1:8080".into());
        assert!(Config::resolve(local).is_ok(), "loopback stays allowed");
        // Production with known-weak secrets, and --insecure-dev there.
        let mut r = prod();
        r.bind = Some("0.0.0.0:8080".into());
        r.jwt_secret = Some(SecretString::from("secret".to_string()));
        assert_eq!(settings(r), ["JWT_SECRET"]);
        let mut r = prod();
        r.insecure_dev = true;
        assert_eq!(settings(r), ["AMAL_INSECURE_DEV"]);
        let mut r = prod();
        r.bind = Some("0.0.0.0:8080".into());
        assert!(Config::resolve(r).is_ok(), "production with proper secrets");
        // MFA defaults by environment, and the setting's grammar.
        assert_eq!(
            Config::resolve(prod()).map(|c| c.mfa).ok(),
            Some(MfaPolicy::RequiredForClinical)
        );
        let mut r = prod();
        r.mfa = Some("sometimes".into());
        assert_eq!(settings(r), ["AMAL_MFA"]);
        let mut r = prod();
        r.header_read_timeout = Some("0s".into());
        assert_eq!(settings(r), ["AMAL_HEADER_READ_TIMEOUT"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn problems_never_contain_the_value() {
        let mut r = prod();
        let secret = "x".repeat(20);
        r.jwt_secret = Some(SecretString::from(secret.clone()));
        for p in Config::resolve(r).err().unwrap_or_default() {
            assert!(!p.to_string().contains(&secret));
        }
    }

    #[test]
    fn local_postgres_needs_no_tls() {
        let mut r = prod();
        r.database_url = Some("postgres://postgres@127.0.0.1:5432/amal".into());
        assert!(Config::resolve(r).is_ok());
    }

    #[test]
    fn rates_and_networks_parse() {
        assert_eq!(
            Rate::parse("100/60s"),
            Some(Rate {
                limit: 100,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(
            Rate::parse("5/1m").map(|r| r.period),
            Some(Duration::from_secs(60))
        );
        assert!(Rate::parse("0/60s").is_none());
        assert_eq!(
            Rate::parse("5/m").map(|r| r.period),
            Some(Duration::from_secs(60))
        );
        assert!(Rate::parse("5/60").is_none(), "a unit is required");
        assert!(Rate::parse("5/2d").is_none(), "at most a day");
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("192.0.2.1")
            .unwrap()
            .contains("::ffff:192.0.2.1".parse().unwrap()));
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.1.2.3".parse().unwrap()));
        assert!(IpNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
    }

    #[test]
    fn development_generates_and_keeps_secrets() {
        let dir = std::env::temp_dir().join(format!("amal-cfg-{}", uuid::Uuid::new_v4()));
        let raw = RawConfig {
            data_dir: Some(dir.clone()),
            ..Default::default()
        };
        let a = Config::resolve(raw.clone()).unwrap();
        let b = Config::resolve(raw).unwrap();
        assert_eq!(a.jwt_secret.expose_secret(), b.jwt_secret.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secrets.env"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn production_sqlite_needs_a_key_or_a_stated_encrypted_disk() {
        let dir = std::env::temp_dir().join(format!("amal-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let sqlite = || {
            let mut r = prod();
            r.database_url = Some(format!("sqlite://{}/amal.db", dir.display()));
            r
        };
        assert_eq!(settings(sqlite()), ["AMAL_DB_KEY"]);
        let mut r = sqlite();
        r.disk_encrypted = Some("true".into());
        let c = Config::resolve(r).unwrap();
        assert!(c.db_key.is_none() && c.at_rest().contains("disk encryption stated"));
        let mut r = sqlite();
        r.disk_encrypted = Some("yes".into());
        assert!(settings(r).contains(&"AMAL_DISK_ENCRYPTED"));
        let mut r = sqlite();
        r.db_key = Some(SecretString::from("too short".to_string()));
        assert_eq!(settings(r), ["AMAL_DB_KEY"]);
        let mut r = sqlite();
        r.db_key = Some(SecretString::from("a long enough passphrase".to_string()));
        let c = Config::resolve(r).unwrap();
        assert!(c.db_key.is_some());
        assert_eq!(c.at_rest(), "encrypted at rest with SQLCipher");
        // A key file: the owner's only, and not together with AMAL_DB_KEY.
        let file = dir.join("db.key");
        std::fs::write(&file, "a long enough passphrase\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mut r = sqlite();
            r.db_key_file = Some(file.clone());
            assert_eq!(settings(r), ["AMAL_DB_KEY_FILE"]);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut r = sqlite();
        r.db_key_file = Some(file.clone());
        assert!(Config::resolve(r).unwrap().db_key.is_some());
        let mut r = sqlite();
        r.db_key_file = Some(file.clone());
        r.db_key = Some(SecretString::from("a long enough passphrase".to_string()));
        assert_eq!(settings(r), ["AMAL_DB_KEY_FILE"]);
        let mut r = sqlite();
        r.db_key_file = Some(dir.join("missing.key"));
        assert_eq!(settings(r), ["AMAL_DB_KEY_FILE"]);
        // PostgreSQL: no SQLCipher key.
        let mut r = prod();
        r.db_key = Some(SecretString::from("a long enough passphrase".to_string()));
        assert_eq!(settings(r), ["AMAL_DB_KEY"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
