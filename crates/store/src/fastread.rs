//! SQLite point reads on the calling thread (the hot path of every
//! authenticated request): a small pool of read-only rusqlite connections
//! to the same file as the sqlx read pool, used synchronously on the tokio
//! worker that runs the request.
//!
//! Why: sqlx's SQLite driver runs each connection on a worker thread of its
//! own and sends every statement there and its rows back over channels. For
//! a read of one row by primary key (tens of microseconds in SQLite) the
//! two thread hand-offs cost far more than the query: on a 2-core machine
//! most of the CPU of the audited patient read (benchmark W1) went to the
//! kernel waking and switching threads. Here the statement runs where the
//! request runs. See docs/ARCHITECTURE.md (Decisions) for what uses it.
//!
//! Same behaviour as the sqlx read pool, by construction:
//! - connections are opened `SQLITE_OPEN_READ_ONLY | NOMUTEX | PRIVATECACHE`
//!   (as sqlx opens its read pool), with the SQLCipher key first when the
//!   process has one ([`crate::cipher::key_pragma`], the statement sqlx
//!   sends) and the same busy timeout;
//! - values are bound and decoded as sqlx 0.8 stores them in SQLite:
//!   a `Uuid` is a 16-byte BLOB, a `DateTime<Utc>` is RFC 3339 text with
//!   `+00:00` and as many fraction digits as needed ([`time_text`]);
//!   `$N` parameters are matched to arguments by number, as sqlx does;
//! - errors map as [`StoreError::from`] maps sqlx's: SQLITE_NOTADB is
//!   [`StoreError::Unreadable`], busy/locked/full/io/readonly/cantopen are
//!   [`StoreError::Unavailable`] with the same [`FaultKind`], no connection
//!   within the acquire timeout is [`FaultKind::Timeout`], a closed pool
//!   [`FaultKind::Closed`];
//! - a connection on which a statement failed is dropped (the next read
//!   opens a fresh one); no read transaction stays open between reads (the
//!   statement is reset when its row has been read), so every read sees
//!   every write committed before it (WAL).
//!
//! The pool is bounded (the size of the sqlx read pool). A read holds a
//! connection only while it runs, without awaiting, so at most one
//! connection per thread is in use and a cancelled request cannot leak one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, SecondsFormat, TimeZone, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Why a read failed; `StoreError::from` maps it as it maps sqlx's errors
/// (`crate::db`: this module sits below it).
#[derive(Debug)]
pub enum Error {
    /// SQLite answered with an error (opening, preparing, binding, stepping).
    Sqlite(rusqlite::Error),
    /// A column did not decode into the row's type, or a parameter name is
    /// not `$N`/`?N` (what sqlx reports for the same).
    Decode(sqlx::Error),
    /// No connection within the acquire timeout.
    TimedOut,
    /// The pool was closed.
    Closed,
}

impl Error {
    /// SQLite's extended result code, when SQLite answered.
    pub fn sqlite_code(&self) -> Option<i32> {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => Some(f.extended_code),
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Sqlite(e) => write!(f, "sqlite: {e}"),
            Error::Decode(e) => e.fmt(f),
            Error::TimedOut => f.write_str("no read connection within the acquire timeout"),
            Error::Closed => f.write_str("the read pool is closed"),
        }
    }
}

/// A value bound to a `$N` parameter, encoded as sqlx encodes it.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Uuid(Uuid),
    Time(DateTime<Utc>),
    Text(&'a str),
    Int(i64),
}

/// The read-only connection pool. Cheap to clone (shared).
#[derive(Clone)]
pub struct FastRead {
    inner: Arc<Inner>,
}

struct Inner {
    file: PathBuf,
    busy_timeout: Duration,
    /// `PRAGMA key = …;` when the process had a key at connect time (as
    /// sqlx's options capture it); never printed.
    key: Option<String>,
    acquire_timeout: Duration,
    /// One permit per connection the pool may have open.
    permits: Semaphore,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for FastRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastRead")
            .field("file", &self.inner.file)
            .field("available", &self.inner.permits.available_permits())
            .finish()
    }
}

