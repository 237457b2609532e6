//! Connecting to either engine, and transactions over both.
//!
//! Transactions are begun and ended by this module itself (not by sqlx's
//! transaction manager), so that a connection whose transaction state is
//! unknown — a failed COMMIT or ROLLBACK, SQLite having rolled back on its
//! own after "database or disk is full" — is closed instead of going back to
//! the pool. With SQLite's single writer connection, reusing such a
//! connection wedged every later write until a restart.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Pool;

/// Errors from the store. `Conflict` and `NotFound` are expected outcomes the
/// server maps to 409/404; `Unavailable` is a database fault the caller may
/// retry (503); `Database` is unexpected and becomes a generic 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    /// The database cannot serve the request right now (down, full,
    /// read-only, connection lost…). `detail` is for the log only.
    #[error("database unavailable ({kind}): {detail}")]
    Unavailable { kind: FaultKind, detail: String },
    /// An audit event could not be made durable, so the response it records
    /// must not be sent. `kind` is the database fault behind it, if known.
    #[error("audit trail unavailable ({kind})")]
    AuditUnavailable { kind: FaultKind },
    /// The SQLite file cannot be read: encrypted with another key (or none),
    /// or not a database at all (see [`crate::cipher`]).
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Database(sqlx::Error),
    #[error(transparent)]
    Migrate(sqlx::migrate::MigrateError),
}

