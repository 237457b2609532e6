//! The `amal` binary: migrations, configuration checks, user bootstrap,
//! logs of a real `amal serve` process, and graceful shutdown.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::*;

fn amal(dir: &std::path::Path, url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AMAL_DATA_DIR", dir)
        .env("DATABASE_URL", url);
    c
}

async fn fresh() -> (std::path::PathBuf, String) {
    let dir = temp_dir();
    let url = fresh_database_url(&dir).await;
    (dir, url)
}

fn run(mut c: Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A description of the schema that is equal when two schemas are equal.
async fn schema_fingerprint(url: &str) -> Vec<String> {
    let db = store::Db::connect(url).await.unwrap();
    let rows: Vec<(String,)> = match &db {
        store::Db::Sqlite(s) => sqlx::query_as("SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE '_sqlx%' AND name NOT LIKE 'sqlite_%' ORDER BY type, name")
            .fetch_all(&s.read).await.unwrap(),
        store::Db::Postgres(p) => sqlx::query_as(
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%' \
             UNION ALL SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE '_sqlx%' \
             UNION ALL SELECT trigger_name || ' ' || event_manipulation || ' ' || event_object_table FROM information_schema.triggers \
             ORDER BY 1").fetch_all(p).await.unwrap(),
    };
    db.close().await;
    rows.into_iter().map(|r| r.0).collect()
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again_identically() {
    let (dir, url) = fresh().await;
    let (ok, out, err) = run({
        let mut c = amal(&dir, &url);
        c.args(["migrate", "up"]);
        c
    });
    assert!(ok, "{out}{err}");
    let first = schema_fingerprint(&url).await;
    assert!(first.len() > 5);
    let (ok, out, _) = run({
        let mut c = amal(&dir, &url);
        c.args(["migrate", "status"]);
        c
    });
    assert!(ok && out.contains("applied"), "{out}");
    let (ok, out, err) = run({
        let mut c = amal(&dir, &url);
        c.args(["migrate", "down", "--to", "0"]);
        c
    });
    assert!(ok, "{out}{err}");
    assert!(
        schema_fingerprint(&url).await.is_empty(),
        "everything reverted"
    );
    let (ok, _, err) = run({
        let mut c = amal(&dir, &url);
        c.args(["migrate", "up"]);
        c
    });
    assert!(ok, "{err}");
    assert_eq!(schema_fingerprint(&url).await, first);
}

#[test]
fn both_migration_folders_hold_the_same_reversible_versions() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let list = |engine: &str| {
        let mut v: Vec<String> = std::fs::read_dir(root.join(engine))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let (s, p) = (list("sqlite"), list("postgres"));
    assert_eq!(
        s, p,
        "migrations/sqlite and migrations/postgres must hold the same files"
    );
    for f in s.iter().filter(|f| f.ends_with(".up.sql")) {
        assert!(
            s.contains(&f.replace(".up.sql", ".down.sql")),
            "{f} has no down migration"
        );
    }
}

#[tokio::test]
async fn serve_refuses_a_newer_schema() {
    let (dir, url) = fresh().await;
    assert!(
        run({
            let mut c = amal(&dir, &url);
            c.args(["migrate", "up"]);
            c
        })
        .0
    );
    let db = store::Db::connect(&url).await.unwrap();
    let sql = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from the future', true, $1, 0)";
    match &db {
        store::Db::Sqlite(s) => {
            sqlx::query(sql)
                .bind(vec![0u8; 48])
                .execute(&s.write)
                .await
                .unwrap();
        }
        store::Db::Postgres(p) => {
            sqlx::query(sql)
                .bind(vec![0u8; 48])
                .execute(p)
                .await
                .unwrap();
        }
    }
    db.close().await;
    let (ok, out, err) = run({
        let mut c = amal(&dir, &url);
        c.env("AMAL_BIND", "127.0.0.1:0").arg("serve");
        c
    });
    assert!(!ok);
    let all = format!("{out}{err}");
    assert!(
        all.contains("9999") && all.contains("amal migrate down --to"),
        "{all}"
    );
}

#[test]
fn config_check_names_each_bad_setting_without_its_value() {
    let dir = temp_dir();
    let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("AMAL_DATA_DIR", &dir)
        .env("AMAL_ENV", "production")
        .env("DATABASE_URL", "postgres://amal@db.example.net/amal")
        .env("JWT_SECRET", "short-secret-value")
        .env("AMAL_RATE_LIMIT_READ", "fast")
        .args(["config", "check"]);
    let (ok, out, err) = run(c);
    assert!(!ok);
    let all = format!("{out}{err}");
    for setting in [
        "DATABASE_URL",
        "JWT_SECRET",
        "JWT_REFRESH_SECRET",
        "AMAL_RATE_LIMIT_READ",
    ] {
        assert!(all.contains(setting), "{setting} not named in {all}");
    }
    assert!(
        !all.contains("short-secret-value"),
        "a secret value was printed"
    );

    // Serve refuses the same configuration at start.
    let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("AMAL_DATA_DIR", &dir)
        .env("AMAL_ENV", "production")
        .arg("serve");
    let (ok, out, err) = run(c);
    assert!(!ok);
    assert!(format!("{out}{err}").contains("JWT_SECRET"));

    // A good production configuration passes.
    let gen = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
        c.args(["secrets", "generate"]);
        c
    });
    assert!(gen.0);
    let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("AMAL_DATA_DIR", &dir)
        .env("AMAL_ENV", "production")
        // SQLite in production: encryption at rest is stated (encryption.rs
        // tests the refusal without it and the SQLCipher key).
        .env("AMAL_DISK_ENCRYPTED", "true");
    for line in gen.1.lines() {
        let (k, v) = line.split_once('=').unwrap();
        assert!(v.len() >= 86, "64 bytes in base64");
        c.env(k, v);
    }
    // The checkpoint signing key is a file (`amal audit keygen`), 0600.
    let key_file = dir.join("checkpoint-signing.key");
    let made = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
        c.args(["audit", "keygen", key_file.to_str().unwrap()]);
        c
    });
    assert!(made.0, "{}{}", made.1, made.2);
    c.env("AMAL_AUDIT_SIGNING_KEY_FILE", &key_file);
    // And backups are encrypted to a key file (`amal backup keygen`).
    let backup_key = dir.join("backup.key");
    let made = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
        c.args(["backup", "keygen", backup_key.to_str().unwrap()]);
        c
    });
    assert!(made.0 && made.1.contains("age1"), "{}{}", made.1, made.2);
    c.env("AMAL_BACKUP_KEY_FILE", &backup_key);
    c.args(["config", "check"]);
    let (ok, out, err) = run(c);
    assert!(ok, "{out}{err}");
}

