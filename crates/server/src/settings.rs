//! Parsing of setting values shared by the features that read them, so
//! that `config` parses every setting without importing the features (which
//! import the state, which holds the config): one grammar for durations,
//! the alert interval, the webhook address, the backup schedule.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A duration setting: a number and a unit, combined freely (`90s`, `500ms`,
/// `30m`, `6h`, `1d`, `1h30m`, `1h 30m`), as `humantime` reads them. A bare
/// number is refused: "6" could mean seconds or hours.
pub fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() || s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    humantime::parse_duration(s).ok().filter(|d| !d.is_zero())
}

/// `AMAL_ALERT_INTERVAL`: a [`duration`] from 100 ms to 1 h.
pub fn alert_interval(s: &str) -> Option<Duration> {
    duration(s).filter(|d| (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(d))
}

/// Default time box of a break-glass session (`AMAL_BREAK_GLASS_DURATION`).
pub const DEFAULT_BREAK_GLASS: Duration = Duration::from_secs(3600);

/// `AMAL_BREAK_GLASS_DURATION`: a [`duration`] from 1 s to 24 h.
pub fn break_glass_duration(s: &str) -> Option<Duration> {
    duration(s).filter(|d| (Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(d))
}

/// Default inactivity limit of a session (`AMAL_IDLE_TIMEOUT`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `AMAL_IDLE_TIMEOUT`: a [`duration`] from 2 s (tests) to 12 h.
pub fn idle_timeout(s: &str) -> Option<Duration> {
    duration(s).filter(|d| (Duration::from_secs(2)..=Duration::from_secs(12 * 3600)).contains(d))
}

/// Whether `ALERT_WEBHOOK_URL` is an http(s) URL with a host.
/// `AMAL_DB_KEY` / `AMAL_DB_KEY_FILE` (one of them) and
/// `AMAL_DISK_ENCRYPTED`: the SQLCipher key, if any, and whether the
/// operator stated that the disk is encrypted. A key file must be the
/// owner's alone (like the secrets file): a key others can read protects
/// nothing.
pub fn encryption_at_rest(
    key: Option<&str>,
    key_file: Option<&Path>,
    disk_encrypted: Option<&str>,
    problem: &mut impl FnMut(&'static str, String),
) -> (Option<store::cipher::SqliteKey>, bool) {
    let key_file = key_file.filter(|p| !p.as_os_str().is_empty());
    let key = match (key.filter(|k| !k.is_empty()), key_file) {
        (Some(_), Some(_)) => {
            problem(
                "AMAL_DB_KEY_FILE",
                "cannot be used with AMAL_DB_KEY; set one of them".into(),
            );
            None
        }
        (Some(k), None) => store::cipher::SqliteKey::parse(k)
            .map_err(|m| problem("AMAL_DB_KEY", m))
            .ok(),
        (None, Some(path)) => match store::key_file::read(path, true) {
            Ok(k) => store::cipher::SqliteKey::parse(&k)
                .map_err(|m| problem("AMAL_DB_KEY_FILE", format!("holds a key that {m}")))
                .ok(),
            Err(m) => {
                problem("AMAL_DB_KEY_FILE", m);
                None
            }
        },
        (None, None) => None,
    };
    let disk = match disk_encrypted.map(str::trim) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            problem("AMAL_DISK_ENCRYPTED", "must be `true` or `false`".into());
            false
        }
    };
    (key, disk)
}

pub fn webhook_url_ok(s: &str) -> bool {
    url::Url::parse(s.trim())
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .unwrap_or(false)
}

/// Validated backup settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    /// `None`: no scheduled backups.
    pub interval: Option<Duration>,
    /// How many archives the scheduler keeps (older ones are deleted).
    pub keep: usize,
    /// Where archives go (default `<data dir>/backups`).
    pub dir: PathBuf,
    /// How archives are encrypted and opened.
    pub keys: backup::keys::BackupKeys,
}

impl BackupSettings {
    pub const DEFAULT_KEEP: usize = 7;