impl StoreError {
    /// The fault kind when this error is a database fault (worth a retry).
    pub fn fault(&self) -> Option<FaultKind> {
        match self {
            StoreError::Unavailable { kind, .. } | StoreError::AuditUnavailable { kind } => {
                Some(*kind)
            }
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // A wrong or missing SQLCipher key, said plainly (any file: the live
        // database, a backup image).
        if crate::cipher::is_not_a_database(&e) {
            return StoreError::Unreadable(crate::cipher::unreadable_message());
        }
        match classify(&e) {
            Some(kind) => StoreError::Unavailable {
                kind,
                detail: e.to_string(),
            },
            None => StoreError::Database(e),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match &e {
            sqlx::migrate::MigrateError::Execute(inner)
            | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => match classify(inner) {
                Some(kind) => StoreError::Unavailable {
                    kind,
                    detail: e.to_string(),
                },
                None => StoreError::Migrate(e),
            },
            _ => StoreError::Migrate(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What kind of database fault stopped a request. Names are stable: they
/// appear in metrics (`db.fault.<kind>`), logs and `/api/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// SQLITE_FULL, PostgreSQL 53100: no space left for the database.
    DiskFull,
    /// SQLITE_READONLY, PostgreSQL 25006: the database refuses writes.
    ReadOnly,
    /// SQLITE_IOERR, PostgreSQL 58030: the storage failed a read or write.
    Io,
    /// SQLITE_CANTOPEN: the database file (or its -wal/-shm) cannot be opened.
    CantOpen,
    /// SQLITE_BUSY/LOCKED after the busy timeout: another process holds the lock.
    Busy,
    /// No connection within the acquire timeout, or a statement was cancelled.
    Timeout,
    /// The connection to the server failed or was lost (I/O, TLS, 08xxx).
    Connection,
    /// The server is shutting down or starting up (57P01, 57P02, 57P03).
    Shutdown,
    /// The server is out of memory, connections or similar (53xxx).
    Resources,
    /// The pool was closed (the server is stopping).
    Closed,
    /// The audit writer failed for a reason that is not a database fault.
    Audit,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::DiskFull => "disk_full",
            FaultKind::ReadOnly => "read_only",
            FaultKind::Io => "io",
            FaultKind::CantOpen => "cant_open",
            FaultKind::Busy => "busy",
            FaultKind::Timeout => "timeout",
            FaultKind::Connection => "connection",
            FaultKind::Shutdown => "shutdown",
            FaultKind::Resources => "resources",
            FaultKind::Closed => "closed",
            FaultKind::Audit => "audit",
        }
    }

    /// Every kind, for metrics that must exist from the start.
    pub const ALL: [FaultKind; 11] = [
        FaultKind::DiskFull,
        FaultKind::ReadOnly,
        FaultKind::Io,
        FaultKind::CantOpen,
        FaultKind::Busy,
        FaultKind::Timeout,
        FaultKind::Connection,
        FaultKind::Shutdown,
        FaultKind::Resources,
        FaultKind::Closed,
        FaultKind::Audit,
    ];
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classify `err` as a database fault (the database cannot serve now; the
/// request may be retried) or `None` (a bug or an expected outcome such as
/// a constraint violation).
pub fn classify(err: &sqlx::Error) -> Option<FaultKind> {
    match err {
        sqlx::Error::PoolTimedOut => Some(FaultKind::Timeout),
        sqlx::Error::PoolClosed => Some(FaultKind::Closed),
        sqlx::Error::WorkerCrashed => Some(FaultKind::Io),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => Some(FaultKind::Connection),
        sqlx::Error::Database(d) => {
            if let Some(s) = d.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                let code: i64 = s.code().and_then(|c| c.parse().ok())?;
                sqlite_fault(code)
            } else {
                let code = d.code()?;
                let code = code.as_ref();
                match code {
                    "57P01" | "57P02" | "57P03" => Some(FaultKind::Shutdown),
                    "53100" => Some(FaultKind::DiskFull),
                    "25006" => Some(FaultKind::ReadOnly),
                    "58030" => Some(FaultKind::Io),
                    "57014" => Some(FaultKind::Timeout),
                    c if c.starts_with("53") => Some(FaultKind::Resources),
                    c if c.starts_with("08") => Some(FaultKind::Connection),
                    _ => None,
                }
            }
        }
        _ => None,
    }
}

/// The fault a SQLite result code means, if it is one (sqlx's errors and
/// [`crate::fastread`]'s).
fn sqlite_fault(code: i64) -> Option<FaultKind> {
    // Extended result codes carry the primary code in the low byte.
    match code & 0xff {
        13 => Some(FaultKind::DiskFull),
        8 => Some(FaultKind::ReadOnly),
        10 => Some(FaultKind::Io),
        14 => Some(FaultKind::CantOpen),
        5 | 6 => Some(FaultKind::Busy),
        7 => Some(FaultKind::Resources),
        _ => None,
    }
}

/// A calling-thread read's failure, mapped as the same failure through
/// sqlx's read pool would be.
impl From<crate::fastread::Error> for StoreError {
    fn from(e: crate::fastread::Error) -> Self {
        use crate::fastread::Error as F;
        // SQLITE_NOTADB: a wrong or missing SQLCipher key.
        if e.sqlite_code()
            .is_some_and(crate::cipher::is_not_a_database_code)
        {
            return StoreError::Unreadable(crate::cipher::unreadable_message());
        }
        let code = e.sqlite_code().map(i64::from);
        match e {
            F::TimedOut => sqlx::Error::PoolTimedOut.into(),
            F::Closed => sqlx::Error::PoolClosed.into(),
            F::Decode(d) => StoreError::Database(d),
            F::Sqlite(s) => match code.and_then(sqlite_fault) {
                Some(kind) => StoreError::Unavailable {
                    kind,
                    detail: s.to_string(),
                },
                None => StoreError::Database(sqlx::Error::Protocol(format!("sqlite: {s}"))),
            },
        }
    }
}

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// SQLite: one writer connection (SQLite admits one writer at a time; a
/// single connection makes that queue explicit and fair) and a read pool.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub write: SqlitePool,
    pub read: SqlitePool,
    /// The same reads on the calling thread, for the hot point reads of
    /// every request ([`crate::fastread`]); `None` for an in-memory database.
    pub fast: Option<crate::fastread::FastRead>,
}

/// The live database.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// How to connect.
#[derive(Debug, Clone, Copy)]
pub struct DbOptions {
    /// How long a request waits for a pooled connection before it fails with
    /// [`FaultKind::Timeout`]. Short, so that with PostgreSQL down requests
    /// fail fast with 503 instead of hanging. SQLite's single writer queue
    /// waits at least [`SQLITE_BUSY_TIMEOUT`], as writers queue there by design.
    pub acquire_timeout: Duration,
}

/// Default for [`DbOptions::acquire_timeout`] (`AMAL_DB_ACQUIRE_TIMEOUT`).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long SQLite waits for a lock held by another process (a CLI command
/// or a backup beside the server).
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// The engines a [`Tx`] can run on; runs one statement on a pooled
/// connection (simple-query protocol on PostgreSQL: no statement to prepare).
pub trait TxDatabase: sqlx::Database {
    fn exec<'c>(
        conn: &'c mut PoolConnection<Self>,
        sql: &'static str,
    ) -> Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'c>>;
}

macro_rules! tx_database {
    ($db:ty) => {
        impl TxDatabase for $db {
            fn exec<'c>(
                conn: &'c mut PoolConnection<Self>,
                sql: &'static str,
            ) -> Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'c>> {
                Box::pin(async move { sqlx::Executor::execute(&mut **conn, sql).await.map(|_| ()) })
            }
        }
    };
}
tx_database!(Sqlite);
tx_database!(Postgres);

