//! Restoring an archive in place of the live database: authenticate it,
//! restore it into a scratch copy and check everything there; only then put
//! it in place, keeping the previous database aside. A refusal at any step
//! leaves the live database as it was.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chrono::Utc;
use store::audit::VerifyReport;
use store::{Db, Engine};

use crate::archive::{
    blocking, compare, engine_name, read_manifest, restore_and_check, with_suffix, ArchiveKeys,
    Manifest, TempFile, Verified, WorkDir, PG_IMAGE,
};
use crate::progress::Reporter;

/// Why nothing was restored; the live database was not touched.
#[derive(Debug)]
pub struct Refused(pub anyhow::Error);

/// What a finished restore put in place.
pub struct Restored {
    pub manifest: Manifest,
    /// The previous database, kept aside (a file or a database name).
    pub kept: Option<String>,
    /// The previous audit checkpoints, moved aside.
    pub checkpoints_kept: Option<PathBuf>,
    /// Schema version of the restored database, and the newest this
    /// release knows.
    pub schema_version: i64,
    pub known_version: i64,
    pub audit: VerifyReport,
    /// What differs from the manifest now that it is live (empty when good).
    pub problems: Vec<String>,
    /// A checkpoint of the restored chain could not be written.
    pub checkpoint_warning: Option<String>,
    pub elapsed: Duration,
}

async fn connect(url: &str) -> anyhow::Result<Db> {
    Db::connect(url)
        .await
        .context("cannot open the database named by DATABASE_URL")
}

/// Restore `file` into the database of `database_url`. An occupied target
/// is replaced only with `force`.
pub async fn restore(
    database_url: &str,
    file: &Path,
    force: bool,
    keys: &ArchiveKeys,
    reporter: &Reporter,
) -> anyhow::Result<Result<Restored, Refused>> {
    let started = Instant::now();
    let target_engine = store::db::engine_of(database_url)?;
    let (f, k) = (file.to_path_buf(), keys.clone());
    let manifest = match blocking(move || read_manifest(&f, &k)).await {
        Ok(m) => m,
        Err(e) => return Ok(Err(Refused(e))),
    };
    if manifest.engine != engine_name(target_engine) {
        return Ok(Err(Refused(anyhow!(
            "this is a {} backup and DATABASE_URL names a {} database; a backup restores into \
             the engine it was taken from",
            manifest.engine,
            engine_name(target_engine)
        ))));
    }

    // 1. Never overwrite data without --force.
    let sqlite_target = store::backup::sqlite_path(database_url);
    let exists = sqlite_target.as_ref().map(|p| p.exists()).unwrap_or(true);
    let mut occupied = false;
    if exists {
        let db = connect(database_url).await?;
        let occ = store::backup::occupancy(&db).await;
        db.close().await;
        let occ = occ?;
        occupied = !occ.is_empty();
        if occupied && !force {
            return Ok(Err(Refused(anyhow!(
                "the target database is not empty ({occ}). Restoring replaces everything in it \
                 (the previous database is kept aside). Take a backup of it first (`amal \
                 backup`), then run `amal restore {} --force`",
                file.display()
            ))));
        }
        if occupied {
            reporter.say(format!(
                "--force: replacing a database holding {occ} (kept aside)"
            ));
        }
    }
    let stamp = Utc::now().format("%Y%m%d%H%M%S").to_string();

    // 2. Restore into a scratch copy and check it; 3. swap it in.
    let job = Swap {
        file,
        database_url,
        occupied,
        stamp: &stamp,
        keys,
        reporter,
    };
    let swapped = match target_engine {
        Engine::Sqlite => {
            let target = sqlite_target
                .ok_or_else(|| anyhow!("DATABASE_URL must name a SQLite file to restore into"))?;
            swap_in_sqlite(&target, &job).await?
        }
        Engine::Postgres => swap_in_postgres(&job).await?,
    };
    let kept = match swapped {
        Ok(kept) => kept,
        Err(refused) => return Ok(Err(refused)),
    };

    // The checkpoints of the replaced chain no longer describe the live
    // one: keep them aside and start again at the restored head.
    let ckpt = store::checkpoint::file_in(&keys.checkpoint_dir);
    let checkpoints_kept = if ckpt.exists() {
        let old = with_suffix(&ckpt, &format!(".before-restore-{stamp}"));
        std::fs::rename(&ckpt, &old)
            .with_context(|| format!("cannot move {} aside", ckpt.display()))?;
        Some(old)
    } else {
        None
    };

    // 4. What is there now.
    let db = connect(database_url).await?;
    let version = store::migrate::current_version(&db).await;
    let audit = store::audit::verify_with(&db, keys.anchors_for(&manifest)).await;
    let counts = store::backup::row_counts(&db).await;
    let known_version = store::migrate::latest_known(&db);
    let (schema_version, audit, counts) = (version?, audit?, counts?);
    let problems = compare(&manifest, &audit, schema_version, &counts);
    let mut checkpoint_warning = None;
    if problems.is_empty() {
        // The restored trail records the restore, and a checkpoint of it
        // starts the new checkpoint file.
        let detail = serde_json::json!({
            "via": "cli",
            "file": file.file_name().map(|n| n.to_string_lossy().into_owned()),
            "backupCreatedAt": manifest.created_at,
            "auditEvents": manifest.audit.events,
            "previousKeptAs": kept,
        });
        store::audit::record_operation(
            &db,
            domain::audit::AuditAction::BackupRestore,
            "success",
            detail,
        )
        .await?;
        if let Err(e) = store::checkpoint::take(&db, &keys.signing.0, &keys.checkpoint_dir).await {
            checkpoint_warning = Some(format!("{e:#}"));
        }
    }
    db.close().await;
    Ok(Ok(Restored {
        manifest,
        kept,
        checkpoints_kept,
        schema_version,
        known_version,
        audit,
        problems,
        checkpoint_warning,
        elapsed: started.elapsed(),
    }))
}