    /// Validate the raw settings, reporting each problem by setting name.
    pub fn resolve(
        interval: Option<&str>,
        keep: Option<&str>,
        dir: Option<PathBuf>,
        data_dir: &Path,
        problem: &mut impl FnMut(&'static str, String),
    ) -> BackupSettings {
        let interval = match interval.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) if s.eq_ignore_ascii_case("off") => None,
            Some(s) => match duration(s) {
                Some(d) => Some(d),
                None => {
                    problem(
                        "AMAL_BACKUP_INTERVAL",
                        "must be a duration such as `6h`, `30m` or `90s` (or `off`)".into(),
                    );
                    None
                }
            },
        };
        let keep = match keep.map(str::trim).filter(|s| !s.is_empty()) {
            None => Self::DEFAULT_KEEP,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    problem(
                        "AMAL_BACKUP_KEEP",
                        "must be a whole number of archives, at least 1".into(),
                    );
                    Self::DEFAULT_KEEP
                }
            },
        };
        let dir = dir
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| data_dir.join("backups"));
        BackupSettings {
            interval,
            keep,
            dir,
            keys: Default::default(),
        }
    }
}

/// Default of `AMAL_AUDIT_CHECKPOINT_EVERY`: a checkpoint at least every this many events.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
/// Default of `AMAL_AUDIT_CHECKPOINT_INTERVAL`: and at least this often while events arrive.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// Validated audit-chain settings: the HMAC keys, the checkpoint signing
/// key and where and how often checkpoints are written.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// `AUDIT_KEY`: HMAC key of new events.
    pub key: secrecy::SecretString,
    /// `AUDIT_KEY_PREVIOUS`: the key before a rotation (still verifies).
    pub key_previous: Option<secrecy::SecretString>,
    /// From `AMAL_AUDIT_SIGNING_KEY_FILE`.
    pub signing_key: store::checkpoint::CheckpointKey,
    /// `AMAL_AUDIT_CHECKPOINT_DIR` (default `<data dir>/audit-checkpoints`).
    pub checkpoint_dir: PathBuf,
    /// `AMAL_AUDIT_CHECKPOINT_EVERY`.
    pub checkpoint_every: u64,
    /// `AMAL_AUDIT_CHECKPOINT_INTERVAL`.
    pub checkpoint_interval: Duration,
    /// `AUDIT_CHECKPOINT_WEBHOOK_URL`: each checkpoint is also posted there.
    pub webhook_url: Option<secrecy::SecretString>,
}

impl AuditSettings {
    /// Install the HMAC keys for this process's audit chain.
    pub fn install(&self) {
        use secrecy::ExposeSecret;
        store::audit::install_keys(
            store::audit::AuditKey::new(self.key.expose_secret().as_bytes()),
            self.key_previous
                .as_ref()
                .map(|k| store::audit::AuditKey::new(k.expose_secret().as_bytes())),
        );
    }

    /// The public half of the checkpoint key.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.signing_key.0.verifying_key()
    }

    /// The signed checkpoints the chain must match.
    pub fn anchors(&self) -> std::io::Result<store::audit::Anchors> {
        store::checkpoint::anchors_in(&self.checkpoint_dir, &self.verifying_key())
    }
}

/// `AMAL_AUDIT_CHECKPOINT_EVERY`: a whole number from 1 to 1,000,000.
pub fn checkpoint_every(s: &str) -> Option<u64> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
}