/// The longest a ROLLBACK may take before the connection is given up.
const ROLLBACK_LIMIT: Duration = Duration::from_secs(5);

/// A pooled connection inside a transaction this module began. It derefs
/// to the engine's connection for queries. Ending it:
/// - `commit`: on success the connection goes back to the pool; on failure
///   its state is unknown and it is closed;
/// - `rollback`, or dropping it uncommitted (an error returned with `?`, a
///   cancelled request): ROLLBACK is sent, and if that fails the connection
///   is closed, so the pool opens a fresh one instead of reusing a
///   connection in an unknown state.
pub struct TxConn<DB: TxDatabase> {
    conn: Option<PoolConnection<DB>>,
}

/// Close `conn` instead of returning it to the pool; the pool opens a new one.
fn discard<DB: TxDatabase>(conn: PoolConnection<DB>) {
    drop(conn.detach());
}

async fn rollback_or_close<DB: TxDatabase>(mut conn: PoolConnection<DB>) -> Result<()> {
    let outcome = tokio::time::timeout(ROLLBACK_LIMIT, DB::exec(&mut conn, "ROLLBACK")).await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "rollback failed; closing the connection");
            discard(conn);
            Err(e.into())
        }
        Err(_) => {
            tracing::warn!("rollback timed out; closing the connection");
            discard(conn);
            Err(sqlx::Error::PoolTimedOut.into())
        }
    }
}

impl<DB: TxDatabase> TxConn<DB> {
    async fn begin(pool: &Pool<DB>, begin_sql: &'static str) -> Result<TxConn<DB>> {
        let mut conn = pool.acquire().await?;
        if let Err(e) = DB::exec(&mut conn, begin_sql).await {
            // Whether a transaction is open now is not known: do not reuse.
            discard(conn);
            return Err(e.into());
        }
        Ok(TxConn { conn: Some(conn) })
    }

    async fn commit(mut self) -> Result<()> {
        let outcome = match self.conn.as_mut() {
            Some(c) => DB::exec(c, "COMMIT").await,
            None => return Ok(()),
        };
        // Taken only now: if this future is cancelled during COMMIT, Drop
        // still sees the connection and rolls back or closes it.
        let conn = self.conn.take();
        match (outcome, conn) {
            (Ok(()), _) => Ok(()),
            (Err(e), Some(conn)) => {
                // SQLite may have rolled back by itself (SQLITE_FULL, IOERR),
                // or the transaction may still be open: never reuse it.
                discard(conn);
                Err(e.into())
            }
            (Err(e), None) => Err(e.into()),
        }
    }

    async fn rollback(mut self) -> Result<()> {
        match self.conn.take() {
            Some(conn) => rollback_or_close(conn).await,
            None => Ok(()),
        }
    }
}

impl<DB: TxDatabase> Drop for TxConn<DB> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        let _ = rollback_or_close(conn).await;
                    });
                }
                // No runtime to roll back on: closing rolls back too.
                Err(_) => discard(conn),
            }
        }
    }
}

impl<DB: TxDatabase> Deref for TxConn<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        match &self.conn {
            Some(c) => c,
            None => unreachable!("a transaction's connection is taken only when it ends"),
        }
    }
}

impl<DB: TxDatabase> DerefMut for TxConn<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable!("a transaction's connection is taken only when it ends"),
        }
    }
}

/// An open transaction on either engine.
pub enum Tx {
    Sqlite(TxConn<Sqlite>),
    Postgres(TxConn<Postgres>),
}

impl Tx {
    /// Begin a transaction on `pool` with `begin_sql` (e.g. `BEGIN IMMEDIATE`).
    pub async fn begin_sqlite(pool: &SqlitePool, begin_sql: &'static str) -> Result<Tx> {
        Ok(Tx::Sqlite(TxConn::begin(pool, begin_sql).await?))
    }

    /// Begin a transaction on `pool` with `begin_sql` (e.g. a `BEGIN ISOLATION LEVEL …`).
    pub async fn begin_postgres(pool: &PgPool, begin_sql: &'static str) -> Result<Tx> {
        Ok(Tx::Postgres(TxConn::begin(pool, begin_sql).await?))
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }

