//! `amal backup`, `amal backup verify` and `amal restore`, the archive
//! format they share, and the job that `serve` runs on a schedule.
//!
//! # Archive format (`.amalbak`, format version 1)
//!
//! A gzip-compressed POSIX tar file (`tar -tzf FILE` lists it) with exactly
//! two entries, in this order:
//!
//! 1. `manifest.json` — what the backup holds, see [`Manifest`];
//! 2. the database image named by `manifest.database.file`:
//!    `database.sqlite` (a `VACUUM INTO` copy of a SQLite database) or
//!    `database.pgdump` (a `pg_dump --format=custom --compress=0` dump).
//!
//! The manifest carries the SHA-256 and size of the image; gzip adds a CRC
//! over the whole stream. Restore and verify check both before they use the
//! image. The archive is written as `FILE.partial`, fsynced and renamed, so
//! a file with the final name is always complete.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::audit::VerifyReport;
use store::{Db, Engine};

use crate::cli::BackupAction;

/// `manifest.format`.
pub const FORMAT: &str = "amal-backup";
/// `manifest.formatVersion` written by this release (and the newest it reads).
pub const FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const SQLITE_IMAGE: &str = "database.sqlite";
const PG_IMAGE: &str = "database.pgdump";
/// Level 6 is gzip's default: a good ratio at tens of MB/s.
const GZIP_LEVEL: u32 = 6;
/// Byte progress (every 10 %) is shown for images at least this large.
const PROGRESS_MIN_BYTES: u64 = 4 << 20;

/// What a backup holds, written as `manifest.json` (camelCase keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always `amal-backup`.
    pub format: String,
    /// 1 for this layout.
    pub format_version: u32,
    /// `sqlite` or `postgres`: a backup restores into the same engine.
    pub engine: String,
    /// When the snapshot was taken (UTC).
    pub created_at: DateTime<Utc>,
    /// The release and git commit of the `amal` that wrote it.
    pub release: String,
    pub git_commit: String,
    /// Highest applied migration in the snapshot.
    pub schema_version: i64,
    /// Rows per table in the snapshot.
    pub row_counts: BTreeMap<String, i64>,
    /// The audit chain in the snapshot.
    pub audit: AuditHead,
    /// The database image inside the archive.
    pub database: ImageInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditHead {
    /// Events in the chain (those before the first broken one, if any).
    pub events: i64,
    /// Hash of the newest event (the chain head).
    pub head_hash: String,
    /// Whether the chain verified when the backup was taken.
    pub valid: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// Entry name in the tar: `database.sqlite` or `database.pgdump`.
    pub file: String,
    /// `sqlite` (a database file) or `pg_dump-custom`.
    pub kind: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the image.
    pub sha256: String,
}

fn engine_name(e: Engine) -> &'static str {
    match e {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    }
}

/// Progress messages (stderr for the CLI, nothing for the scheduler).
#[derive(Clone, Default)]
pub struct Reporter(Option<Arc<Say>>);

type Say = dyn Fn(&str) + Send + Sync;

impl Reporter {
    /// `prefix [elapsed]: message` lines on stderr.
    pub fn stderr(prefix: &'static str) -> Reporter {
        let started = Instant::now();
        Reporter(Some(Arc::new(move |m: &str| {
            eprintln!("{prefix} [{:>5.1}s]: {m}", started.elapsed().as_secs_f64())
        })))
    }

    pub fn silent() -> Reporter {
        Reporter(None)
    }

    fn say(&self, msg: impl AsRef<str>) {
        if let Some(f) = &self.0 {
            f(msg.as_ref());
        }
    }
}

/// While a long step writes `path`, report its size every second.
struct Watch(Option<tokio::task::JoinHandle<()>>);