/// A checked copy to put in place of the live database.
struct Swap<'a> {
    file: &'a Path,
    database_url: &'a str,
    /// The live database holds data: keep it aside.
    occupied: bool,
    stamp: &'a str,
    keys: &'a ArchiveKeys,
    reporter: &'a Reporter,
}

/// A restored copy that did not verify is a refusal; one that did hands back
/// the PostgreSQL scratch database's name (`None` for SQLite).
fn verified(
    checked: anyhow::Result<(Verified, Option<String>)>,
) -> Result<Option<String>, Refused> {
    let (v, scratch) = checked.map_err(Refused)?;
    if v.problems.is_empty() {
        Ok(scratch)
    } else {
        Err(Refused(anyhow!(
            "the backup does not verify: {}",
            v.problems.join("; ")
        )))
    }
}

/// Check the backup in a scratch file beside `target`, then rename it over
/// `target` (the previous file kept aside when occupied).
async fn swap_in_sqlite(
    target: &Path,
    j: &Swap<'_>,
) -> anyhow::Result<Result<Option<String>, Refused>> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "amal.db".into());
    let image = TempFile(dir.join(format!(".{name}.restore-{}", uuid::Uuid::new_v4().simple())));
    let checked =
        restore_and_check(j.file, &image.0, j.database_url, None, j.keys, j.reporter).await;
    if let Err(refused) = verified(checked) {
        return Ok(Err(refused));
    }
    let aside = j
        .occupied
        .then(|| dir.join(format!("{name}.before-restore-{}", j.stamp)));
    j.reporter.say(format!("replacing {}", target.display()));
    store::backup::sqlite_replace(target, &image.0, aside.as_deref()).await?;
    Ok(Ok(aside.map(|p| p.display().to_string())))
}

/// Check the backup in a scratch database on the same server, then swap it
/// in by renaming (the previous database kept aside when occupied).
async fn swap_in_postgres(j: &Swap<'_>) -> anyhow::Result<Result<Option<String>, Refused>> {
    let (database_url, reporter) = (j.database_url, j.reporter);
    let admin = connect(database_url).await?;
    let work = WorkDir::temp()?;
    let checked = restore_and_check(
        j.file,
        &work.join(PG_IMAGE),
        database_url,
        Some(&admin),
        j.keys,
        reporter,
    )
    .await;
    admin.close().await;
    drop(work);
    let scratch = match verified(checked) {
        Ok(s) => s.ok_or_else(|| anyhow!("no scratch database"))?,
        Err(refused) => return Ok(Err(refused)),
    };
    let live = store::pgurl::PgUrl::parse(database_url)
        .map(|u| u.database())
        .unwrap_or_default();
    // PostgreSQL names are at most 63 bytes; the stamp must survive.
    let aside = format!(
        "{}_pre{}",
        live.chars().take(44).collect::<String>(),
        j.stamp
    );
    reporter.say(format!("swapping the checked copy {scratch} in for {live}"));
    if let Err(e) = store::backup::pg_swap_in(database_url, &scratch, &aside, !j.occupied).await {
        if let Ok(db) = Db::connect(database_url).await {
            let _ = store::backup::pg_drop_database(&db, &scratch).await;
            db.close().await;
        }
        return Ok(Err(Refused(e)));
    }
    Ok(Ok(j.occupied.then_some(aside)))
}
