//! `amal backup`, `amal backup verify` and `amal restore`: what the operator
//! types and reads. The archive format, the checks and the restore itself
//! are the `backup` crate's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use backup::archive::{create, default_file_name, describe_break, verify};
use backup::progress::{human, Reporter};
use chrono::Utc;

use crate::cli::BackupAction;

/// `amal backup [--to FILE]` and `amal backup verify FILE`.
pub async fn backup_command(
    cfg: server::Config,
    action: Option<BackupAction>,
    to: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    match action {
        Some(BackupAction::Verify { file }) => verify_command(&cfg, &file).await,
        Some(BackupAction::Keygen { .. }) => unreachable!("handled without a configuration"),
        None => {
            if let Some(path) = store::backup::sqlite_path(&cfg.database_url) {
                if !path.exists() {
                    bail!("there is no database at {} to back up", path.display());
                }
            }
            let out = to.unwrap_or_else(|| cfg.backup.dir.join(default_file_name(Utc::now())));
            let db = crate::database::connect(&cfg).await?;
            let reporter = Reporter::stderr("backup");
            let keys = cfg.archive_keys();
            let created = create(&db, &cfg.database_url, &out, &keys, &reporter).await;
            let recorded = match &created {
                Ok(c) => backup::archive::record_backup(&db, c, &keys, "cli").await,
                Err(_) => Ok(()),
            };
            db.close().await;
            let c = created?;
            recorded?;
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
    match verify(
        file,
        &cfg.database_url,
        None,
        &cfg.archive_keys(),
        &reporter,
    )
    .await
    {
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

/// `amal restore FILE [--force]` (see `backup::restore`).
pub async fn restore_command(
    cfg: server::Config,
    file: &Path,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let reporter = Reporter::stderr("restore");
    let keys = cfg.archive_keys();
    let r = match backup::restore::restore(&cfg.database_url, file, force, &keys, &reporter).await?
    {
        Ok(r) => r,
        Err(refused) => {
            eprintln!(
                "restore refused: {:#}; the live database was not touched",
                refused.0
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(old) = &r.checkpoints_kept {
        println!(
            "the previous audit checkpoints are kept as {}",
            old.display()
        );
    }
    if let Some(w) = &r.checkpoint_warning {
        eprintln!("WARNING: could not write an audit checkpoint of the restored chain: {w}");
    }
    let (m, version, known) = (&r.manifest, r.schema_version, r.known_version);
    println!(
        "restored {} ({} backup taken {}, release {}) in {:.1}s",
        file.display(),
        m.engine,
        m.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        m.release,
        r.elapsed.as_secs_f64()
    );
    if let Some(k) = &r.kept {
        println!("the previous database is kept as {k} (remove it when no longer needed)");
    }
    println!("schema version {version} (this release knows up to {known})");
    if version > known {
        println!(
            "  the restored schema is NEWER than this release: run release {} (commit {}) to serve it",
            m.release, m.git_commit
        );
    } else if version < known {
        println!("  `amal serve` (or `amal migrate up`) will bring it to version {known}");
    }
    if r.audit.valid {
        println!(
            "audit chain intact: {} events, head {}",
            r.audit.events, r.audit.head_hash
        );
    } else {
        println!("audit chain BROKEN at {}", describe_break(&r.audit));
    }
    if r.problems.is_empty() {
        println!("row counts match the manifest");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &r.problems {
            eprintln!("  - {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}