    /// Roll back now (dropping does the same, off the caller's path).
    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await,
            Tx::Postgres(t) => t.rollback().await,
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Tx::Sqlite(_) => Engine::Sqlite,
            Tx::Postgres(_) => Engine::Postgres,
        }
    }
}

/// Classify a database URL without connecting: the scheme decides the engine.
pub fn engine_of(url: &str) -> Result<Engine> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("sqlite:") {
        Ok(Engine::Sqlite)
    } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Ok(Engine::Postgres)
    } else {
        let scheme = url.split(':').next().unwrap_or("").to_string();
        Err(StoreError::UnsupportedUrl(format!(
            "scheme `{scheme}` is not supported; use sqlite://PATH or postgres://…"
        )))
    }
}

/// A write that touches nothing of value: the health check's proof that the
/// database accepts and commits a write. The row is pruned with the stale
/// rate-limit windows (window 0 is always stale) and written again.
const HEARTBEAT_SQL: &str = "INSERT INTO rate_limit_counters (key, window_start, count) \
     VALUES ('amal:health:heartbeat', 0, 1) ON CONFLICT (key, window_start) \
     DO UPDATE SET count = rate_limit_counters.count + 1";

impl Db {
    /// Connect to `url` (`sqlite://PATH` or `postgres://…`) with the defaults.
    pub async fn connect(url: &str) -> Result<Db> {
        Db::connect_with(url, DbOptions::default()).await
    }

    /// Connect to `url` with `options`.
    pub async fn connect_with(url: &str, options: DbOptions) -> Result<Db> {
        match engine_of(url)? {
            Engine::Sqlite => {
                // A new database file is created owner-only (0600) by any
                // command, not only by `serve`; existing files keep their mode.
                if let Some(file) = sqlite_file(url).filter(|f| !f.exists()) {
                    if file
                        .parent()
                        .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir())
                    {
                        let _ = private_sqlite_files(&file);
                    }
                }
                let opts = crate::cipher::keyed(SqliteConnectOptions::from_str(url)?)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // FULL: an acknowledged write survives power loss.
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .pragma("temp_store", "memory");
                let write = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(options.acquire_timeout.max(SQLITE_BUSY_TIMEOUT))
                    .connect_with(opts.clone())
                    .await?;
                let readers = std::thread::available_parallelism()
                    .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX).saturating_mul(2))
                    .unwrap_or(4)
                    .max(4);
                let read = SqlitePoolOptions::new()
                    .max_connections(readers)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(opts.read_only(true))
                    .await?;
                let fast = sqlite_file(url).map(|file| {
                    let size = usize::try_from(readers).unwrap_or(usize::MAX);
                    crate::fastread::FastRead::new(
                        &file,
                        size,
                        options.acquire_timeout,
                        SQLITE_BUSY_TIMEOUT,
                    )
                });
                Ok(Db::Sqlite(SqliteDb { write, read, fast }))
            }
            Engine::Postgres => {
                let opts = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(20)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(opts)
                    .await?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Db::Sqlite(_) => Engine::Sqlite,
            Db::Postgres(_) => Engine::Postgres,
        }
    }

    /// Begin a write transaction. On SQLite it is `BEGIN IMMEDIATE`, which
    /// takes the write lock up front so that a second process (a CLI command
    /// beside the server) waits instead of failing half-way.
    pub async fn begin(&self) -> Result<Tx> {
        match self {
            Db::Sqlite(s) => Tx::begin_sqlite(&s.write, "BEGIN IMMEDIATE").await,
            Db::Postgres(p) => Tx::begin_postgres(p, "BEGIN").await,
        }
    }

    /// A database round-trip on the read path, for health checks.
    pub async fn ping(&self) -> Result<()> {
        crate::on_read!(self, c => sqlx::query("SELECT 1").execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Prove that the database accepts a write: a committed heartbeat
    /// through the write path (on SQLite the single writer connection, so a
    /// wedged writer, a read-only file or a read-only file system shows here).
    pub async fn check_write(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        crate::on_tx!(&mut tx, c => sqlx::Executor::execute(&mut *c, HEARTBEAT_SQL).await.map(|r| r.rows_affected()))?;
        tx.commit().await
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(s) => {
                if let Some(f) = &s.fast {
                    f.close();
                }
                close_settled(&s.read).await;
                close_settled(&s.write).await;
            }
            Db::Postgres(p) => close_settled(p).await,
        }
    }
}

