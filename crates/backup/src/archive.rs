//! The archive format (see the crate documentation): writing an archive
//! from a live database, reading and authenticating it, and checking a
//! restored copy against its manifest.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::audit::VerifyReport;
use store::{Db, Engine};

use crate::progress::{human, Reporter, Watch};

/// `manifest.format`.
pub const FORMAT: &str = "amal-backup";
/// `manifest.formatVersion` written by this release (and the newest it reads).
pub const FORMAT_VERSION: u32 = 2;
/// What the manifest signature covers: this label, then the manifest's
/// JSON without its `signature`.
const SIGNATURE_LABEL: &[u8] = b"amal-backup-manifest-v2\n";
const MANIFEST: &str = "manifest.json";
pub(crate) const SQLITE_IMAGE: &str = "database.sqlite";
pub(crate) const PG_IMAGE: &str = "database.pgdump";
/// Level 6 is gzip's default: a good ratio at tens of MB/s.
const GZIP_LEVEL: u32 = 6;
/// Byte progress (every 10 %) is shown for images at least this large.
const PROGRESS_MIN_BYTES: u64 = 4 << 20;

/// File names of archives: `amal-backup-<UTC timestamp>.amalbak`.
pub const ARCHIVE_PREFIX: &str = "amal-backup-";
pub const ARCHIVE_SUFFIX: &str = ".amalbak";
/// An archive that did not verify is renamed with this suffix and kept for
/// inspection (at most `keep` of them).
pub const FAILED_SUFFIX: &str = ".amalbak.failed";
/// An archive being written.
pub const PARTIAL_SUFFIX: &str = ".amalbak.partial";

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
    /// Ed25519 signature over the rest of the manifest (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ManifestSignature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSignature {
    /// Id of the checkpoint signing key (`store::checkpoint::key_id`).
    pub key_id: String,
    /// Base64 signature.
    pub value: String,
}

/// What seals, signs and opens archives on this installation.
#[derive(Clone)]
pub struct ArchiveKeys {
    /// Encryption (`AMAL_BACKUP_KEY_FILE`, `AMAL_BACKUP_PASSPHRASE`).
    pub backup: crate::keys::BackupKeys,
    /// The audit checkpoint key: signs manifests, and verifies them.
    pub signing: store::checkpoint::CheckpointKey,
    /// Signed checkpoints of this installation: those at or before a
    /// backup's head must agree with the restored chain.
    pub checkpoint_dir: PathBuf,
}

impl ArchiveKeys {
    /// The label, then the manifest as a JSON value without `signature`
    /// (a value, so that any reader of the JSON gets the same bytes).
    fn signed_bytes(m: &Manifest) -> anyhow::Result<Vec<u8>> {
        let mut unsigned = serde_json::to_value(m)?;
        if let Some(o) = unsigned.as_object_mut() {
            o.remove("signature");
        }
        let mut bytes = SIGNATURE_LABEL.to_vec();
        bytes.extend(serde_json::to_vec(&unsigned)?);
        Ok(bytes)
    }

    /// Sign `m` in place.
    fn sign(&self, m: &mut Manifest) -> anyhow::Result<()> {
        let key = &self.signing.0;
        let bytes = Self::signed_bytes(m)?;
        m.signature = Some(ManifestSignature {
            key_id: store::checkpoint::key_id(&key.verifying_key()),
            value: store::checkpoint::sign_base64(key, &bytes),
        });
        Ok(())
    }

    /// Refuse a manifest that this installation did not sign as it is.
    fn authenticate(&self, m: &Manifest) -> anyhow::Result<()> {
        let key = self.signing.0.verifying_key();
        let ours = store::checkpoint::key_id(&key);
        let Some(sig) = &m.signature else {
            bail!(
                "the backup is not signed (format version {}), so nothing proves it was not \
                 altered; this release restores signed backups only",
                m.format_version
            );
        };
        if sig.key_id != ours {
            bail!(
                "the backup was signed with checkpoint key {} but this installation's \
                 AMAL_AUDIT_SIGNING_KEY_FILE is key {ours}: configure the key of the \
                 installation that wrote it",
                sig.key_id
            );
        }
        if !store::checkpoint::verify_base64(&key, &Self::signed_bytes(m)?, &sig.value) {
            bail!(
                "the backup's signature does not verify: its manifest (and so the database \
                 image or audit head it describes) was altered after it was written"
            );
        }
        Ok(())
    }

