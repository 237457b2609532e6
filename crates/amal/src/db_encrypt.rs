//! `amal db encrypt`: turn the plaintext SQLite database into a SQLCipher
//! one with the configured key (docs/ops/ENCRYPTION_AT_REST.md).
//!
//! With the server stopped: an encrypted copy is written next to the
//! database (`<db>.encrypting`) with `sqlcipher_export`, checked (it opens
//! with the key, same tables and row counts, `quick_check` ok), and swapped
//! in by rename; the plaintext original is kept aside as
//! `<db>.plaintext-<UTC time>` for the operator to delete once the server
//! runs on the encrypted file. A failure leaves the original in place.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

pub async fn run(cfg: server::Config) -> anyhow::Result<ExitCode> {
    let Some(db) = store::db::sqlite_file(&cfg.database_url) else {
        bail!("`amal db encrypt` is for a SQLite database file; DATABASE_URL names another engine");
    };
    let Some(key) = cfg.db_key.clone() else {
        bail!("set AMAL_DB_KEY or AMAL_DB_KEY_FILE to the new key first (see docs/ops/ENCRYPTION_AT_REST.md)");
    };
    if !db.exists() {
        bail!(
            "{} does not exist; a new database is created encrypted when the server starts with the key",
            db.display()
        );
    }
    let out = sibling(&db, ".encrypting");
    if out.exists() {
        // Left by an interrupted run: never the live database.
        std::fs::remove_file(&out)
            .with_context(|| format!("cannot remove the stale {}", out.display()))?;
    }
    let done = match store::encrypt::encrypt_file(&db, &out, &key).await {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&out);
            bail!("cannot encrypt {}: {e}", db.display());
        }
    };
    store::db::private_sqlite_files(&out)?;
    let aside = sibling(
        &db,
        &format!(".plaintext-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
    );
    std::fs::rename(&db, &aside)
        .with_context(|| format!("cannot move the original to {}", aside.display()))?;
    std::fs::rename(&out, &db).with_context(|| {
        format!(
            "cannot move the encrypted copy into place; the original is at {}",
            aside.display()
        )
    })?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        store::backup::sync_dir(dir)?;
    }
    println!(
        "encrypted {} ({} tables, {} rows) with SQLCipher",
        db.display(),
        done.tables,
        done.rows
    );
    println!(
        "the plaintext original is at {}: start the server with the key, check it, then delete the original (e.g. `shred -u`); backups made before now are still plaintext",
        aside.display()
    );
    Ok(ExitCode::SUCCESS)
}