/// Close `pool` once the connections just dropped are back in it. A
/// dropped connection is returned by a spawned task; sqlx's `close` can miss
/// one that reaches the idle queue after it looked, and that connection then
/// stays open (on SQLite its `-shm` stays locked, so a restore right after
/// finds the database "in use"). Waits at most 2 s for connections still
/// in use.
async fn close_settled<DB: sqlx::Database>(pool: &Pool<DB>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while pool.num_idle() < pool.size() as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pool.close().await;
}

/// True when `err` is a unique-constraint violation (both engines).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(d) => d.is_unique_violation(),
        _ => false,
    }
}

/// The database file a `sqlite:` URL names (`None` for an in-memory
/// database or a URL that does not parse).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let opts = SqliteConnectOptions::from_str(url).ok()?;
    // sqlx names in-memory databases `file:sqlx-in-memory-N`.
    let file = opts.get_filename();
    let s = file.to_string_lossy();
    (!s.is_empty() && !s.starts_with("file:") && s != ":memory:").then(|| file.to_path_buf())
}

/// Make the SQLite database file and its `-wal`/`-shm`/`-journal` files
/// readable by their owner only (mode 0600), creating the database file
/// empty when missing so SQLite never creates it with the umask's mode
/// (SQLite gives its side files the mode of the database file).
pub fn private_sqlite_files(db: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !db.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(db)?;
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let p = PathBuf::from(name);
            if let Ok(meta) = std::fs::metadata(&p) {
                if meta.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

/// A plain-words cause for a file-system error (the path is named by the caller).
pub fn io_cause(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(28) => "no space left on device (the disk is full)".into(),
        Some(30) => "read-only file system".into(),
        Some(13) | Some(1) => "permission denied".into(),
        Some(122) => "disk quota exceeded".into(),
        _ => e.to_string(),
    }
}

/// Whether files can be created and written in `dir`: writes, syncs and
/// removes a 64 KiB probe file (a database start needs at least that much).
pub fn check_dir_writable(dir: &Path) -> std::result::Result<(), String> {
    use std::io::Write;
    let probe = dir.join(format!(".amal-write-check-{}", std::process::id()));
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(&[0u8; 64 * 1024])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| io_cause(&e))
}

/// Before SQLite opens anything: the database's folder must exist (it is
/// created) and be writable, and the database file and its `-wal`/`-shm`
/// companions, where present, must open for writing. SQLite would
/// otherwise open a read-only file read-only — and create `-shm` with the
/// same read-only mode, which outlives a later fix of the permissions —
/// and only fail at the first write. The message names the path and cause.
pub fn preflight_sqlite(url: &str) -> std::result::Result<(), String> {
    let Some(file) = sqlite_file(url) else {
        return Ok(());
    };
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "cannot create the database folder {}: {}",
            dir.display(),
            io_cause(&e)
        )
    })?;
    check_dir_writable(&dir).map_err(|cause| {
        format!(
            "the database folder {} is not writable: {cause}",
            dir.display()
        )
    })?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = file.clone().into_os_string();
        name.push(suffix);
        let path = PathBuf::from(name);
        if let Ok(meta) = std::fs::metadata(&path) {
            if !may_write(&meta) {
                return Err(format!(
                    "the database file {} cannot be opened for writing: permission denied \
                     (mode {:o}; it must be writable by the user running amal)",
                    path.display(),
                    {
                        use std::os::unix::fs::PermissionsExt;
                        meta.permissions().mode() & 0o7777
                    }
                ));
            }
        }
    }
    Ok(())
}

/// Whether this process may write a file with `meta`, judged from its mode
/// and owner as access(2) would (ACLs aside). The file is deliberately not
/// opened: closing any descriptor of a SQLite database drops every POSIX
/// lock this process holds on it, which would break a connection already
/// open in the same process.
fn may_write(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((uid, gids)) = credentials() else {
        return true; // unknown: SQLite reports it at the first write
    };
    let mode = meta.mode();
    if uid == 0 {
        return true;
    }
    if meta.uid() == uid {
        mode & 0o200 != 0
    } else if gids.contains(&meta.gid()) {
        mode & 0o020 != 0
    } else {
        mode & 0o002 != 0
    }
}