impl Watch {
    fn file(path: &Path, what: &'static str, reporter: &Reporter) -> Watch {
        if reporter.0.is_none() {
            return Watch(None);
        }
        let (path, r) = (path.to_path_buf(), reporter.clone());
        Watch(Some(tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(m) = tokio::fs::metadata(&path).await {
                    if m.len() != last {
                        last = m.len();
                        r.say(format!("{what}: {} written so far", human(last)));
                    }
                }
            }
        })))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// `amal-backup-<UTC timestamp>.amalbak`.
pub fn default_file_name(at: DateTime<Utc>) -> String {
    format!(
        "{}{}{}",
        server::backup_schedule::ARCHIVE_PREFIX,
        at.format("%Y%m%dT%H%M%SZ"),
        server::backup_schedule::ARCHIVE_SUFFIX
    )
}

// ------------------------------------------------------------ temp files

/// A folder removed (with its contents) when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new_in(parent: &Path) -> anyhow::Result<WorkDir> {
        let dir = parent.join(format!(
            ".amal-backup-work-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create a work folder in {}", parent.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(WorkDir(dir))
    }

    fn temp() -> anyhow::Result<WorkDir> {
        WorkDir::new_in(&std::env::temp_dir())
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file removed when dropped unless it was moved away.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

// ---------------------------------------------------------- the archive

/// Counts bytes read and reports every 10 %.
struct ProgressReader<R> {
    inner: R,
    done: u64,
    total: u64,
    next_tenth: u64,
    verb: &'static str,
    reporter: Reporter,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.total >= PROGRESS_MIN_BYTES {
            let tenth = (self.done * 10 / self.total).min(10);
            if tenth > self.next_tenth {
                self.next_tenth = tenth;
                self.reporter.say(format!(
                    "{} {:>3}% ({} of {})",
                    self.verb,
                    self.next_tenth * 10,
                    human(self.done),
                    human(self.total)
                ));
            }
        }
        Ok(n)
    }
}

/// SHA-256 and size of a file.
fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((hex::encode(h.finalize()), n_total))
}

/// Write `manifest` and `image` as a `.amalbak` archive at `out` (through
/// `out.partial`, fsynced, then renamed). Returns the archive's size.
fn pack(manifest: &Manifest, image: &Path, out: &Path, reporter: &Reporter) -> anyhow::Result<u64> {
    let partial = with_suffix(out, ".partial");
    let guard = TempFile(partial.clone());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
    }
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::with_capacity(1 << 20, file),
        flate2::Compression::new(GZIP_LEVEL),
    );
    let mut tar = tar::Builder::new(gz);
    let mtime = manifest.created_at.timestamp().max(0) as u64;
    let json = serde_json::to_vec_pretty(manifest)?;
    let mut h = tar::Header::new_gnu();
    h.set_size(json.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_cksum();
    tar.append_data(&mut h, MANIFEST, json.as_slice())?;

    let img = std::fs::File::open(image)?;
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest.database.bytes);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_cksum();
    let reader = ProgressReader {
        inner: std::io::BufReader::with_capacity(1 << 20, img),
        done: 0,
        total: manifest.database.bytes,
        next_tenth: 0,
        verb: "compressing",
        reporter: reporter.clone(),
    };
    tar.append_data(&mut h, &manifest.database.file, reader)?;
    let gz = tar.into_inner()?;
    let buffered = gz.finish()?;
    let file = buffered
        .into_inner()
        .map_err(|e| anyhow!("cannot write the archive: {}", e.error()))?;
    file.sync_all()?;
    drop(file);
    if out.exists() {
        bail!("{} already exists; choose another --to", out.display());
    }
    std::fs::rename(&partial, out)?;
    std::mem::forget(guard);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        store::backup::sync_dir(dir)?;
    }
    Ok(std::fs::metadata(out)?.len())
}

fn corrupt(detail: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "the backup archive is corrupt or truncated ({detail}); its checksum does not verify — \
         use another backup"
    )
}

type Entries<'a> = tar::Entries<'a, flate2::read::GzDecoder<std::io::BufReader<std::fs::File>>>;

