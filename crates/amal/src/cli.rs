//! Command-line definitions. Every command takes the same configuration
//! (flags or environment variables) as `serve`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

#[derive(Parser, Debug)]
#[command(
    name = "amal",
    version,
    about = "Dr Amal Clinical OS: clinical records for clinics, in one binary.",
    long_about = "Dr Amal Clinical OS: clinical records for clinics, in one binary.\n\n\
    With no configuration, `amal serve` keeps everything in ./amal-data/amal.db (SQLite).\n\
    Set DATABASE_URL=postgres://… to use PostgreSQL instead."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by every command.
#[derive(Args, Debug, Clone)]
pub struct Settings {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (default: sqlite in the data folder)
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Data folder for the embedded database and development secrets
    #[arg(long, env = "AMAL_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on
    #[arg(long, env = "AMAL_BIND", global = true)]
    pub bind: Option<String>,
    /// `development` (default) or `production` (enforces every secret and TLS rule)
    #[arg(long = "env", env = "AMAL_ENV", global = true)]
    pub environment: Option<String>,
    /// Sign-up policy: invite (default), open or closed
    #[arg(long, env = "AMAL_SIGNUP", global = true)]
    pub signup: Option<String>,
    /// Log level: trace, debug, info (default), warn, error
    #[arg(long, env = "LOG_LEVEL", global = true)]
    pub log_level: Option<String>,
    /// Rate limit for sign-in, sign-up and refresh per client IP, as N/Ds (default 5/60s)
    #[arg(long, env = "AMAL_RATE_LIMIT_AUTH", global = true)]
    pub rate_limit_auth: Option<String>,
    /// Rate limit for clinical writes per user (default 30/60s)
    #[arg(long, env = "AMAL_RATE_LIMIT_WRITE", global = true)]
    pub rate_limit_write: Option<String>,
    /// Rate limit for AI calls per user (default 10/60s)
    #[arg(long, env = "AMAL_RATE_LIMIT_AI", global = true)]
    pub rate_limit_ai: Option<String>,
    /// Rate limit for clinical reads per user (default 100/60s)
    #[arg(long, env = "AMAL_RATE_LIMIT_READ", global = true)]
    pub rate_limit_read: Option<String>,
    /// Failed sign-ins per account from all IPs before further attempts from unknown IPs wait a growing delay (default 100/1h)
    #[arg(long, env = "AMAL_RATE_LIMIT_ACCOUNT_FAILURES", global = true)]
    pub rate_limit_account_failures: Option<String>,
    /// Failed sign-ins per (account, client IP) (default 10/15m)
    #[arg(long, env = "AMAL_RATE_LIMIT_ACCOUNT_IP_FAILURES", global = true)]
    pub rate_limit_account_ip_failures: Option<String>,
    /// Failed sign-ins per client IP over all accounts (default 50/1h)
    #[arg(long, env = "AMAL_RATE_LIMIT_IP_FAILURES", global = true)]
    pub rate_limit_ip_failures: Option<String>,
    /// Refused unauthenticated requests (401) per client IP before 429s (default 60/60s)
    #[arg(long, env = "AMAL_RATE_LIMIT_UNAUTHENTICATED", global = true)]
    pub rate_limit_unauthenticated: Option<String>,
    /// Comma-separated proxy IPs/CIDRs whose X-Forwarded-For is believed
    #[arg(long, env = "AMAL_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    /// Seconds before a request is stopped (default 30)
    #[arg(long, env = "AMAL_REQUEST_TIMEOUT_SECONDS", global = true)]
    pub request_timeout: Option<u64>,
    /// How long a request waits for a database connection before 503, e.g. 2s (default 2s)
    #[arg(long, env = "AMAL_DB_ACQUIRE_TIMEOUT", global = true)]
    pub db_acquire_timeout: Option<String>,
    /// `serve` takes a verified backup this often, e.g. 6h or 30m (default: off)
    #[arg(long, env = "AMAL_BACKUP_INTERVAL", global = true)]
    pub backup_interval: Option<String>,
    /// How many scheduled backups to keep; older ones are deleted (default 7)
    #[arg(long, env = "AMAL_BACKUP_KEEP", global = true)]
    pub backup_keep: Option<String>,
    /// Folder for backups (default: <data dir>/backups)
    #[arg(long, env = "AMAL_BACKUP_DIR", global = true)]
    pub backup_dir: Option<PathBuf>,
    /// age key file (`amal backup keygen FILE`): backups are encrypted to it
    /// and opened with it. Required in production (or a passphrase)
    #[arg(long, env = "AMAL_BACKUP_KEY_FILE", global = true)]
    pub backup_key_file: Option<PathBuf>,
    /// More age public keys (`age1…`, comma-separated) that can open every backup
    #[arg(long, env = "AMAL_BACKUP_RECIPIENTS", global = true)]
    pub backup_recipients: Option<String>,
    /// Passphrase that encrypts backups instead of a key file. Environment only.
    #[arg(
        long,
        env = "AMAL_BACKUP_PASSPHRASE",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub backup_passphrase: Option<String>,
    /// Access-token signing secret (≥ 64 bytes). Environment only.
    #[arg(
        long,
        env = "JWT_SECRET",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// Previous access-token secret, still accepted during rotation. Environment only.
    #[arg(
        long,
        env = "JWT_SECRET_PREVIOUS",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub jwt_secret_previous: Option<String>,
    /// Refresh-token secret (≥ 64 bytes, different from JWT_SECRET). Environment only.
    #[arg(
        long,
        env = "JWT_REFRESH_SECRET",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub jwt_refresh_secret: Option<String>,
    /// OpenAI-compatible AI server, including the version path (e.g. http://127.0.0.1:11434/v1); unset = built-in offline assistant
    #[arg(long, env = "AI_BASE_URL", global = true)]
    pub ai_base_url: Option<String>,
    /// Model name on the AI server (required with AI_BASE_URL)
    #[arg(long, env = "AI_MODEL", global = true)]
    pub ai_model: Option<String>,
    /// Seconds before an AI call is abandoned with a 503 (default 30)
    #[arg(long, env = "AI_TIMEOUT_SECONDS", global = true)]
    pub ai_timeout: Option<u64>,
    /// PEM certificate chain: with --tls-key, `serve` speaks HTTPS (reloaded on SIGHUP)
    #[arg(long, env = "AMAL_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate
    #[arg(long, env = "AMAL_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// How often the built-in alerts are evaluated, e.g. 15s (default) or 500ms
    #[arg(long, env = "AMAL_ALERT_INTERVAL", global = true)]
    pub alert_interval: Option<String>,
    /// How long a break-glass (emergency access) session lasts, e.g. 60m (default)
    #[arg(long, env = "AMAL_BREAK_GLASS_DURATION", global = true)]
    pub break_glass_duration: Option<String>,
    /// `on`: a second admin must approve a provider or nurse account an admin created (default off)
    #[arg(long, env = "AMAL_TWO_PERSON_RULE", global = true)]
    pub two_person_rule: Option<String>,
    /// SQLCipher key of the SQLite database: a passphrase of 16+ characters or 64 hex digits (prefer AMAL_DB_KEY_FILE). Environment only.
    #[arg(
        long,
        env = "AMAL_DB_KEY",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub db_key: Option<String>,
    /// File holding the SQLCipher key of the SQLite database (mode 0600)
    #[arg(long, env = "AMAL_DB_KEY_FILE", global = true, value_name = "FILE")]
    pub db_key_file: Option<PathBuf>,
    /// `true`: the disk under the SQLite database is encrypted, so production needs no AMAL_DB_KEY
    #[arg(long, env = "AMAL_DISK_ENCRYPTED", global = true)]
    pub disk_encrypted: Option<String>,
    /// Inactivity limit of a session (web and refresh tokens), default 15m.
    #[arg(long, env = "AMAL_IDLE_TIMEOUT", global = true)]
    pub idle_timeout: Option<String>,
    /// The clinic's name at the head of printed prescriptions, notes and lab
    /// explanations (default "Dr Amal Clinic")
    #[arg(long, env = "AMAL_CLINIC_NAME", global = true)]
    pub clinic_name: Option<String>,
    /// URL that firing and resolved alerts are posted to (JSON). Environment only.
    #[arg(
        long,
        env = "ALERT_WEBHOOK_URL",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub alert_webhook_url: Option<String>,
    /// `serve` also listens for HL7 v2 lab results over MLLP on this address, e.g. 127.0.0.1:2575 (default: off)
    #[arg(long, env = "AMAL_HL7_MLLP_ADDR", global = true)]
    pub hl7_mllp_addr: Option<String>,
    /// E-mail of the provider account MLLP imports are made as (required with --hl7-mllp-addr)
    #[arg(long, env = "AMAL_HL7_MLLP_USER", global = true)]
    pub hl7_mllp_user: Option<String>,
    /// Longest HL7 message accepted over MLLP, in bytes (default 1048576)
    #[arg(long, env = "AMAL_HL7_MLLP_MAX_BYTES", global = true)]
    pub hl7_mllp_max_bytes: Option<String>,
    /// An MLLP connection silent this long is closed, e.g. 60s (default 60s)
    #[arg(long, env = "AMAL_HL7_MLLP_IDLE_TIMEOUT", global = true)]
    pub hl7_mllp_idle_timeout: Option<String>,
    /// Previous AUDIT_KEY, still verifying events after a rotation. Environment only.
    #[arg(
        long,
        env = "AUDIT_KEY_PREVIOUS",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub audit_key_previous: Option<String>,
    /// HMAC-SHA256 key of the audit chain (≥ 64 bytes). Environment only.
    #[arg(
        long,
        env = "AUDIT_KEY",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub audit_key: Option<String>,
    /// File holding the Ed25519 key that signs audit checkpoints (default in development: <data dir>/audit-signing.key)
    #[arg(long, env = "AMAL_AUDIT_SIGNING_KEY_FILE", global = true)]
    pub audit_signing_key_file: Option<PathBuf>,
    /// Folder of the append-only audit checkpoint file (default: <data dir>/audit-checkpoints)
    #[arg(long, env = "AMAL_AUDIT_CHECKPOINT_DIR", global = true)]
    pub audit_checkpoint_dir: Option<PathBuf>,
    /// `serve` writes a checkpoint after this many audit events (default 1000)
    #[arg(long, env = "AMAL_AUDIT_CHECKPOINT_EVERY", global = true)]
    pub audit_checkpoint_every: Option<String>,
    /// ... and this often while events arrive, e.g. 1m (default)
    #[arg(long, env = "AMAL_AUDIT_CHECKPOINT_INTERVAL", global = true)]
    pub audit_checkpoint_interval: Option<String>,
    /// URL each audit checkpoint is also posted to (JSON). Environment only.
    #[arg(
        long,
        env = "AUDIT_CHECKPOINT_WEBHOOK_URL",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub audit_checkpoint_webhook_url: Option<String>,
    /// Bearer key for the AI server. Environment only.
    #[arg(
        long,
        env = "AI_API_KEY",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub ai_api_key: Option<String>,
    /// Bearer token that may read /metrics (Prometheus). Environment only.
    #[arg(
        long,
        env = "METRICS_TOKEN",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
    /// Who must use a second factor: required-for-clinical (production default), required, optional (development default)
    #[arg(long, env = "AMAL_MFA", global = true)]
    pub mfa: Option<String>,
    /// Drop a client that has not sent a whole request head (or an idle keep-alive connection) after this long, e.g. 10s (default 10s)
    #[arg(long, env = "AMAL_HEADER_READ_TIMEOUT", global = true)]
    pub header_read_timeout: Option<String>,
    /// Allow development mode (generated or weak secrets) on a non-loopback address; for throw-away tests only, refused in production
    #[arg(long, env = "AMAL_INSECURE_DEV", global = true)]
    pub insecure_dev: bool,
}

