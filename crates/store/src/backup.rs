//! Engine-level pieces of backup and restore: consistent snapshots, row
//! counts and the audit-chain head taken *inside* a snapshot, an emptiness
//! check for restore targets, a safe SQLite file swap, and the PostgreSQL
//! client tools (`pg_dump`, `pg_restore`) that dump and restore.
//!
//! The archive format itself (manifest, compression) lives in the `amal`
//! binary; everything here works on plain database images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::audit::{Anchors, ChainCheck, StoredEvent, VerifyReport, CHAIN_PAGE_SQL};
use crate::db::{Db, Result, StoreError, Tx};
use crate::pgurl::{LibpqTarget, PgUrl};
use crate::{on_read, on_tx};

/// What a snapshot holds: schema version, rows per table and the state of
/// the audit chain, all read from one consistent view of the database.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStats {
    pub schema_version: i64,
    pub row_counts: BTreeMap<String, i64>,
    pub audit: VerifyReport,
}

/// Begin a read-only transaction whose queries all see one snapshot.
/// SQLite: a deferred transaction on the read pool (WAL gives it a stable
/// view). PostgreSQL: `REPEATABLE READ, READ ONLY`, whose snapshot can be
/// exported to `pg_dump` with [`pg_export_snapshot`].
pub async fn begin_snapshot(db: &Db) -> Result<Tx> {
    match db {
        Db::Sqlite(s) => Tx::begin_sqlite(&s.read, "BEGIN").await,
        Db::Postgres(p) => {
            Tx::begin_postgres(p, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await
        }
    }
}

/// Export the snapshot of a PostgreSQL transaction opened by
/// [`begin_snapshot`] (for `pg_dump --snapshot`). Must be its first query.
pub async fn pg_export_snapshot(tx: &mut Tx) -> Result<String> {
    match tx {
        Tx::Postgres(t) => {
            let (id,): (String,) = sqlx::query_as("SELECT pg_export_snapshot()")
                .fetch_one(&mut **t)
                .await?;
            Ok(id)
        }
        Tx::Sqlite(_) => Err(StoreError::Conflict(
            "snapshots are exported on PostgreSQL only".into(),
        )),
    }
}

/// Double-quote an identifier read from the catalog.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tables of the database as seen by `tx`, sorted.
pub async fn tables_in(tx: &mut Tx) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = match tx {
        Tx::Sqlite(t) => {
            sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            )
            .fetch_all(&mut **t)
            .await?
        }
        Tx::Postgres(t) => {
            sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 ORDER BY 1",
            )
            .fetch_all(&mut **t)
            .await?
        }
    };
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Walk the audit chain inside `tx` with the same check as
/// [`crate::audit::verify`], so that the head belongs to the snapshot.
pub async fn verify_chain_in(tx: &mut Tx) -> Result<VerifyReport> {
    verify_chain_in_with(tx, Anchors::default()).await
}

/// [`verify_chain_in`], holding the chain to signed checkpoints.
pub async fn verify_chain_in_with(tx: &mut Tx, anchors: Anchors) -> Result<VerifyReport> {
    let mut check = ChainCheck::with_anchors(anchors);
    loop {
        let page: Vec<StoredEvent> = on_tx!(tx, c => sqlx::query_as(CHAIN_PAGE_SQL)
            .bind(check.after()).fetch_all(&mut *c).await)?;
        if !check.feed(page) {
            return Ok(check.report());
        }
    }
}

/// Rows per table, inside `tx`.
pub async fn row_counts_in(tx: &mut Tx, tables: &[String]) -> Result<BTreeMap<String, i64>> {
    let mut counts = BTreeMap::new();
    for t in tables {
        let sql = format!("SELECT count(*) FROM {}", quote_ident(t));
        let (n,): (i64,) = on_tx!(tx, c => sqlx::query_as(&sql).fetch_one(&mut *c).await)?;
        counts.insert(t.clone(), n);
    }
    Ok(counts)
}