impl FastRead {
    /// A pool of at most `size` connections to `file`, keyed with the
    /// process's SQLCipher key if it has one; none is opened yet.
    pub fn new(file: &Path, size: usize, acquire: Duration, busy: Duration) -> FastRead {
        FastRead::keyed(file, size, acquire, busy, crate::cipher::key_pragma())
    }

    fn keyed(
        file: &Path,
        size: usize,
        acquire_timeout: Duration,
        busy_timeout: Duration,
        key: Option<String>,
    ) -> FastRead {
        FastRead {
            inner: Arc::new(Inner {
                file: file.to_path_buf(),
                busy_timeout,
                key,
                acquire_timeout,
                permits: Semaphore::new(size.max(1)),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Run `sql` with `args` and map its first row, `None` when there is none.
    pub async fn query_row<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        map: impl FnOnce(&Row<'_>) -> Result<T, sqlx::Error>,
    ) -> Result<Option<T>, Error> {
        let inner = &*self.inner;
        let _permit = match inner.permits.try_acquire() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Error::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match tokio::time::timeout(inner.acquire_timeout, inner.permits.acquire()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(Error::Closed),
                    Err(_) => return Err(Error::TimedOut),
                }
            }
        };
        // From here on nothing awaits: the connection is back (or dropped)
        // before this future can be cancelled.
        let idle = inner.lock_idle().pop();
        let conn = match idle {
            Some(c) => c,
            None => open(&inner.file, inner.busy_timeout, inner.key.as_deref())
                .map_err(Error::Sqlite)?,
        };
        let outcome = run(&conn, sql, args, map);
        match &outcome {
            // A failed statement may leave the connection in any state.
            Err(Error::Sqlite(_)) => drop(conn),
            _ if inner.permits.is_closed() => drop(conn),
            _ => inner.lock_idle().push(conn),
        }
        outcome
    }

    /// Close every idle connection and refuse new reads ([`FaultKind::Closed`]);
    /// a read running now drops its connection when it ends.
    pub fn close(&self) {
        self.inner.permits.close();
        self.inner.lock_idle().clear();
    }
}

impl Inner {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Open a read-only connection as sqlx opens its read pool's: the key
/// first, before anything else reads the file.
fn open(file: &Path, busy: Duration, key: Option<&str>) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(file, flags)?;
    if let Some(key) = key {
        conn.execute_batch(key)?;
    }
    conn.busy_timeout(busy)?;
    Ok(conn)
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

fn run<T>(
    conn: &Connection,
    sql: &str,
    args: &[Arg<'_>],
    map: impl FnOnce(&Row<'_>) -> Result<T, sqlx::Error>,
) -> Result<Option<T>, Error> {
    let mut stmt = conn.prepare_cached(sql)?;
    // sqlx's binding: `$N`/`?N` takes argument N, an anonymous `?` the next
    // one; parameters past the arguments stay NULL.
    let mut next = 0usize;
    for param in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(param) {
            Some(name) => name
                .strip_prefix('$')
                .or_else(|| name.strip_prefix('?'))
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::Decode(sqlx::Error::Protocol(format!(
                        "unsupported SQL parameter format: {name}"
                    )))
                })?,
            None => {
                next += 1;
                next
            }
        };
        let Some(arg) = n.checked_sub(1).and_then(|i| args.get(i)) else {
            break;
        };
        match *arg {
            Arg::Uuid(u) => stmt.raw_bind_parameter(param, &u.as_bytes()[..])?,
            Arg::Time(t) => stmt.raw_bind_parameter(param, time_text(t))?,
            Arg::Text(s) => stmt.raw_bind_parameter(param, s)?,
            Arg::Int(i) => stmt.raw_bind_parameter(param, i)?,
        }
    }
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(row) => map(&Row(row)).map(Some).map_err(Error::Decode),
        None => Ok(None),
    }
    // `rows` is dropped here: the statement is reset, which ends its read
    // transaction.
}

/// A `DateTime<Utc>` as sqlx 0.8 writes it to SQLite:
/// `to_rfc3339_opts(SecondsFormat::AutoSi, false)`, e.g.
/// `2024-05-01T10:20:30.123456+00:00`.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A `DateTime<Utc>` from a SQLite value, as sqlx 0.8 decodes it: RFC 3339
/// or one of SQLite's date-time texts (naive ones are UTC), Unix seconds
/// for an integer, a Julian day number for a real.
pub fn decode_time(v: ValueRef<'_>) -> Option<DateTime<Utc>> {
    let fixed = match v {
        ValueRef::Text(b) => time_from_text(std::str::from_utf8(b).ok()?),
        ValueRef::Integer(i) => Utc.fix().timestamp_opt(i, 0).single(),
        ValueRef::Real(f) => {
            let secs = (f - 2_440_587.5) * 86_400.0;
            if !secs.is_finite() {
                return None;
            }
            let nanos = (secs.fract() * 1e9).abs();
            // As sqlx does; the range is checked by `timestamp_opt`.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let (s, n) = (secs.trunc() as i64, nanos as u32);
            Utc.fix().timestamp_opt(s, n).single()
        }
        _ => None,
    }?;
    Some(Utc.from_utc_datetime(&fixed.naive_utc()))
}

fn time_from_text(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    const FORMATS: [&str; 12] = [
        "%F %T%.f",
        "%F %R",
        "%F %RZ",
        "%F %R%:z",
        "%F %T%.fZ",
        "%F %T%.f%:z",
        "%FT%R",
        "%FT%RZ",
        "%FT%R%:z",
        "%FT%T%.f",
        "%FT%T%.fZ",
        "%FT%T%.f%:z",
    ];
    FORMATS.iter().find_map(|f| {
        DateTime::parse_from_str(s, f).ok().or_else(|| {
            NaiveDateTime::parse_from_str(s, f)
                .ok()
                .map(|n| Utc.fix().from_utc_datetime(&n))
        })
    })
}

/// A result row; columns are read by name, as sqlx's `FromRow` does.
pub struct Row<'r>(&'r rusqlite::Row<'r>);

fn decode_error(col: &str, msg: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: format!("{col:?}"),
        source: msg.into(),
    }
}