    /// What the restored chain must match: the signed head of the backup,
    /// and this installation's checkpoints taken before the backup (so a
    /// backup whose trail was cut short after a checkpoint is caught even
    /// when its manifest was re-signed).
    pub(crate) fn anchors_for(&self, m: &Manifest) -> store::audit::Anchors {
        let key = self.signing.0.verifying_key();
        let mut ours = store::checkpoint::read_all(&self.checkpoint_dir).unwrap_or_default();
        ours.retain(|c| c.at <= m.created_at);
        let mut a = store::checkpoint::anchors(&ours, &key);
        if m.audit.events > 0 {
            if let Some(h) = a.heads.get(&m.audit.events) {
                if *h != m.audit.head_hash {
                    a.problems.push(format!(
                        "the backup's audit head differs from this installation's signed \
                         checkpoint at sequence {}",
                        m.audit.events
                    ));
                }
            }
            a.heads.insert(m.audit.events, m.audit.head_hash.clone());
        }
        a
    }
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

pub fn engine_name(e: Engine) -> &'static str {
    match e {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    }
}

/// `amal-backup-<UTC timestamp>.amalbak`.
pub fn default_file_name(at: DateTime<Utc>) -> String {
    format!(
        "{}{}{}",
        ARCHIVE_PREFIX,
        at.format("%Y%m%dT%H%M%SZ"),
        ARCHIVE_SUFFIX
    )
}

/// Create `dir` (and parents); on Unix the folder is private to the owner.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

// ------------------------------------------------------------ temp files

/// A folder removed (with its contents) when dropped.
pub(crate) struct WorkDir(PathBuf);