/// Schema version, row counts and the audit chain, all inside `tx`.
pub async fn stats_in(tx: &mut Tx) -> Result<SnapshotStats> {
    let tables = tables_in(tx).await?;
    let row_counts = row_counts_in(tx, &tables).await?;
    let has = |name: &str| tables.iter().any(|t| t == name);
    let schema_version = if has("_sqlx_migrations") {
        let sql = "SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success";
        let (v,): (i64,) = on_tx!(tx, c => sqlx::query_as(sql).fetch_one(&mut *c).await)?;
        v
    } else {
        0
    };
    let audit = if has("audit_events") {
        verify_chain_in(tx).await?
    } else {
        VerifyReport::empty()
    };
    Ok(SnapshotStats {
        schema_version,
        row_counts,
        audit,
    })
}

/// Rows per table in one snapshot of `db` (without walking the audit chain).
pub async fn row_counts(db: &Db) -> Result<BTreeMap<String, i64>> {
    let mut tx = begin_snapshot(db).await?;
    let tables = tables_in(&mut tx).await?;
    let counts = row_counts_in(&mut tx, &tables).await;
    rollback(tx).await;
    counts
}

/// [`stats_in`] over a fresh snapshot of `db`.
pub async fn stats(db: &Db) -> Result<SnapshotStats> {
    let mut tx = begin_snapshot(db).await?;
    let s = stats_in(&mut tx).await?;
    rollback(tx).await;
    Ok(s)
}

async fn rollback(tx: Tx) {
    let _ = tx.rollback().await;
}

/// How much a restore target already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Occupancy {
    pub applied_migrations: i64,
    pub users: i64,
    pub patients: i64,
}

impl Occupancy {
    pub fn is_empty(&self) -> bool {
        self.applied_migrations == 0 && self.users == 0 && self.patients == 0
    }
}

impl std::fmt::Display for Occupancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} applied migration(s), {} user(s), {} patient(s)",
            self.applied_migrations, self.users, self.patients
        )
    }
}

/// Applied migrations, users and patients in `db` (tables that do not exist
/// count as empty).
pub async fn occupancy(db: &Db) -> Result<Occupancy> {
    let mut tx = begin_snapshot(db).await?;
    let tables = tables_in(&mut tx).await?;
    let wanted: Vec<String> = ["_sqlx_migrations", "users", "patients"]
        .iter()
        .filter(|t| tables.iter().any(|x| x == *t))
        .map(|t| t.to_string())
        .collect();
    let counts = row_counts_in(&mut tx, &wanted).await?;
    rollback(tx).await;
    let get = |t: &str| counts.get(t).copied().unwrap_or(0);
    Ok(Occupancy {
        applied_migrations: get("_sqlx_migrations"),
        users: get("users"),
        patients: get("patients"),
    })
}

/// The append-only guards of `audit_events` that `db` lacks (or has
/// disabled): a database image whose triggers were removed would accept
/// edits to its trail after a restore, so verification refuses it.
pub async fn missing_audit_guards(db: &Db) -> Result<Vec<String>> {
    let (sql, wanted): (&str, &[&str]) = match db.engine() {
        crate::Engine::Sqlite => (
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'",
            &["audit_events_no_update", "audit_events_no_delete"],
        ),
        crate::Engine::Postgres => (
            "SELECT tgname::text FROM pg_trigger \
             WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal AND tgenabled <> 'D'",
            &["audit_events_no_update", "audit_events_no_truncate"],
        ),
    };
    let present: Vec<(String,)> = on_read!(db, c => sqlx::query_as(sql).fetch_all(c).await)?;
    Ok(wanted
        .iter()
        .filter(|w| !present.iter().any(|(p,)| p == *w))
        .map(|w| w.to_string())
        .collect())
}

// ---------------------------------------------------------------- SQLite