/// `AMAL_AUDIT_CHECKPOINT_INTERVAL`: from 1 s to 1 h.
pub fn checkpoint_interval(s: &str) -> Option<Duration> {
    duration(s).filter(|d| (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_duration_grammar() {
        assert_eq!(duration("6h"), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "6", "1.5", "h", "0s", "-1h", "6w6", "soon"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn idle_timeouts() {
        assert_eq!(idle_timeout("15m"), Some(Duration::from_secs(900)));
        assert_eq!(idle_timeout("1s"), None);
        assert_eq!(idle_timeout("13h"), None);
        assert_eq!(idle_timeout("900"), None);
    }

    #[test]
    fn alert_intervals_and_webhooks() {
        assert_eq!(alert_interval("15s"), Some(Duration::from_secs(15)));
        assert_eq!(alert_interval("1m"), Some(Duration::from_secs(60)));
        assert_eq!(alert_interval("50ms"), None);
        assert_eq!(alert_interval("2h"), None);
        assert!(webhook_url_ok("https://hooks.example.net/x?token=1"));
        assert!(!webhook_url_ok("ftp://x"));
        assert!(!webhook_url_ok("not a url"));
    }

    #[test]
    fn settings_name_each_bad_value() {
        let mut seen = Vec::new();
        let s = BackupSettings::resolve(
            Some("often"),
            Some("0"),
            None,
            Path::new("/data"),
            &mut |k, _| seen.push(k),
        );
        assert_eq!(seen, ["AMAL_BACKUP_INTERVAL", "AMAL_BACKUP_KEEP"]);
        assert_eq!(s.dir, PathBuf::from("/data/backups"));
        let s = BackupSettings::resolve(None, None, None, Path::new("d"), &mut |_, _| {});
        assert_eq!(s.interval, None);
        assert_eq!(s.keep, 7);
    }
}

/// The HL7 v2 MLLP listener (`crate::mllp`), when `AMAL_HL7_MLLP_ADDR` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpSettings {
    /// `host:port` to listen on.
    pub addr: String,
    /// E-mail of the account the imports are made as (`AMAL_HL7_MLLP_USER`).
    pub user: String,
    /// Longest message read (`AMAL_HL7_MLLP_MAX_BYTES`).
    pub max_bytes: usize,
    /// A connection silent this long is closed (`AMAL_HL7_MLLP_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
}

impl MllpSettings {
    pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// Validate the raw settings (`None` = the listener is off).
    pub fn resolve(
        addr: Option<&str>,
        user: Option<&str>,
        max_bytes: Option<&str>,
        idle_timeout: Option<&str>,
        problem: &mut impl FnMut(&'static str, String),
    ) -> Option<MllpSettings> {
        let addr = addr
            .map(str::trim)
            .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("off"))?;
        if addr.parse::<std::net::SocketAddr>().is_err() {
            problem(
                "AMAL_HL7_MLLP_ADDR",
                "must be an IP address and port such as `127.0.0.1:2575`".into(),
            );
        }
        let user = user.map(str::trim).filter(|s| s.contains('@'));
        if user.is_none() {
            problem(
                "AMAL_HL7_MLLP_USER",
                "is required when AMAL_HL7_MLLP_ADDR is set: the e-mail of the provider account the imports are made as".into(),
            );
        }
        let max_bytes = match max_bytes.map(str::trim).filter(|s| !s.is_empty()) {
            None => Self::DEFAULT_MAX_BYTES,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1024..=64 * 1024 * 1024).contains(&n) => n,
                _ => {
                    problem(
                        "AMAL_HL7_MLLP_MAX_BYTES",
                        "must be a number of bytes from 1024 to 67108864".into(),
                    );
                    Self::DEFAULT_MAX_BYTES
                }
            },
        };
        let idle_timeout = match idle_timeout.map(str::trim).filter(|s| !s.is_empty()) {
            None => Self::DEFAULT_IDLE_TIMEOUT,
            Some(s) => duration(s)
                .filter(|d| (Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(d))
                .unwrap_or_else(|| {
                    problem(
                        "AMAL_HL7_MLLP_IDLE_TIMEOUT",
                        "must be a duration from 100ms to 1d such as `60s`".into(),
                    );
                    Self::DEFAULT_IDLE_TIMEOUT
                }),
        };
        Some(MllpSettings {
            addr: addr.to_string(),
            user: user.unwrap_or_default().to_string(),
            max_bytes,
            idle_timeout,
        })
    }
}
