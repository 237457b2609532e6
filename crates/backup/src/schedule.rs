//! Scheduled backups inside `amal serve` (`AMAL_BACKUP_INTERVAL`,
//! `AMAL_BACKUP_KEEP`, `AMAL_BACKUP_DIR`).
//!
//! The scheduler writes archives with [`crate::archive::create`] and
//! decides *when* (every interval, counted
//! from the newest archive already in the folder, so a restart does not
//! reset the clock), verifies each archive right after it is written,
//! deletes archives beyond the newest `keep`, and keeps the metrics the
//! alerts read:
//!
//! - counters `backup.success` and `backup.failure`;
//! - gauges `backup.last_success_timestamp` (Unix seconds) and
//!   `backup.last_success_age_seconds` (refreshed every 30 s, so it keeps
//!   growing while backups fail; counted from the scheduler's start when no
//!   backup has succeeded yet).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use store::Db;
use telemetry::metrics::Metrics;

use crate::archive::{
    create, create_private_dir, default_file_name, record_backup, verify, ArchiveKeys,
    ARCHIVE_PREFIX, ARCHIVE_SUFFIX, FAILED_SUFFIX, PARTIAL_SUFFIX,
};
use crate::progress::Reporter;

/// How often the age gauge is refreshed.
const GAUGE_REFRESH: Duration = Duration::from_secs(30);

/// A scheduled backup: what is backed up, where to, and how often.
pub struct Schedule {
    pub db: Db,
    pub database_url: String,
    pub keys: ArchiveKeys,
    /// `AMAL_BACKUP_INTERVAL`.
    pub every: Duration,
    /// `AMAL_BACKUP_KEEP`: archives kept (older ones are deleted).
    pub keep: usize,
    /// `AMAL_BACKUP_DIR`.
    pub dir: PathBuf,
    /// Where the backup counters and gauges go (the server's metrics).
    pub metrics: Arc<Metrics>,
}

impl Schedule {
    /// Write one archive into the folder and audit it; its path and size.
    async fn create(&self) -> anyhow::Result<(PathBuf, u64)> {
        let out = self.dir.join(default_file_name(Utc::now()));
        let c = create(
            &self.db,
            &self.database_url,
            &out,
            &self.keys,
            &Reporter::silent(),
        )
        .await?;
        record_backup(&self.db, &c, &self.keys, "schedule").await?;
        Ok((c.path, c.bytes))
    }

    /// Restore `archive` into a scratch database and check it.
    async fn verify(&self, archive: &Path) -> anyhow::Result<()> {
        let v = verify(
            archive,
            &self.database_url,
            Some(&self.db),
            &self.keys,
            &Reporter::silent(),
        )
        .await?;
        if v.problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", v.problems.join("; "))
        }
    }
}

fn is_archive(name: &str) -> bool {
    name.starts_with(ARCHIVE_PREFIX) && name.ends_with(ARCHIVE_SUFFIX)
}

/// Archives (or failed archives) in `dir`, newest first (the UTC timestamp
/// in the name sorts in time order).
fn list(dir: &Path, failed: bool) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(ARCHIVE_PREFIX)
                && if failed {
                    n.ends_with(FAILED_SUFFIX)
                } else {
                    is_archive(&n)
                }
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v.reverse();
    v
}