/// The file behind a `sqlite://PATH[?…]` URL (`None` for other engines and
/// in-memory databases).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Write a consistent copy of the live SQLite database to `dest` with
/// `VACUUM INTO`, through the read pool: it runs inside one read
/// transaction (a WAL snapshot), never takes the write lock, and writers
/// carry on while it runs. `dest` must not exist.
pub async fn sqlite_snapshot(db: &Db, dest: &Path) -> Result<()> {
    let Db::Sqlite(s) = db else {
        return Err(StoreError::Conflict(
            "VACUUM INTO is for SQLite databases".into(),
        ));
    };
    let dest = dest.to_string_lossy().into_owned();
    sqlx::query("VACUUM INTO $1")
        .bind(dest)
        .execute(&s.read)
        .await?;
    Ok(())
}

/// A one-connection pool on a SQLite file that is not the live database
/// (a snapshot image or a scratch copy). Nothing here changes the journal
/// mode, so merely reading leaves the file byte-for-byte as it was.
pub async fn open_sqlite_file(path: &Path) -> Result<SqlitePool> {
    let opts = crate::cipher::keyed(SqliteConnectOptions::new())
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(10));
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?)
}

/// [`stats_in`] over a SQLite image file.
pub async fn sqlite_file_stats(path: &Path) -> Result<SnapshotStats> {
    let pool = open_sqlite_file(path).await?;
    let mut tx = Tx::begin_sqlite(&pool, "BEGIN").await?;
    let s = stats_in(&mut tx).await;
    rollback(tx).await;
    pool.close().await;
    s
}

/// `PRAGMA integrity_check` (or `quick_check`) and `PRAGMA
/// foreign_key_check` on a SQLite file; the problems found, empty when
/// the file is sound.
pub async fn sqlite_integrity(path: &Path, quick: bool) -> Result<Vec<String>> {
    let pool = open_sqlite_file(path).await?;
    let pragma = if quick {
        "PRAGMA quick_check"
    } else {
        "PRAGMA integrity_check"
    };
    let rows: Vec<(String,)> = sqlx::query_as(pragma).fetch_all(&pool).await?;
    let mut problems: Vec<String> = rows
        .into_iter()
        .map(|r| r.0)
        .filter(|r| r != "ok")
        .collect();
    let fk: Vec<(String, Option<i64>, String)> =
        sqlx::query_as("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check")
            .fetch_all(&pool)
            .await?;
    for (table, rowid, parent) in fk.into_iter().take(20) {
        problems.push(format!(
            "foreign key violation: {table} row {} points at a missing {parent} row",
            rowid.unwrap_or_default()
        ));
    }
    pool.close().await;
    Ok(problems)
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Make sure nothing else has `target` open, and fold its WAL into the main
/// file, by switching it out of WAL mode: SQLite allows that only to the
/// sole connection, and does not wait for others.
async fn sqlite_take_exclusive(target: &Path) -> anyhow::Result<()> {
    let opts = crate::cipher::keyed(SqliteConnectOptions::new())
        .filename(target)
        .create_if_missing(false)
        .busy_timeout(Duration::from_millis(500));
    let mut conn = {
        use sqlx::ConnectOptions;
        opts.connect()
            .await
            .context("cannot open the database to be replaced")?
    };
    let in_use = || {
        anyhow!(
            "the database {} is in use by another process; stop `amal serve` (and any other \
             `amal` command using it) before restoring",
            target.display()
        )
    };
    let mode: (String,) = sqlx::query_as("PRAGMA journal_mode = DELETE")
        .fetch_one(&mut conn)
        .await
        .map_err(|_| in_use())?;
    let locked = sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut conn)
        .await
        .is_err();
    let _ = sqlx::query("COMMIT").execute(&mut conn).await;
    {
        use sqlx::Connection;
        let _ = conn.close().await;
    }
    if !mode.0.eq_ignore_ascii_case("delete") || locked {
        return Err(in_use());
    }
    Ok(())
}