impl Settings {
    pub fn raw(&self) -> server::RawConfig {
        let secret =
            |s: &Option<String>| s.clone().filter(|v| !v.is_empty()).map(SecretString::from);
        server::RawConfig {
            database_url: self.database_url.clone().filter(|s| !s.is_empty()),
            data_dir: self.data_dir.clone(),
            bind: self.bind.clone().filter(|s| !s.is_empty()),
            env: self.environment.clone().filter(|s| !s.is_empty()),
            jwt_secret: secret(&self.jwt_secret),
            jwt_secret_previous: secret(&self.jwt_secret_previous),
            jwt_refresh_secret: secret(&self.jwt_refresh_secret),
            signup: self.signup.clone().filter(|s| !s.is_empty()),
            log_level: self.log_level.clone().filter(|s| !s.is_empty()),
            metrics_token: secret(&self.metrics_token),
            rate_limit_auth: self.rate_limit_auth.clone(),
            rate_limit_write: self.rate_limit_write.clone(),
            rate_limit_ai: self.rate_limit_ai.clone(),
            rate_limit_read: self.rate_limit_read.clone(),
            rate_limit_account_failures: self.rate_limit_account_failures.clone(),
            rate_limit_account_ip_failures: self.rate_limit_account_ip_failures.clone(),
            rate_limit_ip_failures: self.rate_limit_ip_failures.clone(),
            rate_limit_unauthenticated: self.rate_limit_unauthenticated.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            request_timeout_secs: self.request_timeout,
            db_acquire_timeout: self.db_acquire_timeout.clone(),
            backup_interval: self.backup_interval.clone(),
            backup_keep: self.backup_keep.clone(),
            backup_dir: self.backup_dir.clone(),
            backup_key_file: self.backup_key_file.clone(),
            backup_recipients: self.backup_recipients.clone(),
            backup_passphrase: secret(&self.backup_passphrase),
            ai_base_url: self.ai_base_url.clone(),
            ai_model: self.ai_model.clone(),
            ai_api_key: secret(&self.ai_api_key),
            ai_timeout_secs: self.ai_timeout,
            tls_cert: self.tls_cert.clone().filter(|p| !p.as_os_str().is_empty()),
            tls_key: self.tls_key.clone().filter(|p| !p.as_os_str().is_empty()),
            alert_interval: self.alert_interval.clone(),
            idle_timeout: self.idle_timeout.clone(),
            clinic_name: self.clinic_name.clone(),
            alert_webhook_url: secret(&self.alert_webhook_url),
            break_glass_duration: self.break_glass_duration.clone(),
            two_person_rule: self.two_person_rule.clone(),
            hl7_mllp_addr: self.hl7_mllp_addr.clone(),
            hl7_mllp_user: self.hl7_mllp_user.clone(),
            hl7_mllp_max_bytes: self.hl7_mllp_max_bytes.clone(),
            hl7_mllp_idle_timeout: self.hl7_mllp_idle_timeout.clone(),
            mfa: self.mfa.clone(),
            header_read_timeout: self.header_read_timeout.clone(),
            insecure_dev: self.insecure_dev,
            audit_key: secret(&self.audit_key),
            audit_key_previous: secret(&self.audit_key_previous),
            audit_signing_key_file: self
                .audit_signing_key_file
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            audit_checkpoint_dir: self.audit_checkpoint_dir.clone(),
            audit_checkpoint_every: self.audit_checkpoint_every.clone(),
            audit_checkpoint_interval: self.audit_checkpoint_interval.clone(),
            audit_checkpoint_webhook_url: secret(&self.audit_checkpoint_webhook_url),
            db_key: secret(&self.db_key),
            db_key_file: self.db_key_file.clone(),
            disk_encrypted: self.disk_encrypted.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (migrates the database first unless --no-migrate)
    Serve {
        /// Do not apply pending migrations at start
        #[arg(long)]
        no_migrate: bool,
    },
    /// Show or change the database schema version
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Manage accounts from the command line (bootstrap the first admin)
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Generate secrets
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Validate the configuration
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Work with the audit trail
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Start a throw-away demo clinic (synthetic patients, one user per role).
    /// Uses a temporary SQLite database, or an EMPTY PostgreSQL database named by DATABASE_URL
    Demo {
        /// How many synthetic patients to generate
        #[arg(long, default_value_t = 200)]
        patients: usize,
        /// Keep the demo database folder after stopping
        #[arg(long)]
        keep: bool,
        /// Password for every demo user (default: a random one, printed at start)
        #[arg(long, env = "AMAL_DEMO_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Take a consistent online backup (default), or check one with `backup verify FILE`
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(subcommand)]
        action: Option<BackupAction>,
        /// Write the archive here (default: <backup dir>/amal-backup-<UTC timestamp>.amalbak)
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
    },
    /// The SQLite database file itself: `amal db encrypt` (stop `serve` first)
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Restore a backup archive into the configured database (stop `serve` first)
    Restore {
        /// The .amalbak archive to restore
        file: PathBuf,
        /// Replace a database that already holds data or migrations
        #[arg(long)]
        force: bool,
    },
    /// Run the launch smoke suite against a running deployment; exit 0 only when every check passes
    Smoke {
        /// Base URL of the deployment
        #[arg(long, env = "SMOKE_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Admin account the suite signs in as
        #[arg(long, env = "SMOKE_ADMIN_EMAIL")]
        admin_email: Option<String>,
        /// The admin's password (prefer the environment variable)
        #[arg(long, env = "SMOKE_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        /// The admin's base32 TOTP secret, when its account has a second factor (the suite computes the current code; prefer the environment variable)
        #[arg(long, env = "SMOKE_TOTP_SECRET", hide_env_values = true)]
        totp_secret: Option<String>,
        /// The deployment's METRICS_TOKEN, to read /metrics as Prometheus does (default: the admin's token)
        #[arg(long, env = "SMOKE_METRICS_TOKEN", hide_env_values = true)]
        metrics_token: Option<String>,
        /// Extra CA certificate (PEM) to trust, for a private or self-signed HTTPS certificate
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// Seconds before one request is given up
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Import data from other systems: `amal import hl7 FILE|DIR --user EMAIL`
    Import {
        #[command(subcommand)]
        action: ImportAction,
    },
    /// Print the release, the git commit and the schema version
    Version,
}

#[derive(Subcommand, Debug)]
pub enum ImportAction {
    /// Import HL7 v2 ORU^R01 lab results from a file (one or more messages, MLLP framing allowed) or every file of a folder; prints each ACK code and the import rate. Exit 1 when a message was not accepted
    Hl7 {
        /// A message file, or a folder of them (read in name order)
        path: PathBuf,
        /// The active provider account the results are recorded by (and audited as)
        #[arg(long, value_name = "EMAIL")]
        user: String,
        /// Print every ACK in full
        #[arg(long)]
        verbose: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MigrateAction {
    /// List every migration and whether it is applied
    Status,
    /// Apply every pending migration
    Up,
    /// Revert migrations (the newest one, or down to --to N; --to 0 reverts all)
    Down {
        #[arg(long)]
        to: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserAction {
    /// Create an active account (password from a prompt or --password-stdin)
    Create {
        #[arg(long)]
        email: String,
        /// admin, provider, nurse or staff
        #[arg(long)]
        role: String,
        /// Display name (defaults to the e-mail's local part)
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account's second factor (lost phone); ends its sessions. Audited
    ResetMfa {
        #[arg(long)]
        email: String,
    },
    /// Replace an account's password with a one-time set-password link (printed, valid 24 h); ends its sessions. Audited
    ResetPassword {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretsAction {
    /// Print JWT_SECRET and JWT_REFRESH_SECRET (64 random bytes each, base64) for an env file
    Generate,
}

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Run the start-up validation; exit 1 naming each wrong setting
    Check,
}

#[derive(Subcommand, Debug)]
pub enum DbAction {
    /// Encrypt a plaintext SQLite database with AMAL_DB_KEY / AMAL_DB_KEY_FILE (SQLCipher); the original is kept aside
    Encrypt,
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Verify the keyed hash chain from the start and against every signed checkpoint; exit 1 and say what is broken
    Verify,
    /// Write a signed checkpoint of the chain head now (as `serve` does every N events and every minute)
    Checkpoint,
    /// Create a new Ed25519 checkpoint signing key file (mode 0600) for AMAL_AUDIT_SIGNING_KEY_FILE
    Keygen {
        /// Where to write the key; must not exist
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum BackupAction {
    /// Restore FILE into a scratch database; check the signature, integrity, the audit chain and row counts
    Verify {
        /// The .amalbak archive to check
        file: PathBuf,
    },
    /// Create an age key file (0600) that encrypts and opens backups (AMAL_BACKUP_KEY_FILE)
    Keygen {
        /// Where to write the key (must not exist)
        file: PathBuf,
    },
}