impl Row<'_> {
    fn value(&self, col: &str) -> Result<ValueRef<'_>, sqlx::Error> {
        self.0
            .get_ref(col)
            .map_err(|_| sqlx::Error::ColumnNotFound(col.to_string()))
    }

    fn required<T>(
        &self,
        col: &str,
        decode: impl FnOnce(ValueRef<'_>) -> Option<T>,
    ) -> Result<T, sqlx::Error> {
        self.optional(col, decode)?
            .ok_or_else(|| decode_error(col, "unexpected null".into()))
    }

    fn optional<T>(
        &self,
        col: &str,
        decode: impl FnOnce(ValueRef<'_>) -> Option<T>,
    ) -> Result<Option<T>, sqlx::Error> {
        let v = self.value(col)?;
        if v == ValueRef::Null {
            return Ok(None);
        }
        let kind = v.data_type();
        decode(v)
            .map(Some)
            .ok_or_else(|| decode_error(col, format!("cannot decode a {kind} value")))
    }

    pub fn uuid(&self, col: &str) -> Result<Uuid, sqlx::Error> {
        self.required(col, decode_uuid)
    }

    pub fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>, sqlx::Error> {
        self.optional(col, decode_uuid)
    }

    pub fn time(&self, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        self.required(col, decode_time)
    }

    pub fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.optional(col, decode_time)
    }

    pub fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.required(col, decode_text)
    }

    pub fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.optional(col, decode_text)
    }

    pub fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.required(col, |v| match v {
            ValueRef::Integer(i) => Some(i),
            _ => None,
        })
    }

    /// A text column through `T: TryFrom<String>` (`#[sqlx(try_from = "String")]`).
    pub fn parsed<T>(&self, col: &str) -> Result<T, sqlx::Error>
    where
        T: TryFrom<String>,
        T::Error: std::error::Error + Send + Sync + 'static,
    {
        T::try_from(self.text(col)?).map_err(|e| sqlx::Error::ColumnDecode {
            index: format!("{col:?}"),
            source: Box::new(e),
        })
    }
}