/// Replace the SQLite database at `target` with `image` (a file in the same
/// directory): refuse when another process has the database open, keep the
/// old database as `aside` (a hard link, so no copy and no moment without a
/// database at `target`) when given, fsync the image, rename it over the
/// target (atomic), remove stale `-wal`, `-shm` and `-journal` files, and
/// fsync the directory.
pub async fn sqlite_replace(
    target: &Path,
    image: &Path,
    aside: Option<&Path>,
) -> anyhow::Result<()> {
    if image.parent() != target.parent() {
        bail!("the replacement image must sit next to the database it replaces");
    }
    if target.exists() {
        // Also folds the WAL into the main file, so the kept copy is whole.
        sqlite_take_exclusive(target).await?;
        // The restored file keeps the permissions of the one it replaces.
        if let Ok(meta) = std::fs::metadata(target) {
            let _ = std::fs::set_permissions(image, meta.permissions());
        }
        if let Some(aside) = aside {
            std::fs::hard_link(target, aside).with_context(|| {
                format!("cannot keep the previous database as {}", aside.display())
            })?;
        }
    }
    // Never more open than owner-only (a new database is created 0600).
    crate::db::private_sqlite_files(image)?;
    let image = image.to_path_buf();
    let target = target.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&image)?
            .sync_all()?;
        std::fs::rename(&image, &target).with_context(|| {
            format!(
                "cannot move the restored database into {}",
                target.display()
            )
        })?;
        for suffix in ["-wal", "-shm", "-journal"] {
            let p = sidecar(&target, suffix);
            if p.exists() {
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot remove the stale {}", p.display()))?;
            }
        }
        if let Some(dir) = target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            sync_dir(dir)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| anyhow!("restore task failed: {e}"))?
}

// ------------------------------------------------------------ PostgreSQL

/// The full path of `tool` on PATH, or an error naming it and the Debian
/// package that provides it.
pub fn find_tool(tool: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "`{tool}` was not found on PATH; install the PostgreSQL client tools \
         (Debian/Ubuntu package `postgresql-client`, the same major version as the \
         server or newer)"
    )
}

/// The URL for a libpq tool (see [`crate::pgurl::PgUrl::libpq_target`]).
pub fn libpq_target(url: &str) -> LibpqTarget {
    match PgUrl::parse(url) {
        Some(u) => u.libpq_target(),
        None => LibpqTarget {
            url: url.to_string(),
            password: None,
        },
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    PgUrl::parse(url)
        .map(|u| u.with_database(name))
        .unwrap_or_else(|| url.to_string())
}

async fn run_tool(tool: &str, args: &[String], target: &LibpqTarget) -> anyhow::Result<()> {
    let program = find_tool(tool)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(pw) = &target.password {
        cmd.env("PGPASSWORD", pw);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("cannot run `{tool}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n  ");
        bail!("`{tool}` failed ({}):\n  {tail}", out.status);
    }
    Ok(())
}

/// `pg_dump --format=custom` of the database at `url` into `out`
/// (uncompressed: the archive compresses it), inside `snapshot` when given.
pub async fn pg_dump(url: &str, snapshot: Option<&str>, out: &Path) -> anyhow::Result<()> {
    let target = libpq_target(url);
    let mut args = vec![
        "--format=custom".to_string(),
        "--compress=0".to_string(),
        "--no-password".to_string(),
        format!("--file={}", out.display()),
    ];
    if let Some(s) = snapshot {
        args.push(format!("--snapshot={s}"));
    }
    args.push(format!("--dbname={}", target.url));
    run_tool("pg_dump", &args, &target).await
}

/// `pg_restore` of a custom-format dump into the database at `url`, in one
/// transaction. With `clean`, objects in the dump are dropped first
/// (`--clean --if-exists`). Ownership and grants are not restored
/// (`--no-owner --no-acl`): the restoring role owns everything.
pub async fn pg_restore(url: &str, dump: &Path, clean: bool) -> anyhow::Result<()> {
    let target = libpq_target(url);
    let mut args = vec![
        "--no-owner".to_string(),
        "--no-acl".to_string(),
        "--single-transaction".to_string(),
        "--exit-on-error".to_string(),
        "--no-password".to_string(),
    ];
    if clean {
        args.push("--clean".into());
        args.push("--if-exists".into());
    }
    args.push(format!("--dbname={}", target.url));
    args.push(dump.display().to_string());
    run_tool("pg_restore", &args, &target).await
}

/// Create an empty scratch database on the server of `db` (its owner is the
/// connecting role); returns its name and URL.
pub async fn pg_create_scratch(db: &Db, url: &str) -> anyhow::Result<(String, String)> {
    let Db::Postgres(p) = db else {
        bail!("a scratch PostgreSQL database needs a PostgreSQL server");
    };
    let name = format!("amal_verify_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(p)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot create a scratch database to restore into (the role needs the \
                 CREATEDB privilege): {e}"
            )
        })?;
    Ok((name.clone(), with_database(url, &name)))
}