/// The effective uid and the gids (effective and supplementary) of this
/// process, from `/proc/self/status` (Linux; `None` elsewhere).
fn credentials() -> Option<(u32, Vec<u32>)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<Vec<u32>> {
        let line = status.lines().find_map(|l| l.strip_prefix(name))?;
        Some(
            line.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect(),
        )
    };
    let uid = *field("Uid:")?.get(1)?;
    let mut gids = field("Groups:").unwrap_or_default();
    gids.push(*field("Gid:")?.get(1)?);
    Some((uid, gids))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_file_of_urls() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/amal/amal.db"),
            Some(PathBuf::from("/var/lib/amal/amal.db"))
        );
        assert_eq!(
            sqlite_file("sqlite://data/amal.db?mode=rwc"),
            Some(PathBuf::from("data/amal.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }

    #[test]
    fn io_causes_are_plain() {
        let full = std::io::Error::from_raw_os_error(28);
        assert!(io_cause(&full).contains("disk is full"));
        let ro = std::io::Error::from_raw_os_error(30);
        assert_eq!(io_cause(&ro), "read-only file system");
    }

    #[test]
    fn pool_errors_are_faults() {
        assert_eq!(
            classify(&sqlx::Error::PoolTimedOut),
            Some(FaultKind::Timeout)
        );
        assert_eq!(classify(&sqlx::Error::PoolClosed), Some(FaultKind::Closed));
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&sqlx::Error::Io(io)), Some(FaultKind::Connection));
        assert_eq!(classify(&sqlx::Error::RowNotFound), None);
        let e: StoreError = sqlx::Error::PoolTimedOut.into();
        assert_eq!(e.fault(), Some(FaultKind::Timeout));
    }

    async fn scratch() -> (PathBuf, Db) {
        let dir = std::env::temp_dir().join(format!("amal-db-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let db = Db::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        (dir, db)
    }

    async fn exec(db: &Db, sql: &str) -> Result<()> {
        let Db::Sqlite(s) = db else { return Ok(()) };
        sqlx::Executor::execute(&s.write, sql).await?;
        Ok(())
    }

    /// The wedge of the issue: SQLite ends the transaction itself (here
    /// with an explicit ROLLBACK inside it, as after SQLITE_FULL), so the
    /// ROLLBACK sent on drop fails. The writer must be replaced, not reused.
    #[tokio::test]
    async fn writer_recovers_after_sqlite_ended_the_transaction() {
        let (dir, db) = scratch().await;
        exec(&db, "CREATE TABLE t (x INTEGER)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            let mut tx = db.begin().await.unwrap_or_else(|e| panic!("begin: {e}"));
            crate::on_tx!(&mut tx, c => sqlx::Executor::execute(&mut *c, "ROLLBACK").await.map(|_| ()))
                .unwrap_or_else(|e| panic!("{e}"));
            // A COMMIT with no transaction open fails; the connection is closed.
            assert!(tx.commit().await.is_err());
            let mut tx = db
                .begin()
                .await
                .unwrap_or_else(|e| panic!("begin after a failed commit: {e}"));
            crate::on_tx!(&mut tx, c => sqlx::Executor::execute(&mut *c, "ROLLBACK").await.map(|_| ()))
                .unwrap_or_else(|e| panic!("{e}"));
            drop(tx);
            let mut tx = db
                .begin()
                .await
                .unwrap_or_else(|e| panic!("begin after a failed rollback: {e}"));
            crate::on_tx!(&mut tx, c => sqlx::Executor::execute(&mut *c, "INSERT INTO t VALUES (1)").await.map(|_| ()))
                .unwrap_or_else(|e| panic!("{e}"));
            tx.commit().await.unwrap_or_else(|e| panic!("commit: {e}"));
        }
        // Dropped uncommitted: rolled back, and the writer stays usable.
        let mut tx = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        crate::on_tx!(&mut tx, c => sqlx::Executor::execute(&mut *c, "INSERT INTO t VALUES (2)").await.map(|_| ()))
            .unwrap_or_else(|e| panic!("{e}"));
        drop(tx);
        let n: (i64,) = crate::on_write!(&db, c => sqlx::query_as("SELECT COUNT(*) FROM t WHERE x = 1").fetch_one(c).await)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.0, 3);
        let n: (i64,) = crate::on_write!(&db, c => sqlx::query_as("SELECT COUNT(*) FROM t WHERE x = 2").fetch_one(c).await)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.0, 0, "a dropped transaction is rolled back");
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn preflight_creates_the_database_folder() {
        let dir = std::env::temp_dir().join(format!("amal-pre-{}", uuid::Uuid::new_v4().simple()));
        let url = format!("sqlite://{}", dir.join("sub").join("a.db").display());
        assert_eq!(preflight_sqlite(&url), Ok(()), "creates the folder");
        assert!(dir.join("sub").is_dir());
        let _ = std::fs::remove_dir_all(dir);
    }
}