/// sqlx: `Uuid::from_slice` of the value's bytes.
fn decode_uuid(v: ValueRef<'_>) -> Option<Uuid> {
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => Uuid::from_slice(b).ok(),
        _ => None,
    }
}

fn decode_text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8(b.to_vec()).ok(),
        ValueRef::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::db::{FaultKind, StoreError, SQLITE_BUSY_TIMEOUT};
    use crate::Db;

    #[test]
    fn times_are_written_as_sqlx_writes_them() {
        let t = Utc.with_ymd_and_hms(2024, 5, 1, 10, 20, 30).unwrap();
        assert_eq!(time_text(t), "2024-05-01T10:20:30+00:00");
        let t = t + chrono::Duration::microseconds(123_456);
        assert_eq!(time_text(t), "2024-05-01T10:20:30.123456+00:00");
        let t = t - chrono::Duration::microseconds(456);
        assert_eq!(time_text(t), "2024-05-01T10:20:30.123+00:00");
    }

    #[test]
    fn times_are_read_as_sqlx_reads_them() {
        let t = Utc.with_ymd_and_hms(2024, 5, 1, 10, 20, 30).unwrap();
        for s in [
            "2024-05-01T10:20:30+00:00",
            "2024-05-01T12:20:30+02:00",
            "2024-05-01 10:20:30",
            "2024-05-01T10:20:30Z",
        ] {
            assert_eq!(decode_time(ValueRef::Text(s.as_bytes())), Some(t), "{s}");
        }
        assert_eq!(decode_time(ValueRef::Integer(t.timestamp())), Some(t));
        assert_eq!(decode_time(ValueRef::Text(b"yesterday")), None);
    }

    async fn scratch() -> (PathBuf, Db) {
        let dir = std::env::temp_dir().join(format!("amal-fast-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let db = Db::connect(&url).await.unwrap();
        (dir, db)
    }

    /// Values written by sqlx, read back here, compare equal — and the
    /// bound time compares as text with the stored one (`expires_at > $2`).
    #[tokio::test]
    async fn rows_written_by_sqlx_read_back_the_same() {
        let (dir, db) = scratch().await;
        let Db::Sqlite(s) = &db else { panic!("sqlite") };
        let fast = s.fast.clone().expect("a file database has fast reads");
        sqlx::query("CREATE TABLE t (id BLOB PRIMARY KEY, at TEXT NOT NULL, n INTEGER, s TEXT)")
            .execute(&s.write)
            .await
            .unwrap();
        let id = Uuid::now_v7();
        let at = crate::now();
        sqlx::query("INSERT INTO t (id, at, n, s) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(at)
            .bind(7_i64)
            .bind("é")
            .execute(&s.write)
            .await
            .unwrap();
        let sql = "SELECT id, at, n, s, NULL AS z FROM t WHERE id = $1 AND at > $2 AND at <= $3";
        let before = at - chrono::Duration::microseconds(1);
        let got = fast
            .query_row(
                sql,
                &[Arg::Uuid(id), Arg::Time(before), Arg::Time(at)],
                |r| {
                    Ok((
                        r.uuid("id")?,
                        r.time("at")?,
                        r.int("n")?,
                        r.text("s")?,
                        r.opt_time("z")?,
                    ))
                },
            )
            .await
            .unwrap();
        assert_eq!(got, Some((id, at, 7, "é".to_string(), None)));
        // sqlx's answer to the same statement is the same.
        let by_sqlx: Option<(Uuid, DateTime<Utc>)> = sqlx::query_as(sql)
            .bind(id)
            .bind(before)
            .bind(at)
            .fetch_optional(&s.read)
            .await
            .unwrap();
        assert_eq!(by_sqlx, Some((id, at)));
        // Not yet after `at`: no row (the text comparison holds).
        let none = fast
            .query_row(sql, &[Arg::Uuid(id), Arg::Time(at), Arg::Time(at)], |r| {
                r.uuid("id")
            })
            .await
            .unwrap();
        assert_eq!(none, None);
        // A write committed after the first read is seen by the next one.
        sqlx::query("UPDATE t SET n = 8")
            .execute(&s.write)
            .await
            .unwrap();
        let n = fast
            .query_row("SELECT n FROM t", &[], |r| r.int("n"))
            .await
            .unwrap();
        assert_eq!(n, Some(8));
        // A bad column is a decode error, not a panic; the pool goes on.
        let bad = fast
            .query_row("SELECT s FROM t", &[], |r| r.uuid("s"))
            .await
            .map_err(StoreError::from);
        assert!(matches!(bad, Err(StoreError::Database(_))), "{bad:?}");
        db.close().await;
        let closed = fast
            .query_row("SELECT 1", &[], |r| r.int("1"))
            .await
            .map_err(StoreError::from);
        assert_eq!(
            closed.err().and_then(|e| e.fault()),
            Some(FaultKind::Closed)
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `db` with its reads on the sqlx read pool only.
    fn without_fast(db: &Db) -> Db {
        let mut slow = db.clone();
        if let Db::Sqlite(s) = &mut slow {
            s.fast = None;
        }
        slow
    }

    /// The hot reads answer the same on both paths, over rows the store
    /// wrote through sqlx: a session (live, idle, expired) and a patient.
    async fn same_answers_on_both_paths(db: &Db) {
        use chrono::Duration as D;
        use domain::account::UserStatus;
        use domain::roles::Role;
        crate::migrate::up(db).await.unwrap();
        let slow = without_fast(db);
        let mut tx = db.begin().await.unwrap();
        let user = crate::users::insert(
            &mut tx,
            &crate::users::NewUser {
                email: "fast@example.org",
                name: "Fast Read",
                role: Role::Nurse,
                status: UserStatus::Active,
                password_hash: "x",
            },
        )
        .await
        .unwrap();
        let live = crate::sessions::create(&mut tx, user.id, crate::now() + D::hours(1))
            .await
            .unwrap();
        let expired = crate::sessions::create(&mut tx, user.id, crate::now() - D::seconds(1))
            .await
            .unwrap();
        let d = crate::patients::Demographics {
            given_name: "Amal".into(),
            family_name: "Haddad".into(),
            birth_date: "1980-02-03".into(),
            sex: domain::clinical::Sex::Female,
            phone: Some("+44 20 7946 0000".into()),
            email: None,
            address: Some("1 Rue Ünïcode".into()),
        };
        let p = crate::patients::insert(&mut tx, &d, user.id, || "MRN-FAST-1".into())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let cutoff = crate::now() - D::minutes(15);
        for (sid, want) in [(live, true), (expired, false), (Uuid::now_v7(), false)] {
            let fast = crate::sessions::live(db, sid, cutoff).await.unwrap();
            let sqlx = crate::sessions::live(&slow, sid, cutoff).await.unwrap();
            assert_eq!(format!("{fast:?}"), format!("{sqlx:?}"));
            assert_eq!(fast.is_some(), want, "{fast:?}");
        }
        // Idle: last used before the cutoff.
        let idle = crate::sessions::live(db, live, crate::now() + D::seconds(1))
            .await
            .unwrap();
        assert!(idle.is_none());
        let fast = crate::patients::get(db, p.id).await.unwrap();
        let sqlx = crate::patients::get(&slow, p.id).await.unwrap();
        assert!(fast.is_some());
        assert_eq!(format!("{fast:?}"), format!("{sqlx:?}"));
        assert_eq!(format!("{fast:?}"), format!("{:?}", Some(p)));
        assert!(crate::patients::get(db, Uuid::now_v7())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn hot_reads_answer_as_sqlx_does() {
        let (dir, db) = scratch().await;
        same_answers_on_both_paths(&db).await;
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// With a SQLCipher key the connections are keyed first and read what
    /// sqlx wrote with the key; without it the file is `Unreadable`, as
    /// through sqlx. (Keys given explicitly: the process-wide one would
    /// reach tests running beside this one.)
    #[tokio::test]
    async fn encrypted_files_are_read_with_the_key() {
        let dir = std::env::temp_dir().join(format!("amal-fast-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("enc.db");
        let key = crate::cipher::SqliteKey::parse("a fast-read test passphrase").unwrap();
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = sqlx::SqlitePool::connect_with(crate::cipher::with_key(opts, &key))
            .await
            .unwrap();
        let id = Uuid::now_v7();
        sqlx::query("CREATE TABLE t (id BLOB PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        let with = FastRead::keyed(
            &file,
            1,
            Duration::from_secs(1),
            SQLITE_BUSY_TIMEOUT,
            Some(key.pragma()),
        );
        let got = with
            .query_row("SELECT id FROM t WHERE id = $1", &[Arg::Uuid(id)], |r| {
                r.uuid("id")
            })
            .await
            .unwrap();
        assert_eq!(got, Some(id));
        let without = FastRead::keyed(&file, 1, Duration::from_secs(1), SQLITE_BUSY_TIMEOUT, None);
        let e = without
            .query_row("SELECT id FROM t", &[], |r| r.uuid("id"))
            .await
            .map_err(StoreError::from)
            .unwrap_err();
        assert!(matches!(e, StoreError::Unreadable(_)), "{e:?}");
        pool.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A missing file: the same error kind as the sqlx read pool gives.
    #[tokio::test]
    async fn a_missing_file_fails_as_sqlx_fails() {
        let dir = std::env::temp_dir().join(format!("amal-fast-{}", Uuid::new_v4().simple()));
        let file = dir.join("missing.db");
        let fast = FastRead::new(&file, 2, Duration::from_secs(1), SQLITE_BUSY_TIMEOUT);
        let ours = fast
            .query_row("SELECT 1 AS x", &[], |r| r.int("x"))
            .await
            .map_err(StoreError::from)
            .unwrap_err();
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .read_only(true);
        let theirs: StoreError = sqlx::SqlitePool::connect_with(opts)
            .await
            .unwrap_err()
            .into();
        assert_eq!(ours.fault(), Some(FaultKind::CantOpen), "{ours}");
        assert_eq!(ours.fault(), theirs.fault(), "{theirs}");
    }

    /// A file that is not a database: `Unreadable`, as from sqlx.
    #[tokio::test]
    async fn not_a_database_is_unreadable() {
        let dir = std::env::temp_dir().join(format!("amal-fast-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("junk.db");
        std::fs::write(&file, vec![7u8; 8192]).unwrap();
        let fast = FastRead::new(&file, 2, Duration::from_secs(1), SQLITE_BUSY_TIMEOUT);
        let ours = fast
            .query_row("SELECT count(*) AS n FROM sqlite_master", &[], |r| {
                r.int("n")
            })
            .await
            .map_err(StoreError::from)
            .unwrap_err();
        assert!(matches!(ours, StoreError::Unreadable(_)), "{ours:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