/// Put the verified scratch database `scratch` in the place of the
/// database named by `url`, keeping the previous one under the name
/// `aside` (or dropping it when `drop_previous`, for an empty target).
/// Both renames need that nobody else is connected (stop `amal serve`).
pub async fn pg_swap_in(
    url: &str,
    scratch: &str,
    aside: &str,
    drop_previous: bool,
) -> anyhow::Result<String> {
    let live = PgUrl::parse(url)
        .map(|u| u.database())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow!("DATABASE_URL names no database to restore into"))?;
    let ident = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
    let in_use = |e: sqlx::Error| {
        anyhow!(
            "cannot swap the restored database in ({e}); stop `amal serve` and any other \
             client of {live}, then run the restore again"
        )
    };
    // Rename the live database from inside the scratch one, then the
    // scratch one from inside the renamed one (a database cannot be renamed
    // by a session connected to it), then drop the old one if asked.
    let steps = [
        (
            scratch.to_string(),
            format!("ALTER DATABASE {} RENAME TO {}", ident(&live), ident(aside)),
        ),
        (
            aside.to_string(),
            format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(scratch),
                ident(&live)
            ),
        ),
    ];
    let drop = (live.clone(), format!("DROP DATABASE {}", ident(aside)));
    for (i, (on, sql)) in steps
        .iter()
        .chain(drop_previous.then_some(&drop))
        .enumerate()
    {
        if let Err(e) = pg_exec_when_free(&with_database(url, on), sql).await {
            if i == 1 {
                // Put the live database back under its name.
                let back = format!("ALTER DATABASE {} RENAME TO {}", ident(aside), ident(&live));
                let _ = pg_exec_when_free(&with_database(url, scratch), &back).await;
            }
            return Err(in_use(e));
        }
    }
    Ok(live)
}

/// Run `sql` on a new connection to `url`, retrying for up to 5 s while
/// PostgreSQL reports the database in use (sessions that were just closed
/// take a moment to end; `DROP DATABASE` waits so itself, a rename does not).
async fn pg_exec_when_free(url: &str, sql: &str) -> std::result::Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut tries = 0;
    loop {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let r = sqlx::query(sql).execute(&mut conn).await.map(|_| ());
        let _ = conn.close().await;
        match r {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55006") && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Drop a scratch database made by [`pg_create_scratch`].
pub async fn pg_drop_database(db: &Db, name: &str) -> anyhow::Result<()> {
    let Db::Postgres(p) = db else {
        return Ok(());
    };
    if !name.starts_with("amal_verify_")
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("refusing to drop a database that is not a scratch copy");
    }
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(p)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/a/amal.db?mode=rwc"),
            Some(PathBuf::from("/tmp/a/amal.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://amal-data/amal.db"),
            Some(PathBuf::from("amal-data/amal.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }
}