/// Delete archives beyond the newest `keep` (and failed ones likewise);
/// returns how many were deleted.
pub fn prune(dir: &Path, keep: usize) -> usize {
    let mut deleted = 0;
    for failed in [false, true] {
        for old in list(dir, failed).into_iter().skip(keep) {
            match std::fs::remove_file(&old) {
                Ok(()) => deleted += 1,
                Err(e) => tracing::warn!(
                    file = %old.file_name().unwrap_or_default().to_string_lossy(),
                    error = %e,
                    "cannot delete an old backup"
                ),
            }
        }
    }
    // Partial files left by a crash more than a day ago.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(86_400));
            if n.starts_with(ARCHIVE_PREFIX) && n.ends_with(PARTIAL_SUFFIX) && stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    deleted
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Clock {
    started: SystemTime,
    last_success: Mutex<Option<SystemTime>>,
}

impl Clock {
    fn last(&self) -> Option<SystemTime> {
        self.last_success.lock().ok().and_then(|g| *g)
    }

    fn publish(&self, metrics: &Metrics) {
        let last = self.last();
        let since = last.unwrap_or(self.started);
        let age = SystemTime::now()
            .duration_since(since)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        metrics.set_gauge("backup.last_success_age_seconds", age.floor());
        if let Some(t) = last {
            metrics.set_gauge("backup.last_success_timestamp", unix_secs(t).floor());
        }
    }
}

/// Start the scheduler. Run it on one instance only when several share a
/// database.
pub fn spawn(s: Schedule) -> tokio::task::JoinHandle<()> {
    s.metrics.incr_by("backup.success", 0);
    s.metrics.incr_by("backup.failure", 0);
    let newest = list(&s.dir, false)
        .into_iter()
        .next()
        .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let clock = Arc::new(Clock {
        started: SystemTime::now(),
        last_success: Mutex::new(newest),
    });
    clock.publish(&s.metrics);
    tracing::info!(
        intervalSeconds = s.every.as_secs(),
        keep = s.keep,
        dir = %s.dir.display(),
        "scheduled backups enabled"
    );

    let (gauge_metrics, gauge_clock) = (s.metrics.clone(), clock.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(GAUGE_REFRESH);
        loop {
            tick.tick().await;
            gauge_clock.publish(&gauge_metrics);
        }
    });

    tokio::spawn(async move {
        // The first backup is due one interval after the newest archive.
        let mut delay = clock
            .last()
            .and_then(|t| t.elapsed().ok())
            .map(|age| s.every.saturating_sub(age))
            .unwrap_or(Duration::ZERO);
        loop {
            tokio::time::sleep(delay).await;
            run_once(&s, &clock).await;
            delay = s.every;
        }
    })
}

async fn run_once(s: &Schedule, clock: &Clock) {
    let started = Instant::now();
    let metrics = &s.metrics;
    if let Err(e) = create_private_dir(&s.dir) {
        metrics.incr("backup.failure");
        tracing::error!(error = %e, dir = %s.dir.display(), "scheduled backup failed: cannot create the backup folder");
        return;
    }
    let (path, bytes) = match s.create().await {
        Ok(x) => x,
        Err(e) => {
            metrics.incr("backup.failure");
            tracing::error!(error = %format!("{e:#}"), "scheduled backup failed");
            clock.publish(metrics);
            return;
        }
    };
    let file = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    match s.verify(&path).await {
        Ok(()) => {
            if let Ok(mut g) = clock.last_success.lock() {
                *g = Some(SystemTime::now());
            }
            metrics.incr("backup.success");
            clock.publish(metrics);
            let deleted = prune(&s.dir, s.keep);
            tracing::info!(
                file = %file,
                bytes,
                duration = telemetry::num::cap_u64(started.elapsed().as_millis()),
                deletedOld = deleted,
                "scheduled backup written and verified"
            );
        }
        Err(e) => {
            metrics.incr("backup.failure");
            let mut failed = path.as_os_str().to_os_string();
            failed.push(".failed");
            let _ = std::fs::rename(&path, &failed);
            prune(&s.dir, s.keep);
            clock.publish(metrics);
            tracing::error!(file = %file, error = %format!("{e:#}"), "scheduled backup did not verify; kept as .failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("amal-prune-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..5 {
            std::fs::write(
                dir.join(format!("amal-backup-2026010{i}T000000Z.amalbak")),
                b"x",
            )
            .unwrap();
        }
        std::fs::write(dir.join("unrelated.amalbak"), b"x").unwrap();
        assert_eq!(prune(&dir, 2), 3);
        let left = list(&dir, false);
        assert_eq!(left.len(), 2);
        assert!(left[0].to_string_lossy().contains("20260104"));
        assert!(dir.join("unrelated.amalbak").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