impl WorkDir {
    pub(crate) fn new_in(parent: &Path) -> anyhow::Result<WorkDir> {
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

    pub(crate) fn temp() -> anyhow::Result<WorkDir> {
        WorkDir::new_in(&std::env::temp_dir())
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file removed when dropped unless it was moved away.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
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
fn pack(
    manifest: &Manifest,
    image: &Path,
    out: &Path,
    keys: &ArchiveKeys,
    reporter: &Reporter,
) -> anyhow::Result<u64> {
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
    let sealed = keys
        .backup
        .seal_writer(std::io::BufWriter::with_capacity(1 << 20, file))?;
    let gz = flate2::write::GzEncoder::new(sealed, flate2::Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(gz);
    let mtime = manifest.created_at.timestamp().max(0) as u64;
    let mut manifest = manifest.clone();
    keys.sign(&mut manifest)?;
    let manifest = &manifest;
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
    let buffered = gz.finish()?.finish()?;
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

type ArchiveStream = flate2::read::GzDecoder<Box<dyn Read + Send>>;
type Entries<'a> = tar::Entries<'a, ArchiveStream>;

/// Open an archive: an age file is decrypted with the configured backup key
/// (each chunk authenticated as it is read), a plain gzip stream read as is.
fn open_archive(path: &Path, keys: &ArchiveKeys) -> anyhow::Result<tar::Archive<ArchiveStream>> {
    use std::io::BufRead;
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open the backup {}", path.display()))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let encrypted = r
        .fill_buf()
        .with_context(|| format!("cannot read the backup {}", path.display()))?
        .starts_with(crate::keys::AGE_MAGIC);
    let inner: Box<dyn Read + Send> = if encrypted {
        keys.backup
            .open_reader(r)
            .map_err(|m| anyhow!("the backup cannot be opened: {m}"))?
    } else {
        Box::new(r)
    };
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(inner)))
}

/// The path of a tar entry, as text.
fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> anyhow::Result<String> {
    Ok(entry
        .path()
        .map_err(corrupt)?
        .to_string_lossy()
        .into_owned())
}

/// Read the manifest entry and authenticate it (before anything else of
/// the archive is used).
fn next_manifest(entries: &mut Entries<'_>, keys: &ArchiveKeys) -> anyhow::Result<Manifest> {
    let mut entry = entries
        .next()
        .ok_or_else(|| corrupt("no manifest"))?
        .map_err(corrupt)?;
    let name = entry_name(&entry)?;
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
    keys.authenticate(&m)?;
    Ok(m)
}

/// Read only the (authenticated) manifest of an archive.
pub fn read_manifest(path: &Path, keys: &ArchiveKeys) -> anyhow::Result<Manifest> {
    let mut ar = open_archive(path, keys)?;
    let mut entries = ar.entries().map_err(corrupt)?;
    next_manifest(&mut entries, keys)
}

/// Extract the database image of `archive` to `dest`, checking its SHA-256
/// and size against the manifest and the gzip CRC of the whole stream.
fn unpack(
    archive: &Path,
    dest: &Path,
    keys: &ArchiveKeys,
    reporter: &Reporter,
) -> anyhow::Result<Manifest> {
    let mut ar = open_archive(archive, keys)?;
    let manifest = {
        let mut entries = ar.entries().map_err(corrupt)?;
        let manifest = next_manifest(&mut entries, keys)?;
        let mut entry = entries
            .next()
            .ok_or_else(|| corrupt("the database image is missing"))?
            .map_err(corrupt)?;
        let name = entry_name(&entry)?;
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

pub(crate) async fn blocking<T: Send + 'static>(
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
    keys: &ArchiveKeys,
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
    create_private_dir(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
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
        release: telemetry::build::release().into(),
        git_commit: telemetry::build::git_commit().into(),
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
        signature: None,
    };
    let (m, out_path, k, rep) = (
        manifest.clone(),
        out.to_path_buf(),
        keys.clone(),
        reporter.clone(),
    );
    reporter.say(match keys.backup.mode() {
        "unencrypted" => "WARNING: the archive is NOT encrypted (set AMAL_BACKUP_KEY_FILE; \
                          required in production); it is signed"
            .to_string(),
        mode => format!("encrypting ({mode}) and signing the archive"),
    });
    let archive_bytes = blocking(move || pack(&m, &image, &out_path, &k, &rep)).await?;
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

/// Audit a written backup (the event lands in the live database, after
/// the snapshot, so the archive itself does not hold it).
pub async fn record_backup(
    db: &Db,
    c: &Created,
    keys: &ArchiveKeys,
    via: &str,
) -> anyhow::Result<()> {
    let detail = serde_json::json!({
        "via": via,
        "file": c.path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "bytes": c.bytes,
        "encryption": keys.backup.mode(),
        "auditEvents": c.manifest.audit.events,
    });
    store::audit::record_operation(
        db,
        domain::audit::AuditAction::BackupCreate,
        "success",
        detail,
    )
    .await
}

/// Where and why a chain breaks: "event … (sequence …): reason; n events
/// before it verify".
pub fn describe_break(audit: &VerifyReport) -> String {
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
pub(crate) fn compare(
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

/// Extract `archive` into `image` (authenticated, checksummed), restore it
/// where it can be checked — the image file itself for SQLite, a new scratch
/// database on the server of `server_url` for PostgreSQL — and check it:
/// integrity (`PRAGMA integrity_check` and `foreign_key_check` for SQLite; a
/// clean `pg_restore`, which re-validates every constraint, for PostgreSQL),
/// the audit chain against the backup's signed head and this installation's
/// checkpoints, the audit table's append-only guards, the schema version and
/// the row counts against the manifest. When everything holds, the name of
/// the PostgreSQL scratch database is handed back (the caller drops it or
/// swaps it in); otherwise it is dropped here.
pub(crate) async fn restore_and_check(
    archive: &Path,
    image: &Path,
    server_url: &str,
    admin: Option<&Db>,
    keys: &ArchiveKeys,
    reporter: &Reporter,
) -> anyhow::Result<(Verified, Option<String>)> {
    let (a, i, k, r) = (
        archive.to_path_buf(),
        image.to_path_buf(),
        keys.clone(),
        reporter.clone(),
    );
    let manifest = blocking(move || unpack(&a, &i, &k, &r)).await?;
    reporter.say(format!(
        "signature and checksum ok (SHA-256 {})",
        &manifest.database.sha256
    ));
    let anchors = keys.anchors_for(&manifest);
    let mut problems = Vec::new();
    let (found, scratch) = match manifest.engine.as_str() {
        "sqlite" => {
            reporter.say("PRAGMA integrity_check and foreign_key_check");
            for p in store::backup::sqlite_integrity(image, false).await? {
                problems.push(format!("integrity check: {p}"));
            }
            let db = Db::connect(&format!("sqlite://{}", image.display())).await?;
            let out = inspect(&db, anchors, reporter).await;
            db.close().await;
            (out?, None)
        }
        "postgres" => {
            let admin = admin.ok_or_else(|| anyhow!("a PostgreSQL check needs the server"))?;
            store::backup::find_tool("pg_restore")?;
            let (name, url) = store::backup::pg_create_scratch(admin, server_url).await?;
            reporter.say(format!("pg_restore into the scratch database {name}"));
            let result = async {
                store::backup::pg_restore(&url, image, false).await?;
                let db = Db::connect(&url).await?;
                let out = inspect(&db, anchors, reporter).await;
                db.close().await;
                out
            }
            .await;
            match result {
                Ok(found) => (found, Some(name)),
                Err(e) => {
                    drop_scratch(admin, &name, reporter).await;
                    return Err(e);
                }
            }
        }
        other => bail!("unknown engine `{other}` in the manifest"),
    };
    problems.extend(found.problems);
    problems.extend(compare(
        &manifest,
        &found.audit,
        found.schema_version,
        &found.row_counts,
    ));
    let scratch = match (scratch, admin) {
        (Some(name), Some(admin)) if !problems.is_empty() => {
            drop_scratch(admin, &name, reporter).await;
            None
        }
        (s, _) => s,
    };
    Ok((
        Verified {
            manifest,
            problems,
            audit: found.audit,
            schema_version: found.schema_version,
            row_counts: found.row_counts,
        },
        scratch,
    ))
}

async fn drop_scratch(admin: &Db, name: &str, reporter: &Reporter) {
    if let Err(e) = store::backup::pg_drop_database(admin, name).await {
        reporter.say(format!(
            "WARNING: could not drop the scratch database {name}: {e}"
        ));
    }
}

/// A connection to the PostgreSQL server of `url` when the backup is a
/// PostgreSQL one (`None` for SQLite).
async fn pg_admin(engine: &str, url: &str) -> anyhow::Result<Option<Db>> {
    if engine != "postgres" {
        return Ok(None);
    }
    if store::db::engine_of(url)? != Engine::Postgres {
        bail!(
            "this is a PostgreSQL backup: checking it restores it into a scratch database, so \
             DATABASE_URL must name a PostgreSQL server"
        );
    }
    Ok(Some(Db::connect(url).await.context(
        "cannot connect to the PostgreSQL server named by DATABASE_URL",
    )?))
}

/// Check `archive` by restoring it into a scratch copy that is then thrown
/// away (see [`restore_and_check`]). A SQLite backup is restored into a
/// temporary file, a PostgreSQL one into a temporary database on the server
/// of `server_url` (`admin`, when given, is a connection to it).
pub async fn verify(
    archive: &Path,
    server_url: &str,
    admin: Option<&Db>,
    keys: &ArchiveKeys,
    reporter: &Reporter,
) -> anyhow::Result<Verified> {
    let work = WorkDir::temp()?;
    let (a, k) = (archive.to_path_buf(), keys.clone());
    let manifest = blocking(move || read_manifest(&a, &k)).await?;
    let image = work.join(if manifest.engine == "postgres" {
        PG_IMAGE
    } else {
        SQLITE_IMAGE
    });
    reporter.say(format!(
        "checking {} ({} backup of {}, schema version {})",
        archive.display(),
        manifest.engine,
        manifest.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        manifest.schema_version
    ));
    let owned = match admin {
        Some(_) => None,
        None => pg_admin(&manifest.engine, server_url).await?,
    };
    let admin = admin.or(owned.as_ref());
    let result = restore_and_check(archive, &image, server_url, admin, keys, reporter).await;
    if let (Ok((_, Some(name))), Some(admin)) = (&result, admin) {
        drop_scratch(admin, name, reporter).await;
    }
    if let Some(db) = owned {
        db.close().await;
    }
    drop(work);
    Ok(result?.0)
}

/// What a restored copy holds.
struct Found {
    audit: VerifyReport,
    schema_version: i64,
    row_counts: BTreeMap<String, i64>,
    /// Missing append-only guards, and checkpoint problems.
    problems: Vec<String>,
}

async fn inspect(
    db: &Db,
    anchors: store::audit::Anchors,
    reporter: &Reporter,
) -> anyhow::Result<Found> {
    reporter.say("verifying the audit chain against the backup's signed head");
    let audit = store::audit::verify_with(db, anchors).await?;
    let mut problems = Vec::new();
    let missing = store::backup::missing_audit_guards(db).await?;
    if !missing.is_empty() {
        problems.push(format!(
            "the audit table lacks its append-only triggers ({}): the trail could be edited \
             after a restore",
            missing.join(", ")
        ));
    }
    reporter.say("counting rows");
    let row_counts = store::backup::row_counts(db).await?;
    let schema_version = store::migrate::current_version(db).await?;
    Ok(Found {
        audit,
        schema_version,
        row_counts,
        problems,
    })
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

    /// Archive keys with a fresh signing key and, with `encrypted`, a fresh
    /// age key file.
    fn keys(encrypted: bool) -> ArchiveKeys {
        let dir = WorkDir::temp().unwrap();
        let key_file = dir.join("backup.key");
        let (id, _) = crate::keys::generate();
        use secrecy::ExposeSecret;
        std::fs::write(&key_file, id.expose_secret()).unwrap();
        let backup = crate::keys::BackupKeys::resolve(
            encrypted.then_some(key_file.as_path()),
            None,
            None,
            false,
            &mut |s, m| panic!("{s}: {m}"),
        );
        let signing =
            store::checkpoint::parse_signing_key(&store::checkpoint::generate_signing_key())
                .unwrap();
        std::mem::forget(dir);
        ArchiveKeys {
            backup,
            signing: store::checkpoint::CheckpointKey(std::sync::Arc::new(signing)),
            checkpoint_dir: PathBuf::from("/nonexistent"),
        }
    }

    fn manifest_of(image: &Path) -> Manifest {
        let (sha256, bytes) = sha256_file(image).unwrap();
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
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
            signature: None,
        }
    }

    #[test]
    fn pack_and_unpack_round_trip_and_detect_a_flipped_byte() {
        for encrypted in [false, true] {
            let dir = WorkDir::temp().unwrap();
            let image = dir.join("img");
            let body: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
            std::fs::write(&image, &body).unwrap();
            let m = manifest_of(&image);
            let k = keys(encrypted);
            let out = dir.join("a.amalbak");
            pack(&m, &image, &out, &k, &Reporter::silent()).unwrap();
            let raw = std::fs::read(&out).unwrap();
            assert_eq!(
                raw.starts_with(crate::keys::AGE_MAGIC),
                encrypted,
                "encrypted exactly when a key is set"
            );
            let back = unpack(&out, &dir.join("back"), &k, &Reporter::silent()).unwrap();
            assert_eq!(back.signature.as_ref().map(|s| s.key_id.len()), Some(16));
            assert_eq!(
                Manifest {
                    signature: None,
                    ..back
                },
                m
            );
            assert_eq!(std::fs::read(dir.join("back")).unwrap(), body);

            let mut flipped = raw.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0x01;
            let bad = dir.join("bad.amalbak");
            std::fs::write(&bad, flipped).unwrap();
            let e = unpack(&bad, &dir.join("back2"), &k, &Reporter::silent()).unwrap_err();
            assert!(e.to_string().contains("corrupt"), "{e}");

            // Another installation's keys open nothing of it.
            let other = keys(encrypted);
            let e = unpack(&out, &dir.join("back3"), &other, &Reporter::silent()).unwrap_err();
            let msg = format!("{e:#}");
            assert!(
                msg.contains("wrong key") || msg.contains("signed with checkpoint key"),
                "{msg}"
            );
        }
    }
}