/// A running `amal serve` child process with its stdout collected.
struct Served {
    child: Child,
    base: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn start_serve(mut c: Command) -> Served {
    c.env("AMAL_BIND", "127.0.0.1:0")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let store_lines = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send(v["context"]["address"].as_str().unwrap_or("").to_string());
                }
            }
            store_lines.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("server started");
    Served {
        child,
        base: format!("http://{addr}"),
        lines,
    }
}

fn stop(mut s: Served) -> (std::process::ExitStatus, Vec<String>) {
    let _ = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status();
    let status = s.child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let lines = s.lines.lock().unwrap().clone();
    (status, lines)
}

#[tokio::test]
async fn logs_are_json_lines_without_secrets_or_canaries() {
    let (dir, url) = fresh().await;
    let mut c = amal(&dir, &url);
    c.env("AMAL_SIGNUP", "open");
    let served = start_serve(c);
    let client = reqwest::Client::new();
    let canary_email = "canary.zebra.7731@clinic.test";
    let canary_password = "CanaryPassword-QX93-secret";
    let canary_name = "Canaryname Zebrafish";
    let r = client
        .post(format!("{}/api/auth/signup", served.base))
        .json(&json!({"email": canary_email, "password": canary_password, "name": canary_name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Activate through the store, then sign in and use the token.
    let db = store::Db::connect(&url).await.unwrap();
    let u = store::users::by_email(&db, canary_email)
        .await
        .unwrap()
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    store::users::update_role_status(
        &mut tx,
        u.id,
        u.version,
        domain::roles::Role::Nurse,
        domain::account::UserStatus::Active,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    db.close().await;
    let v: Value = client
        .post(format!("{}/api/auth/signin", served.base))
        .json(&json!({"email": canary_email, "password": canary_password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = v["accessToken"].as_str().unwrap().to_string();
    let refresh = v["refreshToken"].as_str().unwrap().to_string();
    let _ = client
        .get(format!("{}/api/auth/me", served.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let _ = client
        .post(format!("{}/api/auth/signin", served.base))
        .json(&json!({"email": canary_email, "password": "Wrong-CanaryPassword-1"}))
        .send()
        .await
        .unwrap();
    let _ = client
        .post(format!("{}/api/auth/refresh", served.base))
        .json(&json!({"refreshToken": refresh}))
        .send()
        .await
        .unwrap();
    let (status, lines) = stop(served);
    assert!(status.success(), "graceful shutdown exits 0");
    assert!(lines.len() >= 6, "{lines:?}");
    let secrets = std::fs::read_to_string(dir.join("secrets.env")).unwrap_or_default();
    let mut forbidden: Vec<String> = vec![
        canary_email.into(),
        canary_password.into(),
        "Wrong-CanaryPassword-1".into(),
        canary_name.into(),
        "Canaryname".into(),
        access.clone(),
        refresh.clone(),
    ];
    for l in secrets
        .lines()
        .filter_map(|l| l.split_once('=').map(|x| x.1.to_string()))
    {
        forbidden.push(l);
    }
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            v["timestamp"].is_string()
                && v["level"].is_string()
                && v["message"].is_string()
                && v["context"].is_object(),
            "shape: {line}"
        );
        for f in &forbidden {
            assert!(!line.contains(f.as_str()), "log line leaks {f:?}: {line}");
        }
    }
    let requests: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"message\":\"request\""))
        .collect();
    assert!(
        requests
            .iter()
            .any(|l| l.contains("\"endpoint\":\"/api/auth/me\"")
                && l.contains("\"userId\"")
                && l.contains("\"role\":\"nurse\"")
                && l.contains("\"requestId\"")
                && l.contains("\"duration\"")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn user_create_bootstraps_an_admin_who_can_sign_in() {
    let (dir, url) = fresh().await;
    let out = cli_user_create(
        amal(&dir, &url),
        "Boss@Clinic.test",
        "admin",
        "a long admin passphrase",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A weak password is refused.
    let mut c = amal(&dir, &url);
    c.args([
        "user",
        "create",
        "--email",
        "weak@clinic.test",
        "--role",
        "admin",
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    assert!(!child.wait_with_output().unwrap().status.success());

    let served = start_serve(amal(&dir, &url));
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/auth/signin", served.base))
        .json(&json!({"email": "boss@clinic.test", "password": "a long admin passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"]["role"], "admin");
    let h: Value = client
        .get(format!("{}/api/health", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    stop(served);

    let (ok, out, _) = run({
        let mut c = amal(&dir, &url);
        c.arg("version");
        c
    });
    assert!(ok && out.contains("schema version"), "{out}");
    let (ok, out, _) = run({
        let mut c = amal(&dir, &url);
        c.args(["audit", "verify"]);
        c
    });
    assert!(ok && out.contains("intact"), "{out}");
}

#[test]
fn help_lists_every_command() {
    let (ok, out, _) = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
        c.arg("--help");
        c
    });
    assert!(ok);
    for cmd in [
        "serve", "migrate", "user", "secrets", "config", "audit", "version",
    ] {
        assert!(out.contains(cmd), "{cmd} missing from --help");
    }
}

#[test]
fn unsupported_database_scheme_is_refused_clearly() {
    let dir = temp_dir();
    let (ok, out, err) = run({
        let mut c = amal(&dir, "mysql://root@localhost/amal");
        c.args(["config", "check"]);
        c
    });
    assert!(!ok);
    assert!(format!("{out}{err}").contains("DATABASE_URL"));
}

#[tokio::test]
async fn demo_starts_a_clinic_to_explore() {
    let dir = temp_dir();
    let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AMAL_BIND", "127.0.0.1:0")
        .env("TMPDIR", &dir)
        .env("AMAL_DEMO_PASSWORD", "demo password for tests")
        .args(["demo", "--patients", "25"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("running at ").nth(1) {
                let _ = tx.send(rest.trim().trim_end_matches('/').to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("demo printed its URL");
    let client = reqwest::Client::new();
    let login = |email: &str| {
        client
            .post(format!("{base}/api/auth/signin"))
            .json(&json!({"email": email, "password": "demo password for tests"}))
            .send()
    };
    for role in ["admin", "provider", "nurse", "staff"] {
        assert_eq!(
            login(&format!("{role}@demo.amal.test"))
                .await
                .unwrap()
                .status(),
            200,
            "{role}"
        );
    }
    let v: Value = login("provider@demo.amal.test")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["accessToken"].as_str().unwrap();
    let patients: Value = client
        .get(format!("{base}/api/patients?limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = patients["items"].as_array().unwrap();
    assert_eq!(items.len(), 25);
    let id = items[0]["id"].as_str().unwrap();
    let overview: Value = client
        .get(format!("{base}/api/patients/{id}/overview"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!overview["recentLabs"].as_array().unwrap().is_empty());
    assert!(!overview["recentNotes"].as_array().unwrap().is_empty());
    let day: Value = client
        .get(format!("{base}/api/overview"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !day["unreviewedResults"]["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the demo has abnormal labs to review"
    );
    // The demo's first patient exercises every list of the day.
    assert!(day["unreviewedResults"]["criticalTotal"].as_i64().unwrap() >= 1);
    assert!(day["criticalVitals"]["total"].as_i64().unwrap() >= 1);
    if let Some(cosign) = day["cosignDrafts"].as_object() {
        assert!(cosign["total"].as_i64().unwrap() >= 1);
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("amal-demo-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the throw-away data is removed on exit"
    );
}

/// A SQLite database first created by a command other than `serve` (here
/// `amal migrate up`) is owner-only too.
#[cfg(unix)]
#[test]
fn a_database_created_by_the_cli_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    if is_postgres() {
        eprintln!("skipped: a SQLite file");
        return;
    }
    let dir = temp_dir();
    let db = dir.join("new.db");
    let url = format!("sqlite://{}", db.display());
    let (ok, out, err) = run({
        let mut c = amal(&dir, &url);
        c.args(["migrate", "up"]);
        c
    });
    assert!(ok, "{out}{err}");
    let mode = std::fs::metadata(&db).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}
