//! Fault tests: the server answers database faults with 503 and
//! `Retry-After` (never 500), recovers by itself once the fault is gone, and
//! loses no acknowledged write. Faults are real: a size-limited tmpfs that
//! fills up, a read-only file system, `kill -9`, terminated PostgreSQL
//! backends, a private PostgreSQL cluster stopped and started.
//!
//! Mounting needs root (CAP_SYS_ADMIN); a test that cannot set up its fault
//! says why and is skipped, unless `AMAL_REQUIRE_FAULTS=1`, where it fails.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

fn require_faults() -> bool {
    std::env::var("AMAL_REQUIRE_FAULTS").is_ok_and(|v| v == "1")
}

/// Explain why a fault cannot be set up; fail when faults are required.
fn skip(why: &str) {
    assert!(
        !require_faults(),
        "AMAL_REQUIRE_FAULTS=1 but the fault cannot be set up: {why}"
    );
    eprintln!("skipped: {why}");
}

/// A size-limited tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = temp_dir();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    /// Remount `ro` or `rw`; retried briefly, as SQLite's connection threads
    /// may still be closing their files ("mount point is busy").
    fn remount(&self, mode: &str) {
        let t0 = Instant::now();
        loop {
            let out = Command::new("mount")
                .args(["-o", &format!("remount,{mode}")])
                .arg(&self.dir)
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "remount {mode}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fill the file system holding `dir` to the last byte; returns the filler.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [vec![7u8; 256 * 1024], vec![7u8; 4096], vec![7u8; 64]] {
        while f.write_all(&chunk).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

/// A registration; `confirmDuplicate` because cycles reuse names on purpose.
fn patient(n: usize) -> Value {
    json!({"givenName": "Fault", "familyName": format!("Case{n}"), "birthDate": "1970-01-01", "sex": "female", "confirmDuplicate": true})
}

/// Assert a database-fault answer: 503 `service_unavailable`, with
/// `Retry-After`, and nothing of the driver in it.
async fn assert_fault(r: reqwest::Response) -> Value {
    assert!(
        r.headers().contains_key("retry-after"),
        "503 without Retry-After"
    );
    let v = assert_problem(r, 503, "service_unavailable").await;
    let text = v.to_string().to_lowercase();
    for leak in ["sqlite", "sqlx", "code:", "postgres", "disk i/o"] {
        assert!(!text.contains(leak), "internals leak in {v}");
    }
    v
}

/// POST a patient every 100 ms until one is created; the time it took.
async fn until_write_succeeds(app: &TestApp, token: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let r = app.post("/api/patients", Some(token), patient(0)).await;
        match r.status().as_u16() {
            201 => return t0.elapsed(),
            503 => {}
            s => panic!(
                "unexpected {s} while recovering: {}",
                r.text().await.unwrap()
            ),
        }
        assert!(
            t0.elapsed() < limit,
            "writes did not resume within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn chain_valid(app: &TestApp) {
    let report = store::audit::verify(&app.state.db).await.unwrap();
    assert!(report.valid, "audit chain broken: {report:?}");
}

#[tokio::test]
async fn sqlite_disk_full_answers_503_and_writes_resume_without_restart() {
    if is_postgres() {
        eprintln!("skipped: a SQLite fault (the PostgreSQL run tests its own faults)");
        return;
    }
    let fs = match Tmpfs::mount("24m") {
        Ok(f) => f,
        Err(e) => return skip(&format!("no size-limited file system: {e}")),
    };
    let url = format!("sqlite://{}", fs.dir.join("amal.db").display());
    let app = TestApp::spawn_raw(base_raw(&fs.dir, &url)).await;
    let provider = app.signed_in("provider").await;
    let nurse = app.create_user("nurse").await;
    let before = app.create_patient(&provider.access, "Before", "Full").await;

    let filler = fill(&fs.dir);
    let mut faults = 0;
    for i in 0..50 {
        let r = app
            .post("/api/patients", Some(&provider.access), patient(i))
            .await;
        match r.status().as_u16() {
            // Space freed by SQLite itself (WAL frames reused) may take a write.
            201 => continue,
            503 => {
                assert_fault(r).await;
                faults += 1;
                if faults == 5 {
                    break;
                }
            }
            s => panic!("disk full answered {s}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!(faults, 5, "writes kept succeeding on a full disk");
    // Sign-in writes a session and an audit event: 503, not 409 or 500.
    let r = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": nurse.email, "password": nurse.password}),
        )
        .await;
    assert_fault(r).await;
    let r = app.get("/api/health", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["checks"]["databaseRead"], "ok", "{h}");
    assert_ne!(h["checks"]["databaseWrite"], "ok", "{h}");
    assert_eq!(h["checks"]["database"], "unwritable", "{h}");
    assert_eq!(h["failedChecks"], json!(["databaseWrite"]), "{h}");

    // A start on the full disk is refused, naming the path and the cause.
    let second = fs.dir.join("second");
    let raw = base_raw(
        &second,
        &format!("sqlite://{}", second.join("amal.db").display()),
    );
    // Refused either while resolving the settings (the development audit
    // key cannot be kept in the data folder) or while opening the database.
    let msg = match server::Config::resolve(raw) {
        Err(problems) => format!("{problems:?}"),
        Ok(cfg) => {
            let err = server::prepare(cfg, true)
                .await
                .err()
                .expect("start on a full disk refused");
            format!("{err:#}")
        }
    };
    assert!(msg.contains(&second.display().to_string()), "{msg}");
    assert!(msg.contains("disk is full"), "{msg}");

    std::fs::remove_file(&filler).unwrap();
    let took = until_write_succeeds(&app, &provider.access, Duration::from_secs(10)).await;
    eprintln!("measured: writes resumed {took:?} after disk space returned");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    for i in 0..10 {
        let r = app
            .post("/api/patients", Some(&provider.access), patient(i))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "write {i} after recovery");
    }
    app.sign_in(&nurse).await;
    let r = app
        .get(
            &format!("/api/patients/{}", sid(&before)),
            Some(&provider.access),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.get("/api/health", None).await.status(), StatusCode::OK);
    let m = app.state.metrics.snapshot_json();
    let counters = &m["metrics"]["counters"];
    assert!(counters["db.fault"].as_u64().unwrap() >= 6, "{counters}");
    assert_eq!(counters["http.auth.5xx"], 0, "faults are not auth bugs");
    chain_valid(&app).await;
}

#[tokio::test]
async fn sqlite_read_only_storage_refuses_to_start_then_starts_once_writable() {
    if is_postgres() {
        eprintln!("skipped: a SQLite fault");
        return;
    }
    let fs = match Tmpfs::mount("24m") {
        Ok(f) => f,
        Err(e) => return skip(&format!("no mountable file system: {e}")),
    };
    let url = format!("sqlite://{}", fs.dir.join("amal.db").display());
    let raw = base_raw(&fs.dir, &url);
    let app = TestApp::spawn_raw(raw.clone()).await;
    let provider = app.signed_in("provider").await;
    let p = app.create_patient(&provider.access, "Read", "Only").await;
    // Close every file so the file system can be remounted read-only.
    app.state.db.close().await;
    drop(app);
    tokio::time::sleep(Duration::from_millis(200)).await;
    fs.remount("ro");
    let err = server::prepare(server::Config::resolve(raw.clone()).unwrap(), false)
        .await
        .err()
        .expect("start on a read-only file system refused");
    let msg = format!("{err:#}");
    assert!(msg.contains(&fs.dir.display().to_string()), "{msg}");
    assert!(msg.contains("read-only file system"), "{msg}");
    fs.remount("rw");
    for f in ["amal.db", "amal.db-shm", "amal.db-wal"] {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(fs.dir.join(f)) {
            assert_ne!(meta.permissions().mode() & 0o222, 0, "{f} left read-only");
        }
    }
    let app = TestApp::spawn_raw(raw).await;
    let provider = app.sign_in_again(&provider).await;
    let r = app
        .get(&format!("/api/patients/{}", sid(&p)), Some(&provider))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    until_write_succeeds(&app, &provider, Duration::from_secs(5)).await;
    chain_valid(&app).await;
}

impl TestApp {
    /// An access token for `s`'s user, issued by this instance's keys (the
    /// same secrets), after a restart of the server.
    async fn sign_in_again(&self, s: &Session) -> String {
        let r = self
            .post(
                "/api/auth/refresh",
                None,
                json!({"refreshToken": s.refresh}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "refresh after restart");
        let v: Value = r.json().await.unwrap();
        v["accessToken"].as_str().unwrap().to_string()
    }
}

// ---------------------------------------------------------------------------
// A real `amal serve` process.

struct Served {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Env {
    dir: PathBuf,
    url: String,
    jwt: String,
    refresh: String,
    /// Run `amal` as this uid/gid (through `setpriv`), e.g. `nobody`.
    run_as: Option<u32>,
}

impl Env {
    fn command(&self) -> Command {
        let mut c = match self.run_as {
            Some(id) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={id}"))
                    .arg(format!("--regid={id}"))
                    .arg("--clear-groups")
                    .arg(env!("CARGO_BIN_EXE_amal"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_amal")),
        };
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AMAL_DATA_DIR", &self.dir)
            .env("DATABASE_URL", &self.url)
            .env("JWT_SECRET", &self.jwt)
            .env("JWT_REFRESH_SECRET", &self.refresh)
            .env("AMAL_RATE_LIMIT_AUTH", "10000/60s")
            .env("AMAL_RATE_LIMIT_WRITE", "100000/60s")
            .env("AMAL_RATE_LIMIT_READ", "100000/60s");
        c
    }

    fn serve(&self, log_level: &str) -> Served {
        let port = free_port();
        let mut c = self.command();
        c.env("AMAL_BIND", format!("127.0.0.1:{port}"))
            .env("LOG_LEVEL", log_level)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("amal serve exited with {status}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "server start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Served { child, base, lines }
    }

    fn create_provider(&self, email: &str, password: &str) {
        let mut c = self.command();
        c.args(["user", "create", "--email", email, "--role", "provider"])
            .arg("--password-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "amal user create");
    }
}

async fn env_for_process() -> Env {
    let dir = temp_dir();
    let url = fresh_database_url(&dir).await;
    Env {
        dir,
        url,
        jwt: server::config::generate_secret(),
        refresh: server::config::generate_secret(),
        run_as: None,
    }
}

async fn sign_in_at(client: &reqwest::Client, base: &str, email: &str, password: &str) -> String {
    let r = client
        .post(format!("{base}/api/auth/signin"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "sign-in");
    let v: Value = r.json().await.unwrap();
    v["accessToken"].as_str().unwrap().to_string()
}

/// kill -9 in the middle of 8 concurrent writers, several times: every
/// write the server acknowledged is in the database with its audit event,
/// and the audit chain verifies.
#[tokio::test]
async fn kill_9_under_eight_concurrent_writers_loses_no_acknowledged_write() {
    let cycles: usize = std::env::var("AMAL_FAULT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let env = env_for_process().await;
    let (email, password) = ("kill9@clinic.test", "kill-nine-provider-pass");
    {
        // Migrate first: `user create` needs the schema.
        let st = env.command().args(["migrate", "up"]).output().unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    env.create_provider(email, password);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut token = String::new();
    for cycle in 0..cycles {
        let mut served = env.serve("warn");
        if token.is_empty() {
            token = sign_in_at(&client, &served.base, email, password).await;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..8 {
            let (client, base, token, acked, stop) = (
                client.clone(),
                served.base.clone(),
                token.clone(),
                acked.clone(),
                stop.clone(),
            );
            writers.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let sent = client
                        .post(format!("{base}/api/patients"))
                        .bearer_auth(&token)
                        .json(&patient(w * 100_000 + n))
                        .send()
                        .await;
                    let Ok(r) = sent else { break };
                    let status = r.status().as_u16();
                    if status == 201 {
                        if let Ok(v) = r.json::<Value>().await {
                            acked.lock().unwrap().push(sid(&v));
                        }
                    } else {
                        assert!(
                            status == 503,
                            "cycle {cycle}: writer {w} got {status} before the kill"
                        );
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        served.child.kill().unwrap(); // SIGKILL
        served.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= cycles * 8,
        "too few writes to prove anything: {}",
        acked.len()
    );
    let db = store::Db::connect(&env.url).await.unwrap();
    let stored: Vec<(uuid::Uuid,)> =
        store::on_read!(&db, c => sqlx::query_as("SELECT id FROM patients").fetch_all(c).await)
            .unwrap();
    let audited: Vec<(Option<uuid::Uuid>,)> = store::on_read!(&db, c => sqlx::query_as("SELECT resource_id FROM audit_events WHERE action = 'patient.create'").fetch_all(c).await).unwrap();
    let stored: std::collections::HashSet<String> =
        stored.into_iter().map(|r| r.0.to_string()).collect();
    let audited: std::collections::HashSet<String> = audited
        .into_iter()
        .filter_map(|r| r.0.map(|u| u.to_string()))
        .collect();
    for id in &acked {
        assert!(stored.contains(id), "acknowledged patient {id} lost");
        assert!(
            audited.contains(id),
            "acknowledged patient {id} has no audit event"
        );
    }
    db.close().await;
    let out = env.command().args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "amal audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "measured: {} acknowledged writes over {cycles} kill -9 cycles, none lost",
        acked.len()
    );
}

/// At LOG_LEVEL=warn the line of a 5xx still carries the request id (the
/// request's span used to be filtered out below info).
#[tokio::test]
async fn a_5xx_log_line_carries_the_request_id_at_warn() {
    if is_postgres() {
        eprintln!("skipped: uses a full SQLite disk to cause the 5xx");
        return;
    }
    let fs = match Tmpfs::mount("24m") {
        Ok(f) => f,
        Err(e) => return skip(&format!("no size-limited file system: {e}")),
    };
    let env = Env {
        dir: fs.dir.clone(),
        url: format!("sqlite://{}", fs.dir.join("amal.db").display()),
        jwt: server::config::generate_secret(),
        refresh: server::config::generate_secret(),
        run_as: None,
    };
    let mut served = env.serve("warn");
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    while client
        .get(format!("{}/api/health", served.base))
        .send()
        .await
        .map(|r| r.status() != StatusCode::OK)
        .unwrap_or(true)
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "server healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let filler = fill(&fs.dir);
    // A failed sign-in is audited; with the disk full that fails: 503.
    let r = client
        .post(format!("{}/api/auth/signin", served.base))
        .header("x-request-id", "faults-log-check-1")
        .json(&json!({"email": "nobody@clinic.test", "password": "canary-password-xyz"}))
        .send()
        .await
        .unwrap();
    assert_fault(r).await;
    std::fs::remove_file(filler).unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status();
    served.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let lines = served.lines.lock().unwrap().clone();
    let failed: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request failed")
        .collect();
    assert!(!failed.is_empty(), "no 5xx line in {lines:?}");
    for v in &failed {
        assert_eq!(v["level"], "error", "{v}");
        assert_eq!(v["context"]["requestId"], "faults-log-check-1", "{v}");
        assert_eq!(v["context"]["status"], 503, "{v}");
    }
    assert!(
        lines.iter().all(|l| !l.contains("canary-password-xyz")),
        "the password was logged"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A database file without write permission (as an unprivileged user:
/// root ignores file modes). `serve` must refuse to start, naming the file,
/// and must not leave a read-only `-shm` behind; once the mode is fixed it
/// starts. SQLite alone would open the file read-only, report healthy, and
/// create `-shm` with mode 0444.
#[tokio::test]
async fn sqlite_read_only_database_file_refused_as_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt;
    if is_postgres() {
        eprintln!("skipped: a SQLite fault");
        return;
    }
    let dir = temp_dir();
    let run_as = if is_root() {
        // `nobody` owns the folder (and the clinic's keys seeded in it); it
        // cannot bypass the file's mode.
        let ok = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok || !Path::new("/usr/bin/setpriv").exists() {
            return skip("cannot run amal as an unprivileged user (chown or setpriv missing)");
        }
        Some(65534)
    } else {
        None
    };
    let env = Env {
        url: format!("sqlite://{}", dir.join("amal.db").display()),
        dir: dir.clone(),
        jwt: server::config::generate_secret(),
        refresh: server::config::generate_secret(),
        run_as,
    };
    let out = env.command().args(["migrate", "up"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["amal.db-wal", "amal.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let db = dir.join("amal.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let mut c = env.command();
    c.env("AMAL_BIND", format!("127.0.0.1:{}", free_port()))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("amal serve started on a read-only database file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    if let Ok(meta) = std::fs::metadata(dir.join("amal.db-shm")) {
        assert_ne!(meta.permissions().mode() & 0o200, 0, "-shm left read-only");
    }
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut served = env.serve("warn");
    let r = reqwest::get(format!("{}/api/health", served.base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _ = served.child.kill();
    let _ = served.child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------
// PostgreSQL.

/// The database name at the end of a PostgreSQL URL.
fn database_name(url: &str) -> String {
    url.rsplit('/')
        .next()
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_string()
}

async fn admin_exec(sql: &str) {
    use sqlx::Connection;
    let admin = std::env::var("AMAL_TEST_DATABASE_URL").unwrap();
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sql).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

async fn terminate_backends(db: &str) {
    admin_exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    ))
    .await;
}

/// Backends of the test database terminated under concurrent writers
/// (`pg_terminate_backend`): answers are 201 or 503, never 500, and the
/// server recovers at once.
#[tokio::test]
async fn postgres_terminated_connections_answer_503_then_recover() {
    if !is_postgres() {
        eprintln!("skipped: a PostgreSQL fault (set AMAL_TEST_DATABASE_URL)");
        return;
    }
    let app = Arc::new(TestApp::spawn().await);
    let provider = app.signed_in("provider").await;
    let db = database_name(app.raw.database_url.as_deref().unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (app, token, stop, acked) = (
            app.clone(),
            provider.access.clone(),
            stop.clone(),
            acked.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut faults = 0;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let r = app
                    .post("/api/patients", Some(&token), patient(w * 1000 + n))
                    .await;
                match r.status().as_u16() {
                    201 => {
                        let id = sid(&r.json::<Value>().await.unwrap());
                        acked.lock().unwrap().push(id);
                    }
                    503 => {
                        assert_fault(r).await;
                        faults += 1;
                    }
                    s => panic!(
                        "terminated connection answered {s}: {}",
                        r.text().await.unwrap()
                    ),
                }
            }
            faults
        }));
    }
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        terminate_backends(&db).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut faults = 0;
    for w in writers {
        faults += w.await.unwrap();
    }
    let took = until_write_succeeds(&app, &provider.access, Duration::from_secs(5)).await;
    eprintln!("measured: {faults} answers 503 during terminations; next write {took:?} after");
    assert!(took < Duration::from_secs(3));
    let acked = acked.lock().unwrap().clone();
    for id in &acked {
        let r = app
            .get(&format!("/api/patients/{id}"), Some(&provider.access))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "acknowledged patient {id}");
    }
    chain_valid(&app).await;
}

/// A PostgreSQL database made read-only (`default_transaction_read_only`):
/// writes and health answer 503; writable again, writes resume.
#[tokio::test]
async fn postgres_read_only_database_answers_503_then_recovers() {
    if !is_postgres() {
        eprintln!("skipped: a PostgreSQL fault (set AMAL_TEST_DATABASE_URL)");
        return;
    }
    let app = TestApp::spawn().await;
    let provider = app.signed_in("provider").await;
    let db = database_name(app.raw.database_url.as_deref().unwrap());
    admin_exec(&format!(
        "ALTER DATABASE {db} SET default_transaction_read_only = on"
    ))
    .await;
    terminate_backends(&db).await;
    let mut saw = 0;
    for i in 0..5 {
        let r = app
            .post("/api/patients", Some(&provider.access), patient(i))
            .await;
        if r.status() == StatusCode::CREATED {
            continue; // a connection opened before the change
        }
        assert_fault(r).await;
        saw += 1;
    }
    assert!(saw >= 3, "a read-only database took writes");
    let r = app.get("/api/health", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["checks"]["databaseWrite"], "read_only", "{h}");
    admin_exec(&format!(
        "ALTER DATABASE {db} RESET default_transaction_read_only"
    ))
    .await;
    terminate_backends(&db).await;
    let took = until_write_succeeds(&app, &provider.access, Duration::from_secs(5)).await;
    eprintln!("measured: writes resumed {took:?} after the database became writable");
    assert_eq!(app.get("/api/health", None).await.status(), StatusCode::OK);
    chain_valid(&app).await;
}

/// A private PostgreSQL cluster in a temp folder, on a free port, run as
/// the `postgres` user when the test runs as root. The machine's own
/// cluster is never touched.
struct PrivatePg {
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivatePg {
    fn cmd(&self, bin: &str) -> Command {
        let path = format!("{PG_BIN}/{bin}");
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &path]);
            c
        } else {
            Command::new(path)
        }
    }

    fn create() -> Result<PrivatePg, String> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            return Err(format!("{PG_BIN}/initdb is not installed"));
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = temp_dir();
        let pg = PrivatePg {
            dir,
            port: free_port(),
            as_postgres: root,
        };
        if root {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pg.dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err("cannot hand the cluster folder to the postgres user".into());
            }
        }
        let out = pg
            .cmd("initdb")
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        pg.start();
        Ok(pg)
    }

    fn start(&self) {
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.display()
            ))
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self, mode: &str) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", mode, "-w", "stop"])
            .output();
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PostgreSQL stopped under the server and started again: 503 with
/// `Retry-After` while down, within about the acquire timeout (not the old
/// 10 s); writes resume by themselves; nothing acknowledged is lost.
#[tokio::test]
async fn postgres_stopped_and_started_answers_503_then_recovers() {
    if !is_postgres() {
        eprintln!("skipped: runs in the PostgreSQL pass (set AMAL_TEST_DATABASE_URL)");
        return;
    }
    let pg = match PrivatePg::create() {
        Ok(pg) => pg,
        Err(e) => return skip(&format!("no private PostgreSQL cluster: {e}")),
    };
    let dir = temp_dir();
    let app = TestApp::spawn_raw(base_raw(&dir, &pg.url())).await;
    let provider = app.signed_in("provider").await;
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(sid(&app
            .create_patient(&provider.access, "Down", &format!("Case{i}"))
            .await));
    }
    pg.stop("fast");
    let mut worst = Duration::ZERO;
    for i in 0..3 {
        let t0 = Instant::now();
        let r = app
            .post("/api/patients", Some(&provider.access), patient(i))
            .await;
        worst = worst.max(t0.elapsed());
        assert_fault(r).await;
    }
    let t0 = Instant::now();
    let r = app.get("/api/health", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let h: Value = r.json().await.unwrap();
    assert_ne!(h["checks"]["databaseRead"], "ok", "{h}");
    eprintln!(
        "measured: 503 latency with PostgreSQL down: worst write {worst:?}, health {:?}",
        t0.elapsed()
    );
    assert!(worst < Duration::from_secs(5), "503 took {worst:?}");
    pg.start();
    let took = until_write_succeeds(&app, &provider.access, Duration::from_secs(15)).await;
    eprintln!("measured: writes resumed {took:?} after PostgreSQL came back");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    for id in &acked {
        let r = app
            .get(&format!("/api/patients/{id}"), Some(&provider.access))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "patient {id} after the restart");
    }
    assert_eq!(app.get("/api/health", None).await.status(), StatusCode::OK);
    chain_valid(&app).await;
    app.state.db.close().await;
}

/// Two `amal` instances on one PostgreSQL share the sign-in rate limit,
/// revoked refresh tokens and deactivated users.
#[tokio::test]
async fn two_instances_share_rate_limits_revocations_and_deactivations() {
    if !is_postgres() {
        eprintln!("skipped: several instances need PostgreSQL");
        return;
    }
    let a = TestApp::spawn_with(|r| r.rate_limit_auth = Some("6/60s".into())).await;
    let b = TestApp::spawn_raw(a.raw.clone()).await;
    let admin_user = a.create_user("admin").await;
    let nurse = a.create_user("nurse").await;
    let admin = a.sign_in(&admin_user).await; // sign-in 1 (a)
    let s = b.sign_in(&nurse).await; // sign-in 2 (b)

    // Rotated on A; the old token reused on B is refused and revokes the family.
    let r = a
        .post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": s.refresh}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated: Value = r.json().await.unwrap();
    let r = b
        .post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": s.refresh}),
        )
        .await;
    assert_problem(r, 401, "unauthorized").await;
    let r = a
        .post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": rotated["refreshToken"]}),
        )
        .await;
    assert_problem(r, 401, "unauthorized").await;

    // Deactivated on A: the session on B ends.
    let s2 = b.sign_in(&nurse).await; // sign-in 3 (b)
    assert_eq!(
        b.get("/api/auth/me", Some(&s2.access)).await.status(),
        StatusCode::OK
    );
    let r = a
        .client
        .patch(a.url(&format!("/api/users/{}", nurse.id)))
        .bearer_auth(&admin.access)
        .header("If-Match", "1")
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_problem(
        b.get("/api/auth/me", Some(&s2.access)).await,
        401,
        "unauthorized",
    )
    .await;

    // Sign-ins 4 to 6 alternate; the 7th is refused on either instance.
    for (i, app) in [&a, &b, &a].into_iter().enumerate() {
        let r = app
            .post(
                "/api/auth/signin",
                None,
                json!({"email": "x@clinic.test", "password": "wrong-password-long"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {}", i + 4);
    }
    for app in [&b, &a] {
        let r = app
            .post(
                "/api/auth/signin",
                None,
                json!({"email": "x@clinic.test", "password": "wrong-password-long"}),
            )
            .await;
        assert_problem(r, 429, "rate_limited").await;
    }
}