fn open_archive(
    path: &Path,
) -> anyhow::Result<tar::Archive<flate2::read::GzDecoder<std::io::BufReader<std::fs::File>>>> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open the backup {}", path.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(
        std::io::BufReader::with_capacity(1 << 20, f),
    )))
}

fn next_manifest(entries: &mut Entries<'_>) -> anyhow::Result<Manifest> {
    let mut entry = entries
        .next()
        .ok_or_else(|| corrupt("no manifest"))?
        .map_err(corrupt)?;
    let name = entry
        .path()
        .map_err(corrupt)?
        .to_string_lossy()
        .into_owned();
    if name != MANIFEST {
        return Err(corrupt(format!(
            "the first entry is `{name}`, not `{MANIFEST}`; is this an amal backup?"
        )));
    }
    if entry.size() > 16 << 20 {
        return Err(corrupt("the manifest is implausibly large"));
    }
    let mut text = String::new();
    entry.read_to_string(&mut text).map_err(corrupt)?;
    let m: Manifest =
        serde_json::from_str(&text).map_err(|e| corrupt(format!("unreadable manifest: {e}")))?;
    if m.format != FORMAT {
        return Err(corrupt(format!("unknown format `{}`", m.format)));
    }
    if m.format_version > FORMAT_VERSION {
        bail!(
            "this backup has format version {}, newer than this release reads ({FORMAT_VERSION}); \
             use the release that wrote it ({})",
            m.format_version,
            m.release
        );
    }
    Ok(m)
}

/// Read only the manifest of an archive.
pub fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let mut ar = open_archive(path)?;
    let mut entries = ar.entries().map_err(corrupt)?;
    next_manifest(&mut entries)
}

/// Extract the database image of `archive` to `dest`, checking its SHA-256
/// and size against the manifest and the gzip CRC of the whole stream.
fn unpack(archive: &Path, dest: &Path, reporter: &Reporter) -> anyhow::Result<Manifest> {
    let mut ar = open_archive(archive)?;
    let manifest = {
        let mut entries = ar.entries().map_err(corrupt)?;
        let manifest = next_manifest(&mut entries)?;
        let mut entry = entries
            .next()
            .ok_or_else(|| corrupt("the database image is missing"))?
            .map_err(corrupt)?;
        let name = entry
            .path()
            .map_err(corrupt)?
            .to_string_lossy()
            .into_owned();
        if name != manifest.database.file {
            return Err(corrupt(format!(
                "expected `{}`, found `{name}`",
                manifest.database.file
            )));
        }
        let mut out = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dest)
                .with_context(|| format!("cannot create {}", dest.display()))?,
        );
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        let total = manifest.database.bytes;
        let mut next_tenth = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", dest.display()))?;
            done += n as u64;
            let tenth = if total >= PROGRESS_MIN_BYTES {
                (done * 10 / total).min(10)
            } else {
                0
            };
            if tenth > next_tenth {
                next_tenth = tenth;
                reporter.say(format!(
                    "extracting {:>3}% ({} of {})",
                    next_tenth * 10,
                    human(done),
                    human(total)
                ));
            }
        }
        let file = out
            .into_inner()
            .map_err(|e| anyhow!("cannot write {}: {}", dest.display(), e.error()))?;
        file.sync_all()?;
        let sha = hex::encode(hasher.finalize());
        if done != manifest.database.bytes {
            return Err(corrupt(format!(
                "the image has {done} bytes, the manifest says {}",
                manifest.database.bytes
            )));
        }
        if sha != manifest.database.sha256 {
            return Err(corrupt(format!(
                "checksum mismatch: the image's SHA-256 is {sha}, the manifest says {}",
                manifest.database.sha256
            )));
        }
        if let Some(extra) = entries.next() {
            let name = extra
                .ok()
                .and_then(|e| e.path().ok().map(|p| p.to_string_lossy().into_owned()))
                .unwrap_or_default();
            return Err(corrupt(format!(
                "unexpected entry `{name}` after the image"
            )));
        }
        manifest
    };
    // Read to the end so that gzip checks its CRC and length trailer.
    let mut rest = ar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(corrupt)?;
    Ok(manifest)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("background task failed: {e}"))?
}

// ---------------------------------------------------------------- create

/// A written archive.
pub struct Created {
    pub path: PathBuf,
    pub bytes: u64,
    pub manifest: Manifest,
    pub elapsed: Duration,
}

/// Take a consistent backup of `db` (whose URL is `database_url`) into the
/// archive `out`, while the database keeps serving writes.
pub async fn create(
    db: &Db,
    database_url: &str,
    out: &Path,
    reporter: &Reporter,
) -> anyhow::Result<Created> {
    let started = Instant::now();
    if out.exists() {
        bail!("{} already exists; choose another --to", out.display());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    server::backup_schedule::create_private_dir(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let work = WorkDir::new_in(&parent)?;
    let created_at = store::now();
    let (image, kind, stats) = match db.engine() {
        Engine::Sqlite => {
            let image = work.join(SQLITE_IMAGE);
            reporter.say("snapshot: VACUUM INTO a temporary file (writers keep going)");
            let watch = Watch::file(&image, "snapshot", reporter);
            store::backup::sqlite_snapshot(db, &image)
                .await
                .context("cannot snapshot the SQLite database")?;
            drop(watch);
            let size = std::fs::metadata(&image)?.len();
            reporter.say(format!(
                "snapshot: {} in {:.1}s",
                human(size),
                started.elapsed().as_secs_f64()
            ));
            reporter.say("counting rows and walking the audit chain in the snapshot");
            let stats = store::backup::sqlite_file_stats(&image).await?;
            (image, "sqlite", stats)
        }
        Engine::Postgres => {
            store::backup::find_tool("pg_dump")?;
            let image = work.join(PG_IMAGE);
            let mut tx = store::backup::begin_snapshot(db).await?;
            let snapshot = store::backup::pg_export_snapshot(&mut tx).await?;
            reporter.say(format!(
                "snapshot {snapshot} exported (REPEATABLE READ); counting rows and walking the audit chain in it"
            ));
            let stats = store::backup::stats_in(&mut tx).await?;
            reporter.say("pg_dump --format=custom --snapshot (writers keep going)");
            let watch = Watch::file(&image, "pg_dump", reporter);
            let dumped = store::backup::pg_dump(database_url, Some(&snapshot), &image).await;
            drop(watch);
            tx.commit().await?;
            dumped?;
            let size = std::fs::metadata(&image)?.len();
            reporter.say(format!(
                "dump: {} in {:.1}s",
                human(size),
                started.elapsed().as_secs_f64()
            ));
            (image, "pg_dump-custom", stats)
        }
    };
    if !stats.audit.valid {
        reporter.say(format!(
            "WARNING: the audit chain is broken at sequence {} in the live database; the \
             backup keeps it as it is and will not verify",
            stats.audit.first_broken_seq.unwrap_or_default()
        ));
    }
    let image_for_hash = image.clone();
    let (sha256, bytes) = blocking(move || sha256_file(&image_for_hash)).await?;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        engine: engine_name(db.engine()).into(),
        created_at,
        release: server::routes::ops::release().into(),
        git_commit: server::routes::ops::git_commit().into(),
        schema_version: stats.schema_version,
        row_counts: stats.row_counts,
        audit: AuditHead {
            events: stats.audit.events,
            head_hash: stats.audit.head_hash,
            valid: stats.audit.valid,
        },
        database: ImageInfo {
            file: image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            kind: kind.into(),
            bytes,
            sha256,
        },
    };
    let (m, out_path, rep) = (manifest.clone(), out.to_path_buf(), reporter.clone());
    let archive_bytes = blocking(move || pack(&m, &image, &out_path, &rep)).await?;
    drop(work);
    reporter.say(format!(
        "compressed {} to {}",
        human(manifest.database.bytes),
        human(archive_bytes)
    ));
    Ok(Created {
        path: out.to_path_buf(),
        bytes: archive_bytes,
        manifest,
        elapsed: started.elapsed(),
    })
}

// ---------------------------------------------------------------- verify

/// The result of restoring a backup into a scratch database.
pub struct Verified {
    pub manifest: Manifest,
    /// Everything that differed or failed; empty when the backup is good.
    pub problems: Vec<String>,
    pub audit: VerifyReport,
    pub schema_version: i64,
    pub row_counts: BTreeMap<String, i64>,
}

/// Where and why a chain breaks: "event … (sequence …): reason; n events
/// before it verify".
fn describe_break(audit: &VerifyReport) -> String {
    format!(
        "event {} (sequence {}): {}; {} events before it verify",
        audit
            .first_broken_id
            .map(|i| i.to_string())
            .unwrap_or_default(),
        audit.first_broken_seq.unwrap_or_default(),
        audit
            .reason
            .as_deref()
            .unwrap_or("the chain does not verify"),
        audit.events
    )
}

/// What differs between the manifest and what a restored copy holds.
fn compare(
    m: &Manifest,
    audit: &VerifyReport,
    schema_version: i64,
    counts: &BTreeMap<String, i64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if !audit.valid {
        problems.push(format!("audit chain broken at {}", describe_break(audit)));
    } else if !m.audit.valid {
        problems.push("audit chain was already broken when the backup was taken".into());
    }
    if audit.events != m.audit.events {
        problems.push(format!(
            "audit chain length differs: the manifest says {} events, the backup holds {}",
            m.audit.events, audit.events
        ));
    }
    if audit.head_hash != m.audit.head_hash {
        problems.push(format!(
            "audit chain head differs: the manifest says {}, the backup's chain ends at {}",
            m.audit.head_hash, audit.head_hash
        ));
    }
    if schema_version != m.schema_version {
        problems.push(format!(
            "schema version differs: the manifest says {}, the backup is at {schema_version}",
            m.schema_version
        ));
    }
    for (table, want) in &m.row_counts {
        match counts.get(table) {
            None => problems.push(format!("table `{table}` is missing from the backup")),
            Some(got) if got != want => problems.push(format!(
                "row count of `{table}` differs: the manifest says {want}, the backup holds {got}"
            )),
            Some(_) => {}
        }
    }
    for table in counts.keys().filter(|t| !m.row_counts.contains_key(*t)) {
        problems.push(format!(
            "table `{table}` is in the backup but not in the manifest"
        ));
    }
    problems
}

/// Restore `archive` into a scratch database and check it: the checksum,
/// integrity (`PRAGMA integrity_check` and `foreign_key_check` for SQLite;
/// a clean `pg_restore`, which re-validates every constraint, for
/// PostgreSQL), the audit chain, the schema version and the row counts
/// against the manifest. A PostgreSQL backup is restored into a temporary
/// database on the server of `server_url` (created and dropped here); a
/// SQLite backup always into a temporary file.
pub async fn verify(
    archive: &Path,
    server_url: &str,
    admin: Option<&Db>,
    reporter: &Reporter,
) -> anyhow::Result<Verified> {
    let work = WorkDir::temp()?;
    let a = archive.to_path_buf();
    let manifest = blocking(move || read_manifest(&a)).await?;
    let image_name = if manifest.engine == "postgres" {
        PG_IMAGE
    } else {
        SQLITE_IMAGE
    };
    let image = work.join(image_name);
    reporter.say(format!(
        "checking the checksum of {} ({} backup of {}, schema version {})",
        archive.display(),
        manifest.engine,
        manifest.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        manifest.schema_version
    ));
    let (a, i, r) = (archive.to_path_buf(), image.clone(), reporter.clone());
    let manifest = blocking(move || unpack(&a, &i, &r)).await?;
    reporter.say(format!(
        "checksum ok (SHA-256 {})",
        &manifest.database.sha256
    ));
    let mut problems = Vec::new();
    let (audit, schema_version, row_counts) = match manifest.engine.as_str() {
        "sqlite" => {
            reporter.say("PRAGMA integrity_check and foreign_key_check");
            for p in store::backup::sqlite_integrity(&image, false).await? {
                problems.push(format!("integrity check: {p}"));
            }
            let db = Db::connect(&format!("sqlite://{}", image.display())).await?;
            let out = inspect(&db, reporter).await;
            db.close().await;
            out?
        }
        "postgres" => {
            if store::db::engine_of(server_url)? != Engine::Postgres {
                bail!(
                    "this is a PostgreSQL backup: verifying it restores it into a temporary \
                     database, so DATABASE_URL must name a PostgreSQL server"
                );
            }
            store::backup::find_tool("pg_restore")?;
            let owned;
            let admin = match admin {
                Some(a) => a,
                None => {
                    owned = Db::connect(server_url)
                        .await
                        .context("cannot connect to the PostgreSQL server named by DATABASE_URL")?;
                    &owned
                }
            };
            let (name, url) = store::backup::pg_create_scratch(admin, server_url).await?;
            reporter.say(format!("pg_restore into the scratch database {name}"));
            let result = async {
                store::backup::pg_restore(&url, &image, false).await?;
                let db = Db::connect(&url).await?;
                let out = inspect(&db, reporter).await;
                db.close().await;
                out
            }
            .await;
            if let Err(e) = store::backup::pg_drop_database(admin, &name).await {
                reporter.say(format!(
                    "WARNING: could not drop the scratch database {name}: {e}"
                ));
            }
            result?
        }
        other => bail!("unknown engine `{other}` in the manifest"),
    };
    problems.extend(compare(&manifest, &audit, schema_version, &row_counts));
    drop(work);
    Ok(Verified {
        manifest,
        problems,
        audit,
        schema_version,
        row_counts,
    })
}

async fn inspect(
    db: &Db,
    reporter: &Reporter,
) -> anyhow::Result<(VerifyReport, i64, BTreeMap<String, i64>)> {
    reporter.say("verifying the audit chain");
    let audit = store::audit::verify(db).await?;
    reporter.say("counting rows");
    let counts = store::backup::row_counts(db).await?;
    let version = store::migrate::current_version(db).await?;
    Ok((audit, version, counts))
}

// --------------------------------------------------------------- commands

async fn connect(url: &str) -> anyhow::Result<Db> {
    Db::connect(url)
        .await
        .context("cannot open the database named by DATABASE_URL")
}

/// `amal backup [--to FILE]` and `amal backup verify FILE`.
pub async fn backup_command(
    cfg: server::Config,
    action: Option<BackupAction>,
    to: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    match action {
        Some(BackupAction::Verify { file }) => verify_command(&cfg, &file).await,
        None => {
            if let Some(path) = store::backup::sqlite_path(&cfg.database_url) {
                if !path.exists() {
                    bail!("there is no database at {} to back up", path.display());
                }
            }
            let out = to.unwrap_or_else(|| cfg.backup.dir.join(default_file_name(Utc::now())));
            let db = connect(&cfg.database_url).await?;
            let reporter = Reporter::stderr("backup");
            let created = create(&db, &cfg.database_url, &out, &reporter).await;
            db.close().await;
            let c = created?;
            println!(
                "backup written: {} ({}) in {:.1}s",
                c.path.display(),
                human(c.bytes),
                c.elapsed.as_secs_f64()
            );
            println!(
                "  {} database, schema version {}, {} audit events, chain head {}",
                c.manifest.engine,
                c.manifest.schema_version,
                c.manifest.audit.events,
                c.manifest.audit.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn verify_command(cfg: &server::Config, file: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let reporter = Reporter::stderr("verify");
    match verify(file, &cfg.database_url, None, &reporter).await {
        Ok(v) if v.problems.is_empty() => {
            let rows: i64 = v.row_counts.values().sum();
            println!(
                "backup verified: {} ({} backup taken {}, release {}): integrity ok, schema \
                 version {}, audit chain intact ({} events, head {}), row counts match the \
                 manifest ({} rows in {} tables) in {:.1}s",
                file.display(),
                v.manifest.engine,
                v.manifest.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                v.manifest.release,
                v.schema_version,
                v.audit.events,
                v.audit.head_hash,
                rows,
                v.row_counts.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(v) => {
            eprintln!("backup verification FAILED for {}:", file.display());
            for p in &v.problems {
                eprintln!("  - {p}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("backup verification FAILED for {}:", file.display());
            eprintln!("  - {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `amal restore FILE [--force]`.
pub async fn restore_command(
    cfg: server::Config,
    file: &Path,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let reporter = Reporter::stderr("restore");
    let target_engine = store::db::engine_of(&cfg.database_url)?;
    let f = file.to_path_buf();
    let manifest = match blocking(move || read_manifest(&f)).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("restore refused: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if manifest.engine != engine_name(target_engine) {
        eprintln!(
            "restore refused: this is a {} backup and DATABASE_URL names a {} database; a \
             backup restores into the engine it was taken from",
            manifest.engine,
            engine_name(target_engine)
        );
        return Ok(ExitCode::FAILURE);
    }

    // 1. The checksum, before anything is touched.
    reporter.say(format!("checking the checksum of {}", file.display()));
    let work;
    let image = match target_engine {
        Engine::Sqlite => {
            let target = store::backup::sqlite_path(&cfg.database_url)
                .ok_or_else(|| anyhow!("DATABASE_URL must name a SQLite file to restore into"))?;
            let dir = match target.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            std::fs::create_dir_all(&dir)?;
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "amal.db".into());
            work = None;
            TempFile(dir.join(format!(".{name}.restore-{}", uuid::Uuid::new_v4().simple())))
        }
        Engine::Postgres => {
            store::backup::find_tool("pg_restore")?;
            let w = WorkDir::temp()?;
            let p = w.join(PG_IMAGE);
            work = Some(w);
            TempFile(p)
        }
    };
    let (a, i, r) = (file.to_path_buf(), image.0.clone(), reporter.clone());
    let manifest = match blocking(move || unpack(&a, &i, &r)).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("restore refused: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    reporter.say("checksum ok");

    // 2. Never overwrite data without --force.
    let sqlite_target = store::backup::sqlite_path(&cfg.database_url);
    let exists = sqlite_target.as_ref().map(|p| p.exists()).unwrap_or(true);
    if exists {
        let db = connect(&cfg.database_url).await?;
        let occ = store::backup::occupancy(&db).await;
        db.close().await;
        let occ = occ?;
        if !occ.is_empty() && !force {
            eprintln!(
                "restore refused: the target database is not empty ({occ}). Restoring replaces \
                 everything in it. Take a backup of it first (`amal backup`), then run \
                 `amal restore {} --force`.",
                file.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        if !occ.is_empty() {
            reporter.say(format!("--force: replacing a database holding {occ}"));
        }
    }

    // 3. Restore.
    match target_engine {
        Engine::Sqlite => {
            let target = sqlite_target.ok_or_else(|| anyhow!("no SQLite path"))?;
            reporter.say("PRAGMA quick_check on the restored image");
            let problems = store::backup::sqlite_integrity(&image.0, true).await?;
            if !problems.is_empty() {
                eprintln!(
                    "restore refused: the image fails its integrity check: {}",
                    problems.join("; ")
                );
                return Ok(ExitCode::FAILURE);
            }
            reporter.say(format!("replacing {}", target.display()));
            store::backup::sqlite_replace(&target, &image.0).await?;
        }
        Engine::Postgres => {
            reporter.say("pg_restore --clean --if-exists --no-owner --single-transaction");
            store::backup::pg_restore(&cfg.database_url, &image.0, true).await?;
        }
    }
    drop(image);
    drop(work);

    // 4. What is there now.
    let db = connect(&cfg.database_url).await?;
    let version = store::migrate::current_version(&db).await;
    let audit = store::audit::verify(&db).await;
    let counts = store::backup::row_counts(&db).await;
    let known = store::migrate::latest_known(&db);
    db.close().await;
    let (version, audit, counts) = (version?, audit?, counts?);
    println!(
        "restored {} ({} backup taken {}, release {}) in {:.1}s",
        file.display(),
        manifest.engine,
        manifest.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        manifest.release,
        started.elapsed().as_secs_f64()
    );
    println!("schema version {version} (this release knows up to {known})");
    if version > known {
        println!(
            "  the restored schema is NEWER than this release: run release {} (commit {}) to serve it",
            manifest.release, manifest.git_commit
        );
    } else if version < known {
        println!("  `amal serve` (or `amal migrate up`) will bring it to version {known}");
    }
    let problems = compare(&manifest, &audit, version, &counts);
    if audit.valid {
        println!(
            "audit chain intact: {} events, head {}",
            audit.events, audit.head_hash
        );
    } else {
        println!("audit chain BROKEN at {}", describe_break(&audit));
    }
    if problems.is_empty() {
        println!("row counts match the manifest");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("  - {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

// ------------------------------------------------------ scheduled backups

/// What `serve` runs every `AMAL_BACKUP_INTERVAL`.
pub struct ScheduledJob;

impl server::backup_schedule::BackupJob for ScheduledJob {
    fn create(
        &self,
        state: server::AppState,
        dir: PathBuf,
    ) -> BoxFuture<'static, anyhow::Result<(PathBuf, u64)>> {
        Box::pin(async move {
            let out = dir.join(default_file_name(Utc::now()));
            let c = create(
                &state.db,
                &state.config.database_url,
                &out,
                &Reporter::silent(),
            )
            .await?;
            Ok((c.path, c.bytes))
        })
    }

    fn verify(
        &self,
        state: server::AppState,
        archive: PathBuf,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let v = verify(
                &archive,
                &state.config.database_url,
                Some(&state.db),
                &Reporter::silent(),
            )
            .await?;
            if v.problems.is_empty() {
                Ok(())
            } else {
                bail!("{}", v.problems.join("; "))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_by_time() {
        let a = default_file_name("2026-01-02T03:04:05Z".parse().unwrap());
        assert_eq!(a, "amal-backup-20260102T030405Z.amalbak");
        let b = default_file_name("2026-01-02T03:04:06Z".parse().unwrap());
        assert!(a < b);
    }

    #[test]
    fn pack_and_unpack_round_trip_and_detect_a_flipped_byte() {
        let dir = WorkDir::temp().unwrap();
        let image = dir.join("img");
        let body: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        std::fs::write(&image, &body).unwrap();
        let (sha256, bytes) = sha256_file(&image).unwrap();
        let m = Manifest {
            format: FORMAT.into(),
            format_version: 1,
            engine: "sqlite".into(),
            created_at: Utc::now(),
            release: "t".into(),
            git_commit: "t".into(),
            schema_version: 2,
            row_counts: BTreeMap::new(),
            audit: AuditHead {
                events: 0,
                head_hash: store::audit::GENESIS.into(),
                valid: true,
            },
            database: ImageInfo {
                file: SQLITE_IMAGE.into(),
                kind: "sqlite".into(),
                bytes,
                sha256,
            },
        };
        let out = dir.join("a.amalbak");
        pack(&m, &image, &out, &Reporter::silent()).unwrap();
        let back = unpack(&out, &dir.join("back"), &Reporter::silent()).unwrap();
        assert_eq!(back, m);
        assert_eq!(std::fs::read(dir.join("back")).unwrap(), body);

        let mut raw = std::fs::read(&out).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0x01;
        let bad = dir.join("bad.amalbak");
        std::fs::write(&bad, raw).unwrap();
        let e = unpack(&bad, &dir.join("back2"), &Reporter::silent()).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
    }
}
